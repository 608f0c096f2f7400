import numpy as np
import pytest
from sklearn.metrics import f1_score

from pixclass.evaluate.bootstrap import accuracy_ci, bootstrap_cis, macro_f1_ci


def test_one_resample_matches_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 60)
    pred = np.where(rng.random(60) < 0.7, labels, rng.integers(0, 4, 60))
    for seed in range(5):
        idx = np.random.default_rng(seed).integers(0, 60, size=(1, 60))[0]
        want = f1_score(labels[idx], pred[idx], labels=range(4), average="macro", zero_division=0)
        lo, hi = macro_f1_ci(labels, pred, 4, n_resamples=1, seed=seed)
        assert lo == pytest.approx(want) and hi == pytest.approx(want)
        acc = np.mean(labels[idx] == pred[idx])
        assert accuracy_ci(labels, pred, n_resamples=1, seed=seed)[0] == pytest.approx(acc)


def test_intervals_cover_the_estimate_and_shrink_with_n():
    rng = np.random.default_rng(0)

    def data(n):
        labels = rng.integers(0, 3, n)
        return labels, np.where(rng.random(n) < 0.8, labels, (labels + 1) % 3)

    small, big = data(100), data(2000)
    lo_s, hi_s = accuracy_ci(*small)
    lo_b, hi_b = accuracy_ci(*big)
    assert lo_s <= np.mean(small[0] == small[1]) <= hi_s
    assert lo_b <= np.mean(big[0] == big[1]) <= hi_b
    assert (hi_b - lo_b) < 0.5 * (hi_s - lo_s)
    assert 0.6 < lo_b < 0.8 < hi_b < 0.85


def test_perfect_predictions_and_probs_interface():
    labels = np.array([0, 1, 2] * 10)
    cis = bootstrap_cis(labels, np.eye(3)[labels])
    assert cis["accuracy_ci"] == [1.0, 1.0]
    assert cis["macro_f1_ci"][1] == 1.0  # a resample missing a class scores it 0, as scikit-learn does
