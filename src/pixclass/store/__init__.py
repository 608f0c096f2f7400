from pixclass.store import tables  # noqa: F401 - table modules register with Base on import; add new ones here
from pixclass.store import users  # noqa: F401
from pixclass.store import findings  # noqa: F401 - curate findings tables
from pixclass.store import clusters  # noqa: F401 - cluster runs and assignments
from pixclass.store import claims  # noqa: F401 - the image each annotator has open
from pixclass.store.db import Workspace

__all__ = ["Workspace"]
