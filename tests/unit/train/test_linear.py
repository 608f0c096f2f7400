"""Linear mode's C: picked on validation when it has enough images, else by cross-validation on train."""

import numpy as np
from sklearn.datasets import load_digits

from pixclass.train.linear import C_GRID, MIN_VAL, fit_linear, fit_multilabel, select_c


def _digits(seed=0, n_train=150):
    x, y = load_digits(return_X_y=True)
    p = np.random.default_rng(seed).permutation(len(x))
    return x.astype(np.float32), y, p[:n_train], p[1000:]


def test_a_handful_of_validation_images_does_not_pick_c():
    x, y, tr, rest = _digits(seed=2)
    va = rest[:5]
    choice = select_c(x[tr], y[tr], val_x=x[va], val_y=y[va])
    assert choice.by == "cv" and choice.C in C_GRID and choice.folds == 5
    assert set(choice.scores) == set(C_GRID) and all(0.5 < s <= 1 for s in choice.scores.values())
    assert choice.C == max(C_GRID, key=lambda c: (choice.scores[c], -c))
    # C comes from the training labels only: five mislabeled validation images, or none, give the same C
    wrong = fit_linear(x[tr], y[tr], 10, val_x=x[va], val_y=(y[va] + 1) % 10)[2]
    none = fit_linear(x[tr], y[tr], 10)[2]
    right = fit_linear(x[tr], y[tr], 10, val_x=x[va], val_y=y[va])[2]
    assert wrong == none == right == choice.C


def test_a_big_validation_split_picks_c_as_before():
    x, y, tr, rest = _digits(seed=0)
    va = rest[:MIN_VAL]
    choice = select_c(x[tr], y[tr], val_x=x[va], val_y=y[va])
    assert choice.by == "validation"
    accs = []
    for c in C_GRID:  # validation accuracy of each C's model, through the public API
        w, b, _ = fit_linear(x[tr], y[tr], 10, C=c)
        accs.append(float(((x[va] @ w.T + b).argmax(1) == y[va]).mean()))
    assert choice.C == C_GRID[int(np.argmax(accs))]
    assert [choice.scores[c] for c in C_GRID] == accs
    assert fit_linear(x[tr], y[tr], 10, val_x=x[va], val_y=y[va])[2] == choice.C
    assert select_c(x[tr], y[tr], val_x=x[va[:-1]], val_y=y[va[:-1]]).by == "cv"  # one fewer: cross-validation


def test_cv_impossible_falls_back_to_the_largest_c_and_a_given_c_is_kept():
    x, y, tr, _ = _digits()
    keep = np.concatenate([np.where(y[tr] == 0)[0][:1], np.where(y[tr] == 1)[0][:6]])  # class 0: one image
    choice = select_c(x[tr][keep], y[tr][keep])
    assert (choice.by, choice.C) == ("default", max(C_GRID))
    given = select_c(x[tr], y[tr], val_x=x[:5], val_y=y[:5], C=0.05)
    assert (given.by, given.C) == ("given", 0.05)


def test_multilabel_uses_cv_on_a_small_validation_split():
    x, y, tr, rest = _digits()
    multi = np.stack([y >= 5, y % 2 == 0, y == 3], axis=1).astype(np.float32)
    choice = select_c(x[tr], multi[tr], val_x=x[rest[:5]], val_y=multi[rest[:5]])
    assert choice.by == "cv" and choice.C in C_GRID and all(s > 0.6 for s in choice.scores.values())  # mAP
    w, b, c = fit_multilabel(x[tr], multi[tr], val_x=x[rest[:5]], val_y=multi[rest[:5]])
    assert c == choice.C and w.shape == (3, 64)
    assert (((x[rest] @ w.T + b) > 0) == (multi[rest] > 0)).mean() > 0.8  # per-label accuracy on held-out digits
