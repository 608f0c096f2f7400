"""Shared setup for the server tests: a workspace with real photos, three accounts and a TestClient per role."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from pixclass.io.importer import import_dataset
from pixclass.server import ServerSettings, create_app
from pixclass.store import Workspace, users

PASSWORDS = {"root": "root-pw", "ann": "ann-pw", "bob": "bob-pw", "view": "view-pw"}
ROLES = {"root": "admin", "ann": "annotator", "bob": "annotator", "view": "viewer"}


@dataclass
class Server:
    ws: Workspace
    app: object
    tokens: dict[str, str]

    def client(self, who: str | None = None) -> TestClient:
        c = TestClient(self.app)
        if who:
            c.headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return c


def basic(name: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def tiny_source(root: Path) -> Path:
    """A folder of 4 solid-colour 32 px PNGs in two classes (hat, shoes): a dataset for tests that need no model."""
    from PIL import Image as PILImage

    for cls, colours in {"hat": [(200, 30, 30), (180, 40, 20)], "shoes": [(20, 30, 200), (40, 20, 180)]}.items():
        (root / cls).mkdir(parents=True)
        for i, rgb in enumerate(colours):
            PILImage.new("RGB", (32, 32), rgb).save(root / cls / f"{i}.png")
    return root


def make_server(root: Path, src: Path | None, *, name: str = "cloth", task: str | None = None,
                settings: ServerSettings | None = None, url: str | None = None) -> Server:
    ws = Workspace.open(root, url=url)
    if src is not None:
        import_dataset(ws, src, name, task=task)
    tokens = {}
    with ws.session() as s:
        for who, role in ROLES.items():
            tokens[who] = users.create_token(s, users.create_user(s, who, role, PASSWORDS[who]))
    app = create_app(ws, settings=settings or ServerSettings())
    return Server(ws, app, tokens)
