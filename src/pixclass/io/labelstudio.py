"""Label Studio interop: read its JSON exports, write our labels and predictions as Label Studio tasks.

Shapes (Label Studio "JSON" export and pre-annotation import format)::

    [{"data": {"image": "/data/local-files/?d=shoes/1.jpg"},
      "annotations": [{"result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                                   "value": {"choices": ["shoes"]}}], "was_cancelled": false}],
      "predictions": [{"model_version": "...", "score": 0.93,
                       "result": [{"from_name": ..., "to_name": ..., "type": "choices",
                                   "value": {"choices": ["shoes"]}, "score": 0.93}]}]}]

The "JSON-MIN" export (one flat record per annotation: the task's data fields plus, per control, a single choice as
text, ``{"choices": [...]}`` for several, or ``[{"taxonomy": [[...]]}]``) is read too, converted to the shape above,
and so is the "CSV" export (the same records as rows; several choices and taxonomies are JSON text in their cells).

Choices give one label (single) or several (multiple: a multilabel dataset); Taxonomy gives paths
(``{"taxonomy": [["clothes", "shoes"]]}``), stored as '/'-joined hierarchical class names.
Images are local files: ``/data/local-files/?d=REL`` is resolved against the document root (Label Studio's
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, also read from the environment), ``/data/upload/N/F`` against Label Studio's
data folder (``<ls_data_dir>/media/upload/N/F``) or the root's ``media/upload``; remote URLs are reported as broken,
never downloaded. Resolved paths are absolute, so they do not depend on the working directory.
"""

from __future__ import annotations

import base64
import csv
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select

from pixclass.errors import DataError
from pixclass.io.images import IMAGE_EXTENSIONS
from pixclass.io.sources import SPLIT_NAMES, Entry
from pixclass.store import Workspace, records
from pixclass.store.tables import Image, Prediction, Run

log = logging.getLogger(__name__)

CLASSIFICATION_TYPES = ("choices", "taxonomy")
IMAGE_KEYS = ("image", "img", "image_url", "url", "path", "file", "filename")
REMOTE_SCHEMES = ("http", "https", "s3", "gs", "azure-blob", "ftp")
# Environment variables naming Label Studio's local-files document root: its own name, and the short one.
DOCUMENT_ROOT_ENV = ("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", "LOCAL_FILES_DOCUMENT_ROOT")
# Fields Label Studio's JSON-MIN export adds to each record besides the task data and the results.
MIN_META = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "split")


@dataclass(frozen=True)
class Vote:
    """One Label Studio annotation of a task, stored as the vote the webhook would have stored for it: source human,
    author ``label-studio:EMAIL`` (or the user id), ``external_id`` ``label-studio:ANNOTATION_ID``. An annotation
    that names no annotator (a hand-written export) is an import vote, as labels from a folder are."""

    labels: tuple[str, ...]
    source: str = "import"  # import | human
    author: str = "import"
    external_id: str | None = None
    time_spent: float | None = None  # seconds (Label Studio's lead_time)
    at: datetime | None = None  # when it got these labels (naive UTC, as the store keeps times)
    accepted: bool = False  # Label Studio's ground truth: the reviewer's pick


@dataclass(frozen=True)
class LSEntry(Entry):
    """An Entry whose image could not be resolved carries the reason; the importer records it as broken.
    ``votes``: every annotator's labels, the one that gives ``labels`` last."""

    reason: str = ""
    ref: str = ""  # the image reference as written in the export
    votes: tuple[Vote, ...] = ()


# ---------------------------------------------------------------- reading exports

