"""Importing into a dataset that already exists."""

from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from pixclass.errors import DataError
from pixclass.io.importer import import_dataset
from pixclass.schema import LabelSchema
from pixclass.store import Workspace, records
from pixclass.store.tables import Dataset


def _img(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (16, 16), (shade, 40, 200 - shade)).save(path)


def test_import_keeps_the_class_order_and_positive_class_of_an_existing_dataset(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    with ws.session() as s:  # an admin created the classes in this order: digit keys 1, 2, 3
        ds = records.get_or_create_dataset(s, "ord", task="multiclass")
        records.save_schema(s, ds, LabelSchema("multiclass", ("zeta", "alpha", "mid")))
    _img(tmp_path / "src" / "mid" / "a.png", 10)
    _img(tmp_path / "src" / "beta" / "b.png", 90)
    _img(tmp_path / "src" / "c.png", 170)  # unlabeled
    import_dataset(ws, tmp_path / "src", "ord")
    with ws.session() as s:
        assert records.load_schema(s, records.get_dataset(s, "ord")).classes == ("zeta", "alpha", "mid", "beta")

    with ws.session() as s:
        ds = records.get_or_create_dataset(s, "yesno", task="binary")
        records.save_schema(s, ds, LabelSchema("binary", ("yes", "no"), "yes"))
    _img(tmp_path / "bin" / "no" / "d.png", 30)
    import_dataset(ws, tmp_path / "bin", "yesno")
    with ws.session() as s:
        schema = records.load_schema(s, records.get_dataset(s, "yesno"))
    assert schema.classes == ("yes", "no") and schema.positive == "yes"


def test_an_existing_dataset_keeps_its_task_kind_and_a_binary_one_its_two_classes(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    for cls, shade in (("hat", 10), ("pants", 90), ("shoes", 170)):
        _img(tmp_path / "src" / cls / f"{cls}.png", shade)
    import_dataset(ws, tmp_path / "src", "d")
    _img(tmp_path / "more" / "hat" / "x.png", 50)
    _img(tmp_path / "more" / "hat" / "y.png", 60)
    for both in ("pants", "shoes"):  # x and y under two classes each: a new dataset would become multi-label
        _img(tmp_path / "more" / both / "x.png", 50)
        _img(tmp_path / "more" / both / "y.png", 60)
    for task, why in (("multilabel", "'d' is a multiclass dataset; it cannot become multilabel"),
                      ("hierarchical", "'d' is a multiclass dataset; it cannot become hierarchical"),
                      ("binary", "A binary dataset has two classes; 'd' would have 3: hat, pants, shoes")):
        with pytest.raises(DataError, match=why):
            import_dataset(ws, tmp_path / "more", "d", task=task)
    with ws.session() as s:
        ds = records.get_dataset(s, "d")
        assert records.load_schema(s, ds).task == "multiclass" and len(records.items(s, ds)) == 3  # nothing stored
    res = import_dataset(ws, tmp_path / "more", "d")  # no task given: the dataset's own, conflicts listed
    assert res.task == "multiclass" and res.imported == 2 and len(res.conflicts) == 2

    with pytest.raises(DataError, match="A binary dataset has two classes; 'yn' would have 3: hat, pants, shoes"):
        import_dataset(ws, tmp_path / "src", "yn", task="binary")
    with ws.session() as s:
        assert [ds.name for ds in s.scalars(select(Dataset))] == ["d"]  # no empty dataset left behind
