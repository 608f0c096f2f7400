"""Fine-tuning loop. Read top to bottom: setup, schedule, epochs (train, validate, checkpoint), early stop.

bf16 autocast + channels_last on CPU; leading backbone stages frozen (no backward through the costly
high-resolution layers); AdamW with warm-up and a cosine schedule driven by steps or the time budget, whichever
is further along, so a budgeted run still ends annealed.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pixclass.config import TrainConfig
from pixclass.data.augment import to_tensor, train_batch
from pixclass.models.embed import predict_probs
from pixclass.models.net import Classifier
from pixclass.train.losses import task_loss

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -1.0
    stopped: str = "epochs"  # epochs | early_stop | time_budget


def default_freeze(model: Classifier) -> int:
    """Leading stages to freeze: about a third of them for pretrained CNNs, none for tiny built-ins."""
    if model.name.startswith("smallcnn") or not model.stages:
        return 0
    return round(0.35 * len(model.stages))


def set_frozen(model: Classifier, n: int) -> list[torch.nn.Module]:
    frozen = model.stages[:n]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    return frozen


def finetune(model: Classifier, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
             cfg: TrainConfig, run_dir: Path, *, deadline: float | None = None,
             progress: Progress | None = None) -> History:
    """Train ``model`` in place; on return it holds the best-on-validation weights."""
    # ---- setup ---------------------------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    k = model.head.out_features
    multilabel = model.multilabel
    counts = train_y.sum(0).astype(np.float64) if multilabel else np.bincount(train_y, minlength=k).astype(np.float64)
    n_freeze = default_freeze(model) if cfg.freeze_stages < 0 else cfg.freeze_stages
    frozen = set_frozen(model, n_freeze)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    head_params = list(model.head.parameters())
    body_params = [p for p in model.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": head_params, "lr": cfg.lr}, {"params": body_params, "lr": cfg.lr * cfg.backbone_lr_mult}],
        weight_decay=cfg.weight_decay,
    )
    base_lrs = [g["lr"] for g in opt.param_groups]
    class_w = None
    if cfg.balance == "weights":  # multi-label: BCE pos_weight = negatives / positives per class
        w = (len(train_y) - counts) / np.maximum(counts, 1) if multilabel else len(train_y) / (k * np.maximum(counts, 1))
        class_w = torch.tensor(w, dtype=torch.float32)
    sample_p = None
    if cfg.balance == "sampler" and not multilabel:
        w = 1.0 / np.maximum(counts[train_y], 1)
        sample_p = w / w.sum()
    train_size = max(16, int(round(cfg.img_size * cfg.train_scale / 8)) * 8)
    steps_per_epoch = max(1, len(train_y) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    history, start_epoch, step = History(), 0, 0
    best_state = copy.deepcopy(model.state_dict())
    last_path = run_dir / "last.pt"
    if cfg.resume and last_path.is_file():
        ck = torch.load(str(last_path), map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start_epoch, step, best_state = ck["epoch"] + 1, ck["step"], ck["best_state"]
        history = History(**ck["history"])
        log.info("resumed from %s at epoch %d", last_path, start_epoch)
    t0 = time.time()
    budget_total = (deadline - t0) if deadline else None

    def lr_factor() -> float:
        done = step / total_steps
        if budget_total:
            done = max(done, (time.time() - t0) / budget_total)
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    # ---- epochs --------------------------------------------------------------------------------------------
    epoch_time = None
    for epoch in range(start_epoch, cfg.epochs):
        e0 = time.time()
        model.train()
        for m in frozen:
            m.eval()  # frozen stages keep their BatchNorm statistics
        if sample_p is not None:
            order = rng.choice(len(train_y), size=len(train_y), p=sample_p)
        else:
            order = rng.permutation(len(train_y))
        seen, loss_sum, correct, out_of_time = 0, 0.0, 0, False
        for b in range(steps_per_epoch):
            if deadline and time.time() > deadline - _eval_seconds(len(val_y), epoch_time):
                out_of_time = True
                break
            idx = np.sort(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            xb = torch.from_numpy(train_x[idx])
            x = (train_batch(xb, model.mean, model.std, generator=gen, grayscale_p=cfg.grayscale_p,
                             channels_last=cfg.channels_last, out_size=train_size) if cfg.augment
                 else to_tensor(xb, model.mean, model.std, cfg.channels_last))
            y = torch.from_numpy(train_y[idx])
            if cfg.adversarial_eps > 0:  # adversarial training: learn on FGSM (random start) images instead
                from pixclass.train.robustness import adversarial_batch

                x = adversarial_batch(model, x, y, eps=cfg.adversarial_eps, bf16=cfg.bf16, generator=gen)
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * lr_factor()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = model(x)
            loss = task_loss(logits.float(), y, multilabel=multilabel, loss=cfg.loss, class_weight=class_w,
                             label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += (float(((logits > 0) == (y > 0.5)).float().mean()) * len(idx) if multilabel
                        else int((logits.argmax(1) == y).sum()))
            if progress:
                progress(f"epoch {epoch + 1}/{cfg.epochs}", b + 1, steps_per_epoch)
        train_seconds = time.time() - e0
        # ---- validate and checkpoint ---------------------------------------------------------------------
        v0 = time.time()
        val_acc = val_score(predict_probs(model, val_x, bf16=cfg.bf16), val_y, multilabel) if len(val_y) else 0.0
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
               "val_acc": val_acc, "images_per_s": seen / max(train_seconds, 1e-9), "images": seen,
               "seconds": time.time() - e0, "lr": base_lrs[0] * lr_factor()}
        epoch_time = {"val": time.time() - v0}
        history.epochs.append(row)
        log.info("epoch %d: %s", epoch + 1, row)
        if val_acc > history.best_score:
            history.best_score, history.best_epoch = val_acc, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        with open(run_dir / "history.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "step": step,
                    "best_state": best_state, "history": history.__dict__}, last_path)
        if out_of_time:
            history.stopped = "time_budget"
            break
        if epoch + 1 - history.best_epoch >= cfg.patience:
            history.stopped = "early_stop"
            break
    model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    return history


def val_score(probs: np.ndarray, labels: np.ndarray, multilabel: bool) -> float:
    """Model selection score: mean average precision for multi-label, accuracy otherwise."""
    if multilabel:
        from sklearn.metrics import average_precision_score

        aps = [average_precision_score(labels[:, j], probs[:, j]) for j in range(labels.shape[1]) if labels[:, j].any()]
        return float(np.mean(aps)) if aps else 0.0
    return float(np.mean(probs.argmax(1) == labels))


def _eval_seconds(n_val: int, epoch_time: dict | None) -> float:
    """Seconds to keep in hand for the last validation pass before a deadline."""
    if epoch_time:
        return epoch_time["val"] * 1.2 + 1.0
    return n_val / 60 + 2.0
