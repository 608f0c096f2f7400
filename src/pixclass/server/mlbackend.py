"""Label Studio ML-backend protocol at the server root: GET /health, POST /setup, /predict, /webhook.

Label Studio authenticates with HTTP basic auth (a pixclass user's name and password). /health and /setup
never load a model (Label Studio allows them 1 s and 3 s). Task images are fetched from LABEL_STUDIO_URL with
LABEL_STUDIO_API_KEY: a personal access token (Label Studio 1.22+, a JWT) is exchanged at /api/token/refresh for
a short-lived access token sent as `Authorization: Bearer ...`; a legacy token is sent as `Authorization: Token ...`.
Tasks pixclass exported (their data carries ``pixclass_image_id``) and local-files tasks whose path names one
registered image are read from the workspace instead.

Each project gets the dataset whose classes are its labeling config's choices (PIXCLASS_LS_DATASET overrides), so
one server serves several projects; a label the config does not offer is never sent. Request and response shapes
follow label-studio-ml-backend's api.py. A malformed body (not JSON, or a field of the wrong shape) is a 400
naming the field.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from pixclass.errors import DataError, NotFittedError, PixclassError
from pixclass.io.images import decode_bytes, load_rgb
from pixclass.io.labelstudio import ls_headers, ls_user
from pixclass.server.active import maybe_retrain
from pixclass.server.auth import Principal, require
from pixclass.store import records
from pixclass.store.tables import Annotation, Dataset, Image

log = logging.getLogger(__name__)
router = APIRouter(tags=["label-studio"])
MAX_IMAGE_BYTES = 50 * 1024 * 1024
DOWNLOADS = 4  # task images fetched at once from Label Studio
TRAIN_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED",
                "START_TRAINING")


@dataclass(frozen=True)
class Control:
    """The classification control of a labeling config: <Choices> or <Taxonomy> and the image it names."""

    from_name: str = "choice"
    to_name: str = "image"
    type: str = "choices"  # choices | taxonomy
    value_key: str = "image"  # task["data"] key holding the image URL
    values: tuple[str, ...] = ()  # what it offers: Choice values, or taxonomy paths "a/b/c"


def _taxonomy_paths(el: ET.Element, prefix: tuple[str, ...] = ()) -> list[str]:
    out = []
    for ch in el:
        if ch.tag == "Choice" and ch.get("value") is not None:
            path = (*prefix, ch.get("value") or "")
            out += _taxonomy_paths(ch, path) if any(c.tag == "Choice" for c in ch) else ["/".join(path)]
    return out


def controls(label_config: str | None) -> list[Control]:
    """Every <Choices> and <Taxonomy> of a labeling config, in order; [] if there is none or it does not parse."""
    if not label_config or len(label_config) > 1_000_000:
        return []
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError:
        return []
    images = {el.get("name"): (el.get("value") or "").lstrip("$") for el in root.iter() if el.tag == "Image"}
    out = []
    for el in root.iter():
        if el.tag in ("Choices", "Taxonomy") and el.get("name"):
            to = el.get("toName", "image")
            values = _taxonomy_paths(el) if el.tag == "Taxonomy" else [c.get("value") or "" for c in el
                                                                          if c.tag == "Choice"]
            out.append(Control(el.get("name"), to, el.tag.lower(), images.get(to) or to, tuple(values)))
    return out


def parse_config(label_config: str | None, classes: tuple[str, ...] = ()) -> Control:
    """The config's control for a dataset with ``classes``: the one offering most of them (a second control, say an
    image-quality flag, is left alone), else the first."""
    found = controls(label_config)
    return max(found, key=lambda c: len(set(c.values) & set(classes)), default=Control())  # first of equals


def dataset_for(s, settings, label_config: str | None) -> Dataset | None:
    """The dataset a Label Studio project works on: PIXCLASS_LS_DATASET, else one whose classes are all choices of
    one of the config's controls (which may offer more, say "other"). Among several: one with a trained run first
    (a copy imported from an export must not take the project from the dataset with the model), then the exact
    match, then the newest. None when none matches."""
    if settings.ls_dataset:
        return records.get_dataset(s, settings.ls_dataset)
    offered = [set(c.values) for c in controls(label_config) if c.values]
    if not offered:
        return None
    best, best_key = None, None
    for ds in s.scalars(select(Dataset).order_by(Dataset.id.desc())):
        classes = set(records.load_schema(s, ds).classes)
        fits = [o for o in offered if classes and classes <= o]
        if not fits:
            continue
        key = (records.latest_run(s, ds) is not None, any(classes == o for o in fits))
        if best_key is None or key > best_key:  # ties: the newer dataset, met first
            best, best_key = ds, key
    return best


def format_prediction(ctrl: Control, labels: list[str], score: float, version: str) -> dict:
    """One Label Studio prediction: result items with from_name/to_name/type/value, a score and model_version."""
    if ctrl.type == "taxonomy":
        value = {"taxonomy": [lab.split("/") for lab in labels]}
    else:
        value = {"choices": list(labels)}
    return {"result": [{"from_name": ctrl.from_name, "to_name": ctrl.to_name, "type": ctrl.type, "value": value,
                        "score": score}], "score": score, "model_version": version}


def labels_from_result(result: list[dict], from_name: str | None = None) -> list[str]:
    """The choices and taxonomy paths of an annotation's result items (of control ``from_name`` when given);
    DataError naming the field if malformed."""
    if not isinstance(result or [], list):
        raise DataError("field 'annotation.result' must be a list of result objects.")
    out: list[str] = []
    for i, item in enumerate(result or []):
        where = f"annotation.result[{i}]"
        if not isinstance(item, dict):
            raise DataError(f"field '{where}' must be an object with 'value'.")
        v = item.get("value") or {}
        if not isinstance(v, dict):
            raise DataError(f"field '{where}.value' must be an object.")
        choices, taxonomy = v.get("choices") or [], v.get("taxonomy") or []
        if not isinstance(choices, list):
            raise DataError(f"field '{where}.value.choices' must be a list of class names.")
        if not isinstance(taxonomy, list) or not all(isinstance(path, list) for path in taxonomy):
            raise DataError(f"field '{where}.value.taxonomy' must be a list of paths (lists of names).")
        if from_name is not None and item.get("from_name") != from_name:
            continue
        out += [str(c) for c in choices]
        out += ["/".join(map(str, path)) for path in taxonomy]
    return list(dict.fromkeys(out))


def fetch_image(url: str, base: str, key: str) -> bytes:
    """Bytes of a task image. Relative Label Studio URLs (/data/upload/..., /data/local-files/?d=...) are
    fetched from ``base``; absolute URLs only if they point at the same Label Studio."""
    try:
        return _fetch(url, base, key, ls_headers(base, key), retry=True)
    except _Expired:  # an access token Label Studio no longer takes: a fresh one, once
        return _fetch(url, base, key, ls_headers(base, key, fresh=True))


class _Expired(Exception):
    pass


# Where Label Studio serves task files: uploads and local files (/data/...), its storage proxy (/storage-data/...),
# cloud storage presigned through a task or project. Nothing else (its /api/) is fetched with the API key.
LS_MEDIA_PATHS = ("/data/", "/storage-data/", "/tasks/", "/projects/")


def _fetch(url: str, base: str, key: str, headers: dict[str, str], retry: bool = False) -> bytes:
    import httpx

    if url.startswith("/"):
        if not base:
            raise DataError(f"Task image {url} is a Label Studio URL; set LABEL_STUDIO_URL (and "
                            "LABEL_STUDIO_API_KEY) so that pixclass can download it.")
        full = base + url
    elif url.startswith(("http://", "https://")):
        if not base or urlparse(url)[:2] != urlparse(base)[:2]:
            raise DataError(f"Not fetching {url}: only images served by LABEL_STUDIO_URL ({base or 'unset'}).")
        full = url
    else:
        raise DataError(f"Unsupported task image reference {url[:100]!r}.")
    parts, prefix = urlparse(full), urlparse(base).path.rstrip("/")  # Label Studio may live under a path
    path = parts.path[len(prefix):] if parts.path.startswith(prefix) else parts.path
    where = unquote(parts.path + "?" + parts.query).replace("=", "/").replace("&", "/") + "/"
    if not path.startswith(LS_MEDIA_PATHS) or "/../" in where:
        raise DataError(f"Not fetching {full}: a task image must be one of Label Studio's files "
                        f"({', '.join(p + '...' for p in LS_MEDIA_PATHS)}), without '..'.")
    try:
        with httpx.stream("GET", full, headers=headers, timeout=10.0) as r:
            if r.status_code == 401 and retry and headers.get("Authorization", "").startswith("Bearer"):
                raise _Expired
            if r.status_code in (401, 403):
                raise DataError(f"{full}: Label Studio answered {r.status_code} (not allowed). Check "
                                f"LABEL_STUDIO_API_KEY{'' if key else ', which is not set'}.")
            if r.status_code == 404:
                raise DataError(f"{full}: Label Studio has no such file (404); the task's image may have been "
                                f"deleted or moved.")
            if r.status_code != 200:
                raise DataError(f"{full}: Label Studio answered {r.status_code}.")
            data = bytearray()
            for chunk in r.iter_bytes():
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    raise DataError(f"{full}: larger than {MAX_IMAGE_BYTES // 2**20} MB.")
            return bytes(data)
    except httpx.HTTPError as e:
        raise DataError(f"Cannot download {full}: {e}. Is LABEL_STUDIO_URL reachable?") from None


def _image_url(task: dict, ctrl: Control) -> str | None:
    data = task.get("data") or {}
    url = data.get(ctrl.value_key)
    if isinstance(url, str):
        return url
    return next((v for v in data.values() if isinstance(v, str) and v.startswith(("/data/", "http"))), None)


def _json_type(v: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(v), "a number")


async def _json_object(request: Request, fields: str) -> dict:
    """The request body as a JSON object, else a 400 saying what Label Studio should have sent."""
    if not (await request.body()).strip():
        raise HTTPException(400, f"The body is empty; send a JSON object with {fields}.")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):  # a cross-site form cannot send JSON
        raise HTTPException(415, f"Send the JSON object ({fields}) with Content-Type: application/json "
                                 f"(got {ctype or 'none'}).")
    try:
        body = await request.json()
    except ValueError:  # not JSON, or not UTF-8
        raise HTTPException(400, f"The body is not valid JSON; send a JSON object with {fields}.") from None
    if not isinstance(body, dict):
        raise HTTPException(400, f"The body is {_json_type(body)}; send a JSON object with {fields}.")
    return body


def _check_predict_body(body: dict) -> None:
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        got = _json_type(tasks) if "tasks" in body else "no such field"
        raise HTTPException(400, f"field 'tasks' must be a list of task objects; got {got}.")
    bad = next((i for i, t in enumerate(tasks) if not isinstance(t, dict)), None)
    if bad is not None:
        raise HTTPException(400, f"field 'tasks' must be a list of task objects; item {bad} is "
                                 f"{_json_type(tasks[bad])}.")
    bad = next((i for i, t in enumerate(tasks) if not isinstance(t.get("data") or {}, dict)), None)
    if bad is not None:
        raise HTTPException(400, f"field 'tasks[{bad}].data' must be an object.")
    if not isinstance(body.get("label_config") or "", str):
        raise HTTPException(400, "field 'label_config' must be a string (the project's labeling config XML).")


def _check_webhook_body(body: dict) -> None:
    """Shapes that annotation events need; other events (Label Studio sends many) are answered as unknown."""
    if body.get("action") == "ANNOTATIONS_CREATED":
        for key in ("task", "annotation"):
            if not isinstance(body.get(key), list) or not all(isinstance(x, dict) for x in body[key]):
                raise HTTPException(400, f"field '{key}' must be a list of objects for ANNOTATIONS_CREATED.")
        for i, annotation in enumerate(body["annotation"]):
            _check_annotation(annotation, f"annotation[{i}]")
        return
    if body.get("action") not in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        return
    for key in ("task", "annotation"):
        if not isinstance(body.get(key) or {}, dict):
            raise HTTPException(400, f"field '{key}' must be an object.")
    if not isinstance((body.get("task") or {}).get("data") or {}, dict):
        raise HTTPException(400, "field 'task.data' must be an object.")
    _check_annotation(body.get("annotation") or {}, "annotation")


def _check_annotation(annotation: dict, where: str) -> None:
    """The fields of a Label Studio annotation that pixclass stores: its id, its author and its time spent."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    lead = annotation.get("lead_time")
    if lead is not None and not (number(lead) and 0 <= lead < float("inf")):
        raise HTTPException(400, f"field '{where}.lead_time' must be a number of seconds (0 or more); got {lead!r}.")
    if annotation.get("id") is not None and not (isinstance(annotation["id"], str) or number(annotation["id"])):
        raise HTTPException(400, f"field '{where}.id' must be Label Studio's annotation id, a number or a string; "
                                 f"got {_json_type(annotation['id'])}.")
    by = annotation.get("completed_by")
    if by is not None and not (isinstance(by, (str, dict)) or number(by)):
        raise HTTPException(400, f"field '{where}.completed_by' must be a user id or a user object; got "
                                 f"{_json_type(by)}.")


