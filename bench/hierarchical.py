"""Hierarchical target: clothing-small grouped into a two-level taxonomy, against the flat model.

Target: top-level accuracy >= 97% and leaf accuracy no worse than the flat 10-class model. Linear mode on
pretrained MobileNetV2 for all three (flat, hierarchical one-network, hierarchical cascade), same splits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import CLOTHING

# The example grouping: upper body / lower body / accessories. A dress is put with the upper-body garments
# (it is worn from the shoulders, and the photos frame it like a top); `--four-groups` gives it a group of its own.
TAXONOMY = {
    "upper": ["longsleeve", "outwear", "shirt", "t-shirt", "dress"],
    "lower": ["pants", "shorts", "skirt"],
    "accessory": ["hat", "shoes"],
}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", default="linear")
    ap.add_argument("--img-size", default="224")
    ap.add_argument("--four-groups", action="store_true", help="dress as a top-level group of its own")
    a = ap.parse_args()
    taxonomy = {k: [x for x in v if not (a.four_groups and x == "dress")] for k, v in TAXONOMY.items()}
    if a.four_groups:
        taxonomy["full"] = ["dress"]
    parent_of = {leaf: top for top, leaves in taxonomy.items() for leaf in leaves}
    ws = Path(tempfile.mkdtemp(prefix="pixclass-hier-"))
    rows = ["path,label,split"]
    for split_dir, split in (("train", "train"), ("validation", "val"), ("test", "test")):
        for f in sorted((CLOTHING / split_dir).glob("*/*.jpg")):
            rows.append(f"{f},{parent_of[f.parent.name]}/{f.parent.name},{split}")
    (ws / "hier.csv").write_text("\n".join(rows) + "\n")
    env = {**os.environ, "PIXCLASS_WORKSPACE": str(ws / "ws")}

    def run(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "pixclass", *args, "--json"], env=env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    run("import", str(CLOTHING), "--name", "flat")
    run("import", str(ws / "hier.csv"), "--name", "hier", "--task", "hierarchical")
    common = ["--mode", a.mode, "--model", "mobilenetv2_100", "--img-size", a.img_size]
    run("train", "flat", *common, "--out", str(ws / "flat"))
    flat = run("evaluate", str(ws / "flat"))
    top_of_flat = sum(
        n for i, row in enumerate(flat["confusion_matrix"]) for j, n in enumerate(row)
        if parent_of[flat["classes"][i]] == parent_of[flat["classes"][j]]
    ) / flat["n"]
    print(f"flat 10-class: leaf accuracy {flat['accuracy']:.4f} (its top level, derived: {top_of_flat:.4f})")
    for strategy in ("flat", "cascade"):
        run("train", "hier", *common, "--hierarchy", strategy, "--out", str(ws / f"hier-{strategy}"))
        ev = run("evaluate", str(ws / f"hier-{strategy}"))
        top, leaf = ev["accuracy_by_level"]
        print(f"hierarchical ({strategy}): top-level accuracy {top:.4f} (target >= 0.97), leaf accuracy {leaf:.4f} "
              f"(flat {flat['accuracy']:.4f}, difference {leaf - flat['accuracy']:+.4f}), hierarchical F1 "
              f"{ev['hierarchical_f1']:.4f}")
