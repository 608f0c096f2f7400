"""The decoded-image cache: each image decoded once per resolution into uint8 rows, reused across epochs and runs.

Layout: ``<workspace>/cache/s<size>.u8`` holds rows of ``size x size x 3`` bytes, appended as new images arrive;
``s<size>.json`` maps sha256 -> row. Rows are keyed by content, so datasets that share images share rows.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pixclass.errors import DataError
from pixclass.io.images import load_rgb

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


class ImageCache:
    """Decoded square images at one resolution, memory-mapped from the workspace cache directory."""

    def __init__(self, directory: str | Path, size: int) -> None:
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
        if self._data_path.exists() and self._data_path.stat().st_size != len(index) * row_bytes:
            log.warning("image cache %s does not match its index; rebuilding it", self._data_path)
            index = {}
            self._data_path.unlink()
        missing = list(dict.fromkeys(h for h in hashes if h not in index))
        failed: dict[str, str] = {}
        if missing:
            paths_of: dict[str, list[str]] = {}
            for h, p in zip(hashes, paths):
                if p not in paths_of.setdefault(h, []):
                    paths_of[h].append(p)
            failed = self._append(missing, [paths_of[h] for h in missing], index, workers, progress)
        elif progress:
            progress(len(hashes), len(hashes))
        broken = {i: failed[h] for i, h in enumerate(hashes) if h in failed}
        rows = [index[h] for h in hashes if h not in failed]
        if not rows:
            return np.zeros((0, self.size, self.size, 3), np.uint8), broken
        data = np.memmap(self._data_path, dtype=np.uint8, mode="r").reshape(-1, self.size, self.size, 3)
        return np.ascontiguousarray(data[rows]), broken

    def _append(self, hashes: list[str], paths: list[list[str]], index: dict[str, int], workers: int,
                progress: Progress | None) -> dict[str, str]:
        """Decode and append one row per hash (trying each of its paths); returns {hash: reason} of the failures."""
        def decode(candidates: list[str]) -> np.ndarray | str:
            reason = ""
            for path in candidates:
                try:
                    return load_rgb(path, self.size)
                except DataError as e:
                    reason = reason or _reason(path, e)
            return reason

        failed: dict[str, str] = {}
        with open(self._data_path, "ab") as f, ThreadPoolExecutor(max_workers=workers) as pool:
            for n, (h, arr) in enumerate(zip(hashes, pool.map(decode, paths)), start=1):
                if isinstance(arr, str):
                    failed[h] = arr
                else:
                    f.write(arr.tobytes())
                    index[h] = len(index)
                if progress:
                    progress(n, len(hashes))
                if n % 2000 == 0:
                    f.flush()
                    self._save_index(index)
        self._save_index(index)
        return failed

    def _save_index(self, index: dict[str, int]) -> None:
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, self._index_path)


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
