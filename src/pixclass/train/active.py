"""Active learning: which unlabeled images to label next, and retraining after every N new labels.

Strategies (``probs`` is (N, K) class probabilities, higher score = ask sooner):
  least_confidence  1 - max_k p
  margin            1 - (p_top1 - p_top2)          the smaller the gap between the two best classes, the sooner
  entropy           -sum_k p log p
  balanced_margin   margin, taken in turn from each predicted class (most uncertain first), so one batch does not
                    pile onto a single confusion pair
  kcenter           core-set diversity: greedy k-center on backbone embeddings (Sener & Savarese, 2018)
  random            a seeded shuffle, the baseline
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pixclass.artifact import Manifest
from pixclass.config import TrainConfig
from pixclass.data.cache import keep_decodable
from pixclass.data.embeddings import DEFAULT_MODEL, EmbeddingCache, embed_decodable
from pixclass.errors import ConfigError, DataError
from pixclass.evaluate.scores import decodable_probs
from pixclass.store import Workspace, records
from pixclass.store.tables import Annotation, Dataset, Image

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

UNCERTAINTY = ("least_confidence", "margin", "entropy", "balanced_margin")
STRATEGIES = (*UNCERTAINTY, "kcenter", "random")
ALIASES = {"least-confidence": "least_confidence", "leastconfidence": "least_confidence", "lc": "least_confidence",
           "confidence": "least_confidence", "coreset": "kcenter", "core-set": "kcenter", "k-center": "kcenter",
           "k_center": "kcenter", "diversity": "kcenter",
           "balanced-margin": "balanced_margin", "margin_balanced": "balanced_margin",
           "margin-balanced": "balanced_margin", "cbmargin": "balanced_margin", "balanced": "balanced_margin"}


def check_strategy(name: str) -> str:
    """The canonical strategy name; an unknown one raises ConfigError with close matches."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in STRATEGIES:
        return key
    close = difflib.get_close_matches(key, [*STRATEGIES, *ALIASES], n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"Unknown active-learning strategy {name!r}.{hint} Use one of: {', '.join(STRATEGIES)}.")


# ---------------------------------------------------------------- scores and queries (pure numpy)

