"""Claims: the image each annotator has open, so that people labeling from the same queue get different images.

A claim lasts CLAIM_MINUTES and each person holds one per dataset: opening the next image lets the last one go.
Claims are bookkeeping, not data. They are written on a plain connection, outside the ORM sessions, so taking one
is not a write that makes the grid's cached rows stale (see ``Workspace.revision`` and ``server.views.TableCache``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Engine, ForeignKey, String, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pixclass.store.tables import Base, utcnow

CLAIM_MINUTES = 5.0


class ImageClaim(Base):
    __tablename__ = "image_claims"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    user: Mapped[str] = mapped_column(String(200))
    until: Mapped[datetime] = mapped_column()


class Hold(NamedTuple):
    mine: bool  # the claim is the asker's now
    user: str  # who holds the image
    until: datetime  # UTC, naive


def claim(engine: Engine, dataset_id: int, image_id: int, user: str, minutes: float = CLAIM_MINUTES) -> Hold:
    """Claim an image for ``user`` (renewing their claim), unless another user's claim on it is still live: then
    that one is returned. ``user``'s claim on any other image of the dataset ends. Safe against concurrent calls:
    the image's primary key lets one insert win. Before its insert a call touches only rows no one else can want
    (its own claim on this image, an expired one), so two people trading images cannot deadlock."""
    for _ in range(5):
        now = utcnow()
        until = now + timedelta(minutes=minutes)
        try:
            with engine.begin() as conn:  # a write first, so SQLite takes its write lock at once
                conn.execute(delete(ImageClaim).where(ImageClaim.image_id == image_id,
                                                      or_(ImageClaim.user == user, ImageClaim.until <= now)))
                conn.execute(insert(ImageClaim).values(image_id=image_id, dataset_id=dataset_id, user=user,
                                                       until=until))
                conn.execute(delete(ImageClaim).where(ImageClaim.dataset_id == dataset_id, ImageClaim.user == user,
                                                      ImageClaim.image_id != image_id))
            return Hold(True, user, until)
        except IntegrityError:  # someone holds it (or it was deleted: the caller checked it exists)
            with engine.connect() as conn:
                row = conn.execute(select(ImageClaim.user, ImageClaim.until)
                                   .where(ImageClaim.image_id == image_id)).first()
            if row is not None and row.user != user and row.until > now:
                return Hold(False, row.user, row.until)
        except OperationalError:  # SQLite busy past its timeout, or a PostgreSQL deadlock: try again
            continue
    raise TimeoutError(f"Could not claim image {image_id}: the database stayed busy. Try again.")


def release(engine: Engine, image_id: int, user: str) -> bool:
    """End ``user``'s claim on the image; False if they held none."""
    with engine.begin() as conn:
        return conn.execute(delete(ImageClaim).where(ImageClaim.image_id == image_id,
                                                     ImageClaim.user == user)).rowcount > 0


def held_by_others(engine: Engine, dataset_id: int, user: str) -> dict[int, str]:
    """{image id: holder} of the dataset's images that people other than ``user`` hold now."""
    with engine.connect() as conn:
        rows = conn.execute(select(ImageClaim.image_id, ImageClaim.user).where(
            ImageClaim.dataset_id == dataset_id, ImageClaim.user != user, ImageClaim.until > utcnow()))
        return {i: u for i, u in rows}


def holder(engine: Engine, image_id: int, user: str) -> Hold | None:
    """The live claim on an image by someone other than ``user``, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(ImageClaim.user, ImageClaim.until).where(
            ImageClaim.image_id == image_id, ImageClaim.user != user, ImageClaim.until > utcnow())).first()
    return Hold(False, row.user, row.until) if row else None
