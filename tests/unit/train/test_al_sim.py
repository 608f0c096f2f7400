"""The simulation's per-round model: fixed C, or C picked on validation each round like a live retraining."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from pixclass.train.al_sim import run_curve
from pixclass.train.linear import C_GRID, fit_linear


def test_tuned_c_is_picked_on_validation_each_round():
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    p = np.random.default_rng(0).permutation(len(x))
    pool, val, test = p[:1000], p[1000:1300], p[1300:]
    start, sizes = np.arange(40), [40, 120, 200]
    args = (x[pool], y[pool], x[test], y[test], 10, sizes, start)
    # random picks do not depend on the model, so every C sees the same labeled pools
    fixed = {c: [a for _, a in run_curve("random", *args, C=c)] for c in C_GRID}
    tuned = [a for _, a in run_curve("random", *args, C=None, val=(x[val], y[val]))]
    first_c = fit_linear(x[pool][start], y[pool][start], 10, val_x=x[val], val_y=y[val])[2]
    assert tuned[0] == fixed[first_c][0]
    assert all(any(t == f[i] for f in fixed.values()) for i, t in enumerate(tuned))
    assert tuned != fixed[min(C_GRID)] and np.mean(tuned) > np.mean(fixed[min(C_GRID)])  # validation wants weaker regularisation here
    assert min(tuned) > 0.6  # 10 digits: chance is 0.1


def test_the_oracle_asks_for_the_models_mistakes_and_beats_random():
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    p = np.random.default_rng(1).permutation(len(x))
    pool, test = p[:1200], p[1200:]
    sizes = [30, 60, 90, 120, 150]
    args = (x[pool], y[pool], x[test], y[test], 10, sizes, np.arange(30))
    curves = {s: np.array([a for _, a in run_curve(s, *args, C=0.1, seed=3)]) for s in ("oracle", "random")}
    assert curves["oracle"][0] == curves["random"][0]  # the same 30 to start
    assert (curves["oracle"][2:] > curves["random"][2:] + 0.02).all()
