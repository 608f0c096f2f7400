"""Accounts and the schema migration behind the server: `pixclass user add`, hashed secrets, version 1 -> 5."""

from __future__ import annotations

import json
import sqlite3

from sqlalchemy import create_engine, inspect, select, text
from typer.testing import CliRunner

from pixclass.cli.main import app
from pixclass.store import Workspace, users
from pixclass.store.db import migrate
from pixclass.store.tables import SCHEMA_VERSION, Annotation
from tests.pg import fresh_database

V1 = """
CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value TEXT);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE datasets (id INTEGER PRIMARY KEY, name VARCHAR(200) UNIQUE, task VARCHAR(20), positive VARCHAR(300),
                       source TEXT, created_at DATETIME);
CREATE TABLE images (id INTEGER PRIMARY KEY, dataset_id INTEGER, path TEXT, sha256 VARCHAR(64), width INTEGER,
                     height INTEGER, format VARCHAR(16), split VARCHAR(16), excluded BOOLEAN, created_at DATETIME);
CREATE TABLE annotations (id INTEGER PRIMARY KEY, image_id INTEGER, labels JSON, source VARCHAR(16),
                          author VARCHAR(200), time_spent FLOAT, created_at DATETIME);
INSERT INTO datasets VALUES (1, 'old', 'multiclass', NULL, '', '2024-01-01 00:00:00');
INSERT INTO images VALUES (1, 1, '/x.jpg', 'ab', 4, 4, 'JPEG', 'train', 0, '2024-01-01 00:00:00');
INSERT INTO annotations VALUES (1, 1, '["cat"]', 'import', 'import', NULL, '2024-01-01 00:00:00');
INSERT INTO annotations VALUES (2, 99, '["dog"]', 'import', 'import', NULL, '2024-01-01 00:00:00');
"""  # annotation 2's image does not exist: version 1 had no foreign keys


def test_version_1_database_is_migrated_in_place(tmp_path):
    con = sqlite3.connect(tmp_path / "pixclass.db")
    con.executescript(V1)
    con.close()
    ws = Workspace.open(tmp_path)
    assert ws.schema_version() == SCHEMA_VERSION == 5
    with ws.session() as s:
        a = s.get(Annotation, 1)
        assert a.labels == ["cat"] and a.review is None and a.from_run is None
        a.review, a.reviewer = "accepted", "root"
        users.create_user(s, "root", "admin", "pw-root")  # the new tables exist too
    with ws.session() as s:
        assert s.get(Annotation, 1).review == "accepted"
    assert migrate(ws.engine) == 5  # running again is harmless
    with ws.session() as s:
        assert s.get(Annotation, 2) is None  # the orphan did not survive the rebuild (nor stop it)
    cols = {r[1] for r in sqlite3.connect(tmp_path / "pixclass.db").execute("PRAGMA table_info(annotations)")}
    assert {"review", "reviewer", "reviewed_at", "from_run", "external_id"} <= cols
    assert_ids_never_reused(ws)


def assert_ids_never_reused(ws: Workspace) -> None:
    """An undone (deleted) annotation's id does not come back for the next one (version 4 on SQLite)."""
    with ws.session() as s:
        a = Annotation(image_id=1, labels=["dog"], source="human", author="ann")
        s.add(a)
        s.flush()
        undone = a.id
        s.delete(a)
    with ws.session() as s:
        b = Annotation(image_id=1, labels=["cat"], source="human", author="bob")
        s.add(b)
        s.flush()
        assert b.id > undone
        assert {ix["name"] for ix in inspect(ws.engine).get_indexes("annotations")} >= {
            "ix_annotations_image_id", "ix_annotations_external_id"}


def test_a_new_sqlite_workspace_never_reuses_annotation_ids(tmp_path):
    ws = Workspace.open(tmp_path)
    with ws.session() as s:
        s.execute(text("INSERT INTO datasets (id, name, task, source, created_at) VALUES (1, 'd', 'multiclass', '', "
                       "'2024-01-01')"))
        s.execute(text("INSERT INTO images (id, dataset_id, path, sha256, width, height, format, split, excluded, "
                       "created_at) VALUES (1, 1, '/x.jpg', 'ab', 4, 4, 'JPEG', 'train', 0, '2024-01-01')"))
    assert_ids_never_reused(ws)


def test_version_1_database_is_migrated_in_place_on_postgresql(tmp_path, postgres_url):
    url = fresh_database(postgres_url, "pixclass_v1")
    old = create_engine(url)
    v1 = V1.replace("DATETIME", "TIMESTAMP").replace("0, '2024", "false, '2024")
    with old.begin() as c:
        for stmt in filter(str.strip, v1.split(";")):
            c.execute(text(stmt))
    old.dispose()
    ws = Workspace.open(tmp_path, url=url)
    assert ws.engine.dialect.name == "postgresql" and ws.schema_version() == 5
    cols = {c["name"] for c in inspect(ws.engine).get_columns("annotations")}
    assert {"review", "reviewer", "reviewed_at", "from_run", "external_id"} <= cols
    with ws.session() as s:
        a = s.get(Annotation, 1)
        assert a.labels == ["cat"] and a.review is None
        a.review, a.reviewer = "accepted", "root"
        users.create_user(s, "root", "admin", "pw-root")
    with ws.session() as s:
        assert s.get(Annotation, 1).review == "accepted"
    assert migrate(ws.engine) == 5  # (this hand-written table has no sequence; SQLAlchemy's have one)
    ws.close()


def test_user_add_without_prompt_and_token(tmp_path):
    runner = CliRunner()
    ws_dir = tmp_path / "ws"
    r = runner.invoke(app, ["user", "add", "ann", "--role", "annotator", "--password", "s3cret!", "--json"],
                      env={"PIXCLASS_WORKSPACE": str(ws_dir)})
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["role"] == "annotator"
    bad = runner.invoke(app, ["user", "add", "x", "--role", "boss", "--password", "abcd", "-w", str(ws_dir)])
    assert bad.exit_code == 2 and "admin, annotator, viewer" in bad.output
    tok = runner.invoke(app, ["user", "token", "ann", "-w", str(ws_dir)])
    token = tok.stdout.strip()
    ws = Workspace.open(ws_dir)
    with ws.session() as s:
        u = s.scalar(select(users.User).where(users.User.name == "ann"))
        assert u.password_hash.startswith("$argon2") and "s3cret!" not in u.password_hash
        assert users.authenticate(s, "ann", "s3cret!").id == u.id
        assert users.authenticate(s, "ann", "wrong") is None and users.authenticate(s, "nobody", "x") is None
        assert users.user_for_token(s, token).name == "ann"
        stored = s.scalars(select(users.ApiToken.token_hash)).all()
        assert token not in stored and users.hash_token(token) in stored
