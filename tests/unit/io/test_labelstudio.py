"""Label Studio JSON exports: Choices single/multiple, Taxonomy, path resolution, broken references, bad JSON."""

import json
from pathlib import Path

import pytest
from PIL import Image

from pixclass.errors import DataError
from pixclass.io.labelstudio import image_url, label_config, read_labelstudio, resolve_image


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return path


def _choices(labels, from_name="choice", kind="choices"):
    return {"from_name": from_name, "to_name": "image", "type": kind, "value": {kind: labels}}


def test_choices_taxonomy_and_broken_references(tmp_path):
    root = tmp_path / "root"
    _img(root / "a" / "one.jpg")
    _img(root / "two words.jpg")
    _img(root / "media" / "upload" / "3" / "abc-up.jpg")
    tasks = [
        {"id": 1, "data": {"image": "/data/local-files/?d=a/one.jpg"},
         "annotations": [{"result": [_choices(["hat"])], "created_at": "2024-01-01T00:00:00Z"},
                         {"result": [_choices(["cap"])], "created_at": "2024-02-01T00:00:00Z"},
                         {"result": [_choices(["nope"])], "created_at": "2024-03-01T00:00:00Z",
                          "was_cancelled": True}]},
        {"id": 2, "data": {"image": "http://localhost:8080/data/local-files/?d=two%20words.jpg"},
         "annotations": [{"result": [_choices(["hat", "shoes"])]}]},
        {"id": 3, "data": {"image": "/data/upload/3/abc-up.jpg"}, "annotations": []},
        {"id": 4, "data": {"image": "https://example.com/x.jpg"}, "annotations": [{"result": [_choices(["hat"])]}]},
        {"id": 5, "data": {"image": "/data/local-files/?d=missing.jpg"}},
    ]
    f = tmp_path / "export.json"
    f.write_text(json.dumps(tasks))
    entries = read_labelstudio(f, document_root=root)
    assert [e.labels for e in entries] == [("cap",), ("hat", "shoes"), (), ("hat",), ()]
    assert entries[0].path == root / "a" / "one.jpg" and entries[1].path == root / "two words.jpg"
    assert entries[2].path == root / "media" / "upload" / "3" / "abc-up.jpg"
    assert [bool(e.reason) for e in entries] == [False, False, False, True, True]
    assert "remote URL" in entries[3].reason and "missing.jpg" in entries[4].reason

    tax = [{"data": {"img": "/data/local-files/?d=a/one.jpg"},
            "annotations": [{"result": [_choices([["clothes", "head", "hat"]], "tax", "taxonomy")]}]}]
    f.write_text(json.dumps(tax))
    [e] = read_labelstudio(f, document_root=root)
    assert e.labels == ("clothes/head/hat",) and not e.reason


