"""The work behind background jobs and uploads: pre-labeling with a run, training, storing uploaded images."""

from __future__ import annotations

import logging
import os
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select

from pixclass.data.cache import ImageCache
from pixclass.data.embeddings import cached_backbone
from pixclass.decision import decide
from pixclass.errors import DataError
from pixclass.io.images import probe
from pixclass.server.models import ModelCache
from pixclass.store import Workspace, records
from pixclass.store.tables import Image, Prediction

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
BATCH = 64  # images the loaded model predicts at once (reuse_scores=False)
CHUNK = 1024  # images a run's whole network scores and stores at once: bounds the decoded images in memory


def prelabel(ws: Workspace, cache: ModelCache, dataset: str, *, run_id: int | None = None,
             image_ids: list[int] | None = None, only_missing: bool = False,
             progress: Progress | None = None, reuse_scores: bool = True) -> dict:
    """Predict the images of ``dataset`` with a run (default: the dataset's serving run) and store Prediction rows:
    all of them, those in ``image_ids``, or (``only_missing``) those the run has no suggestion for yet.

    Predictions are suggestions only: they never touch human or imported annotations. Scores go through the
    server's ProbCache (``cache.scores``), which the label queue reads too, so the queue after a retrain finds the
    new run's scores computed; a linear run on ImageNet weights only applies its head to the cached embeddings.
    ``reuse_scores=False`` runs the loaded model over every image, 64 at a time (bench/'s reference).
    """
    handle = cache.get(run_id=run_id, dataset=None if run_id else dataset)
    if handle.run_id is None:
        raise DataError("Pre-labels are stored per run; choose a run, not an artifact directory.")
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        q = select(Image.id, Image.path, Image.sha256).where(Image.dataset_id == ds.id).order_by(Image.id)
        if image_ids is not None:
            q = q.where(Image.id.in_(image_ids))
        if only_missing:
            q = q.where(Image.id.not_in(select(Prediction.image_id).where(Prediction.run_id == handle.run_id)))
        rows = s.execute(q).all()
    k = len(handle.classes)
    icache = ImageCache(ws.cache_dir, handle.img_size)
    head_only = cached_backbone({**handle.manifest.config, "mode": handle.manifest.mode})

    def by_model(images: list, start: int) -> tuple[np.ndarray, dict[int, str]]:
        """The loaded model (its ONNX export when there is one) over these images (rows or Items), in batches."""
        arrays, broken = icache.get_decodable([r.path for r in images], [r.sha256 for r in images], workers=2)
        out = []
        for i in range(0, len(arrays), BATCH):
            out.append(handle.probs(arrays[i : i + BATCH]))
            if progress and reuse_scores:
                progress("predict", start + min(i + BATCH, len(arrays)), len(rows))
        return (np.concatenate(out) if out else np.zeros((0, k), np.float32)), broken

    # a run's head over cached embeddings takes every image at once: the checkpoint loaded, the backbone checked and
    # (for images not embedded yet) exported once, as the queue's embedding job does
    step = BATCH if not reuse_scores else max(len(rows), 1) if head_only else CHUNK
    stored, failed = 0, []
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        # a file changed or broke since import is skipped and named; the rest of the chunk is predicted
        if not reuse_scores:
            probs, broken = by_model(chunk, start)
        else:
            def embed_progress(stage: str, done: int, total: int, start=start, n=len(chunk)) -> None:
                if progress and stage == "embed":  # this chunk's share of the whole
                    progress("predict", start + done * n // max(total, 1), len(rows))

            items = [records.Item(r.id, r.path, r.sha256, (), None) for r in chunk]
            compute = None if head_only else (lambda its, at=start: by_model(its, at))  # those not scored yet
            probs, broken = cache.scores.probs(ws, handle.source, items, progress=embed_progress, compute=compute)
        failed += [{"path": chunk[j].path, "reason": why} for j, why in broken.items()]
        good = [r for j, r in enumerate(chunk) if j not in broken]
        with ws.session() as s:
            s.execute(delete(Prediction).where(Prediction.run_id == handle.run_id,
                                               Prediction.image_id.in_([r.id for r in chunk])))
            now, _ = handle.current(np.asarray(probs))
            for r, p, (labels, score) in zip(good, probs, suggestions(handle, now)):  # probs as the run has them;
                s.add(Prediction(image_id=r.id, run_id=handle.run_id, labels=list(labels), score=score,  # labels in
                                 probs=[round(float(v), 5) for v in p]))  # today's names
        stored += len(good)
        if progress:
            progress("predict", min(start + step, len(rows)), len(rows))
    return {"dataset": dataset, "run_id": handle.run_id, "predicted": stored, "failed": len(failed),
            "broken": failed}


def train_and_prelabel(ws: Workspace, cache: ModelCache, dataset: str, params: dict,
                       progress: Progress | None = None) -> dict:
    """Train a run (linear mode by default: fast enough to retrain while labeling), then pre-label with it."""
    from pixclass.config import TrainConfig
    from pixclass.train.run import train

    cfg = TrainConfig(**params)
    res = train(ws, dataset, cfg, progress=progress)
    with ws.session() as s:
        run = records.latest_run(s, records.get_dataset(s, dataset))
        run_id = run.id if run else None
    out = {"run": str(res.run), "run_id": run_id, "metrics": res.metrics, "seconds": res.seconds}
    if run_id is not None:
        out["prelabel"] = prelabel(ws, cache, dataset, run_id=run_id, progress=progress)
    return out


def suggestions(handle, probs: np.ndarray) -> list[tuple[tuple[str, ...], float]]:
    """Per row of ``probs`` (today's classes): the suggested labels and their score, as /api/predict decides
    (multi-label: every tag above its threshold, possibly none; binary: the tuned operating threshold; multi-class:
    the top class), except hierarchical runs, which suggest their top leaf."""
    schema, thresholds = handle.decision_rule()
    if schema.task == "hierarchical":  # an inner node is not a class the picker offers: the top leaf
        return [((schema.classes[int(np.argmax(q))],), float(np.max(q))) for q in probs]
    return decide(probs, schema, thresholds) if len(probs) else []


@dataclass
class UploadResult:
    dataset: str
    added: list[int] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "added": self.added, "duplicates": self.duplicates,
                "rejected": self.rejected}


