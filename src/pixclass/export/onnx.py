"""Export a run to a self-describing ONNX artifact (model.onnx + manifest.json) and check parity with PyTorch."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixclass.artifact import Manifest, runtime_versions
from pixclass.errors import ConfigError
from pixclass.models.embed import export_onnx, ort_session
from pixclass.models.registry import load_checkpoint
from pixclass.io.images import normalize


@dataclass(frozen=True)
class ExportResult:
    artifact: Path
    top1_agreement: float
    max_abs_diff: float
    parity_images: int
    size_bytes: int

    def to_dict(self) -> dict:
        return {"artifact": str(self.artifact), "top1_agreement": self.top1_agreement,
                "max_abs_diff": self.max_abs_diff, "parity_images": self.parity_images, "size_bytes": self.size_bytes}


class WithProbs(nn.Module):
    """The classifier with its output activation (softmax, or sigmoid for multi-label) inside the graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.probs(self.model(x))


def export_run(run_dir: str | Path, out_dir: str | Path | None = None, *, fmt: str = "onnx",
               parity_images: np.ndarray | None = None) -> ExportResult:
    """Write ``model.onnx`` and ``manifest.json`` to out_dir (default RUN/export) and compare outputs with torch.

    parity_images: uint8 (N, S, S, 3) real images to compare on; random inputs when None.
    """
    if fmt != "onnx":
        raise ConfigError(f"Unknown export format {fmt!r}. Supported: onnx.")
    run_dir = Path(run_dir)
    manifest = Manifest.load(run_dir)
    if manifest.mode == "classical":  # features + scikit-learn estimator merged into one graph
        from pixclass.export.classical import export_classical

        return export_classical(run_dir, out_dir, fmt=fmt, parity_images=parity_images)
    model, _ = load_checkpoint(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    size = manifest.preprocess.img_size
    wrapped = WithProbs(model).eval()
    onnx_path = out / "model.onnx"
    export_onnx(wrapped, onnx_path, size)

    with torch.inference_mode():
        return finish_export(run_dir, out, manifest, onnx_path, lambda x: wrapped(torch.from_numpy(x)).numpy(),
                             parity_images)


def finish_export(run_dir: Path, out: Path, manifest: Manifest, onnx_path: Path,
                  reference: Callable[[np.ndarray], np.ndarray], parity_images: np.ndarray | None,
                  extra_versions: tuple[str, ...] = ()) -> ExportResult:
    """Compare onnxruntime with ``reference`` (normalised (N, 3, S, S) -> probs) and write the artifact manifest.

    parity_images: uint8 (N, S, S, 3) real images to compare on; random inputs when None.
    """
    size = manifest.preprocess.img_size
    if parity_images is None or len(parity_images) == 0:
        rng = np.random.default_rng(0)
        parity_images = rng.integers(0, 256, size=(16, size, size, 3), dtype=np.uint8)
    x = normalize(parity_images, manifest.preprocess.mean, manifest.preprocess.std)
    ref = np.concatenate([reference(x[i : i + 64]) for i in range(0, len(x), 64)])
    sess = ort_session(onnx_path)
    got = np.concatenate([sess.run(None, {"input": x[i : i + 64]})[0] for i in range(0, len(x), 64)])
    agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
    max_diff = float(np.abs(ref - got).max())
    exported = dataclasses.replace(
        manifest, files={"onnx": onnx_path.name},
        metrics={**manifest.metrics, "onnx_top1_agreement": agreement, "onnx_max_abs_diff": max_diff},
        versions={**manifest.versions, **runtime_versions("onnx", "onnxruntime", *extra_versions)},
    )
    exported.save(out)
    if (run_dir / "metrics.json").is_file() and out != run_dir:
        shutil.copy(run_dir / "metrics.json", out / "metrics.json")
    return ExportResult(out, agreement, max_diff, len(parity_images), onnx_path.stat().st_size)
