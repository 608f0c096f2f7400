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
        """Arrays (N, size, size, 3) uint8 for the given images, decoding only those not cached yet."""
        self.directory.mkdir(parents=True, exist_ok=True)
        index = self._index()
        row_bytes = self.size * self.size * 3
        if self._data_path.exists() and self._data_path.stat().st_size != len(index) * row_bytes:
            log.warning("image cache %s does not match its index; rebuilding it", self._data_path)
            index = {}
            self._data_path.unlink()
        missing = list(dict.fromkeys(h for h in hashes if h not in index))
        if missing:
            path_of = dict(zip(hashes, paths))
            self._append(missing, [path_of[h] for h in missing], index, workers, progress)
        elif progress:
            progress(len(hashes), len(hashes))
        if not hashes:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        data = np.memmap(self._data_path, dtype=np.uint8, mode="r").reshape(-1, self.size, self.size, 3)
        return np.ascontiguousarray(data[[index[h] for h in hashes]])

    def _append(self, hashes: list[str], paths: list[str], index: dict[str, int], workers: int,
                progress: Progress | None) -> None:
        def decode(path: str) -> np.ndarray | DataError:
            try:
                return load_rgb(path, self.size)
            except DataError as e:
                return e

        start = len(index)
        with open(self._data_path, "ab") as f, ThreadPoolExecutor(max_workers=workers) as pool:
            for n, (h, arr) in enumerate(zip(hashes, pool.map(decode, paths)), start=1):
                if isinstance(arr, DataError):
                    self._save_index(index)
                    raise DataError(f"{arr} (the file changed after import; run `pixclass import` again)")
                f.write(arr.tobytes())
                index[h] = start + n - 1
                if progress:
                    progress(n, len(hashes))
                if n % 2000 == 0:
                    f.flush()
                    self._save_index(index)
        self._save_index(index)

    def _save_index(self, index: dict[str, int]) -> None:
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, self._index_path)