def safe_name(name: str) -> str:
    """A file name with no directories and only harmless characters: letters and digits of any script (NFC), '.',
    '-' and '_'; at most 150 bytes of UTF-8, so that any file system takes it."""
    base = Path(unicodedata.normalize("NFC", name).replace("\\", "/")).name
    base = re.sub(r"[^\w.-]+", "_", base).lstrip(".")
    stem, suffix = os.path.splitext(base)
    suffix = suffix[:12]
    return stem.encode()[: 150 - len(suffix.encode())].decode(errors="ignore") + suffix or "upload"


def _split_for(sha256: str) -> str:
    """A stable 80/10/10 split from the file's hash."""
    v = int(sha256[:8], 16) % 10
    return "train" if v < 8 else "val" if v == 8 else "test"


def store_uploads(ws: Workspace, dataset: str, files: Iterable[tuple[str, bytes]]) -> UploadResult:
    """Write uploaded images under WORKSPACE/uploads/DATASET/ and register them (unlabeled).

    Files that do not decode are rejected with the reason and not kept; duplicates (same sha256) are skipped.
    """
    res = UploadResult(dataset)
    folder = (ws.root / "uploads" / safe_name(dataset)).resolve()
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        folder.mkdir(parents=True, exist_ok=True)
        _, hashes = records.known_paths_and_hashes(s, ds)
        for name, data in files:
            path = folder / f"{uuid.uuid4().hex[:8]}_{safe_name(name)}"
            path.write_bytes(data)
            try:
                info = probe(path)
            except DataError as e:
                path.unlink(missing_ok=True)
                reason = str(e).replace(str(path), name)  # the upload is not kept: nothing to re-copy
                reason = reason.replace(" Re-copy it or delete it.", "").replace(" Re-copy or delete it.", "")
                res.rejected.append({"name": name, "reason": reason})
                continue
            except BaseException:  # nothing left behind in uploads/ whatever happens
                path.unlink(missing_ok=True)
                raise
            if info.sha256 in hashes:
                path.unlink(missing_ok=True)
                res.duplicates += 1
                continue
            hashes.add(info.sha256)
            im = Image(dataset_id=ds.id, path=str(path), sha256=info.sha256, width=info.width, height=info.height,
                       format=info.format, split=_split_for(info.sha256))
            s.add(im)
            s.flush()
            res.added.append(im.id)
    return res
