"""Retraining while labeling: a linear run trained and its pre-labels stored for every image of clothing-small, as
the server's "train" button, automatic retraining and Label Studio's START_TRAINING do.

The reference runs the backbone over the decoded images for training and the whole network over every image for
pre-labels (what each retrain cost before). Ours reads the embedding cache for training and applies only the run's
head for pre-labels; it is timed cold (no embeddings cached: each image is embedded once, for both) and warm (the
images were embedded before, by the label queue's diversity order or an earlier run). The decoded-image cache is
warm for all three. Also prints the agreement of the suggestions stored by the reference and by ours.
"""

from __future__ import annotations

import argparse
import time

from _common import clothing_workspace


def loop(ws, models, reuse: bool) -> tuple[dict, int]:
    """({stage: seconds}, run id) of one linear training and the pre-labels of every image."""
    from pixclass.config import TrainConfig
    from pixclass.server.tasks import prelabel
    from pixclass.store import records
    from pixclass.train.run import train

    t0 = time.perf_counter()
    res = train(ws, "clothing", TrainConfig(mode="linear"), reuse_embeddings=reuse)
    t1 = time.perf_counter()
    with ws.session() as s:
        run_id = records.latest_run(s, records.get_dataset(s, "clothing")).id
    out = prelabel(ws, models, "clothing", run_id=run_id, reuse_scores=reuse)
    t2 = time.perf_counter()
    assert out["predicted"] > 3000, out
    return {"train": t1 - t0, "pre-label": t2 - t1, "total": t2 - t0, "val_acc": res.metrics["val_accuracy"]}, run_id


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", help="reuse this workspace (clothing-small is imported when missing)")
    a = ap.parse_args()
    from sqlalchemy import select

    from pixclass.data.cache import ImageCache
    from pixclass.data.embeddings import DEFAULT_MODEL, EmbeddingCache
    from pixclass.server.models import ModelCache
    from pixclass.store import records
    from pixclass.store.tables import Prediction

    ws = clothing_workspace(a.workspace)
    with ws.session() as s:
        items = records.items(s, records.get_dataset(s, "clothing"))
    t0 = time.perf_counter()
    ImageCache(ws.cache_dir, 224).get([it.path for it in items], [it.sha256 for it in items])
    print(f"{len(items)} images; decoded-image cache warmed in {time.perf_counter() - t0:.1f}s")
    models = ModelCache(ws)

    EmbeddingCache(ws.cache_dir, DEFAULT_MODEL, 224).clear()
    cold, _ = loop(ws, models, reuse=True)
    ref, ref_run = loop(ws, models, reuse=False)
    warm, run = loop(ws, models, reuse=True)
    print(f"{'':<12}{'reference':>12}{'ours cold':>12}{'ours warm':>12}{'ref/cold':>10}{'ref/warm':>10}")
    for k in ("train", "pre-label", "total"):
        print(f"{k:<12}{ref[k]:>11.1f}s{cold[k]:>11.1f}s{warm[k]:>11.1f}s{ref[k] / cold[k]:>9.1f}x"
              f"{ref[k] / warm[k]:>9.1f}x")
    print(f"{'val acc':<12}{ref['val_acc']:>12.4f}{cold['val_acc']:>12.4f}{warm['val_acc']:>12.4f}")
    with ws.session() as s:
        got = {rid: {p.image_id: (p.labels, p.probs) for p in s.scalars(select(Prediction).where(
            Prediction.run_id == rid))} for rid in (ref_run, run)}
    same = sum(got[ref_run][i][0] == got[run][i][0] for i in got[run])
    diff = max(max(abs(x - y) for x, y in zip(got[ref_run][i][1], got[run][i][1])) for i in got[run])
    print(f"suggestions: {same}/{len(got[run])} the same label; largest probability difference {diff:.4f} "
          f"(the reference pre-labels through torch in bf16)")
