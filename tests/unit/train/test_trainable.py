"""Training refuses, in words, data it cannot learn from (before any library error)."""

import pytest
from PIL import Image

from pixclass.config import TrainConfig
from pixclass.errors import DataError
from pixclass.io.importer import import_dataset
from pixclass.store import Workspace
from pixclass.train.run import train


def _dataset(tmp_path, rows):
    lines = ["path,label,split"]
    for i, (label, split) in enumerate(rows):
        Image.new("RGB", (20, 20), (40 * i % 255, 90, 160)).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png,{label},{split}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, tmp_path / "labels.csv", "d")
    return ws


def test_one_training_class_or_none_is_a_clear_error(tmp_path):
    ws = _dataset(tmp_path, [("hat", "train"), ("hat", "train"), ("hat", "train"), ("pants", "val")])
    held = r"one class only \(.hat., 3 images in the train split; held out for evaluation: 1 in val\)"
    with pytest.raises(DataError, match=held):
        train(ws, "d", TrainConfig(mode="linear", img_size=32))


def test_labels_only_in_val_and_test_are_named(tmp_path):
    ws = _dataset(tmp_path, [("hat", "val"), ("pants", "test"), ("hat", "test")])
    with pytest.raises(DataError, match=r"no labeled training images \(1 in val, 2 in test, held out"):
        train(ws, "d", TrainConfig(mode="linear", img_size=32))
