"""The `pixclass` command. Each verb parses options, calls one library function, and prints."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from pixclass.cli.output import console, emit_json, progress_bar, simple
from pixclass.errors import PixclassError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="pixclass: image classification from a folder of images to a served model.")

WorkspaceOpt = Annotated[Optional[Path], typer.Option("--workspace", "-w", envvar="PIXCLASS_WORKSPACE",
                                                      help="Workspace directory (default ./pixclass-workspace).")]
DbOpt = Annotated[Optional[str], typer.Option("--db-url", envvar="PIXCLASS_DB_URL",
                                              help="Database URL, e.g. postgresql+psycopg://u:p@host/db.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PixclassError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def open_ws(workspace: Path | None, db_url: str | None):
    from pixclass.store import Workspace

    return Workspace.open(workspace, url=db_url)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")


@app.command("import")
@handle_errors
def import_cmd(
    src: Annotated[Path, typer.Argument(help="Folder tree (root/<class>/img or root/<split>/<class>/img), CSV "
                                             "(path,label[,split]) or a Label Studio JSON/JSON-MIN/CSV export.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name.")],
    task: Annotated[Optional[str], typer.Option(help="binary|multiclass|multilabel|hierarchical (inferred).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the 80/10/10 split for images without one.")] = 0,
    taxonomy: Annotated[Optional[Path], typer.Option(help="Taxonomy file: one class path (a/b/c) per line.")] = None,
    document_root: Annotated[Optional[Path], typer.Option(
        help="Label Studio export: the folder /data/local-files/?d=... links are relative to (Label Studio's "
             "LOCAL_FILES_DOCUMENT_ROOT; else $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT or $LOCAL_FILES_DOCUMENT_ROOT)."
    )] = None,
    ls_data_dir: Annotated[Optional[Path], typer.Option(
        help="Label Studio export: Label Studio's data folder; /data/upload/N/F links are read from "
             "DIR/media/upload/N/F.")] = None,
    from_name: Annotated[Optional[str], typer.Option(
        help="Label Studio export: the Choices/Taxonomy control to read when the labeling config has several.")] = None,
    update_labels: Annotated[bool, typer.Option(
        "--update-labels", help="Images already in the dataset whose label in SRC differs (say, relabeled in Label "
                                "Studio since an export) get SRC's label as a new vote; without it they are counted.")
    ] = False,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Import images; unreadable files are reported by path and reason, the rest goes on. Paths are stored absolute."""
    from pixclass.io.importer import import_dataset

    ws = open_ws(workspace, db_url)
    with progress_bar(quiet or json_out) as bar:
        res = import_dataset(ws, src, name, task=task, seed=seed, taxonomy=taxonomy, document_root=document_root,
                             ls_data_dir=ls_data_dir, from_name=from_name, update_labels=update_labels,
                             progress=simple(bar, "import"))
    if json_out:
        return emit_json(res.to_dict())
    console.print(f"Imported [bold]{res.imported}[/] images into [bold]{res.dataset}[/] ({res.task}, "
                  f"{len(res.classes)} classes); {res.skipped_existing} already there; {len(res.broken)} broken.")
    for b in res.broken:
        console.print(f"  [red]broken[/] {b['path']}: {b['reason']}", highlight=False)
    if res.relabeled:
        console.print(f"Relabeled {res.relabeled} images already there whose label in {src.name} differs.")
    elif res.label_changes:
        console.print(f"[yellow]{res.label_changes} images already there have another label in {src.name}[/]; "
                      f"they keep theirs. Import again with --update-labels to take the new labels.")


@app.command()
@handle_errors
def stats(name: Annotated[str, typer.Argument(help="Dataset name.")], workspace: WorkspaceOpt = None,
          db_url: DbOpt = None, json_out: JsonOpt = False) -> None:
    """Counts per class and split, image sizes, formats and broken files."""
    from rich.table import Table

    from pixclass.store import records

    ws = open_ws(workspace, db_url)
    with ws.session() as s:
        st = records.dataset_stats(s, records.get_dataset(s, name))
    if json_out:
        return emit_json(st)
    console.print(f"[bold]{st['dataset']}[/]: {st['images']} images ({st['labeled']} labeled), task {st['task']}, "
                  f"splits {st['splits']}, width {st['width']}, height {st['height']}, formats {st['formats']}")
    table = Table("class", "images")
    for c, n in st["classes"].items():
        table.add_row(c, str(n))
    console.print(table)
    for b in st["broken"]:
        console.print(f"  [red]broken[/] {b['path']}: {b['reason']}", highlight=False)


