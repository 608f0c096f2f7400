"""Inference throughput: exported ONNX Predictor vs PyTorch eager fp32 + channels_last, same model and batch."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pixclass.artifact import Manifest, Preprocess
from pixclass.export.onnx import export_run
from pixclass.inference import Predictor
from pixclass.io.images import normalize
from pixclass.models import create_model
from pixclass.schema import LabelSchema


def timed(fn, reps: int) -> float:
    fn()
    t0 = time.time()
    for _ in range(reps):
        fn()
    return (time.time() - t0) / reps


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="mobilenetv2_100")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    run = Path(tempfile.mkdtemp())
    model = create_model(a.model, pretrained=True, num_classes=10).eval()
    torch.save({"model_name": a.model, "num_classes": 10, "state_dict": model.state_dict(), "img_size": a.size},
               run / "model.pt")
    schema = LabelSchema.infer([f"c{i}" for i in range(10)])
    Manifest(schema=schema, preprocess=Preprocess(a.size, model.mean, model.std), model=a.model,
             mode="finetune").save(run)
    art = export_run(run, run / "export").artifact
    predictor = Predictor.from_artifact(art)
    images = np.random.default_rng(0).integers(0, 256, (a.batch, a.size, a.size, 3), dtype=np.uint8)

    net = model.to(memory_format=torch.channels_last)

    def torch_eager():
        x = torch.from_numpy(normalize(images, model.mean, model.std)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            torch.softmax(net(x), 1)

    t_torch = timed(torch_eager, a.reps)
    t_onnx = timed(lambda: predictor.predict_arrays(images, batch_size=a.batch), a.reps)
    print(f"torch eager fp32 channels_last: {a.batch / t_torch:.1f} images/s")
    print(f"pixclass ONNX Predictor:        {a.batch / t_onnx:.1f} images/s")
    print(f"ratio: {t_torch / t_onnx:.2f}x (target >= 2x)")
