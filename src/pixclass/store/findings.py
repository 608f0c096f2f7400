"""Dataset-health findings: one row per problem found by `pixclass curate`, grouped by the curate run that found it.

A finding names an image (``path``, and ``image_id`` when the image is stored), a ``kind`` (exact_duplicate,
near_duplicate, leakage, broken, odd_size, blurry, dark, bright, low_information, grayscale, outlier, label_error),
a ``score`` (higher is worse), and for pairs the other image. ``status`` records what was done about it:
open | excluded | review | dismissed | relabeled. Suspected label errors with status ``review`` form the labeling
review queue (``review_queue``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pixclass.errors import ConfigError
from pixclass.store.tables import Base, Dataset, utcnow

STATUSES = ("open", "excluded", "review", "dismissed", "relabeled")


class CurateRun(Base):
    """One `pixclass curate` pass over a dataset: settings, summary counts and the report path."""

    __tablename__ = "curate_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    summary: Mapped[dict] = mapped_column(JSON, default=dict)
    report: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Finding(Base):
    __tablename__ = "findings"
    __table_args__ = (Index("ix_findings_run_kind", "run_id", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("curate_runs.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), nullable=True,
                                                 index=True)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    score: Mapped[float] = mapped_column(Float)
    other_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), nullable=True)
    other_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    given_label: Mapped[str | None] = mapped_column(String(300), nullable=True)
    suggested_label: Mapped[str | None] = mapped_column(String(300), nullable=True)
    split: Mapped[str | None] = mapped_column(String(16), nullable=True)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def key(self) -> tuple[str, str, str]:
        """Identity of a finding across curate runs."""
        return self.kind, self.path, self.other_path or ""

    def to_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "kind": self.kind, "score": round(float(self.score), 6),
                "other_path": self.other_path, "given_label": self.given_label,
                "suggested_label": self.suggested_label, "split": self.split, "status": self.status,
                "image_id": self.image_id, "other_image_id": self.other_image_id, "evidence": self.evidence}


def latest_curate_run(s: Session, ds: Dataset, *, before: int | None = None) -> CurateRun | None:
    q = select(CurateRun).where(CurateRun.dataset_id == ds.id)
    if before is not None:
        q = q.where(CurateRun.id < before)
    return s.scalar(q.order_by(CurateRun.id.desc()).limit(1))


def list_findings(s: Session, run: CurateRun, *, kind: str | None = None, status: str | None = None,
                  min_score: float | None = None, paths: list[str] | None = None,
                  ids: list[int] | None = None) -> list[Finding]:
    """Findings of one curate run, worst first within each kind."""
    if status and status not in STATUSES:
        raise ConfigError(f"Unknown status {status!r}. Use one of: {', '.join(STATUSES)}.")
    q = select(Finding).where(Finding.run_id == run.id)
    if kind:
        q = q.where(Finding.kind == kind)
    if status:
        q = q.where(Finding.status == status)
    if min_score is not None:
        q = q.where(Finding.score >= min_score)
    if paths:
        q = q.where(Finding.path.in_(paths))
    if ids:
        q = q.where(Finding.id.in_(ids))
    return list(s.scalars(q.order_by(Finding.kind, Finding.score.desc(), Finding.id)))


def review_queue(s: Session, ds: Dataset) -> list[Finding]:
    """Suspected label errors sent for review in the newest curate run, worst first (for the labeling UI)."""
    run = latest_curate_run(s, ds)
    return [] if run is None else list_findings(s, run, kind="label_error", status="review")
