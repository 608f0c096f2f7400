"""SQLAlchemy tables of a workspace. SCHEMA_VERSION goes up with every change; store.db.migrate applies steps."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 5  # 2: annotations.review, reviewer, reviewed_at, from_run (labeling server)
#                    3: annotations.external_id (the Label Studio annotation a vote came from)
#                    4: SQLite annotation ids never reused (AUTOINCREMENT)
#                    5: datasets.revision (counts writes that hold the dataset, see records.lock_dataset)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task: Mapped[str] = mapped_column(String(20), default="multiclass")
    positive: Mapped[str | None] = mapped_column(String(300), nullable=True)
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # +1 per records.lock_dataset


class LabelClass(Base):
    """One class of a dataset's label schema. Hierarchical classes are '/'-separated paths."""

    __tablename__ = "label_classes"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("dataset_id", "sha256"), Index("ix_images_dataset_split", "dataset_id", "split"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    split: Mapped[str | None] = mapped_column(String(16), nullable=True)
    excluded: Mapped[bool] = mapped_column(default=False)  # left out of training (curation)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BrokenFile(Base):
    """A file that import could not read, with the reason. Kept so `stats` and reports can list it."""

    __tablename__ = "broken_files"
    __table_args__ = (UniqueConstraint("dataset_id", "path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Annotation(Base):
    """A label set on an image by someone or something. ``labels`` is a list of class names."""

    __tablename__ = "annotations"
    # an undone label's id must never name the next label someone makes: a reviewer's verdict or an Undo button
    # sent with it would land on that one (SQLite reuses the highest id after a delete without this)
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    labels: Mapped[list] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16), default="import")  # import | human | model
    author: Mapped[str] = mapped_column(String(200), default="")
    time_spent: Mapped[float | None] = mapped_column(Float, nullable=True)  # seconds, for human labels
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    review: Mapped[str | None] = mapped_column(String(16), nullable=True)  # None | accepted | rejected
    reviewer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    from_run: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a human accepted this run's suggestion
    external_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)  # label-studio:ID


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="running")
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    __tablename__ = "predictions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    labels: Mapped[list] = mapped_column(JSON)
    score: Mapped[float] = mapped_column(Float)
    probs: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
