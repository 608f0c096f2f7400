"""The "next to label" queue on a large dataset: CIFAR-10's 50,000 training images, one in ten labeled.

Trains a linear run and a fine-tuned one (both at CIFAR's own 32 px, to keep the set-up short) and times the queue
request through the API with each serving: first scored from scratch on every request (the reference: what every
request cost before the server kept a run's class probabilities), then reusing the scores, and prints the ratio. A
linear run's scores come from cached embeddings and a small head; a fine-tuned run's need the whole network over
every unlabeled image, which is what the kept scores save.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import admin_client, cifar_train, timed

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=50_000, help="training images of CIFAR-10 (at most 50,000)")
    ap.add_argument("--labeled", type=int, default=10, help="label one image in this many")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from pixclass.config import TrainConfig
    from pixclass.io.importer import import_dataset
    from pixclass.store import Workspace, records
    from pixclass.train.active import ProbCache
    from pixclass.train.run import train

    tmp = Path(tempfile.mkdtemp(prefix="pixclass-queue-"))
    src = cifar_train(tmp, a.images)
    files = sorted(src.rglob("*.jpg"))
    rows = ["path,label,split"] + [f"{f},{f.parent.name if i % a.labeled == 0 else ''},train"
                                   for i, f in enumerate(files)]
    (tmp / "labels.csv").write_text("\n".join(rows) + "\n")
    ws = Workspace.open(tmp / "ws")
    t0 = time.perf_counter()
    res = import_dataset(ws, tmp / "labels.csv", "cifar")
    print(f"imported {res.imported} images ({len(files[:: a.labeled])} labeled) in {time.perf_counter() - t0:.1f}s")
    runs = {}
    for kind, cfg in {"linear": TrainConfig(mode="linear", img_size=32),
                      "fine-tuned": TrainConfig(mode="finetune", epochs=1, img_size=32, time_budget=120)}.items():
        t0 = time.perf_counter()
        train(ws, "cifar", cfg)
        with ws.session() as s:
            runs[kind] = records.latest_run(s, records.get_dataset(s, "cifar")).id
        print(f"trained the {kind} run in {time.perf_counter() - t0:.0f}s")
    app, c = admin_client(ws)

    def cold(fn):
        def run():
            app.state.models.scores = ProbCache()  # the reference: every image scored on every request
            return fn()
        return run

    queue = lambda: c.get("/api/datasets/cifar/queue", params={"strategy": "margin", "n": 50})  # noqa: E731
    print(f"{'serving run':<14}{'scored':>12}{'reused':>12}{'ratio':>10}")
    for kind, run_id in runs.items():
        with ws.session() as s:  # pinned without the API's pre-labeling job, which would share the CPU with the timing
            records.set_setting(s, records.get_dataset(s, "cifar"), "serving_run", {"run_id": run_id})
        queue()  # embeddings and decoded images cached, as on any server that has pre-labeled the dataset
        ref, ours = timed(cold(queue), a.repeats), timed(queue, a.repeats)
        print(f"{kind:<14}{ref * 1000:>10.0f}ms{ours * 1000:>10.0f}ms{ref / ours:>9.1f}x")
