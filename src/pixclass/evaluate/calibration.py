"""Calibration: expected calibration error, reliability-diagram bins, and temperature scaling.

Pure numpy/scipy on (labels (N,), probs (N, K)). Temperature scaling divides the logits by T; from probabilities
the logits are log(probs) up to a per-row constant, which softmax ignores, so T can be fitted and applied on probs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pixclass.artifact import Manifest
from pixclass.errors import DataError

N_BINS = 15  # the usual ECE bin count (Guo et al. 2017)
TEMPERATURE_KEY = "temperature"  # key in the manifest's `thresholds` holding the fitted temperature


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width confidence bins: bin edges (B+1,), mean confidence, accuracy and count per bin (B,)."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    def to_dict(self) -> dict:
        return {"edges": self.edges.tolist(), "confidence": self.confidence.tolist(),
                "accuracy": self.accuracy.tolist(), "count": self.count.astype(int).tolist()}


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> ReliabilityBins:
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.float64)
    safe = np.maximum(count, 1)
    mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / safe
    acc = np.bincount(which, weights=correct, minlength=n_bins) / safe
    return ReliabilityBins(edges, mean_conf, acc, count)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of samples."""
    if len(labels) == 0:
        return 0.0
    b = reliability_bins(labels, probs, n_bins)
    return float(np.sum(b.count / b.count.sum() * np.abs(b.accuracy - b.confidence)))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (N, K) recomputed as softmax(log(probs) / T)."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) / temperature
    logits -= logits.max(1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def fit_temperature(labels: np.ndarray, probs: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the negative log-likelihood of ``labels`` (fit it on validation data)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        raise DataError("Temperature scaling needs labeled validation images; the split is empty.")
    res = minimize_scalar(lambda t: nll(labels, apply_temperature(probs, float(np.exp(t)))),
                          bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def save_temperature(run_dir: str | Path, temperature: float) -> Manifest:
    """Store T in the run's manifest.json under ``thresholds["temperature"]``; returns the updated manifest."""
    manifest = Manifest.load(run_dir)
    updated = replace(manifest, thresholds={**manifest.thresholds, TEMPERATURE_KEY: round(float(temperature), 5)})
    updated.save(run_dir)
    return updated


def stored_temperature(manifest: Manifest) -> float | None:
    t = manifest.thresholds.get(TEMPERATURE_KEY)
    return float(t) if t else None
