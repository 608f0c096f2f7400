"""Backbone embeddings of a dataset's images, computed once and cached on disk by content.

Layout: ``<workspace>/cache/emb-<model>-s<size>-<weights>.f32`` holds float32 rows of ``dim`` values, appended as new
images arrive; the ``.json`` beside it holds ``{"dim": D, "rows": {sha256: row}}``. Rows are keyed by image content,
so datasets (and features: active learning, dataset health) that share images share rows.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pixclass.data.cache import ImageCache, broken_entries, broken_message, cache_writer, file_size, trim
from pixclass.errors import DataError
from pixclass.store import Workspace, records

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (stage, done, total)

DEFAULT_MODEL = "mobilenetv2_100"  # offline ImageNet weights, ~240 img/s on 2 CPU cores at 224 px


def cached_backbone(config: dict) -> bool:
    """Whether a run trained with ``config`` (TrainConfig.to_dict()) has this cache's backbone: a linear head on the
    frozen ImageNet weights, so its embeddings are the cached ones and only the head needs applying."""
    return config.get("mode") == "linear" and config.get("pretrained", True) and not config.get("weights")


class EmbeddingCache:
    """Float32 embeddings (N, D) of one backbone at one resolution, memory-mapped from the workspace cache."""

    def __init__(self, directory: str | Path, model: str, size: int, *, weights: str = "imagenet") -> None:
        self.directory = Path(directory)
        self.model = model
        self.size = size
        self.weights = weights

    @property
    def _stem(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model)
        return f"emb-{safe}-s{self.size}-{self.weights}"

    @property
    def data_path(self) -> Path:
        return self.directory / f"{self._stem}.f32"

    @property
    def index_path(self) -> Path:
        return self.directory / f"{self._stem}.json"

    def _index(self) -> tuple[int, dict[str, int]]:
        try:
            d = json.loads(self.index_path.read_text())
            return int(d["dim"]), dict(d["rows"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            return 0, {}

    def lookup(self, hashes: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
        """(embeddings with NaN rows for the missing, positions of the missing). None when nothing is cached."""
        dim, rows = self._index()
        missing = [i for i, h in enumerate(hashes) if h not in rows]
        if not dim or not rows:
            return None, list(range(len(hashes)))
        if file_size(self.data_path) < len(rows) * dim * 4:  # bytes past the index (an append under way) are fine
            with cache_writer(self.data_path):
                dim, rows = self._index()
                if file_size(self.data_path) < len(rows) * dim * 4:
                    log.warning("embedding cache %s is shorter than its index; rebuilding it", self.data_path)
                    self.clear()
            return self.lookup(hashes)
        data = np.memmap(self.data_path, dtype=np.float32, mode="r", shape=(len(rows), dim))
        out = np.full((len(hashes), dim), np.nan, np.float32)
        have = [i for i, h in enumerate(hashes) if h in rows]
        if have:
            out[have] = data[[rows[hashes[i]] for i in have]]
        return out, missing

    def add(self, hashes: Sequence[str], embeddings: np.ndarray) -> None:
        """Append rows for ``hashes`` (already-cached hashes are skipped)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        with cache_writer(self.data_path):  # the index as it is now: another writer may have added rows meanwhile
            dim, rows = self._index()
            if dim and embeddings.shape[1] != dim:
                raise DataError(f"{self.index_path}: cached embeddings have {dim} dims, new ones "
                                f"{embeddings.shape[1]}. Delete the file to rebuild the cache.")
            new: dict[str, int] = {}  # hash -> its first position; a hash given twice gets one row
            for i, h in enumerate(hashes):
                if h not in rows:
                    new.setdefault(h, i)
            if not new:
                return
            trim(self.data_path, len(rows) * dim * 4)
            with self.data_path.open("ab") as f:
                for h, i in new.items():
                    f.write(embeddings[i].tobytes())
                    rows[h] = len(rows)
            tmp = self.index_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"dim": int(embeddings.shape[1]), "rows": rows}))
            os.replace(tmp, self.index_path)

    def clear(self) -> None:
        self.data_path.unlink(missing_ok=True)
        self.index_path.unlink(missing_ok=True)


