"""Robustness: accuracy under common corruptions and adversarial attacks, and the adversarial-training batch.

Corruptions follow the spirit of ImageNet-C (Hendrycks & Dietterich 2019) at five severities, on uint8 images.
Attacks work in [0, 1] pixel space before normalisation: FGSM (one signed-gradient step of size epsilon) and PGD
(random start in the L-inf ball, ``steps`` steps of 2.5 * epsilon / steps, projected back; Madry et al. 2018).
``train --adversarial`` uses FGSM with a random start and step 1.25 * epsilon ("fast adversarial training",
Wong et al. 2020): one extra forward/backward per batch.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from pixclass.artifact import Manifest
from pixclass.data.splits import load_splits
from pixclass.errors import ConfigError, DataError
from pixclass.models.embed import export_onnx, ort_session
from pixclass.models.net import Classifier
from pixclass.models.registry import load_checkpoint
from pixclass.store import Workspace

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

# Severity 1..5 parameters per corruption (blur sigma in pixels at 224 px, scaled with the image size).
SEVERITY = {
    "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),  # noise std in [0, 1] pixel units
    "gaussian_blur": (1.0, 1.5, 2.5, 3.5, 5.0),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added to [0, 1] pixels
    "contrast": (0.6, 0.45, 0.3, 0.2, 0.1),  # scale of the deviation from the image mean
    "jpeg": (30, 20, 15, 10, 6),  # JPEG quality
    "rotation": (5, 10, 20, 30, 45),  # degrees, black corners
}
CORRUPTIONS = tuple(SEVERITY)
EPSILONS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
PGD_STEPS = 3  # with a random start; each step is one forward+backward pass per image
MAX_IMAGES = 200  # test images scored (random subset): attacks cost ~25 forward+backward passes per image


# ---- corruptions ---------------------------------------------------------------------------------------------

def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 images (N, S, S, 3) with corruption ``name`` at ``severity`` in 1..5."""
    if name not in SEVERITY:
        raise ConfigError(f"Unknown corruption {name!r}. Choose from {', '.join(CORRUPTIONS)}.")
    if not 1 <= severity <= 5:
        raise ConfigError(f"Corruption severity must be 1 to 5. Got {severity}.")
    c = SEVERITY[name][severity - 1]
    x = images.astype(np.float32) / 255
    if name == "gaussian_noise":
        x = x + np.random.default_rng(seed).normal(0, c, x.shape).astype(np.float32)
    elif name == "brightness":
        x = x + c
    elif name == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * c + mean
    else:
        return np.stack([_pil_corrupt(im, name, c) for im in images])
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _pil_corrupt(image: np.ndarray, name: str, c: float) -> np.ndarray:
    im = Image.fromarray(image)
    if name == "gaussian_blur":
        im = im.filter(ImageFilter.GaussianBlur(c * image.shape[0] / 224))
    elif name == "jpeg":
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(c))
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    elif name == "rotation":
        im = im.rotate(c, resample=Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


# ---- attacks -------------------------------------------------------------------------------------------------

def _norm(model: Classifier) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)


def _input_grad(model: Classifier, x01: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                bf16: bool) -> torch.Tensor:
    x01 = x01.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model((x01 - mean) / std)
    if y.ndim == 2:  # multi-label targets (N, K)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y.float())
    else:
        loss = F.cross_entropy(logits.float(), y)
    (grad,) = torch.autograd.grad(loss, x01)  # input gradient only: parameter .grad stays untouched
    return grad


