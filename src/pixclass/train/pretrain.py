"""Self-supervised pretraining (SimCLR, BYOL) of a backbone on a dataset's images; labels are not used.

Two augmented views of every image come from ``data.augment`` (one affine warp per batch, colour jitter,
greyscale). SimCLR pulls the two views' projections together against the rest of the batch (NT-Xent); BYOL has an
online network predict a slowly moving (EMA) target network's projection of the other view. The result is a file
with the backbone's weights under ``backbone.`` keys, which ``train --weights FILE`` (``models.weights``) accepts.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pixclass.data.augment import augment
from pixclass.data.cache import ImageCache, broken_message, keep_decodable
from pixclass.errors import ConfigError, DataError
from pixclass.models import create_model
from pixclass.store import Workspace, records

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
METHODS = ("simclr", "byol")


@dataclass(frozen=True)
class PretrainConfig:
    method: Literal["simclr", "byol"] = "simclr"
    model: str = "smallcnn"  # small and fast from scratch on CPU; any create_model name works
    pretrained: bool = False  # start from ImageNet weights instead of random ones
    img_size: int = 64
    epochs: int = 20
    batch_size: int = 128  # contrastive losses want large batches; 128 is what 2 cores handle well
    lr: float = 2e-3  # AdamW peak, linear warm-up then cosine decay
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    temperature: float = 0.2  # SimCLR: NT-Xent temperature (0.1-0.5 in the paper; lower suits small batches)
    proj_dim: int = 128  # projection head output
    hidden_dim: int = 512  # projection / prediction head hidden layer
    momentum: float = 0.99  # BYOL: EMA of the target network, raised to 1 by a cosine schedule
    crop_scale: tuple[float, float] = (0.2, 1.0)  # random-resized-crop area fraction
    jitter: float = 0.4  # brightness, contrast and saturation jitter strength
    grayscale_p: float = 0.2
    time_budget: float | None = None  # seconds; stops cleanly after the current step
    bf16: bool = True
    seed: int = 0
    workers: int = 2  # decoding threads

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"The 'method' option must be simclr or byol. Got {self.method!r}.")
        for name in ("epochs", "batch_size", "img_size", "lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"The '{name}' option must be positive. Got {getattr(self, name)!r}.")
        if self.batch_size < 2:
            raise ConfigError("The 'batch_size' option must be at least 2: the views need other images to "
                              "contrast with.")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ConfigError(f"The 'time_budget' option must be positive seconds. Got {self.time_budget!r}.")


@dataclass(frozen=True)
class PretrainResult:
    path: Path
    method: str
    model: str
    images: int
    steps: int
    epochs: float
    seconds: float
    history: list[dict] = field(default_factory=list)  # per epoch: loss, seconds
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"} of files that no longer decode

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, dim_out))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR loss: each view must pick its partner among the 2N - 1 other projections."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def _views(batch: torch.Tensor, cfg: PretrainConfig, mean: torch.Tensor, std: torch.Tensor,
           g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    out = []
    for _ in range(2):
        v = augment(x, generator=g, scale=cfg.crop_scale, jitter=cfg.jitter, grayscale_p=cfg.grayscale_p)
        out.append(((v - mean) / std).contiguous(memory_format=torch.channels_last))
    return out[0], out[1]


def pretrain(ws: Workspace, dataset: str, cfg: PretrainConfig, *, out: str | Path,
             progress: Progress | None = None) -> PretrainResult:
    """Pretrain ``cfg.model``'s backbone on every non-excluded image of ``dataset``; write it to ``out``."""
    t0 = time.time()
    out = Path(out)
    if out.suffix not in (".pt", ".pth"):
        raise ConfigError(f"The output must be a .pt or .pth file. Got {out}.")
    with ws.session() as s:
        its = records.items(s, records.get_dataset(s, dataset))
    if len(its) < 2:
        raise DataError(f"Dataset {dataset!r} has {len(its)} images; self-supervised pretraining needs many.")
    arrays, broken = ImageCache(ws.cache_dir, cfg.img_size).get_decodable(
        [it.path for it in its], [it.sha256 for it in its], workers=cfg.workers,
        progress=(lambda d, t: progress("decode", d, t)) if progress else None)
    its, skipped = keep_decodable(its, broken)
    if len(its) < 2:
        raise DataError(f"Dataset {dataset!r} has {len(its)} images that decode; self-supervised pretraining "
                        "needs many. " + broken_message(skipped))
    images = torch.from_numpy(arrays)
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    net = create_model(cfg.model, pretrained=cfg.pretrained, num_classes=2)
    backbone = net.backbone.to(memory_format=torch.channels_last)
    projector = mlp(net.num_features, cfg.hidden_dim, cfg.proj_dim)
    online = nn.ModuleDict({"backbone": backbone, "projector": projector})
    if cfg.method == "byol":
        online["predictor"] = mlp(cfg.proj_dim, cfg.hidden_dim, cfg.proj_dim)
        target = copy.deepcopy(nn.ModuleDict({"backbone": backbone, "projector": projector}))
        for p in target.parameters():
            p.requires_grad_(False)
    mean = torch.tensor(net.mean).view(1, 3, 1, 1)
    std = torch.tensor(net.std).view(1, 3, 1, 1)

    batch = min(cfg.batch_size, len(its))
    steps_per_epoch = max(1, len(its) // batch)  # drop the last partial batch: BatchNorm and NT-Xent like full ones
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    opt = torch.optim.AdamW(online.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) /
                                                                             max(1, total - warmup))))
    history: list[dict] = []
    step, stopped = 0, False
    online.train()
    for epoch in range(cfg.epochs):
        t_ep, losses = time.time(), []
        order = torch.randperm(len(its), generator=g)
        for b in range(steps_per_epoch):
            v1, v2 = _views(images[order[b * batch : (b + 1) * batch]], cfg, mean, std, g)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                h = online["backbone"](torch.cat([v1, v2]))
                z = online["projector"](h).float()
                if cfg.method == "byol":
                    p = online["predictor"](z).float()
                    with torch.no_grad():
                        zt = target["projector"](target["backbone"](torch.cat([v1, v2]))).float()
            if cfg.method == "simclr":
                loss = nt_xent(z[:batch], z[batch:], cfg.temperature)
            else:
                loss = byol_loss(p[:batch], zt[batch:]) + byol_loss(p[batch:], zt[:batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if cfg.method == "byol":  # target <- tau * target + (1 - tau) * online, tau -> 1 (cosine)
                tau = 1 - (1 - cfg.momentum) * (math.cos(math.pi * step / total) + 1) / 2
                with torch.no_grad():
                    for pt, po in zip(target.parameters(), [*backbone.parameters(), *projector.parameters()]):
                        pt.mul_(tau).add_(po.detach(), alpha=1 - tau)
                    for bt, bo in zip(target.buffers(), [*backbone.buffers(), *projector.buffers()]):
                        bt.copy_(bo)
            losses.append(loss.item())
            if progress:
                progress("pretrain", step, total)
            if cfg.time_budget and time.time() - t0 > cfg.time_budget:
                stopped = True
                break
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(time.time() - t_ep, 2)})
        log.info("pretrain epoch %d loss %.4f", epoch + 1, history[-1]["loss"])
        if stopped:
            break

    out.parent.mkdir(parents=True, exist_ok=True)
    state = {f"backbone.{k}": v.detach().clone() for k, v in backbone.state_dict().items()}
    torch.save({"state_dict": state, "model_name": cfg.model, "method": cfg.method, "img_size": cfg.img_size,
                "steps": step, "mean": list(net.mean), "std": list(net.std)}, out)
    return PretrainResult(out, cfg.method, cfg.model, len(its), step, round(step / steps_per_epoch, 2),
                          round(time.time() - t0, 2), history, skipped)
