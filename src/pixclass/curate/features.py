"""One chunked pass over a dataset's images: pixel statistics, perceptual hashes, pixel hashes and embeddings.

Images come from the decoded-image cache in chunks, so memory is bounded by the chunk, not the dataset. A file
that no longer decodes is returned in ``broken`` and left out of every array.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.fft import dctn

from pixclass.curate.embeddings import Embedder
from pixclass.data.cache import ImageCache
from pixclass.data.embeddings import EmbeddingCache
from pixclass.errors import DataError
from pixclass.io.images import load_rgb
from pixclass.store import Workspace, records

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

STAT_NAMES = ("brightness", "p10", "p90", "sharpness", "entropy", "colorfulness")


@dataclass
class Features:
    items: list[records.Item]
    stats: dict[str, np.ndarray]  # name -> (N,) float32, names in STAT_NAMES
    phash: np.ndarray  # (N, 8) uint8: 64-bit DCT perceptual hash
    pixel_hash: list[str]  # blake2b of the decoded pixels at the curate size
    embeddings: np.ndarray  # (N, D) float32
    broken: list[tuple[records.Item, str]] = field(default_factory=list)


def luminance(images: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, S, S) float32 in 0..255."""
    return images @ np.array([0.299, 0.587, 0.114], np.float32)


def pixel_stats(images: np.ndarray, *, batch: int = 64) -> dict[str, np.ndarray]:
    """Per-image brightness (mean, 10th and 90th percentile of luminance), sharpness (log of Laplacian energy
    relative to the image's own variance, so darkening does not read as blur), entropy of the luminance
    histogram in bits, and colorfulness (mean absolute channel difference)."""
    parts = [_stats(images[i : i + batch]) for i in range(0, len(images), batch)]
    return {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, np.float32) for k in STAT_NAMES}


def _stats(images: np.ndarray) -> dict[str, np.ndarray]:
    lum = luminance(images)
    n = len(lum)
    flat = lum.reshape(n, -1)
    q = np.clip(flat, 0, 255).astype(np.int64)
    hist = np.bincount((q + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n).reshape(n, 256)
    hist = hist.astype(np.float64) / q.shape[1]
    cdf = hist.cumsum(1)
    p10, p90 = (cdf < 0.1).sum(1).astype(np.float32), (cdf < 0.9).sum(1).astype(np.float32)
    ent = -(hist * np.log2(np.where(hist > 0, hist, 1.0))).sum(1)
    lap = 4 * lum[:, 1:-1, 1:-1] - lum[:, :-2, 1:-1] - lum[:, 2:, 1:-1] - lum[:, 1:-1, :-2] - lum[:, 1:-1, 2:]
    sharp = np.log10(lap.reshape(n, -1).var(1) + 1.0) - np.log10(flat.var(1) + 1.0)
    r, g, b = (images[..., c].astype(np.int16) for c in range(3))
    color = (np.abs(r - g) + np.abs(g - b) + np.abs(r - b)).reshape(n, -1).mean(1) / 3.0
    return {"brightness": flat.mean(1), "p10": p10, "p90": p90, "sharpness": sharp, "entropy": ent,
            "colorfulness": color}


def phash(images: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes (N, 8) uint8: 8x8 low DCT frequencies of a 32x32 greyscale, above their median."""
    from PIL import Image

    small = np.zeros((len(images), 32, 32), np.float32)
    for i, a in enumerate(images):
        small[i] = np.asarray(Image.fromarray(a).convert("L").resize((32, 32), Image.BOX), np.float32)
    low = dctn(small, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(images), 64)
    bits = low > np.median(low[:, 1:], axis=1, keepdims=True)
    return np.packbits(bits, axis=1)


def _decode_chunk(cache: ImageCache, chunk: list[records.Item]) -> tuple[np.ndarray, list[records.Item], list]:
    """Arrays of a chunk; files that fail to decode are split off as (item, reason)."""
    try:
        return cache.get([it.path for it in chunk], [it.sha256 for it in chunk], workers=2), chunk, []
    except DataError:
        good, bad = [], []
        for it in chunk:
            try:
                load_rgb(it.path, 16)
                good.append(it)
            except DataError as e:
                bad.append((it, str(e)))
        arrays = cache.get([it.path for it in good], [it.sha256 for it in good], workers=2)
        return arrays, good, bad


def compute_features(ws: Workspace, items: list[records.Item], *, size: int, model: str, chunk: int = 2048,
                     progress: Progress | None = None) -> Features:
    """Decode (cached), measure, hash and embed (cached) every item, ``chunk`` images at a time."""
    cache = ImageCache(ws.cache_dir, size)
    store = EmbeddingCache(ws.cache_dir, model, size)
    embedder = Embedder(model, size)
    kept: list[records.Item] = []
    broken: list[tuple[records.Item, str]] = []
    stats: dict[str, list[np.ndarray]] = {k: [] for k in STAT_NAMES}
    hashes, pix = [], []
    n = len(items)
    for start in range(0, n, chunk):
        arrays, good, bad = _decode_chunk(cache, items[start : start + chunk])
        broken += bad
        kept += good
        for k, v in pixel_stats(arrays).items():
            stats[k].append(v.astype(np.float32))
        hashes.append(phash(arrays))
        pix += [hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest() for a in arrays]
        _, missing = store.lookup([it.sha256 for it in good])
        if missing:
            first: dict[str, int] = {}
            for i in missing:
                first.setdefault(good[i].sha256, i)
            store.add(list(first), embedder(arrays[list(first.values())]))
        if progress:
            progress("features", min(start + chunk, n), n)
    emb = store.lookup([it.sha256 for it in kept])[0] if kept else None
    emb = np.zeros((0, 1), np.float32) if emb is None else emb
    return Features(
        items=kept,
        stats={k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in stats.items()},
        phash=np.concatenate(hashes) if hashes else np.zeros((0, 8), np.uint8),
        pixel_hash=pix, embeddings=emb, broken=broken,
    )
