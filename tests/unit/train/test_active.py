"""Query strategies pick what they should on hand-made probability arrays and embeddings."""

import numpy as np
import pytest

from pixclass.errors import ConfigError, DataError
from pixclass.train.active import check_strategy, k_center_greedy, query, uncertainty
from pixclass.train.al_sim import first_reaching

# Row 0: confident. Row 1: two-way tie (smallest margin). Row 2: spread evenly over 4 classes (highest entropy,
# lowest top-1). Row 3: a confident-ish top-1 with a close runner-up.
PROBS = np.array([
    [0.97, 0.01, 0.01, 0.01],
    [0.50, 0.50, 0.00, 0.00],
    [0.25, 0.25, 0.25, 0.25],
    [0.55, 0.45, 0.00, 0.00],
])


def test_margin_prefers_the_closest_top_two():
    assert query("margin", 2, probs=PROBS).tolist() == [1, 2]  # both have a zero gap; ties keep pool order
    m = uncertainty(PROBS, "margin")
    assert m[1] == pytest.approx(1.0) and m[3] == pytest.approx(0.9) and m[0] == pytest.approx(0.04)


def test_entropy_prefers_the_flattest_distribution():
    assert query("entropy", 1, probs=PROBS).tolist() == [2]
    e = uncertainty(PROBS, "entropy")
    assert e[2] == pytest.approx(np.log(4)) and e[1] == pytest.approx(np.log(2))
    assert np.argsort(-e).tolist() == [2, 1, 3, 0]


def test_least_confidence_prefers_the_lowest_top1():
    assert query("least_confidence", 4, probs=PROBS).tolist() == [2, 1, 3, 0]
    assert uncertainty(PROBS, "lc")[0] == pytest.approx(0.03)


def test_margin_and_entropy_disagree_where_they_should():
    # A 3-class row with a tiny top-2 gap but low entropy vs a flat-ish row with a clear winner.
    p = np.array([[0.49, 0.48, 0.03], [0.40, 0.30, 0.30]])
    assert query("margin", 1, probs=p).tolist() == [0]
    assert query("entropy", 1, probs=p).tolist() == [1]


def test_kcenter_picks_far_apart_points_and_skips_covered_ones():
    # Three tight clusters on the unit circle; the labeled point sits in cluster A.
    rng = np.random.default_rng(0)
    centers = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    pool = np.concatenate([c + 0.01 * rng.standard_normal((10, 2)) for c in centers])
    picks = k_center_greedy(pool, 2, labeled=np.array([[1.0, 0.01]]))
    assert sorted(p // 10 for p in picks) == [1, 2]  # one from each uncovered cluster, none from A
    picks3 = k_center_greedy(pool, 3, seed=1)
    assert sorted(p // 10 for p in picks3) == [0, 1, 2]  # no labeled set: one per cluster
    assert len(set(k_center_greedy(pool, 30).tolist())) == 30  # never the same point twice


def test_random_is_seeded_and_a_permutation():
    a = query("random", 5, probs=np.zeros((20, 2)), seed=3)
    assert a.tolist() == query("random", 5, probs=np.zeros((20, 2)), seed=3).tolist()
    assert len(set(a.tolist())) == 5 and a.max() < 20
    assert a.tolist() != query("random", 5, probs=np.zeros((20, 2)), seed=4).tolist()


def test_bad_names_and_shapes_are_clear_errors():
    with pytest.raises(ConfigError, match="Did you mean margin"):
        check_strategy("margn")
    assert check_strategy("core-set") == "kcenter"
    with pytest.raises(DataError, match=r"\(N, K\)"):
        uncertainty(np.ones(4), "margin")
    with pytest.raises(ConfigError, match="class probabilities"):
        query("entropy", 3, embeddings=np.ones((4, 2)))


def test_first_reaching_finds_the_first_label_count_at_target():
    curve = [(20, 0.5), (40, 0.79), (60, 0.81), (80, 0.79), (100, 0.9)]
    assert first_reaching(curve, 0.8) == 60
    assert first_reaching(curve, 0.95) is None


def test_balanced_margin_takes_turns_across_predicted_classes():
    # Rows 0-3 are predicted class 0 with small margins; rows 4-5 class 1 with larger ones; row 6 class 2.
    p = np.array([[0.50, 0.49, 0.01], [0.51, 0.48, 0.01], [0.52, 0.47, 0.01], [0.53, 0.46, 0.01],
                  [0.30, 0.60, 0.10], [0.20, 0.75, 0.05], [0.05, 0.05, 0.90]])
    assert query("margin", 3, probs=p).tolist() == [0, 1, 2]  # plain margin piles onto class 0
    assert query("balanced_margin", 3, probs=p).tolist() == [0, 4, 6]
    assert query("cbmargin", 7, probs=p).tolist() == [0, 4, 6, 1, 5, 2, 3]
    assert uncertainty(p, "balanced_margin") == pytest.approx(uncertainty(p, "margin"))


def test_multilabel_rows_are_scored_per_class():
    """Sigmoid rows: sure of two tags (0.99, 0.98) is certain, not a tie; a class at 0.5 is the uncertain part."""
    p = np.array([[0.99, 0.98], [0.5, 0.02], [0.6, 0.55]])
    for strategy in ("margin", "entropy", "least_confidence"):
        assert query(strategy, 3, probs=p, multilabel=True).tolist() == [2, 1, 0], strategy
    assert query("margin", 3, probs=p).tolist()[0] == 0  # read as one distribution, the sure row looks like a tie
    assert uncertainty(p, "margin", multilabel=True)[1] == pytest.approx((1.0 + 0.04) / 2)
