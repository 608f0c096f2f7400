"""Classical training: features (CNN embeddings or hand-made) -> scikit-learn estimator -> run directory.

The run directory follows the same contract as `train.run.train`: ``model.pt`` (a checkpoint dict with
``"kind": "classical"``, loaded by ``models.registry.load_checkpoint``), the fitted estimator beside it
(``estimator.joblib``), ``manifest.json`` (mode ``classical``), ``metrics.json`` and a Run row. Evaluate and predict
use it through ``load_checkpoint``; ``export.classical`` turns it into one ONNX file.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pixclass.artifact import Manifest, Preprocess, runtime_versions
from pixclass.config import TrainConfig
from pixclass.data.cache import ImageCache, broken_message, keep_decodable
from pixclass.data.splits import single_label_indices
from pixclass.errors import ConfigError, DataError
from pixclass.evaluate.metrics import classification_metrics
from pixclass.io.images import normalize
from pixclass.models.classical import CLASSICAL, ESTIMATOR_FILE, create_estimator, expand_probs
from pixclass.models.features import create_features, split_name
from pixclass.store import Workspace, records
from pixclass.train.result import finish_run

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


@torch.no_grad()
def compute_features(module: torch.nn.Module, images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
                     *, batch_size: int = 64, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Features (N, D) float32 of uint8 images (N, S, S, 3), in float32 torch exactly as the model computes them."""
    module.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(normalize(images[start : start + batch_size], mean, std))
        out.append(module(x).numpy())
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def dataset_features(ws: Workspace, items: list[records.Item], cfg: TrainConfig, module: torch.nn.Module,
                     mean: tuple[float, ...], std: tuple[float, ...], progress: Progress | None = None,
                     stage: str = "features") -> tuple[np.ndarray, dict[int, str]]:
    """(features (M, D) of the ``items`` whose image decodes, {position: reason} of those that no longer do).

    Plain ``embed`` features come from the cached ImageNet embeddings, others from the module over decoded images."""
    kind, backbone = split_name(cfg.features)
    if kind == "embed" and cfg.pretrained and not cfg.weights:
        from pixclass.data.embeddings import embed_decodable

        return embed_decodable(ws, items, model=backbone, img_size=cfg.img_size, workers=cfg.workers,
                               progress=(lambda st, d, t: progress(f"{stage} {st}", d, t)) if progress else None)
    images, broken = ImageCache(ws.cache_dir, cfg.img_size).get_decodable(
        [it.path for it in items], [it.sha256 for it in items], workers=cfg.workers,
        progress=(lambda d, t: progress(f"{stage} decode", d, t)) if progress else None)
    if kind == "embed":  # a backbone file or random weights: onnxruntime is the fast path
        from pixclass.models.embed import run_batches

        return run_batches(module, images, mean, std,
                           progress=(lambda d, t: progress(stage, d, t)) if progress else None), broken
    return compute_features(module, images, mean, std,
                            progress=(lambda d, t: progress(stage, d, t)) if progress else None), broken


def _splits(ws: Workspace, dataset: str, seed: int):
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        schema = records.load_schema(s, ds)
        parts = {sp: records.items(s, ds, split=sp, labeled=True) for sp in ("train", "val")}
    if schema.task not in ("binary", "multiclass"):
        raise ConfigError(f"Dataset {dataset!r} is {schema.task}; classical models handle binary and multiclass "
                          "tasks. Use --mode linear or finetune for it.")
    if not parts["train"]:
        raise DataError(f"Dataset {dataset!r} has no labeled training images.")
    if not parts["val"] and len(parts["train"]) >= 10:  # hold out 10% of train, stratified, for validation
        from pixclass.io.importer import stratified_split

        tags = stratified_split([it.labels[0] if it.labels else "" for it in parts["train"]], (0.9, 0.1, 0.0),
                                seed=seed)
        parts = {"train": [it for it, t in zip(parts["train"], tags) if t == "train"],
                 "val": [it for it, t in zip(parts["train"], tags) if t != "train"]}
    return schema, parts


def train_classical(ws: Workspace, dataset: str, cfg: TrainConfig, *, out: str | Path | None = None,
                    progress: Progress | None = None):
    """Fit ``cfg.model`` (logreg|svm|knn|tree|forest) on ``cfg.features`` of the train split. Returns a RunResult."""
    if cfg.model not in CLASSICAL:
        create_estimator(cfg.model)  # raises the ConfigError with close matches
    split_name(cfg.features)
    t0 = time.time()
    run_dir = Path(out) if out else ws.new_run_dir(f"{dataset}-{cfg.model}")
    if (run_dir / "model.pt").exists():
        raise ConfigError(f"{run_dir} already holds a trained run. Choose another --out.")
    run_dir.mkdir(parents=True, exist_ok=True)
    schema, parts = _splits(ws, dataset, cfg.seed)
    module, mean, std = create_features(cfg.features, weights=cfg.weights, pretrained=cfg.pretrained)
    with ws.session() as s:
        run_id = records.add_run(s, records.get_dataset(s, dataset), path=str(run_dir.resolve()), model=cfg.model,
                                 mode="classical").id

    x_tr, broken = dataset_features(ws, parts["train"], cfg, module, mean, std, progress, "features train")
    train_items, skipped = keep_decodable(parts["train"], broken, "train")
    if not train_items:
        raise DataError(f"Dataset {dataset!r}: every labeled training image no longer decodes. "
                        + broken_message(skipped))
    y_tr = single_label_indices(train_items, schema)
    t_fit = time.time()
    estimator = create_estimator(cfg.model, seed=cfg.seed, data_shape=x_tr.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings at the fast defaults; val metrics say how it did
        estimator.fit(x_tr, y_tr)
    metrics: dict = {"fit_seconds": round(time.time() - t_fit, 2), "features": cfg.features,
                     "feature_dim": int(x_tr.shape[1])}
    x_va, broken = (dataset_features(ws, parts["val"], cfg, module, mean, std, progress, "features val")
                    if parts["val"] else (None, {}))
    val_items, val_skipped = keep_decodable(parts["val"], broken, "val")
    skipped += val_skipped
    if val_items:
        probs = expand_probs(estimator.predict_proba(x_va), estimator.classes_, schema.num_classes)
        val = classification_metrics(single_label_indices(val_items, schema), probs, schema.classes)
        metrics.update(val_accuracy=val["accuracy"], val_macro_f1=val["macro_f1"])
    metrics["train_seconds"] = round(time.time() - t0, 2)
    if skipped:  # files that broke after import: named in metrics.json, the CLI output and server job results
        metrics["skipped"] = skipped

    import joblib

    joblib.dump(estimator, run_dir / ESTIMATOR_FILE)
    kind, _ = split_name(cfg.features)
    torch.save({"kind": "classical", "model_name": cfg.model, "features": cfg.features,
                "num_classes": schema.num_classes, "img_size": cfg.img_size, "estimator_file": ESTIMATOR_FILE,
                "features_state": module.state_dict() if kind == "embed" else {}}, run_dir / "model.pt")
    manifest = Manifest(
        schema=schema, preprocess=Preprocess(cfg.img_size, tuple(mean), tuple(std)), model=cfg.model,
        mode="classical", dataset=dataset, metrics=metrics, config=cfg.to_dict(),
        files={"torch": "model.pt", "estimator": ESTIMATOR_FILE},
        versions=runtime_versions("torch", "timm", "numpy", "sklearn"),
    )
    log.info("classical %s on %s: %s", cfg.model, cfg.features, metrics)
    return finish_run(ws, run_id, run_dir, manifest, history=[], started=t0)
