"""Effect of `train --adversarial` on clothing-small: PGD accuracy before and after, and the clean-accuracy cost.

Two fine-tuning runs of pretrained MobileNetV2 with the same settings and seed, one plain and one with adversarial
training (FGSM with random start at --train-eps), then `robustness` on the same test images for both:
clean accuracy, PGD accuracy at each epsilon, and corruption accuracy averaged over severities.
A training subset (--per-class), small images and few epochs keep it within ~10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import CLOTHING

from pixclass.io.importer import import_dataset
from pixclass.store import Workspace

from pixclass.config import TrainConfig
from pixclass.train.robustness import robustness
from pixclass.train.run import train

def subset_workspace(path: str | None, per_class: int) -> Workspace:
    """A workspace with clothing-small imported as 'clothing', at most ``per_class`` training photos per class
    (symlinks; validation and test kept whole)."""
    root = Path(path or tempfile.mkdtemp(prefix="pixclass-adv-"))
    src = root / f"clothing-train{per_class}"
    rng = random.Random(0)
    for split in ("train", "validation", "test"):
        for cls_dir in sorted((CLOTHING / split).iterdir()):
            files = sorted(cls_dir.glob("*.jpg"))
            if split == "train":
                rng.shuffle(files)
                files = files[:per_class]
            (src / split / cls_dir.name).mkdir(parents=True, exist_ok=True)
            for f in files:
                link = src / split / cls_dir.name / f.name
                if not link.exists():
                    link.symlink_to(f)
    ws = Workspace.open(root / f"ws-train{per_class}")
    import_dataset(ws, src, "clothing")
    return ws


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", default=None, help="Folder for the subset and its workspace (default: temp).")
    ap.add_argument("--per-class", type=int, default=100, help="training photos per class (of ~300)")
    ap.add_argument("--img-size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-eps", type=float, default=4 / 255)
    ap.add_argument("--max-images", type=int, default=300, help="test images scored")
    ap.add_argument("--pgd-steps", type=int, default=5)
    a = ap.parse_args()
    ws = subset_workspace(a.workspace, a.per_class)
    eps = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
    rows = {}
    for name, adv in (("plain", 0.0), ("adversarial", a.train_eps)):
        cfg = TrainConfig(mode="finetune", img_size=a.img_size, epochs=a.epochs, patience=a.epochs,
                          adversarial_eps=adv, seed=0)
        t0 = time.time()
        res = train(ws, "clothing", cfg, out=ws.runs_dir / f"adv-bench-{name}-{int(t0)}")
        t_train = time.time() - t0
        t0 = time.time()
        rob = robustness(ws, res.run, epsilons=eps, pgd_steps=a.pgd_steps, max_images=a.max_images)
        rows[name] = {"train_seconds": round(t_train, 1), "robustness_seconds": round(time.time() - t0, 1),
                      "val_accuracy": res.metrics.get("val_accuracy"), "clean": rob.clean_accuracy,
                      "pgd": [r["accuracy"] for r in rob.adversarial["pgd"]],
                      "fgsm": [r["accuracy"] for r in rob.adversarial["fgsm"]],
                      "corruption_mean": {k: float(np.mean(v)) for k, v in rob.corruptions.items()}, "n": rob.n}
        print(json.dumps({name: rows[name]}), flush=True)
    print(f"\nclothing-small ({a.per_class} train photos per class), MobileNetV2 finetune {a.epochs} epochs at "
          f"{a.img_size} px, adversarial training at eps {a.train_eps * 255:.0f}/255 (FGSM, random start); "
          f"PGD {a.pgd_steps} steps on {rows['plain']['n']} test images")
    head = "".join(f"  PGD {e * 255:.0f}/255" for e in eps)
    print(f"{'run':<12} {'train s':>8} {'clean':>7}{head}  corruptions(mean)")
    for name, r in rows.items():
        pgd = "".join(f"{x:>12.3f}" for x in r["pgd"])
        corr = np.mean(list(r["corruption_mean"].values()))
        print(f"{name:<12} {r['train_seconds']:>8.0f} {r['clean']:>7.3f}{pgd}  {corr:.3f}")
    cost = rows["plain"]["clean"] - rows["adversarial"]["clean"]
    print(f"clean-accuracy cost: {cost * 100:+.1f} points; PGD gain at each eps: " +
          ", ".join(f"{(y - x) * 100:+.1f}" for x, y in zip(rows["plain"]["pgd"], rows["adversarial"]["pgd"])))
