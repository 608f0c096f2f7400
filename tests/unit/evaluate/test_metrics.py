import numpy as np
from sklearn.metrics import f1_score

from pixclass.evaluate.metrics import classification_metrics, top_k_accuracy


def test_metrics_match_hand_counts():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.8, .1, .1], [.3, .6, .1], [.1, .8, .1], [.2, .7, .1], [.1, .1, .8], [.5, .1, .4]])
    m = classification_metrics(labels, probs, ["a", "b", "c"])
    assert m["accuracy"] == 4 / 6
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["b"]["precision"] == 2 / 3 and m["per_class"]["b"]["recall"] == 1.0
    assert abs(m["macro_f1"] - f1_score(labels, probs.argmax(1), average="macro")) < 1e-12
    assert m["top_k"]["top3"] == 1.0 and m["top_k"]["top1"] == m["accuracy"]
    assert 0.5 < m["roc_auc"] <= 1.0


def test_top_k():
    labels = np.array([2, 0])
    probs = np.array([[.5, .3, .2], [.1, .2, .7]])
    assert top_k_accuracy(labels, probs, 1) == 0.0
    assert top_k_accuracy(labels, probs, 2) == 0.0
    assert top_k_accuracy(labels, probs, 3) == 1.0


def test_binary_auc():
    m = classification_metrics(np.array([0, 1, 1, 0]), np.array([[.9, .1], [.2, .8], [.25, .75], [.3, .7]]), ["n", "p"])
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 0.75


def test_macro_f1_leaves_out_classes_without_images():
    """A class created but not yet used (no truth, never predicted) does not pull macro F1 down."""
    from pixclass.evaluate.bootstrap import macro_f1_ci

    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(5)[[0, 0, 1, 2, 2, 2]]  # classes 3 and 4 exist in the schema only
    m = classification_metrics(labels, probs, ["a", "b", "c", "d", "e"])
    three = classification_metrics(labels, probs[:, :3], ["a", "b", "c"])
    assert m["macro_f1"] == three["macro_f1"] == f1_score(labels, probs.argmax(1), average="macro")  # 0.82, not 0.49
    lo, hi = macro_f1_ci(labels, probs.argmax(1), 5, n_resamples=200)
    lo3, hi3 = macro_f1_ci(labels, probs.argmax(1), 3, n_resamples=200)
    assert (lo, hi) == (lo3, hi3) and hi > 0.7
