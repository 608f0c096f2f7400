"""Run settings as frozen dataclasses. Every default lives here, with a comment saying why."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pixclass.errors import ConfigError

MIN_IMG_SIZE, MAX_IMG_SIZE = 16, 1024  # the square input sizes a model may take, in pixels

DEFAULT_WORKSPACE = "pixclass-workspace"
WORKSPACE_ENV = "PIXCLASS_WORKSPACE"


def resolve_workspace(path: str | Path | None) -> Path:
    """The workspace directory: the explicit path, else $PIXCLASS_WORKSPACE, else ./pixclass-workspace."""
    if path:
        return Path(path).expanduser()
    return Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).expanduser()


@dataclass(frozen=True)
class TrainConfig:
    model: str = "mobilenetv2_100"  # small, fast on CPU, offline ImageNet weights available
    pretrained: bool = True
    weights: str | None = None  # explicit checkpoint file; wins over every other weight source
    mode: Literal["linear", "finetune"] = "finetune"
    img_size: int = 224  # the pretrained backbones' native resolution
    epochs: int = 10
    batch_size: int = 48  # fits 2 cores well; larger batches do not speed up CPU training
    lr: float = 1e-3  # AdamW peak learning rate for the head; the backbone gets lr * backbone_lr_mult
    backbone_lr_mult: float = 1.0  # measured on clothing-small: lower (0.25, 0.5) ended 3-4 points worse
    weight_decay: float = 0.05
    warmup_epochs: float = 0.3  # linear warm-up, then cosine decay to zero
    label_smoothing: float = 0.1
    patience: int = 3  # early stopping: epochs without validation improvement
    time_budget: float | None = None  # seconds; training stops cleanly at the budget
    balance: Literal["weights", "sampler", "none"] = "none"
    augment: bool = True
    train_scale: float = 0.8  # finetune crops at this fraction of img_size, evaluated at full size (FixRes): faster
    grayscale_p: float = 0.0  # probability of random greyscale in augmentation
    bf16: bool = True  # bf16 autocast on CPU roughly doubles speed on AVX-512-bf16 machines
    channels_last: bool = True
    freeze_stages: int = -1  # finetune: leading backbone blocks left frozen; -1 picks a per-model default
    linear_c: float | None = None  # logistic regression C for --mode linear; None tunes it (validation, or CV)
    features: str = "embed"  # classical models (logreg, svm, ...): embed[:<model>], colorhist, hog or pixels
    loss: Literal["auto", "bce", "asl"] = "auto"  # multi-label: BCE (auto) or asymmetric loss
    hierarchy: Literal["flat", "cascade"] = "flat"  # hierarchical: one network, or per-node classifiers
    node_threshold: float = 0.5  # hierarchical: predict the deepest node at least this probable
    threshold_target: str = "f1"  # binary: f1, precision>=X or recall>=X, tuned on validation
    seed: int = 0
    resume: bool = False
    workers: int = 2  # decoding threads
    adversarial_eps: float = 0.0  # finetune on FGSM images within this L-inf radius ([0, 1] pixels); 0 turns it off

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "train_scale": 0 < self.train_scale <= 2,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"The '{name}' option must be positive. Got {getattr(self, name)!r}.")
        if not MIN_IMG_SIZE <= self.img_size <= MAX_IMG_SIZE:
            raise ConfigError(f"The 'img_size' option must be {MIN_IMG_SIZE} to {MAX_IMG_SIZE} pixels. "
                              f"Got {self.img_size!r}.")
        if self.mode not in ("linear", "finetune"):
            raise ConfigError(f"The 'mode' option must be 'linear' or 'finetune'. Got {self.mode!r}.")
        if self.balance not in ("weights", "sampler", "none"):
            raise ConfigError(f"The 'balance' option must be weights, sampler or none. Got {self.balance!r}.")
        if not 0 <= self.adversarial_eps <= 0.25:
            raise ConfigError(f"The 'adversarial_eps' option must be in [0, 0.25]. Got {self.adversarial_eps!r}.")
        if self.adversarial_eps > 0 and self.mode != "finetune":
            raise ConfigError("Adversarial training changes the backbone; use it with --mode finetune.")
        if self.hierarchy not in ("flat", "cascade"):
            raise ConfigError(f"The 'hierarchy' option must be flat or cascade. Got {self.hierarchy!r}.")
        target = self.threshold_target
        if target != "f1" and not (target.startswith(("precision>=", "recall>=")) and _is_fraction(target.split(">=")[1])):
            raise ConfigError(f"The 'threshold_target' option must be f1, precision>=X or recall>=X with X in (0, 1]. "
                              f"Got {target!r}.")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ConfigError(f"The 'time_budget' option must be positive seconds. Got {self.time_budget!r}.")

    def to_dict(self) -> dict:
        return asdict(self)


def _is_fraction(text: str) -> bool:
    try:
        return 0 < float(text) <= 1
    except ValueError:
        return False


@dataclass(frozen=True)
class SplitConfig:
    fractions: tuple[float, float, float] = field(default=(0.8, 0.1, 0.1))  # train, val, test
    seed: int = 0