def agrees_with_cache(ws: Workspace, net, items: Sequence[records.Item], *, model: str, img_size: int) -> bool:
    """Whether ``net`` (a Classifier: a run's, or one just built) gives the cached embeddings of ``items``, checked
    on the oldest and the newest cached row among them (two images through the backbone, in float32 torch).

    Rows are keyed by model, size and "imagenet", but which ImageNet weights a model gets depends on what is
    installed (an offline package, timm's cache, the hub): a row made with other weights must never meet a head
    fitted on this backbone. True when none of the items is cached (what is computed now is this backbone's)."""
    import torch

    from pixclass.io.images import normalize

    cache = EmbeddingCache(ws.cache_dir, model, img_size)
    rows = cache._index()[1]
    have = [it for it in items if it.sha256 in rows]
    if not have:
        return True
    picks = list({rows[it.sha256]: it for it in (min(have, key=lambda it: rows[it.sha256]),
                                                 max(have, key=lambda it: rows[it.sha256]))}.values())
    images, broken = ImageCache(ws.cache_dir, img_size).get_decodable([it.path for it in picks],
                                                                      [it.sha256 for it in picks])
    picks = [it for j, it in enumerate(picks) if j not in broken]
    if not picks:
        return True
    cached, _ = cache.lookup([it.sha256 for it in picks])
    with torch.inference_mode():
        mine = net.backbone.eval()(torch.from_numpy(normalize(images, net.mean, net.std))).float().numpy()
    same = bool(np.allclose(mine, cached, rtol=1e-3, atol=1e-3))
    if not same:
        log.warning("%s: the cached embeddings of %s at %d px were made with other weights than this backbone's "
                    "(largest difference %.3g)", cache.data_path, model, img_size, float(np.abs(mine - cached).max()))
    return same


def embed_items(ws: Workspace, items: Sequence[records.Item], *, model: str = DEFAULT_MODEL, img_size: int = 224,
                workers: int = 2, progress: Progress | None = None) -> np.ndarray:
    """Embeddings (N, D) float32 of the given images with ``model``'s ImageNet backbone; only uncached ones are run.

    A file that no longer decodes raises a DataError naming every such file; ``embed_decodable`` skips them."""
    emb, broken = embed_decodable(ws, items, model=model, img_size=img_size, workers=workers, progress=progress)
    if broken:
        raise DataError(broken_message(broken_entries([it.path for it in items], broken)))
    return emb


def embed_decodable(ws: Workspace, items: Sequence[records.Item], *, model: str = DEFAULT_MODEL,
                    img_size: int = 224, workers: int = 2,
                    progress: Progress | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """(embeddings (M, D) float32 of the items whose image decodes, in the given order; {position: reason} of the
    items whose file no longer decodes). Cached embeddings are used whatever the file's state now."""
    cache = EmbeddingCache(ws.cache_dir, model, img_size)
    hashes = [it.sha256 for it in items]
    out, missing = cache.lookup(hashes)
    if not missing:
        return (out if out is not None else np.zeros((0, 0), np.float32)), {}
    todo = [items[i] for i in missing]
    images, failed = ImageCache(ws.cache_dir, img_size).get_decodable(
        [it.path for it in todo], [it.sha256 for it in todo], workers=workers,
        progress=(lambda d, t: progress("decode", d, t)) if progress else None)
    broken = {missing[j]: reason for j, reason in failed.items()}
    done = [i for j, i in enumerate(missing) if j not in failed]
    if done:
        from pixclass.models import create_model
        from pixclass.models.embed import run_batches

        net = create_model(model, pretrained=True, num_classes=2)
        emb = run_batches(net.backbone, images, net.mean, net.std,
                          progress=(lambda d, t: progress("embed", d, t)) if progress else None)
        cache.add([items[i].sha256 for i in done], emb)
        log.info("embedded %d images with %s at %d px (%d were cached)", len(done), model, img_size,
                 len(items) - len(missing))
        if out is None:
            out = np.empty((len(items), emb.shape[1]), np.float32)
        out[done] = emb
    if out is None:  # nothing cached and nothing decodes
        return np.zeros((0, 0), np.float32), broken
    return (out[[i for i in range(len(items)) if i not in broken]] if broken else out), broken


def embed_dataset(ws: Workspace, dataset: str, model: str = DEFAULT_MODEL, img_size: int = 224, *,
                  splits: Sequence[str] | None = None, labeled: bool | None = None, workers: int = 2,
                  progress: Progress | None = None) -> tuple[list[records.Item], np.ndarray]:
    """(items, embeddings (N, D) float32) of a dataset's non-excluded images, in image-id order.

    ``splits``: only these splits (None: every image, including those without a split); ``labeled``: True for
    labeled images only, False for unlabeled only, None for both. Embeddings are cached by model, size and sha256.
    """
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        its = records.items(s, ds, labeled=labeled)
    if splits is not None:
        its = [it for it in its if it.split in set(splits)]
    if not its:
        return [], np.zeros((0, 0), np.float32)
    return its, embed_items(ws, its, model=model, img_size=img_size, workers=workers, progress=progress)
