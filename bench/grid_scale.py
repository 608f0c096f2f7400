"""The labeling server on a large dataset: CIFAR-10's 50,000 training images, imported with their labels.

Times the grid's requests (a page of images, the dataset list with its counts, conflicts) through the API, first
computed from the database (the reference: what every request cost before rows were reused) and then from the rows
the server keeps until something is written, and prints the ratio. Then a write (a label, a verdict) followed by a
read: with every row computed again after it (the reference) and with only the rows of the images it changed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import admin_client, cifar_train, timed


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=50_000, help="training images of CIFAR-10 to import (at most 50,000)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    from pixclass.io.importer import import_dataset
    from pixclass.store import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="pixclass-grid-"))
    src = cifar_train(tmp, a.images)
    ws = Workspace.open(tmp / "ws")
    t0 = time.perf_counter()
    res = import_dataset(ws, src, "cifar")
    print(f"imported {res.imported} images in {time.perf_counter() - t0:.1f}s")
    app, c = admin_client(ws)
    first = c.get("/api/datasets/cifar/images", params={"limit": 60}).json()["ids"]

    def cold(fn):
        def run():
            app.state.tables._entries.clear()  # the reference: rows computed from the database on every request
            return fn()
        return run

    reqs = {"page of 60 images": lambda: c.get("/api/datasets/cifar/images", params={"limit": 60, "offset": 600}),
            "unlabeled filter": lambda: c.get("/api/datasets/cifar/images", params={"limit": 60, "unlabeled": True}),
            "dataset list with counts": lambda: c.get("/api/datasets"),
            "conflicts": lambda: c.get("/api/datasets/cifar/conflicts"),
            "label queue (random)": lambda: c.get("/api/datasets/cifar/queue", params={"strategy": "random", "n": 50})}
    print(f"{'request':<28}{'computed':>12}{'reused':>12}{'ratio':>10}")
    for name, fn in reqs.items():
        ref, ours = timed(cold(fn), a.repeats), timed(fn, a.repeats)
        print(f"{name:<28}{ref * 1000:>10.0f}ms{ours * 1000:>10.0f}ms{ref / ours:>9.1f}x")
    label = timed(lambda: c.post(f"/api/images/{first[1]}/annotations", json={"labels": ["cat"]}), a.repeats)
    print(f"save a label: {label * 1000:.0f}ms")
    # after a write: every row computed again (the reference: what the server did before it redid only the rows of
    # relabeled images), against only the changed images' rows
    images = iter(first[2:])
    cat = c.get("/api/datasets/cifar/images", params={"limit": 5, "label": "cat"}).json()["ids"]
    votes = iter(c.post(f"/api/images/{i}/annotations", json={"labels": ["dog"]}).json()["id"] for i in cat)
    writes = {"label, then a page": (lambda: c.post(f"/api/images/{next(images)}/annotations",
                                                    json={"labels": ["dog"]}), reqs["page of 60 images"]),
              "label, then the queue": (lambda: c.post(f"/api/images/{next(images)}/annotations",
                                                       json={"labels": ["dog"]}), reqs["label queue (random)"]),
              "verdict, then conflicts": (lambda: c.post(f"/api/annotations/{next(votes)}/review",
                                                         json={"status": "accepted"}), reqs["conflicts"])}
    print(f"{'write, then read':<28}{'all rows':>12}{'changed rows':>14}{'ratio':>9}")
    for name, (write, read) in writes.items():
        ref = timed(cold(lambda: (write(), read())[1]), max(1, a.repeats // 2))
        ours = timed(lambda: (write(), read())[1], max(1, a.repeats // 2))
        print(f"{name:<28}{ref * 1000:>10.0f}ms{ours * 1000:>12.0f}ms{ref / ours:>8.1f}x")
    tables = app.state.tables
    print(f"rows computed whole {tables.computed} times, only the changed ones {tables.patched} times")
