"""Linear mode: logistic regression on frozen backbone embeddings, folded into the Classifier's head."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

log = logging.getLogger(__name__)

C_GRID = (0.03, 0.1, 0.3, 1.0)  # inverse regularisation, tried on validation when C is not given


def fit_linear(train_x: np.ndarray, train_y: np.ndarray, num_classes: int, *, val_x: np.ndarray | None = None,
               val_y: np.ndarray | None = None, C: float | None = None,
               class_weight: str | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit on embeddings (N, D). Returns (weight (K, D), bias (K,), C) acting on raw, unstandardised embeddings."""
    mu = train_x.mean(0)
    sd = train_x.std(0) + 1e-6
    xs = (train_x - mu) / sd
    grid = [C] if C is not None else list(C_GRID)
    if val_x is None or val_y is None or len(val_y) == 0:
        grid = grid[-1:]
    best = None
    for c in grid:
        clf = LogisticRegression(C=c, max_iter=300, class_weight=class_weight, tol=1e-3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(xs, train_y)
        score = clf.score((val_x - mu) / sd, val_y) if len(grid) > 1 else 0.0
        log.info("linear C=%g val acc %.4f", c, score)
        if best is None or score > best[0]:
            best = (score, c, clf)
    _, c, clf = best
    coef = np.zeros((num_classes, xs.shape[1]), np.float32)
    bias = np.full(num_classes, -1e4, np.float32)  # classes absent from training can never win
    if len(clf.classes_) == 2 and clf.coef_.shape[0] == 1:  # sklearn's binary form: one row for class 1
        coef[clf.classes_[1]], bias[clf.classes_[1]] = clf.coef_[0] / 2, clf.intercept_[0] / 2
        coef[clf.classes_[0]], bias[clf.classes_[0]] = -clf.coef_[0] / 2, -clf.intercept_[0] / 2
    else:
        coef[clf.classes_], bias[clf.classes_] = clf.coef_, clf.intercept_
    weight = coef / sd
    return weight.astype(np.float32), (bias - weight @ mu).astype(np.float32), float(c)
