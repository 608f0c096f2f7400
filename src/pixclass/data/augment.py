"""Batch augmentation and normalisation in torch, applied to whole uint8 batches from the cache.

One affine warp per batch does random-resized-crop, translation and flip together; colour jitter and greyscale
are per-sample multiplies. This is much cheaper on CPU than per-image PIL transforms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def to_tensor(batch: "torch.Tensor", mean: tuple[float, ...], std: tuple[float, ...],
              channels_last: bool = True) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W)."""
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x - m) / s
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def augment(x: torch.Tensor, *, generator: torch.Generator | None = None, scale: tuple[float, float] = (0.5, 1.0),
            ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True, jitter: float = 0.2,
            grayscale_p: float = 0.0, out_size: int | None = None) -> torch.Tensor:
    """Augment a float batch (N, 3, H, W) in [0, 1] (before normalisation); crops are resampled to out_size."""
    n = x.shape[0]
    g = generator

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g)

    area = scale[0] + (scale[1] - scale[0]) * rand(n)
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * rand(n)
    r = torch.exp(log_r)
    sw = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    sh = torch.sqrt(area / r).clamp(max=1.0)
    tx = (1 - sw) * (2 * rand(n) - 1)  # crop centre, in [-1, 1] coordinates, inside the image
    ty = (1 - sh) * (2 * rand(n) - 1)
    sign = torch.where(rand(n) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sw * sign, tx
    theta[:, 1, 1], theta[:, 1, 2] = sh, ty
    size = out_size or x.shape[-1]
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if jitter > 0:
        b = 1 + jitter * (2 * rand(n, 1, 1, 1) - 1)  # brightness
        c = 1 + jitter * (2 * rand(n, 1, 1, 1) - 1)  # contrast
        sat = 1 + jitter * (2 * rand(n, 1, 1, 1) - 1)  # saturation
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = grey + (x - grey) * sat
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * c + mean) * b
    if grayscale_p > 0:
        pick = (rand(n) < grayscale_p).view(n, 1, 1, 1)
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        x = torch.where(pick, grey, x)
    return x.clamp_(0, 1)


def train_batch(batch_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], *,
                generator: torch.Generator | None = None, grayscale_p: float = 0.0,
                channels_last: bool = True, out_size: int | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> augmented, normalised float (N, 3, H, W)."""
    x = batch_u8.permute(0, 3, 1, 2).float().div_(255.0)
    x = augment(x, generator=generator, grayscale_p=grayscale_p, out_size=out_size)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    x = (x - m) / s
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
