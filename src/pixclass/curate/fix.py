"""Act on findings of the newest curate run: exclude images from training, send label errors to review, dismiss,
accept a suggested label, or undersample large classes. Training honours exclusions through ``records.items``."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pixclass.curate.run import check_kind
from pixclass.errors import ConfigError, DataError
from pixclass.store import Workspace, records
from pixclass.store.findings import latest_curate_run, list_findings
from pixclass.store.tables import Annotation, Image

log = logging.getLogger(__name__)

ACTIONS = ("exclude", "include", "review", "dismiss", "relabel", "undersample")


@dataclass
class FixResult:
    action: str
    findings: int = 0  # findings whose status changed
    excluded: list[str] = field(default_factory=list)  # image paths now left out of training
    included: list[str] = field(default_factory=list)
    relabeled: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def apply_fix(ws: Workspace, dataset: str, action: str, *, kind: str | None = None, ids: list[int] | None = None,
              paths: list[str] | None = None, min_score: float | None = None, max_ratio: float = 3.0,
              seed: int = 0) -> FixResult:
    """Apply ``action`` to the open findings of the newest curate run that match kind/ids/paths/min_score."""
    if action not in ACTIONS:
        raise ConfigError(f"The 'action' option must be one of {', '.join(ACTIONS)}. Got {action!r}.")
    if action == "undersample":
        return undersample(ws, dataset, max_ratio=max_ratio, seed=seed)
    if not (kind or ids or paths):
        raise ConfigError("Say which findings to act on: --kind KIND, --id N or --path FILE "
                          "(see `pixclass issues-list DATASET`).")
    if kind:
        check_kind(kind)
    if action == "relabel" and kind not in (None, "label_error"):
        raise ConfigError("--action relabel applies the suggested label of label_error findings; use "
                          "--kind label_error.")
    out = FixResult(action)
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        run = latest_curate_run(s, ds)
        if run is None:
            raise DataError(f"Dataset {dataset!r} has no curate findings yet. Run `pixclass curate {dataset}` first.")
        given = {p: str(Path(p).expanduser().resolve()) for p in paths or ()}  # as typed, and absolute
        match = [*given, *given.values()] if given else None
        found = list_findings(s, run, kind=kind, min_score=min_score, paths=match, ids=ids)
        if ids or given:  # a mistyped id or path is named, instead of "0 findings updated"
            known_ids = {f.id for f in list_findings(s, run, ids=ids)} if ids else set()
            known_paths = {f.path for f in list_findings(s, run, paths=match)} if given else set()
            missing = [f"id {i}" for i in sorted(set(ids or ()) - known_ids)] + [
                p for p, full in given.items() if p not in known_paths and full not in known_paths]
            if missing:
                raise DataError(f"Curate run {run.id} of {dataset!r} has no finding for {', '.join(missing)}. "
                                f"`pixclass issues-list {dataset}` lists them (id and path).")
        if action == "relabel":
            found = [f for f in found if f.kind == "label_error"]
        for f in found:
            image = s.get(Image, f.image_id) if f.image_id else None
            if action == "exclude":
                other = s.get(Image, f.other_image_id) if f.other_image_id else None
                if image is not None and not image.excluded and not (other is not None and other.excluded):
                    image.excluded = True
                    out.excluded.append(f.path)
                new = "excluded"
            elif action == "include":
                if image is not None and image.excluded:
                    image.excluded = False
                    out.included.append(f.path)
                new = "open"
            elif action == "relabel":
                if image is not None and f.suggested_label:
                    s.add(Annotation(image_id=image.id, labels=[f.suggested_label], source="human",
                                     author="curate-fix (accepted suggestion)"))
                    out.relabeled.append(f.path)
                new = "relabeled"
            else:
                new = "review" if action == "review" else "dismissed"
            if f.status != new:
                f.status = new
                out.findings += 1
    log.info("curate fix %s on %s: %d findings, %d excluded", action, dataset, out.findings, len(out.excluded))
    return out


def undersample(ws: Workspace, dataset: str, *, max_ratio: float = 3.0, seed: int = 0) -> FixResult:
    """Exclude random training images of classes larger than ``max_ratio`` x the smallest class."""
    if max_ratio < 1:
        raise ConfigError(f"The 'max_ratio' option must be at least 1. Got {max_ratio!r}.")
    out = FixResult("undersample")
    rng = np.random.default_rng(seed)
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        by_class: dict[str, list[records.Item]] = defaultdict(list)
        for it in records.items(s, ds, split="train", labeled=True):
            if len(it.labels) == 1:
                by_class[it.labels[0]].append(it)
        if not by_class:
            return out
        cap = int(max_ratio * min(len(v) for v in by_class.values()))
        for members in by_class.values():
            if len(members) > cap:
                for i in rng.choice(len(members), len(members) - cap, replace=False):
                    s.get(Image, members[i].image_id).excluded = True
                    out.excluded.append(members[i].path)
    return out
