"""Shared bits of the benchmarks: where the data is, a fresh workspace with clothing-small imported, and CIFAR-10's
training images extracted."""

from __future__ import annotations

import os
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOTHING = Path(os.environ.get("PIXCLASS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "clothing-small"
CIFAR = CLOTHING.parent / "cifar10-jpg.tar"


def clothing_workspace(path: str | None = None):
    """A workspace with clothing-small imported as dataset 'clothing' (import is skipped when already there)."""
    from pixclass.io.importer import import_dataset
    from pixclass.store import Workspace

    ws = Workspace.open(path or Path(tempfile.mkdtemp(prefix="pixclass-bench-")))
    import_dataset(ws, CLOTHING, "clothing")
    return ws


def cifar_train(tmp: Path, images: int = 50_000) -> Path:
    """``images`` training images of CIFAR-10 (taken evenly through the archive, so every class is there) extracted
    under ``tmp``; returns the folder of class folders."""
    with tarfile.open(CIFAR) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.split("/")[-3:][0] == "train"]
        members = members[:: max(1, len(members) // images)][:images]
        tar.extractall(tmp / "src", members=members, filter="data")
    return next(p for p in (tmp / "src").rglob("train") if p.is_dir())


def timed(fn, n: int) -> float:
    """Median seconds of ``n`` calls of ``fn``, an HTTP request that must answer 200."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = fn()
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    return statistics.median(out)


def admin_client(ws):
    """(app, TestClient) of a server on ``ws``, authenticated as a new admin."""
    from fastapi.testclient import TestClient

    from pixclass.server.app import create_app
    from pixclass.store import users

    with ws.session() as s:
        token = users.create_token(s, users.create_user(s, "root", "admin", "bench-pw"))
    app = create_app(ws)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {token}"
    return app, client
