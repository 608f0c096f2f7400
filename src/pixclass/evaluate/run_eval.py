"""Evaluate a run directory or exported artifact on a dataset split; write metrics.json and pictures."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pixclass.artifact import Manifest
from pixclass.data.splits import load_splits
from pixclass.errors import DataError
from pixclass.evaluate.bootstrap import bootstrap_cis
from pixclass.evaluate.calibration import expected_calibration_error
from pixclass.evaluate.task_metrics import metrics_for
from pixclass.evaluate.plots import binary_curves_png, confusion_matrix_png, history_png
from pixclass.evaluate.scores import probs_for
from pixclass.store import Workspace

Progress = Callable[[str, int, int], None]


def evaluate_run(ws: Workspace, run_dir: str | Path, *, split: str = "test", dataset: str | None = None,
                 progress: Progress | None = None) -> dict:
    run_dir = Path(run_dir)
    manifest = Manifest.load(run_dir)
    dataset = dataset or manifest.dataset
    schema, data = load_splits(ws, dataset, manifest.preprocess.img_size, splits=(split,),
                               progress=(lambda d, t: progress("decode", d, t)) if progress else None,
                               decode=not (run_dir / "model.pt").is_file())  # a run scores its cached images itself
    part = data[split]
    if len(part) == 0:
        raise DataError(f"Dataset {dataset!r} has no labeled images in split {split!r}.")
    if schema.task == "multilabel" and list(schema.classes) != list(manifest.classes):
        raise DataError(f"Dataset {dataset!r} now has classes {list(schema.classes)}; the model knows "
                        f"{list(manifest.classes)}. Retrain it.")
    if schema.task != "multilabel" and list(schema.classes) != list(manifest.classes):
        # Map dataset class indices onto the model's classes; images of classes the model lacks cannot be scored.
        lookup = {c: i for i, c in enumerate(manifest.classes)}
        missing = sorted({schema.classes[y] for y in part.labels} - set(lookup))
        if missing:
            raise DataError(f"The model does not know classes {missing} of dataset {dataset!r}. Retrain it.")
        labels = np.array([lookup[schema.classes[y]] for y in part.labels])
    else:
        labels = part.labels
    probs = probs_for(ws, run_dir, manifest, part, progress=progress)
    metrics = metrics_for(manifest.schema, labels, probs, manifest.thresholds)
    metrics.update(split=split, dataset=dataset, run=str(run_dir), task=manifest.schema.task)
    out = run_dir / f"eval-{split}"
    out.mkdir(exist_ok=True)
    if manifest.schema.task == "multilabel":
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        np.save(out / "probs.npy", probs.astype(np.float32))
        return metrics
    metrics["ece"] = expected_calibration_error(labels, probs)
    metrics.update(bootstrap_cis(labels, probs))  # accuracy_ci, macro_f1_ci: 95% percentile bootstrap
    if manifest.schema.task == "binary":
        pos = manifest.schema.index(manifest.schema.positive or manifest.classes[-1])
        binary_curves_png(labels == pos, probs[:, pos], manifest.thresholds.get(manifest.classes[pos]),
                          out / "binary_roc_pr.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    np.save(out / "probs.npy", probs.astype(np.float32))
    confusion_matrix_png(metrics["confusion_matrix"], metrics["classes"], out / "confusion_matrix.png")
    confusion_matrix_png(metrics["confusion_matrix"], metrics["classes"], out / "confusion_matrix_norm.png", True)
    history = _history(run_dir)
    history_png(history, out / "training_curves.png")
    _write_html(out, metrics, has_curves=bool(history))
    metrics["report"] = str(out / "report.html")
    return metrics


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_html(out: Path, m: dict, has_curves: bool) -> None:
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{v['precision']:.3f}</td><td>{v['recall']:.3f}</td>"
        f"<td>{v['f1']:.3f}</td><td>{v['support']}</td></tr>"
        for c, v in m["per_class"].items()
    )
    curves = '<h2>Training curves</h2><img src="training_curves.png">' if has_curves else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>pixclass evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:3px 8px;text-align:right}}img{{max-width:48%;vertical-align:top}}</style></head><body>
<h1>Evaluation: {html.escape(m['dataset'])} / {html.escape(m['split'])}</h1>
<p>accuracy <b>{m['accuracy']:.4f}</b> &middot; macro F1 <b>{m['macro_f1']:.4f}</b> &middot;
weighted F1 {m['weighted_f1']:.4f} &middot; ROC-AUC {m.get('roc_auc', float('nan')):.4f} &middot; n = {m['n']}</p>
<h2>Confusion matrix</h2><img src="confusion_matrix.png"><img src="confusion_matrix_norm.png">
<h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{rows}</table>{curves}</body></html>"""
    (out / "report.html").write_text(page)
