import pytest

from pixclass.errors import DataError
from pixclass.io.sources import read_source


def test_csv_with_relative_paths_and_splits(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("path,label,split\na.jpg,cat,train\nb.jpg,dog,validation\nc.jpg,,\n")
    entries = read_source(tmp_path / "labels.csv")
    assert [e.path for e in entries] == [tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"]
    assert [e.labels for e in entries] == [("cat",), ("dog",), ()]
    assert [e.split for e in entries] == ["train", "val", None]


def test_csv_multilabel_column(tmp_path):
    (tmp_path / "l.csv").write_text("path,labels\na.jpg,cat|dog\n")
    assert read_source(tmp_path / "l.csv")[0].labels == ("cat", "dog")


@pytest.mark.parametrize("text,match", [
    ("file,label\na.jpg,cat\n", "no 'path' column"),
    ("", "no rows"),
    ("path,label,split\na.jpg,cat,holdout\n", "unknown split 'holdout'"),
    ("path,label\n,cat\n", "line 2: empty 'path'"),
])
def test_malformed_csv_names_the_problem(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        read_source(tmp_path / "bad.csv")


def test_split_tree_and_nested_taxonomy(tmp_path):
    for rel in ["train/cat/1.jpg", "validation/cat/2.jpg", "test/dog/3.jpg"]:
        (tmp_path / "s" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "s" / rel).write_bytes(b"x")
    entries = read_source(tmp_path / "s")
    assert sorted((e.split, e.labels[0]) for e in entries) == [("test", "dog"), ("train", "cat"), ("val", "cat")]
    (tmp_path / "t" / "fruit" / "apple").mkdir(parents=True)
    (tmp_path / "t" / "fruit" / "apple" / "1.jpg").write_bytes(b"x")
    (tmp_path / "t" / "README.md").write_text("ignored")
    entries = read_source(tmp_path / "t")
    assert [e.labels for e in entries] == [("fruit/apple",)]


def test_missing_source():
    with pytest.raises(DataError, match="no such file or folder"):
        read_source("/nonexistent/photos")
