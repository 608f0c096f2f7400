"""Compare runs side by side: their metrics, model sizes and CPU latency (one image, and a batch).

Latency is measured on random images at each run's input size, after one warm-up call: with torch exactly as
``pixclass predict RUN`` runs it (``models.embed.predict_probs``), and with onnxruntime when the run has an ONNX
export (``RUN/export/model.onnx``, or the directory is an exported artifact). Medians over repeats.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pixclass.artifact import Manifest
from pixclass.errors import ConfigError

Progress = Callable[[str, int, int], None]
METRIC_KEYS = ("val_accuracy", "val_macro_f1")  # from the run's manifest; test figures from eval-test/metrics.json


@dataclass(frozen=True)
class RunSummary:
    run: str
    model: str
    mode: str
    dataset: str
    classes: int
    img_size: int
    metrics: dict  # val_accuracy, val_macro_f1, test_accuracy, test_macro_f1 where known
    size_bytes: int  # the files needed to predict: model.pt (+ estimator) for a run, model.onnx for an artifact
    onnx_bytes: int | None
    latency: dict = field(default_factory=dict)  # {"torch"|"onnx": {"single_ms", "batch_ms", "batch", "images_per_s"}}

    def to_dict(self) -> dict:
        return asdict(self)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def _latency(probs_fn: Callable[[np.ndarray], np.ndarray], size: int, batch: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    single = _median_ms(lambda: probs_fn(images[:1]), repeats)
    many = _median_ms(lambda: probs_fn(images), max(1, repeats // 3))
    return {"single_ms": round(single, 3), "batch_ms": round(many, 3), "batch": batch,
            "images_per_s": round(batch / (many / 1000), 1)}


def _onnx_file(directory: Path, manifest: Manifest) -> Path | None:
    if "onnx" in manifest.files and (directory / manifest.files["onnx"]).is_file():
        return directory / manifest.files["onnx"]
    exported = directory / "export" / "model.onnx"
    return exported if exported.is_file() else None


def summarize_run(directory: str | Path, *, batch: int = 32, repeats: int = 10, latency: bool = True) -> RunSummary:
    """Metrics, size and latency of one run directory or exported artifact."""
    directory = Path(directory)
    manifest = Manifest.load(directory)
    metrics = {k: manifest.metrics[k] for k in METRIC_KEYS if k in manifest.metrics}
    test = directory / "eval-test" / "metrics.json"
    if test.is_file():
        t = json.loads(test.read_text())
        metrics.update({f"test_{k}": t[k] for k in ("accuracy", "macro_f1", "mAP") if k in t})
    onnx_path = _onnx_file(directory, manifest)
    torch_files = [directory / f for role, f in manifest.files.items() if role != "onnx"]
    torch_files = [f for f in torch_files if f.is_file()]
    size = sum(f.stat().st_size for f in torch_files) if torch_files else (onnx_path.stat().st_size if onnx_path
                                                                             else 0)
    lat: dict = {}
    if latency:
        pre = manifest.preprocess
        if (directory / "model.pt").is_file():
            from pixclass.models.embed import predict_probs
            from pixclass.models.registry import load_checkpoint

            model, _ = load_checkpoint(directory)
            lat["torch"] = _latency(lambda x: predict_probs(model, x), pre.img_size, batch, repeats)
        if onnx_path is not None:
            from pixclass.io.images import normalize
            from pixclass.models.embed import ort_session

            sess = ort_session(onnx_path)
            lat["onnx"] = _latency(lambda x: sess.run(None, {"input": normalize(x, pre.mean, pre.std)})[0],
                                   pre.img_size, batch, repeats)
    return RunSummary(str(directory), manifest.model, manifest.mode, manifest.dataset, len(manifest.classes),
                      manifest.preprocess.img_size, metrics, size,
                      onnx_path.stat().st_size if onnx_path else None, lat)


def compare_runs(runs: Sequence[str | Path], *, batch: int = 32, repeats: int = 10, latency: bool = True,
                 progress: Progress | None = None) -> list[RunSummary]:
    """One RunSummary per run directory or artifact, in the order given."""
    if not runs:
        raise ConfigError("Give at least one run directory or exported artifact to compare.")
    out = []
    for n, run in enumerate(runs, start=1):
        out.append(summarize_run(run, batch=batch, repeats=repeats, latency=latency))
        if progress:
            progress("compare", n, len(runs))
    return out
