"""The class list of a dataset, editable by admins: create in bulk, rename, merge (labels are rewritten)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import delete, select

from pixclass.errors import DataError
from pixclass.schema import LabelSchema, clean_class_name
from pixclass.server.auth import Principal, require
from pixclass.server import views
from pixclass.server.labeling import dataset_info, ws_of
from pixclass.store import records
from pixclass.store.tables import Annotation, Dataset, Image, LabelClass, Prediction, Run

router = APIRouter(prefix="/api", tags=["classes"])


class NewClasses(BaseModel):
    names: list[str] = Field(min_length=1, max_length=5000)


class Rename(BaseModel):
    old: str
    new: str = Field(min_length=1, max_length=300)


class Merge(BaseModel):
    sources: list[str] = Field(min_length=1)
    target: str = Field(min_length=1, max_length=300)


def _relabel(s, ds: Dataset, mapping: dict[str, str]) -> int:
    """Rewrite class names in every annotation and prediction of the dataset; returns annotations changed.

    The mapping is also recorded, so that models trained before it (whose files keep the old names) answer in
    the new names: suggestions, accepting them, and predictions through the API and the Label Studio backend.
    """
    records.record_renames(s, ds, mapping)
    changed = 0
    ids = select(Image.id).where(Image.dataset_id == ds.id)
    for a in s.scalars(select(Annotation).where(Annotation.image_id.in_(ids))):
        new = list(dict.fromkeys(mapping.get(x, x) for x in a.labels))
        if new != a.labels:
            a.labels, changed = new, changed + 1
    scorers: dict = {}  # run id -> views.current_scorer (None: classes unknown, or a multi-label dataset)
    for p in s.scalars(select(Prediction).where(Prediction.image_id.in_(ids))):
        if p.run_id not in scorers:
            run = s.get(Run, p.run_id)
            scorers[p.run_id] = views.current_scorer(s, run) if run and ds.task != "multilabel" else None
        scores = scorers[p.run_id](p.probs) if scorers[p.run_id] else None
        if scores:  # a merge can change which class wins: the stored suggestion follows top_k
            best = max(scores, key=scores.__getitem__)
            p.labels, p.score = [best], scores[best]
        else:
            p.labels = list(dict.fromkeys(mapping.get(x, x) for x in p.labels))
    return changed


@router.post("/datasets/{name}/classes")
def add_classes(name: str, body: NewClasses, request: Request, _: Principal = Depends(require("admin"))) -> dict:
    """Create classes in bulk (appended in the given order; existing names are left as they are and listed in
    ``existing``). A name that differs from another only in letter case is refused: it would be a second class."""
    names = list(dict.fromkeys(clean_class_name(n) for n in body.names if n.strip()))
    if not names:
        raise DataError("No class names given: one name per line.")
    with ws_of(request).session() as s:
        ds = records.lock_dataset(s, records.get_dataset(s, name))  # one class-list change at a time
        schema = records.load_schema(s, ds)
        existing = [n for n in names if n in schema.classes]
        seen = {c.casefold(): c for c in schema.classes}
        for n in names:
            if n not in schema.classes and seen.setdefault(n.casefold(), n) != n:
                raise DataError(f"Class {n!r} differs from {seen[n.casefold()]!r} only in letter case. Use that "
                                f"name, or rename it first. Nothing was created.")
        classes = tuple(dict.fromkeys([*schema.classes, *names]))
        records.save_schema(s, ds, LabelSchema(ds.task, classes, ds.positive))  # type: ignore[arg-type]
        return {**dataset_info(s, ds), "added": len(classes) - len(schema.classes), "existing": existing}


@router.post("/datasets/{name}/classes/rename")
def rename_class(name: str, body: Rename, request: Request, _: Principal = Depends(require("admin"))) -> dict:
    with ws_of(request).session() as s:
        ds = records.lock_dataset(s, records.get_dataset(s, name))  # one class-list change at a time
        records.load_schema(s, ds).index(body.old)
        new = clean_class_name(body.new)
        if new == body.old:
            raise DataError(f"Class {body.old!r} already has that name; give a different new name.")
        row = s.scalar(select(LabelClass).where(LabelClass.dataset_id == ds.id, LabelClass.name == body.old))
        if s.scalar(select(LabelClass).where(LabelClass.dataset_id == ds.id, LabelClass.name == new)):
            raise HTTPException(409, f"Class {new!r} exists; merge into it instead.")
        row.name = new
        if ds.positive == body.old:
            ds.positive = new
        changed = _relabel(s, ds, {body.old: new})
        s.flush()
        out = {**dataset_info(s, ds), "relabeled": changed}
    request.app.state.models.forget()  # loaded models answer in today's names
    return out


@router.post("/datasets/{name}/classes/merge")
def merge_classes(name: str, body: Merge, request: Request, _: Principal = Depends(require("admin"))) -> dict:
    """Merge classes into ``target`` (existing or new): labels are rewritten, the sources removed."""
    with ws_of(request).session() as s:
        ds = records.lock_dataset(s, records.get_dataset(s, name))  # one class-list change at a time
        schema = records.load_schema(s, ds)
        for src in body.sources:
            schema.index(src)
        target = clean_class_name(body.target)
        sources = [x for x in body.sources if x != target]
        changed = _relabel(s, ds, {x: target for x in sources})
        s.execute(delete(LabelClass).where(LabelClass.dataset_id == ds.id, LabelClass.name.in_(sources)))
        s.flush()
        kept = [c for c in schema.classes if c not in sources]
        first = min((schema.classes.index(x) for x in sources), default=len(schema.classes))  # target takes
        # the place of the earliest source
        pos = sum(1 for c in schema.classes[:first] if c in kept)
        classes = kept if target in kept else [*kept[:pos], target, *kept[pos:]]
        records.save_schema(s, ds, LabelSchema(ds.task, tuple(classes), ds.positive))  # type: ignore[arg-type]
        s.flush()
        out = {**dataset_info(s, ds), "relabeled": changed}
    request.app.state.models.forget()  # loaded models answer in today's names
    return out
