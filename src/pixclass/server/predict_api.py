"""Prediction over REST (uploads or registered images), training and pre-labeling jobs, the list of runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from pixclass.config import MAX_IMG_SIZE, MIN_IMG_SIZE
from pixclass.errors import DataError
from pixclass.server import tasks
from pixclass.server.auth import Principal, require
from pixclass.server.labeling import read_uploads
from pixclass.server.models import Handle, runs_of
from pixclass.store import records
from pixclass.store.tables import Dataset, Image, Prediction, Run

router = APIRouter(prefix="/api", tags=["predict"])


class PredictIds(BaseModel):
    image_ids: list[int] = Field(min_length=1, max_length=1000, description="Registered image ids.")


_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}}},
    "application/json": {"schema": PredictIds.model_json_schema()},
}}}


def _pred(p, k: int, **extra) -> dict:
    return {**extra, "label": p.label, "labels": list(p.labels), "score": round(p.score, 6),  # label: '|'-joined
            "top": [{"label": lab, "score": round(sc, 6)} for lab, sc in p.top[:k]]}


async def _predict(request: Request, run_id: int | None, artifact: str | None, dataset: str | None, k: int,
                   batch: bool) -> dict:
    cache = request.app.state.models
    ctype = request.headers.get("content-type", "")
    out: list[dict] = []
    if ctype.startswith("application/json"):
        try:
            body = PredictIds.model_validate(await request.json())
        except ValidationError as e:
            why = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'body'}: {x['msg']}" for x in e.errors())
            raise HTTPException(422, f"Expected {{\"image_ids\": [1, 2, ...]}} ({why}).") from None
        except ValueError:
            raise HTTPException(422, "The body is not JSON. Expected {\"image_ids\": [1, 2, ...]}.") from None
        with request.app.state.ws.session() as s:
            rows = s.execute(select(Image.id, Image.path, Dataset.name).join(Dataset, Dataset.id == Image.dataset_id)
                             .where(Image.id.in_(body.image_ids))).all()
        paths = {i: p for i, p, _ in rows}
        missing = [i for i in body.image_ids if i not in paths]
        if missing:
            raise HTTPException(404, f"No images with ids {missing[:20]}.")
        if run_id is None and artifact is None and dataset is None:  # registered images: their dataset's model
            names = sorted({name for _, _, name in rows})
            if len(names) > 1:
                raise HTTPException(400, f"The images belong to several datasets ({', '.join(names)}). Ask per "
                                         f"dataset, or name the dataset or run_id to use.")
            dataset = names[0]
        handle: Handle = await run_in_threadpool(cache.get, run_id=run_id, artifact=artifact, dataset=dataset)
        preds = await run_in_threadpool(handle.predict_paths, [paths[i] for i in body.image_ids], k)
        for i, p in zip(body.image_ids, preds):
            if isinstance(p, str):
                if not batch:
                    raise HTTPException(400, p)
                out.append({"image_id": i, "error": p})
            else:
                out.append(_pred(p, k, image_id=i))
    elif ctype.startswith("multipart/form-data"):
        files = await read_uploads(request, request.app.state.settings)
        handle = await run_in_threadpool(cache.get, run_id=run_id, artifact=artifact, dataset=dataset)
        if not batch and len(files) > 1:
            raise HTTPException(400, "POST /api/predict takes one file; use /api/predict/batch for several.")
        for f in files:
            name = f.name
            try:
                p = await run_in_threadpool(lambda: handle.predict_bytes(f.read(), name, k))
                out.append(_pred(p, k, name=name))
            except DataError as e:
                if not batch:
                    raise HTTPException(400, str(e)) from None  # names the file and the reason
                out.append({"name": name, "error": str(e)})
    else:
        raise HTTPException(415, "Send multipart/form-data with a file, or JSON {\"image_ids\": [...]}.")
    return {"model_version": handle.version, "run_id": handle.run_id, "backend": handle.backend,
            "predictions": out}


RUN_ID = Query(None, description="Run id (default: the serving run: pinned by an admin, else the newest).")
ARTIFACT = Query(None, description="Artifact folder relative to WORKSPACE/runs.")
DATASET = Query(None, description="Use this dataset's serving run (default: the images' dataset for image ids, "
                                   "the dataset trained last for uploads).")
TOP_K = Query(5, ge=1, le=100, description="Labels per image.")


@router.post("/predict", openapi_extra=_BODY)
async def predict(request: Request, run_id: int | None = RUN_ID, artifact: str | None = ARTIFACT,
                  dataset: str | None = DATASET, k: int = TOP_K, _: Principal = Depends(require("viewer"))) -> dict:
    """Top-k labels and scores for one uploaded image (field `file`) or a JSON list of registered image ids.
    An undecodable image is a 400 with the reason."""
    return await _predict(request, run_id, artifact, dataset, k, batch=False)


@router.post("/predict/batch", openapi_extra=_BODY)
async def predict_batch(request: Request, run_id: int | None = RUN_ID, artifact: str | None = ARTIFACT,
                        dataset: str | None = DATASET, k: int = TOP_K,
                        _: Principal = Depends(require("viewer"))) -> dict:
    """Like /api/predict for many files (repeat the multipart field) or ids; bad images get an `error` entry."""
    return await _predict(request, run_id, artifact, dataset, k, batch=True)


MAX_JOBS_QUEUED = 2  # trainings, and pre-labelings asked for, per annotator (admins: no limit): one worker runs them


def _check_queue(jobs, user: Principal, kind: str, what: str) -> None:
    """429 when a non-admin already has MAX_JOBS_QUEUED jobs of ``kind`` queued or running."""
    mine = [j for j in jobs.list() if j.kind == kind and j.user == user.name and not j.finished]
    if user.role != "admin" and len(mine) >= MAX_JOBS_QUEUED:
        raise HTTPException(429, f"You have {len(mine)} {what} queued or running (at most {MAX_JOBS_QUEUED}). "
                                 "Wait for them, or cancel one in the Jobs tab.")


class TrainBody(BaseModel):
    dataset: str
    mode: str = Field("linear", pattern="^(linear|finetune)$")
    model: str = "mobilenetv2_100"
    img_size: int = Field(224, ge=MIN_IMG_SIZE, le=MAX_IMG_SIZE)
    epochs: int = Field(10, ge=1, le=1000)
    time_budget: float | None = Field(None, gt=0)


def _check_model(name: str) -> None:
    """ConfigError (a 400) for a model name that `pixclass models` would not know, before any job is queued."""
    try:  # torch is needed to train at all; a server without it lets the job report that
        from pixclass.models.classical import CLASSICAL
        from pixclass.models.registry import check_model_name
    except ImportError:
        return
    if name not in CLASSICAL:
        check_model_name(name)


@router.post("/train")
def train(body: TrainBody, request: Request, user: Principal = Depends(require("annotator"))) -> dict:
    """Train a run as a background job (linear mode takes seconds to a minute), then pre-label the dataset with it.
    Poll GET /api/jobs/{id} for progress. An unknown dataset or model name is a 400 at once. The same training
    already queued or running is answered with that job (``already``: true), not started twice.

    Jobs run one at a time, so an annotator's fine-tuning gets a time budget of at most
    PIXCLASS_ANNOTATOR_TRAIN_MINUTES (60), and an annotator has at most MAX_JOBS_QUEUED trainings queued or
    running; DELETE /api/jobs/{id} cancels one."""
    ws, jobs, cache = request.app.state.ws, request.app.state.jobs, request.app.state.models
    with ws.session() as s:
        records.get_dataset(s, body.dataset)
    _check_model(body.model)
    if user.role != "admin":
        cap = request.app.state.settings.annotator_train_minutes * 60
        if body.mode == "finetune" and (body.time_budget is None or body.time_budget > cap):
            body = body.model_copy(update={"time_budget": cap})
    params = body.model_dump(exclude={"dataset"}, exclude_none=True)
    same = jobs.active("train", **body.model_dump())  # a second click, or a colleague's: the job already coming
    if same is not None:
        return {**same.to_dict(), "already": True}
    _check_queue(jobs, user, "train", "trainings")
    return jobs.submit("train", user.name, body.model_dump(),
                       lambda progress: tasks.train_and_prelabel(ws, cache, body.dataset, params, progress)).to_dict()


class PrelabelBody(BaseModel):
    run_id: int | None = None


@router.post("/datasets/{name}/prelabel")
def prelabel(name: str, request: Request, body: PrelabelBody | None = None,
             user: Principal = Depends(require("annotator"))) -> dict:
    """Store the suggestions of a run (default: the dataset's serving run) for every image, as a background job.
    The same pre-labeling already queued or running is answered with that job (``already``: true); an annotator
    has at most MAX_JOBS_QUEUED of them queued or running."""
    ws, cache, jobs = request.app.state.ws, request.app.state.models, request.app.state.jobs
    with ws.session() as s:
        records.get_dataset(s, name)
    run_id = body.run_id if body else None
    same = jobs.active("predict", dataset=name, run_id=run_id, only_missing=None, images=None)  # all images
    if same is not None:
        return {**same.to_dict(), "already": True}
    _check_queue(jobs, user, "predict", "pre-labelings")
    return jobs.submit(
        "predict", user.name, {"dataset": name, "run_id": run_id},
        lambda progress: tasks.prelabel(ws, cache, name, run_id=run_id, progress=progress)).to_dict()


@router.get("/runs")
def runs(request: Request, dataset: str | None = Query(None, description="Only this dataset's runs."),
         _: Principal = Depends(require("viewer"))) -> list[dict]:
    """The newest 50 runs, each with ``serving``: whether it answers for its dataset now."""
    return runs_of(request.app.state.ws, dataset)


class ServingBody(BaseModel):
    run_id: int | None = Field(description="A finished run of the dataset to pin; null: the newest run serves.")


@router.put("/datasets/{name}/serving-run")
def set_serving_run(name: str, body: ServingBody, request: Request,
                    user: Principal = Depends(require("admin"))) -> dict:
    """Choose the run behind the dataset's suggestions, /api/predict, the Label Studio backend and the label queue.
    A pinned run keeps serving while newer runs are trained; unpin to follow the newest again. Images the run has
    no stored suggestion for (``missing_suggestions``, e.g. uploaded since it was trained) get them from a
    pre-labeling job (its id in ``prelabel_job``)."""
    ws = request.app.state.ws
    with ws.session() as s:
        ds = records.get_dataset(s, name)
        if body.run_id is not None:
            run = s.get(Run, body.run_id)
            if run is None or run.dataset_id != ds.id or run.status != "done":
                raise HTTPException(404, f"No finished run {body.run_id} of dataset {name!r}. "
                                         f"GET /api/runs?dataset={name} lists them.")
        records.set_setting(s, ds, "serving_run", None if body.run_id is None else {"run_id": body.run_id})
        serving = records.serving_run(s, ds)
        serving_id = serving.id if serving else None
        missing = 0 if serving_id is None else s.scalar(
            select(func.count(Image.id)).where(Image.dataset_id == ds.id, Image.id.not_in(
                select(Prediction.image_id).where(Prediction.run_id == serving_id))))
    out = {"dataset": name, "pinned_run": body.run_id, "serving_run": serving_id, "prelabel_job": None,
           "missing_suggestions": missing}
    if missing:
        cache = request.app.state.models
        out["prelabel_job"] = request.app.state.jobs.submit(
            "predict", user.name, {"dataset": name, "run_id": serving_id, "only_missing": True},
            lambda progress: tasks.prelabel(ws, cache, name, run_id=serving_id, only_missing=True,
                                            progress=progress)).id
    return out