def is_labelstudio_csv(path: Path) -> bool:
    """A Label Studio CSV export: its header has the JSON-MIN meta columns and no ``path`` column."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = {c.strip().lower() for c in next(csv.reader(f), [])}
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return "path" not in header and {"annotation_id", "lead_time"} <= header


def _cell(value: str) -> object:
    """A CSV cell as JSON-MIN has it: several choices and taxonomies are JSON text, everything else plain."""
    v = value.strip()
    if v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            pass
    return v


def _load_csv(path: Path) -> list:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable UTF-8 CSV ({e}). Export the project from Label Studio as 'CSV' "
                        f"or 'JSON'.") from None
    # Empty cells are fields the annotation did not fill (an unlabeled task has an empty choice column).
    return [{k.strip(): _cell(v) for k, v in row.items() if k and isinstance(v, str) and v.strip()} for row in rows]


def _load(path: Path) -> list:
    if path.suffix.lower() == ".csv":
        return _load_csv(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). "
                        f"Export the project from Label Studio as 'JSON'.") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason}). "
                        f"Export the project from Label Studio as 'JSON'.") from None
    if isinstance(data, dict) and isinstance(data.get("tasks"), list):
        data = data["tasks"]
    elif isinstance(data, dict) and "data" in data:
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of Label Studio tasks (the project's JSON export), "
                        f"found a JSON {type(data).__name__}.")
    return data


def _is_json_min(tasks: list) -> bool:
    """JSON-MIN records are flat: no 'data' object, the image reference at the top level."""
    return bool(tasks) and all(isinstance(t, dict) and "data" not in t for t in tasks) and any(
        isinstance(t.get(k), str) for t in tasks for k in IMAGE_KEYS)


def _min_results(name: str, value: object) -> list[dict]:
    """Full-format result items for one JSON-MIN field (none when the field is not a classification)."""
    if isinstance(value, str):
        return [{"from_name": name, "type": "choices", "value": {"choices": [value]}}]
    out = []
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, dict):
            out += [{"from_name": name, "type": kind, "value": {kind: v[kind]}} for kind in CLASSIFICATION_TYPES
                    if kind in v]
    return out


def _looks_like_image(value: str) -> bool:
    v = value.strip().lower()
    return "://" in v or v.startswith(("/", "./")) or Path(v.split("?")[0]).suffix in IMAGE_EXTENSIONS


def _from_json_min(records: list, data_key: str | None) -> list[dict]:
    """JSON-MIN records -> tasks in the full export shape, one task per image (several annotators' records are
    merged into one task with several annotations)."""
    skip = {*MIN_META, *IMAGE_KEYS, *([data_key] if data_key else [])}
    structured = {k for r in records for k, v in r.items() if k not in skip and not isinstance(v, str)
                  and _min_results(k, v)}
    # A single choice is plain text, like a data field: without structured results, text fields that do not look
    # like image references are taken as choices (several of them make read_labelstudio ask for from_name).
    controls = structured or {k for r in records for k, v in r.items()
                              if k not in skip and isinstance(v, str) and v.strip() and not _looks_like_image(v)}
    tasks: dict[object, dict] = {}
    for r in records:
        data = {k: v for k, v in r.items() if k not in controls and k not in MIN_META or k == "split"}
        key = r.get("id") if r.get("id") is not None else json.dumps(data, sort_keys=True, default=str)
        task = tasks.setdefault(key, {"id": r.get("id"), "data": data, "annotations": []})
        results = [item for k in sorted(controls) if k in r for item in _min_results(k, r[k])]
        if results:
            task["annotations"].append({"result": results, "created_at": r.get("created_at"),
                                        "updated_at": r.get("updated_at"), "completed_by": r.get("annotator"),
                                        "id": r.get("annotation_id"), "lead_time": r.get("lead_time")})
    return list(tasks.values())


def _where(path: Path, i: int, task: dict) -> str:
    tid = task.get("id") if isinstance(task, dict) else None
    return f"{path}, task {i}" + (f" (id {tid})" if tid is not None else "")


def _result_labels(item: dict, where: str) -> list[str]:
    kind = item.get("type")
    value = item.get("value")
    if not isinstance(value, dict) or not isinstance(value.get(kind), list):
        raise DataError(f"{where}: field 'value.{kind}' must be a list (got {value!r:.80}).")
    if kind == "choices":
        bad = [c for c in value["choices"] if not isinstance(c, str) or not c.strip()]
        if bad:
            raise DataError(f"{where}: field 'value.choices' holds a non-text or empty choice {bad[0]!r}.")
        return [c.strip() for c in value["choices"]]
    out = []
    for p in value["taxonomy"]:
        if not isinstance(p, list) or not p or not all(isinstance(s, str) and s.strip() for s in p):
            raise DataError(f"{where}: field 'value.taxonomy' must be a list of paths (lists of names); got {p!r}.")
        out.append("/".join(s.strip().replace("/", "-") for s in p))
    return out


def _annotation_labels(ann: dict, where: str, from_name: str | None) -> list[str] | None:
    """Labels of one annotation (None: it has no classification result for ``from_name``)."""
    result = ann.get("result")
    if not isinstance(result, list):
        raise DataError(f"{where}: field 'result' must be a list of regions.")
    labels: list[str] | None = None
    for j, item in enumerate(result):
        if not isinstance(item, dict):
            raise DataError(f"{where}, result {j}: each result must be an object with from_name, type and value.")
        if item.get("type") not in CLASSIFICATION_TYPES or (from_name and item.get("from_name") != from_name):
            continue
        labels = (labels or []) + [x for x in _result_labels(item, f"{where}, result {j}") if x not in (labels or [])]
    return labels


def _time(value: object) -> datetime | None:
    """An ISO time from an export (``2024-01-01T10:00:00.123Z``) as naive UTC; None when absent or unreadable."""
    text = str(value).strip()
    try:
        at = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)  # Python 3.10 has no Z
    except ValueError:
        return None
    return at.astimezone(timezone.utc).replace(tzinfo=None) if at.tzinfo else at


def _vote(ann: dict, labels: list[str], name: Callable[[object], str]) -> Vote:
    """``name``: a Label Studio user id -> how the user appears as an author (see ls_user)."""
    by = ann.get("completed_by")
    who = by.get("email") or by.get("id") if isinstance(by, dict) else by
    who = name(who) if isinstance(who, int) and not isinstance(who, bool) else who
    lead = ann.get("lead_time")
    time_spent = float(lead) if isinstance(lead, (int, float)) and not isinstance(lead, bool) and lead >= 0 else None
    at = _time(ann.get("updated_at") or ann.get("created_at") or "")
    if who is None or who == "" or isinstance(who, bool):
        return Vote(tuple(labels), time_spent=time_spent, at=at, accepted=ann.get("ground_truth") is True)
    return Vote(tuple(labels), "human", f"label-studio:{who}"[:200],
                f"label-studio:{ann['id']}"[:100] if ann.get("id") is not None else None, time_spent, at,
                ann.get("ground_truth") is True)


def _controls(tasks: list) -> set[str]:
    names = set()
    for task in tasks:
        if not isinstance(task, dict):
            continue
        for ann in (task.get("annotations") or task.get("completions") or []):
            for item in (ann.get("result") or []) if isinstance(ann, dict) else []:
                if isinstance(item, dict) and item.get("type") in CLASSIFICATION_TYPES:
                    names.add(str(item.get("from_name")))
    return names


def _image_ref(task: dict, where: str, data_key: str | None) -> str:
    data = task.get("data")
    if not isinstance(data, dict):
        raise DataError(f"{where}: field 'data' is missing or not an object; each task needs data with an image.")
    if data_key:
        keys = [data_key]
    else:
        keys = [k for k in IMAGE_KEYS if isinstance(data.get(k), str)]
        keys += [k for k, v in data.items() if isinstance(v, str) and k not in keys and not k.startswith("pixclass")]
    for k in keys:
        if isinstance(data.get(k), str) and data[k].strip():
            return data[k].strip()
    raise DataError(f"{where}: no image reference in field 'data' (keys: {', '.join(map(str, data)) or 'none'}). "
                    f"Name the key holding the image.")


def _dir(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def document_roots(document_root: str | Path | None = None) -> list[Path]:
    """The folders local-files references are resolved against: the given one, then those the environment names
    (DOCUMENT_ROOT_ENV, read at call time), absolute and without repeats."""
    roots = [_dir(r) for r in (document_root, *(os.environ.get(k) for k in DOCUMENT_ROOT_ENV)) if r]
    return list(dict.fromkeys(roots))


def resolve_image(ref: str, *, base: Path, document_root: str | Path | None = None,
                  ls_data_dir: str | Path | None = None) -> tuple[Path | None, str]:
    """A Label Studio image reference -> (absolute local path, "") or (None, why it cannot be resolved).

    ``/data/local-files/?d=REL``: REL under the document root (or the environment's, see DOCUMENT_ROOT_ENV), ``base``
    (the export's folder) or '/'. ``/data/upload/N/F``: ``<ls_data_dir>/media/upload/N/F``, else the same under the
    document root or ``base``. Anything else: a path, relative ones from ``base``."""
    base = _dir(base)
    roots = document_roots(document_root)
    parts = urlsplit(ref)
    if parts.path.endswith("/data/local-files/") or parts.path.endswith("/data/local-files"):
        rel = unquote(parse_qs(parts.query).get("d", [""])[0])
        if not rel:
            return None, f"Label Studio local-files URL without a 'd' parameter: {ref}"
        for root in [*roots, base, Path("/")]:
            cand = root / rel.lstrip("/") if root != Path("/") else Path("/") / rel.lstrip("/")
            if cand.is_file():
                return cand, ""
        here = [(root, root / rel.lstrip("/")) for root in [*roots, Path("/")]]
        gone = [p for root, p in here if p.parent not in (root, Path("/")) and p.parent.is_dir()]
        if gone:  # its own folder is there: the file was deleted or moved, the document root is not the problem
            return None, f"Label Studio local file {gone[0]} not found (deleted or moved?)."
        where = ", ".join(map(str, roots)) or f"{base} (the export's folder; no document root given)"
        return None, (f"Label Studio local file {rel!r} not found under {where}. Give the folder Label Studio's "
                      f"LOCAL_FILES_DOCUMENT_ROOT points to as the document root (pixclass import --document-root, "
                      f"or set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT).")
    if "/data/upload/" in parts.path:
        rel = unquote(parts.path.split("/data/upload/", 1)[1])
        data_dir = [_dir(ls_data_dir)] if ls_data_dir else []
        for root in [*data_dir, *roots, base]:
            for cand in (root / "media" / "upload" / rel, root / "upload" / rel, root / rel, root / Path(rel).name):
                if cand.is_file():
                    return cand, ""
        if data_dir:
            return None, (f"{ref}: a file uploaded into Label Studio, not found at "
                          f"{data_dir[0] / 'media' / 'upload' / rel}. Check that the Label Studio data folder is "
                          f"the one of the instance the export came from.")
        return None, (f"{ref}: a file uploaded into Label Studio. Give Label Studio's data folder, the one holding "
                      f"media/upload (pixclass import --ls-data-dir), or use local-files storage.")
    if parts.scheme.lower() in REMOTE_SCHEMES:
        return None, f"{ref}: a remote URL; pixclass imports local files only. Download the images, then import them."
    local = Path(unquote(parts.path) if parts.scheme == "file" else ref).expanduser()
    local = local if local.is_absolute() else base / local
    if local.is_file():
        return local, ""
    return None, f"{ref}: file not found (looked at {local})."


def read_labelstudio(path: str | Path, *, document_root: str | Path | None = None, from_name: str | None = None,
                     data_key: str | None = None, ls_data_dir: str | Path | None = None) -> list[Entry]:
    """Entries (path, labels, split) of a Label Studio JSON export. The newest non-cancelled annotation of a task
    gives its labels; tasks without one are unlabeled. Every annotation is a ``Vote`` of its annotator, so several
    annotators' labels come in as they would through the webhook: with LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY
    set, the user ids of the export are looked up as emails, as the ML backend does. Unresolvable images come back
    with a ``reason``.

    ``document_root`` resolves local-files images, ``ls_data_dir`` (Label Studio's data folder, holding
    media/upload) uploaded ones, see resolve_image; ``from_name`` picks the Choices/Taxonomy control when the
    annotations use several."""
    path = _dir(path)
    tasks = _load(path)
    if _is_json_min(tasks):
        tasks = _from_json_min(tasks, data_key)
    controls = _controls(tasks)
    if from_name is None and len(controls) > 1:
        raise DataError(f"{path}: annotations use several classification controls ({', '.join(sorted(controls))}). "
                        f"Choose one with from_name (the Choices/Taxonomy name in the labeling config; "
                        f"pixclass import --from-name).")
    if from_name is not None and controls and from_name not in controls:
        raise DataError(f"{path}: no annotation uses a classification control named {from_name!r}. "
                        f"The annotations use: {', '.join(sorted(controls))}.")
    base, key = os.environ.get("LABEL_STUDIO_URL", "").rstrip("/"), os.environ.get("LABEL_STUDIO_API_KEY", "")
    names: dict[object, str] = {}  # exports give user ids: their emails, asked once each (when Label Studio is set)

    def name(user_id: object) -> str:
        if user_id not in names:
            names[user_id] = ls_user(base, key, user_id)
        return names[user_id]

    out: list[Entry] = []
    for i, task in enumerate(tasks):
        where = _where(path, i, task)
        if not isinstance(task, dict):
            raise DataError(f"{where}: each task must be an object with 'data' and 'annotations'.")
        ref = _image_ref(task, where, data_key)
        anns = task.get("annotations", task.get("completions")) or []
        if not isinstance(anns, list):
            raise DataError(f"{where}: field 'annotations' must be a list.")
        # the label: a ground-truth annotation first (a reviewer's pick), else the newest that is not cancelled;
        # every annotation is its annotator's vote, that one last
        live = [(a.get("ground_truth") is True, str(a.get("updated_at") or a.get("created_at") or ""), k, a)
                for k, a in enumerate(anns) if isinstance(a, dict) and not a.get("was_cancelled")]
        given = [(ann, got) for *_, k, ann in sorted(live, key=lambda t: t[:3])
                 if (got := _annotation_labels(ann, f"{where}, annotation {k}", from_name)) is not None]
        labels = given[-1][1] if given else []  # an empty choice list leaves the image unlabeled, as before
        votes = [_vote(ann, got, name) for ann, got in given if got] if labels else []
        raw_split = str(task["data"].get("split") or "").strip().lower()
        split = SPLIT_NAMES.get(raw_split)
        local, reason = resolve_image(ref, base=path.parent, document_root=document_root, ls_data_dir=ls_data_dir)
        out.append(LSEntry(local or Path(ref), tuple(labels), split, reason, ref, tuple(votes)))
    log.info("%s: %d tasks, %d labeled, %d unresolvable", path, len(out), sum(bool(e.labels) for e in out),
             sum(bool(getattr(e, "reason", "")) for e in out))
    return out


# ---------------------------------------------------------------- Label Studio's API (the ML backend, import)

_ACCESS: dict[tuple[str, str], tuple[str, float]] = {}  # (Label Studio URL, personal token) -> (access token, expiry)


def _jwt_exp(token: str) -> float | None:
    try:
        part = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def ls_headers(base: str, key: str, *, fresh: bool = False) -> dict[str, str]:
    """The Authorization header for Label Studio. A personal access token (a JWT) is a refresh token: it is
    exchanged at /api/token/refresh for an access token, kept until shortly before it expires."""
    import httpx

    if not key:
        return {}
    if key.count(".") != 2:  # a legacy token
        return {"Authorization": f"Token {key}"}
    cached = _ACCESS.get((base, key))
    if cached and not fresh and cached[1] > time.time() + 30:
        return {"Authorization": f"Bearer {cached[0]}"}
    try:
        r = httpx.post(f"{base}/api/token/refresh", json={"refresh": key}, timeout=10.0)
    except httpx.HTTPError as e:
        raise DataError(f"Cannot reach {base}/api/token/refresh: {e}. Is LABEL_STUDIO_URL reachable?") from None
    access = r.json().get("access") if r.status_code == 200 and "json" in r.headers.get("content-type", "") else None
    if not isinstance(access, str):
        raise DataError(f"Label Studio did not accept LABEL_STUDIO_API_KEY as a personal access token "
                        f"({r.status_code} from /api/token/refresh). Create a new one in Label Studio (Account & "
                        f"Settings) or give a legacy token.")
    _ACCESS[(base, key)] = (access, _jwt_exp(access) or time.time() + 240)
    return {"Authorization": f"Bearer {access}"}


_USERS: dict[tuple[str, int], str] = {}  # (Label Studio URL, user id) -> email


def ls_user(base: str, key: str, user_id: object) -> str:
    """How a Label Studio user appears as an author: their email, looked up once per id at ``base`` (Label Studio's
    URL) with ``key`` (webhooks and exports give only the id); the id itself when Label Studio is not set up or does
    not say."""
    import httpx

    if not base or isinstance(user_id, bool) or not isinstance(user_id, int):
        return str(user_id)
    if (base, user_id) not in _USERS:
        try:
            r = httpx.get(f"{base}/api/users/{user_id}", headers=ls_headers(base, key), timeout=5.0)
            email = r.json().get("email") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError, DataError):
            email = None
        if not isinstance(email, str) or not email:
            return str(user_id)
        _USERS[(base, user_id)] = email
    return _USERS[(base, user_id)]


# ---------------------------------------------------------------- writing tasks

@dataclass(frozen=True)
class TaskPrediction:
    """One model suggestion for an image, as Label Studio shows it."""

    labels: tuple[str, ...]
    score: float


def image_url(path: str | Path, document_root: str | Path | None = None) -> str:
    """``/data/local-files/?d=REL`` for a local image; REL is relative to the document root ('/' when none)."""
    p = Path(path).resolve()
    root = Path(document_root).expanduser().resolve() if document_root else Path("/")
    try:
        rel = p.relative_to(root)
    except ValueError:
        raise DataError(f"{p} is not under the document root {root}. Give a root folder that holds every image "
                        f"(and set Label Studio's LOCAL_FILES_DOCUMENT_ROOT to it).") from None
    return f"/data/local-files/?d={rel.as_posix()}"


def _result(labels: Sequence[str], task: str, from_name: str, to_name: str, score: float | None = None) -> dict:
    if task == "hierarchical":
        item = {"from_name": from_name, "to_name": to_name, "type": "taxonomy",
                "value": {"taxonomy": [lab.split("/") for lab in labels]}}
    else:
        item = {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": list(labels)}}
    if score is not None:
        item["score"] = round(float(score), 6)
    return item


def stored_predictions(ws: Workspace, dataset: str, run_path: str | Path | None = None
                       ) -> tuple[dict[int, TaskPrediction], str, str]:
    """The stored predictions (pre-labels) of a run of ``dataset``, default the one serving it, keyed by image id.

    Returns (predictions, run path, model version): the path is "" when the dataset has no run; the predictions are
    empty when nothing was stored for the run yet. The version is the one the ML backend answers with for a
    registered run (records.model_version), else the run directory's name."""
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        run = (s.scalar(select(Run).where(Run.path == str(Path(run_path).resolve()))) if run_path
               else records.serving_run(s, ds))
        path = str(run_path) if run_path else (run.path if run else "")
        if not path:
            return {}, "", ""
        stored = list(s.scalars(select(Prediction).where(Prediction.run_id == run.id))) if run else []
        version = records.model_version(run.id) if run else Path(path).name
    return {p.image_id: TaskPrediction(tuple(p.labels), p.score) for p in stored}, path, version


def export_tasks(ws: Workspace, dataset: str, *, predictions: Mapping[int, TaskPrediction] | None = None,
                 model_version: str = "", document_root: str | Path | None = None, from_name: str | None = None,
                 to_name: str = "image", data_key: str = "image") -> list[dict]:
    """Label Studio tasks for every non-excluded image of ``dataset``: one annotation per annotator (their newest
    human or imported labels, oldest first; none if a reviewer rejected it; ``ground_truth`` when it is the image's
    label by a reviewer's accept, see records.current_annotation) and, when given, the model's prediction with its
    score."""
    predictions = predictions or {}
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        task_kind = ds.task
        images = list(s.scalars(select(Image).where(Image.dataset_id == ds.id, Image.excluded.is_(False))
                                .order_by(Image.id)))
        anns_of = records.annotations_by_image(s, dataset=ds)
    from_name = from_name or ("taxonomy" if task_kind == "hierarchical" else "choice")
    tasks = []
    for im in images:
        data = {data_key: image_url(im.path, document_root), "pixclass_image_id": im.id}
        if im.split:
            data["split"] = im.split
        anns = []
        mine = anns_of.get(im.id, [])
        current = records.current_annotation(mine)
        for r in records.newest_per_author(mine):
            if not r.labels or r.review == "rejected":
                continue
            anns.append({"result": [_result(r.labels, task_kind, from_name, to_name)], "was_cancelled": False,
                         "ground_truth": r.review == "accepted" and r is current,
                         "created_at": r.created_at.isoformat() + "Z",
                         "lead_time": float(r.time_spent or 0.0)})
        task: dict = {"data": data, "annotations": anns}
        pred = predictions.get(im.id)
        if pred is not None and pred.labels:
            task["predictions"] = [{"model_version": model_version, "score": round(float(pred.score), 6),
                                    "result": [_result(pred.labels, task_kind, from_name, to_name, pred.score)]}]
        tasks.append(task)
    return tasks


def write_tasks(tasks: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(tasks, indent=1, ensure_ascii=False))
    os.replace(tmp, path)
    return path


def label_config(classes: Sequence[str], task: str, *, from_name: str | None = None, to_name: str = "image",
                 data_key: str = "image") -> str:
    """A Label Studio labeling config (XML) matching the exported tasks."""
    import re
    from xml.sax.saxutils import quoteattr

    for field, value in (("from_name", from_name), ("to_name", to_name), ("data_key", data_key)):
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w.-]{0,99}", value):
            raise DataError(f"{field} {value!r} is not a name Label Studio configs use: letters, digits, '_', '-' "
                            f"and '.', starting with a letter.")
    if task == "hierarchical":
        tree: dict = {}
        for c in classes:
            node = tree
            for part in c.split("/"):
                node = node.setdefault(part, {})

        def choices(node: dict, depth: int) -> str:
            pad = "  " * depth
            return "".join(f"{pad}<Choice value={quoteattr(k)}>\n{choices(v, depth + 1)}{pad}</Choice>\n" if v
                           else f"{pad}<Choice value={quoteattr(k)}/>\n" for k, v in node.items())

        # Only leaves can be picked, unless a class is also the parent of another (a/b and a/b/c): then all can.
        leafs = ' leafsOnly="true"' if not any(c.startswith(f"{d}/") for c in classes for d in classes) else ""
        body = (f'  <Taxonomy name="{from_name or "taxonomy"}" toName="{to_name}"{leafs}>\n{choices(tree, 2)}'
                f"  </Taxonomy>\n")
    else:
        mode = "multiple" if task == "multilabel" else "single-radio"
        body = (f'  <Choices name="{from_name or "choice"}" toName="{to_name}" choice="{mode}" showInLine="true">\n'
                + "".join(f"    <Choice value={quoteattr(c)}/>\n" for c in classes) + "  </Choices>\n")
    return f'<View>\n  <Image name="{to_name}" value="${data_key}"/>\n{body}</View>\n'