def attack(model: Classifier, x01: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 1,
           random_start: bool = False, step_size: float | None = None, bf16: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial images in [0, 1] (N, 3, H, W) within ``eps`` (L-inf) of ``x01``.

    steps=1 without random start is FGSM; steps>1 with random start is PGD.
    """
    mean, std = _norm(model)
    alpha = step_size if step_size is not None else (eps if steps == 1 else 2.5 * eps / steps)
    adv = x01.detach().clone()
    if random_start:
        noise = torch.rand(adv.shape, generator=generator) * 2 - 1
        adv = (adv + eps * noise.to(adv.dtype)).clamp(0, 1)
    for _ in range(steps):
        grad = _input_grad(model, adv, y, mean, std, bf16)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x01 - eps), x01 + eps).clamp(0, 1)
    return adv.detach()


def adversarial_batch(model: Classifier, x: torch.Tensor, y: torch.Tensor, *, eps: float, bf16: bool = True,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """For training: a normalised batch ``x`` replaced by its FGSM-with-random-start version (same layout)."""
    mean, std = _norm(model)
    x01 = (x.float() * std + mean).clamp(0, 1)
    adv = attack(model, x01, y, eps=eps, steps=1, random_start=True, step_size=1.25 * eps, bf16=bf16,
                 generator=generator)
    out = (adv - mean) / std
    return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(
        memory_format=torch.channels_last) else out


# ---- evaluation ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RobustnessResult:
    run: str
    n: int
    clean_accuracy: float
    corruptions: dict[str, list[float]]  # name -> accuracy at severities 1..5
    adversarial: dict[str, list[dict]]  # attack -> [{epsilon, accuracy}]
    pgd_steps: int

    def to_dict(self) -> dict:
        return asdict(self)


def _onnx_accuracy(session, images: np.ndarray, labels: np.ndarray, mean, std) -> float:
    from pixclass.io.images import normalize

    pred = np.concatenate([session.run(None, {"input": normalize(images[i : i + 64], mean, std)})[0].argmax(1)
                           for i in range(0, len(images), 64)])
    return float(np.mean(pred == labels))


def _adv_accuracy(model: Classifier, images: np.ndarray, labels: np.ndarray, *, eps: float, steps: int,
                  random_start: bool, batch_size: int = 32) -> float:
    mean, std = _norm(model)
    correct, gen = 0, torch.Generator().manual_seed(0)
    for i in range(0, len(images), batch_size):
        x01 = torch.from_numpy(images[i : i + batch_size]).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(labels[i : i + batch_size])
        adv = attack(model, x01, y, eps=eps, steps=steps, random_start=random_start, bf16=True, generator=gen)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            correct += int((model((adv - mean) / std).argmax(1) == y).sum())
    return correct / max(len(images), 1)


def robustness(ws: Workspace, run_dir: str | Path, *, split: str = "test",
               severities: tuple[int, ...] = (1, 2, 3, 4, 5), corruptions: tuple[str, ...] = CORRUPTIONS,
               epsilons: tuple[float, ...] = EPSILONS, pgd_steps: int = PGD_STEPS, max_images: int = MAX_IMAGES,
               seed: int = 0, progress: Progress | None = None) -> RobustnessResult:
    """Accuracy of a run on ``split`` under corruptions and FGSM/PGD; also written to RUN/robustness.json."""
    run_dir = Path(run_dir)
    manifest = Manifest.load(run_dir)
    for c in corruptions:
        if c not in SEVERITY:
            raise ConfigError(f"Unknown corruption {c!r}. Choose from {', '.join(CORRUPTIONS)}.")
    schema, data = load_splits(ws, manifest.dataset, manifest.preprocess.img_size, splits=(split,))
    if list(schema.classes) != list(manifest.classes):
        raise DataError(f"Dataset {manifest.dataset!r} classes differ from the run's; retrain the run.")
    images, labels = data[split].images, data[split].labels
    if len(labels) == 0:
        raise DataError(f"Dataset {manifest.dataset!r} has no labeled images in split {split!r}.")
    if len(labels) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), max_images, replace=False))
        images, labels = images[keep], labels[keep]
    model, _ = load_checkpoint(run_dir)
    model = model.float().eval()
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, Path(tmp) / "m.onnx", manifest.preprocess.img_size)
        session = ort_session(Path(tmp) / "m.onnx")
    mean, std = model.mean, model.std
    total = len(corruptions) * len(severities) + 2 * len(epsilons)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress("robustness", done, total)

    clean = _onnx_accuracy(session, images, labels, mean, std)
    corr: dict[str, list[float]] = {}
    for name in corruptions:
        corr[name] = []
        for s in severities:
            corr[name].append(_onnx_accuracy(session, corrupt(images, name, s, seed), labels, mean, std))
            tick()
    adv: dict[str, list[dict]] = {"fgsm": [], "pgd": []}
    for eps in epsilons:
        adv["fgsm"].append({"epsilon": eps, "accuracy": _adv_accuracy(model, images, labels, eps=eps, steps=1,
                                                                      random_start=False)})
        tick()
        adv["pgd"].append({"epsilon": eps, "accuracy": _adv_accuracy(model, images, labels, eps=eps,
                                                                     steps=pgd_steps, random_start=True)})
        tick()
    res = RobustnessResult(str(run_dir), int(len(labels)), clean, corr, adv, pgd_steps)
    (run_dir / "robustness.json").write_text(json.dumps({**res.to_dict(), "severities": list(severities)}, indent=2))
    log.info("robustness of %s: clean %.4f", run_dir, clean)
    return res
