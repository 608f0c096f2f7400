"""Labeled images of a dataset as arrays per split, decoded through the image cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pixclass.data.cache import ImageCache, broken_entries, broken_message, keep_decodable
from pixclass.errors import ConfigError, DataError
from pixclass.schema import LabelSchema
from pixclass.store import Workspace, records

SPLITS = ("train", "val", "test")  # as the importer stores them ("validation" folders become "val")

Progress = Callable[[int, int], None]


@dataclass
class SplitData:
    items: list[records.Item]
    images: np.ndarray | None  # (N, S, S, 3) uint8; None when loaded with decode=False
    labels: np.ndarray  # (N,) int class indices; (N, K) float 0/1 for multi-label tasks
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason", "split"}: files that no longer decode
    features: np.ndarray | None = None  # (N, D) backbone embeddings, when the caller looked them up

    def __len__(self) -> int:
        return len(self.items)

    def take(self, rows: np.ndarray | list[int]) -> "SplitData":
        """The given rows (positions), with their images and features; nothing skipped."""
        rows = np.asarray(rows, dtype=np.int64)
        return SplitData([self.items[i] for i in rows], None if self.images is None else self.images[rows],
                         self.labels[rows], [], None if self.features is None else self.features[rows])


def encode_labels(items: list[records.Item], schema: LabelSchema) -> np.ndarray:
    """Class indices (N,), or a multi-hot (N, K) float32 matrix for multi-label schemas."""
    if schema.task == "multilabel":
        out = np.zeros((len(items), schema.num_classes), np.float32)
        for i, it in enumerate(items):
            for lab in it.labels:
                out[i, schema.index(lab)] = 1
        return out
    return single_label_indices(items, schema)


def single_label_indices(items: list[records.Item], schema: LabelSchema) -> np.ndarray:
    out = np.empty(len(items), dtype=np.int64)
    for i, it in enumerate(items):
        if len(it.labels) != 1:
            raise DataError(f"{it.path}: has {len(it.labels)} labels; a {schema.task} task needs exactly one.")
        out[i] = schema.index(it.labels[0])
    return out


def load_splits(ws: Workspace, dataset: str, size: int, *, splits: tuple[str, ...] = ("train", "val", "test"),
                workers: int = 2, progress: Progress | None = None, skip_broken: bool = False,
                decode: bool = True) -> tuple[LabelSchema, dict[str, SplitData]]:
    """Schema and {split: SplitData} of the labeled, non-excluded images. Decodes only what is not cached.

    A file that no longer decodes (deleted, truncated, overwritten since import) raises a DataError naming it; with
    ``skip_broken`` it is left out instead and listed in its split's ``skipped``. ``decode=False``: items and labels
    only (``images`` None), for a caller that reads cached embeddings instead and sorts out broken files itself."""
    unknown = [sp for sp in splits if sp not in SPLITS]
    if unknown:
        raise ConfigError(f"Unknown split {unknown[0]!r}. Use one of: {', '.join(SPLITS)}.")
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        schema = records.load_schema(s, ds)
        chosen = {sp: records.items(s, ds, split=sp, labeled=True) for sp in splits}
    if not schema.classes:
        raise DataError(f"Dataset {dataset!r} has no classes. Create them (the labeling UI's Classes tab, or "
                        f"POST /api/datasets/NAME/classes) and label some images, or import labeled images.")
    if not decode:
        return schema, {sp: SplitData(chosen[sp], None, encode_labels(chosen[sp], schema)) for sp in splits}
    everything = [it for sp in splits for it in chosen[sp]]
    cache = ImageCache(ws.cache_dir, size)
    arrays, broken = cache.get_decodable([it.path for it in everything], [it.sha256 for it in everything],
                                         workers=workers, progress=progress)
    if broken and not skip_broken:
        raise DataError(broken_message(broken_entries([it.path for it in everything], broken)))
    out, start, row = {}, 0, 0
    for sp in splits:
        its = chosen[sp]
        good, skipped = keep_decodable(its, {j: broken[start + j] for j in range(len(its)) if start + j in broken}, sp)
        out[sp] = SplitData(good, arrays[row : row + len(good)], encode_labels(good, schema), skipped)
        start += len(its)
        row += len(good)
    return schema, out
