"""`pixclass curate`, `issues-list` and `curate-fix`: dataset health, its stored findings, and acting on them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pixclass.cli.main import DbOpt, JsonOpt, QuietOpt, WorkspaceOpt, app, handle_errors, open_ws
from pixclass.cli.output import console, emit_json, progress_bar


@app.command()
@handle_errors
def curate(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    report: Annotated[Optional[Path], typer.Option(
        help="HTML report file (default WORKSPACE/reports/curate-NAME-RUN.html).")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write the HTML report.")] = False,
    model: Annotated[str, typer.Option(help="Embedding backbone.")] = "mobilenetv2_100",
    img_size: Annotated[Optional[int], typer.Option(help="Input size (default 224, or 96 above 20k images).")] = None,
    near_cosine: Annotated[float, typer.Option(help="Embedding cosine similarity for near-duplicates.")] = 0.97,
    hash_bits: Annotated[int, typer.Option(help="Perceptual-hash bit distance for near-duplicates.")] = 6,
    outlier_z: Annotated[float, typer.Option(help="Robust z-score of k-NN distance that makes an outlier.")] = 4.0,
    folds: Annotated[int, typer.Option(help="Cross-validation folds for label-error probabilities.")] = 5,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Find duplicates, leakage, broken and poor images, outliers, imbalance and likely label errors."""
    from pixclass.curate import CurateConfig
    from pixclass.curate import curate as curate_fn

    cfg = CurateConfig(model=model, img_size=img_size, near_cosine=near_cosine, hash_bits=hash_bits,
                       outlier_z=outlier_z, folds=folds)
    ws = open_ws(workspace, db_url)
    if report is None and not no_report:
        from pixclass.store import records
        from pixclass.store.findings import latest_curate_run

        with ws.session() as s:
            prev = latest_curate_run(s, records.get_dataset(s, name))
        report = ws.root / "reports" / f"curate-{name}-{(prev.id + 1) if prev else 1}.html"
    with progress_bar(quiet or json_out) as bar:
        res = curate_fn(ws, name, cfg, report=None if no_report else report, progress=bar)
    if json_out:
        return emit_json(res.to_dict())
    from rich.table import Table

    ch = res.changes
    table = Table("kind", "findings", *(["previous run"] if ch.get("previous_run") else []))
    for kind, n in res.summary.items():
        before = ch.get("per_kind", {}).get(kind, {}).get("before", 0)
        table.add_row(kind, str(n), *([str(before)] if ch.get("previous_run") else []))
    console.print(f"[bold]{res.dataset}[/]: {res.images} images checked in {res.seconds:.1f}s (curate run "
                  f"{res.run_id}); label model out-of-sample accuracy {res.label_model_accuracy}")
    console.print(table)
    cb = res.class_balance
    console.print(f"Class balance: ratio {cb['imbalance_ratio']}, below minimum: "
                  f"{', '.join(cb['below_minimum']) or 'none'}")
    for r in cb["remedies"]:
        console.print(f"  - {r}", highlight=False)
    if ch.get("previous_run"):
        console.print(f"Since curate run {ch['previous_run']}: {len(ch['new'])} new, {len(ch['resolved'])} resolved.")
    if res.report:
        console.print(f"Report: [bold]{res.report}[/]")


@app.command("issues-list")
@handle_errors
def issues_list(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    kind: Annotated[Optional[str], typer.Option(help="Only this kind, e.g. near_duplicate, label_error.")] = None,
    status: Annotated[Optional[str], typer.Option(
        help="Only this status: open|excluded|review|dismissed|relabeled.")] = None,
    min_score: Annotated[Optional[float], typer.Option(help="Only findings scoring at least this.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 50,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False,
) -> None:
    """List the findings of the newest curate run, worst first."""
    from pixclass.curate.run import check_kind
    from pixclass.errors import DataError
    from pixclass.store import records
    from pixclass.store.findings import latest_curate_run, list_findings

    if kind:
        check_kind(kind)
    ws = open_ws(workspace, db_url)
    with ws.session() as s:
        run = latest_curate_run(s, records.get_dataset(s, name))
        if run is None:
            raise DataError(f"Dataset {name!r} has no curate findings yet. Run `pixclass curate {name}` first.")
        rows = [f.to_dict() for f in list_findings(s, run, kind=kind, status=status, min_score=min_score)]
    rows.sort(key=lambda f: -f["score"])
    total = len(rows)
    rows = rows[:limit] if limit else rows
    if json_out:
        return emit_json({"dataset": name, "run_id": run.id, "total": total, "findings": rows})
    from rich.table import Table

    table = Table("id", "kind", "score", "status", "path", "other / labels")
    for f in rows:
        extra = f["other_path"] or (f"{f['given_label']} -> {f['suggested_label']}" if f["suggested_label"] else "")
        table.add_row(str(f["id"]), f["kind"], f"{f['score']:.3f}", f["status"], f["path"], extra)
    console.print(table)
    console.print(f"{len(rows)} of {total} findings from curate run {run.id}.")


@app.command("curate-fix")
@handle_errors
def curate_fix(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    action: Annotated[str, typer.Option(help="exclude|include|review|dismiss|relabel|undersample")],
    kind: Annotated[Optional[str], typer.Option(help="Act on findings of this kind.")] = None,
    finding_id: Annotated[Optional[list[int]], typer.Option("--id", help="Act on these finding ids.")] = None,
    path: Annotated[Optional[list[str]], typer.Option(help="Act on findings of these image paths.")] = None,
    min_score: Annotated[Optional[float], typer.Option(help="Only findings scoring at least this.")] = None,
    max_ratio: Annotated[float, typer.Option(help="undersample: largest class at most this x the smallest.")] = 3.0,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False,
) -> None:
    """Act on findings: exclude images from training, send label errors to review, accept suggested labels."""
    from pixclass.curate import apply_fix

    res = apply_fix(open_ws(workspace, db_url), name, action, kind=kind, ids=finding_id, paths=path,
                    min_score=min_score, max_ratio=max_ratio)
    if json_out:
        return emit_json(res.to_dict())
    console.print(f"{action}: {res.findings} findings updated, {len(res.excluded)} images excluded from training, "
                  f"{len(res.included)} included again, {len(res.relabeled)} relabeled.")
