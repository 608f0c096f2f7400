"""Predictor over an exported artifact (model.onnx + manifest.json): onnxruntime and Pillow, no torch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixclass.artifact import Manifest
from pixclass.errors import ConfigError, DataError
from pixclass.schema import LabelSchema
from pixclass.decision import decide
from pixclass.io.images import IMAGE_EXTENSIONS, decode_bytes, load_rgb, normalize

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str  # the decision: top-1 class, the binary class at the stored threshold, the deepest confident
    #            taxonomy node, or for multi-label every label above its threshold joined with '|'
    score: float  # its probability
    top: tuple[tuple[str, float], ...]  # top-k (label, probability), best first
    error: str | None = None  # set when the image could not be decoded
    labels: tuple[str, ...] = ()  # the decision as a tuple (several for multi-label, none if nothing passes)

    @property
    def top1(self) -> str:
        return self.top[0][0] if self.top else ""

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "labels": list(self.labels), "score": self.score,
                "top": [{"label": lab, "score": sc} for lab, sc in self.top], "error": self.error}


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders expanded to the image files inside them (recursively, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.exists():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder.")
    if paths and not out:
        raise DataError(f"No image files in {', '.join(map(str, paths))} (looked for "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))}, in subfolders too).")
    return out


def merge_classes(probs: np.ndarray, names: Sequence[str], *, multilabel: bool = False
                  ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Probabilities (N, K) over classes now called ``names`` (K, with repeats where classes were merged) ->
    (N, K') over the distinct names: merged classes add up (one label per image) or take the max (multi-label)."""
    unique = tuple(dict.fromkeys(names))
    if len(unique) == len(names):
        return probs, unique
    join = np.max if multilabel else np.sum
    cols = [[i for i, n in enumerate(names) if n == u] for u in unique]
    return np.stack([join(probs[:, c], axis=1) for c in cols], 1), unique


def to_predictions(paths: Sequence[str], probs: np.ndarray, classes: Sequence[str], k: int = 5, *,
                   schema: LabelSchema | None = None, thresholds: dict[str, float] | None = None) -> list[Prediction]:
    """Predictions from probabilities (N, K); with a schema, decisions follow its task (see pixclass.decision)."""
    out = []
    k = min(k, len(classes))
    decisions = decide(probs, schema, thresholds or {}) if schema is not None else None
    for i, (path, row) in enumerate(zip(paths, probs)):
        order = np.argsort(-row)[:k]
        top = tuple((classes[j], float(row[j])) for j in order)
        labels, score = decisions[i] if decisions is not None else ((top[0][0],), top[0][1])
        out.append(Prediction(str(path), "|".join(labels), float(score), top, labels=labels))
    return out


class Predictor:
    """Classify images with an exported artifact. ``Predictor.from_artifact(dir)``; then ``predict(paths)``."""

    def __init__(self, *, manifest: Manifest, session, directory: Path) -> None:
        self.manifest = manifest
        self.session = session
        self.directory = directory

    @classmethod
    def from_artifact(cls, directory: str | Path, *, threads: int | None = None) -> "Predictor":
        import onnxruntime as ort

        directory = Path(directory)
        manifest = Manifest.load(directory)
        onnx_file = directory / manifest.files.get("onnx", "model.onnx")
        if not onnx_file.is_file():
            raise ConfigError(f"{directory} has no ONNX model. Run `pixclass export RUN --format onnx` first.")
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        session = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])
        return cls(manifest=manifest, session=session, directory=directory)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.manifest.classes

    def predict_arrays(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N, K) for uint8 images (N, S, S, 3) already at the input size."""
        pre = self.manifest.preprocess
        outs = [self.session.run(None, {"input": normalize(images[i : i + batch_size], pre.mean, pre.std)})[0]
                for i in range(0, len(images), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, len(self.classes)), np.float32)

    def predict_bytes(self, data: bytes, k: int = 5, name: str = "<upload>") -> Prediction:
        arr = decode_bytes(data, self.manifest.preprocess.img_size, name)
        return to_predictions([name], self.predict_arrays(arr[None]), self.classes, k, schema=self.manifest.schema,
                              thresholds=self.manifest.thresholds)[0]

    def predict(self, paths: Sequence[str | Path], *, k: int = 5, batch_size: int = 64,
                progress: Progress | None = None) -> list[Prediction]:
        """Predictions for files and folders; an undecodable file gets a Prediction with ``error`` set."""
        return predict_files(paths, self.manifest.preprocess.img_size, self.predict_arrays, self.classes, k=k,
                             batch_size=batch_size, progress=progress, schema=self.manifest.schema,
                             thresholds=self.manifest.thresholds)


def predict_files(paths: Sequence[str | Path], size: int, probs_fn: Callable[[np.ndarray], np.ndarray],
                  classes: Sequence[str], *, k: int = 5, batch_size: int = 64, progress: Progress | None = None,
                  schema: LabelSchema | None = None, thresholds: dict[str, float] | None = None) -> list[Prediction]:
    """Decode files in batches, call ``probs_fn`` on uint8 (N, size, size, 3), keep per-file decode errors."""
    files = expand_paths(paths)
    out: list[Prediction] = []
    for start in range(0, len(files), batch_size):
        chunk, arrays, good = files[start : start + batch_size], [], []
        errors: dict[int, str] = {}
        for i, f in enumerate(chunk):
            try:
                arrays.append(load_rgb(f, size))
                good.append(i)
            except DataError as e:
                errors[i] = str(e)
        probs = probs_fn(np.stack(arrays)) if arrays else np.zeros((0, len(classes)), np.float32)
        preds = iter(to_predictions([str(chunk[i]) for i in good], probs, classes, k, schema=schema,
                                    thresholds=thresholds))
        out += [Prediction(str(f), "", 0.0, (), errors[i]) if i in errors else next(preds)
                for i, f in enumerate(chunk)]
        if progress:
            progress(min(start + batch_size, len(files)), len(files))
    return out
