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


def _stages(calls):
    """[(stage, last done, total)] per run of consecutive calls of one stage, in order."""
    out = []
    for stage, done, total in calls:
        if out and out[-1][0] == stage:
            assert done >= out[-1][1] and total == out[-1][2], (stage, done, total)  # counts only go up
            out[-1] = (stage, done, total)
        else:
            out.append((stage, done, total))
    return out


def test_a_linear_run_reports_choosing_c_and_the_fit_after_embedding(tmp_path):
    from PIL import Image

    from pixclass.config import TrainConfig
    from pixclass.io.importer import import_dataset
    from pixclass.store import Workspace
    from pixclass.train.run import train

    rng = np.random.default_rng(0)
    lines = ["path,label,split"]
    for cls, rgb in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        for i in range(9):  # 6 train (CV: 5 folds), 3 val (< MIN_VAL) per class
            px = np.clip(np.array(rgb) + rng.normal(0, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(tmp_path / f"{cls}{i}.png")
            lines.append(f"{cls}{i}.png,{cls},{'train' if i < 6 else 'val'}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, tmp_path / "labels.csv", "d")
    calls = []
    res = train(ws, "d", TrainConfig(mode="linear", img_size=32), out=tmp_path / "run",
                progress=lambda stage, done, total: calls.append((stage, done, total)))

    assert res.metrics["linear_c_by"] == "cv"
    stages = _stages(calls)
    names = [s[0] for s in stages]
    assert names == ["decode", "embed", "choose C (cross-validation)", "fit"]  # every split embedded at once
    assert stages[-2] == ("choose C (cross-validation)", 5 * len(C_GRID), 5 * len(C_GRID))  # 5 folds x the grid
    assert stages[-1] == ("fit", 1, 1) and ("fit", 0, 1) in calls  # the fit starts at 0 so the UI moves on
    first = calls.index(("choose C (cross-validation)", 0, 5 * len(C_GRID)))
    assert calls[first - 1] == ("embed", 18, 18)  # straight after the last embedding batch, before any fit
    assert all(done == total for _, done, total in stages)
    assert res.metrics["val_accuracy"] == 1.0  # red vs blue

    calls.clear()  # again: the embeddings are cached, so nothing is decoded or run through the backbone
    again = train(ws, "d", TrainConfig(mode="linear", img_size=32), out=tmp_path / "run2",
                  progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert [s[0] for s in _stages(calls)] == ["choose C (cross-validation)", "fit"]
    assert again.metrics["val_accuracy"] == 1.0 and again.metrics["linear_c"] == res.metrics["linear_c"]


def test_progress_on_validation_and_multilabel_fits_changes_no_number():
    x, y, tr, rest = _digits(seed=0)
    va = rest[:MIN_VAL]
    calls = []
    record = lambda *a: calls.append(a)  # noqa: E731
    w, b, c = fit_linear(x[tr], y[tr], 10, val_x=x[va], val_y=y[va], progress=record)
    w0, b0, c0 = fit_linear(x[tr], y[tr], 10, val_x=x[va], val_y=y[va])
    assert c == c0 and np.array_equal(w, w0) and np.array_equal(b, b0)
    n = len(C_GRID)
    assert calls == [("choose C (validation)", i, n) for i in range(n + 1)] + [("fit", 0, 1), ("fit", 1, 1)]

    multi = np.stack([y >= 5, y % 2 == 0, y == 3], axis=1).astype(np.float32)
    calls.clear()
    w, b, c = fit_multilabel(x[tr], multi[tr], val_x=x[rest[:5]], val_y=multi[rest[:5]], progress=record)
    w0, b0, c0 = fit_multilabel(x[tr], multi[tr], val_x=x[rest[:5]], val_y=multi[rest[:5]])
    assert c == c0 and np.array_equal(w, w0) and np.array_equal(b, b0)
    assert _stages(calls) == [("choose C (cross-validation)", 5 * n, 5 * n), ("fit", 3, 3)]
    assert calls[0] == ("choose C (cross-validation)", 0, 5 * n) and ("fit", 0, 3) in calls
    calls.clear()
    assert select_c(x[tr], y[tr], C=0.1, progress=record).by == "given" and calls == []  # nothing to choose
