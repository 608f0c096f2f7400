"""Linear mode: logistic regression on frozen backbone embeddings, folded into the Classifier's head.

Fits happen on standardised embeddings; the standardisation is folded into the weights, so the head acts on raw
embeddings and export/predict need nothing extra.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (stage, done, total): "choose C (validation|cross-validation)", "fit"

C_GRID = (0.03, 0.1, 0.3, 1.0)  # inverse regularisation, tried when C is not given
MIN_VAL = 50  # fewer labeled validation images than this: C is picked by cross-validation on the training labels
CV_FOLDS = 5  # at most; fewer when the smallest class has fewer images


def _fit(xs: np.ndarray, y: np.ndarray, C: float, class_weight: str | None = None) -> LogisticRegression:
    clf = LogisticRegression(C=C, max_iter=300, class_weight=class_weight, tol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xs, y)
    return clf


def _softmax_rows(clf: LogisticRegression, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, D) weights and (K,) bias giving softmax logits; classes absent from training can never win."""
    d = clf.coef_.shape[1]
    coef = np.zeros((num_classes, d), np.float32)
    bias = np.full(num_classes, -1e4, np.float32)
    cls = clf.classes_.astype(int)
    if len(cls) == 2 and clf.coef_.shape[0] == 1:  # sklearn's binary form: one row for class 1
        coef[cls[1]], bias[cls[1]] = clf.coef_[0] / 2, clf.intercept_[0] / 2
        coef[cls[0]], bias[cls[0]] = -clf.coef_[0] / 2, -clf.intercept_[0] / 2
    elif len(cls) == 1:
        bias[cls[0]] = 0.0
    else:
        coef[cls], bias[cls] = clf.coef_, clf.intercept_
    return coef, bias


