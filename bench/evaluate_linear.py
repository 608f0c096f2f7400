"""Evaluating a linear run: `pixclass evaluate` (test split) and `pixclass report` (test split, val for the
temperature) of a linear run on clothing-small, right after training it.

The reference scores the split as before: the images decoded (from the warm decoded-image cache) and the whole
network run over them (torch, bf16). Ours applies only the run's head to the embeddings that training cached. Both
run in this process on the same run; the report's Grad-CAM gallery and the metrics, plots and HTML are the same
work in both. Also prints both accuracies (the reference's bf16 against ours in float32).
"""

from __future__ import annotations

import argparse
import time

from _common import clothing_workspace


def old_probs_for(ws, run_dir, manifest, part, progress=None):
    """What evaluate and report did before: decode the split, run the checkpoint's whole network (torch, bf16)."""
    from pixclass.data.cache import ImageCache
    from pixclass.models.embed import predict_probs
    from pixclass.models.registry import load_checkpoint

    images = ImageCache(ws.cache_dir, manifest.preprocess.img_size).get([it.path for it in part.items],
                                                                          [it.sha256 for it in part.items])
    return predict_probs(load_checkpoint(run_dir)[0], images)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", help="reuse this workspace (clothing-small is imported when missing)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import tempfile
    from pathlib import Path

    import pixclass.evaluate.run_eval as run_eval
    import pixclass.explain.report as report
    from pixclass.config import TrainConfig
    from pixclass.train.run import train

    ws = clothing_workspace(a.workspace)
    run = train(ws, "clothing", TrainConfig(mode="linear")).run  # embeds every split once, warms the image cache
    out = Path(tempfile.mkdtemp(prefix="pixclass-bench-report-"))
    ours_probs = run_eval.probs_for
    rows = {"evaluate": [], "report": []}
    acc = {}
    for _ in range(a.repeats):
        for name, fn in (("reference", old_probs_for), ("ours", ours_probs)):
            run_eval.probs_for = report.probs_for = fn
            t_eval, m = timed(lambda: run_eval.evaluate_run(ws, run))
            t_rep, _ = timed(lambda: report.build_run_report(ws, run, out / f"{name}.html"))
            rows["evaluate"].append((name, t_eval))
            rows["report"].append((name, t_rep))
            acc[name] = m["accuracy"]
    print(f"linear run {run.name} on clothing-small, test split of {m['n']} images, best of {a.repeats}")
    print(f"{'step':<10} {'reference s':>12} {'ours s':>8} {'speed-up':>9}")
    for step, vals in rows.items():
        ref = min(t for n, t in vals if n == "reference")
        ours = min(t for n, t in vals if n == "ours")
        print(f"{step:<10} {ref:>12.2f} {ours:>8.2f} {ref / ours:>8.1f}x")
    print(f"test accuracy: reference {acc['reference']:.4f}, ours {acc['ours']:.4f}")
