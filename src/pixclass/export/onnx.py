"""Export a run to a self-describing ONNX artifact (model.onnx + manifest.json) and check parity with PyTorch."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
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
    model, _ = load_checkpoint(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    size = manifest.preprocess.img_size
    wrapped = WithProbs(model).eval()
    onnx_path = out / "model.onnx"
    export_onnx(wrapped, onnx_path, size)

    if parity_images is None or len(parity_images) == 0:
        rng = np.random.default_rng(0)
        parity_images = rng.integers(0, 256, size=(16, size, size, 3), dtype=np.uint8)
    x = normalize(parity_images, manifest.preprocess.mean, manifest.preprocess.std)
    with torch.inference_mode():
        ref = np.concatenate([wrapped(torch.from_numpy(x[i : i + 64])).numpy() for i in range(0, len(x), 64)])
    sess = ort_session(onnx_path)
    got = np.concatenate([sess.run(None, {"input": x[i : i + 64]})[0] for i in range(0, len(x), 64)])
    agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
    max_diff = float(np.abs(ref - got).max())

    exported = dataclasses.replace(
        manifest, files={"onnx": "model.onnx"},
        metrics={**manifest.metrics, "onnx_top1_agreement": agreement, "onnx_max_abs_diff": max_diff},
        versions={**manifest.versions, **runtime_versions("onnx", "onnxruntime")},
    )
    exported.save(out)
    for extra in ("metrics.json",):
        if (run_dir / extra).is_file() and out != run_dir:
            shutil.copy(run_dir / extra, out / extra)
    return ExportResult(out, agreement, max_diff, len(parity_images), onnx_path.stat().st_size)
