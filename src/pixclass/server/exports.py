"""Downloads: a dataset's labels and the latest model's suggestions as Label Studio tasks, and the matching config."""

from __future__ import annotations

import json
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response

from pixclass.io.labelstudio import export_tasks, label_config, stored_predictions
from pixclass.server.auth import Principal, require
from pixclass.server.labeling import ws_of
from pixclass.store import records

router = APIRouter(prefix="/api", tags=["export"])


def _attachment(body: str, filename: str, media_type: str) -> Response:
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


@router.get("/datasets/{name}/export/labelstudio")
def labelstudio_tasks(name: str, request: Request,
                      predictions: bool = Query(True, description="Add the stored suggestions of the serving run."),
                      document_root: str | None = Query(None, description="Label Studio's LOCAL_FILES_DOCUMENT_ROOT; "
                                                                           "image URLs are relative to it."),
                      from_name: str | None = None, to_name: str = "image",
                      _: Principal = Depends(require("viewer"))) -> Response:
    """Label Studio tasks (JSON): one annotation per annotator and, with ``predictions``, the serving run's
    stored suggestion with its score as ``predictions`` (``model_version`` as the ML backend names the run).

    Suggestions are the ones stored by the last pre-labeling (training from the UI stores them); nothing is
    computed here."""
    ws = ws_of(request)
    preds, _, version = stored_predictions(ws, name) if predictions else ({}, "", "")
    tasks = export_tasks(ws, name, predictions=preds, model_version=version,
                         document_root=document_root, from_name=from_name, to_name=to_name)
    return _attachment(json.dumps(tasks, indent=1, ensure_ascii=False), f"{name}-labelstudio.json",
                       "application/json")


@router.get("/datasets/{name}/export/labelstudio.xml")
def labelstudio_config(name: str, request: Request, from_name: str | None = None, to_name: str = "image",
                       _: Principal = Depends(require("viewer"))) -> Response:
    """The Label Studio labeling config (XML) that matches the exported tasks."""
    with ws_of(request).session() as s:
        schema = records.load_schema(s, records.get_dataset(s, name))
    return _attachment(label_config(schema.classes, schema.task, from_name=from_name, to_name=to_name),
                       f"{name}-labelstudio.xml", "application/xml")
