"""Active learning in the server: the "next to label" queue and automatic retraining after every N new labels."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from pixclass.server.auth import Principal, require
from pixclass.server.labeling import image_of, votes_per_image, ws_of
from pixclass.store import claims, records
from pixclass.store.tables import Dataset
from pixclass.train import active

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["active learning"])


class AutoTrainBody(BaseModel):
    every: int | None = Field(None, ge=1, description="Retrain (linear mode, on the backbone of the last linear "
                                                       "run) after this many new human labels; null turns "
                                                       "automatic retraining off.")
    img_size: int = Field(224, ge=16)


INLINE_EMBEDDINGS = 64  # images a request embeds itself (about a second); more are left to a background job


def server_queue(request: Request, name: str, strategy: str, n: int, user: str) -> tuple[active.Queue, str | None]:
    """(the label queue, the id of a job embedding images first or None). Diversity order (kcenter, and the
    uncertainty strategies before any run exists) needs every image embedded: when more than INLINE_EMBEDDINGS are
    not yet, a background job embeds them and the queue is in random order until it is done. Images that other
    people have open (``store.claims``) are left out, so that several annotators get different images."""
    ws, jobs, tables = ws_of(request), request.app.state.jobs, request.app.state.tables

    def pool(s, ds) -> list:
        held = claims.held_by_others(ws.engine, ds.id, user)
        return [it for it in tables.to_label(s, ds, user, votes_per_image(s, ds)) if it.image_id not in held]

    kw = {"cache": request.app.state.models.scores, "pool": pool}  # kept per run, shared with pre-labeling
    try:
        return active.label_queue(ws, name, strategy, n, max_new_embeddings=INLINE_EMBEDDINGS, **kw), None
    except active.EmbeddingsNeeded as e:
        need = e  # the name `e` is gone after the except block; the job runs later
        job = jobs.submit_if_idle("embed", user, {"dataset": name, "images": need.missing},
                                  lambda progress: _embed(ws, need, progress), same=("dataset",))
        job = job or jobs.active("embed", dataset=name)
        log.info("%s: embedding %d images in job %s before diversity order", name, need.missing, job and job.id)
        return active.label_queue(ws, name, "random", n, **kw), job.id if job else None


def _embed(ws, need: active.EmbeddingsNeeded, progress) -> dict:
    from pixclass.data.embeddings import embed_decodable

    emb, broken = embed_decodable(ws, need.items, model=need.model, img_size=need.img_size, progress=progress)
    return {"embedded": need.missing, "broken": [{"path": need.items[i].path, "reason": r} for i, r in broken.items()]}


@router.get("/datasets/{name}/queue")
def queue(name: str, request: Request, strategy: str = "margin", n: int = 50,
          user: Principal = Depends(require("viewer"))) -> dict:
    """Unlabeled images to label next, most useful first, by a strategy of ``train.active.STRATEGIES``. With
    several votes per image (``PUT /api/datasets/NAME/votes``), images others labeled but you did not too.

    Scored with the serving run (the newest, unless an admin pinned one), so the order refreshes after every
    retraining. ``embedding_job``: diversity order waits for images to be embedded by that job; until it is done
    the queue is in random order (``strategy`` says which order you got)."""
    q, job = server_queue(request, name, strategy, n, user.name)
    return {**q.to_dict(), "embedding_job": job}


@router.post("/images/{image_id}/claim")
def claim_image(image_id: int, request: Request, user: Principal = Depends(require("annotator"))) -> dict:
    """Say you are labeling this image now, so that other people's label queues leave it out for
    ``claims.CLAIM_MINUTES`` minutes. ``claimed`` is false when someone else has it open (``user``): label queues
    then move on to the next image. Claiming an image lets your previous claim in its dataset go.
    ``votes_per_image``: the dataset's current setting. Read the image after claiming it: its
    ``answered_by_others`` then counts any label given before the claim."""
    ws = ws_of(request)
    with ws.session() as s:
        dataset_id = image_of(s, image_id).dataset_id
        votes = votes_per_image(s, s.get(Dataset, dataset_id))
    try:
        hold = claims.claim(ws.engine, dataset_id, image_id, user.name)
    except TimeoutError as e:
        raise HTTPException(503, str(e)) from e
    return {"image_id": image_id, "claimed": hold.mine, "user": hold.user, "until": hold.until.isoformat() + "Z",
            "votes_per_image": votes}


@router.delete("/images/{image_id}/claim")
def release_image(image_id: int, request: Request, user: Principal = Depends(require("annotator"))) -> dict:
    """Let your claim on this image go (you left it unlabeled); ``released`` is false if you held none."""
    return {"image_id": image_id, "released": claims.release(ws_of(request).engine, image_id, user.name)}


class VotesBody(BaseModel):
    votes_per_image: int = Field(1, ge=1, le=20, description="How many annotators should label each image: above "
                                                             "1, an image labeled by fewer people stays in the "
                                                             "label queues of those who have not labeled it.")


@router.put("/datasets/{name}/votes")
def set_votes(name: str, body: VotesBody, request: Request, _: Principal = Depends(require("admin"))) -> dict:
    """Ask for several annotators' labels on each image (for agreement and review); 1 (the default): one each."""
    with ws_of(request).session() as s:
        records.set_setting(s, records.get_dataset(s, name), "votes", body.model_dump())
    return {"dataset": name, **body.model_dump()}


