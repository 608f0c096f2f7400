"""`pixclass curate --json`, `issues-list` and `curate-fix` on tiny real photos with a planted duplicate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from pixclass.cli.main import app

runner = CliRunner()
FIELDS = {"path", "kind", "score", "other_path", "given_label", "suggested_label"}


def test_curate_cli_contract_and_fix_loop(tmp_path, photos4):
    src = tmp_path / "src"
    for cls in ("hat", "shoes"):
        shutil.copytree(photos4 / cls, src / cls)
    first = sorted((src / "shoes").glob("*.jpg"))[0]
    im = Image.open(first).convert("RGB")
    im.resize((im.width * 4 // 5, im.height * 4 // 5)).save(src / "shoes" / "zz_copy.jpg", quality=75)
    (src / "shoes" / "zz_broken.jpg").write_bytes(first.read_bytes()[:300])
    ws = ["-w", str(tmp_path / "ws")]
    assert runner.invoke(app, ["import", str(src), "--name", "d", "--json", *ws]).exit_code == 0

    out = runner.invoke(app, ["curate", "d", "--json", "--img-size", "96", "--folds", "3",
                              "--report", str(tmp_path / "r.html"), *ws])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert all(FIELDS <= set(f) for f in res["findings"])
    assert res["class_balance"]["counts"] == {"hat": 30, "shoes": 31}
    near = [f for f in res["findings"] if f["kind"] == "near_duplicate"]
    assert {(Path(f["path"]).name, Path(f["other_path"]).name) for f in near} >= {("zz_copy.jpg", first.name)}
    assert [Path(f["path"]).name for f in res["findings"] if f["kind"] == "broken"] == ["zz_broken.jpg"]
    assert (tmp_path / "r.html").stat().st_size > 10_000

    listed = json.loads(runner.invoke(app, ["issues-list", "d", "--kind", "near_duplicate", "--json", *ws]).stdout)
    assert [f["path"] for f in listed["findings"]] == [f["path"] for f in near]
    bad = runner.invoke(app, ["issues-list", "d", "--kind", "near_dupe", *ws])
    assert bad.exit_code == 2 and "near_duplicate" in bad.output
    bad = runner.invoke(app, ["issues-list", "d", "--status", "bogus", *ws])
    assert bad.exit_code == 2 and "Unknown status 'bogus'" in bad.output
    for args, says in ((["--kind", "near_dupe"], "Did you mean near_duplicate"), (["--id", "99999"], "id 99999"),
                       (["--path", str(src / "nope.jpg")], str(src / "nope.jpg"))):  # named, not "0 updated"
        bad = runner.invoke(app, ["curate-fix", "d", "--action", "dismiss", *args, *ws])
        assert bad.exit_code == 2 and says in " ".join(bad.output.split()), bad.output

    fix = runner.invoke(app, ["curate-fix", "d", "--kind", "near_duplicate", "--action", "exclude", "--json", *ws])
    assert "zz_copy.jpg" in {Path(p).name for p in json.loads(fix.stdout)["excluded"]}
    stats = json.loads(runner.invoke(app, ["stats", "d", "--json", *ws]).stdout)
    assert stats["excluded"] == len(json.loads(fix.stdout)["excluded"])

    again = json.loads(runner.invoke(app, ["curate", "d", "--json", "--no-report", "--img-size", "96", *ws]).stdout)
    assert ("near_duplicate", str(src / "shoes" / "zz_copy.jpg")) in {(r["kind"], r["path"])
                                                                      for r in again["changes"]["resolved"]}
