"""Multi-label target: 2x2 mosaics of clothing-small photos labelled with the classes they contain; mAP >= 0.85.

Mosaics are built from each split's own photos (train mosaics from train photos, and so on), so no photo is in
two splits. Linear mode (per-class logistic regression on frozen MobileNetV2 embeddings) by default.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from _common import CLOTHING


def build(dst: Path, n_per_split: dict[str, int], tile: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = ["path,labels,split"]
    for split_dir, split in (("train", "train"), ("validation", "val"), ("test", "test")):
        files = sorted((CLOTHING / split_dir).glob("*/*.jpg"))
        for i in range(n_per_split[split]):
            picks = rng.sample(files, rng.choice([1, 2, 3, 4]))
            picks += [rng.choice(picks) for _ in range(4 - len(picks))]
            rng.shuffle(picks)
            canvas = Image.new("RGB", (2 * tile, 2 * tile))
            for j, f in enumerate(picks):
                im = Image.open(f).convert("RGB")
                im.draft("RGB", (tile, tile))
                canvas.paste(im.resize((tile, tile)), ((j % 2) * tile, (j // 2) * tile))
            name = f"{split}-{i:05d}.jpg"
            canvas.save(dst / name, quality=90)
            rows.append(f"{name},{'|'.join(sorted({f.parent.name for f in picks}))},{split}")
    (dst / "labels.csv").write_text("\n".join(rows) + "\n")
    return dst / "labels.csv"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", type=int, default=2400)
    ap.add_argument("--tile", type=int, default=112)
    ap.add_argument("--mode", default="linear")
    ap.add_argument("--loss", default="auto")
    ap.add_argument("--budget", type=float, default=300, help="--time-budget for --mode finetune")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pixclass-ml-"))
    csv_path = build(root, {"train": a.train, "val": a.train // 8, "test": a.train // 6}, a.tile)
    env = {**os.environ, "PIXCLASS_WORKSPACE": str(root / "ws")}

    def run(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "pixclass", *args, "--json"], env=env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    run("import", str(csv_path), "--name", "mosaics", "--task", "multilabel")
    tr = run("train", "mosaics", "--mode", a.mode, "--model", "mobilenetv2_100", "--img-size", str(2 * a.tile),
             "--loss", a.loss, "--out", str(root / "run"),
             *(["--time-budget", str(a.budget)] if a.mode == "finetune" else []))
    ev = run("evaluate", str(root / "run"))
    print(f"multi-label mosaics ({a.train} train): mAP {ev['mAP']:.4f} (target >= 0.85), micro F1 {ev['micro_f1']:.4f}, "
          f"macro F1 {ev['macro_f1']:.4f}, Hamming loss {ev['hamming_loss']:.4f}, subset accuracy "
          f"{ev['subset_accuracy']:.4f}; train {tr['metrics']['train_seconds']:.0f}s")
