"""A backbone exported once to ONNX and run on chunks of decoded images.

Curate embeds a dataset chunk by chunk (bounded memory) and stores rows in the shared content-keyed
``pixclass.data.embeddings.EmbeddingCache``, so other features (active learning) reuse them and vice versa.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from pixclass.io.images import normalize

log = logging.getLogger(__name__)


class Embedder:
    """A backbone exported once to ONNX and run with onnxruntime on uint8 batches."""

    def __init__(self, model: str, size: int) -> None:
        self.model = model
        self.size = size
        self._session = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()
        self.dim = 0

    def _load(self) -> None:
        from pixclass.models import create_model
        from pixclass.models.embed import export_onnx, ort_session

        net = create_model(self.model, pretrained=True, num_classes=2)
        self.mean, self.std = net.mean, net.std
        self._tmp = tempfile.TemporaryDirectory()
        path = Path(self._tmp.name) / "backbone.onnx"
        export_onnx(net.backbone, path, self.size)
        self._session = ort_session(path)
        self.dim = int(self._session.run(None, {"input": np.zeros((1, 3, self.size, self.size), np.float32)})[0]
                       .shape[1])

    def __call__(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        if self._session is None:
            self._load()
        out = [self._session.run(None, {"input": normalize(images[i : i + batch_size], self.mean, self.std)})[0]
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
