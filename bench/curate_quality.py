"""Plant known problems into a clean real dataset and measure what `curate` finds: precision and recall per kind.

    python bench/curate_quality.py [--per-class 130] [--seed 0] [--cleanvision /path/to/venv/bin/python]

Base: clothing-small, ``--per-class`` photos of each of its 10 classes at full resolution. "Clean" means: curate
is run once on the untouched base and everything it flags is dropped (the real data has some label noise and a few
near-duplicates of its own, which would otherwise count as false positives). Planted with a seed: 5% of labels
flipped, exact byte copies, resized + re-encoded near-duplicates, Gaussian blur, darkening, CIFAR-10 images (an
unrelated dataset, expected as outliers) and truncated files. With ``--cleanvision`` (a Python that has the MIT
`cleanvision` package, kept out of pixclass's dependencies) CleanVision runs on the same folder for its kinds.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLOTHING, ROOT  # noqa: E402

CIFAR = CLOTHING.parent / "cifar10-jpg.tar"
N_PLANT = 20  # images per planted kind


def build_base(dst: Path, per_class: int, seed: int) -> Path:
    rng = random.Random(seed)
    for cls in sorted(p.name for p in (CLOTHING / "train").iterdir()):
        files = sorted(CLOTHING.glob(f"*/{cls}/*.jpg"))
        rng.shuffle(files)
        (dst / cls).mkdir(parents=True, exist_ok=True)
        for f in files[:per_class]:
            shutil.copy(f, dst / cls / f.name)
    return dst


def cifar_images(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    with tarfile.open(CIFAR) as tar:
        for m in tar:
            if m.isfile() and m.name.endswith((".jpg", ".png")) and rng.random() < 0.002:
                out.append(tar.extractfile(m).read())
                if len(out) == n:
                    break
    return out


def plant(root: Path, seed: int) -> dict[str, set[str]]:
    """Plant problems in place. Returns {kind: set of planted file paths}."""
    rng = random.Random(seed)
    classes = sorted(p.name for p in root.iterdir())
    files = sorted(root.glob("*/*.jpg"))
    rng.shuffle(files)
    truth: dict[str, set[str]] = {k: set() for k in ("label_error", "exact_duplicate", "near_duplicate", "blurry",
                                                     "dark", "outlier", "broken")}
    n_flip = round(0.05 * len(files))
    pool = iter(files)
    for f in [next(pool) for _ in range(n_flip)]:
        new = rng.choice([c for c in classes if c != f.parent.name])
        dst = root / new / f"flip_{f.name}"
        shutil.move(f, dst)
        truth["label_error"].add(str(dst))
    for i in range(N_PLANT):
        f = next(pool)
        dst = f.parent / f"exact_{i}_{f.name}"
        shutil.copy(f, dst)
        truth["exact_duplicate"].add(str(dst))
        g = next(pool)
        im = Image.open(g).convert("RGB")
        scale = rng.uniform(0.5, 0.8)
        dst = g.parent / f"near_{i}_{g.stem}.jpg"
        im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS).save(
            dst, quality=rng.randint(60, 85))
        truth["near_duplicate"].add(str(dst))
        h = next(pool)
        Image.open(h).convert("RGB").filter(ImageFilter.GaussianBlur(rng.uniform(3, 5))).save(h, quality=90)
        truth["blurry"].add(str(h))
        d = next(pool)
        ImageEnhance.Brightness(Image.open(d).convert("RGB")).enhance(rng.uniform(0.1, 0.2)).save(d, quality=90)
        truth["dark"].add(str(d))
    for i, data in enumerate(cifar_images(N_PLANT, seed)):
        dst = root / rng.choice(classes) / f"cifar_{i}.jpg"
        Image.open(io.BytesIO(data)).convert("RGB").save(dst, quality=90)
        truth["outlier"].add(str(dst))
    for i in range(10):
        f = next(pool)
        dst = f.parent / f"broken_{i}.jpg"
        dst.write_bytes(f.read_bytes()[: rng.randint(100, 2000)])
        truth["broken"].add(str(dst))
    return truth


def score(found: list[dict], truth: set[str], planted: set[str] = frozenset()) -> dict:
    """Recall over planted files; precision over findings; ``precision_clean``: precision leaving out findings on
    images planted for another kind (an upscaled 32 px CIFAR image is blurry too, a darkened one low-information)."""
    flagged = {f["path"] for f in found} | {f["other_path"] for f in found if f.get("other_path")}
    hits = {p for p in flagged if p in truth}
    tp = sum(1 for f in found if f["path"] in truth or f.get("other_path") in truth)
    other = sum(1 for f in found if f["path"] not in truth and f["path"] in planted)
    return {"planted": len(truth), "flagged": len(found), "recall": round(len(hits) / max(1, len(truth)), 3),
            "precision": round(tp / max(1, len(found)), 3),
            "precision_clean": round(tp / max(1, len(found) - other), 3)}


def originals(copies: set[str]) -> set[str]:
    """The source photos of planted copies: exact_<i>_<name> and near_<i>_<stem>.jpg."""
    return {str(Path(p).parent / Path(p).name.split("_", 2)[2]) for p in copies}


def precision_at_recall(quality: np.ndarray, is_error: np.ndarray, recall: float) -> dict:
    order = np.argsort(quality)
    hits = np.cumsum(is_error[order])
    n = int(np.searchsorted(hits, np.ceil(recall * is_error.sum())) + 1)
    return {"recall": round(float(hits[n - 1] / is_error.sum()), 3), "precision": round(float(hits[n - 1] / n), 3),
            "cutoff": n}


CV_KINDS = {"exact_duplicates": "exact_duplicate", "near_duplicates": "near_duplicate", "blurry": "blurry",
            "dark": "dark", "light": "bright", "low_information": "low_information", "grayscale": "grayscale",
            "odd_aspect_ratio": "odd_size", "odd_size": "odd_size"}

CV_SCRIPT = """
import json, sys
from cleanvision import Imagelab
lab = Imagelab(data_path=sys.argv[1])
lab.find_issues()
out = {}
for col in lab.issues.columns:
    if col.startswith("is_") and col.endswith("_issue"):
        out[col[3:-6]] = [str(p) for p in lab.issues.index[lab.issues[col]]]