@router.get("/health")
def health() -> dict:
    """Liveness for Label Studio and monitors: no auth, no database, no model."""
    return {"status": "UP", "model_class": "pixclass"}


@router.post("/setup")
async def setup(request: Request, _: Principal = Depends(require("viewer"))) -> dict:
    """Label Studio's connection check. Answers the model version at once and warms the model in the background."""
    cache = request.app.state.models
    try:
        body = await request.json()
    except ValueError:  # no body, or not JSON: the connection check still answers
        body = {}
    config = body.get("schema") if isinstance(body, dict) and isinstance(body.get("schema"), str) else None
    dataset = await run_in_threadpool(_dataset_name, request, config)
    run_id = await run_in_threadpool(cache.serving_run_id, dataset)
    if run_id is not None:
        threading.Thread(target=_warm, args=(cache, dataset), daemon=True, name="pixclass-warm").start()
    return {"model_version": records.model_version(run_id) if run_id is not None else "none"}


def _dataset_name(request: Request, label_config: str | None) -> str | None:
    with request.app.state.ws.session() as s:
        ds = dataset_for(s, request.app.state.settings, label_config)
        return ds.name if ds else None


def _warm(cache, dataset: str | None) -> None:
    try:
        cache.get(dataset=dataset)
    except PixclassError as e:
        log.warning("model warm-up failed: %s", e)


