"""Read-side helpers for the labeling API: one pass over a dataset's images, annotations and predictions."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pixclass.artifact import Manifest
from pixclass.decision import DEFAULT_NODE_THRESHOLD, NODE_KEY, decode_hierarchical
from pixclass.errors import ConfigError
from pixclass.inference.predictor import merge_classes
from pixclass.schema import LabelSchema
from pixclass.store import Workspace, records
from pixclass.store.tables import Annotation, Dataset, Image, Prediction, Run
from pixclass.train.active import STRATEGIES


class Filters(BaseModel):
    """Which images of a dataset to list. Every field is optional; set ones are combined with AND."""

    unlabeled: bool = Field(False, description="Only images without a current label.")
    labeled: bool = Field(False, description="Only images with a current label.")
    label: str | None = Field(None, description="Only images whose current labels include this class.")
    annotator: str | None = Field(None, description="Only images labeled by this user.")
    origin: str | None = Field(None, pattern="^(manual|accepted|)$",
                               description="Only images whose current label is an accepted model suggestion "
                                           "(accepted), or one that is not: chosen by hand or imported (manual).")
    predicted: str | None = Field(None, description="Only images whose model suggestion is this class.")
    min_conf: float | None = Field(None, ge=0, le=1, description="Suggestion confidence at least this.")
    max_conf: float | None = Field(None, ge=0, le=1, description="Suggestion confidence at most this.")
    excluded: str = Field("all", pattern="^(all|only|hide)$", description="Curation flag: all, only or hide.")
    split: str | None = Field(None, description="train, val or test.")
    conflicts: bool = Field(False, description="Only images where annotators disagree.")
    review: str | None = Field(None, pattern="^(pending|accepted|rejected|changed|)$",
                               description="Reviewer's work: labeled images whose label has no verdict (pending), "
                                           "whose label was accepted, with a rejected vote, or whose author "
                                           "relabeled after a verdict (changed).")
    sort: str = Field("id", pattern="^(id|confidence|-confidence|queue:[a-z_]+)$",
                      description="id, suggestion confidence ascending (least sure first) or descending, or "
                                  "queue:STRATEGY (active learning: unlabeled images to label next, most useful "
                                  f"first; one of {', '.join(STRATEGIES)}).")


@dataclass
class Row:
    id: int
    split: str | None
    excluded: bool
    labels: list[str] = field(default_factory=list)  # current: see records.current_annotation
    source: str | None = None
    accepted: bool = False  # the current label is an accepted model suggestion
    by_author: dict[str, list[str]] = field(default_factory=dict)  # newest human annotation per user, unless rejected
    prediction: dict | None = None  # {"label", "score", "run_id"}
    resolved: bool = False  # its label is an accepted annotation and no one disagreed since
    annotation_id: int | None = None  # its current annotation (records.current_annotation)
    review: str | None = None  # the verdict on it
    rejected: bool = False  # a reviewer rejected someone's newest vote
    changed: bool = False  # an author replaced a reviewed annotation with a different, unreviewed one

    @property
    def agreement(self) -> float | None:
        """Fraction of annotator pairs that chose the same labels; None with fewer than two annotators."""
        sets = [tuple(sorted(v)) for v in self.by_author.values()]
        if len(sets) < 2:
            return None
        pairs = list(itertools.combinations(sets, 2))
        return sum(a == b for a, b in pairs) / len(pairs)

    @property
    def conflict(self) -> bool:
        """Annotators disagree and no reviewer has settled it by accepting one of the annotations."""
        return not self.resolved and len({tuple(sorted(v)) for v in self.by_author.values()}) > 1

    def asks(self, user: str, votes: int = 1) -> bool:
        """Whether the label queue asks ``user`` for this image: nobody has answered it (a multi-label answer of no
        tags is an answer), or each image should get ``votes`` annotators' labels and fewer people than that, not
        ``user``, labeled it, with no verdict yet. An imported label counts as an answer."""
        return self.annotation_id is None or (votes > 1 and self.source == "human" and self.review is None
                                              and user not in self.by_author and len(self.by_author) < votes)

    def to_dict(self) -> dict:
        return {"id": self.id, "split": self.split, "excluded": self.excluded, "labels": self.labels,
                "source": self.source, "accepted": self.accepted, "annotators": sorted(self.by_author),
                "prediction": self.prediction, "agreement": self.agreement, "conflict": self.conflict,
                "annotation_id": self.annotation_id, "review": self.review, "changed": self.changed}


def prediction_run(s: Session, ds: Dataset) -> int | None:
    """The run whose stored predictions are the dataset's suggestions: the pinned run (see records.serving_run),
    else the newest run that has stored predictions for this dataset's images."""
    pinned = records.pinned_run(s, ds)
    if pinned is not None:
        return pinned.id
    return s.scalar(select(func.max(Prediction.run_id)).join(Image, Image.id == Prediction.image_id)
                    .where(Image.dataset_id == ds.id))


