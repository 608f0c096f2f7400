"""Manifest: everything needed to use a trained model, stored as manifest.json beside it.

Training writes it into the run directory; export copies it next to model.onnx. Predict and serve read only this.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pixclass import __version__
from pixclass.errors import ConfigError
from pixclass.schema import LabelSchema

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Preprocess:
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "shorter_side_center_crop"  # how an image becomes img_size x img_size


@dataclass(frozen=True)
class Manifest:
    schema: LabelSchema
    preprocess: Preprocess
    model: str
    mode: str
    dataset: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # role -> file name, e.g. {"onnx": "model.onnx"}
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.schema.classes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schema"] = self.schema.to_dict()
        d["classes"] = list(self.schema.classes)
        return d

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / MANIFEST
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "Manifest":
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise ConfigError(f"No {MANIFEST} in {directory}. Give a run directory or an exported artifact.")
        try:
            d = json.loads(path.read_text())
            pre = d["preprocess"]
            return cls(
                schema=LabelSchema.from_dict(d["schema"]),
                preprocess=Preprocess(pre["img_size"], tuple(pre["mean"]), tuple(pre["std"]), pre["resize"]),
                model=d["model"],
                mode=d["mode"],
                dataset=d.get("dataset", ""),
                thresholds=d.get("thresholds", {}),
                metrics=d.get("metrics", {}),
                config=d.get("config", {}),
                files=d.get("files", {}),
                versions=d.get("versions", {}),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path} is not a valid pixclass manifest ({e}). Re-export the run.") from e


def runtime_versions(*modules: str) -> dict[str, str]:
    """Versions of pixclass, Python and the named, already-imported-or-importable modules."""
    import importlib

    out = {"pixclass": __version__, "python": platform.python_version()}
    for name in modules:
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:
            pass
    return out
