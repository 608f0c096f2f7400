"""`train`: dataset -> run directory with model.pt, manifest.json, metrics.json and history.

Both modes end with the same thing: a Classifier checkpoint, so evaluate/predict/export never care which mode made it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pixclass.artifact import Manifest, Preprocess, runtime_versions
from pixclass.config import TrainConfig
from pixclass.data.cache import broken_message, keep_decodable
from pixclass.data.embeddings import EmbeddingCache, agrees_with_cache, cached_backbone, embed_decodable
from pixclass.data.splits import SplitData, load_splits
from pixclass.errors import ConfigError, DataError
from pixclass.evaluate.task_metrics import metrics_for, tune_thresholds
from pixclass.models import create_model
from pixclass.models.classical import CLASSICAL
from pixclass.models.embed import head_probs, predict_probs, run_batches
from pixclass.models.net import CascadeHead, Classifier
from pixclass.store import Workspace, records
from pixclass.train.result import RunResult, finish_run
from pixclass.train.linear import CChoice, fit_cascade, fit_linear, fit_multilabel, select_c
from pixclass.train.loop import finetune

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
VAL_KEYS = ("accuracy", "macro_f1", "mAP", "micro_f1", "hierarchical_f1", "accuracy_by_level")


def _stage(progress: Progress | None, name: str):
    return (lambda d, t: progress(name, d, t)) if progress else None


def _ensure_val(data: dict[str, SplitData], seed: int) -> None:
    """Without a validation split, hold out 10% of train (stratified by label) for it."""
    if len(data["val"]) or len(data["train"]) < 10:
        return
    from pixclass.io.importer import stratified_split

    tr = data["train"]
    parts = np.array(stratified_split(["|".join(it.labels) for it in tr.items], (0.9, 0.1, 0.0), seed=seed))
    data["val"], data["train"] = tr.take(np.where(parts != "train")[0]), tr.take(np.where(parts == "train")[0])


def _embed_splits(ws: Workspace, data: dict[str, SplitData], cfg: TrainConfig, progress: Progress | None) -> None:
    """Each split's backbone embeddings from the workspace's embedding cache (only images not cached yet are run, and
    stay cached for pre-labeling, the label queue and dataset health), in place of decoded images. A file that no
    longer decodes is left out and listed in its split's ``skipped``, as load_splits does."""
    everything = [it for d in data.values() for it in d.items]
    emb, broken = embed_decodable(ws, everything, model=cfg.model, img_size=cfg.img_size, workers=cfg.workers,
                                  progress=progress)
    start, row = 0, 0
    for sp, d in data.items():
        gone = {j: broken[start + j] for j in range(len(d)) if start + j in broken}
        good, skipped = keep_decodable(d.items, gone, sp)
        keep = [j for j in range(len(d)) if j not in gone]
        data[sp] = SplitData(good, None, d.labels[keep], skipped, emb[row : row + len(good)])
        start += len(d)
        row += len(good)


def linear_head(model: Classifier, train: SplitData, val: SplitData, cfg: TrainConfig,
                progress: Progress | None) -> CChoice:
    """Fit the head on frozen embeddings: softmax, one-vs-rest (multi-label) or per-node (cascade) regression.

    Returns the C used and how it was chosen (validation, or cross-validation on train when validation is small).
    Splits that carry ``features`` (cached embeddings) are used as they are; otherwise the backbone runs here."""
    emb_tr, emb_va = train.features, val.features
    if emb_tr is None or emb_va is None:
        emb_tr = run_batches(model.backbone, train.images, model.mean, model.std,
                             progress=_stage(progress, "embed train"))
        emb_va = run_batches(model.backbone, val.images, model.mean, model.std, progress=_stage(progress, "embed val"))
    has_val = len(val) > 0
    with torch.no_grad():
        if isinstance(model.head, CascadeHead):
            choice = CChoice(cfg.linear_c, "given") if cfg.linear_c else CChoice(0.1, "default")
            fitted = fit_cascade(emb_tr, train.labels, model.head.classes, model.head.parents,
                                 model.head.children_of, C=choice.C, progress=progress)
            for layer, (weight, bias) in zip(model.head.heads, fitted):
                layer.weight.copy_(torch.from_numpy(weight))
                layer.bias.copy_(torch.from_numpy(bias))
            return choice
        class_weight = "balanced" if cfg.balance != "none" and not model.multilabel else None
        choice = select_c(emb_tr, train.labels, val_x=emb_va if has_val else None, val_y=val.labels,
                          C=cfg.linear_c, class_weight=class_weight, seed=cfg.seed, progress=progress)
        if model.multilabel:  # progress: "choose C ..." (select_c), then "fit"
            weight, bias, _ = fit_multilabel(emb_tr, train.labels, C=choice.C, progress=progress)
        else:
            weight, bias, _ = fit_linear(emb_tr, train.labels, model.head.out_features, C=choice.C,
                                         class_weight=class_weight, progress=progress)
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
    return choice


def _check_trainable(dataset: str, schema, data: dict[str, SplitData]) -> None:
    """A DataError saying what to label, before a library fails on data it cannot learn from."""
    train = data["train"]
    if len(train) == 0 and train.skipped:
        raise DataError(f"Dataset {dataset!r}: every labeled training image no longer decodes. "
                        + broken_message(train.skipped))
    if len(train) == 0:
        held = [f"{len(d)} in {sp}" for sp, d in data.items() if sp != "train" and len(d)]
        raise DataError(f"Dataset {dataset!r} has no labeled training images"
                        + (f" ({', '.join(held)}, held out for validation and testing)" if held else "")
                        + ". Label more images: new images are split 80/10/10 into train/val/test at import.")
    if schema.task != "multilabel" and len(np.unique(train.labels)) < 2:
        only = schema.classes[int(np.asarray(train.labels).ravel()[0])]
        broken = f" ({len(train.skipped)} more no longer decode)" if train.skipped else ""
        held = [f"{len(d)} in {sp}" for sp, d in data.items() if sp != "train" and len(d)]
        held_out = f"; held out for evaluation: {', '.join(held)}" if held else ""
        raise DataError(f"Dataset {dataset!r} has training labels of one class only ({only!r}, {len(train)} "
                        f"images in the train split{broken}{held_out}); a classifier needs at least two. Label "
                        f"images of another class first.")


