"""FastAPI server: REST API, labeling UI, background jobs, Label Studio ML-backend routes."""

from pixclass.server.app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
