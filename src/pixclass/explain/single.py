"""Explain one image file with a run's model: heatmap, side-by-side PNG (image | overlay)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixclass.artifact import Manifest
from pixclass.explain.cam import check_method, heatmaps
from pixclass.io.images import load_rgb

MIN_SIDE = 224  # small inputs are upscaled in the PNG so that the heatmap is readable


def explain_file(run_dir: str | Path, image: str | Path, *, method: str = "gradcam", target: str | None = None,
                 out: str | Path) -> dict:
    """Write ``out`` (PNG) and return {path, label, score, method, target, out}."""
    from PIL import Image

    from pixclass.models.registry import load_checkpoint

    check_method(method)
    manifest = Manifest.load(run_dir)
    target_idx = manifest.schema.index(target) if target else None
    img = load_rgb(image, manifest.preprocess.img_size)
    model, _ = load_checkpoint(run_dir)
    exp = heatmaps(model, img[None], method, targets=None if target_idx is None else [target_idx])[0]
    pair = np.concatenate([img, np.full((img.shape[0], 4, 3), 255, np.uint8), exp.overlay(img)], axis=1)
    pic = Image.fromarray(pair)
    if img.shape[0] < MIN_SIDE:
        scale = MIN_SIDE / img.shape[0]
        pic = pic.resize((round(pic.width * scale), MIN_SIDE), Image.BILINEAR)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pic.save(out)
    return {"path": str(image), "label": manifest.classes[exp.label], "score": exp.score, "method": method,
            "target": target, "out": str(out), "heatmap_peak": [int(v) for v in np.unravel_index(
                int(np.argmax(exp.heatmap)), exp.heatmap.shape)]}
