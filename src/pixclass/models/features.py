"""Feature extractors for the classical models, as small torch modules so that they export to ONNX.

Every extractor takes the normalised batch a Classifier takes, ``(N, 3, S, S)``, and returns ``(N, D)`` features:

- ``embed``: a pretrained CNN backbone's embeddings (``embed:<model>`` picks the backbone; default mobilenetv2_100).
- ``pixels``: the image average-pooled to 16 x 16, flattened (768 values).
- ``colorhist``: a joint RGB colour histogram (8 x 8 x 8 soft bins, square-rooted), from exportable ops only.
- ``hog``: histogram of oriented gradients: Sobel convolutions, soft orientation binning by projection onto the
  bin directions, 8 x 8 cell pooling and L2-Hys normalisation over 2 x 2 cell blocks (Dalal & Triggs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pixclass.errors import ConfigError
from pixclass.models.net import IMAGENET_MEAN, IMAGENET_STD

FEATURES = ("embed", "colorhist", "hog", "pixels")
DEFAULT_BACKBONE = "mobilenetv2_100"  # offline ImageNet weights


def split_name(features: str) -> tuple[str, str | None]:
    """``"embed:resnet18"`` -> ("embed", "resnet18"); ``"hog"`` -> ("hog", None). Unknown kinds raise ConfigError."""
    kind, _, arg = features.partition(":")
    if kind not in FEATURES:
        import difflib

        close = difflib.get_close_matches(kind, FEATURES, n=2)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown features {features!r}.{hint} Use one of: {', '.join(FEATURES)} "
                          "(embed:<model> picks the embedding backbone).")
    if arg and kind != "embed":
        raise ConfigError(f"Only embed takes a model name (embed:<model>). Got {features!r}.")
    return kind, (arg or DEFAULT_BACKBONE) if kind == "embed" else None


def _downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-style downsampling to (size, size): bilinear to a multiple of ``size``, then average pooling."""
    s = x.shape[-1]
    if s == size:
        return x
    factor = max(1, s // size)
    if s != factor * size:
        x = F.interpolate(x, size=(factor * size, factor * size), mode="bilinear", align_corners=False)
    return F.avg_pool2d(x, factor) if factor > 1 else x


class _Unnormalise(nn.Module):
    """Base: holds mean/std buffers to undo the normalisation, back to RGB in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def rgb(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.std + self.mean).clamp(0, 1)


class PixelFeatures(_Unnormalise):
    """Raw downscaled pixels: (N, 3 * size * size) in [0, 1]."""

    def __init__(self, size: int = 16, *, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__(mean, std)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(_downsample(self.rgb(x), self.size), 1)


class ColorHistogram(_Unnormalise):
    """Joint RGB histogram with triangular soft bins: (N, bins**3), square-rooted (Hellinger) so it suits L2 models."""

    def __init__(self, bins: int = 8, work_size: int = 64, *, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__(mean, std)
        self.bins = bins
        self.work_size = work_size
        centres = (torch.arange(bins, dtype=torch.float32) + 0.5) / bins
        self.register_buffer("centres", centres.view(1, 1, bins, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = torch.flatten(_downsample(self.rgb(x), self.work_size), 2)  # (N, 3, P)
        half = 0.5 / self.bins
        rgb = rgb.clamp(half, 1 - half)  # beyond the outer centres all weight goes to the outer bin: rows sum to 1
        # weight of every pixel value in every bin: 1 at the centre, 0 one bin width away
        w = F.relu(1 - (rgb.unsqueeze(2) - self.centres).abs() * self.bins)  # (N, 3, B, P)
        r, g, b = w[:, 0], w[:, 1], w[:, 2]
        rg = (r.unsqueeze(2) * g.unsqueeze(1)).flatten(1, 2)  # (N, B*B, P)
        joint = torch.matmul(rg, b.transpose(1, 2))  # (N, B*B, B)
        hist = joint.flatten(1) / rgb.shape[-1]
        return torch.sqrt(hist + 1e-12)


class HOG(_Unnormalise):
    """Histogram of oriented gradients on the greyscale image at ``work_size``: (N, orientations * 4 * (C-1)**2)
    with C = work_size // cell cells a side (64 px, 8 px cells, 9 bins: 1764 values)."""

    def __init__(self, orientations: int = 9, cell: int = 8, work_size: int = 64, *, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD) -> None:
        super().__init__(mean, std)
        self.orientations, self.cell, self.work_size = orientations, cell, work_size
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("kernels", torch.stack([sobel, sobel.t()]).unsqueeze(1), persistent=False)  # (2,1,3,3)
        # unsigned orientations: bin k points at angle k*pi/B; doubled angles make theta and theta+pi the same
        angles = torch.arange(orientations, dtype=torch.float32) * math.pi / orientations
        self.register_buffer("cos2", torch.cos(2 * angles).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("sin2", torch.sin(2 * angles).view(1, -1, 1, 1), persistent=False)
        self.width = math.cos(2 * math.pi / orientations)  # cos(2 * bin width): the kernel reaches 0 there

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = _downsample(self.rgb(x), self.work_size)
        grey = 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
        grad = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), self.kernels)
        gx, gy = grad[:, 0:1], grad[:, 1:2]
        mag2 = gx * gx + gy * gy + 1e-12
        mag = torch.sqrt(mag2)
        # projection: cos(2 (theta - theta_k)) from the doubled-angle gradient, without atan2
        cos_d = ((gx * gx - gy * gy) * self.cos2 + 2 * gx * gy * self.sin2) / mag2
        weight = F.relu(cos_d - self.width) / (1 - self.width)  # 1 on the bin direction, 0 one bin away
        cells = F.avg_pool2d(weight * mag, self.cell)  # (N, B, C, C)
        c = cells.shape[-1]
        energy = F.avg_pool2d((cells * cells).sum(1, keepdim=True), 2, stride=1) * 4  # (N, 1, C-1, C-1)
        blocks = torch.cat([cells[:, :, i : i + c - 1, j : j + c - 1] for i in (0, 1) for j in (0, 1)], 1)
        blocks = blocks / torch.sqrt(energy + 1e-6)
        blocks = blocks.clamp(max=0.2)  # L2-Hys: clip, then normalise again
        energy = (blocks * blocks).sum(1, keepdim=True)
        blocks = blocks / torch.sqrt(energy + 1e-6)
        return torch.flatten(blocks, 1)


class Embedding(nn.Module):
    """A backbone's embeddings (N, D); the backbone takes the normalised input as is."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def create_features(features: str, *, weights: str | None = None, pretrained: bool = True
                    ) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """(feature module in eval mode, mean, std) for a features name; ``weights`` is an embed backbone file."""
    kind, backbone = split_name(features)
    if kind == "embed":
        from pixclass.models.registry import create_model

        net = create_model(backbone, pretrained=pretrained and not weights, num_classes=2, weights=weights)
        return Embedding(net.backbone).eval(), net.mean, net.std
    module = {"pixels": PixelFeatures, "colorhist": ColorHistogram, "hog": HOG}[kind]()
    return module.eval(), IMAGENET_MEAN, IMAGENET_STD
