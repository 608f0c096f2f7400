import numpy as np
import torch

from pixclass.evaluate.task_metrics import binary_threshold, hierarchical_metrics, multilabel_metrics
from pixclass.schema import LabelSchema
from pixclass.train.losses import asymmetric_loss


def test_binary_threshold_targets():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    score = np.clip(y * 0.3 + rng.normal(0.35, 0.2, 400), 0, 1)
    t_recall = binary_threshold(y, score, "recall>=0.95")
    assert np.mean(score[y == 1] >= t_recall) >= 0.95
    t_prec = binary_threshold(y, score, "precision>=0.9")
    assert np.mean(y[score >= t_prec] == 1) >= 0.9
    assert t_prec > t_recall


def test_multilabel_metrics_values():
    schema = LabelSchema.infer({"a", "b"}, "multilabel")
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    probs = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.6], [0.1, 0.4]])
    m = multilabel_metrics(targets, probs, schema, {"a": 0.5, "b": 0.5})
    assert m["mAP"] == 1.0 and m["subset_accuracy"] == 1.0 and m["hamming_loss"] == 0.0
    m = multilabel_metrics(targets, probs, schema, {"a": 0.5, "b": 0.3})  # b fires on the last row too
    assert m["hamming_loss"] == 1 / 8 and m["subset_accuracy"] == 0.75


def test_hierarchical_metrics_levels():
    schema = LabelSchema.infer({"x/a", "x/b", "y/c"})
    labels = np.array([0, 1, 2])
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.1, 0.7]])  # second: right parent, wrong leaf
    m = hierarchical_metrics(labels, probs, schema, {"_node": 0.5})
    assert m["accuracy_by_level"] == [1.0, 2 / 3]
    assert 2 / 3 < m["hierarchical_f1"] < 1


def test_asymmetric_loss_downweights_easy_negatives():
    y = torch.tensor([[1.0, 0.0]])
    easy_neg = asymmetric_loss(torch.tensor([[2.0, -3.0]]), y)
    hard_neg = asymmetric_loss(torch.tensor([[2.0, 3.0]]), y)
    assert hard_neg > easy_neg > 0
