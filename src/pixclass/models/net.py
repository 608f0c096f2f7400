"""Classifier = backbone (images -> embeddings (N, D)) + linear head (D -> K). Every model name builds one."""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, *, name: str,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 stages: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, num_classes)
        self.name = name
        self.num_features = num_features
        self.mean, self.std = tuple(mean), tuple(std)
        self.stages = stages or []  # backbone parts in input order, for freezing the early ones

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class SmallCNN(nn.Module):
    """A small CNN for tiny images (digits, CIFAR): four conv blocks and global pooling. Returns embeddings."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int, pool: bool) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return nn.Sequential(*layers)

        self.body = nn.Sequential(
            block(3, width, False), block(width, 2 * width, True), block(2 * width, 4 * width, True),
            block(4 * width, 8 * width, True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.num_features = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
