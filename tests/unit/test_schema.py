import pytest

from pixclass.errors import DataError
from pixclass.schema import LabelSchema


def test_infer_task_kinds():
    assert LabelSchema.infer({"cat", "dog"}).task == "binary"
    assert LabelSchema.infer({"cat", "dog"}).positive == "dog"
    assert LabelSchema.infer({"a", "b", "c"}).task == "multiclass"
    assert LabelSchema.infer({"fruit/apple", "fruit/grape/red"}).task == "hierarchical"
    assert LabelSchema.infer({"a", "b", "c"}, "multilabel").task == "multilabel"


def test_unknown_class_suggests_close_names():
    s = LabelSchema.infer({"t-shirt", "shirt", "shoes"})
    assert s.index("shoes") == 1
    with pytest.raises(DataError, match="Did you mean 'shirt'"):
        s.index("shirtt")


def test_taxonomy_from_paths():
    s = LabelSchema.infer({"fruit/apple/honeycrisp", "fruit/apple/gala", "fruit/grape", "veg"})
    tree = s.taxonomy()
    assert tree[""] == ["fruit", "veg"]
    assert tree["fruit"] == ["fruit/apple", "fruit/grape"]
    assert sorted(tree["fruit/apple"]) == ["fruit/apple/gala", "fruit/apple/honeycrisp"]


def test_roundtrip_and_bad_task():
    s = LabelSchema.infer({"a", "b", "c"})
    assert LabelSchema.from_dict(s.to_dict()) == s
    with pytest.raises(DataError, match="Unknown task kind"):
        LabelSchema(task="regression", classes=("a",))  # type: ignore[arg-type]
