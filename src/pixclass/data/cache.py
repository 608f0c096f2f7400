"""The decoded-image cache: each image decoded once per resolution into uint8 rows, reused across epochs and runs.

Layout: ``<workspace>/cache/s<size>.u8`` holds rows of ``size x size x 3`` bytes, appended as new images arrive;
``s<size>.json`` maps sha256 -> row. Rows are keyed by content, so datasets that share images share rows.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: threads of one process are still kept apart
    fcntl = None

import numpy as np

from pixclass.config import MAX_IMG_SIZE, MIN_IMG_SIZE
from pixclass.errors import ConfigError, DataError
from pixclass.io.images import load_rgb

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
WRITE_BLOCK = 1024  # decoded rows appended (and the index saved) per hold of the cache's lock


class ImageCache:
    """Decoded square images at one resolution, memory-mapped from the workspace cache directory."""

    def __init__(self, directory: str | Path, size: int) -> None:
        if not MIN_IMG_SIZE <= size <= MAX_IMG_SIZE:  # 100,000 px is 30 GB per image: refused, not out of memory
            raise ConfigError(f"The image size (--img-size) must be {MIN_IMG_SIZE} to {MAX_IMG_SIZE} pixels. "
                              f"Got {size!r}.")
        self.directory = Path(directory)
        self.size = size

    @property
    def _data_path(self) -> Path:
        return self.directory / f"s{self.size}.u8"

    @property
    def _index_path(self) -> Path:
        return self.directory / f"s{self.size}.json"

    def _index(self) -> dict[str, int]:
        try:
            return json.loads(self._index_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def get(self, paths: Sequence[str], hashes: Sequence[str], *, workers: int = 2,
            progress: Progress | None = None) -> np.ndarray:
        """Arrays (N, size, size, 3) uint8 for the given images, decoding only those not cached yet.

        A file that no longer decodes raises a DataError naming every such file; use ``get_decodable`` to skip them.
        """
        arrays, broken = self.get_decodable(paths, hashes, workers=workers, progress=progress)
        if broken:
            raise DataError(broken_message(broken_entries(paths, broken)))
        return arrays

    def get_decodable(self, paths: Sequence[str], hashes: Sequence[str], *, workers: int = 2,
                      progress: Progress | None = None) -> tuple[np.ndarray, dict[int, str]]:
        """(arrays (M, size, size, 3) uint8 of the images that decode, in the given order; {position: reason} of
        those that do not, e.g. files deleted, truncated or overwritten since import).

        A file that fails gets no cache row, so it is decoded again next time (a file fixed later is picked up).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        index = self._index()
        row_bytes = self.size * self.size * 3
        if file_size(self._data_path) < len(index) * row_bytes:  # bytes past the index (an append under way) are fine
            with cache_writer(self._data_path):
                index = self._index()
                if file_size(self._data_path) < len(index) * row_bytes:
                    log.warning("image cache %s is shorter than its index; rebuilding it", self._data_path)
                    index = {}
                    self._data_path.unlink(missing_ok=True)
                    self._save_index(index)
        missing = list(dict.fromkeys(h for h in hashes if h not in index))
        failed: dict[str, str] = {}
        if missing:
            paths_of: dict[str, list[str]] = {}
            for h, p in zip(hashes, paths):
                if p not in paths_of.setdefault(h, []):
                    paths_of[h].append(p)
            failed, index = self._append(missing, [paths_of[h] for h in missing], workers, progress)
        elif progress:
            progress(len(hashes), len(hashes))
        broken = {i: failed[h] for i, h in enumerate(hashes) if h in failed}
        rows = [index[h] for h in hashes if h not in failed]
        if not rows:
            return np.zeros((0, self.size, self.size, 3), np.uint8), broken
        data = np.memmap(self._data_path, dtype=np.uint8, mode="r", shape=(len(index), self.size, self.size, 3))
        return np.ascontiguousarray(data[rows]), broken

    def _append(self, hashes: list[str], paths: list[list[str]], workers: int,
                progress: Progress | None) -> tuple[dict[str, str], dict[str, int]]:
        """Decode and append one row per hash (trying each of its paths), WRITE_BLOCK rows at a time; only the writes
        hold the cache's lock, so other threads and processes add their rows in between. Returns ({hash: reason} of
        the failures, the index after the last write)."""
        def decode(candidates: list[str]) -> np.ndarray | str:
            reason = ""
            for path in candidates:
                try:
                    return load_rgb(path, self.size)
                except DataError as e:
                    reason = reason or _reason(path, e)
            return reason

        failed: dict[str, str] = {}
        index, row_bytes, done = self._index(), self.size * self.size * 3, 0
        with ThreadPoolExecutor(max_workers=workers) as pool:
            decoded = zip(hashes, pool.map(decode, paths))
            while block := list(itertools.islice(decoded, WRITE_BLOCK)):
                with cache_writer(self._data_path):
                    index = self._index()  # with the rows others wrote meanwhile
                    trim(self._data_path, len(index) * row_bytes)
                    with open(self._data_path, "ab") as f:
                        for h, arr in block:
                            if isinstance(arr, str):
                                failed[h] = arr
                            elif h not in index:
                                f.write(arr.tobytes())
                                index[h] = len(index)
                    self._save_index(index)
                for _ in block:
                    done += 1
                    if progress:
                        progress(done, len(hashes))
        return failed, index

    def _save_index(self, index: dict[str, int]) -> None:
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, self._index_path)


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def cache_writer(data_path: Path) -> Iterator[None]:
    """The right to append to a cache file: one thread of this process at a time, and one process at a time where
    the system has flock (a server's jobs and requests, a CLI command beside it). Readers take no lock: they read
    the index first and only the rows it names, so bytes a writer has appended past it are never read."""
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(str(data_path.resolve()), threading.Lock())
    with lock, open(data_path.with_name(data_path.name + ".lock"), "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        yield


def trim(data_path: Path, size: int) -> None:
    """Cut bytes past ``size``: rows a writer appended before it stopped without recording them in the index."""
    if file_size(data_path) > size:
        log.warning("%s: dropping %d bytes past its index (an interrupted write)", data_path,
                    file_size(data_path) - size)
        os.truncate(data_path, size)


def file_size(path: Path) -> int:
    """Bytes in the file; 0 when there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _reason(path: str, error: DataError) -> str:
    """The message of a decode error without its leading path (the path is reported beside it)."""
    text = str(error)
    return text[len(str(path)) + 2 :] if text.startswith(f"{path}: ") else text


def broken_entries(paths: Sequence[str], broken: dict[int, str], split: str | None = None) -> list[dict]:
    """{"path", "reason"} (and "split" when given) of each position in ``broken`` (from ``get_decodable``)."""
    return [{"path": paths[i], "reason": why, **({"split": split} if split else {})} for i, why in broken.items()]


def keep_decodable(items: Sequence, broken: dict[int, str], split: str | None = None) -> tuple[list, list[dict]]:
    """(the items (with a ``path``) whose file decodes, ``broken_entries`` of the others, each logged as skipped)."""
    entries = broken_entries([it.path for it in items], broken, split)
    for b in entries:
        log.warning("skipped %s: %s", b["path"], b["reason"])
    return [it for i, it in enumerate(items) if i not in broken], entries


def broken_message(entries: Sequence[dict], *, limit: int = 10) -> str:
    """A DataError message naming the files that no longer decode and why (the first ``limit`` of them)."""
    named = "; ".join(f"{b['path']}: {b['reason']}" for b in entries[:limit])
    more = f"; and {len(entries) - limit} more" if len(entries) > limit else ""
    return (f"{len(entries)} image file(s) changed after import and no longer decode: {named}{more}. Restore them, "
            "or leave them out of training with `pixclass curate` and `pixclass curate-fix --kind broken "
            "--action exclude`.")