def _raise(e: Exception) -> np.ndarray:
    raise e


def _predict_tasks(request: Request, body: dict) -> tuple[list, list[dict]]:
    """(per task: a prediction, or [] for none; the reasons of the tasks left without one)."""
    settings, cache = request.app.state.settings, request.app.state.models
    config = body.get("label_config")
    with request.app.state.ws.session() as s:
        ds = dataset_for(s, settings, config)
        ds_id, dataset = (ds.id, ds.name) if ds else (None, None)
    try:
        handle = cache.get(dataset=dataset)
    except NotFittedError:
        return [], []  # no model yet: no predictions, not an error
    ctrl = parse_config(config, handle.decision_rule()[0].classes)
    tasks = body.get("tasks") or []
    with request.app.state.ws.session() as s:  # tasks exported by pixclass name their image: no download needed
        local = [im.path if (im := _find_image(s, t, ds_id)) is not None else None for t in tasks]

    def loader(pair: tuple[dict, str | None]) -> Callable[[], np.ndarray]:
        """The image's decoder; its download (if any) happens here, in the pool. A failure is a loader raising it."""
        task, path = pair
        if path is not None:
            return partial(load_rgb, path, handle.img_size)
        try:
            url = _image_url(task, ctrl)
            if url is None:
                raise DataError(f"Task {task.get('id')} has no image URL under data.{ctrl.value_key}.")
            data = fetch_image(url, settings.label_studio_url, settings.label_studio_api_key)
        except DataError as e:
            return partial(_raise, e)
        return partial(decode_bytes, data, handle.img_size, url)

    preds: list = []
    with ThreadPoolExecutor(max_workers=DOWNLOADS) as pool:  # Label Studio sends every selected task at once
        for start in range(0, len(tasks), 256):  # a few hundred images in memory at a time
            loaders = list(pool.map(loader, zip(tasks[start : start + 256], local[start : start + 256])))
            preds += handle.predict_loaded(loaders, [str(t.get("id")) for t in tasks[start : start + 256]], k=1)
    out: list = []
    errors = []
    for task, p in zip(tasks, preds):
        try:
            if isinstance(p, str):
                raise DataError(p)
            labels = list(p.labels)
            if not labels:
                raise DataError("the model is not confident of any class (no prediction).")
            foreign = [x for x in labels if ctrl.values and x not in ctrl.values]
            if foreign:
                raise DataError(f"the model's classes {foreign} are not choices of the labeling config "
                                f"(served by {handle.version}); set PIXCLASS_LS_DATASET to the project's dataset.")
            out.append(format_prediction(ctrl, labels, round(p.score, 6), handle.version))
        except DataError as e:
            log.warning("Label Studio task %s: %s", task.get("id"), e)
            out.append([])  # no prediction: Label Studio stores none, and asks again next time
            errors.append({"task": task.get("id"), "error": str(e)})
    return out, errors


