"""Probabilities -> labels, per task kind. numpy only: training, evaluation and the torch-free Predictor share it.

probs are (N, K) over ``schema.classes``:
- binary / multiclass: softmax rows; binary uses the stored threshold on the positive class.
- multilabel: independent sigmoid per class; every class at or above its threshold is predicted.
- hierarchical: softmax over the class paths; a node's probability is the sum over the classes under it, so a child
  never exceeds its parent, and the prediction is the deepest node whose probability reaches the threshold.
"""

from __future__ import annotations

import numpy as np

from pixclass.schema import LabelSchema

DEFAULT_NODE_THRESHOLD = 0.5
NODE_KEY = "_node"  # thresholds key of the hierarchical confidence threshold


def node_matrix(schema: LabelSchema) -> tuple[list[str], np.ndarray]:
    """Every taxonomy node (internal and leaf) and a (K, M) 0/1 matrix: class k lies under (or is) node m."""
    nodes = sorted({"/".join(c.split("/")[: d + 1]) for c in schema.classes for d in range(c.count("/") + 1)})
    col = {n: i for i, n in enumerate(nodes)}
    m = np.zeros((len(schema.classes), len(nodes)), np.float32)
    for k, c in enumerate(schema.classes):
        parts = c.split("/")
        for d in range(len(parts)):
            m[k, col["/".join(parts[: d + 1])]] = 1
    return nodes, m


def node_probs(probs: np.ndarray, schema: LabelSchema) -> tuple[list[str], np.ndarray]:
    nodes, m = node_matrix(schema)
    return nodes, probs @ m


def decode_hierarchical(probs: np.ndarray, schema: LabelSchema,
                        threshold: float = DEFAULT_NODE_THRESHOLD) -> list[tuple[str, float]]:
    """Per row: (deepest node whose probability >= threshold, its probability); '' if no top-level node reaches it."""
    nodes, nprobs = node_probs(probs, schema)
    children: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        children.setdefault(n.rsplit("/", 1)[0] if "/" in n else "", []).append(i)
    out = []
    for row in nprobs:
        node, score = "", 1.0
        while node in children:
            kids = children[node]
            best = kids[int(np.argmax(row[kids]))]
            if row[best] < threshold:
                break
            node, score = nodes[best], float(row[best])
        out.append((node, score if node else float(row[children[""]].max())))
    return out


def multilabel_decisions(probs: np.ndarray, schema: LabelSchema, thresholds: dict[str, float]) -> np.ndarray:
    """(N, K) bool: class k predicted where probs >= its threshold (0.5 when none is stored)."""
    t = np.array([thresholds.get(c, 0.5) for c in schema.classes], np.float32)
    return probs >= t


def decide(probs: np.ndarray, schema: LabelSchema, thresholds: dict[str, float]) -> list[tuple[tuple[str, ...], float]]:
    """Per row: (predicted labels, score). One label except for multilabel (zero or more)."""
    if schema.task == "multilabel":
        hits = multilabel_decisions(probs, schema, thresholds)
        return [(tuple(schema.classes[k] for k in np.flatnonzero(h)), float(p[h].min()) if h.any() else 0.0)
                for h, p in zip(hits, probs)]
    if schema.task == "hierarchical":
        return [((node,) if node else (), s)
                for node, s in decode_hierarchical(probs, schema, thresholds.get(NODE_KEY, DEFAULT_NODE_THRESHOLD))]
    if schema.task == "binary" and schema.positive in thresholds and len(schema.classes) == 2:
        pos = schema.index(schema.positive)
        t = thresholds[schema.positive]
        return [((schema.classes[pos],), float(p[pos])) if p[pos] >= t else ((schema.classes[1 - pos],), float(p[1 - pos]))
                for p in probs]
    top = probs.argmax(1)
    return [((schema.classes[k],), float(p[k])) for k, p in zip(top, probs)]


def predicted_indices(probs: np.ndarray, schema: LabelSchema, thresholds: dict[str, float]) -> np.ndarray:
    """Single-label tasks: predicted class index per row, honouring a binary threshold."""
    if schema.task == "binary" and schema.positive in thresholds and len(schema.classes) == 2:
        pos = schema.index(schema.positive)
        return np.where(probs[:, pos] >= thresholds[schema.positive], pos, 1 - pos)
    return probs.argmax(1)
