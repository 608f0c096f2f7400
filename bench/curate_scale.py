"""Time `curate` on the 60,000-image CIFAR-10 JPEG tar, extracted to a temporary folder.

    python bench/curate_scale.py [--limit N] [--keep DIR]

Prints seconds per stage (extract, import, curate cold, curate warm with cached embeddings), peak memory and the
findings per kind.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR, ROOT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="extract only this many images (0: all)")
    ap.add_argument("--warm", action="store_true", help="run curate a second time (embeddings cached)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "curate_scale.json")
    args = ap.parse_args()

    from pixclass.curate import CurateConfig, curate
    from pixclass.io.importer import import_dataset
    from pixclass.store import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="pixclass-curate-scale-"))
    t = time.time()
    with tarfile.open(CIFAR) as tar:
        members = [m for m in tar if m.isfile()]
        if args.limit:
            members = members[:: max(1, len(members) // args.limit)][: args.limit]
        tar.extractall(tmp / "data", members=members, filter="data")
    root = next(p for p in (tmp / "data").rglob("train")).parent
    times = {"extract": round(time.time() - t, 1)}
    ws = Workspace.open(tmp / "ws")
    t = time.time()
    imp = import_dataset(ws, root, "cifar10")
    times["import"] = round(time.time() - t, 1)
    stages: dict[str, float] = {}
    last = [time.time()]

    def progress(stage: str, done: int, total: int) -> None:
        if done >= total:
            stages[stage] = round(time.time() - last[0], 1)
            last[0] = time.time()

    t = time.time()
    res = curate(ws, "cifar10", CurateConfig(), report=tmp / "report.html", progress=progress)
    times["curate"] = round(time.time() - t, 1)
    if args.warm:
        t = time.time()
        curate(ws, "cifar10", CurateConfig())
        times["curate_warm"] = round(time.time() - t, 1)
    out = {"images": res.images, "imported": imp.imported, "skipped_duplicates_at_import": imp.skipped_existing,
           "img_size": res.settings["img_size"], "seconds": times, "curate_stages": stages,
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "label_model_accuracy": res.label_model_accuracy, "summary": res.summary,
           "report": str(tmp / "report.html")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