@router.post("/predict")
async def ls_predict(request: Request, _: Principal = Depends(require("viewer"))) -> dict:
    """Predictions for Label Studio tasks: {"results": [one prediction per task]}; [] before any training.

    A task whose image cannot be fetched or decoded, or whose model answer is not a choice of the config, gets no
    prediction (an empty list in its place, so that Label Studio asks again later) and its reason in ``errors``
    ([{task, error}]), which Label Studio ignores and other callers can show."""
    body = await _json_object(request, "'tasks' (a list of task objects)")
    _check_predict_body(body)
    results, errors = await run_in_threadpool(_predict_tasks, request, body)
    return {"results": results, "errors": errors}


def _find_image(s, task: dict, dataset_id: int | None = None) -> Image | None:
    """The registered image of a task (of the given dataset): by the ``pixclass_image_id`` pixclass exported, or a
    local-files path that ends in a folder and file name and names exactly one image. A bare file name
    (IMG_0001.jpg) can be anyone's: such tasks are downloaded instead."""
    data = task.get("data") or {}
    for key in ("pixclass_image_id", "pixclass_id"):
        v = str(data.get(key, ""))
        if v.isascii() and v.isdigit() and len(v) < 19:  # an id that fits the integer column
            im = s.get(Image, int(v))
            return im if im is not None and dataset_id in (None, im.dataset_id) else None
    for v in data.values():
        if isinstance(v, str) and "?d=" in v:
            rel = parse_qs(urlparse(v).query).get("d", [""])[0].lstrip("/")
            if rel.count("/") < 1:
                return None
            q = select(Image).where(Image.path.endswith("/" + rel, autoescape=True))
            if dataset_id is not None:
                q = q.where(Image.dataset_id == dataset_id)
            found = s.scalars(q.limit(2)).all()
            return found[0] if len(found) == 1 else None
    return None