print(json.dumps(out))
"""


def run_cleanvision(python: str, root: Path) -> dict[str, list[str]] | None:
    t = time.time()
    proc = subprocess.run([python, "-c", CV_SCRIPT, str(root)], capture_output=True, text=True)
    if proc.returncode:
        print("cleanvision failed:", proc.stderr[-2000:], file=sys.stderr)
        return None
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["_seconds"] = round(time.time() - t, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=130)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cleanvision", help="Python interpreter with cleanvision installed")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "curate_quality.json")
    args = ap.parse_args()

    from pixclass.curate import CurateConfig, curate
    from pixclass.io.importer import import_dataset
    from pixclass.store import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="pixclass-curate-q-"))
    root = build_base(tmp / "data", args.per_class, args.seed)
    cfg = CurateConfig(seed=args.seed)
    t0 = time.time()
    ws0 = Workspace.open(tmp / "ws0")
    import_dataset(ws0, root, "base")
    base = curate(ws0, "base", cfg)
    dropped = {f["path"] for f in base.findings} | {f["other_path"] for f in base.findings if f["other_path"]
                                                    and f["kind"] in ("near_duplicate", "exact_duplicate")}
    for p in dropped:
        Path(p).unlink(missing_ok=True)
    clean_n = len(list(root.glob("*/*.jpg")))
    truth = plant(root, args.seed)

    ws = Workspace.open(tmp / "ws")
    import_dataset(ws, root, "planted")
    t1 = time.time()
    res = curate(ws, "planted", cfg, report=tmp / "report.html")
    seconds = time.time() - t1
    by_kind: dict[str, list[dict]] = {}
    for f in res.findings:
        by_kind.setdefault(f["kind"], []).append(f)
    planted = set().union(*truth.values())
    table = {k: score(by_kind.get(k, []), truth[k], planted) for k in truth}
    items, rows = res.extra["items"], res.extra["label_rows"]
    quality = res.extra["label_quality"]
    is_err = np.array([items[i].path in truth["label_error"] for i in rows])
    table["label_error"]["ranked"] = precision_at_recall(quality, is_err, 0.6)
    summary = {"base_images": args.per_class * 10, "clean_images": clean_n, "dropped_by_cleaning": len(dropped),
               "planted_images": len(list(root.glob("*/*.jpg"))), "curate_seconds": round(seconds, 1),
               "label_model_accuracy": res.label_model_accuracy, "img_size": res.settings["img_size"],
               "pixclass": table, "report": str(tmp / "report.html"), "total_seconds": round(time.time() - t0, 1)}
    if args.cleanvision:  # CleanVision stops on a truncated file, so it gets the folder without them
        cv_root = tmp / "cv"
        shutil.copytree(root, cv_root, ignore=shutil.ignore_patterns("broken_*"))
        cv = run_cleanvision(args.cleanvision, cv_root)
        if cv:
            cv = {k: [str(root / Path(p).relative_to(cv_root)) for p in v] for k, v in cv.items() if k != "_seconds"} \
                | {"_seconds": cv["_seconds"]}
        if cv:
            cv_table = {}
            for cv_kind, kind in CV_KINDS.items():
                if kind in truth and cv_kind in cv:
                    found = [{"path": p} for p in cv[cv_kind]]
                    want = truth[kind] | originals(truth[kind]) if "duplicate" in kind else truth[kind]
                    cv_table[cv_kind] = score(found, want, planted)  # CleanVision flags both copies of a pair
            summary["cleanvision"] = {"seconds": cv["_seconds"], **cv_table,
                                      "flagged": {k: len(v) for k, v in cv.items() if k != "_seconds"}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
