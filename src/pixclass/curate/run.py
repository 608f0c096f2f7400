"""`curate`: every dataset-health check in one pass, stored as findings, compared with the previous pass.

    res = curate(ws, "clothes", CurateConfig(), report="health.html", progress=cb)
    res.findings      # [{path, kind, score, other_path, given_label, suggested_label, ...}]
    res.class_balance # {counts, imbalance_ratio, below_minimum, remedies}
    res.changes       # what differs from the previous curate run of the dataset
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select

from pixclass.curate import checks
from pixclass.curate.features import compute_features
from pixclass.curate.index import knn, normalize_rows
from pixclass.curate.labels import label_issues
from pixclass.errors import ConfigError, DataError
from pixclass.store import Workspace, records
from pixclass.store.findings import CurateRun, Finding, latest_curate_run, list_findings
from pixclass.store.tables import Image

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

KINDS = ("exact_duplicate", "near_duplicate", "leakage", "broken", "odd_size", "blurry", "dark", "bright",
         "low_information", "grayscale", "outlier", "label_error")


def check_kind(kind: str) -> None:
    """ConfigError naming the kinds (and the closest ones) unless ``kind`` is a kind of finding."""
    if kind not in KINDS:
        import difflib

        close = difflib.get_close_matches(kind, KINDS, n=2)
        raise ConfigError(f"Unknown kind {kind!r}.{' Did you mean ' + ', '.join(close) + '?' if close else ''} "
                          f"Kinds: {', '.join(KINDS)}.")


@dataclass(frozen=True)
class CurateConfig:
    model: str = "mobilenetv2_100"  # embedding backbone (offline ImageNet weights)
    img_size: int | None = None  # None: 224 up to 20k images, else 96 (60k images embed in about a minute)
    near_cosine: float = 0.97  # embedding cosine at or above which two images are near-duplicates
    hash_bits: int = 6  # perceptual-hash distance (of 64 bits) that also counts, with cosine >= hash_cosine
    hash_cosine: float = 0.80
    k: int = 10  # neighbours for outlier distances and duplicate candidates
    outlier_z: float = 4.0  # robust z-score of the k-NN distance (dataset-wide or within class)
    dark_p90: float = 55.0  # 90th percentile of luminance below this: dark
    bright_mean: float = 220.0  # mean luminance above this: bright
    blur_drop: float = 1.2  # sharpness (log10 Laplacian/variance ratio) this far below the dataset median: blurry
    min_entropy: float = 3.0  # luminance histogram entropy in bits below this: low information
    gray_color: float = 1.5  # mean channel difference below this, in a colour dataset: greyscale
    max_aspect: float = 3.0
    size_ratio: float = 9.0  # area more than this factor from the median area: odd size
    min_side: int = 16
    folds: int = 5  # cross-validation folds for out-of-sample label probabilities
    linear_c: float = 0.03  # logistic regression C of the cross-validated linear models
    min_per_class: int = 20
    chunk: int = 2048  # images decoded and embedded at a time (bounds memory)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.near_cosine <= 1:
            raise ConfigError(f"The 'near_cosine' option must be in (0, 1]. Got {self.near_cosine!r}.")
        if not 0 <= self.hash_bits <= 32:
            raise ConfigError(f"The 'hash_bits' option must be between 0 and 32. Got {self.hash_bits!r}.")
        if self.img_size is not None and self.img_size < 32:
            raise ConfigError(f"The 'img_size' option must be at least 32. Got {self.img_size!r}.")


@dataclass
class CurateResult:
    dataset: str
    run_id: int
    images: int
    findings: list[dict]
    class_balance: dict
    summary: dict[str, int]
    changes: dict
    report: str | None
    settings: dict
    label_model_accuracy: float | None
    seconds: float
    extra: dict = field(default_factory=dict)  # arrays for the report: not serialised

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


def _stage(progress: Progress | None, name: str):
    return (lambda d, t: progress(name, d, t)) if progress else None


def skipped_duplicates(source: str, known: dict[str, str], stored_paths: set[str], broken: set[str],
                       progress=None) -> list[checks.Issue]:
    """Files in the dataset's source with the same bytes as a stored image: import skipped them as duplicates."""
    from pixclass.io.sources import read_source

    try:
        entries = read_source(source) if source else []
    except DataError:
        return []
    seen = {str(Path(p).resolve()) for p in (*stored_paths, *broken)}  # older imports stored relative paths
    todo = [str(e.path) for e in entries if str(e.path) not in seen]
    out = []
    for n, path in enumerate(todo, start=1):
        try:
            h = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            continue
        if h in known:
            out.append(checks.Issue("exact_duplicate", None, path, 1.0, None, known[h],
                                    evidence={"match": "identical file bytes", "note": "not imported: import skips "
                                              "files whose content is already stored"}))
        if progress:
            progress(n, len(todo))
    return out


