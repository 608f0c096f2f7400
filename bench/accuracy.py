"""clothing-small accuracy targets, through the CLI as a user runs it, timed wall-clock.

--mode linear: pretrained MobileNetV2, frozen embeddings + logistic regression (target >= 86% test, <= 45 s).
--mode finetune: --time-budget 300 (target >= 92.5% test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CLOTHING

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=["linear", "finetune"], default="linear")
    ap.add_argument("--budget", type=float, default=300)
    ap.add_argument("--model", default="mobilenetv2_100", help="mobilenetv2_100 or tf_efficientnet_lite0 (both offline)")
    a = ap.parse_args()
    ws = Path(tempfile.mkdtemp(prefix="pixclass-acc-"))
    env = {**os.environ, "PIXCLASS_WORKSPACE": str(ws)}
    exe = [sys.executable, "-m", "pixclass"]

    def run(*args: str) -> dict:
        out = subprocess.run([*exe, *args, "--json"], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    t0 = time.time()
    imp = run("import", str(CLOTHING), "--name", "clothing")
    t_import = time.time() - t0
    extra = ["--time-budget", str(a.budget)] if a.mode == "finetune" else []
    t0 = time.time()
    tr = run("train", "clothing", "--mode", a.mode, "--model", a.model, "--pretrained",
             "--out", str(ws / "run"), *extra)
    t_train = time.time() - t0
    ev = run("evaluate", str(ws / "run"), "--split", "test")
    print(f"import: {imp['imported']} images in {t_import:.1f}s")
    print(f"train --mode {a.mode} --model {a.model}: {t_train:.1f}s wall (decode included), val acc {tr['metrics']['val_accuracy']:.4f}")
    print(f"test accuracy: {ev['accuracy']:.4f}, macro F1 {ev['macro_f1']:.4f}")
