"""Shared bits of the benchmarks: where the data is, and a fresh workspace with clothing-small imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOTHING = Path(os.environ.get("PIXCLASS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "clothing-small"


def clothing_workspace(path: str | None = None):
    """A workspace with clothing-small imported as dataset 'clothing' (import is skipped when already there)."""
    from pixclass.io.importer import import_dataset
    from pixclass.store import Workspace

    ws = Workspace.open(path or Path(tempfile.mkdtemp(prefix="pixclass-bench-")))
    import_dataset(ws, CLOTHING, "clothing")
    return ws
