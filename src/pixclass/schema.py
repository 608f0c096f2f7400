"""LabelSchema: the task kind and its classes.

Hierarchical classes are '/'-separated paths (``fruit/apple/honeycrisp``); the taxonomy is derived from them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

from pixclass.errors import DataError

TaskKind = Literal["binary", "multiclass", "multilabel", "hierarchical"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel", "hierarchical")


def clean_class_name(name: str) -> str:
    """A class name as stored: without surrounding whitespace. DataError if nothing is left or it is too long."""
    clean = name.strip()
    if not clean:
        raise DataError(f"Class name {name!r} is empty. Give a name with letters or digits.")
    if len(clean) > 300:
        raise DataError(f"Class name {clean[:40]!r}... is {len(clean)} characters long; at most 300.")
    return clean


@dataclass(frozen=True)
class LabelSchema:
    """Task kind plus the ordered class names. ``classes[i]`` is the name of class index ``i``."""

    task: TaskKind
    classes: tuple[str, ...]
    positive: str | None = None  # binary tasks: the positive class
    index_: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"Unknown task kind {self.task!r}. Use one of: {', '.join(TASKS)}.")
        object.__setattr__(self, "index_", {c: i for i, c in enumerate(self.classes)})

    @classmethod
    def infer(cls, names: set[str] | list[str], task: TaskKind | None = None) -> "LabelSchema":
        """Build a schema from the label names seen in a dataset (sorted, so the order is stable)."""
        classes = tuple(sorted(set(names)))
        if task is None:
            if any("/" in c for c in classes):
                task = "hierarchical"
            elif len(classes) == 2:
                task = "binary"
            else:
                task = "multiclass"
        positive = classes[-1] if task == "binary" and classes else None
        return cls(task=task, classes=classes, positive=positive)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        """Class index of ``name``; an unknown name raises DataError with close matches."""
        try:
            return self.index_[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.classes, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise DataError(
                f"Unknown class name {name!r}.{hint} Known classes: {', '.join(self.classes[:20])}"
                + (" ..." if len(self.classes) > 20 else "")
            ) from None

    def taxonomy(self) -> dict[str, list[str]]:
        """Parent path -> child paths, '' being the root. Only meaningful for hierarchical schemas."""
        tree: dict[str, list[str]] = {}
        for name in self.classes:
            parts = name.split("/")
            for depth in range(len(parts)):
                parent = "/".join(parts[:depth])
                node = "/".join(parts[: depth + 1])
                kids = tree.setdefault(parent, [])
                if node not in kids:
                    kids.append(node)
        return tree

    def to_dict(self) -> dict:
        return {"task": self.task, "classes": list(self.classes), "positive": self.positive}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSchema":
        return cls(task=d["task"], classes=tuple(d["classes"]), positive=d.get("positive"))
