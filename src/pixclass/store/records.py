"""Functions that read and write workspace records. Callers pass a Session from ``Workspace.session()``."""

from __future__ import annotations

import difflib
import json
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pixclass.errors import DataError
from pixclass.schema import LabelSchema, clean_class_name
from pixclass.store.db import LOCK_OPTION, session_changes
from pixclass.store.tables import Annotation, BrokenFile, Dataset, Image, LabelClass, Meta, Run, utcnow


@dataclass(frozen=True)
class Item:
    """A labeled-or-not image as the data layer sees it."""

    image_id: int
    path: str
    sha256: str
    labels: tuple[str, ...]
    split: str | None


def get_dataset(s: Session, name: str) -> Dataset:
    ds = s.scalar(select(Dataset).where(Dataset.name == name))
    if ds is None:
        names = list(s.scalars(select(Dataset.name)))
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else f" Known datasets: {', '.join(names) or 'none'}."
        raise DataError(f"No dataset named {name!r}.{hint} Create one with `pixclass import SRC --name {name}`.")
    return ds


def check_dataset_name(name: str) -> None:
    """A new dataset's name must work as one URL path segment: DataError naming the rule it breaks."""
    bad = next((c for c in name if c in "/\\" or unicodedata.category(c) == "Cc"), None)
    problem = ("is empty or only spaces" if not name.strip() else
               f"has {len(name)} characters; the limit is 100" if len(name) > 100 else
               "starts or ends with whitespace" if name != name.strip() else
               "is only dots" if set(name) == {"."} else
               f"contains {bad!r}; '/', '\\' and control characters are not allowed" if bad else "")
    if problem:
        raise DataError(f"Dataset name {name!r} {problem}. Use letters, digits, spaces, '-', '_' or '.'.")


def get_or_create_dataset(s: Session, name: str, *, task: str | None = None, source: str = "") -> Dataset:
    ds = s.scalar(select(Dataset).where(Dataset.name == name))
    if ds is None:
        check_dataset_name(name)
        ds = Dataset(name=name, task=task or "multiclass", source=source)
        s.add(ds)
        s.flush()
    return ds


def lock_dataset(s: Session, ds: Dataset) -> Dataset:
    """Hold ``ds`` until this session commits, and read it anew. Call it first in a write that checks labels against
    the class list or changes the list: writes to one dataset then run one after another, each seeing the class list
    as the one before left it, so a label given during a rename is refused or renamed, never left in the old name.
    The UPDATE of the dataset's row (its ``revision`` goes up by one: other server processes see the change) takes
    the database's write lock on SQLite and the row's lock on PostgreSQL, where a plain read would take neither."""
    s.execute(update(Dataset).where(Dataset.id == ds.id).values(revision=Dataset.revision + 1).execution_options(
        synchronize_session=False, **{LOCK_OPTION: True}))
    s.refresh(ds)
    session_changes(s).locks.append((ds.id, ds.revision))
    return ds


def locked_annotations(s: Session, ids: Iterable[int]) -> list[Annotation]:
    """The annotations with these ids (those that exist), read after their datasets are held (``lock_dataset``):
    an undo and a reviewer's verdict on the same annotation then run one after the other, the second seeing what
    the first did (a verdict given, the row gone)."""
    ids = list(ids)
    q = select(Image.dataset_id).join(Annotation, Annotation.image_id == Image.id).where(Annotation.id.in_(ids))
    for dataset_id in sorted(set(s.scalars(q))):  # always in the same order: two such writes never deadlock
        lock_dataset(s, s.get(Dataset, dataset_id))
    return list(s.scalars(select(Annotation).where(Annotation.id.in_(ids)).order_by(Annotation.id)
                          .execution_options(populate_existing=True)))


def load_schema(s: Session, ds: Dataset) -> LabelSchema:
    classes = s.scalars(select(LabelClass.name).where(LabelClass.dataset_id == ds.id).order_by(LabelClass.position))
    return LabelSchema(task=ds.task, classes=tuple(classes), positive=ds.positive)  # type: ignore[arg-type]


def save_schema(s: Session, ds: Dataset, schema: LabelSchema) -> None:
    """Store the schema: new classes are appended, existing ones keep their position. A dataset with classes keeps
    its task kind, a binary one has at most two classes, and no class name is blank (DataError, nothing stored)."""
    have = {c.name: c for c in s.scalars(select(LabelClass).where(LabelClass.dataset_id == ds.id))}
    check_task(ds.name, ds.task if have else None, schema)
    for name in schema.classes:
        if name not in have:
            clean_class_name(name)
    for pos, name in enumerate(schema.classes):
        if name in have:
            have[name].position = pos
        else:
            s.add(LabelClass(dataset_id=ds.id, name=name, position=pos))
    ds.task, ds.positive = schema.task, schema.positive


