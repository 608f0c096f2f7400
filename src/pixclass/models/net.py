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
        self.multilabel = False  # True: independent sigmoid per class instead of a softmax

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)

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


class CascadeHead(nn.Module):
    """Per-node classifiers over a taxonomy: one linear layer per inner node, choosing among its children.

    Returns log-probabilities of the classes (N, K): log p(class) = sum of log p(child | parent) along its path,
    so a softmax of the output gives the class probabilities and the loss can be plain cross-entropy.
    """

    def __init__(self, num_features: int, classes: list[str] | tuple[str, ...]) -> None:
        super().__init__()
        self.classes = list(classes)
        self.out_features = len(self.classes)
        kids: dict[str, list[str]] = {}
        for c in self.classes:
            parts = c.split("/")
            for d in range(len(parts)):
                parent, node = "/".join(parts[:d]), "/".join(parts[: d + 1])
                if node not in kids.setdefault(parent, []):
                    kids[parent].append(node)
        self.parents = [p for p in sorted(kids) if len(kids[p]) > 1]  # a single child needs no classifier
        self.children_of = {p: kids[p] for p in self.parents}
        self.heads = nn.ModuleList(nn.Linear(num_features, len(kids[p])) for p in self.parents)
        # (class, step) -> (head index, child index) along the class path, padded with -1
        steps = []
        for c in self.classes:
            parts = c.split("/")
            path = []
            for d in range(len(parts)):
                parent, node = "/".join(parts[:d]), "/".join(parts[: d + 1])
                if parent in self.children_of:
                    path.append((self.parents.index(parent), self.children_of[parent].index(node)))
            steps.append(path)
        width = max((len(s) for s in steps), default=0)
        offsets = [0]
        for p in self.parents:
            offsets.append(offsets[-1] + len(self.children_of[p]))
        gather = torch.full((len(self.classes), max(width, 1)), -1, dtype=torch.long)
        for k, path in enumerate(steps):
            for j, (h, child) in enumerate(path):
                gather[k, j] = offsets[h] + child
        self.register_buffer("gather", gather, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.cat([torch.log_softmax(h(x), dim=1) for h in self.heads], dim=1)
        logp = torch.cat([logp, torch.zeros_like(logp[:, :1])], dim=1)  # index -1 -> the appended zero column
        idx = torch.where(self.gather < 0, torch.full_like(self.gather, logp.shape[1] - 1), self.gather)
        return logp[:, idx].sum(dim=2)