def curate(ws: Workspace, dataset: str, cfg: CurateConfig = CurateConfig(), *, report: str | Path | None = None,
           progress: Progress | None = None) -> CurateResult:
    """Run every check on the non-excluded images of ``dataset``, store the findings, write the HTML report."""
    t0 = time.time()
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        schema = records.load_schema(s, ds)
        items = records.items(s, ds)
        rows = s.execute(select(Image.id, Image.path, Image.sha256, Image.width, Image.height)
                         .where(Image.dataset_id == ds.id)).all()
        broken_rows = records.broken_files(s, ds)
        source = ds.source
    sizes = {r[0]: (r[3], r[4]) for r in rows}
    size = cfg.img_size or (224 if len(items) <= 20_000 else 96)
    issues: list[checks.Issue] = [checks.Issue("broken", None, b["path"], 1.0, evidence={"reason": b["reason"]})
                                  for b in broken_rows]
    issues += skipped_duplicates(source, {r[2]: r[1] for r in rows}, {r[1] for r in rows},
                                 {b["path"] for b in broken_rows}, _stage(progress, "source"))

    feats = compute_features(ws, items, size=size, model=cfg.model, chunk=cfg.chunk, progress=progress)
    issues += [checks.Issue("broken", it, it.path, 1.0, evidence={"reason": reason, "note": "unreadable now"})
               for it, reason in feats.broken]
    items = feats.items
    emb = normalize_rows(feats.embeddings)
    if progress:
        progress("neighbours", 0, 1)
    sims, idx = knn(emb, cfg.k, seed=cfg.seed)
    if progress:
        progress("neighbours", 1, 1)
    issues += checks.duplicates(items, feats.pixel_hash, feats.phash, sims, idx, emb, cosine=cfg.near_cosine,
                                hash_bits=cfg.hash_bits, hash_cosine=cfg.hash_cosine)
    issues += checks.quality(items, feats.stats, sizes, dark_p90=cfg.dark_p90, bright_mean=cfg.bright_mean,
                             blur_drop=cfg.blur_drop, min_entropy=cfg.min_entropy, gray_color=cfg.gray_color,
                             max_aspect=cfg.max_aspect, size_ratio=cfg.size_ratio, min_side=cfg.min_side)
    single = [it.labels[0] if len(it.labels) == 1 else None for it in items]
    found, _ = checks.outliers(items, emb, sims, single, k=cfg.k, z=cfg.outlier_z)
    issues += found

    counts = Counter(lab for it in items for lab in it.labels)
    balance = checks.class_balance({c: counts.get(c, 0) for c in schema.classes}, min_per_class=cfg.min_per_class)
    accuracy, probs, quality, lab_rows = None, None, None, np.zeros(0, np.int64)
    if schema.task in ("binary", "multiclass") and schema.num_classes >= 2:
        lab_rows = np.array([i for i, lab in enumerate(single) if lab is not None and counts[lab] >= 2], np.int64)
        if len(lab_rows) >= 10 and len({single[i] for i in lab_rows}) >= 2:
            y = np.array([schema.index(single[i]) for i in lab_rows])
            x = feats.embeddings[lab_rows]
            if len(x) > 20_000 and x.shape[1] > 128:  # keeps the cross-validation to a minute or two at 60k
                from sklearn.decomposition import PCA

                x = PCA(128, random_state=cfg.seed).fit_transform(x).astype(np.float32)
            res = label_issues(x, y, schema.num_classes, folds=cfg.folds, C=cfg.linear_c, seed=cfg.seed,
                               progress=_stage(progress, "label models"))
            accuracy, probs, quality = res.accuracy, res.probs, res.quality
            for n in np.where(res.issues)[0]:
                it = items[lab_rows[n]]
                issues.append(checks.Issue(
                    "label_error", it, it.path, 1 - float(res.quality[n]), given_label=single[lab_rows[n]],
                    suggested_label=schema.classes[res.predicted[n]],
                    evidence={"label_quality": round(float(res.quality[n]), 4),
                              "suggested_prob": round(float(res.probs[n].max()), 4)}))

    label_of = {it.image_id: (it.labels[0] if it.labels else None) for it in items}
    settings = {**asdict(cfg), "img_size": size}
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        prev = latest_curate_run(s, ds)
        prev_findings = list_findings(s, prev) if prev else []
        carried = {f.key(): f.status for f in prev_findings if f.status != "open"}
        run = CurateRun(dataset_id=ds.id, settings=settings)
        s.add(run)
        s.flush()
        rows_out = []
        for iss in issues:
            f = Finding(run_id=run.id, dataset_id=ds.id, image_id=iss.item.image_id if iss.item else None,
                        path=iss.path, kind=iss.kind, score=float(iss.score),
                        other_image_id=iss.other.image_id if iss.other else None, other_path=iss.other_path,
                        given_label=iss.given_label or (label_of.get(iss.item.image_id) if iss.item else None),
                        suggested_label=iss.suggested_label, split=iss.item.split if iss.item else None,
                        evidence=iss.evidence, status="open")
            if iss.item is None and iss.kind in ("exact_duplicate", "broken"):
                f.status = "excluded"  # never imported, so never trained on
            f.status = carried.get(f.key(), f.status)
            rows_out.append(f)
        s.add_all(rows_out)
        s.flush()
        summary = {k: 0 for k in KINDS}
        summary.update(Counter(f.kind for f in rows_out))
        changes = compare(prev_findings, rows_out, prev.id if prev else None)
        run.summary = summary
        findings = [f.to_dict() for f in sorted(rows_out, key=lambda f: (KINDS.index(f.kind), -f.score))]
        run_id = run.id
    result = CurateResult(dataset=dataset, run_id=run_id, images=len(items), findings=findings,
                          class_balance=balance, summary=summary, changes=changes, report=None, settings=settings,
                          label_model_accuracy=None if accuracy is None else round(accuracy, 4),
                          seconds=round(time.time() - t0, 2),
                          extra={"items": items, "emb": emb, "labels": single, "probs": probs, "label_quality": quality,
                                 "label_rows": lab_rows,
                                 "size": size})
    if report:
        from pixclass.curate.report import write_report

        result.report = str(write_report(ws, result, report, progress=_stage(progress, "report")))
        with ws.session() as s:
            s.get(CurateRun, run_id).report = result.report
    result.seconds = round(time.time() - t0, 2)
    log.info("curate %s: %d images, %s in %.1fs", dataset, len(items), summary, result.seconds)
    return result


def compare(prev: list[Finding], now: list[Finding], prev_id: int | None) -> dict:
    """What changed since the previous curate run: counts per kind, findings new and gone."""
    if prev_id is None:
        return {"previous_run": None}
    before, after = {f.key(): f for f in prev}, {f.key(): f for f in now}
    count_before, count_after = Counter(f.kind for f in prev), Counter(f.kind for f in now)
    return {
        "previous_run": prev_id,
        "per_kind": {k: {"before": count_before.get(k, 0), "now": count_after.get(k, 0)} for k in KINDS
                     if count_before.get(k, 0) or count_after.get(k, 0)},
        "new": [{"kind": k[0], "path": k[1], "other_path": k[2] or None} for k in after if k not in before],
        "resolved": [{"kind": k[0], "path": k[1], "other_path": k[2] or None, "status": before[k].status}
                     for k in before if k not in after],
    }
