"""Read a source (folder tree or CSV) into entries: path, labels, split. No decoding here."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pixclass.errors import DataError
from pixclass.io.images import IMAGE_EXTENSIONS, iter_image_files

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class Entry:
    path: Path
    labels: tuple[str, ...]  # empty for an unlabeled image
    split: str | None


def read_source(src: str | Path, *, label_sep: str = "|", document_root: str | Path | None = None,
                ls_data_dir: str | Path | None = None, from_name: str | None = None) -> list[Entry]:
    """A folder tree (``root/<class>/img``, ``root/<split>/<class>/img``, nested classes for taxonomies), a CSV, or a
    Label Studio export (JSON, JSON-MIN or CSV). Entry paths are absolute (the source is resolved first), so they do
    not depend on the working directory. ``document_root``, ``ls_data_dir`` and ``from_name`` apply to Label Studio
    exports only (see read_labelstudio)."""
    src = Path(src).expanduser().resolve()
    if not src.exists():
        raise DataError(f"{src}: no such file or folder. Give a folder of images or a CSV file.")
    given = [k for k, v in (("document_root", document_root), ("ls_data_dir", ls_data_dir), ("from_name", from_name))
             if v]
    if src.is_file():
        from pixclass.io.labelstudio import is_labelstudio_csv, read_labelstudio  # it imports this module

        if src.suffix.lower() == ".json" or src.suffix.lower() == ".csv" and is_labelstudio_csv(src):
            return read_labelstudio(src, document_root=document_root, ls_data_dir=ls_data_dir, from_name=from_name)
        if src.suffix.lower() != ".csv":
            raise DataError(f"{src}: a file source must be a .csv with columns path,label[,split] "
                            f"or a Label Studio .json or .csv export.")
    if given:
        raise DataError(f"{src}: the option {', '.join(given)} applies to Label Studio exports only, and this is a "
                        f"{'plain CSV' if src.is_file() else 'folder'}. Leave it out, or give the export file.")
    return read_csv(src, label_sep=label_sep) if src.is_file() else read_folder(src)


def read_folder(root: Path) -> list[Entry]:
    root = Path(root).expanduser().resolve()  # absolute entry paths, whatever the working directory
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if subdirs and set(subdirs) <= set(SPLIT_NAMES) and ("train" in subdirs or "training" in subdirs):
        out: list[Entry] = []
        for name, d in sorted(subdirs.items()):
            out += _class_tree(d, SPLIT_NAMES[name])
        return out
    return _class_tree(root, None)


def _class_tree(root: Path, split: str | None) -> list[Entry]:
    out = []
    for path in iter_image_files(root):
        rel = path.relative_to(root).parent
        label = "/".join(rel.parts)
        if not label and path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue  # README, LICENSE, CSV beside the class folders
        out.append(Entry(path, (label,) if label else (), split))
    return out


def read_csv(path: Path, *, label_sep: str = "|") -> list[Entry]:
    """CSV with a header: ``path`` and ``label`` (or ``labels``, separated by ``|``), optional ``split``.
    Relative paths are taken from the CSV's folder and come back absolute."""
    path = Path(path).expanduser().resolve()
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable UTF-8 CSV ({e}).") from None
    if not rows:
        raise DataError(f"{path}: the CSV has no rows. It needs a header line path,label[,split] and one row per image.")
    cols = {c.strip().lower(): c for c in rows[0] if c}
    if "path" not in cols:
        raise DataError(f"{path}: the CSV has no 'path' column (found: {', '.join(cols) or 'none'}). Give columns "
                        f"path,label[,split], or a Label Studio CSV export as it was downloaded.")
    label_col = cols.get("label") or cols.get("labels")
    out = []
    for n, row in enumerate(rows, start=2):
        raw = (row.get(cols["path"]) or "").strip()
        if not raw:
            raise DataError(f"{path}, line {n}: empty 'path' field.")
        p = (path.parent / Path(raw).expanduser()).resolve()  # an absolute entry stays itself, normalized
        value = (row.get(label_col) or "").strip() if label_col else ""
        labels = tuple(s.strip() for s in value.split(label_sep) if s.strip()) if value else ()
        split = (row.get(cols["split"]) or "").strip().lower() if "split" in cols else ""
        if split and split not in SPLIT_NAMES:
            raise DataError(f"{path}, line {n}: unknown split {split!r}. Use train, val or test.")
        out.append(Entry(p, labels, SPLIT_NAMES[split] if split else None))
    return out
