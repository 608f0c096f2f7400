import pytest
from sqlalchemy import select, text, update

from pixclass.errors import DataError
from pixclass.io.importer import import_dataset
from pixclass.store import Workspace, records, users
from pixclass.store.tables import SCHEMA_VERSION, Annotation, Image


def test_sqlite_workspace_uses_wal_and_records_version(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    assert (tmp_path / "ws" / "pixclass.db").is_file()
    with ws.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert ws.schema_version() == SCHEMA_VERSION
    # opening again is idempotent
    assert Workspace.open(tmp_path / "ws").schema_version() == SCHEMA_VERSION


def test_workspace_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXCLASS_WORKSPACE", str(tmp_path / "envws"))
    ws = Workspace.open()
    assert ws.root == tmp_path / "envws" and (tmp_path / "envws" / "pixclass.db").is_file()


def _exercise_store(ws: Workspace, photos) -> None:
    res = import_dataset(ws, photos, "pets")
    assert res.imported == 120 and not res.broken
    with ws.session() as s:
        ds = records.get_dataset(s, "pets")
        st = records.dataset_stats(s, ds)
        assert st["images"] == 120 and st["classes"] == {"hat": 30, "pants": 30, "shoes": 30, "t-shirt": 30}
        assert set(st["splits"]) == {"train", "val", "test"}
        item = records.items(s, ds, split="train")[0]
        s.add(Annotation(image_id=item.image_id, labels=["shoes"], source="human", author="ann", time_spent=2.5))
    with ws.session() as s:
        ds = records.get_dataset(s, "pets")
        relabeled = {it.image_id: it.labels for it in records.items(s, ds)}
        assert relabeled[item.image_id] == ("shoes",)  # the newest human label wins over the import label
    with pytest.raises(DataError, match="Did you mean pets"):
        with ws.session() as s:
            records.get_dataset(s, "pet")


def test_store_on_sqlite(tmp_path, photos4):
    _exercise_store(Workspace.open(tmp_path / "ws"), photos4)


def test_store_on_real_postgresql(tmp_path, photos4, postgres_url):
    ws = Workspace.open(tmp_path / "ws", url=postgres_url)
    assert ws.engine.dialect.name == "postgresql"
    _exercise_store(ws, photos4)
    ws.close()


def test_sessions_say_what_they_changed_when_it_was_only_annotations(tmp_path, photos4):
    """``Workspace.changes_since`` (what lets the server redo only the grid rows of relabeled images): each
    ended session that wrote, in order; None once one wrote something other than annotations and dataset locks.
    A write other processes could not see in their fingerprint bumps every dataset's revision."""
    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, photos4, "pets")

    def dataset_revision() -> int:
        with ws.session() as s:
            return records.get_dataset(s, "pets").revision

    with ws.session() as s:
        ds = records.get_dataset(s, "pets")
        a, b = [it.image_id for it in records.items(s, ds)[:2]]
    start, rev0 = ws.revision, dataset_revision()
    with ws.session() as s:
        ds = records.lock_dataset(s, records.get_dataset(s, "pets"))
        s.add(Annotation(image_id=a, labels=["shoes"], source="human", author="ann"))
        s.add(Annotation(image_id=b, labels=["hat"], source="human", author="ann"))
        revision = ds.revision
    assert dataset_revision() == revision == rev0 + 1  # its lock, nothing more
    with ws.session() as s:  # no lock: counted in the dataset's revision after the commit
        old = s.scalar(select(Annotation).where(Annotation.image_id == b, Annotation.author == "ann"))
        old.review = "accepted"
        s.delete(s.scalar(select(Annotation).where(Annotation.image_id == a, Annotation.author == "ann")))
    assert dataset_revision() == rev0 + 2
    with pytest.raises(DataError), ws.session() as s:  # rolled back: changed nothing
        s.add(Annotation(image_id=a, labels=["pants"], source="human", author="ann"))
        s.flush()
        raise DataError("refused")
    with ws.session() as s:  # reading is not writing
        records.items(s, records.get_dataset(s, "pets"))
    with ws.session() as s:  # nor is a login, for the rows
        users.create_token(s, users.create_user(s, "ann", "annotator", "pw-ann-123"))
    now = ws.revision
    assert now == start + 4 and dataset_revision() == rev0 + 2
    added, judged, refused, login = ws.changes_since(start, now)
    assert (added.annotations, added.locks, added.other) == ({a: 1, b: 1}, [(ds.id, revision)], False)
    assert (judged.annotations, judged.locks, refused.annotations) == ({a: -1, b: 0}, [], {})
    assert (login.annotations, login.other, login.unseen) == ({}, False, False)
    assert [c.annotations for c in ws.changes_since(start + 1, now)] == [{a: -1, b: 0}, {}, {}]
    assert ws.changes_since(now, now) == []
    with ws.session() as s:  # anything else: a curation flag
        s.get(Image, a).excluded = True
    assert ws.changes_since(start, ws.revision) is None and ws.changes_since(now, ws.revision) is None
    assert dataset_revision() == rev0 + 3
    with ws.session() as s:  # or a statement (a bulk update of labels, as a rename does)
        s.execute(update(Annotation).where(Annotation.image_id == b).values(labels=["pants"]))
    assert ws.changes_since(now + 1, ws.revision) is None and dataset_revision() == rev0 + 4


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    import threading

    ws = Workspace.open(tmp_path / "ws")
    start, made = threading.Barrier(4), []

    def new() -> None:
        start.wait()
        made.extend(ws.new_run_dir("d") for _ in range(3))

    threads = [threading.Thread(target=new) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 12 and all(p.is_dir() and p.parent == ws.runs_dir for p in made)
    assert sum(p.name.count("-") == 2 for p in made) >= 1  # d-DATE-TIME, then d-DATE-TIME-2 and on
