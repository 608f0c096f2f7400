"""Linear mode: logistic regression on frozen backbone embeddings, folded into the Classifier's head.

Fits happen on standardised embeddings; the standardisation is folded into the weights, so the head acts on raw
embeddings and export/predict need nothing extra.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

log = logging.getLogger(__name__)

C_GRID = (0.03, 0.1, 0.3, 1.0)  # inverse regularisation, tried on validation when C is not given


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


def _grid(C: float | None, has_val: bool) -> list[float]:
    grid = [C] if C is not None else list(C_GRID)
    return grid if has_val else grid[-1:]


def fit_linear(train_x: np.ndarray, train_y: np.ndarray, num_classes: int, *, val_x: np.ndarray | None = None,
               val_y: np.ndarray | None = None, C: float | None = None,
               class_weight: str | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax regression on embeddings (N, D). Returns (weight (K, D), bias (K,), C) for raw embeddings."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    xs = (train_x - mu) / sd
    has_val = val_x is not None and val_y is not None and len(val_y) > 0
    best = None
    for c in _grid(C, has_val):
        clf = _fit(xs, train_y, c, class_weight)
        score = clf.score((val_x - mu) / sd, val_y) if has_val else 0.0
        log.info("linear C=%g val acc %.4f", c, score)
        if best is None or score > best[0]:
            best = (score, c, clf)
    _, c, clf = best
    weight, bias = _fold(*_softmax_rows(clf, num_classes), mu, sd)
    return weight, bias, float(c)


def fit_multilabel(train_x: np.ndarray, train_y: np.ndarray, *, val_x: np.ndarray | None = None,
                   val_y: np.ndarray | None = None, C: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """One logistic regression per class on multi-hot targets (N, K); C picked by validation mAP."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    xs = (train_x - mu) / sd
    k = train_y.shape[1]
    has_val = val_x is not None and val_y is not None and len(val_y) > 0
    best = None
    for c in _grid(C, has_val):
        coef = np.zeros((k, xs.shape[1]), np.float32)
        bias = np.zeros(k, np.float32)
        for j in range(k):
            y = train_y[:, j].astype(int)
            if y.min() == y.max():  # a class always or never present: constant logit
                bias[j] = 10.0 if y[0] else -10.0
                continue
            clf = _fit(xs, y, c)
            coef[j], bias[j] = clf.coef_[0], clf.intercept_[0]
        score = 0.0
        if has_val:
            logits = ((val_x - mu) / sd) @ coef.T + bias
            aps = [average_precision_score(val_y[:, j], logits[:, j]) for j in range(k) if val_y[:, j].any()]
            score = float(np.mean(aps)) if aps else 0.0
        log.info("multilabel C=%g val mAP %.4f", c, score)
        if best is None or score > best[0]:
            best = (score, c, coef, bias)
    _, c, coef, bias = best
    weight, b = _fold(coef, bias, mu, sd)
    return weight, b, float(c)


def fit_cascade(train_x: np.ndarray, train_y: np.ndarray, classes: list[str], parents: list[str],
                children_of: dict[str, list[str]], *, C: float = 0.1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per inner node, softmax regression among its children on the images under that node.

    Returns (weight, bias) per node in ``parents`` order, for a models.net.CascadeHead.
    """
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
            continue
        clf = _fit(xs[keep], target[keep], C)
        out.append(_fold(*_softmax_rows(clf, len(kids)), mu, sd))
    return out
