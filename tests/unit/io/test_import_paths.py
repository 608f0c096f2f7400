"""Import stores absolute paths from any working directory; Label Studio: document root, uploads, from_name."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pixclass.cli.main import app
from pixclass.errors import DataError
from pixclass.io.importer import import_dataset
from pixclass.io.labelstudio import label_config
from pixclass.io.sources import read_source
from pixclass.store import Workspace, records
from pixclass.store.tables import Image

runner = CliRunner()
LS_ENV = ("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", "LOCAL_FILES_DOCUMENT_ROOT")


def cli(*args, ws: Path, env: dict | None = None, ok: bool = True):
    res = runner.invoke(app, list(map(str, args)), env={"PIXCLASS_WORKSPACE": str(ws), **(env or {})})
    if ok:
        assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def last_json(res) -> dict:
    return json.loads(res.stdout.strip().splitlines()[-1])


def _photos(photos4: Path, per_class: int = 3) -> dict[str, list[Path]]:
    return {c: sorted((photos4 / c).glob("*.jpg"))[:per_class] for c in ("hat", "shoes")}


def _stored_paths(ws: Workspace, name: str) -> list[str]:
    with ws.session() as s:
        ds = records.get_dataset(s, name)
        return list(s.scalars(select(Image.path).where(Image.dataset_id == ds.id)))


@pytest.fixture
def no_ls_env(monkeypatch):
    for k in LS_ENV:
        monkeypatch.delenv(k, raising=False)


def test_relative_folder_and_csv_sources_are_stored_absolute(tmp_path, photos4, monkeypatch):
    """`cd X && pixclass import data/clothes` must not store data/clothes/...: serving from elsewhere breaks."""
    for cls, files in _photos(photos4).items():
        (tmp_path / "data" / "clothes" / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(f, tmp_path / "data" / "clothes" / cls / f.name)
    lists = tmp_path / "data" / "lists"
    lists.mkdir()
    with (lists / "labels.csv").open("w", newline="") as fh:  # paths relative to the CSV's folder
        csv.writer(fh).writerows([["path", "label"], *[[f"../clothes/{cls}/{f.name}", cls.upper()]
                                                       for cls, files in _photos(photos4).items() for f in files]])
    ws = Workspace.open(tmp_path / "ws")
    monkeypatch.chdir(tmp_path)
    assert import_dataset(ws, "data/clothes", "folder").imported == 6
    assert import_dataset(ws, Path("data/lists/labels.csv"), "list").imported == 6
    folder = (tmp_path / "data" / "clothes").resolve()
    for name in ("folder", "list"):
        paths = _stored_paths(ws, name)
        assert len(paths) == 6 and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
        assert all(Path(p).parent.parent == folder for p in paths), paths
    with ws.session() as s:
        assert records.get_dataset(s, "folder").source == str(folder)

    # The same import run again from the same place finds every image already stored (same absolute path).
    assert import_dataset(ws, "data/clothes", "folder").skipped_existing == 6

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with ws.session() as s:
        for name in ("folder", "list"):
            items = records.items(s, records.get_dataset(s, name))
            assert len(items) == 6 and all(Path(it.path).is_file() for it in items)
            assert {lab for it in items for lab in it.labels} == ({"hat", "shoes"} if name == "folder"
                                                                  else {"HAT", "SHOES"})

    # The CLI takes the same relative argument and stores the same absolute paths.
    monkeypatch.chdir(tmp_path)
    res = last_json(cli("import", "data/clothes", "--name", "viacli", "--json", ws=tmp_path / "ws"))
    assert res["imported"] == 6
    assert sorted(_stored_paths(ws, "viacli")) == sorted(_stored_paths(ws, "folder"))


def _ls_export(tmp_path: Path, photos4: Path, *, two_controls: bool = False) -> tuple[Path, Path, Path, Path, Path]:
    """A Label Studio JSON export with a local-files image (docroot/sub/a.jpg) and an uploaded one
    (lsdata/media/upload/1/b.jpg); the export lies in a third folder."""
    hat, shoes = _photos(photos4, 1)["hat"][0], _photos(photos4, 1)["shoes"][0]
    local = tmp_path / "docroot" / "sub" / "a.jpg"
    upload = tmp_path / "lsdata" / "media" / "upload" / "1" / "b.jpg"
    for src, dst in ((hat, local), (shoes, upload)):
        dst.parent.mkdir(parents=True)
        shutil.copy(src, dst)

    def result(label: str, quality: str) -> list[dict]:
        out = [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
        if two_controls:
            out.append({"from_name": "quality", "to_name": "image", "type": "choices", "value": {"choices": [quality]}})
        return out

    tasks = [{"id": 1, "data": {"image": "/data/local-files/?d=sub/a.jpg"},
              "annotations": [{"result": result("hat", "sharp")}]},
             {"id": 2, "data": {"image": "/data/upload/1/b.jpg"},
              "annotations": [{"result": result("shoes", "blurry")}]}]
    export = tmp_path / "exports" / "project-1.json"
    export.parent.mkdir()
    export.write_text(json.dumps(tasks))
    return export, tmp_path / "docroot", tmp_path / "lsdata", local, upload


def test_labelstudio_export_with_local_files_and_uploads_in_one_command(tmp_path, photos4, monkeypatch, no_ls_env):
    export, docroot, lsdata, local, upload = _ls_export(tmp_path, photos4)
    ws_dir = tmp_path / "ws"
    monkeypatch.chdir(tmp_path)  # every path given relative
    res = last_json(cli("import", "exports/project-1.json", "--name", "ls", "--document-root", "docroot",
                        "--ls-data-dir", "lsdata", "--json", ws=ws_dir))
    assert res["imported"] == 2 and res["broken"] == [] and res["classes"] == ["hat", "shoes"]
    ws = Workspace.open(ws_dir)
    with ws.session() as s:
        items = records.items(s, records.get_dataset(s, "ls"))
    assert {(it.path, it.labels) for it in items} == {(str(local.resolve()), ("hat",)),
                                                      (str(upload.resolve()), ("shoes",))}

    # Without the options: the upload needs --ls-data-dir; the local file is looked for under the export's folder,
    # named as an absolute path in the message.
    res = last_json(cli("import", "exports/project-1.json", "--name", "bare", "--json", ws=ws_dir))
    reasons = {b["path"]: b["reason"] for b in res["broken"]}
    assert res["imported"] == 0 and set(reasons) == {"/data/local-files/?d=sub/a.jpg", "/data/upload/1/b.jpg"}
    assert f"not found under {(tmp_path / 'exports').resolve()} " in reasons["/data/local-files/?d=sub/a.jpg"]
    assert "--document-root" in reasons["/data/local-files/?d=sub/a.jpg"]
    assert "--ls-data-dir" in reasons["/data/upload/1/b.jpg"]

    # A document root that does not hold the file is named absolute too.
    res = last_json(cli("import", "exports/project-1.json", "--name", "wrong", "--document-root", "lsdata",
                        "--json", ws=ws_dir))
    assert any(f"not found under {lsdata.resolve()}." in b["reason"] for b in res["broken"])

    # Label Studio's own environment variable names the document root as well as the short one does.
    for var in LS_ENV:
        res = last_json(cli("import", export, "--name", f"env-{var}", "--ls-data-dir", lsdata, "--json", ws=ws_dir,
                            env={var: "docroot"}))
        assert res["broken"] == [] and res["skipped_existing"] == 0 and res["imported"] == 2

    # Label Studio options on a folder source are a mistake, said so.
    res = cli("import", "docroot", "--name", "folder", "--document-root", "docroot", ws=ws_dir, ok=False)
    assert res.exit_code == 2 and "applies to Label Studio exports only" in res.output
    with pytest.raises(DataError, match="from_name applies to Label Studio exports only"):
        read_source(tmp_path / "docroot", from_name="choice")


def test_from_name_picks_one_of_several_controls(tmp_path, photos4, monkeypatch, no_ls_env):
    export, docroot, lsdata, local, upload = _ls_export(tmp_path, photos4, two_controls=True)
    ws_dir = tmp_path / "ws"
    opts = ["--document-root", docroot, "--ls-data-dir", lsdata]
    res = cli("import", export, "--name", "two", *opts, ws=ws_dir, ok=False)
    assert res.exit_code == 2 and "several classification controls (choice, quality)" in res.output
    assert "--from-name" in res.output

    res = last_json(cli("import", export, "--name", "kind", *opts, "--from-name", "choice", "--json", ws=ws_dir))
    assert res["imported"] == 2 and res["classes"] == ["hat", "shoes"]
    res = last_json(cli("import", export, "--name", "quality", *opts, "--from-name", "quality", "--json", ws=ws_dir))
    assert res["imported"] == 2 and res["classes"] == ["blurry", "sharp"]
    ws = Workspace.open(ws_dir)
    with ws.session() as s:
        labels = {it.path: it.labels for it in records.items(s, records.get_dataset(s, "quality"))}
    assert labels == {str(local.resolve()): ("sharp",), str(upload.resolve()): ("blurry",)}

    res = cli("import", export, "--name", "typo", *opts, "--from-name", "qualty", ws=ws_dir, ok=False)
    assert res.exit_code == 2 and "no annotation uses a classification control named 'qualty'" in res.output
    assert "choice, quality" in res.output


def test_taxonomy_config_lets_annotators_pick_leaf_classes_only():
    tax = label_config(["clothes/hat", "clothes/shoes", "other"], "hierarchical")
    assert '<Taxonomy name="taxonomy" toName="image" leafsOnly="true">' in tax
    # A class that is also a parent (clothes and clothes/hat) must stay selectable: no leafsOnly then.
    inner = label_config(["clothes", "clothes/hat", "other"], "hierarchical")
    assert '<Taxonomy name="taxonomy" toName="image">' in inner and "leafsOnly" not in inner
    assert "leafsOnly" not in label_config(["hat", "shoes"], "multiclass")


def test_reimporting_an_export_counts_then_takes_labels_changed_in_label_studio(tmp_path, photos4, no_ls_env):
    """Label in pixclass, export, relabel in Label Studio, import the new export into the same dataset: the changed
    label is reported, and taken only when asked; a label made here since is not overwritten silently."""
    export, docroot, lsdata, local, upload = _ls_export(tmp_path, photos4)
    ws_dir, opts = tmp_path / "ws", ["--document-root", docroot, "--ls-data-dir", lsdata]
    assert last_json(cli("import", export, "--name", "ls", *opts, "--json", ws=ws_dir))["imported"] == 2
    tasks = json.loads(export.read_text())
    tasks[0]["annotations"].append({"result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                                                "value": {"choices": ["shoes"]}}]})  # relabeled in Label Studio
    export.write_text(json.dumps(tasks))
    res = last_json(cli("import", export, "--name", "ls", *opts, "--json", ws=ws_dir))
    assert (res["imported"], res["skipped_existing"], res["label_changes"], res["relabeled"]) == (0, 2, 1, 0)
    out = cli("import", export, "--name", "ls", *opts, ws=ws_dir).output
    assert "1 images already there have another label" in out and "--update-labels" in out
    ws = Workspace.open(ws_dir)

    def labels() -> dict[str, tuple[str, ...]]:
        with ws.session() as s:
            return {Path(it.path).name: it.labels for it in records.items(s, records.get_dataset(s, "ls"))}

    assert labels() == {"a.jpg": ("hat",), "b.jpg": ("shoes",)}
    res = last_json(cli("import", export, "--name", "ls", *opts, "--update-labels", "--json", ws=ws_dir))
    assert (res["label_changes"], res["relabeled"]) == (1, 1) and labels() == {"a.jpg": ("shoes",), "b.jpg": ("shoes",)}
    res = last_json(cli("import", export, "--name", "ls", *opts, "--update-labels", "--json", ws=ws_dir))
    assert (res["label_changes"], res["relabeled"]) == (0, 0)  # nothing left to change


def test_several_label_studio_annotators_come_in_as_their_own_votes(tmp_path, photos4, no_ls_env):
    """Each annotator's annotation of an exported task is their vote (source human, author label-studio:EMAIL or
    the id, Label Studio's annotation id, lead time and time), as the webhook would have stored it: disagreement
    shows as a conflict, a ground-truth annotation is the accepted label, and re-imports store nothing twice."""
    from pixclass.server import views
    from pixclass.store.tables import Annotation

    export, docroot, lsdata, _, _ = _ls_export(tmp_path, photos4)
    tasks = json.loads(export.read_text())

    def ann(i, label, by, when, **kw):
        return {"id": i, "completed_by": by, "created_at": when, "updated_at": when, "lead_time": 4.5,
                "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                            "value": {"choices": [label]}}], **kw}

    tasks[0]["annotations"] = [ann(11, "hat", {"id": 3, "email": "amy@example.org"}, "2024-01-01T10:00:00.5Z"),
                               ann(12, "shoes", 5, "2024-01-02T10:00:00+02:00"),
                               ann(13, "pants", 6, "2024-01-03T10:00:00Z", was_cancelled=True)]
    tasks[1]["annotations"] = [ann(21, "shoes", 3, "2024-01-01T10:00:00Z", ground_truth=True),
                               ann(22, "hat", {"id": 5, "email": ""}, "2024-03-01T10:00:00Z")]
    export.write_text(json.dumps(tasks))
    ws_dir, opts = tmp_path / "ws", ["--document-root", docroot, "--ls-data-dir", lsdata]
    assert last_json(cli("import", export, "--name", "ls", *opts, "--json", ws=ws_dir))["imported"] == 2
    ws = Workspace.open(ws_dir)

    def votes() -> dict[str, list[tuple]]:
        with ws.session() as s:
            rows = s.execute(select(Image.path, Annotation).join(Annotation).order_by(Annotation.id)).all()
            return {name: [(a.source, a.author, a.labels, a.external_id, a.review) for p, a in rows
                           if Path(p).name == name] for name in ("a.jpg", "b.jpg")}

    assert votes() == {
        "a.jpg": [("human", "label-studio:amy@example.org", ["hat"], "label-studio:11", None),
                  ("human", "label-studio:5", ["shoes"], "label-studio:12", None)],
        "b.jpg": [("human", "label-studio:5", ["hat"], "label-studio:22", None),
                  ("human", "label-studio:3", ["shoes"], "label-studio:21", "accepted")]}
    with ws.session() as s:
        ds = records.get_dataset(s, "ls")
        first = s.scalar(select(Annotation).where(Annotation.external_id == "label-studio:11"))
        assert first.time_spent == 4.5 and first.created_at.isoformat() == "2024-01-01T10:00:00.500000"
        assert s.scalar(select(Annotation).where(Annotation.external_id == "label-studio:12")).created_at.hour == 8
        rows = {Path(s.get(Image, r.id).path).name: r for r in views.table(s, ds).values()}
    assert rows["a.jpg"].labels == ["shoes"] and rows["a.jpg"].conflict and rows["a.jpg"].agreement == 0.0
    assert rows["b.jpg"].labels == ["shoes"] and rows["b.jpg"].review == "accepted"

    before = votes()
    res = last_json(cli("import", export, "--name", "ls", *opts, "--update-labels", "--json", ws=ws_dir))
    assert (res["label_changes"], res["relabeled"]) == (0, 0) and votes() == before
    tasks[0]["annotations"][1] = ann(12, "hat", 5, "2024-02-01T10:00:00Z")  # annotator 5 changed their mind
    export.write_text(json.dumps(tasks))
    res = last_json(cli("import", export, "--name", "ls", *opts, "--update-labels", "--json", ws=ws_dir))
    assert (res["label_changes"], res["relabeled"]) == (1, 1)
    assert votes()["a.jpg"][2:] == [("human", "label-studio:5", ["hat"], "label-studio:12", None)]
    assert votes()["b.jpg"] == before["b.jpg"]  # only the new annotation came in
    tasks[0]["annotations"][1] = ann(12, "shoes", 5, "2024-03-01T10:00:00Z")  # and back: an older version's labels
    export.write_text(json.dumps(tasks))
    res = last_json(cli("import", export, "--name", "ls", *opts, "--update-labels", "--json", ws=ws_dir))
    assert (res["label_changes"], res["relabeled"]) == (1, 1)
    assert votes()["a.jpg"][3:] == [("human", "label-studio:5", ["shoes"], "label-studio:12", None)]


def test_label_studio_user_ids_become_emails_when_label_studio_is_set(tmp_path, photos4, no_ls_env, monkeypatch):
    """Label Studio's JSON export names annotators by user id only; with LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY
    set, import asks Label Studio once per id for the email, as the webhook does, so one person is one author."""
    import http.server
    import threading

    asked = []

    class Users(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server naming
            asked.append(self.path)
            ok = self.path == "/api/users/5" and self.headers.get("Authorization") == "Token k"
            body = json.dumps({"id": 5, "email": "bo@example.org"} if ok else {"detail": "Not found"}).encode()
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Users)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "k")
    export, docroot, lsdata, _, _ = _ls_export(tmp_path, photos4)
    tasks = json.loads(export.read_text())
    for n, task in enumerate(tasks):
        task["annotations"] = [{**a, "id": 10 + n + k, "completed_by": by} for k, (a, by) in
                               enumerate(zip(task["annotations"] * 2, (5, 9)))]
    export.write_text(json.dumps(tasks))
    try:
        entries = read_source(export, document_root=docroot, ls_data_dir=lsdata)
    finally:
        server.shutdown()
    assert [[v.author for v in e.votes] for e in entries] == [["label-studio:bo@example.org", "label-studio:9"]] * 2
    assert sorted(asked) == ["/api/users/5", "/api/users/9"]  # once per id, unknown ids kept as ids
