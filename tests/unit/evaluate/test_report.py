"""The HTML report from data alone: sections, numbers, and every image an inline PNG that decodes."""

import base64
import io
import re

import numpy as np
from PIL import Image

from pixclass.evaluate.report import (GalleryItem, ReportInputs, misclassified_indices, most_confused_pairs,
                                      render_report, top_loss_indices)


def test_confused_pairs_and_gallery_order():
    cm = [[5, 3, 0], [1, 6, 0], [0, 4, 2]]
    pairs = most_confused_pairs(cm, ["a", "b", "c"])
    assert [(p["true"], p["pred"], p["count"]) for p in pairs] == [("c", "b", 4), ("a", "b", 3), ("b", "a", 1)]
    assert pairs[0]["rate"] == 4 / 6
    labels = np.array([0, 1, 2, 0])
    probs = np.array([[.9, .05, .05], [.2, .7, .1], [.6, .3, .1], [.3, .6, .1]])
    assert list(top_loss_indices(labels, probs, 2)) == [2, 3]  # p(true) = .1 then .3
    assert list(misclassified_indices(labels, probs, 5)) == [2, 3]  # wrong at .6 confidence each, stable order


def test_report_has_every_section_and_only_inline_pngs():
    rng = np.random.default_rng(0)
    classes = ["cat", "dog", "bird"]
    labels = rng.integers(0, 3, 90)
    logits = rng.normal(0, 1, (90, 3)) + 2.5 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    item = GalleryItem(img, "cat", "dog", 0.8, 2.3, "/data/x <1>.jpg", overlay=img[::-1])
    history = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5 + e / 10, "val_acc": 0.5 + e / 12} for e in (1, 2, 3)]
    robustness = {"clean_accuracy": 0.9, "n": 90, "pgd_steps": 3, "severities": [1, 2, 3, 4, 5],
                  "corruptions": {"jpeg": [0.9, 0.85, 0.8, 0.7, 0.6]},
                  "adversarial": {"fgsm": [{"epsilon": 1 / 255, "accuracy": 0.5}], "pgd": [{"epsilon": 1 / 255,
                                                                                            "accuracy": 0.3}]}}
    page = render_report(ReportInputs("Run <x>", classes, labels, probs, history=history, top_losses=[item],
                                      misclassified=[item, item], temperature=1.5, robustness=robustness))
    for anchor in ("summary", "curves", "confusion", "per-class", "roc-pr", "calibration", "confused", "top-losses",
                   "misclassified", "robustness"):
        assert f'id="{anchor}"' in page
    assert "Run &lt;x&gt;" in page and "x &lt;1&gt;.jpg" in page  # escaped
    assert "T = 1.500" in page and "ECE" in page and "95% CI" in page
    srcs = re.findall(r'<img[^>]*src="([^"]*)"', page)
    assert len(srcs) == 7 + 6  # 7 plots (curves, 2 confusion, bars, roc/pr, reliability, robustness) + 3 cards x 2
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()


def test_report_without_history_or_mistakes():
    labels = np.array([0, 1, 0, 1])
    page = render_report(ReportInputs("r", ["n", "p"], labels, np.eye(2)[labels] * 0.9 + 0.05))
    assert "linear mode" in page and "every image in the split was classified correctly" in page