def train(ws: Workspace, dataset: str, cfg: TrainConfig, *, out: str | Path | None = None,
          progress: Progress | None = None, reuse_embeddings: bool = True) -> RunResult:
    """Train ``cfg.model`` on ``dataset``'s labeled images into a run directory (default under WORKSPACE/runs).

    A linear head on ImageNet weights reads the workspace's embedding cache instead of decoding the images and
    running the backbone (``reuse_embeddings=False``: it runs the backbone over the decoded images, as bench/ does for
    a reference)."""
    if cfg.model in CLASSICAL:  # scikit-learn models on features: their own trainer, same run directory contract
        from pixclass.train.classical import train_classical

        return train_classical(ws, dataset, cfg, out=out, progress=progress)
    if cfg.features != "embed":
        raise ConfigError(f"--features {cfg.features} applies to classical models ({', '.join(CLASSICAL)}), "
                          f"not to {cfg.model!r}.")
    t0 = time.time()
    deadline = t0 + cfg.time_budget if cfg.time_budget else None
    run_dir = Path(out) if out else ws.new_run_dir(dataset)
    if run_dir.exists() and (run_dir / "model.pt").exists() and not cfg.resume:
        raise ConfigError(f"{run_dir} already holds a trained run. Choose another --out or pass --resume.")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        (run_dir / "history.jsonl").unlink(missing_ok=True)

    from_cache = reuse_embeddings and cached_backbone(cfg.to_dict())
    schema, data = load_splits(ws, dataset, cfg.img_size, workers=cfg.workers, progress=_stage(progress, "decode"),
                               skip_broken=True, decode=not from_cache)
    if from_cache:
        _embed_splits(ws, data, cfg, progress)
    skipped = [b for d in data.values() for b in d.skipped]  # each logged by load_splits
    _check_trainable(dataset, schema, data)
    _ensure_val(data, cfg.seed)
    model = create_model(cfg.model, pretrained=cfg.pretrained, num_classes=schema.num_classes, weights=cfg.weights)
    if from_cache and not agrees_with_cache(ws, model, [it for d in data.values() for it in d.items],
                                            model=cfg.model, img_size=cfg.img_size):
        EmbeddingCache(ws.cache_dir, cfg.model, cfg.img_size).clear()  # other weights than those installed now
        _embed_splits(ws, data, cfg, progress)
    model.multilabel = schema.task == "multilabel"
    cascade = schema.task == "hierarchical" and cfg.hierarchy == "cascade"
    if cascade:
        model.head = CascadeHead(model.num_features, schema.classes)
    with ws.session() as s:
        run_row = records.add_run(s, records.get_dataset(s, dataset), path=str(run_dir.resolve()), model=cfg.model,
                                  mode=cfg.mode)
        run_id = run_row.id

    history: list[dict] = []
    extra: dict = {}
    if cfg.mode == "linear":
        choice = linear_head(model, data["train"], data["val"], cfg, progress)
        extra.update(linear_c=choice.C, linear_c_by=choice.by)  # by: given, validation, cv or default
    else:
        hist = finetune(model, data["train"].images, data["train"].labels, data["val"].images, data["val"].labels,
                        cfg, run_dir, deadline=deadline, progress=progress)
        history = hist.epochs
        extra.update(best_epoch=hist.best_epoch, stopped=hist.stopped)
        if hist.stopped != "time_budget":  # a budget-stopped run keeps last.pt so that --resume can go on
            (run_dir / "last.pt").unlink(missing_ok=True)

    metrics: dict = {"train_seconds": round(time.time() - t0, 2), "task": schema.task, **extra}
    thresholds: dict[str, float] = {}
    if len(data["val"]):
        val = data["val"]
        probs = head_probs(model, val.features) if val.features is not None else predict_probs(model, val.images,
                                                                                                bf16=cfg.bf16)
        thresholds = tune_thresholds(schema, val.labels, probs, threshold_target=cfg.threshold_target,
                                     node_threshold=cfg.node_threshold)
        vm = metrics_for(schema, val.labels, probs, thresholds)
        metrics.update({f"val_{k}": vm[k] for k in VAL_KEYS if k in vm})
    if skipped:  # files that broke after import: named in metrics.json, the CLI output and server job results
        metrics["skipped"] = skipped
    torch.save({"model_name": cfg.model, "num_classes": schema.num_classes, "state_dict": model.state_dict(),
                "img_size": cfg.img_size, "multilabel": model.multilabel,
                "cascade": list(schema.classes) if cascade else None}, run_dir / "model.pt")
    manifest = Manifest(
        schema=schema, preprocess=Preprocess(cfg.img_size, model.mean, model.std), model=cfg.model, mode=cfg.mode,
        dataset=dataset, thresholds=thresholds, metrics=metrics, config=cfg.to_dict(), files={"torch": "model.pt"},
        versions=runtime_versions("torch", "timm", "numpy", "sklearn"),
    )
    return finish_run(ws, run_id, run_dir, manifest, history=history, started=t0)