@app.command()
@handle_errors
def train(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    model: Annotated[str, typer.Option(help="Model name (see `pixclass models`).")] = "mobilenetv2_100",
    mode: Annotated[str, typer.Option(help="linear (frozen embeddings + logistic regression) or finetune.")] = "finetune",
    pretrained: Annotated[bool, typer.Option("--pretrained/--no-pretrained", help="Start from ImageNet weights.")] = True,
    weights: Annotated[Optional[Path], typer.Option(help="Backbone weights file (.pth/.pt/.safetensors).")] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (finetune).")] = 10,
    img_size: Annotated[int, typer.Option(help="Square input size in pixels.")] = 224,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 48,
    lr: Annotated[float, typer.Option(help="Peak learning rate of the head (AdamW).")] = 1e-3,
    time_budget: Annotated[Optional[float], typer.Option(help="Stop cleanly after this many seconds.")] = None,
    balance: Annotated[str, typer.Option(help="Class imbalance: weights|sampler|none.")] = "none",
    patience: Annotated[int, typer.Option(help="Early stopping patience in epochs.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    adversarial: Annotated[bool, typer.Option("--adversarial", help="Adversarial fine-tuning (FGSM).")] = False,
    adv_eps: Annotated[float, typer.Option(help="L-inf radius of --adversarial in [0, 1] pixel units.")] = 2 / 255,
    features: Annotated[str, typer.Option(help="Classical models (--model logreg|svm|knn|tree|forest): "
                                               "embed[:MODEL]|colorhist|hog|pixels.")] = "embed",
    loss: Annotated[str, typer.Option(help="Multi-label loss: auto (BCE) or asl (asymmetric).")] = "auto",
    hierarchy: Annotated[str, typer.Option(help="Hierarchical: flat (one network) or cascade (per node).")] = "flat",
    node_threshold: Annotated[float, typer.Option(help="Hierarchical: deepest node at least this probable.")] = 0.5,
    threshold_target: Annotated[str, typer.Option(help="Binary: f1, precision>=X or recall>=X.")] = "f1",
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default WORKSPACE/runs/NAME-TIME).")] = None,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Train a classifier on a dataset (task kind from the dataset); writes a run directory."""
    from pixclass.config import TrainConfig
    from pixclass.train.run import train as train_fn

    cfg = TrainConfig(model=model, mode=mode, pretrained=pretrained, weights=str(weights) if weights else None,
                      epochs=epochs, img_size=img_size, batch_size=batch_size, lr=lr, time_budget=time_budget,
                      balance=balance, patience=patience, seed=seed, resume=resume, features=features, loss=loss,
                      hierarchy=hierarchy, node_threshold=node_threshold, threshold_target=threshold_target,
                      adversarial_eps=adv_eps if adversarial else 0.0)  # type: ignore[arg-type]
    ws = open_ws(workspace, db_url)
    with progress_bar(quiet or json_out) as bar:
        res = train_fn(ws, name, cfg, out=out, progress=bar)
    if json_out:
        return emit_json(res.to_dict())
    console.print(f"Run [bold]{res.run}[/] in {res.seconds:.1f}s: " +
                  ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.metrics.items()
                            if k != "skipped"))
    if res.skipped:
        console.print(f"{len(res.skipped)} images left out: their files no longer decode.")
    for b in res.skipped:
        console.print(f"  [red]skipped[/] {b['path']} ({b['split']}): {b['reason']}", highlight=False)


@app.command()
@handle_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory or exported artifact.")],
    split: Annotated[str, typer.Option(help="train|val|test")] = "test",
    dataset: Annotated[Optional[str], typer.Option(help="Dataset (default: the run's).")] = None,
    cv: Annotated[Optional[int], typer.Option(help="K-fold cross-validation on train+val (linear runs).")] = None,
    report: Annotated[bool, typer.Option("--report", help="Write the full HTML report (Grad-CAM etc.).")] = False,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Accuracy, per-class precision/recall/F1, macro/weighted F1, ROC-AUC, top-k, confusion matrix."""
    from pixclass.evaluate.run_eval import evaluate_run

    ws = open_ws(workspace, db_url)
    with progress_bar(quiet or json_out) as bar:
        m = evaluate_run(ws, run, split=split, dataset=dataset, progress=bar)
        if cv:
            from pixclass.evaluate.cv import cross_validate

            m["cv"] = cross_validate(ws, run, k=cv, progress=bar)
        if report:
            from pixclass.explain.report import build_run_report

            m["report"] = str(build_run_report(ws, run, Path(m["report"]), split=split, dataset=dataset, progress=bar))
    if json_out:
        return emit_json(m)
    from rich.table import Table

    if m.get("task") == "multilabel":
        console.print(f"{m['dataset']}/{split}: mAP [bold]{m['mAP']:.4f}[/], micro F1 {m['micro_f1']:.4f}, macro F1 "
                      f"{m['macro_f1']:.4f}, Hamming loss {m['hamming_loss']:.4f}, subset accuracy "
                      f"{m['subset_accuracy']:.4f} (n={m['n']})")
        return
    if m.get("task") == "hierarchical":
        console.print(f"accuracy by level {[round(a, 4) for a in m['accuracy_by_level']]}, hierarchical F1 "
                      f"{m['hierarchical_f1']:.4f}")
    console.print(f"{m['dataset']}/{split}: accuracy [bold]{m['accuracy']:.4f}[/], macro F1 {m['macro_f1']:.4f}, "
                  f"weighted F1 {m['weighted_f1']:.4f}, ROC-AUC {m.get('roc_auc', float('nan')):.4f}, "
                  f"{m['top_k']} (n={m['n']})")
    table = Table("class", "precision", "recall", "f1", "support")
    for c, v in m["per_class"].items():
        table.add_row(c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]))
    console.print(table)
    console.print(f"ECE {m['ece']:.4f}; 95% CI accuracy {m['accuracy_ci'][0]:.4f} to {m['accuracy_ci'][1]:.4f}, "
                  f"macro F1 {m['macro_f1_ci'][0]:.4f} to {m['macro_f1_ci'][1]:.4f}")
    if cv:
        console.print(f"{cv}-fold CV on train+val: accuracy {m['cv']['accuracy_mean']:.4f} "
                      f"+/- {m['cv']['accuracy_std']:.4f}, macro F1 {m['cv']['macro_f1_mean']:.4f} "
                      f"+/- {m['cv']['macro_f1_std']:.4f} (per fold in {Path(run) / 'cv.json'})")
    console.print(f"Report: {m['report']}")


@app.command()
@handle_errors
def predict(
    run: Annotated[Path, typer.Argument(help="Run directory or exported artifact.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    out: Annotated[Optional[Path], typer.Option(help="Write predictions to FILE.csv or FILE.json.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="How many labels per image.")] = 3,
    json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Predict labels for images; undecodable files are listed with the reason."""
    from pixclass.inference.batch import predict_paths, write_predictions

    with progress_bar(quiet or json_out) as bar:
        preds = predict_paths(run, paths, k=top_k, progress=simple(bar, "predict"))
    if out:
        write_predictions(preds, out, k=top_k)
    if json_out:
        return emit_json({"predictions": [p.to_dict() for p in preds], "out": str(out) if out else None})
    for p in preds[: 20 if out else len(preds)]:
        console.print(f"{p.path}: " + (f"[red]{p.error}[/]" if p.error else f"{p.label} ({p.score:.3f})"),
                      highlight=False)
    if out:
        console.print(f"{len(preds)} predictions written to [bold]{out}[/]")


@app.command()
@handle_errors
def export(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    format: Annotated[str, typer.Option("--format", help="Export format.")] = "onnx",
    out: Annotated[Optional[Path], typer.Option(help="Artifact directory (default RUN/export).")] = None,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False,
) -> None:
    """Export model.onnx + manifest.json and check parity with PyTorch on real test images."""
    from pixclass.export.onnx import export_run

    res = export_run(run, out, fmt=format, parity_images=_parity_images(run, workspace, db_url))
    if json_out:
        return emit_json(res.to_dict())
    console.print(f"Artifact [bold]{res.artifact}[/] ({res.size_bytes / 1e6:.1f} MB). Parity on "
                  f"{res.parity_images} images: top-1 agreement {res.top1_agreement:.4f}, "
                  f"max abs diff {res.max_abs_diff:.2e}")


def _parity_images(run: Path, workspace: Path | None, db_url: str | None):
    """Up to 128 test images of the run's dataset from the cache, or None (random inputs) if unavailable."""
    from pixclass.artifact import Manifest
    from pixclass.data.splits import load_splits

    try:
        m = Manifest.load(run)
        _, data = load_splits(open_ws(workspace, db_url), m.dataset, m.preprocess.img_size, splits=("test",))
        return data["test"].images[:128]
    except PixclassError:
        return None


@app.command()
@handle_errors
def models(all_names: Annotated[bool, typer.Option("--all", help="Every timm and torchvision name.")] = False,
           json_out: JsonOpt = False) -> None:
    """List model names and whether ImageNet weights are available offline."""
    from rich.table import Table

    from pixclass.models import list_models

    infos = list_models(all_names)
    if json_out:
        return emit_json([i.__dict__ for i in infos])
    table = Table("model", "family", "offline weights", "weights from")
    for i in infos:
        table.add_row(i.name, i.family, "yes" if i.offline_weights else "no", i.source)
    console.print(table)


@app.command()
@handle_errors
def demo(workspace: WorkspaceOpt = None, quiet: QuietOpt = False) -> None:
    """The whole loop on a bundled real-photo dataset: import, train, evaluate, export, predict."""
    from pixclass.cli.demo import run_demo

    run_demo(workspace or Path("pixclass-demo"), quiet=quiet)


import pixclass.cli.server_cmds  # noqa: E402,F401 - serve, user
import pixclass.cli.curate_cmds  # noqa: E402,F401 - curate, issues-list, curate-fix
import pixclass.cli.report_cmds  # noqa: E402,F401 - report, explain, robustness

from pixclass.cli import al_cmds  # noqa: E402,F401  - `al` and `export-labels`

import pixclass.cli.tasks_cmds  # noqa: E402,F401 - cluster, cluster-label, pretrain, compare

if __name__ == "__main__":  # `python -m pixclass.cli.main`: run the module copy the commands registered on
    from pixclass.cli.main import app as registered_app

    registered_app()
