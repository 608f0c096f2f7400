"""The workspace: a directory with a SQLite database (or a PostgreSQL URL) and run directories."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pixclass.config import resolve_workspace
from pixclass.errors import ConfigError
from pixclass.store.tables import SCHEMA_VERSION, Base, Dataset, Meta

log = logging.getLogger(__name__)

DB_FILE = "pixclass.db"


def _add_review_columns(engine: Engine) -> None:
    """Version 2: review status and accepted-suggestion provenance on annotations."""
    have = {c["name"] for c in inspect(engine).get_columns("annotations")}
    ts = "TIMESTAMP" if engine.dialect.name == "postgresql" else "DATETIME"
    wanted = {"review": "VARCHAR(16)", "reviewer": "VARCHAR(200)", "reviewed_at": ts, "from_run": "INTEGER"}
    with engine.begin() as conn:
        for name, kind in wanted.items():
            if name not in have:
                conn.execute(text(f"ALTER TABLE annotations ADD COLUMN {name} {kind}"))


def _add_external_id(engine: Engine) -> None:
    """Version 3: the Label Studio annotation a vote came from, so that deleting it there deletes it here."""
    if "external_id" not in {c["name"] for c in inspect(engine).get_columns("annotations")}:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE annotations ADD COLUMN external_id VARCHAR(100)"))
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_annotations_external_id ON annotations (external_id)"))


def _annotation_ids_never_reused(engine: Engine) -> None:
    """Version 4: on SQLite, the annotations table is rebuilt with AUTOINCREMENT, so that the id of a deleted (undone)
    annotation never comes back for another one. PostgreSQL sequences never reuse ids."""
    if engine.dialect.name != "sqlite":
        return
    from sqlalchemy import MetaData
    from sqlalchemy.schema import CreateIndex, CreateTable

    from pixclass.store.tables import Annotation

    with engine.begin() as conn:
        sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'annotations'")).scalar()
        if "AUTOINCREMENT" in (sql or "").upper():
            return
        md = MetaData()
        for table in Base.metadata.sorted_tables:  # the copy's foreign keys need the tables they name
            if table.name != "annotations":
                table.to_metadata(md)
        new = Annotation.__table__.to_metadata(md, name="annotations_v4")
        cols = ", ".join(c.name for c in Annotation.__table__.columns)
        conn.execute(text("DROP TABLE IF EXISTS annotations_v4"))  # left by an interrupted attempt
        conn.execute(CreateTable(new))
        # rows whose image is gone (possible in a version-1 database, which had no foreign keys) would fail the copy
        conn.execute(text(f"INSERT INTO annotations_v4 ({cols}) SELECT {cols} FROM annotations "
                          f"WHERE image_id IN (SELECT id FROM images)"))
        conn.execute(text("DROP TABLE annotations"))
        conn.execute(text("ALTER TABLE annotations_v4 RENAME TO annotations"))
        for index in Annotation.__table__.indexes:
            conn.execute(CreateIndex(index, if_not_exists=True))


def _add_dataset_revision(engine: Engine) -> None:
    """Version 5: a per-dataset write counter, so that a server sees reviews and renames made through another."""
    if "revision" not in {c["name"] for c in inspect(engine).get_columns("datasets")}:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE datasets ADD COLUMN revision INTEGER NOT NULL DEFAULT 0"))


# Schema migrations: version -> function(engine) that brings version-1 up to version.
MIGRATIONS: dict[int, Callable[[Engine], None]] = {2: _add_review_columns, 3: _add_external_id,
                                                   4: _annotation_ids_never_reused, 5: _add_dataset_revision}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for a SQLAlchemy URL; SQLite gets WAL mode and foreign keys."""
    try:
        engine = create_engine(url, future=True)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy raises several types for a bad URL or missing driver
        raise ConfigError(f"Cannot use database URL {url!r}: {e}. Use sqlite:///FILE or postgresql+psycopg://...") from e
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(engine: Engine) -> int:
    """Create missing tables and apply pending migrations. Returns the schema version now in force."""
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        row = s.get(Meta, "schema_version")
        current = int(row.value) if row else SCHEMA_VERSION
        for version in range(current + 1, SCHEMA_VERSION + 1):
            log.info("migrating workspace schema to version %d", version)
            MIGRATIONS[version](engine)
        if row is None:
            s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        else:
            row.value = str(SCHEMA_VERSION)
        s.commit()
    return SCHEMA_VERSION


_REVISIONS: dict[str, int] = {}  # database URL -> commits that wrote something, in this process
_CHANGES: dict[str, deque[tuple[int, "Changes | None"]]] = {}  # URL -> (revision, what that session changed)
_REVISIONS_LOCK = threading.Lock()
KEPT_CHANGES = 2000  # sessions remembered per database: a reader further behind computes everything again

LOCK_OPTION = "pixclass_lock"  # execution option of records.lock_dataset's UPDATE: not a change to any row's data


# Tables the grid's rows are not computed from (server.views.table): a write to any other table is counted in the
# revisions of the datasets, so that another process learns of it (see ``Workspace.session``).
QUIET_TABLES = frozenset({"users", "api_tokens", "image_claims", "broken_files", "curate_runs", "findings",
                          "cluster_runs", "cluster_assignments"})


