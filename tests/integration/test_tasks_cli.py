"""Classical models, clustering, cluster labeling, self-supervised pretraining and compare, on real photos."""

import inspect
import json
import shutil

import numpy as np
import pytest
import torch

from pixclass.config import TrainConfig
from tests.integration.test_cli import NEED_WEIGHTS, cli, last_json
CLASSES = ["hat", "pants", "shoes", "t-shirt"]


@pytest.fixture(scope="module")
def ws4(tmp_path_factory, photos4):
    """A workspace with photos4 imported as dataset 'c4' (4 classes x 30 real photos, 80/10/10 split)."""
    root = tmp_path_factory.mktemp("tasks-ws")
    cli("import", photos4, "--name", "c4", ws=root)
    return root


@NEED_WEIGHTS
@pytest.mark.parametrize("model,features,floor", [("logreg", "embed", 0.7), ("forest", "hog", 0.5)])
def test_classical_train_evaluate_export_predict(tmp_path, ws4, photos4, model, features, floor):
    from pixclass.export.classical import export_classical
    from pixclass.inference import Predictor
    from pixclass.store import Workspace
    from pixclass.train.classical import train_classical

    ws = Workspace.open(ws4)
    run = tmp_path / "run"
    res = train_classical(ws, "c4", TrainConfig(model=model, features=features, img_size=96), out=run)
    assert res.run == run and {"val_accuracy", "fit_seconds", "feature_dim"} <= set(res.metrics)
    assert json.loads((run / "manifest.json").read_text())["mode"] == "classical"
    assert (run / "estimator.joblib").is_file() and (run / "metrics.json").is_file()

    ev = last_json(cli("evaluate", run, "--split", "test", "--json", ws=ws4))  # torch + sklearn via load_checkpoint
    assert ev["accuracy"] > floor and ev["classes"] == CLASSES  # 4 classes: chance is 0.25

    from pixclass.data.splits import load_splits

    _, data = load_splits(ws, "c4", 96, splits=("test",))
    ex = export_classical(run, tmp_path / "art", parity_images=data["test"].images)
    assert ex.top1_agreement == 1.0 and ex.max_abs_diff < 1e-4
    ev_onnx = last_json(cli("evaluate", tmp_path / "art", "--split", "test", "--json", ws=ws4))
    assert abs(ev_onnx["accuracy"] - ev["accuracy"]) < 1e-9

    pred = Predictor.from_artifact(tmp_path / "art")
    test_files = [it.path for it in data["test"].items]
    preds = pred.predict(test_files)
    truth = [CLASSES[y] for y in data["test"].labels]
    assert np.mean([p.label == t for p, t in zip(preds, truth)]) > floor
    assert all(abs(sum(s for _, s in p.top) - 1) < 1e-4 for p in preds)
    out = last_json(cli("predict", run, *test_files[:3], "--json"))  # the run directory itself (torch + sklearn)
    assert [p["label"] for p in out["predictions"]] == [p.label for p in preds[:3]]


@NEED_WEIGHTS
def test_train_cli_dispatches_classical_models(tmp_path, ws4):
    import pixclass.train.run

    if "train_classical" not in inspect.getsource(pixclass.train.run):
        pytest.skip("train.run does not dispatch classical models yet")
    out = last_json(cli("train", "c4", "--model", "knn", "--features", "embed", "--img-size", "96", "--out",
                        tmp_path / "knn", "--json", ws=ws4))
    assert out["metrics"]["val_accuracy"] > 0.5
    res = cli("train", "c4", "--model", "knn", "--features", "sift", "--out", tmp_path / "x", ws=ws4, ok=False)
    assert res.exit_code == 2 and "Unknown features 'sift'" in res.output


@NEED_WEIGHTS
def test_cluster_json_reports_agreement_with_labels(tmp_path, ws4):
    out = last_json(cli("cluster", "c4", "--method", "kmeans", "--k", "4", "--img-size", "96", "--out",
                        tmp_path / "km", "--json", ws=ws4))
    assert out["k"] == 4 and out["n"] == 120 and out["labeled"] == 120
    assert out["ari"] > 0.3 and out["nmi"] > 0.3 and -1 <= out["silhouette"] <= 1
    assert sum(out["sizes"].values()) == 120
    assert (tmp_path / "km" / "clusters.png").stat().st_size > 5000
    assert len(list((tmp_path / "km").glob("cluster-*.png"))) == 4
    rows = (tmp_path / "km" / "assignments.csv").read_text().splitlines()
    assert rows[0] == "image_id,path,cluster,label" and len(rows) == 121
    for method in ("gmm", "agglomerative", "dbscan"):
        res = last_json(cli("cluster", "c4", "--method", method, "--k", "4", "--img-size", "96", "--out",
                            tmp_path / method, "--json", ws=ws4))
        assert res["ari"] > 0 and res["nmi"] > 0, method
    res = cli("cluster", "c4", "--method", "meanshift", ws=ws4, ok=False)
    assert res.exit_code == 2 and "Use one of: kmeans, gmm, dbscan, agglomerative" in res.output


