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
