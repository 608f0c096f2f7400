"""The per-image checks: duplicates and leakage, image quality, outliers, class balance.

Each check takes arrays computed once by ``features.compute_features`` and returns ``Issue`` objects
(higher ``score`` = worse). Thresholds live in ``CurateConfig`` (curate/run.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from pixclass.curate.index import hamming_pairs, knn
from pixclass.store import records


@dataclass
class Issue:
    kind: str
    item: records.Item | None
    path: str
    score: float
    other: records.Item | None = None
    other_path: str | None = None
    given_label: str | None = None
    suggested_label: str | None = None
    evidence: dict = field(default_factory=dict)


def _r(x: float) -> float:
    return round(float(x), 4)


def _drop_first(a: records.Item, b: records.Item) -> tuple[records.Item, records.Item]:
    """Order a duplicate pair as (the copy to drop, the one to keep): drop from train before val/test, else the
    later import."""
    rank = {"train": 0, None: 1, "val": 2, "test": 3}
    ra, rb = rank.get(a.split, 1), rank.get(b.split, 1)
    if ra != rb:
        return (a, b) if ra < rb else (b, a)
    return (a, b) if a.image_id > b.image_id else (b, a)


def duplicates(items: list[records.Item], pixel_hash: list[str], phash: np.ndarray, sims: np.ndarray,
               idx: np.ndarray, emb: np.ndarray, *, cosine: float, hash_bits: int,
               hash_cosine: float) -> list[Issue]:
    """Exact duplicates (identical decoded pixels), near-duplicates (embedding cosine >= ``cosine``, or perceptual
    hash within ``hash_bits`` bits and cosine >= ``hash_cosine``) and, for pairs across splits, leakage."""
    out: list[Issue] = []
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(pixel_hash):
        groups[h].append(i)
    exact = set()
    for members in groups.values():
        for j in members[1:]:
            exact.add((min(members[0], j), max(members[0], j)))
    pairs: dict[tuple[int, int], dict] = {}
    for i, j, d in hamming_pairs(phash, hash_bits):
        pairs[(i, j)] = {"hash_bits": d}
    for i in range(len(items)):
        for s, j in zip(sims[i], idx[i]):
            if j < 0 or s < min(cosine, hash_cosine):
                break
            pairs.setdefault((min(i, j), max(i, j)), {})
    for (i, j), ev in pairs.items():
        if (i, j) in exact:
            continue
        cos = float(emb[i] @ emb[j])
        bits = ev.get("hash_bits", int(np.unpackbits(phash[i] ^ phash[j]).sum()))
        if cos >= cosine or (bits <= hash_bits and cos >= hash_cosine):
            drop, keep = _drop_first(items[i], items[j])
            out.append(Issue("near_duplicate", drop, drop.path, max(cos, 1 - bits / 64), keep, keep.path,
                             evidence={"cosine": _r(cos), "hash_bits": bits}))
    for i, j in sorted(exact):
        drop, keep = _drop_first(items[i], items[j])
        out.append(Issue("exact_duplicate", drop, drop.path, 1.0, keep, keep.path,
                         evidence={"match": "identical pixels"}))
    for dup in list(out):
        a, b = dup.item, dup.other
        if a.split != b.split and {a.split, b.split} & {"val", "test"}:
            out.append(Issue("leakage", a, a.path, dup.score, b, b.path,
                             evidence={**dup.evidence, "duplicate": dup.kind, "splits": [a.split, b.split]}))
    return out


def quality(items: list[records.Item], stats: dict[str, np.ndarray], sizes: dict[int, tuple[int, int]], *,
            dark_p90: float, bright_mean: float, blur_drop: float, min_entropy: float, gray_color: float,
            max_aspect: float, size_ratio: float, min_side: int) -> list[Issue]:
    """odd_size, blurry, dark, bright, low_information and grayscale (only when most images are in colour)."""
    out: list[Issue] = []
    sharp_median = float(np.median(stats["sharpness"])) if len(items) else 0.0
    colour_dataset = float(np.median(stats["colorfulness"])) > 3 * gray_color if len(items) else False
    wh = np.array([sizes.get(it.image_id, (0, 0)) for it in items], np.float64).reshape(-1, 2)
    med_area = float(np.median(wh[:, 0] * wh[:, 1])) if len(items) else 0.0
    for n, it in enumerate(items):
        st = {k: float(v[n]) for k, v in stats.items()}
        w, h = wh[n]
        aspect = max(w, h) / max(1.0, min(w, h))
        area_ratio = (w * h) / med_area if med_area else 1.0
        if aspect > max_aspect or min(w, h) < min_side or not 1 / size_ratio <= area_ratio <= size_ratio:
            out.append(Issue("odd_size", it, it.path, max(aspect / max_aspect, abs(np.log(max(area_ratio, 1e-9)))
                                                            / np.log(size_ratio)),
                             evidence={"width": int(w), "height": int(h), "aspect": _r(aspect),
                                       "area_vs_median": _r(area_ratio)}))
        if st["sharpness"] < sharp_median - blur_drop:
            out.append(Issue("blurry", it, it.path, sharp_median - st["sharpness"],
                             evidence={"sharpness": _r(st["sharpness"]), "dataset_median": _r(sharp_median)}))
        if st["p90"] < dark_p90:
            out.append(Issue("dark", it, it.path, 1 - st["p90"] / 255,
                             evidence={"p90_luminance": _r(st["p90"]), "mean": _r(st["brightness"])}))
        if st["brightness"] > bright_mean:
            out.append(Issue("bright", it, it.path, st["brightness"] / 255,
                             evidence={"mean_luminance": _r(st["brightness"]), "p10": _r(st["p10"])}))
        if st["entropy"] < min_entropy:
            out.append(Issue("low_information", it, it.path, 1 - st["entropy"] / 8,
                             evidence={"entropy_bits": _r(st["entropy"])}))
        if colour_dataset and st["colorfulness"] < gray_color and st["p90"] >= dark_p90:  # dark mutes colour
            out.append(Issue("grayscale", it, it.path, 1 - st["colorfulness"] / gray_color,
                             evidence={"colorfulness": _r(st["colorfulness"])}))
    return out


def robust_z(x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return x
    med = np.median(x)
    mad = np.median(np.abs(x - med)) * 1.4826 + 1e-6
    return (x - med) / mad


def outliers(items: list[records.Item], emb: np.ndarray, sims: np.ndarray, labels: list[str | None], *, k: int,
             z: float) -> tuple[list[Issue], np.ndarray]:
    """Images far from their k nearest neighbours in the whole dataset or within their class (robust z-score of
    the mean cosine distance above ``z``). Returns the issues and the overall distances (N,)."""
    n = len(items)
    valid = np.where(sims > -1, sims, np.nan)
    dist_all = 1 - np.nan_to_num(np.nanmean(valid, axis=1), nan=0.0) if sims.shape[1] else np.zeros(n)
    dist_cls = np.full(n, np.nan)
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        if lab is not None:
            by_class[lab].append(i)
    z_cls = np.zeros(n)
    for members in by_class.values():
        if len(members) < 3:
            continue
        m = np.array(members)
        s, _ = knn(emb[m], k)
        d = 1 - np.where(s > -1, s, np.nan)
        dist_cls[m] = np.nanmean(d, axis=1)
        z_cls[m] = robust_z(dist_cls[m])
    z_all = robust_z(dist_all)
    out = []
    for i in np.where((z_all > z) | (z_cls > z))[0]:
        out.append(Issue("outlier", items[i], items[i].path, float(max(z_all[i], z_cls[i])),
                         given_label=labels[i],
                         evidence={"knn_distance": _r(dist_all[i]), "z": _r(z_all[i]),
                                   "class_knn_distance": None if np.isnan(dist_cls[i]) else _r(dist_cls[i]),
                                   "class_z": _r(z_cls[i])}))
    return out, dist_all


def class_balance(counts: dict[str, int], *, min_per_class: int) -> dict:
    """Counts per class, imbalance ratio (largest / smallest non-empty class), classes below the minimum, remedies."""
    nonzero = [c for c in counts.values() if c > 0]
    ratio = (max(nonzero) / min(nonzero)) if nonzero else None
    floor = max(min_per_class, int(0.1 * max(nonzero))) if nonzero else min_per_class
    below = sorted(c for c, n in counts.items() if n < floor)
    remedies = []
    if below:
        remedies.append(f"Label more images of {', '.join(below)} (each has fewer than {floor}).")
    if ratio and ratio >= 1.5:
        remedies.append("Train with class weights: `pixclass train DATASET --balance weights`.")
        remedies.append("Or oversample the small classes: `pixclass train DATASET --balance sampler`.")
    if ratio and ratio >= 3:
        remedies.append("Or undersample the large classes: `pixclass curate-fix DATASET --action undersample "
                        "--max-ratio 3`.")
    return {"counts": counts, "imbalance_ratio": None if ratio is None else round(ratio, 3),
            "below_minimum": below, "minimum": floor, "remedies": remedies}
