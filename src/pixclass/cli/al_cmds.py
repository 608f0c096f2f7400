"""`pixclass al ...` (active learning) and `pixclass export-labels` (Label Studio tasks). Registered by main.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pixclass.cli.main import DbOpt, JsonOpt, QuietOpt, WorkspaceOpt, app, handle_errors, open_ws
from pixclass.cli.output import console, emit_json, progress_bar
from pixclass.train.active import STRATEGIES

al_app = typer.Typer(no_args_is_help=True, help="Active learning: what to label next, retraining, simulations.")
app.add_typer(al_app, name="al")


@al_app.command("simulate")
@handle_errors
def simulate_cmd(
    dataset: Annotated[str, typer.Argument(help="A fully labeled dataset with train and test splits.")],
    strategy: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(STRATEGIES)}; 'oracle' adds a ceiling "
                                               "that knows the labels and picks the model's mistakes first.")] = (
        "margin,entropy,random"),
    budget: Annotated[Optional[int], typer.Option(help="Labels to stop at (default: the whole train split).")] = None,
    initial: Annotated[int, typer.Option(help="Seeded random labeled pool to start from.")] = 20,
    batch: Annotated[int, typer.Option(help="Images queried per round.")] = 20,
    repeats: Annotated[int, typer.Option(help="Runs with different seeds; curves are averaged.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    model: Annotated[str, typer.Option(help="Frozen backbone giving the embeddings.")] = "mobilenetv2_100",
    img_size: Annotated[int, typer.Option(help="Square input size in pixels.")] = 224,
    target: Annotated[float, typer.Option(help="Fraction of full-data accuracy to reach.")] = 0.95,
    tune_c: Annotated[bool, typer.Option("--tune-c/--fixed-c",
                                         help="Pick each round's regularisation C on the validation split, as "
                                              "retraining in the live loop does (slower), instead of the full-data "
                                              "fit's C.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Folder for curve.csv and curve.png "
                                                     "(default WORKSPACE/runs/al-DATASET-TIME).")] = None,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Replay a labeled dataset as an oracle: learning curves (accuracy vs labels) per strategy, random as baseline."""
    from pixclass.train.al_sim import simulate

    ws = open_ws(workspace, db_url)
    with progress_bar(quiet or json_out) as bar:
        res = simulate(ws, dataset, [s for s in strategy.split(",") if s.strip()], budget=budget, initial=initial,
                       batch=batch, repeats=repeats, seed=seed, model=model, img_size=img_size, tune_c=tune_c,
                       target_fraction=target, out=out, progress=bar)
    if json_out:
        return emit_json(res.to_dict())
    console.print(f"Full-data linear accuracy {res.full_accuracy:.4f}; target ({res.target_fraction:.0%}) "
                  f"{res.target:.4f}; pool {res.pool}, test {res.test}, {res.seconds:.1f}s")
    savings = res.savings() if "random" in res.curves else {}
    for name, n in res.labels_to_target.items():
        extra = f" ({savings[name]:.2f}x fewer than random)" if savings.get(name) and name != "random" else ""
        console.print(f"  {name:>16}: {n if n is not None else 'not reached'} labels to target, "
                      f"final accuracy {res.curves[name][-1][1]:.4f}{extra}")
    for w in res.warnings:
        console.print(f"[yellow]Warning:[/] {w}")
    console.print(f"Curve: {res.csv} and {res.png}")


@al_app.command("next")
@handle_errors
def next_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    strategy: Annotated[str, typer.Option(help=f"One of: {', '.join(STRATEGIES)}.")] = "margin",
    n: Annotated[int, typer.Option("--n", "-n", help="How many images.")] = 20,
    run: Annotated[Optional[Path], typer.Option(help="Run directory to score with (default: the latest).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (random and kcenter).")] = 0,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """The unlabeled images to label next, most informative first."""
    from pixclass.store import records
    from pixclass.store.tables import Image
    from pixclass.train.active import label_queue

    ws = open_ws(workspace, db_url)
    with progress_bar(quiet or json_out) as bar:
        q = label_queue(ws, dataset, strategy, n, run_dir=run, seed=seed, progress=bar)
    with ws.session() as s:
        records.get_dataset(s, dataset)
        paths = {i: s.get(Image, i).path for i in q.image_ids}
    rows = [{"image_id": i, "path": paths[i], "score": sc} for i, sc in zip(q.image_ids, q.scores)]
    if json_out:
        return emit_json({**q.to_dict(), "images": rows})
    console.print(f"{len(rows)} images by {q.strategy}" + (f" (run {q.run_id})" if q.run_id else ""))
    for r in rows:
        console.print(f"  {r['image_id']:>7}  {r['score']:.4f}  {r['path']}", highlight=False)