def test_relative_paths_resolve_against_the_json_folder(tmp_path, monkeypatch):
    _img(tmp_path / "imgs" / "x.jpg")
    monkeypatch.delenv("LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    assert resolve_image("/data/local-files/?d=imgs/x.jpg", base=tmp_path) == (tmp_path / "imgs" / "x.jpg", "")
    assert resolve_image("imgs/x.jpg", base=tmp_path)[0] == tmp_path / "imgs" / "x.jpg"
    # Without a root, the default export writes paths relative to '/', which resolve too.
    url = image_url(tmp_path / "imgs" / "x.jpg")
    assert url.startswith("/data/local-files/?d=") and resolve_image(url, base=Path("/nonexistent"))[1] == ""
    with pytest.raises(DataError, match="not under the document root"):
        image_url(tmp_path / "imgs" / "x.jpg", tmp_path / "elsewhere")


@pytest.mark.parametrize("content, match", [
    ("{not json", r"bad\.json: not valid JSON \(line 1"),
    ('{"a": 1}', r"bad\.json: expected a list of Label Studio tasks"),
    ('[{"annotations": []}]', r"bad\.json, task 0: field 'data' is missing"),
    ('[{"id": 7, "data": {"image": "x.jpg"}, "annotations": [{"result": [{"from_name": "c", "type": "choices", '
     '"value": {"choices": "hat"}}]}]}]', r"bad\.json, task 0 \(id 7\), annotation 0, result 0: field "
                                          r"'value.choices' must be a list"),
    ('[{"data": {"image": "x.jpg"}, "annotations": [{"result": [{"from_name": "t", "type": "taxonomy", '
     '"value": {"taxonomy": ["hat"]}}]}]}]', r"field 'value.taxonomy' must be a list of paths"),
])
def test_malformed_exports_name_the_file_and_field(tmp_path, content, match):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(DataError, match=match):
        read_labelstudio(f)


def test_several_controls_need_a_choice(tmp_path):
    f = tmp_path / "two.json"
    _img(tmp_path / "x.jpg")
    f.write_text(json.dumps([{"data": {"image": "x.jpg"}, "annotations": [
        {"result": [_choices(["hat"], "kind"), _choices(["blurry"], "quality")]}]}]))
    with pytest.raises(DataError, match="several classification controls.*kind, quality"):
        read_labelstudio(f)
    assert read_labelstudio(f, from_name="quality")[0].labels == ("blurry",)


def test_label_config_matches_the_task_kind():
    single = label_config(["hat", "shoes"], "multiclass")
    assert '<Choices name="choice" toName="image" choice="single-radio"' in single and 'value="$image"' in single
    assert 'choice="multiple"' in label_config(["a", "b", "c"], "multilabel")
    tax = label_config(["clothes/hat", "clothes/shoes", "other"], "hierarchical")
    assert '<Taxonomy name="taxonomy"' in tax and '<Choice value="clothes">' in tax and '<Choice value="hat"/>' in tax


def test_json_min_export_single_multiple_taxonomy_and_several_annotators(tmp_path):
    """Label Studio's JSON-MIN export: one flat record per annotation; the newest annotation of an image wins."""
    root = tmp_path / "root"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _img(root / name)
    meta = {"annotator": 1, "annotation_id": 9, "lead_time": 2.5}
    single = [
        {"image": "/data/local-files/?d=a.jpg", "id": 1, "choice": "hat", "created_at": "2024-01-01T00:00:00Z", **meta},
        {"image": "/data/local-files/?d=a.jpg", "id": 1, "choice": "cap", "created_at": "2024-02-01T00:00:00Z", **meta},
        {"image": "/data/local-files/?d=b.jpg", "id": 2, "choice": "shoes", "created_at": "2024-01-01T00:00:00Z",
         **meta},
    ]
    f = tmp_path / "min.json"
    f.write_text(json.dumps(single))
    entries = read_labelstudio(f, document_root=root)
    assert [(e.path.name, e.labels) for e in entries] == [("a.jpg", ("cap",)), ("b.jpg", ("shoes",))]

    multi = [{"image": "/data/local-files/?d=a.jpg", "id": 1, "tags": {"choices": ["hat", "red"]}, **meta},
             {"image": "/data/local-files/?d=c.jpg", "id": 3, "tags": "red", **meta}]
    f.write_text(json.dumps(multi))
    assert [e.labels for e in read_labelstudio(f, document_root=root)] == [("hat", "red"), ("red",)]

    tax = [{"image": "/data/local-files/?d=c.jpg", "id": 3, "tax": [{"taxonomy": [["clothes", "head", "hat"]]}],
            **meta}]
    f.write_text(json.dumps(tax))
    [e] = read_labelstudio(f, document_root=root)
    assert e.labels == ("clothes/head/hat",) and e.path == root / "c.jpg"

    two = [{"image": "/data/local-files/?d=a.jpg", "kind": "hat", "quality": "blurry", **meta}]
    f.write_text(json.dumps(two))
    with pytest.raises(DataError, match="several classification controls.*kind, quality"):
        read_labelstudio(f, document_root=root)
    assert read_labelstudio(f, document_root=root, from_name="quality")[0].labels == ("blurry",)


def test_csv_export_reads_like_json_min_and_plain_csvs_stay_plain(tmp_path):
    """Label Studio's CSV export: JSON-MIN records as rows, several choices and taxonomies as JSON text in cells."""
    import csv

    from pixclass.io.sources import read_source

    root = tmp_path / "root"
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        _img(root / name)
    header = ["image", "id", "choice", "tags", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"]
    rows = [  # a.jpg: two annotators, the newer wins; c.jpg: never labeled (empty cells)
        ["/data/local-files/?d=a.jpg", "1", "hat", "", "1", "11", "2024-01-01T00:00:00Z", "", "3.1"],
        ["/data/local-files/?d=a.jpg", "1", "cap", "", "2", "12", "2024-02-01T00:00:00Z", "", "2.0"],
        ["/data/local-files/?d=b.jpg", "2", "shoes", "", "1", "13", "2024-01-01T00:00:00Z", "", "1.5"],
        ["/data/local-files/?d=c.jpg", "3", "", "", "", "", "", "", ""],
    ]
    f = tmp_path / "project-1-at-2024.csv"
    with f.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    entries = read_labelstudio(f, document_root=root)
    assert [(e.path.name, e.labels) for e in entries] == [("a.jpg", ("cap",)), ("b.jpg", ("shoes",)), ("c.jpg", ())]

    multi = [["/data/local-files/?d=d.jpg", "4", "", json.dumps({"choices": ["hat", "red"]}), "1", "14", "", "", "1"],
             ["/data/local-files/?d=c.jpg", "3", "", json.dumps([{"taxonomy": [["clothes", "hat"]]}]), "1", "15", "",
              "", "1"]]
    with f.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *multi])
    assert [e.labels for e in read_labelstudio(f, document_root=root)] == [("hat", "red"), ("clothes/hat",)]

    # read_source (what `pixclass import` uses) tells the two CSV kinds apart by the header.
    rel = tmp_path / "rel"
    _img(rel / "x.jpg")
    ls = rel / "ls.csv"
    ls.write_text("image,choice,annotation_id,lead_time\nx.jpg,hat,1,2.0\n")
    assert [(e.path, e.labels) for e in read_source(ls)] == [(rel / "x.jpg", ("hat",))]
    plain = rel / "plain.csv"
    plain.write_text("path,label\nx.jpg,cap\n")
    assert [(e.path, e.labels) for e in read_source(plain)] == [(rel / "x.jpg", ("cap",))]
    broken = rel / "broken.csv"
    broken.write_bytes(b"image,choice,annotation_id,lead_time\n\xff\xfe,hat,1,2\n")
    with pytest.raises(DataError, match=r"broken\.csv: not a readable UTF-8 CSV"):
        read_source(broken)


def test_a_deleted_file_is_not_blamed_on_the_document_root(tmp_path):
    """A file whose folder is still there was deleted or moved; a file whose folder is missing needs the root."""
    (tmp_path / "photos").mkdir()
    rel = f"{tmp_path.as_posix().lstrip('/')}/photos/gone.jpg"
    path, why = resolve_image(f"/data/local-files/?d={rel}", base=tmp_path)
    assert path is None and why == f"Label Studio local file /{rel} not found (deleted or moved?)."
    path, why = resolve_image("/data/local-files/?d=elsewhere/x.jpg", base=tmp_path)
    assert path is None and "LOCAL_FILES_DOCUMENT_ROOT" in why