def _labeled_last(s) -> Dataset | None:
    """Without PIXCLASS_LS_DATASET, training follows the labels: the dataset Label Studio's annotations went to
    last, else the one labeled last in pixclass, else the newest dataset."""
    for who in (Annotation.author.startswith("label-studio:"), Annotation.source == "human"):
        last = s.scalar(select(Image.dataset_id).join(Annotation, Annotation.image_id == Image.id).where(who)
                        .order_by(Annotation.id.desc()).limit(1))
        if last is not None:
            return s.get(Dataset, last)
    return s.scalar(select(Dataset).order_by(Dataset.id.desc()).limit(1))


def _project_config(body: dict) -> str | None:
    """The labeling config Label Studio sends with the project of an event (webhooks with payloads do)."""
    project = body.get("project")
    config = project.get("label_config") if isinstance(project, dict) else None
    return config if isinstance(config, str) else None


def _register(ws, dataset: str, task: dict, config: str | None, settings) -> int:
    """Download a task's image from Label Studio into the dataset (as an upload); its image id. An image already
    there (same bytes) is that image."""
    import hashlib

    from pixclass.server import tasks

    url = _image_url(task, parse_config(config))
    if url is None:
        raise DataError(f"task {task.get('id')} has no image URL.")
    data = fetch_image(url, settings.label_studio_url, settings.label_studio_api_key)
    name = Path(parse_qs(urlparse(url).query).get("d", [""])[0] or urlparse(url).path).name or "label-studio.jpg"
    res = tasks.store_uploads(ws, dataset, [(name, data)])
    if res.rejected:
        raise DataError(res.rejected[0]["reason"])
    if res.added:
        return res.added[0]
    with ws.session() as s:
        sha = hashlib.sha256(data).hexdigest()
        return s.scalar(select(Image.id).where(Image.dataset_id == records.get_dataset(s, dataset).id,
                                               Image.sha256 == sha).limit(1))


