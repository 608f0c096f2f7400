from pixclass.models.registry import create_model, list_models

__all__ = ["create_model", "list_models"]
