"""Datasets, images, annotations, suggestions and the class list: the REST API behind the labeling UI."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.datastructures import UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from pixclass.errors import DataError
from pixclass.io.images import image_media_type, thumbnail_jpeg
from pixclass.schema import TASKS, LabelSchema, clean_class_name
from pixclass.server import tasks, views
from pixclass.server.auth import Principal, require
from pixclass.server.views import Filters
from pixclass.store import claims, records
from pixclass.store.tables import Annotation, Dataset, Image, Prediction, utcnow

router = APIRouter(prefix="/api", tags=["labeling"])
UNDO_WINDOW = timedelta(minutes=30)  # an annotator may take back their own label for this long
THUMB_SIZES = (64, 512)


def ws_of(request: Request):
    return request.app.state.ws


def image_of(s, image_id: int) -> Image:
    im = s.get(Image, image_id)
    if im is None:
        raise HTTPException(404, f"No image with id {image_id}.")
    return im


def votes_per_image(s, ds: Dataset) -> int:
    """How many annotators should label each image of the dataset (``PUT /api/datasets/NAME/votes``)."""
    return (records.get_setting(s, ds, "votes") or {}).get("votes_per_image", 1)


def dataset_info(s, ds: Dataset) -> dict:
    schema = records.load_schema(s, ds)
    run, pinned = records.latest_run(s, ds), records.pinned_run(s, ds)
    return {"name": ds.name, "task": ds.task, "classes": list(schema.classes),
            "taxonomy": schema.taxonomy() if ds.task == "hierarchical" else None,
            "multi": ds.task == "multilabel", "latest_run": run.id if run else None,
            "pinned_run": pinned.id if pinned else None, "prediction_run": views.prediction_run(s, ds),
            "votes_per_image": votes_per_image(s, ds)}


def check_labels(schema: LabelSchema, labels: list[str]) -> list[str]:
    """Known class names, deduplicated; one label unless the task is multilabel."""
    for lab in labels:
        schema.index(lab)  # DataError (400) with close matches
    labels = list(dict.fromkeys(labels))
    if schema.task != "multilabel" and len(labels) != 1:
        raise DataError(f"A {schema.task} image takes exactly one label. Got {labels}.")
    return labels


# ---------------------------------------------------------------- datasets


class NewDataset(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    task: str = "multiclass"
    classes: list[str] = []


class ImportBody(BaseModel):
    src: str = Field(description="A folder or CSV on the server's disk.")
    name: str = Field(min_length=1, max_length=200)
    task: str | None = None


@router.get("/datasets")
def list_datasets(request: Request, _: Principal = Depends(require("viewer"))) -> list[dict]:
    with ws_of(request).session() as s:
        out = []
        for ds in s.scalars(select(Dataset).order_by(Dataset.id)):
            rows = request.app.state.tables.get(s, ds)
            out.append({**dataset_info(s, ds), "images": len(rows),
                        "labeled": sum(1 for r in rows.values() if r.labels)})
        return out


@router.post("/datasets")
def create_dataset(body: NewDataset, request: Request, _: Principal = Depends(require("admin"))) -> dict:
    if body.task not in TASKS:
        raise DataError(f"Unknown task {body.task!r}. Use one of: {', '.join(TASKS)}.")
    with ws_of(request).session() as s:
        if s.scalar(select(Dataset).where(Dataset.name == body.name)):
            raise HTTPException(409, f"Dataset {body.name!r} exists.")
        ds = records.get_or_create_dataset(s, body.name, task=body.task, source="server")
        classes = tuple(dict.fromkeys(clean_class_name(c) for c in body.classes))
        records.save_schema(s, ds, LabelSchema(body.task, classes))  # type: ignore[arg-type]
        return dataset_info(s, ds)


@router.get("/datasets/{name}")
def get_dataset(name: str, request: Request, _: Principal = Depends(require("viewer"))) -> dict:
    with ws_of(request).session() as s:
        return dataset_info(s, records.get_dataset(s, name))


@router.post("/datasets/import")
def import_job(body: ImportBody, request: Request, user: Principal = Depends(require("admin"))) -> dict:
    """Import a server-side folder or CSV as a background job."""
    from pixclass.io.importer import import_dataset

    ws = ws_of(request)
    if not Path(body.src).exists():
        raise DataError(f"{body.src}: no such file or folder on the server.")
    with ws.session() as s:  # a bad new name or task is a 400 now, not a failed job later
        ds = s.scalar(select(Dataset).where(Dataset.name == body.name))
        if ds is None:
            records.check_dataset_name(body.name)
        if body.task is not None:
            schema = records.load_schema(s, ds) if ds is not None else None
            records.check_task(body.name, schema.task if schema and schema.classes else None,
                               LabelSchema(body.task, ()))  # type: ignore[arg-type]

    def run(progress) -> dict:
        return import_dataset(ws, body.src, body.name, task=body.task,
                              progress=lambda d, t: progress("import", d, t)).to_dict()

    return request.app.state.jobs.submit("import", user.name, body.model_dump(), run).to_dict()


@router.post("/datasets/{name}/upload")
async def upload(name: str, request: Request, user: Principal = Depends(require("annotator"))) -> dict:
    """Add images (multipart field `files`, repeated). Limits: PIXCLASS_MAX_UPLOAD_MB per file and
    PIXCLASS_MAX_UPLOAD_FILES per request. When a run serves the dataset, a pre-labeling job (``prelabel_job``)
    stores its suggestions for the new images."""
    from starlette.concurrency import run_in_threadpool

    settings, ws = request.app.state.settings, ws_of(request)
    with ws.session() as s:  # a wrong name is told before the files are read
        records.get_dataset(s, name)
    files = await read_uploads(request, settings)
    res = await run_in_threadpool(tasks.store_uploads, ws, name, ((f.name, f.read()) for f in files))
    out = {**res.to_dict(), "prelabel_job": None}
    with ws.session() as s:
        serving = records.serving_run(s, records.get_dataset(s, name))
    if serving is not None and res.added:
        cache, added = request.app.state.models, res.added
        out["prelabel_job"] = request.app.state.jobs.submit(
            "predict", user.name, {"dataset": name, "images": len(added)},
            lambda progress: tasks.prelabel(ws, cache, name, image_ids=added, progress=progress)).id
    return out


@dataclass(frozen=True)
class Upload:
    """One uploaded file, spooled to disk by the form parser: its bytes are read when needed, one file at a time,
    so a request of many large files never sits in memory whole."""

    name: str
    file: UploadFile

    def read(self) -> bytes:
        self.file.file.seek(0)
        return self.file.file.read()


async def read_uploads(request: Request, settings, field: str | None = None) -> list[Upload]:
    """Every uploaded file, enforcing the size and count limits: a body longer than they allow is refused before
    it is read."""
    most = settings.max_upload_bytes * settings.max_upload_files + 2**20  # and 1 MB of form fields
    if int(request.headers.get("content-length") or 0) > most:
        raise HTTPException(413, f"The upload is larger than {most // 2**20} MB: at most "
                                 f"{settings.max_upload_files} files of {settings.max_upload_bytes // 2**20} MB each.")
    try:
        form = await request.form(max_files=settings.max_upload_files, max_fields=50)
    except HTTPException:
        raise
    except Exception as e:  # noqa: BLE001 - starlette raises MultiPartException for a bad or oversized form
        raise HTTPException(400, f"Bad multipart upload: {getattr(e, 'detail', e)} Send at most "
                                 f"{settings.max_upload_files} files a request (PIXCLASS_MAX_UPLOAD_FILES), or import "
                                 f"a folder with `pixclass import DIR`.") from None
    uploads = [v for k, v in form.multi_items() if (field is None or k == field) and isinstance(v, UploadFile)]
    if not uploads:
        raise HTTPException(400, "No files in the upload. Send multipart/form-data with a 'files' field.")
    for up in uploads:
        if (up.size or 0) > settings.max_upload_bytes:
            raise HTTPException(413, f"{up.filename}: larger than the {settings.max_upload_bytes // 2**20} MB limit.")
    return [Upload(up.filename or "upload", up) for up in uploads]


# ---------------------------------------------------------------- images


@router.get("/datasets/{name}/images")
def list_images(name: str, request: Request, f: Annotated[Filters, Query()],
                offset: int = Query(0, ge=0), limit: int = Query(200, ge=1, le=5000),
                user: Principal = Depends(require("viewer"))) -> dict:
    queue_ids, ordered_by, embedding_job = None, None, None
    if f.sort.startswith("queue:"):  # active learning order over the unlabeled images
        from pixclass.server.active import server_queue

        queue, embedding_job = server_queue(request, name, f.sort.split(":", 1)[1], 5000, user.name)
        queue_ids, ordered_by = queue.image_ids, queue.strategy  # kcenter when no model exists yet
        f = f.model_copy(update={"sort": "id"})  # the queue's images, with any other filter
    ws = ws_of(request)
    with ws.session() as s:
        ds = records.get_dataset(s, name)
        rows = views.apply(request.app.state.tables.get(s, ds), f)
    if queue_ids is not None:
        rank = {image_id: i for i, image_id in enumerate(queue_ids)}
        rows = sorted((r for r in rows if r.id in rank), key=lambda r: rank[r.id])
    held = claims.held_by_others(ws.engine, ds.id, user.name)
    return {"total": len(rows), "offset": offset, "ids": [r.id for r in rows], "queue_strategy": ordered_by,
            "embedding_job": embedding_job,
            "items": [{**r.to_dict(), "claimed_by": held.get(r.id)} for r in rows[offset : offset + limit]]}


@router.get("/images/{image_id}")
def image_detail(image_id: int, request: Request, user: Principal = Depends(require("viewer"))) -> dict:
    """The image's row, its labels' history and the model's top-k; ``claimed_by``: who else has it open to label;
    ``answered_by_others``: others' labels leave it out of your label queue and you gave none (a page moving
    through a queue passes over it); ``confident`` (hierarchical datasets): the deepest taxonomy node the model is
    sure of, with its probability."""
    ws = ws_of(request)
    with ws.session() as s:
        im = image_of(s, image_id)
        ds = s.get(Dataset, im.dataset_id)
        row = views.table(s, ds, [im.id])[im.id]
        anns = list(s.scalars(select(Annotation).where(Annotation.image_id == im.id).order_by(Annotation.id)))
        mine = any(a.author == user.name for a in anns)
        out = row.to_dict()
        run_id = views.prediction_run(s, ds)
        pred = s.scalar(select(Prediction).where(Prediction.image_id == im.id, Prediction.run_id == run_id)) \
            if run_id else None
        hold = claims.holder(ws.engine, im.id, user.name)
        confident = views.confident_node(s, pred, records.load_schema(s, ds)) \
            if pred and ds.task == "hierarchical" else None
        out.update(dataset=ds.name, width=im.width, height=im.height, format=im.format,
                   claimed_by=hold.user if hold else None, confident=confident,
                   answered_by_others=not mine and not row.asks(user.name, votes_per_image(s, ds)),
                   name=Path(im.path).name, annotations=[views.annotation_dict(a) for a in anns],
                   top=views.top_k(s, pred) if pred else [])
        return out


FULL_VIEW = 2048  # pixels: the long side of the JPEG served for a format browsers do not show


@router.get("/images/{image_id}/file")
def image_file(image_id: int, request: Request, _: Principal = Depends(require("viewer"))) -> FileResponse:
    """The original file, looked up by id: only images registered in the workspace are ever served."""
    with ws_of(request).session() as s:
        path = Path(image_of(s, image_id).path)
    if not path.is_file():
        raise HTTPException(410, f"Image {image_id} is registered but its file is gone.")
    headers = {"Cache-Control": "private, max-age=600",  # lets the UI prefetch the next image
               "Content-Security-Policy": "sandbox"}  # opened alone in a tab, it can run nothing
    kind = image_media_type(path)  # by content: a .png that is a JPEG is image/jpeg
    if kind is not None:
        return FileResponse(path, media_type=kind, headers=headers)
    try:  # an image browsers do not show (TIFF, PPM, ...): as a JPEG of it
        return Response(thumbnail_jpeg(path, FULL_VIEW, quality=92), media_type="image/jpeg", headers=headers)
    except DataError:  # replaced since import (by text, or a link to some other file): never served
        raise HTTPException(409, f"Image {image_id}: the file at its registered path is no longer an image. "
                                 f"Restore it, or delete the image from the dataset.") from None


@router.get("/images/{image_id}/thumb")
def thumb(image_id: int, request: Request, size: int = Query(160, ge=THUMB_SIZES[0], le=THUMB_SIZES[1]),
          _: Principal = Depends(require("viewer"))) -> Response:
    """A JPEG thumbnail (cached under WORKSPACE/cache/thumbs); large JPEGs are decoded near the thumbnail size."""
    ws = ws_of(request)
    with ws.session() as s:
        im = image_of(s, image_id)
        path, sha = im.path, im.sha256
    cached = ws.cache_dir / "thumbs" / f"{sha}_{size}.jpg"
    if not cached.is_file():
        if not Path(path).is_file():
            raise HTTPException(410, f"Image {image_id} is registered but its file is gone.")
        data = thumbnail_jpeg(path, size)  # DataError (400) naming the file and the reason
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{uuid.uuid4().hex}.tmp")  # two requests for one thumbnail do not collide
        tmp.write_bytes(data)
        tmp.replace(cached)
    return Response(cached.read_bytes(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/images/{image_id}")
def delete_image(image_id: int, request: Request, _: Principal = Depends(require("admin"))) -> dict:
    """Remove an image and its labels from the workspace (the file on disk is left alone). Admins only."""
    with ws_of(request).session() as s:
        s.delete(image_of(s, image_id))
    return {"deleted": image_id}


class Curation(BaseModel):
    image_ids: list[int] = Field(max_length=10000)
    excluded: bool


@router.post("/images/curation")
def set_curation(body: Curation, request: Request, _: Principal = Depends(require("admin"))) -> dict:
    """Set the curation flag (excluded from training) on images."""
    with ws_of(request).session() as s:
        n = 0
        for im in s.scalars(select(Image).where(Image.id.in_(body.image_ids))):
            im.excluded, n = body.excluded, n + 1
    return {"updated": n}


# ---------------------------------------------------------------- annotations


class AnnotateBody(BaseModel):
    labels: list[str] = Field(max_length=1000)
    time_spent: float | None = Field(None, ge=0, le=86400, description="Seconds the annotator spent.")
    accepted_suggestion: bool = Field(False, description="The labels are the model's suggestion, accepted.")


class BulkBody(BaseModel):
    image_ids: list[int] = Field(min_length=1, max_length=10000)
    labels: list[str] = Field(max_length=1000)
    mode: str = Field("set", pattern="^(set|add|remove)$", description="set, or add/remove tags (multilabel).")
    time_spent: float | None = Field(None, ge=0, description="Seconds spent on the whole selection (at most a day "
                                                              "per image).")

    @model_validator(mode="after")
    def _at_most_a_day_each(self) -> "BulkBody":
        if self.time_spent is not None and self.time_spent > 86400 * len(self.image_ids):
            raise ValueError(f"time_spent {self.time_spent:g} s is more than a day per image.")
        return self


class AcceptBody(BaseModel):
    threshold: float = Field(ge=0, le=1)
    filters: Filters = Filters()
    image_ids: list[int] | None = Field(None, description="Restrict to these images (e.g. the selection).")
    dry_run: bool = Field(False, description="Only count what would be accepted; store nothing.")


class UndoBody(BaseModel):
    ids: list[int] = Field(min_length=1, max_length=100_000, description="Annotation ids, e.g. a bulk answer's.")


def _add(s, im_id: int, labels: list[str], user: Principal, time_spent: float | None,
         from_run: int | None = None) -> Annotation:
    a = Annotation(image_id=im_id, labels=labels, source="human", author=user.name, time_spent=time_spent,
                   from_run=from_run)
    s.add(a)
    return a


def _suggested_run(s, ds: Dataset, image_id: int, labels: list[str]) -> int | None:
    """The run whose stored suggestion for the image is exactly ``labels`` (as the image view shows it), else None:
    labels that differ from the suggestion are the annotator's own, whatever the client says."""
    run_id = views.prediction_run(s, ds)
    pred = s.scalar(select(Prediction).where(Prediction.image_id == image_id, Prediction.run_id == run_id)) \
        if run_id else None
    if pred is None:
        return None
    return run_id if pred.labels and sorted(pred.labels) == sorted(labels) else None  # stored in today's names