def check_task(dataset: str, task: str | None, schema: LabelSchema) -> None:
    """DataError unless ``schema`` may be the schema of ``dataset``, whose classes are of ``task`` (None: it has no
    classes yet, any task goes). Binary and multiclass are both one label per image, and a dataset goes from one to
    the other as its classes become two or more; the labels of a multi-label or hierarchical dataset fit no other."""
    single = ("binary", "multiclass")
    if task is not None and schema.task != task and not (task in single and schema.task in single):
        raise DataError(f"Dataset {dataset!r} is a {task} dataset; it cannot become {schema.task}. Import into a new "
                        f"dataset (another --name) for a {schema.task} task, or leave --task out.")
    if schema.task == "binary" and len(schema.classes) > 2:
        raise DataError(f"A binary dataset has two classes; {dataset!r} would have {len(schema.classes)}: "
                        f"{', '.join(schema.classes[:10])}. Make it multiclass (--task multiclass) or multilabel.")


def known_paths_and_hashes(s: Session, ds: Dataset) -> tuple[set[str], set[str]]:
    rows = s.execute(select(Image.path, Image.sha256).where(Image.dataset_id == ds.id)).all()
    return {r[0] for r in rows}, {r[1] for r in rows}


def items(s: Session, ds: Dataset, *, split: str | None = None, labeled: bool | None = None,
          include_excluded: bool = False) -> list[Item]:
    """Images of a dataset with their current labels (see ``current_annotation``)."""
    q = select(Image.id, Image.path, Image.sha256, Image.split).where(Image.dataset_id == ds.id)  # columns, not
    if split:  # entities: a tenth of the time for tens of thousands of images
        q = q.where(Image.split == split)
    if not include_excluded:
        q = q.where(Image.excluded.is_(False))
    images = s.execute(q.order_by(Image.id)).all()
    latest = current_labels(s, [im.id for im in images], ds)
    out = []
    for im in images:
        labels = tuple(latest.get(im.id, ()))
        if labeled is None or bool(labels) == labeled:
            out.append(Item(im.id, im.path, im.sha256, labels, im.split))
    return out


def newest_per_author(anns: Iterable[Annotation]) -> list[Annotation]:
    """Each author's newest annotation (imports count per source and author), oldest first: what someone replaced
    no longer counts. ``anns``: one image's human and imported annotations, any order."""
    anns = list(anns)
    if len(anns) == 1:  # most images of a large dataset: kept cheap
        return anns
    newest: dict[tuple, Annotation] = {}
    for a in sorted(anns, key=lambda a: a.id):
        newest[(a.source, a.author)] = a
    return sorted(newest.values(), key=lambda a: a.id)


def current_of(newest: list[Annotation]) -> Annotation | None:
    """``current_annotation`` given the image's ``newest_per_author``."""
    if len(newest) == 1:
        return newest[0] if newest[0].review != "rejected" else None
    live = [a for a in newest if a.review != "rejected"]
    return max(live, key=lambda a: (a.review == "accepted", a.id), default=None)


def current_annotation(anns: Iterable[Annotation]) -> Annotation | None:
    """The annotation that is an image's label: among each author's newest (``newest_per_author``) that a reviewer
    did not reject, the newest one a reviewer accepted, else the newest one. None: the image is unlabeled."""
    return current_of(newest_per_author(anns))


ANNOTATION_FIELDS = (Annotation.id, Annotation.image_id, Annotation.labels, Annotation.source, Annotation.author,
                     Annotation.review, Annotation.from_run, Annotation.time_spent, Annotation.created_at,
                     Annotation.reviewed_at)


def annotations_by_image(s: Session, image_ids: list[int] | None = None, *,
                         dataset: Dataset | None = None) -> dict[int, list]:
    """image id -> its human and imported annotations (rows of ``ANNOTATION_FIELDS``, no model rows), for the given
    images (of ``dataset`` when given, which narrows the query) or a whole dataset."""
    q = select(*ANNOTATION_FIELDS).where(Annotation.source != "model")
    if image_ids is not None and len(image_ids) <= 900:  # one image's view must not scan the dataset; long lists
        q = q.where(Annotation.image_id.in_(image_ids))  # are filtered below (SQLite caps bound parameters)
    if dataset is not None:
        q = q.join(Image, Image.id == Annotation.image_id).where(Image.dataset_id == dataset.id)
    wanted = set(image_ids) if image_ids is not None else None
    out: dict[int, list] = {}
    for a in s.execute(q):
        if wanted is None or a.image_id in wanted:
            out.setdefault(a.image_id, []).append(a)
    return out


def current_labels(s: Session, image_ids: list[int], dataset: Dataset | None = None) -> dict[int, list[str]]:
    """image id -> labels of its current annotation (see ``current_annotation``); images without one are left out."""
    if not image_ids:
        return {}
    out = {}
    for image_id, anns in annotations_by_image(s, image_ids, dataset=dataset).items():
        a = current_annotation(anns)
        if a is not None:
            out[image_id] = list(a.labels)
    return out


def record_broken(s: Session, ds: Dataset, path: str, reason: str) -> None:
    row = s.scalar(select(BrokenFile).where(BrokenFile.dataset_id == ds.id, BrokenFile.path == path))
    if row is None:
        s.add(BrokenFile(dataset_id=ds.id, path=path, reason=reason))
    else:
        row.reason = reason


