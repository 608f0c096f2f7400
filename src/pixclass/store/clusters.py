"""Cluster runs and their per-image assignments (`pixclass cluster`), and the functions that read and write them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pixclass.errors import DataError
from pixclass.store.tables import Base, Dataset, utcnow


class ClusterRun(Base):
    """One clustering of a dataset's embeddings: method, parameters and quality figures."""

    __tablename__ = "cluster_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(32))
    k: Mapped[int] = mapped_column(Integer)  # clusters found (noise not counted)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    path: Mapped[str] = mapped_column(Text, default="")  # folder with the cluster pictures
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClusterAssignment(Base):
    """Image -> cluster of one cluster run; cluster -1 is noise (DBSCAN)."""

    __tablename__ = "cluster_assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_run_id: Mapped[int] = mapped_column(ForeignKey("cluster_runs.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    cluster: Mapped[int] = mapped_column(Integer)


def add_cluster_run(s: Session, ds: Dataset, *, method: str, k: int, params: dict, metrics: dict, path: str,
                    assignments: dict[int, int]) -> ClusterRun:
    """Store a cluster run with ``assignments`` (image id -> cluster)."""
    run = ClusterRun(dataset_id=ds.id, method=method, k=k, params=params, metrics=metrics, path=path)
    s.add(run)
    s.flush()
    s.add_all(ClusterAssignment(cluster_run_id=run.id, image_id=i, cluster=int(c)) for i, c in assignments.items())
    return run


def get_cluster_run(s: Session, ds: Dataset, run_id: int | None = None) -> ClusterRun:
    """The given cluster run of ``ds``, or its newest one."""
    q = select(ClusterRun).where(ClusterRun.dataset_id == ds.id)
    q = q.where(ClusterRun.id == run_id) if run_id is not None else q.order_by(ClusterRun.id.desc()).limit(1)
    run = s.scalar(q)
    if run is None:
        which = f"cluster run {run_id}" if run_id is not None else "cluster run"
        raise DataError(f"Dataset {ds.name!r} has no {which}. Run `pixclass cluster {ds.name}` first.")
    return run


def assignments(s: Session, run: ClusterRun) -> dict[int, int]:
    """image id -> cluster of a cluster run."""
    rows = s.execute(select(ClusterAssignment.image_id, ClusterAssignment.cluster)
                     .where(ClusterAssignment.cluster_run_id == run.id))
    return {r[0]: r[1] for r in rows}
