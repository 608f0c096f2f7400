import numpy as np
import pytest
import torch

from pixclass.data.augment import augment, train_batch
from pixclass.data.cache import ImageCache
from pixclass.errors import DataError
from pixclass.io.images import load_rgb


def test_cache_decodes_once_and_reuses(tmp_path, photos4):
    files = sorted((photos4 / "hat").glob("*.jpg"))[:5]
    copies = []
    for f in files:  # copies we can delete to prove the second read never touches the files
        c = tmp_path / f.name
        c.write_bytes(f.read_bytes())
        copies.append(str(c))
    cache = ImageCache(tmp_path / "cache", 48)
    hashes = [f"h{i}" for i in range(5)]
    first = cache.get(copies, hashes)
    assert first.shape == (5, 48, 48, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first[2], load_rgb(copies[2], 48))
    for c in copies:
        (tmp_path / c).unlink()
    again = ImageCache(tmp_path / "cache", 48).get(copies[::-1], hashes[::-1])
    np.testing.assert_array_equal(again, first[::-1])


def test_files_broken_after_import_are_skipped_with_reasons_and_get_no_row(tmp_path, photos4):
    files = sorted((photos4 / "shoes").glob("*.jpg"))[:4]
    copies = [tmp_path / f.name for f in files]
    for f, c in zip(files, copies):
        c.write_bytes(f.read_bytes())
    paths, hashes = [str(c) for c in copies], [f"h{i}" for i in range(4)]
    copies[1].write_bytes(files[1].read_bytes()[:300])  # truncated
    copies[2].unlink()  # deleted
    cache = ImageCache(tmp_path / "cache", 40)
    arrays, broken = cache.get_decodable(paths, hashes)
    assert sorted(broken) == [1, 2] and "file not found" in broken[2] and broken[1] and paths[1] not in broken[1]
    assert arrays.shape == (2, 40, 40, 3)
    np.testing.assert_array_equal(arrays[1], load_rgb(paths[3], 40))  # the good ones, in order
    assert (tmp_path / "cache" / "s40.u8").stat().st_size == 2 * 40 * 40 * 3  # no row for a broken file
    with pytest.raises(DataError, match="2 image file") as e:
        cache.get(paths, hashes)
    assert paths[1] in str(e.value) and paths[2] in str(e.value) and paths[0] not in str(e.value)

    for f, c in zip(files, copies):  # fixed later: decoded next time, the cache stays consistent
        c.write_bytes(f.read_bytes())
    again = ImageCache(tmp_path / "cache", 40).get(paths, hashes)
    assert again.shape == (4, 40, 40, 3)
    np.testing.assert_array_equal(again[2], load_rgb(paths[2], 40))
    assert (tmp_path / "cache" / "s40.u8").stat().st_size == 4 * 40 * 40 * 3


def test_augment_changes_images_but_keeps_shape_and_range(photos4):
    files = sorted((photos4 / "shoes").glob("*.jpg"))[:8]
    batch = torch.from_numpy(np.stack([load_rgb(f, 64) for f in files]))
    x = batch.permute(0, 3, 1, 2).float() / 255
    g = torch.Generator().manual_seed(0)
    y = augment(x.clone(), generator=g, grayscale_p=1.0)
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    assert torch.allclose(y[:, 0], y[:, 1])  # grayscale_p=1 makes every image grey
    assert float((y - x).abs().mean()) > 0.01
    z = train_batch(batch, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), generator=g)
    assert z.shape == (8, 3, 64, 64) and z.is_contiguous(memory_format=torch.channels_last)


def test_image_cache_reads_through_an_append_under_way_and_writes_past_an_interrupted_one(tmp_path, photos4):
    files = [str(f) for f in sorted((photos4 / "pants").glob("*.jpg"))[:4]]
    cache = ImageCache(tmp_path / "cache", 32)
    first = cache.get(files[:2], ["a", "b"])
    data = tmp_path / "cache" / "s32.u8"
    with data.open("ab") as f:  # another writer has appended part of a row and not yet its index
        f.write(b"\x07" * 100)
    np.testing.assert_array_equal(cache.get(files[:2], ["a", "b"]), first)  # read as indexed, nothing decoded again
    assert data.stat().st_size == 2 * 32 * 32 * 3 + 100
    both = cache.get(files, ["a", "b", "c", "d"])  # that writer died: new rows go where the index ends
    np.testing.assert_array_equal(both[:2], first)
    np.testing.assert_array_equal(both[3], load_rgb(files[3], 32))
    assert data.stat().st_size == 4 * 32 * 32 * 3