@router.post("/images/{image_id}/annotations")
def annotate(image_id: int, body: AnnotateBody, request: Request,
             user: Principal = Depends(require("annotator"))) -> dict:
    """Add a human annotation. Nothing is overwritten: every annotation is a new row with its author.
    ``disagree``: other annotators whose current label of the image differs (a conflict for review)."""
    with ws_of(request).session() as s:
        im = image_of(s, image_id)
        ds = records.lock_dataset(s, s.get(Dataset, im.dataset_id))  # not during a rename: see lock_dataset
        labels = check_labels(records.load_schema(s, ds), body.labels)
        run = _suggested_run(s, ds, im.id, labels) if body.accepted_suggestion else None
        a = _add(s, im.id, labels, user, body.time_spent, run)
        s.flush()
        out, dataset = views.annotation_dict(a), ds.name
        votes = views.table(s, ds, [im.id])[im.id].by_author  # someone labeling the same image: say so, now
        out["disagree"] = {who: v for who, v in votes.items() if who != user.name and sorted(v) != sorted(labels)}
    out["retrain_job"] = _retrain_if_due(request, dataset, user.name)
    return out


@router.post("/annotations/bulk")
def bulk(body: BulkBody, request: Request, user: Principal = Depends(require("annotator"))) -> dict:
    """Tag a selection: one new annotation per image by the caller."""
    with ws_of(request).session() as s:
        ims = list(s.scalars(select(Image).where(Image.id.in_(body.image_ids))))
        if len({im.dataset_id for im in ims}) > 1:
            raise DataError("A bulk edit must stay within one dataset.")
        missing = sorted(set(body.image_ids) - {im.id for im in ims})
        if missing:  # all or nothing: a stale selection should not half-apply
            raise HTTPException(404, f"No image with id {', '.join(map(str, missing[:20]))}"
                                     f"{' ...' if len(missing) > 20 else ''}; nothing was tagged. Reload the grid.")
        ds = records.lock_dataset(s, s.get(Dataset, ims[0].dataset_id))
        schema = records.load_schema(s, ds)
        if body.mode != "set" and schema.task != "multilabel":
            raise DataError(f"Tags can be added or removed only in multilabel datasets; {ds.name} is {ds.task}.")
        for lab in body.labels:
            schema.index(lab)
        current = records.current_labels(s, [im.id for im in ims])
        each = body.time_spent / len(ims) if body.time_spent is not None else None
        added = []
        for im in ims:
            have = current.get(im.id, [])
            if body.mode == "add":
                labels = list(dict.fromkeys([*have, *body.labels]))
            elif body.mode == "remove":
                labels = [x for x in have if x not in body.labels]
            else:
                labels = check_labels(schema, body.labels)
            added.append(_add(s, im.id, labels, user, each))
        s.flush()
        ids, dataset = [a.id for a in added], ds.name
    return {"annotated": len(ims), "annotation_ids": ids, "retrain_job": _retrain_if_due(request, dataset, user.name)}


