"""Heatmaps point at the object: real photos pasted on a grey canvas at a known place."""

import numpy as np
import pytest

from pixclass.errors import ConfigError
from pixclass.explain.cam import cam_target_layer, heatmaps, mass_inside, overlay

CHANCE = 0.25  # the pasted photo's share of the canvas


def masses(c, method: str) -> np.ndarray:
    exps = heatmaps(c.model, c.images, method, targets=c.labels)
    for e in exps:
        assert e.heatmap.shape == c.images.shape[1:3] and e.heatmap.dtype == np.float32
        assert 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0 + 1e-6
    return np.array([mass_inside(e.heatmap, box) for e, box in zip(exps, c.boxes)])


def test_gradcam_mass_lies_on_the_pasted_photo(composites):
    assert composites.test_accuracy >= 0.5  # the head learned the classes (chance 0.25)
    m = masses(composites, "gradcam")
    assert np.median(m) > 0.55, m  # most of the mass inside a box covering a quarter of the image
    assert np.mean(m > 0.5) >= 0.75, m


def test_gradcampp_and_gradient_x_input_also_localise(composites):
    assert np.median(masses(composites, "gradcampp")) > 0.45
    gxi = masses(composites, "gradxinput")
    assert np.median(gxi) > 0.6 and gxi.min() > CHANCE, gxi


def test_lime_weights_the_photo_superpixels(composites):
    from pixclass.explain.lime_explain import lime_explanation

    e = lime_explanation(composites.model, composites.images[0], target=int(composites.labels[0]))
    assert e.method == "lime" and e.heatmap.max() == 1.0
    assert mass_inside(e.heatmap, composites.boxes[0]) > 0.6  # grey-canvas superpixels carry no evidence


def test_target_layer_is_the_last_conv_stage_at_224(composites):
    model = composites.model
    assert cam_target_layer(model, 224) is model.stages[-2]  # conv_head + bn2 (7x7), just before global pooling
    assert cam_target_layer(model, 96) is not model.stages[-2]  # 3x3 is too coarse: an earlier, finer stage


def test_vit_gradcam_and_gradient_x_input():
    from pixclass.models import create_model

    vit = create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (1, 224, 224, 3), dtype=np.uint8)
    img[0, 60:120, 60:120] = 255
    for method in ("gradcam", "gradxinput"):
        (e,) = heatmaps(vit, img, method)
        assert e.heatmap.shape == (224, 224) and np.isfinite(e.heatmap).all()
        assert e.heatmap.std() > 0.01  # not a flat map
        assert 0 <= e.label < 3 and 0 < e.score <= 1


def test_overlay_and_unknown_method():
    img = np.zeros((32, 32, 3), np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[0, 0] = 1
    out = overlay(img, heat)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and out[0, 0, 0] > out[-1, -1, 0]
    with pytest.raises(ConfigError, match="gradcam"):
        heatmaps(None, img[None], "saliency")
