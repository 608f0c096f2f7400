"""Self-supervised pretraining on CIFAR-10: does `pixclass pretrain` give a better backbone than random weights?

(Named selfsup.py: a bench/ssl.py would shadow Python's ssl module for every script run from bench/.)

Unlabeled pool: --pool images per class from CIFAR-10 train (32 px; labels dropped). Labeled subset: 100 per class
of the pool for training, 30 per class for validation, 100 per class of CIFAR-10 test for testing. Then linear mode
(frozen backbone embeddings + logistic regression, `pixclass train --mode linear`) with:

  1. smallcnn pretrained by SimCLR (or BYOL) on the pool, for --budget seconds,
  2. the same smallcnn with random weights (the baseline it must clearly beat),
  3. MobileNetV2 with ImageNet weights (reported; at 32 px and at 64 px upscaled).

About 10 minutes on 2 CPU cores with the defaults.

    python bench/selfsup.py [--method simclr|byol] [--pool 500] [--budget 420]
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
import time
from pathlib import Path

from _common import CLOTHING

CIFAR = CLOTHING.parent / "cifar10-jpg.tar"


def extract(dst: Path, pool: int, train: int = 100, val: int = 30, test: int = 100) -> tuple[Path, Path]:
    """Write the images and two CSVs: pool.csv (no labels) and probe.csv (path,label,split)."""
    want: dict[tuple[str, str], list[tarfile.TarInfo]] = {}
    with tarfile.open(CIFAR) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        for m in sorted(members, key=lambda m: m.name):
            split, cls = m.name.split("/")[:2]
            want.setdefault((split, cls), []).append(m)
        chosen = []
        for (split, cls), ms in sorted(want.items()):
            chosen += ms[: pool if split == "train" else test]
        tar.extractall(dst, members=chosen, filter="data")
    pool_rows, probe_rows = ["path"], ["path,label,split"]
    for (split, cls), ms in sorted(want.items()):
        if split == "train":
            files = ms[:pool]
            pool_rows += [str(dst / m.name) for m in files]
            probe_rows += [f"{dst / m.name},{cls},train" for m in files[:train]]
            probe_rows += [f"{dst / m.name},{cls},val" for m in files[train : train + val]]
        else:
            probe_rows += [f"{dst / m.name},{cls},test" for m in ms[:test]]
    (dst / "pool.csv").write_text("\n".join(pool_rows) + "\n")
    (dst / "probe.csv").write_text("\n".join(probe_rows) + "\n")
    return dst / "pool.csv", dst / "probe.csv"


def probe(ws, name: str, cfg) -> dict:
    from pixclass.evaluate.run_eval import evaluate_run
    from pixclass.train.run import train

    t = time.time()
    res = train(ws, "probe", cfg, out=ws.runs_dir / name)
    ev = evaluate_run(ws, res.run, split="test")
    return {"backbone": name, "test_accuracy": round(ev["accuracy"], 4), "val_accuracy":
            round(res.metrics.get("val_accuracy", float("nan")), 4), "seconds": round(time.time() - t, 1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", choices=["simclr", "byol"], default="simclr")
    ap.add_argument("--pool", type=int, default=500, help="Unlabeled images per class for pretraining.")
    ap.add_argument("--budget", type=float, default=420, help="Pretraining seconds.")
    ap.add_argument("--epochs", type=int, default=100, help="Upper bound; the budget usually ends it first.")
    ap.add_argument("--batch-size", type=int, default=256)
    a = ap.parse_args()

    from pixclass.config import TrainConfig
    from pixclass.io.importer import import_dataset
    from pixclass.store import Workspace
    from pixclass.train.pretrain import PretrainConfig, pretrain

    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="pixclass-ssl-"))
    pool_csv, probe_csv = extract(tmp / "img", a.pool)
    ws = Workspace.open(tmp / "ws")
    import_dataset(ws, pool_csv, "pool")
    import_dataset(ws, probe_csv, "probe")
    print(f"data: {a.pool * 10} unlabeled pool images, probe 1000 train / 300 val / 1000 test "
          f"({time.time() - t0:.1f}s)", flush=True)

    cfg = PretrainConfig(method=a.method, model="smallcnn", img_size=32, epochs=a.epochs, batch_size=a.batch_size,
                         time_budget=a.budget)
    pre = pretrain(ws, "pool", cfg, out=tmp / "ssl.pt")
    losses = [round(h["loss"], 3) for h in pre.history]
    print(f"{a.method}: {pre.steps} steps, {pre.epochs} epochs in {pre.seconds:.0f}s; loss by epoch {losses}",
          flush=True)

    rows = [
        probe(ws, f"smallcnn-{a.method}", TrainConfig(model="smallcnn", mode="linear", pretrained=False,
                                                      weights=str(pre.path), img_size=32)),
        probe(ws, "smallcnn-random", TrainConfig(model="smallcnn", mode="linear", pretrained=False, img_size=32)),
        probe(ws, "mobilenetv2-imagenet-32px", TrainConfig(model="mobilenetv2_100", mode="linear", img_size=32)),
        probe(ws, "mobilenetv2-imagenet-64px", TrainConfig(model="mobilenetv2_100", mode="linear", img_size=64)),
    ]
    for r in rows:
        print(f"{r['backbone']:28s} linear-mode test accuracy {r['test_accuracy']:.4f} (val {r['val_accuracy']:.4f})"
              f", {r['seconds']:.0f}s", flush=True)
    gain = rows[0]["test_accuracy"] - rows[1]["test_accuracy"]
    print(f"self-supervised minus random init: {gain * 100:+.1f} points; total {time.time() - t0:.0f}s")
    print(json.dumps({"pretrain": pre.to_dict(), "probes": rows}, default=str))
