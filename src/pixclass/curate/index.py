"""Similarity search with faiss (MIT): k nearest neighbours of embeddings, and Hamming-radius pairs of hashes.

Embeddings are L2-normalised so inner product is cosine similarity. Above ``exact_limit`` images the search runs
in a 128-d PCA space on an HNSW graph; the similarities returned are always recomputed exactly in full space.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

EXACT_LIMIT = 20_000  # below this a brute-force flat index is fast and exact
PCA_DIM = 128


def normalize_rows(x: np.ndarray) -> np.ndarray:
    return (x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def knn(emb: np.ndarray, k: int, *, exact_limit: int = EXACT_LIMIT, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of every row of L2-normalised ``emb`` (N, D), itself left out.

    Returns (sims (N, k) cosine similarity, best first, idx (N, k) row numbers; -1 where fewer exist).
    """
    import faiss

    n = len(emb)
    k = max(0, min(k, n - 1))
    if k == 0:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    x = np.ascontiguousarray(emb, np.float32)
    if n <= exact_limit:
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        _, idx = index.search(x, k + 1)
    else:
        d = min(PCA_DIM, x.shape[1])
        pca = faiss.PCAMatrix(x.shape[1], d)
        rng = np.random.default_rng(seed)
        pca.train(x[rng.choice(n, min(n, 20_000), replace=False)])
        y = normalize_rows(pca.apply(x))
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        index.add(y)
        index.hnsw.efSearch = max(64, 2 * k)
        _, idx = index.search(y, k + 1)
    idx = _drop_self(idx, k)
    sims = np.empty(idx.shape, np.float32)
    for s in range(0, n, 2048):  # in row blocks: x[idx] for all rows at once would be N*k*D floats
        block = idx[s : s + 2048]
        sims[s : s + 2048] = np.einsum("nd,nkd->nk", x[s : s + 2048], x[np.where(block >= 0, block, 0)])
    sims[idx < 0] = -1.0
    order = np.argsort(-sims, axis=1)
    return np.take_along_axis(sims, order, 1), np.take_along_axis(idx, order, 1)


def _drop_self(idx: np.ndarray, k: int) -> np.ndarray:
    n = len(idx)
    out = np.full((n, k), -1, np.int64)
    for i in range(n):
        row = [j for j in idx[i] if j != i and j >= 0][:k]
        out[i, : len(row)] = row
    return out


def hamming_pairs(codes: np.ndarray, max_bits: int) -> list[tuple[int, int, int]]:
    """Pairs (i, j, distance) with i < j whose binary codes (N, B) uint8 differ in at most ``max_bits`` bits."""
    import faiss

    n = len(codes)
    if n < 2:
        return []
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(np.ascontiguousarray(codes))
    out = []
    for start in range(0, n, 8192):
        lims, dist, ids = index.range_search(np.ascontiguousarray(codes[start : start + 8192]), max_bits + 1)
        for q in range(len(lims) - 1):
            i = start + q
            for d, j in zip(dist[lims[q] : lims[q + 1]], ids[lims[q] : lims[q + 1]]):
                if j > i and d <= max_bits:
                    out.append((i, int(j), int(d)))
    return out
