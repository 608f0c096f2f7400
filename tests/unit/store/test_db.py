import pytest
from sqlalchemy import text

from pixclass.errors import DataError
from pixclass.io.importer import import_dataset
from pixclass.store import Workspace, records
from pixclass.store.tables import SCHEMA_VERSION, Annotation


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
