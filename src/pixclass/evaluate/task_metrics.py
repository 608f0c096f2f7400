"""Metrics for multi-label and hierarchical tasks, and threshold tuning. Pure numpy and scikit-learn.

targets: (N, K) 0/1 for multi-label; labels: (N,) class indices otherwise; probs: (N, K).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve

from pixclass.decision import NODE_KEY, decode_hierarchical, multilabel_decisions
from pixclass.schema import LabelSchema


def multilabel_metrics(targets: np.ndarray, probs: np.ndarray, schema: LabelSchema,
                       thresholds: dict[str, float]) -> dict:
    targets = np.asarray(targets).astype(int)
    pred = multilabel_decisions(probs, schema, thresholds).astype(int)
    ap = {}
    for k, c in enumerate(schema.classes):
        if targets[:, k].any():
            ap[c] = float(average_precision_score(targets[:, k], probs[:, k]))
    f1s = f1_score(targets, pred, average=None, zero_division=0)
    return {
        "n": int(len(targets)),
        "classes": list(schema.classes),
        "mAP": float(np.mean(list(ap.values()))) if ap else 0.0,
        "micro_f1": float(f1_score(targets, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(targets, pred, average="macro", zero_division=0)),
        "hamming_loss": float(np.mean(pred != targets)),
        "subset_accuracy": float(np.mean(np.all(pred == targets, axis=1))),
        "per_class": {c: {"ap": ap.get(c), "f1": float(f1s[k]), "support": int(targets[:, k].sum()),
                          "threshold": float(thresholds.get(c, 0.5))} for k, c in enumerate(schema.classes)},
    }


def tune_multilabel_thresholds(targets: np.ndarray, probs: np.ndarray, schema: LabelSchema) -> dict[str, float]:
    """Per class, the threshold with the best F1 on (validation) data; 0.5 for classes absent there."""
    out = {}
    for k, c in enumerate(schema.classes):
        out[c] = best_f1_threshold(targets[:, k], probs[:, k]) if targets[:, k].any() else 0.5
    return out


def best_f1_threshold(y: np.ndarray, score: np.ndarray) -> float:
    p, r, t = precision_recall_curve(y, score)
    f1 = 2 * p[:-1] * r[:-1] / np.clip(p[:-1] + r[:-1], 1e-12, None)
    return float(t[int(np.argmax(f1))]) if len(t) else 0.5


def binary_threshold(y: np.ndarray, score: np.ndarray, target: str = "f1") -> float:
    """Operating threshold on the positive-class score: 'f1' (max F1), 'precision>=X' or 'recall>=X'.

    precision>=X takes the lowest threshold (most recall) meeting X; recall>=X the highest (most precision).
    """
    if target == "f1":
        return best_f1_threshold(y, score)
    kind, _, value = target.partition(">=")
    goal = float(value)
    p, r, t = precision_recall_curve(y, score)
    p, r = p[:-1], r[:-1]
    if kind == "precision":
        ok = np.flatnonzero(p >= goal)
        return float(t[ok[0]]) if len(ok) else float(t[-1])
    if kind == "recall":
        ok = np.flatnonzero(r >= goal)
        return float(t[ok[-1]]) if len(ok) else float(t[0])
    raise ValueError(f"Unknown threshold target {target!r}: use f1, precision>=X or recall>=X.")


def _ancestors(path: str) -> set[str]:
    parts = path.split("/") if path else []
    return {"/".join(parts[: d + 1]) for d in range(len(parts))}


def hierarchical_metrics(labels: np.ndarray, probs: np.ndarray, schema: LabelSchema,
                         thresholds: dict[str, float]) -> dict:
    """Accuracy by taxonomy level (top level first), leaf accuracy, and hierarchical precision/recall/F1.

    Hierarchical P/R compare the ancestor sets of the decoded prediction (which may stop at an inner node) and
    of the true class (Kiritchenko et al.).
    """
    true = [schema.classes[i] for i in labels]
    leaf = [schema.classes[i] for i in probs.argmax(1)]
    depth = max(c.count("/") + 1 for c in schema.classes)
    by_level = []
    for d in range(depth):
        pairs = [(t.split("/")[: d + 1], p.split("/")[: d + 1]) for t, p in zip(true, leaf) if t.count("/") >= d]
        by_level.append(float(np.mean([a == b for a, b in pairs])) if pairs else 0.0)
    decoded = [n for n, _ in decode_hierarchical(probs, schema, thresholds.get(NODE_KEY, 0.5))]
    inter = sum(len(_ancestors(p) & _ancestors(t)) for p, t in zip(decoded, true))
    n_pred = sum(len(_ancestors(p)) for p in decoded)
    n_true = sum(len(_ancestors(t)) for t in true)
    hp, hr = inter / max(n_pred, 1), inter / max(n_true, 1)
    return {
        "accuracy": float(np.mean([a == b for a, b in zip(true, leaf)])),
        "accuracy_by_level": by_level,
        "hierarchical_precision": hp,
        "hierarchical_recall": hr,
        "hierarchical_f1": 2 * hp * hr / max(hp + hr, 1e-12),
        "stopped_early": float(np.mean([p != t and t.startswith(p + "/") for p, t in zip(decoded, true)])),
        "node_threshold": thresholds.get(NODE_KEY, 0.5),
    }


def metrics_for(schema: LabelSchema, labels: np.ndarray, probs: np.ndarray, thresholds: dict[str, float]) -> dict:
    """The metrics that fit the task: classification (+ the binary operating point), multi-label, hierarchical."""
    from pixclass.decision import predicted_indices
    from pixclass.evaluate.metrics import classification_metrics

    if schema.task == "multilabel":
        return multilabel_metrics(labels, probs, schema, thresholds)
    out = classification_metrics(labels, probs, schema.classes)
    if schema.task == "hierarchical":
        out.update(hierarchical_metrics(labels, probs, schema, thresholds))
    if schema.task == "binary" and schema.positive in thresholds:
        pred = predicted_indices(probs, schema, thresholds)
        pos = schema.index(schema.positive)
        tp = int(np.sum((pred == pos) & (labels == pos)))
        out["operating_point"] = {
            "positive": schema.positive, "threshold": thresholds[schema.positive],
            "accuracy": float(np.mean(pred == labels)),
            "precision": tp / max(int(np.sum(pred == pos)), 1), "recall": tp / max(int(np.sum(labels == pos)), 1),
        }
    return out


def tune_thresholds(schema: LabelSchema, labels: np.ndarray, probs: np.ndarray, *, threshold_target: str = "f1",
                    node_threshold: float = 0.5) -> dict[str, float]:
    """Decision thresholds stored in the manifest, tuned on validation where the task has any."""
    if schema.task == "multilabel":
        return tune_multilabel_thresholds(labels, probs, schema) if len(labels) else {}
    if schema.task == "hierarchical":
        return {NODE_KEY: node_threshold}
    if schema.task == "binary" and schema.positive and len(labels) and len(np.unique(labels)) == 2:
        pos = schema.index(schema.positive)
        return {schema.positive: binary_threshold((labels == pos).astype(int), probs[:, pos], threshold_target)}
    return {}
