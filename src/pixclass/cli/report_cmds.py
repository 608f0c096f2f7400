"""`pixclass report`, `pixclass explain`, `pixclass robustness`: registered on the main app by one import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pixclass.cli.main import DbOpt, JsonOpt, QuietOpt, WorkspaceOpt, app, handle_errors, open_ws
from pixclass.cli.output import console, emit_json, progress_bar


@app.command()
@handle_errors
def report(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[Optional[Path], typer.Option(help="HTML file to write (default RUN/report.html).")] = None,
    split: Annotated[str, typer.Option(help="train|val|test")] = "test",
    method: Annotated[str, typer.Option(help="Heatmaps in the galleries: gradcam|gradcampp|gradxinput.")] = "gradcam",
    temperature: Annotated[bool, typer.Option("--temperature/--no-temperature",
                                              help="Fit temperature scaling on validation, store it.")] = True,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """One self-contained HTML report: curves, confusion, per-class bars, ROC/PR, calibration, galleries."""
    from pixclass.explain.report import build_run_report

    ws = open_ws(workspace, db_url)
    with progress_bar(quiet or json_out) as bar:
        path = build_run_report(ws, run, out or Path(run) / "report.html", split=split, method=method,
                                temperature=temperature, progress=bar)
    if json_out:
        return emit_json({"report": str(path), "bytes": path.stat().st_size})
    console.print(f"Report written to [bold]{path}[/] ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
@handle_errors
def explain(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    image: Annotated[Path, typer.Argument(help="Image file.")],
    method: Annotated[str, typer.Option(help="gradcam|gradcampp|gradxinput|lime")] = "gradcam",
    target: Annotated[Optional[str], typer.Option(help="Class to explain (default: the predicted one).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="PNG to write (default IMAGE-METHOD.png).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Heatmap of the pixels behind a prediction, written as image | overlay side by side."""
    from pixclass.explain.single import explain_file

    res = explain_file(run, image, method=method, target=target,
                       out=out or image.with_name(f"{image.stem}-{method}.png"))
    if json_out:
        return emit_json(res)
    console.print(f"{image}: {res['label']} ({res['score']:.3f}); {method} overlay written to [bold]{res['out']}[/]",
                  highlight=False)


@app.command()
@handle_errors
def robustness(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    split: Annotated[str, typer.Option(help="train|val|test")] = "test",
    max_images: Annotated[int, typer.Option(help="Score at most this many images (random subset).")] = 200,
    pgd_steps: Annotated[int, typer.Option(help="PGD iterations.")] = 3,
    chart: Annotated[Optional[Path], typer.Option(help="PNG chart to write (default RUN/robustness.png).")] = None,
    workspace: WorkspaceOpt = None, db_url: DbOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Accuracy under corruptions (5 severities) and FGSM/PGD attacks (epsilon 1, 2, 4, 8 /255).

    Attacks need backward passes: about 10 minutes for 200 images at 224 px on 2 CPU cores.
    """
    from rich.table import Table

    from pixclass.evaluate.plots import robustness_png
    from pixclass.train.robustness import robustness as robustness_fn

    ws = open_ws(workspace, db_url)
    with progress_bar(quiet or json_out) as bar:
        res = robustness_fn(ws, run, split=split, max_images=max_images, pgd_steps=pgd_steps, progress=bar)
    png = robustness_png(res.clean_accuracy, res.corruptions, res.adversarial, chart or Path(run) / "robustness.png")
    if json_out:
        return emit_json({**res.to_dict(), "chart": str(png)})
    console.print(f"Clean accuracy [bold]{res.clean_accuracy:.4f}[/] on {res.n} images")
    table = Table("corruption", *[f"sev {s}" for s in range(1, 6)])
    for name, accs in res.corruptions.items():
        table.add_row(name, *[f"{a:.3f}" for a in accs])
    console.print(table)
    eps = [r["epsilon"] for r in res.adversarial["fgsm"]]
    table = Table("attack", *[f"eps {e * 255:.0f}/255" for e in eps])
    for name, rows in res.adversarial.items():
        table.add_row(name, *[f"{r['accuracy']:.3f}" for r in rows])
    console.print(table)
    console.print(f"Chart: {png}")
