"""Multi-label, hierarchical and binary datasets end to end: import -> train -> evaluate -> export -> predict."""

import csv
import json
import random
import shutil

import numpy as np
import pytest
from PIL import Image

from pixclass.artifact import Manifest
from pixclass.decision import node_probs
from pixclass.inference import Predictor
from tests.integration.test_cli import NEED_WEIGHTS, cli, last_json

pytestmark = NEED_WEIGHTS
CLASSES = ["hat", "pants", "shoes", "t-shirt"]


def make_mosaics(photos, dst, n: int, seed: int = 0):
    """2x2 mosaics of real photos; each labelled with the classes it contains. Returns the CSV path."""
    rng = random.Random(seed)
    files = {c: sorted((photos / c).glob("*.jpg")) for c in CLASSES}
    dst.mkdir(parents=True)
    rows = ["path,labels"]
    for i in range(n):
        picks = [rng.choice(CLASSES) for _ in range(4)]
        canvas = Image.new("RGB", (128, 128))
        for j, c in enumerate(picks):
            tile = Image.open(rng.choice(files[c])).convert("RGB").resize((64, 64))
            canvas.paste(tile, ((j % 2) * 64, (j // 2) * 64))
        canvas.save(dst / f"m{i:03d}.jpg", quality=90)
        rows.append(f"m{i:03d}.jpg,{'|'.join(sorted(set(picks)))}")
    (dst / "labels.csv").write_text("\n".join(rows) + "\n")
    return dst / "labels.csv"


def test_multilabel_end_to_end(tmp_path, photos4):
    ws = tmp_path / "ws"
    csv_path = make_mosaics(photos4, tmp_path / "mosaics", 160)
    imp = last_json(cli("import", csv_path, "--name", "ml", "--task", "multilabel", "--json", ws=ws))
    assert imp["task"] == "multilabel" and imp["imported"] == 160
    run = tmp_path / "run"
    out = last_json(cli("train", "ml", "--mode", "linear", "--img-size", "128", "--out", run, "--json", ws=ws))
    assert out["metrics"]["task"] == "multilabel"
    manifest = Manifest.load(run)
    assert set(manifest.thresholds) == set(CLASSES) and all(0 < t < 1 for t in manifest.thresholds.values())
    ev = last_json(cli("evaluate", run, "--json", ws=ws))
    for key in ("mAP", "micro_f1", "macro_f1", "hamming_loss", "subset_accuracy"):
        assert key in ev
    assert ev["mAP"] > 0.75 and ev["hamming_loss"] < 0.3
    ex = last_json(cli("export", run, "--out", tmp_path / "art", "--json", ws=ws))
    assert ex["max_abs_diff"] < 1e-3
    pred = Predictor.from_artifact(tmp_path / "art").predict([tmp_path / "mosaics" / "m000.jpg"])[0]
    truth = next(csv.DictReader((tmp_path / "mosaics" / "labels.csv").open()))["labels"].split("|")
    assert set(pred.labels) == {lab for lab, sc in pred.top if sc >= manifest.thresholds[lab]}
    assert len(set(pred.labels) & set(truth)) >= 1

    # the server decides as predict does: every label above its threshold, for the REST API and Label Studio
    from fastapi.testclient import TestClient

    from pixclass.server import create_app
    from pixclass.store import Workspace, users
    from pixclass.store.tables import Image as ImageRow

    store = Workspace.open(ws)
    with store.session() as s:
        token = users.create_token(s, users.create_user(s, "root", "admin", "root-pw"))
        image_id = next(im.id for im in s.query(ImageRow) if im.path.endswith("m000.jpg"))
    client = TestClient(create_app(store))
    client.headers["Authorization"] = f"Bearer {token}"
    [rest] = client.post("/api/predict", json={"image_ids": [image_id]}).json()["predictions"]
    config = ('<View><Image name="image" value="$image"/><Choices name="tags" toName="image" choice="multiple">'
              + "".join(f'<Choice value="{c}"/>' for c in CLASSES) + "</Choices></View>")
    ls = client.post("/predict", json={"tasks": [{"id": 1, "data": {"pixclass_image_id": image_id}}],
                                       "label_config": config}).json()
    assert set(rest["labels"]) == set(pred.labels)
    assert set(ls["results"][0]["result"][0]["value"]["choices"]) == set(pred.labels)
    # and so do the stored suggestions behind the grid and the space key: accepting them takes the whole set
    import time

    from pixclass.store.tables import Prediction

    job = client.post("/api/datasets/ml/prelabel").json()
    while (job := client.get(f"/api/jobs/{job['id']}").json())["status"] not in ("done", "failed"):
        time.sleep(0.2)
    assert job["status"] == "done", job["error"]
    with store.session() as s:
        stored = s.query(Prediction).filter(Prediction.image_id == image_id).one()
        assert set(stored.labels) == set(pred.labels) and len(stored.labels) >= 2
        assert sum(len(p.labels) > 1 for p in s.query(Prediction)) > 10  # several tags, not the top class
    a = client.post(f"/api/images/{image_id}/annotations", json={"labels": stored.labels,
                                                                  "accepted_suggestion": True}).json()
    assert a["from_run"] == stored.run_id


def test_folder_tree_with_shared_images_is_multilabel(tmp_path, photos4):
    root = tmp_path / "tree"
    for c in ("hat", "shoes"):
        shutil.copytree(photos4 / c, root / c)
    for f in sorted((photos4 / "hat").glob("*.jpg"))[:6]:  # the same photos also filed under shoes
        shutil.copy(f, root / "shoes" / f"also-{f.name}")
    out = last_json(cli("import", root, "--name", "tree", "--json", ws=tmp_path / "ws"))
    assert out["task"] == "multilabel" and out["imported"] == 60
    st = last_json(cli("stats", "tree", "--json", ws=tmp_path / "ws"))
    assert st["classes"] == {"hat": 30, "shoes": 36}


@pytest.mark.parametrize("hierarchy", ["flat", "cascade"])
def test_hierarchical_end_to_end(tmp_path, taxonomy_tree, hierarchy):
    ws = tmp_path / "ws"
    imp = last_json(cli("import", taxonomy_tree, "--name", "h", "--taxonomy", tmp_path / "taxonomy.txt", "--json",
                        ws=ws))
    assert imp["task"] == "hierarchical" and "clothes/dress" in imp["classes"]
    run = tmp_path / hierarchy
    cli("train", "h", "--mode", "linear", "--img-size", "96", "--hierarchy", hierarchy, "--out", run, ws=ws)
    ev = last_json(cli("evaluate", run, "--json", ws=ws))
    assert len(ev["accuracy_by_level"]) == 2
    assert ev["accuracy_by_level"][0] >= 0.8 and ev["hierarchical_f1"] > 0.7
    cli("export", run, "--out", tmp_path / "art", ws=ws)
    predictor = Predictor.from_artifact(tmp_path / "art")
    images = sorted((taxonomy_tree / "clothes" / "pants").glob("*.jpg"))[:4]
    preds = predictor.predict(images)
    assert all(p.label.startswith(("accessory", "clothes")) for p in preds)
    assert sum(p.label.startswith("clothes") for p in preds) >= 3
    # consistency: a child's probability never exceeds its parent's
    probs = np.array([[sc for _, sc in sorted(p.top, key=lambda t: predictor.classes.index(t[0]))] for p in preds])
    nodes, nprobs = node_probs(probs, predictor.manifest.schema)
    for i, n in enumerate(nodes):
        if "/" in n:
            assert np.all(nprobs[:, i] <= nprobs[:, nodes.index(n.rsplit("/", 1)[0])] + 1e-6)


def test_hierarchical_node_threshold_is_stored_and_used(tmp_path, taxonomy_tree):
    ws = tmp_path / "ws"
    cli("import", taxonomy_tree, "--name", "h", ws=ws)
    run = tmp_path / "strict"
    cli("train", "h", "--mode", "linear", "--img-size", "96", "--node-threshold", "0.9", "--out", run, ws=ws)
    assert Manifest.load(run).thresholds["_node"] == 0.9
    preds = json.loads(cli("predict", run, taxonomy_tree / "clothes", "--json").stdout)["predictions"]
    for p in preds:  # a leaf only when it is at least 0.9 probable; otherwise an inner node (or nothing)
        assert p["label"] in ("", "accessory", "clothes") or p["score"] >= 0.9


def test_binary_threshold_for_recall_target(tmp_path, photos4):
    root = tmp_path / "bin"
    for c in ("hat", "shoes"):
        shutil.copytree(photos4 / c, root / c)
    ws = tmp_path / "ws"
    imp = last_json(cli("import", root, "--name", "b", "--json", ws=ws))
    assert imp["task"] == "binary"
    run = tmp_path / "run"
    cli("train", "b", "--mode", "linear", "--img-size", "96", "--threshold-target", "recall>=0.99", "--out", run,
        ws=ws)
    m = Manifest.load(run)
    assert m.schema.positive == "shoes" and "shoes" in m.thresholds
    ev = last_json(cli("evaluate", run, "--split", "val", "--json", ws=ws))
    assert ev["operating_point"]["recall"] >= 0.99  # tuned on validation, so met there
    assert (run / "eval-val" / "binary_roc_pr.png").stat().st_size > 1000
    res = cli("train", "b", "--threshold-target", "recall>=2", "--out", tmp_path / "x", ws=ws, ok=False)
    assert res.exit_code == 2 and "threshold_target" in res.output
