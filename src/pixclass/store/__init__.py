from pixclass.store.db import Workspace

__all__ = ["Workspace"]
