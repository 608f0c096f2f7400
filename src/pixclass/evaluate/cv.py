"""K-fold cross-validation of a linear run: logistic regression on the run's frozen embeddings of train+val.

Per-fold metrics go to RUN/cv.json, and one summary line per call to WORKSPACE/runs/cv-history.jsonl, so runs
(and the same run over time, as data changes) can be compared on the same protocol.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pixclass.artifact import Manifest
from pixclass.data.cache import ImageCache
from pixclass.data.embeddings import agrees_with_cache, cached_backbone, embed_items
from pixclass.data.splits import load_splits
from pixclass.errors import ConfigError, DataError
from pixclass.evaluate.metrics import classification_metrics
from pixclass.store import Workspace

Progress = Callable[[str, int, int], None]
CV_MODES = ("linear", "classical")  # modes refit in seconds from embeddings; finetune runs would retrain networks
DEFAULT_C = 0.3  # when the run does not record the C it chose


def cross_validate(ws: Workspace, run_dir: str | Path, *, k: int = 5, seed: int = 0,
                   progress: Progress | None = None) -> dict:
    """Stratified ``k``-fold CV; returns {k, C, folds: [{fold, n_train, n_test, accuracy, macro_f1}], means, stds}."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from pixclass.models.embed import run_batches
    from pixclass.models.registry import load_checkpoint

    run_dir = Path(run_dir)
    manifest = Manifest.load(run_dir)
    if manifest.mode not in CV_MODES:
        raise ConfigError(f"--cv refits the model per fold and works for {' and '.join(CV_MODES)} runs; {run_dir} "
                          f"is a {manifest.mode} run. Train one with `--mode linear` to cross-validate.")
    if k < 2:
        raise ConfigError(f"The 'cv' option must be at least 2 folds. Got {k}.")
    size = manifest.preprocess.img_size
    schema, data = load_splits(ws, manifest.dataset, size, splits=("train", "val"), decode=False)
    items = data["train"].items + data["val"].items
    labels = np.concatenate([data["train"].labels, data["val"].labels])
    counts = np.bincount(labels)
    if len(labels) == 0 or counts[counts > 0].min() < k:
        raise DataError(f"Every class needs at least {k} labeled train/val images for {k}-fold CV. Use a smaller --cv.")
    model, _ = load_checkpoint(run_dir)
    emb = None
    if cached_backbone({**manifest.config, "mode": manifest.mode}):  # ImageNet weights: the cached embeddings
        emb = embed_items(ws, items, model=manifest.model, img_size=size, progress=progress)
        emb = emb if agrees_with_cache(ws, model, items, model=manifest.model, img_size=size) else None
    if emb is None:
        decoding = (lambda d, t: progress("decode", d, t)) if progress else None
        images = ImageCache(ws.cache_dir, size).get([it.path for it in items], [it.sha256 for it in items],
                                                    progress=decoding)
        emb = run_batches(model.backbone, images, model.mean, model.std,
                          progress=(lambda d, t: progress("embed", d, t)) if progress else None)
    c = float(manifest.metrics.get("linear_c") or manifest.config.get("linear_c") or DEFAULT_C)
    folds = []
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (tr, te) in enumerate(splitter.split(emb, labels)):
        mu, sd = emb[tr].mean(0), emb[tr].std(0) + 1e-6
        clf = LogisticRegression(C=c, max_iter=300, tol=1e-3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit((emb[tr] - mu) / sd, labels[tr])
        probs = np.zeros((len(te), len(schema.classes)))
        probs[:, clf.classes_] = clf.predict_proba((emb[te] - mu) / sd)
        m = classification_metrics(labels[te], probs, schema.classes)
        folds.append({"fold": i, "n_train": int(len(tr)), "n_test": int(len(te)), "accuracy": m["accuracy"],
                      "macro_f1": m["macro_f1"]})
        if progress:
            progress("folds", i + 1, k)
    out = {"run": str(run_dir), "dataset": manifest.dataset, "model": manifest.model, "k": k, "seed": seed, "C": c,
           "n": int(len(labels)), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "folds": folds}
    for key in ("accuracy", "macro_f1"):
        vals = np.array([f[key] for f in folds])
        out[f"{key}_mean"], out[f"{key}_std"] = float(vals.mean()), float(vals.std(ddof=1))
    (run_dir / "cv.json").write_text(json.dumps(out, indent=2))
    summary = {key: v for key, v in out.items() if key != "folds"}
    ws.runs_dir.mkdir(parents=True, exist_ok=True)
    with open(ws.runs_dir / "cv-history.jsonl", "a") as f:
        f.write(json.dumps(summary) + "\n")
    return out