@dataclass
class Changes:
    """What a session wrote: the tables, and, while all it wrote to tables rows are computed from was annotations
    (added, changed or deleted), those per image and the dataset locks of ``records.lock_dataset``. A reader that
    kept rows computed from the database then redoes only those of the images whose annotations changed; after a
    session that wrote anything ``other``, it computes them all (``Workspace.changes_since``)."""

    annotations: dict[int, int] = field(default_factory=dict)  # image id -> annotations added minus deleted
    locks: list[tuple[int, int]] = field(default_factory=list)  # (dataset id, its revision after the lock)
    tables: set[str] = field(default_factory=set)  # every table written, the locks' UPDATEs left out

    @property
    def other(self) -> bool:
        """Wrote something besides annotations that rows are computed from: rows of any image may have changed."""
        return bool(self.tables - QUIET_TABLES - {"annotations"})

    @property
    def unseen(self) -> bool:
        """Wrote what another process's kept rows would not show: what changes no count or newest id in the
        fingerprint and holds no dataset (a curation flag, a pinned run, an image id SQLite gives again)."""
        return bool(self.tables - QUIET_TABLES) and not (self.tables == {"annotations"} and self.locks)


def session_changes(session: Session) -> Changes:
    return session.info.setdefault("changes", Changes())


def _note_flush(session: Session, _context) -> None:
    session.info["wrote"] = True
    ch = session_changes(session)
    for objs, step in ((session.new, 1), (session.dirty, 0), (session.deleted, -1)):
        for obj in objs:
            name = getattr(obj, "__tablename__", "?")
            if name == "annotations" and obj.image_id is None:
                name = "?"  # its image is given by a relationship: not known yet
            ch.tables.add(name)
            if ch.other:  # an import's 50,000 new images need no look after the first
                return
            if name == "annotations":
                ch.annotations[obj.image_id] = ch.annotations.get(obj.image_id, 0) + step


def _note_commit(session: Session) -> None:
    session.info["committed"] = True


def _note_statement(state) -> None:
    if not state.is_select:
        state.session.info["wrote"] = True
        if not state.execution_options.get(LOCK_OPTION):
            name = getattr(getattr(state.statement, "table", None), "name", "?")
            # unlike a flushed object, a statement does not say which images it changed
            session_changes(state.session).tables |= {name} if name in QUIET_TABLES else {name, "?"}


def bump_revisions(engine: Engine) -> None:
    """Count a write in every dataset's revision (``Dataset.revision``), one dataset at a time so as to wait for no
    more than one lock at once. Another process's kept rows are then computed again."""
    try:
        with engine.connect() as conn:
            ids = list(conn.scalars(select(Dataset.id).order_by(Dataset.id)))
        for dataset_id in ids:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":  # SQLite waits its busy_timeout (10 s) at most
                    conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                conn.execute(update(Dataset).where(Dataset.id == dataset_id).values(revision=Dataset.revision + 1))
    except OperationalError as e:  # the write itself is stored; only other processes' kept rows may lag
        log.warning("could not count a write in the datasets' revisions: %s", e.orig)


@dataclass
class Workspace:
    """A workspace directory and its database. Use ``Workspace.open``; sessions come from ``session()``."""

    root: Path
    url: str
    engine: Engine = field(repr=False)
    _factory: sessionmaker = field(repr=False)

    @classmethod
    def open(cls, root: str | Path | None = None, *, url: str | None = None) -> "Workspace":
        root = resolve_workspace(root)
        root.mkdir(parents=True, exist_ok=True)
        url = url or f"sqlite:///{(root / DB_FILE).resolve()}"
        engine = make_engine(url)
        try:
            migrate(engine)
        except OperationalError as e:
            raise ConfigError(f"Cannot open the workspace database at {url}: {e.orig}") from e
        factory = sessionmaker(engine, expire_on_commit=False)
        event.listen(factory, "after_flush", _note_flush)
        event.listen(factory, "do_orm_execute", _note_statement)
        event.listen(factory, "after_commit", _note_commit)
        return cls(root=root, url=url, engine=engine, _factory=factory)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error, so a failure stores nothing half-done."""
        s = self._factory()
        stage = "body"
        try:
            yield s
            stage = "commit"
            s.commit()
            stage = "done"
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()
            if s.info.get("wrote"):  # after the commit: a reader that saw the old revision recomputes
                ch = s.info.get("changes", Changes()) if stage == "done" else None
                if stage == "body" and not s.info.get("committed"):
                    ch = Changes()  # a body that failed rolled back: nothing changed (a failed commit may have)
                if ch is None or ch.unseen:
                    bump_revisions(self.engine)
                with _REVISIONS_LOCK:
                    rev = _REVISIONS[self.url] = _REVISIONS.get(self.url, 0) + 1
                    kept = _CHANGES.setdefault(self.url, deque(maxlen=KEPT_CHANGES))
                    kept.append((rev, None if ch is None or ch.other else ch))

    @property
    def revision(self) -> int:
        """Changes with every session in this process that wrote to this database, once it has ended: lets readers
        keep what they computed from the database until then (other processes' writes are not counted)."""
        return _REVISIONS.get(self.url, 0)

    def changes_since(self, revision: int, until: int) -> list[Changes] | None:
        """What the sessions of this process that ended after ``revision``, up to ``until``, changed: None when one
        of them wrote something besides annotations and dataset locks, or they are no longer all remembered."""
        with _REVISIONS_LOCK:
            log = list(_CHANGES.get(self.url, ()))
        got = [ch for rev, ch in log if revision < rev <= until]
        if len(got) != until - revision or any(ch is None for ch in got):
            return None
        return got

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def new_run_dir(self, stem: str) -> Path:
        """A new, empty folder ``runs/STEM-YYYYmmdd-HHMMSS`` (``-2``, ``-3``... after it when runs start within the
        same second: a linear retrain takes under one), created here so that no two runs can share it."""
        base = f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(1):
            path = self.runs_dir / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise AssertionError("unreachable")

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def schema_version(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(Meta.value).where(Meta.key == "schema_version")))

    def close(self) -> None:
        self.engine.dispose()
