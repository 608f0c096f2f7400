"""Loaded models for serving: the latest (or a chosen) run, through its ONNX export when there is one.

Nothing is loaded at start-up or by /health and /setup; the first prediction loads, later ones reuse it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from sqlalchemy import select

from pixclass.artifact import Manifest
from pixclass.errors import ConfigError, NotFittedError
from pixclass.inference.predictor import Prediction, merge_classes, to_predictions
from pixclass.io.images import decode_bytes, load_rgb
from pixclass.schema import LabelSchema
from pixclass.store import Workspace, records
from pixclass.store.tables import Dataset, Run

log = logging.getLogger(__name__)
DECODERS = 2  # images decoded at once for a batch prediction


@dataclass
class Handle:
    """A ready model: ``probs(images_u8)`` -> (N, K) over ``classes``."""

    key: str
    version: str
    run_id: int | None
    source: Path
    manifest: Manifest
    backend: str  # onnx | torch
    _fn: object
    names_now: tuple[str, ...] = ()  # today's name of each class, for a run whose classes were renamed or merged
    multilabel: bool = False

    @property
    def classes(self) -> tuple[str, ...]:
        """The model's classes as it was trained (the columns of ``probs``)."""
        return self.manifest.classes

    def current(self, probs: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
        """``probs`` over today's class names: what answers show (see inference.predictor.merge_classes)."""
        return merge_classes(probs, self.names_now or self.classes, multilabel=self.multilabel)

    @property
    def img_size(self) -> int:
        return self.manifest.preprocess.img_size

    def probs(self, images: np.ndarray) -> np.ndarray:
        return self._fn(images)  # type: ignore[operator]

    def decision_rule(self) -> tuple[LabelSchema, dict[str, float]]:
        """The run's task and thresholds over today's class names: answers decide as ``pixclass predict`` does
        (multi-label: every class above its threshold; binary: the stored operating threshold; hierarchical: the
        deepest confident node). A merged class keeps the lowest of its parts' thresholds."""
        m = self.manifest
        rename = dict(zip(self.classes, self.names_now or self.classes))
        thresholds: dict[str, float] = {}
        for name, t in m.thresholds.items():
            now = rename.get(name, name)
            thresholds[now] = min(t, thresholds.get(now, t))
        positive = rename.get(m.schema.positive, m.schema.positive) if m.schema.positive else None
        return LabelSchema(m.schema.task, tuple(dict.fromkeys(rename.values())), positive), thresholds

    def _predictions(self, names: list[str], probs: np.ndarray, k: int) -> list[Prediction]:
        schema, thresholds = self.decision_rule()
        return to_predictions(names, *self.current(probs), k, schema=schema, thresholds=thresholds)

    def predict_bytes(self, data: bytes, name: str, k: int = 5) -> Prediction:
        arr = decode_bytes(data, self.img_size, name)
        return self._predictions([name], self.probs(arr[None]), k)[0]

    def predict_paths(self, paths: list[str], k: int = 5) -> list[Prediction | str]:
        """One Prediction per path, or the decode error message."""
        return self.predict_loaded([partial(load_rgb, p, self.img_size) for p in paths], paths, k)

    def predict_loaded(self, loaders: list[Callable[[], np.ndarray]], names: list[str], k: int = 5,
                       batch: int = 64) -> list[Prediction | str]:
        """One Prediction per image (``loaders[i]()`` gives its array), or the reason it could not be had; the model
        runs on batches, not image by image."""
        def load(f: Callable[[], np.ndarray]) -> np.ndarray | str:
            try:
                return f()
            except Exception as e:  # noqa: BLE001 - loaders raise DataError; keep any reason per image
                return str(e)

        out: list[Prediction | str] = []
        with ThreadPoolExecutor(max_workers=DECODERS) as pool:  # Pillow decodes without the GIL
            for start in range(0, len(loaders), batch):
                chunk = list(pool.map(load, loaders[start : start + batch]))
                good = [n for n, a in zip(names[start : start + batch], chunk) if not isinstance(a, str)]
                arrays = [a for a in chunk if not isinstance(a, str)]
                preds = iter(self._predictions(good, self.probs(np.stack(arrays)), k) if arrays else [])
                out += [a if isinstance(a, str) else next(preds) for a in chunk]
        return out


def export_dir(run_dir: Path) -> Path | None:
    """The run's ONNX export (RUN/export by default), if it exists."""
    d = run_dir / "export"
    try:
        m = Manifest.load(d)
    except ConfigError:
        return None
    return d if (d / m.files.get("onnx", "model.onnx")).is_file() else None


def _load(source: Path) -> tuple[str, object, Manifest]:
    manifest = Manifest.load(source)
    onnx = export_dir(source) or (source if "onnx" in manifest.files and (source / manifest.files["onnx"]).is_file()
                                  else None)
    if onnx is not None:
        from pixclass.inference import Predictor

        pred = Predictor.from_artifact(onnx)
        return "onnx", pred.predict_arrays, pred.manifest
    if not (source / "model.pt").is_file():
        raise ConfigError(f"{source} has neither an ONNX export nor model.pt.")
    from pixclass.models.embed import predict_probs  # torch only when there is no export
    from pixclass.models.registry import load_checkpoint

    model, _ = load_checkpoint(source)
    lock = threading.Lock()  # one torch forward at a time; torch already uses every core

    def fn(images: np.ndarray) -> np.ndarray:
        with lock:
            return predict_probs(model, images)

    return "torch", fn, manifest


class ModelCache:
    """Loaded models by run id or artifact directory; loads at most once per key."""

    def __init__(self, ws: Workspace) -> None:
        from pixclass.train.active import ProbCache

        self.ws = ws
        self._lock = threading.Lock()
        self._handles: dict[str, Handle] = {}
        self.scores = ProbCache()  # class probabilities per run and image: pre-labels and the label queue share them

    def serving_run_id(self, dataset: str | None = None) -> int | None:
        with self.ws.session() as s:
            ds = records.get_dataset(s, dataset) if dataset else None
            run = records.serving_run(s, ds)
            return run.id if run else None

    def resolve(self, *, run_id: int | None = None, artifact: str | None = None,
                dataset: str | None = None) -> tuple[str, Path, int | None]:
        """(cache key, directory, run id) for a run id, an artifact directory under WORKSPACE/runs, or the latest."""
        if artifact:
            root = self.ws.runs_dir.resolve()
            try:
                d = (root / artifact).resolve()
            except (ValueError, OSError):  # a NUL byte, a name too long
                d = root / "\0"
            if not d.is_relative_to(root) or "\0" in str(d) or not (d / "manifest.json").is_file():
                raise ConfigError(f"No artifact {artifact!r} under {root}. Give a path relative to the runs folder.")
            return f"artifact:{d}", d, None
        with self.ws.session() as s:
            if run_id is None:
                run = records.serving_run(s, records.get_dataset(s, dataset) if dataset else None)
                if run is None:
                    of = f" of dataset {dataset!r}" if dataset else ""
                    raise NotFittedError(f"No trained run{of} yet. Train one (POST /api/train or `pixclass train`).")
            else:
                run = s.get(Run, run_id)
                if run is None or run.status != "done":
                    raise ConfigError(f"No finished run with id {run_id}.")
            return f"run:{run.id}", Path(run.path), run.id

    def get(self, *, run_id: int | None = None, artifact: str | None = None, dataset: str | None = None) -> Handle:
        key, source, rid = self.resolve(run_id=run_id, artifact=artifact, dataset=dataset)
        with self._lock:  # loads are rare; holding the lock keeps two requests from loading the same model
            h = self._handles.get(key)
            if h is None:
                backend, fn, manifest = _load(source)
                version = records.model_version(rid) if rid is not None else f"pixclass-{source.name}"
                h = Handle(key, version, rid, source, manifest, backend, fn, *self._names_now(rid, manifest))
                self._handles[key] = h
                log.info("loaded %s (%s) from %s", key, backend, source)
            return h

    def _names_now(self, run_id: int | None, manifest: Manifest) -> tuple[tuple[str, ...], bool]:
        """(today's name of each class, multi-label?) for a run; renaming or merging classes calls forget()."""
        if run_id is None:  # an artifact directory stands alone
            return (), manifest.schema.task == "multilabel"
        with self.ws.session() as s:
            return records.run_class_names(s, s.get(Run, run_id), manifest.classes)

    def forget(self) -> None:
        with self._lock:
            self._handles.clear()


def runs_of(ws: Workspace, dataset: str | None = None) -> list[dict]:
    with ws.session() as s:
        q = select(Run).order_by(Run.id.desc()).limit(50)
        if dataset is not None:
            q = q.where(Run.dataset_id == records.get_dataset(s, dataset).id)
        serving = {}  # dataset id -> the run answering for it

        def serves(r: Run) -> bool:
            if r.dataset_id not in serving:
                run = records.serving_run(s, s.get(Dataset, r.dataset_id))
                serving[r.dataset_id] = run.id if run else None
            return serving[r.dataset_id] == r.id

        return [{"id": r.id, "dataset_id": r.dataset_id, "model": r.model, "mode": r.mode, "status": r.status,
                 "metrics": r.metrics, "created_at": r.created_at, "onnx": export_dir(Path(r.path)) is not None,
                 "serving": serves(r)} for r in s.scalars(q)]
