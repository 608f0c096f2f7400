"""Losses by task: cross-entropy (single label, hierarchical), BCE or asymmetric loss (multi-label)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
                    clip: float = 0.05) -> torch.Tensor:
    """Asymmetric loss for multi-label (Ridnik et al., ICCV 2021): easy negatives are down-weighted and shifted."""
    p = torch.sigmoid(logits)
    p_neg = (p - clip).clamp(min=0) if clip > 0 else p
    loss_pos = targets * (1 - p).pow(gamma_pos) * torch.log(p.clamp(min=1e-8))
    loss_neg = (1 - targets) * p_neg.pow(gamma_neg) * torch.log((1 - p_neg).clamp(min=1e-8))
    return -(loss_pos + loss_neg).sum(1).mean()


def task_loss(logits: torch.Tensor, y: torch.Tensor, *, multilabel: bool, loss: str = "auto",
              class_weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    if multilabel:
        if loss == "asl":
            return asymmetric_loss(logits, y)
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=class_weight)
    return F.cross_entropy(logits, y, weight=class_weight, label_smoothing=label_smoothing)
