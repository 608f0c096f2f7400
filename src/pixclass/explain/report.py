"""The full report of a run: evaluation numbers and plots, temperature scaling, and Grad-CAM galleries.

Gathers the data (probabilities on the split, validation probabilities for the temperature, top losses and
confident mistakes with their heatmaps) and hands it to ``pixclass.evaluate.report.write_report``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pixclass.artifact import Manifest
from pixclass.data.splits import load_splits
from pixclass.errors import DataError
from pixclass.evaluate.calibration import fit_temperature, save_temperature, stored_temperature
from pixclass.evaluate.report import (GalleryItem, ReportInputs, losses, misclassified_indices, top_loss_indices,
                                      write_report)
from pixclass.evaluate.scores import probs_for
from pixclass.explain.cam import LABELS, check_method, heatmaps
from pixclass.store import Workspace

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
GALLERY = 12  # images in each gallery (top losses, confident mistakes)


def _labels_for(run_classes: tuple[str, ...], data_classes: tuple[str, ...], labels: np.ndarray, dataset: str):
    if list(run_classes) == list(data_classes):
        return labels
    lookup = {c: i for i, c in enumerate(run_classes)}
    missing = sorted({data_classes[y] for y in labels} - set(lookup))
    if missing:
        raise DataError(f"The model does not know classes {missing} of dataset {dataset!r}. Retrain it.")
    return np.array([lookup[data_classes[y]] for y in labels], dtype=int)


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_run_report(ws: Workspace, run_dir: str | Path, out: str | Path, *, split: str = "test",
                     dataset: str | None = None, method: str = "gradcam", gallery: int = GALLERY,
                     temperature: bool = True, progress: Progress | None = None) -> Path:
    """Write the HTML report of ``run_dir`` on ``split`` to ``out``.

    With ``temperature``, a temperature is fitted on the validation split and stored in the run's manifest
    (``thresholds["temperature"]``); without a validation split a previously stored one is used.
    """
    check_method(method)
    run_dir = Path(run_dir)
    manifest = Manifest.load(run_dir)
    dataset = dataset or manifest.dataset
    splits = (split, "val") if temperature and split != "val" else (split,)
    schema, data = load_splits(ws, dataset, manifest.preprocess.img_size, splits=splits,
                               progress=(lambda d, t: progress("decode", d, t)) if progress else None)
    part = data[split]
    if len(part) == 0:
        raise DataError(f"Dataset {dataset!r} has no labeled images in split {split!r}.")
    labels = _labels_for(manifest.classes, schema.classes, part.labels, dataset)
    probs = probs_for(ws, run_dir, manifest, part, progress=progress)
    temp = stored_temperature(manifest)
    if temperature and split != "val" and len(data["val"]):
        val = data["val"]
        temp = fit_temperature(_labels_for(manifest.classes, schema.classes, val.labels, dataset),
                               probs_for(ws, run_dir, manifest, val))
        save_temperature(run_dir, temp)
        log.info("temperature %.3f stored in %s", temp, run_dir / "manifest.json")
    classes = list(manifest.classes)
    top = top_loss_indices(labels, probs, gallery)
    wrong = misclassified_indices(labels, probs, gallery)
    overlays = _overlays(run_dir, part.images, np.unique(np.concatenate([top, wrong])), probs, method, progress)
    loss = losses(labels, probs)

    def item(i: int) -> GalleryItem:
        p = int(probs[i].argmax())
        return GalleryItem(part.images[i], classes[labels[i]], classes[p], float(probs[i, p]), float(loss[i]),
                           part.items[i].path, overlays.get(int(i)))

    rob_path = run_dir / "robustness.json"
    inputs = ReportInputs(
        title=f"pixclass report: {run_dir.name}", classes=classes, labels=labels, probs=probs,
        history=_history(run_dir), top_losses=[item(i) for i in top], misclassified=[item(i) for i in wrong],
        temperature=temp, explain_method=LABELS[method],
        notes=[f"run {run_dir}", f"model {manifest.model} ({manifest.mode}), {manifest.preprocess.img_size} px",
               f"dataset {dataset}, split {split} ({len(labels)} images)"],
        robustness=json.loads(rob_path.read_text()) if rob_path.is_file() else None,
    )
    return write_report(inputs, out)


def _overlays(run_dir: Path, images: np.ndarray, idx: np.ndarray, probs: np.ndarray, method: str,
              progress: Progress | None) -> dict[int, np.ndarray]:
    """{image index: heatmap overlay} for the predicted class; empty for an ONNX-only artifact."""
    if not (run_dir / "model.pt").is_file() or len(idx) == 0:
        return {}
    from pixclass.models.registry import load_checkpoint

    model, _ = load_checkpoint(run_dir)
    out = {}
    for start in range(0, len(idx), 8):
        chunk = idx[start : start + 8]
        for i, exp in zip(chunk, heatmaps(model, images[chunk], method, targets=probs[chunk].argmax(1))):
            out[int(i)] = exp.overlay(images[i])
        if progress:
            progress("explain", start + len(chunk), len(idx))
    return out