def autotrain_rule(request: Request, dataset: str) -> dict | None:
    """The dataset's auto-retrain rule ({every, img_size}), stored in the workspace so it outlives a restart."""
    with ws_of(request).session() as s:
        return records.get_setting(s, records.get_dataset(s, dataset), "autotrain")


@router.put("/datasets/{name}/autotrain")
def set_autotrain(name: str, body: AutoTrainBody, request: Request, _: Principal = Depends(require("admin"))) -> dict:
    rule = None if body.every is None else body.model_dump()
    with ws_of(request).session() as s:
        records.set_setting(s, records.get_dataset(s, name), "autotrain", rule)
    return {"dataset": name, **(rule or {"every": None})}


@router.get("/datasets/{name}/autotrain")
def get_autotrain(name: str, request: Request, _: Principal = Depends(require("viewer"))) -> dict:
    with ws_of(request).session() as s:
        run = records.latest_run(s, records.get_dataset(s, name))
        last_run = run.id if run else None
    return {"dataset": name, "new_labels": active.labels_since_last_run(ws_of(request), name), "last_run": last_run,
            **(autotrain_rule(request, name) or {"every": None})}


def maybe_retrain(request: Request, dataset: str, user: str) -> str | None:
    """After a human label: start a train-and-prelabel job when the dataset's N new labels are reached. Labels
    given while it trains count toward the next round, which the same job runs when they reach N."""
    from pixclass.server import tasks

    conf = autotrain_rule(request, dataset)
    jobs = request.app.state.jobs
    if not conf or jobs.active("train", dataset=dataset):
        return None
    ws = ws_of(request)
    if active.labels_since_last_run(ws, dataset) < conf["every"]:
        return None
    with ws.session() as s:  # keep the backbone someone chose for the last linear run
        run = records.latest_run(s, records.get_dataset(s, dataset))
        model = run.model if run is not None and run.mode == "linear" else None
    params = {"mode": "linear", "img_size": conf["img_size"], **({"model": model} if model else {})}
    log.info("%s: %d new labels reached; retraining", dataset, conf["every"])

    def rounds(progress) -> dict:
        for _ in range(MAX_ROUNDS):
            out = tasks.train_and_prelabel(ws, request.app.state.models, dataset, params, progress)
            rule = autotrain_rule(request, dataset)
            if not rule or active.labels_since_last_run(ws, dataset) < rule["every"]:
                break
            log.info("%s: %d more labels while it trained; retraining again", dataset, rule["every"])
        return out

    job = jobs.submit_if_idle("train", user, {"dataset": dataset, "auto": True, **params}, rounds, same=("dataset",))
    return job.id if job else None  # None: another label's request started the retraining first


MAX_ROUNDS = 5  # retrainings one automatic job runs back to back while labels keep coming; the next label goes on
