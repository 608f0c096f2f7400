"""Active learning in the server: the "next to label" queue and automatic retraining after every N new labels."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from pixclass.server.auth import Principal, require
from pixclass.server.labeling import ws_of
from pixclass.store import records
from pixclass.train import active

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["active learning"])


class AutoTrainBody(BaseModel):
    every: int | None = Field(None, ge=1, description="Retrain (linear mode) after this many new human labels; "
                                                       "null turns automatic retraining off.")
    img_size: int = Field(224, ge=16)


@router.get("/datasets/{name}/queue")
def queue(name: str, request: Request, strategy: str = "margin", n: int = 50,
          _: Principal = Depends(require("viewer"))) -> dict:
    """Unlabeled images to label next, most useful first, by a strategy of ``train.active.STRATEGIES``.

    Scored with the serving run (the newest, unless an admin pinned one), so the order refreshes after every
    retraining."""
    return active.label_queue(ws_of(request), name, strategy, n, cache=request.app.state.queue_scores,
                              pool=request.app.state.tables.unlabeled).to_dict()


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
    params = {"mode": "linear", "img_size": conf["img_size"]}
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
