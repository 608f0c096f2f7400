"""CLI verbs for the other task kinds: cluster, cluster-label, pretrain, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pixclass.cli.main import DbOpt, JsonOpt, QuietOpt, WorkspaceOpt, app, handle_errors, open_ws
from pixclass.cli.output import console, emit_json, progress_bar


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


@app.command()
@handle_errors
def cluster(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    method: Annotated[str, typer.Option(help="kmeans|gmm|dbscan|agglomerative")] = "kmeans",
    k: Annotated[Optional[int], typer.Option("--k", help="Clusters (default: the dataset's classes, else the best "
                                                         "k-means silhouette in 2..10).")] = None,
    model: Annotated[str, typer.Option(help="Embedding backbone (ImageNet weights).")] = "mobilenetv2_100",
    img_size: Annotated[int, typer.Option(help="Embedding input size.")] = 224,
    eps: Annotated[Optional[float], typer.Option(help="DBSCAN radius (default: estimated).")] = None,
    min_samples: Annotated[int, typer.Option(help="DBSCAN points in a core neighbourhood.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the pictures and assignments.csv.")] = None,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Cluster a dataset's images on embeddings; report silhouette (and ARI/NMI against labels), draw each cluster."""
    from pixclass.train.cluster import cluster_dataset

    ws = open_ws(workspace, db_url)
    with progress_bar(quiet or json_out) as bar:
        res = cluster_dataset(ws, name, method=method, k=k, model=model, img_size=img_size, eps=eps,
                              min_samples=min_samples, seed=seed, out=out, progress=bar)
    if json_out:
        return emit_json(res.to_dict())
    from rich.table import Table

    console.print(f"[bold]{res.dataset}[/]: {res.n} images in {res.k} clusters ({res.method}, cluster run "
                  f"{res.cluster_run}); silhouette {_fmt(res.silhouette)}, ARI {_fmt(res.ari)}, NMI {_fmt(res.nmi)}"
                  + (f" on {res.labeled} labeled images" if res.labeled else ""))
    table = Table("cluster", "images")
    for c, n in res.sizes.items():
        table.add_row("noise" if c == -1 else str(c), str(n))
    console.print(table)
    console.print(f"Pictures: {res.out / 'clusters.png'} and cluster-<C>.png. Label a cluster with "
                  f"`pixclass cluster-label {res.dataset} --cluster C --label NAME`.")


@app.command("cluster-label")
@handle_errors
def cluster_label(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    cluster_id: Annotated[int, typer.Option("--cluster", help="Cluster number (see `pixclass cluster`).")],
    label: Annotated[str, typer.Option(help="Class name to give every image of the cluster.")],
    run: Annotated[Optional[int], typer.Option("--run", help="Cluster run id (default: the newest).")] = None,
    only_unlabeled: Annotated[bool, typer.Option("--only-unlabeled", help="Leave labeled images alone.")] = False,
    author: Annotated[str, typer.Option(help="Annotator name stored with the labels.")] = "",
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False,
) -> None:
    """Label a whole cluster at once (human annotations): cold-start labeling of an unlabeled folder."""
    from pixclass.train.cluster import label_cluster

    res = label_cluster(open_ws(workspace, db_url), name, cluster_id, label, cluster_run=run, author=author,
                        only_unlabeled=only_unlabeled)
    if json_out:
        return emit_json(res.to_dict())
    console.print(f"Labeled {res.labeled} images of cluster {res.cluster} as [bold]{res.label}[/]"
                  + (f" ({res.skipped} already labeled left alone)" if res.skipped else "")
                  + f". Classes now: {', '.join(res.classes)}")


@app.command()
@handle_errors
def pretrain(
    name: Annotated[str, typer.Argument(help="Dataset name (labels are not used).")],
    out: Annotated[Path, typer.Option(help="Backbone weights file to write (.pt), for `train --weights`.")],
    method: Annotated[str, typer.Option(help="simclr|byol")] = "simclr",
    model: Annotated[str, typer.Option(help="Backbone (see `pixclass models`).")] = "smallcnn",
    pretrained: Annotated[bool, typer.Option("--pretrained/--no-pretrained",
                                             help="Start from ImageNet weights.")] = False,
    epochs: Annotated[int, typer.Option(help="Passes over the images.")] = 20,
    img_size: Annotated[int, typer.Option(help="Square input size in pixels.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Images per step (each seen as two views).")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-3,
    time_budget: Annotated[Optional[float], typer.Option(help="Stop cleanly after this many seconds.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Self-supervised pretraining of a backbone on a dataset's images; `train --weights OUT` starts from it."""
    from pixclass.train.pretrain import PretrainConfig, pretrain as pretrain_fn

    cfg = PretrainConfig(method=method, model=model, pretrained=pretrained, epochs=epochs,  # type: ignore[arg-type]
                         img_size=img_size, batch_size=batch_size, lr=lr, time_budget=time_budget, seed=seed)
    ws = open_ws(workspace, db_url)
    with progress_bar(quiet or json_out) as bar:
        res = pretrain_fn(ws, name, cfg, out=out, progress=bar)
    if json_out:
        return emit_json(res.to_dict())
    last = res.history[-1]["loss"] if res.history else float("nan")
    console.print(f"{res.method} on {res.images} images: {res.steps} steps ({res.epochs} epochs) in "
                  f"{res.seconds:.1f}s, final loss {last:.4f}. Backbone written to [bold]{res.path}[/]; use "
                  f"`pixclass train {name} --model {res.model} --weights {res.path}`.")


@app.command()
@handle_errors
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories or exported artifacts.")],
    batch: Annotated[int, typer.Option(help="Batch size of the batch latency.")] = 32,
    repeats: Annotated[int, typer.Option(help="Timed repeats (median).")] = 10,
    latency: Annotated[bool, typer.Option("--latency/--no-latency", help="Measure CPU latency.")] = True,
    json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """A table of runs' metrics, model sizes and CPU latency (one image and a batch; torch and ONNX)."""
    from pixclass.evaluate.compare import compare_runs

    with progress_bar(quiet or json_out) as bar:
        rows = compare_runs(runs, batch=batch, repeats=repeats, latency=latency, progress=bar)
    if json_out:
        return emit_json({"runs": [r.to_dict() for r in rows]})
    from rich.table import Table

    keys = [k for k in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")
            if any(k in r.metrics for r in rows)]
    table = Table("run", "model", "mode", *keys, "size MB", "torch 1 img ms", f"torch img/s (x{batch})",
                  "onnx 1 img ms", f"onnx img/s (x{batch})")
    for r in rows:
        t, o = r.latency.get("torch", {}), r.latency.get("onnx", {})
        table.add_row(Path(r.run).name, r.model, r.mode, *[_fmt(r.metrics.get(k)) for k in keys],
                      f"{r.size_bytes / 1e6:.2f}", f"{t['single_ms']:.1f}" if t else "-",
                      f"{t['images_per_s']:.0f}" if t else "-", f"{o['single_ms']:.1f}" if o else "-",
                      f"{o['images_per_s']:.0f}" if o else "-")
    console.print(table)