def _check_undo(a: Annotation, user: Principal) -> None:
    if user.can("admin"):
        return
    if a.review:
        raise HTTPException(403, f"Annotation {a.id} was {a.review} by {a.reviewer}; only an admin can take it back.")
    own = a.source == "human" and a.author == user.name and a.created_at > utcnow() - UNDO_WINDOW
    if not own:
        raise HTTPException(403, f"Annotation {a.id}: annotators may take back only their own annotations of the "
                                 f"last {UNDO_WINDOW.seconds // 60} minutes.")


@router.delete("/annotations/{annotation_id}")
def undo(annotation_id: int, request: Request, user: Principal = Depends(require("annotator"))) -> dict:
    """Take back an annotation: your own human annotation within 30 minutes (undo), or any as an admin."""
    with ws_of(request).session() as s:
        found = records.locked_annotations(s, [annotation_id])  # not while a reviewer judges it
        if not found:
            raise HTTPException(404, f"No annotation {annotation_id}.")
        _check_undo(found[0], user)
        s.delete(found[0])
    return {"deleted": annotation_id}


@router.post("/annotations/undo")
def undo_many(body: UndoBody, request: Request, user: Principal = Depends(require("annotator"))) -> dict:
    """Take back a bulk edit (tagging, accepted suggestions) by its annotation ids: all or nothing. Ids already
    gone (e.g. undone one by one) are skipped."""
    with ws_of(request).session() as s:
        rows = records.locked_annotations(s, body.ids)
        for a in rows:
            _check_undo(a, user)
        for a in rows:
            s.delete(a)
    return {"deleted": len(rows)}


