"""Bootstrap confidence intervals for accuracy and macro F1 (percentile method, resampling test images)."""

from __future__ import annotations

import numpy as np

N_RESAMPLES = 1000  # enough for stable 95% percentile bounds at the test-set sizes used here
ALPHA = 0.05  # 95% intervals


def _resamples(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def accuracy_ci(labels: np.ndarray, pred: np.ndarray, *, n_resamples: int = N_RESAMPLES, alpha: float = ALPHA,
                seed: int = 0) -> tuple[float, float]:
    """(low, high) bounds of accuracy for predicted class indices ``pred`` (N,)."""
    correct = (np.asarray(labels) == np.asarray(pred)).astype(np.float64)
    if len(correct) == 0:
        return 0.0, 0.0
    idx = _resamples(len(correct), n_resamples, seed)
    return _interval(correct[idx].mean(1), alpha)


def macro_f1_ci(labels: np.ndarray, pred: np.ndarray, num_classes: int, *, n_resamples: int = N_RESAMPLES,
                alpha: float = ALPHA, seed: int = 0) -> tuple[float, float]:
    """(low, high) bounds of macro F1 over the classes that occur in each resample, as truth or prediction (as
    metrics.classification_metrics: a class with no images does not count as F1 0)."""
    labels, pred = np.asarray(labels, dtype=int), np.asarray(pred, dtype=int)
    if len(labels) == 0:
        return 0.0, 0.0
    k = num_classes
    idx = _resamples(len(labels), n_resamples, seed)
    pair = labels[idx] * k + pred[idx]  # (R, N) cell of the confusion matrix
    cm = np.stack([np.bincount(row, minlength=k * k) for row in pair]).reshape(-1, k, k).astype(np.float64)
    tp = cm[:, np.arange(k), np.arange(k)]
    support, predicted = cm.sum(2), cm.sum(1)
    denom = support + predicted
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return _interval(f1.sum(1) / np.maximum((denom > 0).sum(1), 1), alpha)


def bootstrap_cis(labels: np.ndarray, probs: np.ndarray, *, n_resamples: int = N_RESAMPLES, alpha: float = ALPHA,
                  seed: int = 0) -> dict[str, list[float]]:
    """{"accuracy_ci": [lo, hi], "macro_f1_ci": [lo, hi]} for class probabilities (N, K)."""
    pred = np.asarray(probs).argmax(1)
    k = np.asarray(probs).shape[1]
    return {"accuracy_ci": list(accuracy_ci(labels, pred, n_resamples=n_resamples, alpha=alpha, seed=seed)),
            "macro_f1_ci": list(macro_f1_ci(labels, pred, k, n_resamples=n_resamples, alpha=alpha, seed=seed))}