def _webhook(request: Request, body: dict, user: Principal) -> tuple[dict, int]:
    ws, settings = request.app.state.ws, request.app.state.settings
    event = body.get("action")
    if event not in TRAIN_EVENTS:
        return {"status": "Unknown event"}, 200
    if event == "START_TRAINING":
        from pixclass.server import tasks

        with ws.session() as s:
            ds = dataset_for(s, settings, _project_config(body)) or _labeled_last(s)
            if ds is None:
                return {"status": "error", "error": "No dataset to train. Import one first."}, 201
            name = ds.name
        job = request.app.state.jobs.submit(
            "train", user.name, {"dataset": name, "source": "label-studio"},
            lambda progress: tasks.train_and_prelabel(ws, request.app.state.models, name, {"mode": "linear"},
                                                      progress))
        return {"status": "ok", "job": job.id}, 201
    config = _project_config(body)
    with ws.session() as s:  # once per event, however many annotations it carries
        ds = dataset_for(s, settings, config)
        project = (ds.id, ds.name) if ds else None
    if event == "ANNOTATIONS_DELETED":  # deleted in Label Studio: the votes they gave go too, but a reviewer's
        # verdict is only an admin's to take back (as DELETE /api/annotations/ID rules)
        ids = [f"label-studio:{a['id']}" for a in body.get("annotations") or [] if isinstance(a, dict) and "id" in a]
        with ws.session() as s:
            found = list(s.scalars(select(Annotation.id).where(Annotation.external_id.in_(ids)))) if ids else []
            rows = records.locked_annotations(s, found)  # not while a reviewer judges one of them
            kept = [a for a in rows if a.review and user.role != "admin"]
            for a in rows:
                if a not in kept:
                    s.delete(a)
        out = {"status": "ok", "deleted": len(rows) - len(kept)}
        if kept:
            out["kept"] = len(kept)
            out["reason"] = f"{len(kept)} reviewed vote(s) kept: only an admin can delete a reviewed annotation."
        return out, 201
    if event == "ANNOTATIONS_CREATED":  # several at once (say, "create annotations from predictions")
        pairs = list(zip(body.get("annotation") or [], body.get("task") or []))
        outs = [_store(request, config, project, task, annotation) for annotation, task in pairs]
        stored = [o for o in outs if o["stored"]]
        retrain = {o["dataset"] for o in stored}
        return {"status": "ok", "stored": len(stored), "image_ids": [o["image_id"] for o in stored],
                "retrain_jobs": [j for d in retrain if (j := maybe_retrain(request, d, user.name))]}, 201
    out = _store(request, config, project, body.get("task") or {}, body.get("annotation") or {})
    dataset = out.pop("dataset", None)
    if out["stored"]:  # a Label Studio label counts toward "retrain every N labels" like one made in our UI
        out["retrain_job"] = maybe_retrain(request, dataset, user.name)
    return out, 201


