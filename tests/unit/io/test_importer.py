"""Importing into a dataset that already exists."""

from pathlib import Path

from PIL import Image as PILImage

from pixclass.io.importer import import_dataset
from pixclass.schema import LabelSchema
from pixclass.store import Workspace, records


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
