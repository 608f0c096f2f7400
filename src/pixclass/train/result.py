"""What every trainer returns, and the common last step: manifest, metrics.json and the Run row marked done."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from pixclass.artifact import Manifest
from pixclass.store import Workspace
from pixclass.store.tables import Run


@dataclass(frozen=True)
class RunResult:
    run: Path
    metrics: dict
    history: list[dict]
    seconds: float

    @property
    def skipped(self) -> list[dict]:
        """{"path", "reason", "split"} of the images left out because their files no longer decode."""
        return list(self.metrics.get("skipped", []))

    def to_dict(self) -> dict:
        return {"run": str(self.run), "metrics": self.metrics, "history": self.history, "seconds": self.seconds}


def finish_run(ws: Workspace, run_id: int, run_dir: Path, manifest: Manifest, *, history: list[dict],
               started: float) -> RunResult:
    """Write manifest.json and metrics.json into the run directory and mark the run done in the store."""
    manifest.save(run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(manifest.metrics, indent=2))
    with ws.session() as s:
        row = s.get(Run, run_id)
        row.status, row.metrics = "done", manifest.metrics
    return RunResult(run_dir, manifest.metrics, history, round(time.time() - started, 2))
