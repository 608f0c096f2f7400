"""Import a folder tree or CSV into a workspace dataset. Broken files are reported and stored; import goes on."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select

from pixclass.errors import DataError
from pixclass.io.images import ImageInfo, probe
from pixclass.io.labelstudio import Vote
from pixclass.io.sources import Entry, read_source
from pixclass.schema import LabelSchema
from pixclass.store import Workspace
from pixclass.store import records
from pixclass.store.tables import Annotation, Dataset, Image

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class ImportResult:
    dataset: str
    imported: int = 0
    skipped_existing: int = 0
    broken: list[dict] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)  # single-label images found under several classes
    classes: list[str] = field(default_factory=list)
    task: str = ""
    label_changes: int = 0  # images already stored whose label in the source differs from their current one
    relabeled: int = 0  # of those, given the source's label (update_labels)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "imported": self.imported, "skipped_existing": self.skipped_existing,
                "broken": self.broken, "conflicts": self.conflicts, "classes": self.classes, "task": self.task,
                "label_changes": self.label_changes, "relabeled": self.relabeled}


def _probe(entry: Entry) -> ImageInfo | str:
    if getattr(entry, "reason", ""):  # a source that could not resolve the image (Label Studio URL) says why
        reason, ref = entry.reason, getattr(entry, "ref", "")  # type: ignore[attr-defined]
        return reason[len(ref) + 2 :] if ref and reason.startswith(f"{ref}: ") else reason  # the report names it
    try:
        return probe(entry.path)
    except DataError as e:
        return str(e).split(": ", 1)[-1] if str(e).startswith(str(entry.path)) else str(e)
    except Exception as e:  # a bug met on one file must not abort the import (it runs in a pool)
        log.exception("unexpected error probing %s", entry.path)
        return f"unexpected error while reading it ({type(e).__name__}: {e}). Please report this file."


def stratified_split(labels: list[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                     seed: int = 0) -> list[str]:
    """Seeded split into train/val/test, stratified by label: each class is divided by the fractions."""
    rng = np.random.default_rng(seed)
    out = [""] * len(labels)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    for key in sorted(by_class):
        idx = np.array(by_class[key])
        rng.shuffle(idx)
        n = len(idx)
        n_val = int(round(n * fractions[1]))
        n_test = int(round(n * fractions[2]))
        if n >= 3:  # every split gets at least one image of a class that has three
            n_val, n_test = max(n_val, 1), max(n_test, 1)
        n_train = n - n_val - n_test
        for j, i in enumerate(idx):
            out[i] = "train" if j < n_train else "val" if j < n_train + n_val else "test"
    return out


def taxonomy_classes(path: str | Path | None) -> list[str]:
    """Class paths from a taxonomy file: one '/'-separated path per line; blank lines and '#' comments skipped."""
    if path is None:
        return []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the taxonomy file ({e}).") from None
    out = []
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if any(not part.strip() for part in line.split("/")):
            raise DataError(f"{path}, line {n}: {line!r} has an empty level. Write paths like fruit/apple/gala.")
        out.append(line)
    return out


def _votes(e: Entry) -> tuple[Vote, ...]:
    """The votes an entry gives its image: a Label Studio export's, one per annotation, else one import vote."""
    return getattr(e, "votes", ()) or ((Vote(e.labels),) if e.labels else ())


def _annotation(image_id: int, v: Vote) -> Annotation:
    at = {"created_at": v.at} if v.at else {}
    review = {"review": "accepted", "reviewer": "label-studio", "reviewed_at": v.at} if v.accepted else {}
    return Annotation(image_id=image_id, labels=list(v.labels), source=v.source, author=v.author,
                      external_id=v.external_id, time_spent=v.time_spent, **at, **review)


def _label_changes(s, ds, by_path: dict[str, Entry], by_sha: dict[str, Entry], result: ImportResult, *,
                   apply: bool) -> None:
    """Count (and with ``apply``, store as votes) source labels that differ from stored images' labels. A vote whose
    Label Studio annotation is stored already with the same labels, in its newest version, is not stored again."""
    rows = s.execute(select(Image.id, Image.path, Image.sha256).where(Image.dataset_id == ds.id)).all()
    wanted = {i: by_path.get(path) or by_sha[sha] for i, path, sha in rows if path in by_path or sha in by_sha}
    current = records.current_labels(s, list(wanted), ds)
    changed = {i: e for i, e in wanted.items() if e.labels and sorted(current.get(i, [])) != sorted(e.labels)}
    result.label_changes = len(changed)
    if apply:
        q = (select(Annotation.image_id, Annotation.external_id, Annotation.labels).join(Image)
             .where(Image.dataset_id == ds.id, Annotation.external_id.is_not(None)).order_by(Annotation.id))
        newest = {(i, x): sorted(labels) for i, x, labels in s.execute(q) if i in changed}  # the last one wins
        new = [_annotation(i, v) for i, e in changed.items() for v in _votes(e)
               if not v.external_id or newest.get((i, v.external_id)) != sorted(v.labels)]
        s.add_all(new)
        result.relabeled = len({a.image_id for a in new})