def uncertainty(probs: np.ndarray, strategy: str, *, multilabel: bool = False) -> np.ndarray:
    """Informativeness (N,) of each row of ``probs`` (N, K); higher = label sooner. ``multilabel``: the rows are
    independent per-class probabilities, so each class is scored as a yes/no question and the scores averaged (an
    image sure of two tags is not uncertain)."""
    if multilabel:
        p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
        if p.ndim != 2:
            raise DataError(f"probs must be (N, K). Got shape {p.shape}.")
        return uncertainty(np.stack([1 - p, p], -1).reshape(-1, 2), strategy).reshape(p.shape).mean(1)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataError(f"probs must be (N, K) with K >= 2 classes. Got shape {p.shape}.")
    strategy = check_strategy(strategy)
    if strategy == "least_confidence":
        return 1.0 - p.max(1)
    if strategy in ("margin", "balanced_margin"):
        top2 = np.sort(p, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if strategy == "entropy":
        return -(p * np.log(np.clip(p, 1e-12, None))).sum(1)
    raise ConfigError(f"{strategy!r} is not an uncertainty strategy; use one of {', '.join(UNCERTAINTY)}.")


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def _min_sq_dist(x: np.ndarray, centers: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Squared distance of each row of x to its nearest row of centers (both L2-normalised)."""
    out = np.full(len(x), np.inf, np.float32)
    for s in range(0, len(centers), chunk):
        sims = x @ centers[s : s + chunk].T
        out = np.minimum(out, (2.0 - 2.0 * sims).min(1))
    return np.clip(out, 0.0, None)


def k_center_greedy(embeddings: np.ndarray, n: int, *, labeled: np.ndarray | None = None,
                    seed: int = 0) -> np.ndarray:
    """Greedy k-center: ``n`` row indices of ``embeddings`` (N, D), each the point farthest from everything chosen
    so far (and from ``labeled`` (M, D), the already-labeled embeddings). Cosine geometry (rows are L2-normalised)."""
    x = _normalize(embeddings)
    n = min(n, len(x))
    if n <= 0:
        return np.zeros(0, np.int64)
    if labeled is not None and len(labeled):
        dist = _min_sq_dist(x, _normalize(labeled))
        first = None
    else:
        dist = np.full(len(x), np.inf, np.float32)
        first = int(np.random.default_rng(seed).integers(len(x)))
    chosen: list[int] = []
    for _ in range(n):
        i = first if first is not None and not chosen else int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.clip(2.0 - 2.0 * (x @ x[i]), 0.0, None))
        dist[i] = -1.0  # never picked twice
    return np.asarray(chosen, np.int64)


def _round_robin(order: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` of ``order`` taken one group at a time: each group's best, then each group's second best...
    (groups in order of their best member)."""
    g = groups[order]
    rank = np.zeros(len(order), np.int64)  # position of each row within its group's ordering
    for k in np.unique(g):
        rank[g == k] = np.arange((g == k).sum())
    return order[np.lexsort((np.arange(len(order)), rank))][:n]


def query(strategy: str, n: int, *, probs: np.ndarray | None = None, embeddings: np.ndarray | None = None,
          labeled_embeddings: np.ndarray | None = None, seed: int = 0, multilabel: bool = False) -> np.ndarray:
    """Indices of the ``n`` pool rows to label next, most informative first.

    Uncertainty strategies need ``probs`` (N, K); kcenter needs ``embeddings`` (N, D) (and ``labeled_embeddings``);
    random needs neither (pass one of them for N)."""
    strategy = check_strategy(strategy)
    if strategy in UNCERTAINTY:
        if probs is None:
            raise ConfigError(f"Strategy {strategy!r} needs class probabilities from a trained model.")
        scores = uncertainty(probs, strategy, multilabel=multilabel)
        order = np.lexsort((np.arange(len(scores)), -scores))  # stable: ties keep pool order
        if strategy == "balanced_margin":
            return _round_robin(order, np.asarray(probs).argmax(1), n)
        return order[:n]
    if strategy == "kcenter":
        if embeddings is None:
            raise ConfigError("Strategy 'kcenter' needs embeddings of the pool.")
        return k_center_greedy(embeddings, n, labeled=labeled_embeddings, seed=seed)
    size = len(probs) if probs is not None else len(embeddings) if embeddings is not None else 0
    return np.random.default_rng(seed).permutation(size)[:n]


# ---------------------------------------------------------------- the "next to label" queue of a dataset

class EmbeddingsNeeded(Exception):
    """Raised by ``label_queue`` (with ``max_new_embeddings``) when diversity order needs more images embedded than
    the caller wants to wait for: ``items`` are the images to embed (with ``model`` at ``img_size``) first."""

    def __init__(self, items: list[records.Item], model: str, img_size: int, missing: int) -> None:
        super().__init__(f"{missing} images to embed first")
        self.items, self.model, self.img_size, self.missing = items, model, img_size, missing


@dataclass(frozen=True)
class Queue:
    """Unlabeled images in the order to label them. ``scores``: informativeness (NaN for random/kcenter)."""

    image_ids: list[int]
    scores: list[float]
    strategy: str  # the strategy actually used (kcenter when an uncertainty strategy had no model yet)
    run_id: int | None

    def to_dict(self) -> dict:
        return {"image_ids": self.image_ids, "scores": self.scores, "strategy": self.strategy, "run_id": self.run_id}


class ProbCache:
    """``decodable_probs`` kept per image (id and content hash) for the ``runs`` runs used last. A server asks for
    the queue of the same run again and again while people label; after the first time only images it has not
    scored (new uploads) are computed. Thread-safe; a file that broke since it was scored keeps its old scores."""

    def __init__(self, runs: int = 2) -> None:
        self.runs = runs
        self._entries: OrderedDict[tuple, dict[tuple[int, str], np.ndarray | str]] = OrderedDict()
        self._lock = threading.Lock()

    def probs(self, ws: Workspace, run_dir: str | Path, items: list[records.Item], *,
              progress: Progress | None = None,
              compute: Callable[[list[records.Item]], tuple[np.ndarray, dict[int, str]]] | None = None,
              ) -> tuple[np.ndarray, dict[int, str]]:
        """As ``decodable_probs``; ``compute(items)`` scores the images not kept yet in its place (a caller that
        has the run loaded already)."""
        weights = Path(run_dir) / "model.pt"
        key = (str(Path(run_dir).resolve()), weights.stat().st_mtime_ns if weights.exists() else None)
        with self._lock:
            known = self._entries.setdefault(key, {})
            self._entries.move_to_end(key)
            while len(self._entries) > self.runs:
                self._entries.popitem(last=False)
        missing = [it for it in items if (it.image_id, it.sha256) not in known]
        if missing:
            probs, broken = (compute(missing) if compute else decodable_probs(ws, run_dir, missing, progress=progress))
            scored = iter(probs)
            for pos, it in enumerate(missing):
                known[(it.image_id, it.sha256)] = broken[pos] if pos in broken else next(scored)
        rows, broken = [], {}
        for pos, it in enumerate(items):
            v = known[(it.image_id, it.sha256)]
            if isinstance(v, str):
                broken[pos] = v
            else:
                rows.append(v)
        if not rows:
            return np.zeros((0, len(Manifest.load(run_dir).classes)), np.float32), broken
        return np.stack(rows), broken


def label_queue(ws: Workspace, dataset: str, strategy: str = "margin", n: int = 50, *,
                run_dir: str | Path | None = None, model: str = DEFAULT_MODEL, img_size: int = 224, seed: int = 0,
                progress: Progress | None = None, cache: ProbCache | None = None,
                pool: Callable[[Session, Dataset], list[records.Item]] | None = None,
                max_new_embeddings: int | None = None) -> Queue:
    """The ``n`` unlabeled images of ``dataset`` to label next, by ``strategy``, scored with the serving run (or
    ``run_dir``). Before any run exists, uncertainty strategies fall back to kcenter diversity. ``cache`` keeps the
    run's scores between calls; ``pool`` gives the unlabeled images (default ``records.items(labeled=False)``).
    With ``max_new_embeddings``, diversity order that would embed more images than that raises EmbeddingsNeeded."""
    strategy = check_strategy(strategy)
    if n < 1:
        raise ConfigError(f"The 'n' option must be a positive integer. Got {n}.")
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        pool = pool(s, ds) if pool is not None else records.items(s, ds, labeled=False)
        run = records.serving_run(s, ds) if run_dir is None else None
        run_id = run.id if run else None
        if run is not None:
            run_dir = run.path
    if not pool:
        return Queue([], [], strategy, run_id)
    used, scores = strategy, None
    if strategy in UNCERTAINTY and run_dir is None:
        log.info("no trained run for %s yet: ordering by kcenter diversity instead of %s", dataset, strategy)
        used = "kcenter"
    if used in UNCERTAINTY:  # files that no longer decode are left out of the queue (logged), not an error
        score = cache.probs if cache is not None else decodable_probs
        probs, broken = score(ws, run_dir, pool, progress=progress)
        pool = keep_decodable(pool, broken)[0]
        multilabel = Manifest.load(run_dir).schema.task == "multilabel"
        scores = uncertainty(probs, used, multilabel=multilabel)
        order = query(used, n, probs=probs, multilabel=multilabel)
    elif used == "kcenter":
        # the centres: labeled images not asked again (a pool image may have a vote and wait for the next one: it is
        # a candidate, not a centre)
        asked = {it.image_id for it in pool}
        with ws.session() as s:
            labeled = [it for it in records.items(s, records.get_dataset(s, dataset), labeled=True)
                       if it.image_id not in asked]
        if max_new_embeddings is not None:
            missing = len(EmbeddingCache(ws.cache_dir, model, img_size).lookup([it.sha256 for it in pool + labeled])[1])
            if missing > max_new_embeddings:
                raise EmbeddingsNeeded(pool + labeled, model, img_size, missing)
        emb, broken = embed_decodable(ws, pool + labeled, model=model, img_size=img_size, progress=progress)
        pool = keep_decodable(pool, {i: r for i, r in broken.items() if i < len(pool)})[0]
        order = query("kcenter", n, embeddings=emb[: len(pool)], labeled_embeddings=emb[len(pool):], seed=seed)
    else:
        order = query("random", n, probs=np.zeros((len(pool), 2)), seed=seed)
    return Queue([pool[i].image_id for i in order],
                 [float(scores[i]) if scores is not None else float("nan") for i in order], used, run_id)


def next_to_label(ws: Workspace, dataset: str, strategy: str = "margin", n: int = 50, **kwargs) -> list[int]:
    """Image ids of the ``n`` unlabeled images to label next (see ``label_queue``)."""
    return label_queue(ws, dataset, strategy, n, **kwargs).image_ids


# ---------------------------------------------------------------- retrain after every N new labels

def labels_since_last_run(ws: Workspace, dataset: str) -> int:
    """Images of ``dataset`` given a human label since its latest finished run (all labeled images if none).
    Accepted model suggestions do not count: retraining on the model's own labels teaches it nothing new, and a bulk
    accept that is undone should not leave a run trained on it."""
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        run = records.latest_run(s, ds)
        if run is None:
            return len(records.items(s, ds, labeled=True))
        q = (select(func.count(func.distinct(Annotation.image_id)))
             .join(Image, Image.id == Annotation.image_id)
             .where(Image.dataset_id == ds.id, Annotation.source == "human", Annotation.from_run.is_(None),
                    Annotation.created_at > run.created_at))
        return int(s.scalar(q) or 0)


def retrain_if_due(ws: Workspace, dataset: str, every: int = 50, *, cfg: TrainConfig | None = None,
                   progress: Progress | None = None):
    """Train a new run (linear mode by default: seconds once embeddings are cached) when at least ``every`` images
    got human labels since the latest run. Returns the RunResult, or None when not due yet."""
    from pixclass.train.run import train

    if every < 1:
        raise ConfigError(f"The 'every' option must be a positive integer. Got {every}.")
    new = labels_since_last_run(ws, dataset)
    if new < every:
        log.info("%s: %d new labels since the last run; retraining at %d", dataset, new, every)
        return None
    cfg = cfg or TrainConfig(mode="linear")
    log.info("%s: %d new labels; retraining (%s mode)", dataset, new, cfg.mode)
    return train(ws, dataset, cfg, progress=progress)

