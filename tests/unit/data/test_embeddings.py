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


def test_embedding_cache_reads_through_an_append_under_way_and_writes_past_an_interrupted_one(tmp_path):
    cache = EmbeddingCache(tmp_path, "m", 8)
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    cache.add(["a", "b"], rows[:2])
    with cache.data_path.open("ab") as f:  # another writer has appended part of a row and not yet its index
        f.write(b"\x01" * 5)
    out, missing = cache.lookup(["b", "a"])  # a reader meanwhile: the indexed rows, and the cache is kept
    assert missing == [] and np.array_equal(out, rows[[1, 0]])
    cache.add(["c", "d"], rows[2:])  # that writer died: the next one writes where the index ends
    out, missing = cache.lookup(["d", "a", "c"])
    assert missing == [] and np.array_equal(out, rows[[3, 0, 2]])
    assert cache.data_path.stat().st_size == 4 * 3 * 4


def test_threads_adding_to_one_embedding_cache_lose_no_row(tmp_path):
    import threading

    start = threading.Barrier(6)

    def add(t: int) -> None:
        start.wait()
        for i in range(20):  # each add reads the index, appends, writes the index: interleaved without a lock
            EmbeddingCache(tmp_path, "m", 8).add([f"{t}-{i}"], np.full((1, 4), t * 100 + i, np.float32))

    threads = [threading.Thread(target=add, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    hashes = [f"{t}-{i}" for t in range(6) for i in range(20)]
    out, missing = EmbeddingCache(tmp_path, "m", 8).lookup(hashes)
    assert missing == []
    assert np.array_equal(out[:, 0], [t * 100 + i for t in range(6) for i in range(20)])
