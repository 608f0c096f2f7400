"""Predict files and folders with either an exported artifact (onnxruntime) or a run directory (torch)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from pixclass.artifact import Manifest
from pixclass.errors import ConfigError
from pixclass.inference.predictor import Prediction, Predictor, predict_files

Progress = Callable[[int, int], None]


def predict_paths(source: str | Path, paths: Sequence[str | Path], *, k: int = 5,
                  progress: Progress | None = None) -> list[Prediction]:
    if k < 1:
        raise ConfigError(f"The 'top-k' option must be at least 1. Got {k!r}.")
    source = Path(source)
    manifest = Manifest.load(source)
    if (source / manifest.files.get("onnx", "model.onnx")).is_file() and "onnx" in manifest.files:
        return Predictor.from_artifact(source).predict(paths, k=k, progress=progress)
    if not (source / "model.pt").is_file():
        raise ConfigError(f"{source} has neither model.onnx nor model.pt.")
    from pixclass.models.embed import predict_probs  # torch only for run directories
    from pixclass.models.registry import load_checkpoint

    model, _ = load_checkpoint(source)
    return predict_files(paths, manifest.preprocess.img_size, lambda x: predict_probs(model, x), manifest.classes,
                         k=k, progress=progress, schema=manifest.schema, thresholds=manifest.thresholds)


def write_predictions(preds: list[Prediction], path: str | Path, k: int = 5) -> Path:
    """CSV (path,label,score,top2..,error) or JSON by the file's suffix. The top columns list the best-scoring
    classes other than the decided label(s): for a multi-label or thresholded decision the top class may not be
    the label."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps([p.to_dict() for p in preds], indent=1))
        return path
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        extra = [c for j in range(2, k + 1) for c in (f"top{j}_label", f"top{j}_score")]
        w.writerow(["path", "label", "score", *extra, "error"])
        for p in preds:
            decided = set(p.labels) or ({p.label} if p.label else set())
            others = [(lab, sc) for lab, sc in p.top[:k] if lab not in decided][: k - 1]
            tail = [v for lab, sc in others for v in (lab, f"{sc:.6f}")]  # the next classes after the decision
            tail += [""] * (len(extra) - len(tail))
            w.writerow([p.path, p.label, f"{p.score:.6f}" if not p.error else "", *tail, p.error or ""])
    return path
