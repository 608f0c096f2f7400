"""``create_app(workspace)``: the FastAPI application with every router, the UI and shared state."""

from __future__ import annotations

import importlib
import logging
import os
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from pixclass import __version__
from pixclass.errors import NotFittedError, PixclassError
from pixclass.store import Workspace

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def _warm_imports() -> None:
    """Import torch and timm in the background at start-up, so the first "Train" or prediction request does not
    spend seconds on it while the page waits."""
    try:
        importlib.import_module("pixclass.models.registry")
    except ImportError:  # a server without the train extra: those requests say so themselves
        pass


@dataclass(frozen=True)
class ServerSettings:
    max_upload_bytes: int = 20 * 1024 * 1024  # per file; larger uploads get 413
    max_upload_files: int = 200  # per request; more get 400
    label_studio_url: str = ""  # base URL that /data/... task image links are fetched from
    label_studio_api_key: str = ""  # sent as `Authorization: Token KEY`
    ls_dataset: str = ""  # the dataset Label Studio works on (default: predict with the run trained last, train
    # the dataset labeled last)
    secure_cookies: bool = False  # set when served over HTTPS
    annotator_train_minutes: float = 60.0  # the time budget of a fine-tuning an annotator starts (admins: none)

    @classmethod
    def from_env(cls) -> "ServerSettings":
        env = os.environ
        return cls(
            max_upload_bytes=int(env.get("PIXCLASS_MAX_UPLOAD_MB", "20")) * 1024 * 1024,
            max_upload_files=int(env.get("PIXCLASS_MAX_UPLOAD_FILES", "200")),
            label_studio_url=env.get("LABEL_STUDIO_URL", "").rstrip("/"),
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY", ""),
            ls_dataset=env.get("PIXCLASS_LS_DATASET", ""),
            secure_cookies=env.get("PIXCLASS_SECURE_COOKIES", "") == "1",
            annotator_train_minutes=float(env.get("PIXCLASS_ANNOTATOR_TRAIN_MINUTES", "60")),
        )


class _NoSniff:
    """ASGI middleware: every answer says ``X-Content-Type-Options: nosniff`` (files are served as their content's
    type, and a browser must not guess another)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_with_header)


def create_app(workspace: str | Path | Workspace | None = None, *, db_url: str | None = None,
               settings: ServerSettings | None = None) -> FastAPI:
    """The server for one workspace. Reads LABEL_STUDIO_* and PIXCLASS_* settings from the environment
    unless ``settings`` is given."""
    from pixclass.server import (active, auth, classes, exports, jobs, labeling, mlbackend, models, predict_api,
                                 review, views)

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace, url=db_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=_warm_imports, name="pixclass-warm", daemon=True).start()
        yield
        app.state.jobs.shutdown()

    app = FastAPI(lifespan=lifespan, title="pixclass", version=__version__,
                  description="Image classification: labeling, model-assisted labeling, training jobs, prediction "
                              "and a Label Studio ML backend. Auth: session cookie, `Authorization: Bearer TOKEN` "
                              "or HTTP basic.")
    app.state.ws = ws
    app.state.settings = settings or ServerSettings.from_env()
    app.state.jobs = jobs.JobManager()
    app.state.models = models.ModelCache(ws)
    app.state.tables = views.TableCache(ws)
    app.state.auth_cache = auth.BasicCache()
    app.state.login_throttle = auth.LoginThrottle()

    @app.exception_handler(PixclassError)  # DataError, ConfigError and the rest: the caller's input, 400
    async def _pixclass_error(_req: Request, e: PixclassError):
        return JSONResponse({"detail": str(e)}, status_code=409 if isinstance(e, NotFittedError) else 400)

    @app.exception_handler(RequestValidationError)  # FastAPI's own echoes the input back (a password; bytes that
    async def _invalid(_req: Request, e: RequestValidationError):  # are not UTF-8 crash it): fields and reasons only
        return JSONResponse({"detail": [{"loc": list(d.get("loc", ())), "msg": d.get("msg", ""),
                                         "type": d.get("type", "")} for d in e.errors()]}, status_code=422)

    @app.exception_handler(OverflowError)  # an id past the database's 64-bit integers names no row
    async def _overflow(_req: Request, _e: OverflowError):
        return JSONResponse({"detail": "No such id (ids are 64-bit integers)."}, status_code=404)

    app.add_middleware(_NoSniff)

    app.include_router(mlbackend.router)
    app.include_router(auth.router)
    app.include_router(jobs.router)
    app.include_router(labeling.router)
    app.include_router(classes.router)
    app.include_router(review.router)
    app.include_router(predict_api.router)
    app.include_router(active.router)
    app.include_router(exports.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        """The labeling UI (a static page; it asks for a login before showing any data)."""
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app
