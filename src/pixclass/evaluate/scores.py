"""A trained run's class probabilities for registered images, as ``pixclass predict`` gives them.

A linear run on ImageNet weights applies only its head to the workspace's cached embeddings; any other run goes
through its whole network (ONNX, float32) over the decoded-image cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pixclass.artifact import Manifest
from pixclass.data.cache import ImageCache, broken_entries, broken_message
from pixclass.data.embeddings import agrees_with_cache, cached_backbone, embed_decodable
from pixclass.data.splits import SplitData
from pixclass.errors import DataError
from pixclass.store import Workspace, records

Progress = Callable[[str, int, int], None]


def _probs(model, logits: np.ndarray) -> np.ndarray:
    """Class probabilities (N, K) from the network's (or head's) outputs, as ``pixclass predict`` computes them:
    the model's own ``probs`` (softmax, or an independent sigmoid per class for multi-label runs)."""
    import torch

    with torch.no_grad():
        return model.probs(torch.from_numpy(np.ascontiguousarray(logits, np.float32))).float().numpy()


def run_probs(ws: Workspace, run_dir: str | Path, items: list[records.Item], *, workers: int = 2,
              progress: Progress | None = None) -> np.ndarray:
    """Class probabilities (N, K) of a trained run for the given images (rows of a multi-label run are independent
    sigmoids and need not sum to 1).

    Linear runs on pretrained weights reuse the cached embeddings (only the head is applied); other runs go through
    the whole network over the decoded-image cache. A file that no longer decodes raises a DataError naming it;
    ``decodable_probs`` skips such files instead."""
    probs, broken = decodable_probs(ws, run_dir, items, workers=workers, progress=progress)
    if broken:
        raise DataError(broken_message(broken_entries([it.path for it in items], broken)))
    return probs


def decodable_probs(ws: Workspace, run_dir: str | Path, items: list[records.Item], *, workers: int = 2,
                    progress: Progress | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """(class probabilities (M, K) of the items whose image decodes, in order; {position: reason} of the others).

    Probabilities are those ``pixclass predict`` gives with the same run: softmax rows, or for a multi-label run one
    sigmoid per class (see pixclass.decision)."""
    from pixclass.models.embed import head_probs, run_batches
    from pixclass.models.registry import load_checkpoint

    m = Manifest.load(run_dir)
    if not items:
        return np.zeros((0, len(m.classes)), np.float32), {}
    model, _ = load_checkpoint(run_dir)
    if cached_backbone({**m.config, "mode": m.mode}):
        emb, broken = embed_decodable(ws, items, model=m.model, img_size=m.preprocess.img_size, workers=workers,
                                      progress=progress)
        if not len(emb):
            return np.zeros((0, len(m.classes)), np.float32), broken
        if agrees_with_cache(ws, model, items, model=m.model, img_size=m.preprocess.img_size):
            return head_probs(model, emb), broken
    images, broken = ImageCache(ws.cache_dir, m.preprocess.img_size).get_decodable(
        [it.path for it in items], [it.sha256 for it in items], workers=workers)
    if not len(images):
        return np.zeros((0, len(m.classes)), np.float32), broken
    logits = run_batches(model, images, model.mean, model.std,
                         progress=(lambda d, t: progress("predict", d, t)) if progress else None)
    return _probs(model, logits), broken


def probs_for(ws: Workspace, run_dir: Path, manifest: Manifest, part: SplitData, *,
              progress: Progress | None = None) -> np.ndarray:
    """Probabilities for a split's images: ``run_probs`` for a run directory (its checkpoint; a linear run only
    applies its head to the cached embeddings), model.onnx on the decoded images for an exported artifact."""
    if (run_dir / "model.pt").is_file():
        return run_probs(ws, run_dir, part.items, progress=progress)
    from pixclass.io.images import normalize
    from pixclass.models.embed import ort_session

    sess = ort_session(run_dir / manifest.files.get("onnx", "model.onnx"))
    pre = manifest.preprocess
    return np.concatenate([sess.run(None, {"input": normalize(part.images[i : i + 64], pre.mean, pre.std)})[0]
                           for i in range(0, len(part.images), 64)])