def _store(request: Request, config: str | None, project: tuple[int, str] | None, task: dict,
           annotation: dict) -> dict:
    """Store one Label Studio annotation as a vote on its task's image (of ``project``, the (id, name) of the
    project's dataset, when known): {"status", "stored", "image_id" or "reason", "dataset"}."""
    ws, settings = request.app.state.ws, request.app.state.settings
    labels_from_result(annotation.get("result", []))  # a malformed result is a 400 whatever the image
    by = annotation.get("completed_by")
    if isinstance(by, dict):
        who = by.get("email", by.get("id"))
    else:
        who = None if by is None else ls_user(settings.label_studio_url, settings.label_studio_api_key, by)
    author = "label-studio" if who is None else f"label-studio:{who}"[:200]  # no author given: Label Studio's
    external = f"label-studio:{annotation['id']}"[:100] if annotation.get("id") is not None else None
    with ws.session() as s:
        im = _find_image(s, task, project[0] if project else None)
        found = (project[1] if project else None, im.id if im else None)
    if found[1] is None and found[0] is not None:  # an image that lives in Label Studio: added to the dataset
        try:
            found = found[0], _register(ws, found[0], task, config, settings)
        except DataError as e:
            log.warning("Label Studio task %s: %s", task.get("id"), e)
            return {"status": "ok", "stored": 0, "reason": f"task image not registered in pixclass: {e}"}
    with ws.session() as s:
        im = s.get(Image, found[1]) if found[1] is not None else None
        labels = []
        if im is not None:  # with several controls (say, an image-quality flag too), the one with our classes
            records.lock_dataset(s, s.get(Dataset, im.dataset_id))
            several = len(controls(config)) > 1
            ctrl = parse_config(config, records.load_schema(s, s.get(Dataset, im.dataset_id)).classes)
            labels = labels_from_result(annotation.get("result", []), ctrl.from_name if several else None)
        if im is None or not labels:
            return {"status": "ok", "stored": 0, "reason": "task image not registered in pixclass"
                    if im is None else "no choices in the annotation"}
        ds = s.get(Dataset, im.dataset_id)
        schema = records.load_schema(s, ds)
        unknown = [x for x in labels if x not in schema.classes]
        if unknown:
            return {"status": "ok", "stored": 0, "reason": f"unknown classes {unknown}"}
        labels = list(dict.fromkeys(labels))
        if schema.task != "multilabel" and len(labels) != 1:  # a Choices control with choice="multiple"
            return {"status": "ok", "stored": 0, "image_id": im.id,
                    "reason": f"a {schema.task} image takes exactly one label; got {labels}"}
        same = s.scalar(select(Annotation).where(Annotation.image_id == im.id, Annotation.external_id == external
                                                 if external else Annotation.author == author)
                        .order_by(Annotation.id.desc()).limit(1))
        if same is not None and sorted(same.labels) == sorted(labels):  # an event sent again: stored once
            return {"status": "ok", "stored": 0, "image_id": im.id, "reason": "already stored"}
        lead = annotation.get("lead_time")
        lead = min(float(lead), 86400.0) if isinstance(lead, (int, float)) and not isinstance(lead, bool) \
            and lead >= 0 else None  # seconds, at most a day, as our own labels
        s.add(Annotation(image_id=im.id, labels=labels, source="human", author=author, time_spent=lead,
                         external_id=external))
        return {"status": "ok", "stored": 1, "image_id": im.id, "dataset": ds.name}


@router.post("/webhook")
async def webhook(request: Request, user: Principal = Depends(require("annotator"))) -> JSONResponse:
    """Label Studio events: ANNOTATION_CREATED/UPDATED (and ANNOTATIONS_CREATED, several at once) store the label
    (source human, author label-studio:USER) on the task's image; ANNOTATIONS_DELETED deletes the votes those
    annotations gave; START_TRAINING trains a linear run as a job."""
    body = await _json_object(request, "'action' and, for annotation events, 'task' and 'annotation'")
    _check_webhook_body(body)
    out, status = await run_in_threadpool(_webhook, request, body, user)
    return JSONResponse(out, status_code=status)
