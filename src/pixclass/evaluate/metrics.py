"""Classification metrics on (labels, probs). Pure numpy and scikit-learn.

labels: (N,) int class indices; probs: (N, K) float rows summing to one.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score


def top_k_accuracy(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1))) if len(labels) else 0.0


def classification_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str] | tuple[str, ...]) -> dict:
    """Accuracy, top-k, per-class precision/recall/F1, macro/weighted F1, one-vs-rest ROC-AUC, confusion matrix."""
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    idx = list(range(k))
    p, r, f, support = precision_recall_fscore_support(labels, pred, labels=idx, zero_division=0)
    out = {
        "n": int(len(labels)),
        "accuracy": float(np.mean(pred == labels)) if len(labels) else 0.0,
        # over the classes that occur (truth or prediction): a class with no images yet would count as F1 0
        "macro_f1": float(f1_score(labels, pred, labels=sorted(set(labels.tolist()) | set(pred.tolist())) or idx,
                                   average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, pred, labels=idx, average="weighted", zero_division=0)),
        "top_k": {f"top{j}": top_k_accuracy(labels, probs, j) for j in (1, 3, 5) if j <= k},
        "classes": list(classes),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(labels, pred, labels=idx).tolist(),
    }
    present = np.unique(labels)
    try:
        if k == 2 and len(present) == 2:
            out["roc_auc"] = float(roc_auc_score(labels, probs[:, 1]))
        elif len(present) > 1:
            cols = probs[:, present] / np.clip(probs[:, present].sum(1, keepdims=True), 1e-12, None)
            out["roc_auc"] = float(roc_auc_score(labels, cols, multi_class="ovr", labels=present))
    except ValueError:
        pass
    return out