def import_dataset(ws: Workspace, src: str | Path, name: str, *, task: str | None = None, seed: int = 0,
                   taxonomy: str | Path | None = None, workers: int = 4, document_root: str | Path | None = None,
                   ls_data_dir: str | Path | None = None, from_name: str | None = None,
                   update_labels: bool = False, progress: Progress | None = None) -> ImportResult:
    """Add the images of ``src`` to dataset ``name``. Files already stored (same path or sha256) are skipped.

    Image paths are stored absolute and resolved (a relative ``src`` is taken from the working directory now), so
    serving and training work from any directory later. ``document_root``, ``ls_data_dir`` and ``from_name`` apply
    to Label Studio exports (see io.labelstudio.read_labelstudio).

    Images already stored keep their labels; ``label_changes`` counts those whose label in the source differs (say,
    relabeled in Label Studio since an export). ``update_labels`` gives them the source's label, as a new import
    vote (the previous votes stay in the history)."""
    src = Path(src).expanduser().resolve()
    entries = read_source(src, document_root=document_root, ls_data_dir=ls_data_dir, from_name=from_name)
    result = ImportResult(dataset=name)
    with ws.session() as s:  # a new dataset is created with its first images: a refused import leaves none behind
        ds = s.scalar(select(Dataset).where(Dataset.name == name))
        if ds is None:
            records.check_dataset_name(name)
            known_paths, known_hashes = set(), set()
            old_schema = LabelSchema(task or "multiclass", ())  # type: ignore[arg-type]
        else:
            known_paths, known_hashes = records.known_paths_and_hashes(s, ds)
            old_schema = records.load_schema(s, ds)
    if task is not None and old_schema.classes:  # before reading any image: the dataset's kind does not change
        records.check_task(name, old_schema.task, LabelSchema(task, old_schema.classes))  # type: ignore[arg-type]
    todo = [e for e in entries if str(e.path) not in known_paths]
    result.skipped_existing = len(entries) - len(todo)
    again = {str(e.path): e for e in entries if e.labels and str(e.path) in known_paths}  # stored already
    again_sha: dict[str, Entry] = {}  # stored already under another path (same bytes)

    infos: list[tuple[Entry, ImageInfo]] = []
    new_at: dict[str, int] = {}  # sha256 -> index in infos, to merge an image found under several class folders
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for n, (entry, info) in enumerate(zip(todo, pool.map(_probe, todo)), start=1):
            if isinstance(info, str):
                # an unresolved reference (a Label Studio URL) as written: Path() would turn https:// into https:/
                where = getattr(entry, "ref", "") if getattr(entry, "reason", "") else ""
                result.broken.append({"path": where or str(entry.path), "reason": info})
            elif info.sha256 in new_at:
                first, _ = infos[new_at[info.sha256]]
                merged = first.labels + tuple(lab for lab in entry.labels if lab not in first.labels)
                votes = {"votes": first.votes + entry.votes} if getattr(first, "votes", ()) else {}
                infos[new_at[info.sha256]] = (dataclasses.replace(first, labels=merged, **votes), _)
            elif info.sha256 in known_hashes:
                result.skipped_existing += 1
                if entry.labels:
                    again_sha[info.sha256] = entry
            else:
                new_at[info.sha256] = len(infos)
                infos.append((entry, info))
            if progress:
                progress(n, len(todo))

    multi = sum(len(e.labels) > 1 for e, _ in infos)
    if task is None and not old_schema.classes and multi >= max(2, 0.02 * len(infos)):  # a new dataset with many
        # images under several classes: multi-label (a dataset with classes keeps its task)
        task = "multilabel"
    multi_votes = any(len(v.labels) > 1 for e, _ in infos for v in getattr(e, "votes", ()))
    if task != "multilabel" and (task or old_schema.task) != "multilabel" and (multi or multi_votes):
        # A single-label dataset keeps the first label of an image that also appears under other classes.
        for i, (e, info) in enumerate(infos):
            if len(e.labels) > 1:
                result.conflicts.append({"path": info.path, "labels": list(e.labels)})
            if len(e.labels) > 1 or any(len(v.labels) > 1 for v in getattr(e, "votes", ())):
                votes = tuple(dataclasses.replace(v, labels=v.labels[:1]) for v in getattr(e, "votes", ()))
                infos[i] = (dataclasses.replace(e, labels=e.labels[:1], **({"votes": votes} if votes else {})), info)
    names = (set(old_schema.classes) | {lab for e, _ in infos for v in _votes(e) for lab in v.labels}
             | set(taxonomy_classes(taxonomy)))
    if update_labels:
        names |= {lab for e in (*again.values(), *again_sha.values()) for v in _votes(e) for lab in v.labels}
    schema = LabelSchema.infer(names, task or (old_schema.task if old_schema.classes else None))  # type: ignore[arg-type]
    if old_schema.classes:  # an existing dataset keeps its class order (digit keys, exported configs): new ones go last
        added = tuple(c for c in schema.classes if c not in old_schema.index_)
        schema = LabelSchema(schema.task, old_schema.classes + added,
                             (old_schema.positive or schema.positive) if schema.task == "binary" else None)
    # Images without a given split get a seeded stratified 80/10/10 split.
    need = [i for i, (e, _) in enumerate(infos) if e.split is None]
    splits = stratified_split(["|".join(infos[i][0].labels) for i in need], seed=seed)
    split_of = dict(zip(need, splits))

    with ws.session() as s:
        ds = records.get_or_create_dataset(s, name, task=task, source=str(src))
        records.save_schema(s, ds, schema)
        images = [
            Image(dataset_id=ds.id, path=info.path, sha256=info.sha256, width=info.width, height=info.height,
                  format=info.format, split=e.split or split_of[i])
            for i, (e, info) in enumerate(infos)
        ]
        s.add_all(images)
        s.flush()
        s.add_all(_annotation(im.id, v) for im, (e, _) in zip(images, infos) for v in _votes(e))
        for b in result.broken:
            records.record_broken(s, ds, b["path"], b["reason"])
        if again or again_sha:
            _label_changes(s, ds, again, again_sha, result, apply=update_labels)
    result.imported = len(infos)
    result.classes, result.task = list(schema.classes), schema.task
    log.info("imported %d images into %s, %d broken", result.imported, name, len(result.broken))
    return result