def _fold(coef: np.ndarray, bias: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weight = coef / sd
    return weight.astype(np.float32), (bias - weight @ mu).astype(np.float32)


@dataclass(frozen=True)
class CChoice:
    """The regularisation C of a linear fit and how it was chosen."""

    C: float
    by: str  # "given" (fixed by the caller), "validation", "cv" (k-fold on the training labels) or "default"
    scores: dict[float, float] = field(default_factory=dict)  # per C tried: validation or mean CV score
    folds: int = 0  # folds of the cross-validation (by == "cv")


def _standardise(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return train_x.mean(0), train_x.std(0) + 1e-6


def _fit_ovr(xs: np.ndarray, y: np.ndarray, C: float,
             progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One logistic regression per column of multi-hot ``y`` (N, K): (coef (K, D), bias (K,)).

    progress: (classes fitted, K) after each class."""
    k = y.shape[1]
    coef = np.zeros((k, xs.shape[1]), np.float32)
    bias = np.zeros(k, np.float32)
    for j in range(k):
        t = y[:, j].astype(int)
        if t.min() == t.max():  # a class always or never present: constant logit
            bias[j] = 10.0 if t[0] else -10.0
        else:
            clf = _fit(xs, t, C)
            coef[j], bias[j] = clf.coef_[0], clf.intercept_[0]
        if progress:
            progress(j + 1, k)
    return coef, bias


def _fit_any(xs: np.ndarray, y: np.ndarray, C: float, class_weight: str | None):
    """A softmax LogisticRegression for class indices (N,), (coef, bias) per class for multi-hot targets (N, K)."""
    return _fit_ovr(xs, y, C) if y.ndim == 2 else _fit(xs, y, C, class_weight)


def _score(model, xs: np.ndarray, y: np.ndarray) -> float:
    """Accuracy (softmax) or mean average precision over the classes present in ``y`` (multi-label)."""
    if y.ndim == 1:
        return float(model.score(xs, y))
    coef, bias = model
    logits = xs @ coef.T + bias
    aps = [average_precision_score(y[:, j], logits[:, j]) for j in range(y.shape[1]) if y[:, j].any()]
    return float(np.mean(aps)) if aps else 0.0


def _cv_splits(y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds (at most CV_FOLDS, at most the smallest class count); [] when no two folds are possible."""
    if y.ndim == 1:
        counts = np.unique(y, return_counts=True)[1]
        folds = min(CV_FOLDS, int(counts.min()))
        if folds < 2 or len(counts) < 2:
            return []
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    pos = y.sum(0)
    varying = (pos > 0) & (pos < len(y))  # multi-label: classes both present and absent somewhere
    if not varying.any():
        return []
    folds = min(CV_FOLDS, int(np.minimum(pos, len(y) - pos)[varying].min()))
    if folds < 2:
        return []
    rarest = int(np.argmin(np.where(varying, np.minimum(pos, len(y) - pos), np.inf)))  # spread it over the folds
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y[:, rarest]))


def _select(xs: np.ndarray, y: np.ndarray, val_xs: np.ndarray | None, val_y: np.ndarray | None, C: float | None,
            class_weight: str | None, seed: int, progress: Progress | None = None):
    """(CChoice, the model fitted on all of ``xs`` at that C when validation picked it, else None).

    progress: "choose C (validation)" per C of the grid fitted, or "choose C (cross-validation)" per (C, fold);
    nothing when C is given or cannot be chosen."""
    if C is not None:
        return CChoice(float(C), "given"), None
    n_val = 0 if val_xs is None or val_y is None else len(val_y)
    what = "val acc" if y.ndim == 1 else "val mAP"
    if n_val >= MIN_VAL:
        scores, best = {}, None
        if progress:
            progress("choose C (validation)", 0, len(C_GRID))
        for i, c in enumerate(C_GRID):
            model = _fit_any(xs, y, c, class_weight)
            scores[c] = _score(model, val_xs, val_y)
            log.info("linear C=%g %s %.4f", c, what, scores[c])
            if best is None or scores[c] > scores[best[0]]:  # ties: the first, stronger regularisation
                best = (c, model)
            if progress:
                progress("choose C (validation)", i + 1, len(C_GRID))
        return CChoice(float(best[0]), "validation", scores), best[1]
    splits = _cv_splits(y, seed)
    if not splits:
        log.info("linear C=%g (largest of the grid): %d validation images (< %d) and too few training images per "
                 "class for cross-validation", C_GRID[-1], n_val, MIN_VAL)
        return CChoice(float(C_GRID[-1]), "default"), None
    scores, done, total = {}, 0, len(C_GRID) * len(splits)
    if progress:
        progress("choose C (cross-validation)", 0, total)
    for c in C_GRID:
        fold_scores = []
        for tr, te in splits:
            fold_scores.append(_score(_fit_any(xs[tr], y[tr], c, class_weight), xs[te], y[te]))
            done += 1
            if progress:
                progress("choose C (cross-validation)", done, total)
        scores[c] = float(np.mean(fold_scores))
    c = max(C_GRID, key=lambda k: (scores[k], -k))  # ties: the stronger regularisation
    log.info("linear C=%g by %d-fold cross-validation on %d training images (%d validation images < %d); mean %s "
             "per C: %s", c, len(splits), len(y), n_val, MIN_VAL, what.removeprefix("val "),
             ", ".join(f"{k:g}: {v:.4f}" for k, v in scores.items()))
    return CChoice(float(c), "cv", scores, len(splits)), None


def select_c(train_x: np.ndarray, train_y: np.ndarray, *, val_x: np.ndarray | None = None,
             val_y: np.ndarray | None = None, C: float | None = None, class_weight: str | None = None,
             seed: int = 0, progress: Progress | None = None) -> CChoice:
    """The C that ``fit_linear`` (``train_y`` (N,) class indices) or ``fit_multilabel`` (``train_y`` (N, K)
    multi-hot) would use: ``C`` when given; else the best of ``C_GRID`` on the validation split when it has at least
    ``MIN_VAL`` images; else by stratified k-fold cross-validation on the training labels; else (a class with a
    single image) the largest C of the grid.

    progress(stage, done, total): ("choose C (validation)", Cs fitted, len(C_GRID)) or
    ("choose C (cross-validation)", fits done, len(C_GRID) x folds); not called when C is given or the default."""
    mu, sd = _standardise(train_x)
    val_xs = None if val_x is None else (val_x - mu) / sd
    return _select((train_x - mu) / sd, np.asarray(train_y), val_xs, val_y, C, class_weight, seed, progress)[0]


def fit_linear(train_x: np.ndarray, train_y: np.ndarray, num_classes: int, *, val_x: np.ndarray | None = None,
               val_y: np.ndarray | None = None, C: float | None = None, class_weight: str | None = None,
               progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax regression on embeddings (N, D). Returns (weight (K, D), bias (K,), C) for raw embeddings.

    C: as given, else picked as ``select_c`` describes (validation, else cross-validation on the training set).
    progress(stage, done, total): the "choose C ..." stages of ``select_c``, then ("fit", 0, 1) and ("fit", 1, 1)."""
    mu, sd = _standardise(train_x)
    xs = (train_x - mu) / sd
    val_xs = None if val_x is None else (val_x - mu) / sd
    choice, clf = _select(xs, train_y, val_xs, val_y, C, class_weight, 0, progress)
    if progress:
        progress("fit", 0, 1)
    if clf is None:
        clf = _fit(xs, train_y, choice.C, class_weight)
    if progress:
        progress("fit", 1, 1)
    weight, bias = _fold(*_softmax_rows(clf, num_classes), mu, sd)
    return weight, bias, choice.C


def fit_multilabel(train_x: np.ndarray, train_y: np.ndarray, *, val_x: np.ndarray | None = None,
                   val_y: np.ndarray | None = None, C: float | None = None,
                   progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """One logistic regression per class on multi-hot targets (N, K); C as ``select_c`` describes (mAP).

    progress(stage, done, total): the "choose C ..." stages of ``select_c``, then ("fit", classes fitted, K)."""
    mu, sd = _standardise(train_x)
    xs = (train_x - mu) / sd
    val_xs = None if val_x is None else (val_x - mu) / sd
    y = np.asarray(train_y)
    choice, model = _select(xs, y, val_xs, val_y, C, None, 0, progress)
    if progress:
        progress("fit", 0, y.shape[1])
    if model is None:
        model = _fit_ovr(xs, y, choice.C, (lambda d, t: progress("fit", d, t)) if progress else None)
    elif progress:  # validation already fitted the chosen C on all of the training set
        progress("fit", y.shape[1], y.shape[1])
    coef, bias = model
    weight, b = _fold(coef, bias, mu, sd)
    return weight, b, choice.C


def fit_cascade(train_x: np.ndarray, train_y: np.ndarray, classes: list[str], parents: list[str],
                children_of: dict[str, list[str]], *, C: float = 0.1,
                progress: Progress | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per inner node, softmax regression among its children on the images under that node.

    Returns (weight, bias) per node in ``parents`` order, for a models.net.CascadeHead.
    progress(stage, done, total): ("fit", nodes fitted, len(parents)), from 0.
    """
    if progress:
        progress("fit", 0, len(parents))
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    xs = (train_x - mu) / sd
    names = np.array(classes, dtype=object)[train_y]
    out = []
    for parent in parents:
        kids = children_of[parent]
        target = np.full(len(names), -1)
        for j, kid in enumerate(kids):
            target[[n == kid or n.startswith(kid + "/") for n in names]] = j
        keep = target >= 0
        if len(np.unique(target[keep])) < 2:
            coef = np.zeros((len(kids), xs.shape[1]), np.float32)
            bias = np.where(np.arange(len(kids)) == (target[keep][0] if keep.any() else 0), 0.0, -10.0)
            out.append(_fold(coef, bias.astype(np.float32), mu, sd))
        else:
            clf = _fit(xs[keep], target[keep], C)
            out.append(_fold(*_softmax_rows(clf, len(kids)), mu, sd))
        if progress:
            progress("fit", len(out), len(parents))
    return out
