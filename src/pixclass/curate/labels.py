"""Likely label errors by confident learning (Northcutt et al., 2021), implemented here from the paper.

Out-of-sample predicted probabilities come from K-fold cross-validated linear-mode models (logistic regression on
frozen embeddings, ``pixclass.train.linear.fit_linear``). Off-diagonal cells of the calibrated confident joint say
how many examples of given class i really belong to j; that many examples with the largest margin p_j - p_i are
flagged (prune by noise rate). Examples are ranked by a label quality score, the self-confidence p[given].
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from pixclass.train.linear import fit_linear

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LabelIssues:
    probs: np.ndarray  # (N, K) out-of-sample predicted probabilities
    quality: np.ndarray  # (N,) label quality score: p[given], low = suspicious
    issues: np.ndarray  # (N,) bool: flagged by confident learning
    predicted: np.ndarray  # (N,) argmax class
    accuracy: float  # out-of-sample accuracy of the cross-validated models


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def cross_val_probs(emb: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = 5, C: float = 0.1,
                    seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """Out-of-sample probabilities (N, K): each example is predicted by a linear model that never saw it."""
    counts = np.bincount(labels, minlength=num_classes)
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    probs = np.full((len(labels), num_classes), 1.0 / num_classes, np.float32)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for f, (tr, te) in enumerate(splitter.split(emb, labels), start=1):
        w, b, _ = fit_linear(emb[tr], labels[tr], num_classes, C=C)
        probs[te] = softmax(emb[te] @ w.T + b)
        if progress:
            progress(f, folds)
    return probs


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Counts (K, K): rows given label, columns the confidently predicted class (p_j >= mean p_j of class j)."""
    k = probs.shape[1]
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(k)])
    above = probs >= thresholds[None, :] - 1e-9
    masked = np.where(above, probs, -1.0)
    confident = masked.max(1) >= 0
    true_guess = masked.argmax(1)
    cj = np.zeros((k, k), np.int64)
    np.add.at(cj, (labels[confident], true_guess[confident]), 1)
    return cj


def calibrate(cj: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Scale each row of the confident joint to the number of examples given that label."""
    counts = np.bincount(labels, minlength=cj.shape[0]).astype(np.float64)
    rows = cj.sum(1, keepdims=True).astype(np.float64)
    return np.where(rows > 0, cj / np.maximum(rows, 1) * counts[:, None], 0.0)


def find_label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Boolean mask (N,) of likely label errors, by confident learning with prune-by-noise-rate."""
    k = probs.shape[1]
    joint = calibrate(confident_joint(labels, probs), labels)
    issues = np.zeros(len(labels), bool)
    for i in range(k):
        members = np.where(labels == i)[0]
        if len(members) == 0:
            continue
        for j in range(k):
            n_flip = int(round(joint[i, j])) if j != i else 0
            if n_flip <= 0:
                continue
            margin = probs[members, j] - probs[members, i]
            take = members[np.argsort(-margin)[: min(n_flip, len(members) - 1)]]
            issues[take[probs[take, j] > probs[take, i]]] = True  # never flag an example the model agrees with
    return issues


def label_issues(emb: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = 5, C: float = 0.1,
                 seed: int = 0, progress: Progress | None = None) -> LabelIssues:
    probs = cross_val_probs(emb, labels, num_classes, folds=folds, C=C, seed=seed, progress=progress)
    predicted = probs.argmax(1)
    return LabelIssues(probs=probs, quality=probs[np.arange(len(labels)), labels],
                       issues=find_label_issues(labels, probs),
                       predicted=predicted, accuracy=float((predicted == labels).mean()) if len(labels) else 0.0)
