"""Printing helpers for the CLI: Rich progress bars, JSON output, error exit. Only cli/ prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)  # human output on stderr, so stdout stays clean for --json


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator:
    """Yields a callback (stage, done, total) that drives one Rich bar per stage."""
    if quiet:
        yield None
        return
    bar = Progress(TextColumn("{task.description:>16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=console, transient=False)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


def simple(callback, stage: str):
    """Adapt a (stage, done, total) callback to a (done, total) one."""
    return (lambda d, t: callback(stage, d, t)) if callback else None


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()