def broken_files(s: Session, ds: Dataset) -> list[dict]:
    rows = s.scalars(select(BrokenFile).where(BrokenFile.dataset_id == ds.id).order_by(BrokenFile.path))
    return [{"path": b.path, "reason": b.reason} for b in rows]


def add_run(s: Session, ds: Dataset, *, path: str, model: str, mode: str) -> Run:
    run = Run(dataset_id=ds.id, path=path, model=model, mode=mode)
    s.add(run)
    s.flush()
    return run


def latest_run(s: Session, ds: Dataset | None = None) -> Run | None:
    q = select(Run).where(Run.status == "done")
    if ds is not None:
        q = q.where(Run.dataset_id == ds.id)
    return s.scalar(q.order_by(Run.id.desc()).limit(1))


def model_version(run_id: int) -> str:
    """The name a registered run goes by wherever Label Studio sees it (ML backend, exported predictions)."""
    return f"pixclass-run-{run_id}"


def pinned_run(s: Session, ds: Dataset) -> Run | None:
    """The finished run of ``ds`` an admin chose to serve its suggestions and predictions, if any (and still there)."""
    run_id = (get_setting(s, ds, "serving_run") or {}).get("run_id")
    run = s.get(Run, run_id) if run_id is not None else None
    return run if run is not None and run.status == "done" and run.dataset_id == ds.id else None


def serving_run(s: Session, ds: Dataset | None = None) -> Run | None:
    """The run that answers for a dataset (suggestions, prediction, the Label Studio backend, the label queue): the
    pinned one, else the newest finished one. Without a dataset: the one serving the dataset trained last."""
    if ds is None:
        newest = latest_run(s)
        return (pinned_run(s, s.get(Dataset, newest.dataset_id)) or newest) if newest else None
    return pinned_run(s, ds) or latest_run(s, ds)


def dataset_stats(s: Session, ds: Dataset) -> dict:
    """Counts per class and split, image sizes and formats, broken files."""
    its = items(s, ds, include_excluded=True)
    classes: dict[str, int] = {c: 0 for c in load_schema(s, ds).classes}
    splits: dict[str, int] = {}
    for it in its:
        for lab in it.labels:
            classes[lab] = classes.get(lab, 0) + 1
        splits[it.split or "none"] = splits.get(it.split or "none", 0) + 1
    sizes = s.execute(select(Image.width, Image.height, Image.format).where(Image.dataset_id == ds.id)).all()
    ws, hs = [r[0] for r in sizes], [r[1] for r in sizes]
    formats: dict[str, int] = {}
    for r in sizes:
        formats[r[2]] = formats.get(r[2], 0) + 1

    def summary(v: list[int]) -> dict:
        v = sorted(v)
        return {"min": v[0], "median": v[len(v) // 2], "max": v[-1]} if v else {}

    return {
        "dataset": ds.name,
        "task": ds.task,
        "images": len(its),
        "labeled": sum(1 for it in its if it.labels),
        "excluded": s.scalar(select(func.count()).where(Image.dataset_id == ds.id, Image.excluded.is_(True))),
        "classes": classes,
        "splits": splits,
        "width": summary(ws),
        "height": summary(hs),
        "formats": formats,
        "broken": broken_files(s, ds),
    }


def _setting_key(ds: Dataset, name: str) -> str:
    return f"{name}:{ds.id}"


def get_setting(s: Session, ds: Dataset, name: str) -> dict | None:
    """A dataset's stored setting (JSON object) such as its auto-retrain rule, or None."""
    row = s.get(Meta, _setting_key(ds, name))
    return json.loads(row.value) if row else None


def set_setting(s: Session, ds: Dataset, name: str, value: dict | None) -> None:
    """Store (or, with None, remove) a dataset setting; it outlives the server process."""
    key = _setting_key(ds, name)
    row = s.get(Meta, key)
    if value is None:
        if row is not None:
            s.delete(row)
    elif row is None:
        s.add(Meta(key=key, value=json.dumps(value)))
    else:
        row.value = json.dumps(value)
    s.flush()  # a get_setting later in this session reads the new value (a deleted row stays in the identity map)


def record_renames(s: Session, ds: Dataset, mapping: dict[str, str]) -> None:
    """Remember a class rename or merge (old name -> new), so models trained before it answer in today's names."""
    events = (get_setting(s, ds, "class_renames") or {}).get("events", [])
    events.append({"at": utcnow().isoformat(), "map": mapping})
    set_setting(s, ds, "class_renames", {"events": events})


def current_names(s: Session, ds: Dataset, since: datetime) -> Callable[[str], str]:
    """Class name as a model trained at ``since`` knows it -> the name today (later renames and merges applied)."""
    events = [e["map"] for e in (get_setting(s, ds, "class_renames") or {}).get("events", [])
              if datetime.fromisoformat(e["at"]) > since]

    def name(c: str) -> str:
        for mapping in events:
            c = mapping.get(c, c)
        return c

    return name


def run_class_names(s: Session, run: Run, classes: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """(today's name of each of a run's ``classes``, whether its dataset is multi-label)."""
    ds = s.get(Dataset, run.dataset_id)
    name = current_names(s, ds, run.created_at)
    return tuple(name(c) for c in classes), ds.task == "multilabel"