@router.post("/datasets/{name}/accept-suggestions")
def accept_suggestions(name: str, body: AcceptBody, request: Request,
                       user: Principal = Depends(require("annotator"))) -> dict:
    """Turn model suggestions with confidence >= threshold into the caller's labels, for unlabeled images of
    the filtered set. Images that already have a label are skipped, never overwritten."""
    with ws_of(request).session() as s:
        ds = records.get_dataset(s, name)
        if not body.dry_run:
            records.lock_dataset(s, ds)
        rows = views.apply(views.table(s, ds, body.image_ids), body.filters)
        added, skipped, low = [], 0, 0
        for r in rows:
            p = r.prediction
            if p is None or p["score"] < body.threshold:
                low += 1
            elif r.labels:
                skipped += 1
            elif body.dry_run:
                added.append(None)
            else:
                added.append(_add(s, r.id, list(p["labels"]), user, 0.0, p["run_id"]))
        s.flush()
        ids = [a.id for a in added if a is not None]
    # no automatic retraining here: the model's own labels do not count as new labels (see labels_since_last_run)
    return {"accepted": len(added), "skipped_labeled": skipped, "below_threshold": low, "dry_run": body.dry_run,
            "annotation_ids": ids}


def _retrain_if_due(request: Request, dataset: str, user: str) -> str | None:
    from pixclass.server.active import maybe_retrain  # active imports this module

    return maybe_retrain(request, dataset, user)
