"""Classical models on clothing-small: every model must train on the embeddings in under 30 s on 2 cores.

Each model goes through `train_classical` (the same path as `pixclass train --model NAME`) on MobileNetV2 ImageNet
embeddings at 224 px (computed once, then cached in the workspace); prints fit seconds (the estimator's fit alone),
the whole train call's seconds (cached embeddings looked up, validation scored, run directory written), validation
and test accuracy. Test accuracy is scored on the cached test embeddings with the saved estimator.
--features hog,colorhist,pixels adds the hand-made features (logreg and forest on each).

    python bench/classical.py [--workspace DIR] [--features hog,colorhist,pixels]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import joblib
import numpy as np

from _common import clothing_workspace
from pixclass.config import TrainConfig
from pixclass.data.embeddings import embed_items
from pixclass.data.splits import single_label_indices
from pixclass.models.classical import CLASSICAL, expand_probs
from pixclass.store import records
from pixclass.train.classical import dataset_features, train_classical


def test_accuracy(ws, run: Path, cfg: TrainConfig, items, labels, num_classes: int) -> float:
    est = joblib.load(run / "estimator.joblib")
    if cfg.features == "embed":
        x = embed_items(ws, items, img_size=cfg.img_size)
    else:
        from pixclass.models.features import create_features

        module, mean, std = create_features(cfg.features)
        x = dataset_features(ws, items, cfg, module, mean, std)
    probs = expand_probs(est.predict_proba(x), est.classes_, num_classes)
    return float(np.mean(probs.argmax(1) == labels))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", default=None, help="Reuse a workspace (its embedding cache) between runs.")
    ap.add_argument("--features", default="", help="Also run hand-made features, e.g. hog,colorhist,pixels.")
    a = ap.parse_args()
    ws = clothing_workspace(a.workspace)
    with ws.session() as s:
        ds = records.get_dataset(s, "clothing")
        schema = records.load_schema(s, ds)
        test_items = records.items(s, ds, split="test", labeled=True)
        all_items = records.items(s, ds, labeled=True)
    y_test = single_label_indices(test_items, schema)
    t0 = time.time()
    embed_items(ws, all_items)  # warm the embedding cache once, so that each model's time is its own
    print(f"embeddings of {len(all_items)} images (MobileNetV2, 224 px): {time.time() - t0:.1f}s (cached after)")

    jobs = [(m, "embed") for m in CLASSICAL]
    jobs += [(m, f) for f in filter(None, a.features.split(",")) for m in ("logreg", "forest")]
    rows = []
    stamp = time.strftime("%H%M%S")
    for model, feats in jobs:
        cfg = TrainConfig(model=model, features=feats)
        res = train_classical(ws, "clothing", cfg, out=ws.runs_dir / f"bench-{stamp}-{model}-{feats}")
        acc = test_accuracy(ws, res.run, cfg, test_items, y_test, schema.num_classes)
        row = {"model": model, "features": feats, "fit_s": res.metrics["fit_seconds"], "train_s": res.seconds,
               "val_acc": round(res.metrics["val_accuracy"], 4), "test_acc": round(acc, 4)}
        rows.append(row)
        print(f"{model:7s} {feats:10s} fit {row['fit_s']:6.2f}s  train call {row['train_s']:6.2f}s  "
              f"val {row['val_acc']:.4f}  test {row['test_acc']:.4f}", flush=True)
    worst = max(r["train_s"] for r in rows if r["features"] == "embed")
    print(f"slowest embed model, whole train call: {worst:.1f}s (target < 30 s)")
    print(json.dumps(rows))
