"""The server's label queue keeps a run's class probabilities: asked again, it scores only images it has not seen."""

import shutil

from pixclass.config import TrainConfig
from pixclass.io.importer import import_dataset
from pixclass.store.tables import Annotation
from pixclass.train import active
from pixclass.train.run import train
from tests.unit.train.test_broken_files import _dataset


def test_queue_scores_each_image_once_per_run(tmp_path, photos4, monkeypatch):
    ws, _ = _dataset(tmp_path, photos4, per_class=6, val=2, unlabeled=3)
    cfg = TrainConfig(mode="linear", img_size=128)
    train(ws, "d", cfg, out=tmp_path / "run")
    scored: list[int] = []
    real = active.decodable_probs
    monkeypatch.setattr(active, "decodable_probs",
                        lambda w, run_dir, items, **kw: scored.append(len(items)) or real(w, run_dir, items, **kw))
    uncached = active.label_queue(ws, "d", "margin", n=10)
    cache = active.ProbCache()
    first = active.label_queue(ws, "d", "margin", n=10, cache=cache)
    assert first.image_ids == uncached.image_ids and first.scores == uncached.scores and len(first.image_ids) == 6
    assert active.label_queue(ws, "d", "balanced_margin", n=10, cache=cache).image_ids  # same run: no scoring
    assert scored == [6, 6]

    with ws.session() as s:  # labeled: it leaves the queue, nothing is scored again
        s.add(Annotation(image_id=first.image_ids[0], labels=["hat"], source="human", author="a"))
    assert active.label_queue(ws, "d", "margin", n=10, cache=cache).image_ids == first.image_ids[1:]
    assert scored == [6, 6]

    new = tmp_path / "img" / "u-new.jpg"  # a new image: only it is scored
    shutil.copy(sorted((photos4 / "pants").glob("*.jpg"))[5], new)
    (tmp_path / "more.csv").write_text("path,label,split\nimg/u-new.jpg,,train\n")
    import_dataset(ws, tmp_path / "more.csv", "d")
    q = active.label_queue(ws, "d", "margin", n=10, cache=cache)
    assert len(q.image_ids) == 6 and scored == [6, 6, 1]
    assert q.image_ids == active.label_queue(ws, "d", "margin", n=10).image_ids

    train(ws, "d", cfg, out=tmp_path / "run2")  # a new serving run scores everything again
    scored.clear()
    active.label_queue(ws, "d", "margin", n=10, cache=cache)
    assert scored == [6]


def test_diversity_order_treats_images_waiting_for_another_vote_as_candidates(tmp_path, photos4):
    """With several votes per image, the server's pool holds labeled images too. k-center must measure them against
    the other labeled images, not count them as centres (all at distance 0, so in no useful order)."""
    import numpy as np

    from pixclass.data.embeddings import embed_decodable
    from pixclass.store import Workspace, records

    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, photos4, "d")
    with ws.session() as s:
        items = records.items(s, records.get_dataset(s, "d"))
    pool, rest = items[::4], [it for i, it in enumerate(items) if i % 4]  # a quarter waits for another vote
    q = active.label_queue(ws, "d", "kcenter", n=5, pool=lambda s, ds: pool, img_size=96)
    emb = embed_decodable(ws, pool + rest, model=active.DEFAULT_MODEL, img_size=96)[0]
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    far = 1 - (emb[: len(pool)] @ emb[len(pool):].T).max(axis=1)  # from the nearest labeled image outside the pool
    assert q.strategy == "kcenter" and q.image_ids[0] == pool[int(far.argmax())].image_id