@NEED_WEIGHTS
def test_cluster_label_cold_starts_an_unlabeled_folder(tmp_path, photos4):
    flat = tmp_path / "unlabeled"
    flat.mkdir()
    for cls in ("hat", "pants"):  # two easy classes, 15 photos each, with no labels at all
        for f in sorted((photos4 / cls).glob("*.jpg"))[:15]:
            shutil.copy(f, flat / f"{cls}-{f.name}")
    ws = tmp_path / "ws"
    imp = last_json(cli("import", flat, "--name", "raw", "--json", ws=ws))
    assert imp["imported"] == 30 and imp["classes"] == []
    out = last_json(cli("cluster", "raw", "--k", "2", "--img-size", "96", "--json", ws=ws))
    assert out["ari"] is None and out["silhouette"] > 0
    for c, name in ((0, "first"), (1, "second")):
        lab = last_json(cli("cluster-label", "raw", "--cluster", c, "--label", name, "--json", ws=ws))
        assert lab["labeled"] == out["sizes"][str(c)]
    st = last_json(cli("stats", "raw", "--json", ws=ws))
    assert st["labeled"] == 30 and st["task"] == "binary" and set(st["classes"]) == {"first", "second"}

    from sqlalchemy import select

    from pixclass.store import Workspace
    from pixclass.store.tables import Annotation, Image

    with Workspace.open(ws).session() as s:
        rows = s.execute(select(Annotation.labels, Annotation.source, Image.path).join(Image)).all()
    assert len(rows) == 30 and {r.source for r in rows} == {"human"}
    # each new class is (nearly) one of the two real classes: the clusters found them
    for name in ("first", "second"):
        origin = [r.path.rsplit("/", 1)[-1].split("-")[0] for r in rows if r.labels == [name]]
        assert max(origin.count("hat"), origin.count("pants")) / len(origin) >= 0.8

    again = last_json(cli("cluster-label", "raw", "--cluster", 0, "--label", "third", "--only-unlabeled", "--json",
                          ws=ws))
    assert again["labeled"] == 0 and again["skipped"] == out["sizes"]["0"]
    res = cli("cluster-label", "raw", "--cluster", 7, "--label", "x", ws=ws, ok=False)
    assert res.exit_code == 2 and "has no cluster 7" in res.output


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_pretrain_writes_weights_that_train_accepts(tmp_path, photos4, method):
    ws = tmp_path / "ws"
    small = tmp_path / "small"
    for cls in ("hat", "shoes"):
        shutil.copytree(photos4 / cls, small / cls)
    cli("import", small, "--name", "s", ws=ws)
    weights = tmp_path / "ssl.pt"
    out = last_json(cli("pretrain", "s", "--method", method, "--epochs", "2", "--img-size", "32", "--batch-size", "24",
                        "--out", weights, "--json", ws=ws))
    assert out["steps"] == 4 and np.isfinite(out["history"][-1]["loss"])
    tr = last_json(cli("train", "s", "--mode", "linear", "--model", "smallcnn", "--weights", weights, "--img-size",
                       "32", "--out", tmp_path / "run", "--json", ws=ws))
    assert tr["metrics"]["val_accuracy"] >= 0.5
    saved = torch.load(weights, weights_only=True)["state_dict"]
    from pixclass.models.registry import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "run")
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(v, saved[f"backbone.{k}"])
    res = cli("pretrain", "s", "--method", "moco", "--out", weights, ws=ws, ok=False)
    assert res.exit_code == 2 and "simclr or byol" in res.output


@NEED_WEIGHTS
def test_compare_lists_metrics_sizes_and_latency(tmp_path, ws4):
    from pixclass.export.classical import export_classical
    from pixclass.store import Workspace
    from pixclass.train.classical import train_classical

    ws = Workspace.open(ws4)
    a, b = tmp_path / "knn", tmp_path / "tree"
    train_classical(ws, "c4", TrainConfig(model="knn", features="pixels", img_size=64), out=a)
    train_classical(ws, "c4", TrainConfig(model="tree", features="pixels", img_size=64), out=b)
    export_classical(b)
    cli("evaluate", a, "--json", ws=ws4)
    out = last_json(cli("compare", a, b, b / "export", "--batch", "8", "--repeats", "3", "--json"))
    rows = out["runs"]
    assert [r["model"] for r in rows] == ["knn", "tree", "tree"]
    assert "test_accuracy" in rows[0]["metrics"] and "val_accuracy" in rows[1]["metrics"]
    assert all(r["size_bytes"] > 0 for r in rows)
    assert set(rows[0]["latency"]) == {"torch"} and set(rows[1]["latency"]) == {"torch", "onnx"}
    assert set(rows[2]["latency"]) == {"onnx"} and rows[2]["onnx_bytes"] > 0
    assert all(v["single_ms"] > 0 and v["images_per_s"] > 0 for r in rows for v in r["latency"].values())
    text = cli("compare", a, b, "--batch", "4", "--repeats", "2")
    assert "knn" in text.output and "tree" in text.output