@al_app.command("retrain")
@handle_errors
def retrain_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    every: Annotated[int, typer.Option(help="Retrain once this many images got new human labels.")] = 50,
    img_size: Annotated[int, typer.Option(help="Square input size in pixels.")] = 224,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Train a linear-mode run if at least EVERY images were labeled since the latest run."""
    from pixclass.config import TrainConfig
    from pixclass.train.active import labels_since_last_run, retrain_if_due

    ws = open_ws(workspace, db_url)
    new = labels_since_last_run(ws, dataset)
    with progress_bar(quiet or json_out) as bar:
        res = retrain_if_due(ws, dataset, every, cfg=TrainConfig(mode="linear", img_size=img_size), progress=bar)
    if json_out:
        return emit_json({"new_labels": new, "every": every, "retrained": res is not None,
                          "run": res.to_dict() if res else None})
    if res is None:
        console.print(f"{new} new labels since the latest run; retraining at {every}.")
    else:
        console.print(f"Retrained after {new} new labels: run [bold]{res.run}[/], "
                      f"val accuracy {res.metrics.get('val_accuracy', float('nan')):.4f}")


def _predictions(ws, dataset: str, run_dir: Path | None, quiet: bool):
    """({image_id: TaskPrediction}, model_version) from the run's stored predictions, else computed with it.

    Computed ones follow ``pixclass predict``'s decision rule (pixclass.decision.decide with the manifest's
    thresholds): every class above its threshold for multi-label, the operating threshold for binary, the deepest
    confident node for hierarchical. An image whose decision is empty gets no prediction."""
    from pixclass.artifact import Manifest
    from pixclass.decision import decide
    from pixclass.io.labelstudio import TaskPrediction, stored_predictions
    from pixclass.store import records
    from pixclass.evaluate.scores import run_probs

    preds, path, version = stored_predictions(ws, dataset, run_dir)
    if preds or not path:
        return preds, version
    with ws.session() as s:
        its = records.items(s, records.get_dataset(s, dataset))
    if not its:
        return {}, version
    m = Manifest.load(path)
    with progress_bar(quiet) as bar:
        probs = run_probs(ws, path, its, progress=bar)
    decisions = decide(probs, m.schema, m.thresholds)
    preds = {it.image_id: TaskPrediction(labels, score) for it, (labels, score) in zip(its, decisions) if labels}
    return preds, version


@app.command("export-labels")
@handle_errors
def export_labels_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    out: Annotated[Path, typer.Option(help="Output file (.json).")],
    format: Annotated[str, typer.Option("--format", help="Export format: labelstudio.")] = "labelstudio",
    predictions: Annotated[bool, typer.Option("--predictions/--no-predictions",
                                              help="Add the latest run's predictions as suggestions.")] = True,
    run: Annotated[Optional[Path], typer.Option(help="Run directory for predictions (default: the latest).")] = None,
    document_root: Annotated[Optional[Path], typer.Option(help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT; image URLs "
                                                               "are /data/local-files/?d=PATH-UNDER-ROOT "
                                                               "(default /).")] = None,
    from_name: Annotated[Optional[str], typer.Option(help="Control name in the labeling config "
                                                          "(default choice, or taxonomy).")] = None,
    to_name: Annotated[str, typer.Option(help="Image object name in the labeling config.")] = "image",
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Labels (and model predictions) as Label Studio tasks, plus a matching labeling config (FILE.xml)."""
    from pixclass.errors import ConfigError
    from pixclass.io.labelstudio import export_tasks, label_config, write_tasks
    from pixclass.store import records

    if format.lower().replace("-", "").replace("_", "") != "labelstudio":
        raise ConfigError(f"Unknown export format {format!r}. Supported: labelstudio.")
    ws = open_ws(workspace, db_url)
    preds, version = _predictions(ws, dataset, run, quiet or json_out) if predictions else ({}, "")
    tasks = export_tasks(ws, dataset, predictions=preds, model_version=version, document_root=document_root,
                         from_name=from_name, to_name=to_name)
    path = write_tasks(tasks, out)
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        schema = records.load_schema(s, ds)
    config = path.with_suffix(".xml")
    config.write_text(label_config(schema.classes, schema.task, from_name=from_name, to_name=to_name))
    summary = {"out": str(path), "config": str(config), "tasks": len(tasks),
               "annotated": sum(bool(t["annotations"]) for t in tasks),
               "predictions": sum("predictions" in t for t in tasks), "model_version": version}
    if json_out:
        return emit_json(summary)
    console.print(f"{summary['tasks']} tasks ({summary['annotated']} annotated, {summary['predictions']} with "
                  f"predictions) written to [bold]{path}[/]; labeling config {config}")
