import csv

from typer.testing import CliRunner

from pixclass.cli.main import app


def test_demo_runs_the_whole_loop(tmp_path):
    ws = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--workspace", str(ws), "--quiet"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert (ws / "runs" / "demo-run" / "export" / "model.onnx").is_file()
    assert (ws / "runs" / "demo-run" / "eval-test" / "report.html").is_file()
    rows = list(csv.DictReader((ws / "demo-predictions.csv").open()))
    assert len(rows) == 160
    right = sum(r["label"] == r["path"].rsplit("/", 2)[-2] for r in rows)
    assert right / len(rows) > 0.6  # 4 classes: chance is 0.25