def table(s: Session, ds: Dataset, image_ids: list[int] | None = None) -> dict[int, Row]:
    """image id -> Row for the dataset (or the given images of it)."""
    q = select(Image.id, Image.split, Image.excluded).where(Image.dataset_id == ds.id)
    if image_ids is not None:
        q = q.where(Image.id.in_(image_ids))
    rows = {i: Row(i, sp, bool(ex)) for i, sp, ex in s.execute(q.order_by(Image.id))}
    for image_id, anns in records.annotations_by_image(s, image_ids, dataset=ds).items():
        r = rows.get(image_id)
        if r is None:
            continue
        newest = records.newest_per_author(anns)
        cur = records.current_of(newest)
        if cur is not None:
            r.labels, r.source, r.accepted = list(cur.labels), cur.source, cur.from_run is not None
            r.annotation_id, r.review = cur.id, cur.review
        r.rejected = any(a.review == "rejected" for a in newest)
        votes = [a for a in newest if a.source == "human" and a.review != "rejected"]
        r.by_author = {a.author: list(a.labels) for a in votes}
        if len(anns) == 1:  # most images: nothing replaced, at most one verdict
            continue
        reviewed = {(a.source, a.author): a for a in sorted(anns, key=lambda a: a.id) if a.review}
        r.changed = any(a.review is None and (k := (a.source, a.author)) in reviewed and reviewed[k].id < a.id
                        and sorted(reviewed[k].labels) != sorted(a.labels) for a in newest)
        # a reviewer's accept settles the disagreement there was; a different vote cast after it is a new conflict
        if cur is not None and cur.review == "accepted":
            verdict = cur.reviewed_at or cur.created_at
            r.resolved = not any(sorted(a.labels) != sorted(cur.labels) and a.created_at > verdict for a in votes)
    run_id = prediction_run(s, ds)
    if run_id is not None:
        pq = select(Prediction.image_id, Prediction.labels, Prediction.score).where(Prediction.run_id == run_id)
        if image_ids is not None:
            pq = pq.where(Prediction.image_id.in_(image_ids))
        for image_id, labels, score in s.execute(pq):
            if image_id in rows:
                rows[image_id].prediction = {"label": labels[0] if labels else None, "labels": labels,
                                             "score": round(score, 4), "run_id": run_id}
    return rows


class Fingerprint(NamedTuple):
    images: int
    newest_image: int | None
    excluded: int
    annotations: int
    newest_annotation: int | None
    predictions: int
    newest_prediction: int | None
    revision: int


def fingerprint(s: Session, ds: Dataset) -> Fingerprint:
    """Counts and newest ids of the dataset's images, annotations and suggestions, how many images are excluded, and
    the dataset's revision: what another process's import, labels, pre-labeling, curation fixes, reviews, undos
    and renames change."""
    def agg(model, *cols):
        q = select(*cols)
        if model is not Image:
            q = q.join(Image, Image.id == model.image_id)
        return q.where(Image.dataset_id == ds.id)

    return Fingerprint(*s.execute(select(
        agg(Image, func.count(Image.id)).scalar_subquery(), agg(Image, func.max(Image.id)).scalar_subquery(),
        agg(Image, func.count(Image.id)).where(Image.excluded.is_(True)).scalar_subquery(),
        agg(Annotation, func.count(Annotation.id)).scalar_subquery(),
        agg(Annotation, func.max(Annotation.id)).scalar_subquery(),
        agg(Prediction, func.count(Prediction.id)).scalar_subquery(),
        agg(Prediction, func.max(Prediction.id)).scalar_subquery(),
        select(Dataset.revision).where(Dataset.id == ds.id).scalar_subquery())).one())


