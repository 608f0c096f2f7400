"""Embeddings of a dataset's images: files broken since import are skipped by position, or named in an error."""

import shutil

import numpy as np
import pytest

from pixclass.data.embeddings import EmbeddingCache, embed_decodable, embed_items
from pixclass.errors import DataError
from pixclass.io.importer import import_dataset
from pixclass.store import Workspace, records


def test_embed_skips_broken_files_by_position_and_embed_items_names_them(tmp_path, photos4):
    src = tmp_path / "src" / "hat"
    src.mkdir(parents=True)
    for f in sorted((photos4 / "hat").glob("*.jpg"))[:4]:
        shutil.copy(f, src / f.name)
    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, tmp_path / "src", "d")
    with ws.session() as s:
        items = records.items(s, records.get_dataset(s, "d"))
    first = embed_items(ws, items[:1], img_size=64)  # cached before the file breaks: still served
    for it in (items[0], items[2]):
        with open(it.path, "r+b") as f:
            f.truncate(200)
    emb, broken = embed_decodable(ws, items, img_size=64)
    assert sorted(broken) == [2] and emb.shape == (3, first.shape[1])
    np.testing.assert_array_equal(emb[0], first[0])
    again, _ = embed_decodable(ws, [items[3], items[1]], img_size=64)  # cached now, in the order asked
    np.testing.assert_array_equal(again, emb[[2, 1]])
    with pytest.raises(DataError, match="1 image file") as e:
        embed_items(ws, items, img_size=64)
    assert items[2].path in str(e.value) and items[0].path not in str(e.value)


def test_embedding_cache_keeps_one_row_per_hash(tmp_path):
    cache = EmbeddingCache(tmp_path, "m", 8)
    cache.add(["a", "b", "a"], np.arange(6, dtype=np.float32).reshape(3, 2))
    out, missing = cache.lookup(["b", "a"])
    assert missing == [] and out.tolist() == [[2.0, 3.0], [0.0, 1.0]]
    assert cache.data_path.stat().st_size == 2 * 2 * 4
