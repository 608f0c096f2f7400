"""Bounded loopback load test of POST /api/predict: prints requests/s and p50/p99 latency.

Trains a linear MobileNetV2 run (224 px) on a small real-photo subset of clothing-small, exports it to ONNX,
starts `pixclass serve` on 127.0.0.1 and sends real JPEG uploads from a few client threads. Bounded by
--requests and --seconds; never leaves the loopback interface.

    python bench/load_predict.py --requests 400 --concurrency 4 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLOTHING  # noqa: E402

CLASSES = ["hat", "pants", "shoes", "t-shirt"]


def build_workspace(root: Path, per_class: int) -> tuple[Path, list[Path]]:
    from pixclass.config import TrainConfig
    from pixclass.export.onnx import export_run
    from pixclass.io.importer import import_dataset
    from pixclass.store import Workspace, users
    from pixclass.train.run import train

    src = root / "photos"
    for cls in CLASSES:
        (src / cls).mkdir(parents=True)
        for f in sorted((CLOTHING / "train" / cls).glob("*.jpg"))[:per_class]:
            shutil.copy(f, src / cls / f.name)
    ws = Workspace.open(root / "ws")
    import_dataset(ws, src, "cloth")
    res = train(ws, "cloth", TrainConfig(mode="linear", img_size=224))
    export_run(res.run, res.run / "export")
    with ws.session() as s:
        users.create_user(s, "bench", "viewer", "bench-pw")
    queries = [f for cls in CLASSES for f in sorted((CLOTHING / "test" / cls).glob("*.jpg"))[:10]]
    return ws.root, queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="Total requests (upper bound).")
    ap.add_argument("--concurrency", type=int, default=4, help="Client threads.")
    ap.add_argument("--seconds", type=float, default=60.0, help="Stop sending after this many seconds.")
    ap.add_argument("--per-class", type=int, default=40, help="Training photos per class.")
    args = ap.parse_args()
    if not CLOTHING.is_dir():
        sys.exit(f"{CLOTHING} not found; set PIXCLASS_SHARED_DATA")
    root = Path(tempfile.mkdtemp(prefix="pixclass-load-"))
    t0 = time.time()
    ws_root, queries = build_workspace(root, args.per_class)
    print(f"setup (import, linear train, ONNX export): {time.time() - t0:.1f}s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = shutil.which("pixclass", path=str(Path(sys.executable).parent)) or "pixclass"
    proc = subprocess.Popen([cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            env={**os.environ, "PIXCLASS_WORKSPACE": str(ws_root)})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        auth = ("bench", "bench-pw")
        token = httpx.post(f"{base}/api/tokens", auth=auth).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        payloads = [(q.name, q.read_bytes(), q.parent.name) for q in queries]
        warm = httpx.post(f"{base}/api/predict", headers=headers, files={"file": payloads[0][:2]}, timeout=60).json()
        print(f"model {warm['model_version']} via {warm['backend']}; first prediction {warm['predictions'][0]['label']}")

        latencies: list[float] = []
        correct = errors = 0
        lock = threading.Lock()
        counter = iter(range(args.requests))
        deadline = time.time() + args.seconds

        def worker() -> None:
            nonlocal correct, errors
            with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
                while time.time() < deadline:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    name, data, truth = payloads[i % len(payloads)]
                    t = time.perf_counter()
                    r = c.post("/api/predict", files={"file": (name, data, "image/jpeg")}, params={"k": 3})
                    dt = time.perf_counter() - t
                    with lock:
                        latencies.append(dt)
                        if r.status_code != 200:
                            errors += 1
                        elif r.json()["predictions"][0]["label"] == truth:
                            correct += 1

        start = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        lat = sorted(latencies)
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        print(f"requests {len(lat)} in {wall:.1f}s with {args.concurrency} clients: {len(lat) / wall:.1f} req/s; "
              f"latency p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, mean {statistics.mean(lat) * 1000:.1f} ms; "
              f"errors {errors}; top-1 correct {correct}/{len(lat) - errors}")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