class TableCache:
    """``table`` of whole datasets, kept while nothing is written: until a session of this process that wrote ends
    (``Workspace.revision``), or the dataset's ``fingerprint`` shows another process's writes. After writes of this
    process that only added, changed or took back annotations (labels, verdicts, undos), only the rows of those
    images are computed again (``_patched``). Rows handed out are shared: read them, never change them. Paging
    through a grid of 50,000 images then costs one small query, and so does the first page after a label."""

    PATCH_LIMIT = 5000  # more changed images than this: computing every row is about as fast

    def __init__(self, ws: Workspace, size: int = 4):
        self.ws, self.size = ws, size
        self._entries: OrderedDict[int, tuple[tuple, dict[int, Row], dict]] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = self.patched = 0  # how often rows were computed whole, or only the changed ones

    def _entry(self, s: Session, ds: Dataset) -> tuple[dict[int, Row], dict]:
        """(rows, a dict kept with them for what is computed from them, such as the queue's files)."""
        if s.info.get("wrote") or s.new or s.dirty or s.deleted:  # this session's own writes are not committed yet
            return table(s, ds), {}
        key = (self.ws.revision, fingerprint(s, ds))  # read before the rows: a write in between only misses
        with self._lock:
            hit = self._entries.get(ds.id)
            if hit is not None and hit[0] == key:
                self._entries.move_to_end(ds.id)
                return hit[1], hit[2]
        found = self._patched(s, ds, hit, key) if hit is not None else None
        if found is None:
            found, self.computed = (table(s, ds), {}), self.computed + 1
        else:
            self.patched += 1
        with self._lock:
            self._entries[ds.id] = (key, *found)
            self._entries.move_to_end(ds.id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return found

    def _patched(self, s: Session, ds: Dataset, hit: tuple, key: tuple) -> tuple[dict[int, Row], dict] | None:
        """The kept rows with those of the images whose annotations this process changed since computed again, or
        None when that is not all that changed: another process wrote (a dataset revision, an annotation or an
        image that none of this process's sessions accounts for), or a session here wrote something else."""
        ((rev0, fp0), rows, extra), (rev1, fp1) = hit, key
        changes = self.ws.changes_since(rev0, rev1)
        kept = ("images", "newest_image", "excluded", "predictions", "newest_prediction")  # no annotation moves these
        if changes is None or any(getattr(fp0, f) != getattr(fp1, f) for f in kept):
            return None
        touched: dict[int, int] = {}
        locks = set()
        for ch in changes:
            for image_id, n in ch.annotations.items():
                if image_id in rows:
                    touched[image_id] = touched.get(image_id, 0) + n
            locks |= {rev for dataset_id, rev in ch.locks if dataset_id == ds.id}
        if locks != set(range(fp0.revision + 1, fp1.revision + 1)) or \
                fp1.annotations - fp0.annotations != sum(touched.values()):
            return None  # another process held the dataset (a verdict, a rename) or added or deleted annotations
        added = s.scalars(select(Annotation.image_id).join(Image, Image.id == Annotation.image_id)
                          .where(Image.dataset_id == ds.id, Annotation.id > (fp0.newest_annotation or 0)))
        if not set(added) <= touched.keys() or len(touched) > self.PATCH_LIMIT:
            return None
        rows = dict(rows)  # a new dict and new rows: the kept ones may be in use
        rows.update(table(s, ds, list(touched)) if touched else {})
        return rows, extra

    def get(self, s: Session, ds: Dataset) -> dict[int, Row]:
        return self._entry(s, ds)[0]

    def to_label(self, s: Session, ds: Dataset, user: str, votes: int = 1) -> list[records.Item]:
        """The label queue's pool for ``user``, in id order (labels left empty): the images not excluded that it
        ``asks`` them for. The images' files are read once and kept with the rows."""
        rows, extra = self._entry(s, ds)
        if "files" not in extra:
            q = select(Image.id, Image.path, Image.sha256, Image.split).where(Image.dataset_id == ds.id)
            extra["files"] = {i: records.Item(i, path, sha, (), split) for i, path, sha, split in s.execute(q)}
        files = extra["files"]
        return [files[i] for i, r in rows.items() if i in files and not r.excluded and r.asks(user, votes)]


def apply(rows: dict[int, Row], f: Filters) -> list[Row]:
    out = []
    for r in rows.values():
        p = r.prediction
        if f.unlabeled and r.labels or f.labeled and not r.labels:
            continue
        if f.label and f.label not in r.labels:
            continue
        if f.annotator and f.annotator not in r.by_author:
            continue
        if f.origin and not (r.labels and r.accepted == (f.origin == "accepted")):
            continue
        if f.predicted and (p is None or f.predicted not in p["labels"]):
            continue
        if f.min_conf is not None and (p is None or p["score"] < f.min_conf):
            continue
        if f.max_conf is not None and (p is None or p["score"] > f.max_conf):
            continue
        if (f.excluded == "only" and not r.excluded) or (f.excluded == "hide" and r.excluded):
            continue
        if f.split and r.split != f.split:
            continue
        if f.conflicts and not r.conflict:
            continue
        if f.review and not (r.labels and r.review is None if f.review == "pending" else
                             r.review == "accepted" if f.review == "accepted" else
                             r.rejected if f.review == "rejected" else r.changed):
            continue
        out.append(r)
    if f.sort != "id":
        sign = 1 if f.sort == "confidence" else -1
        out.sort(key=lambda r: (r.prediction is None, sign * (r.prediction or {"score": 0})["score"], r.id))
    return out


@lru_cache(maxsize=32)
def run_classes(run_path: str) -> tuple[str, ...]:
    return Manifest.load(Path(run_path)).classes


def current_scorer(s: Session, run: Run) -> Callable[[list[float]], dict[str, float] | None] | None:
    """probs -> {class: score} for a run's stored predictions under today's class names (renames and merges made
    since the run applied; see inference.predictor.merge_classes). None if the run's classes are unknown; the
    scorer answers None for probabilities that do not match them."""
    try:
        classes = run_classes(run.path)
    except ConfigError:
        return None
    names, multilabel = records.run_class_names(s, run, classes)

    def scores(probs: list[float]) -> dict[str, float] | None:
        if len(probs) != len(names):
            return None
        merged, now = merge_classes(np.asarray([probs], dtype=np.float64), names, multilabel=multilabel)
        return dict(zip(now, merged[0].tolist()))

    return scores


def current_scores(s: Session, pred: Prediction) -> dict[str, float] | None:
    """{class: probability} of a stored prediction under today's class names (see ``current_scorer``)."""
    run = s.get(Run, pred.run_id)
    scorer = current_scorer(s, run) if run else None
    return scorer(pred.probs) if scorer else None


def top_k(s: Session, pred: Prediction, k: int = 5) -> list[dict]:
    scores = current_scores(s, pred)
    if not scores:
        return [{"label": lab, "score": pred.score} for lab in pred.labels]
    order = sorted(scores, key=lambda c: -scores[c])[:k]
    return [{"label": c, "score": round(scores[c], 4)} for c in order]


@lru_cache(maxsize=32)
def run_node_threshold(run_path: str) -> float:
    return Manifest.load(Path(run_path)).thresholds.get(NODE_KEY, DEFAULT_NODE_THRESHOLD)


def confident_node(s: Session, pred: Prediction, schema: LabelSchema) -> dict | None:
    """For a hierarchical dataset: the deepest taxonomy node the run is sure of, as ``pixclass predict`` decides it
    (its probability, summed over the classes under it, reaches the run's node threshold): {"node", "score"}.
    None when not even a top-level node reaches it, or the run's classes or folder are gone."""
    scores = current_scores(s, pred)
    try:
        threshold = run_node_threshold(s.get(Run, pred.run_id).path) if scores else None
    except ConfigError:  # the run's folder is gone
        threshold = None
    if threshold is None:
        return None
    probs = np.array([[scores.get(c, 0.0) for c in schema.classes]], np.float64)
    node, score = decode_hierarchical(probs, schema, threshold)[0]
    return {"node": node, "score": round(score, 4)} if node else None


def annotation_dict(a: Annotation) -> dict:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() + "Z" if t else None

    return {"id": a.id, "image_id": a.image_id, "labels": a.labels, "source": a.source, "author": a.author,
            "time_spent": a.time_spent, "created_at": iso(a.created_at), "review": a.review,
            "reviewer": a.reviewer, "reviewed_at": iso(a.reviewed_at), "from_run": a.from_run}
