"""Curate on tiny real photos with problems planted at test time: each planted problem is found, with its pair."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from pixclass.curate import CurateConfig, apply_fix, curate
from pixclass.curate.checks import class_balance
from pixclass.curate.features import phash, pixel_stats
from pixclass.curate.labels import find_label_issues
from pixclass.io.importer import import_dataset
from pixclass.store import Workspace, records
from pixclass.store.findings import review_queue

CFG = CurateConfig(img_size=96, folds=3)


@pytest.fixture(scope="module")
def planted(tmp_path_factory, photos4) -> dict:
    """photos4 copied with a resized near-duplicate, an exact copy, a blurred, a darkened and a mislabeled photo."""
    root = tmp_path_factory.mktemp("planted") / "src"
    shutil.copytree(photos4, root)
    hats = sorted((root / "hat").glob("*.jpg"))
    shoes = sorted((root / "shoes").glob("*.jpg"))
    pants = sorted((root / "pants").glob("*.jpg"))
    im = Image.open(hats[0]).convert("RGB")
    im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(root / "hat" / "zz_near.jpg", quality=70)
    shutil.copy(hats[1], root / "hat" / "zz_exact.jpg")
    Image.open(hats[2]).convert("RGB").filter(ImageFilter.GaussianBlur(4)).save(root / "hat" / "zz_blur.jpg")
    ImageEnhance.Brightness(Image.open(hats[3]).convert("RGB")).enhance(0.15).save(root / "hat" / "zz_dark.jpg")
    shutil.move(shoes[0], root / "pants" / "zz_flipped.jpg")  # a shoe labelled pants
    ws = Workspace.open(tmp_path_factory.mktemp("ws"))
    import_dataset(ws, root, "p")
    res = curate(ws, "p", CFG, report=ws.root / "r.html")
    return {"ws": ws, "root": root, "res": res, "hats": hats, "pants": pants}


def _find(res, kind: str) -> list[dict]:
    return [f for f in res.findings if f["kind"] == kind]


def test_duplicates_found_with_their_pair(planted):
    res, hats = planted["res"], planted["hats"]
    exact = _find(res, "exact_duplicate")
    pairs = {frozenset((Path(f["path"]).name, Path(f["other_path"]).name)) for f in exact}
    assert frozenset(("zz_exact.jpg", hats[1].name)) in pairs
    near = _find(res, "near_duplicate")
    pairs = {frozenset((Path(f["path"]).name, Path(f["other_path"]).name)) for f in near}
    assert frozenset(("zz_near.jpg", hats[0].name)) in pairs
    assert all(f["score"] >= 0.9 for f in near)


def test_quality_and_label_errors(planted):
    res = planted["res"]
    assert "zz_blur.jpg" in {Path(f["path"]).name for f in _find(res, "blurry")}
    assert "zz_dark.jpg" in {Path(f["path"]).name for f in _find(res, "dark")}
    errors = sorted(_find(res, "label_error"), key=lambda f: -f["score"])
    top = [Path(f["path"]).name for f in errors[:5]]
    assert "zz_flipped.jpg" in top
    flipped = next(f for f in errors if Path(f["path"]).name == "zz_flipped.jpg")
    assert (flipped["given_label"], flipped["suggested_label"]) == ("pants", "shoes")
    # 30 + near + blur + dark hats (the exact copy is skipped at import); 30 pants + the flipped shoe
    assert res.class_balance["counts"]["hat"] == 33 and res.class_balance["counts"]["pants"] == 31
    assert Path(res.report).read_text().count("data:image/jpeg;base64") >= 5


def test_fix_loop_excludes_and_reports_changes(planted):
    ws = planted["ws"]
    with ws.session() as s:
        before = {Path(it.path).name for it in records.items(s, records.get_dataset(s, "p"))}
    fix = apply_fix(ws, "p", "exclude", kind="near_duplicate")
    assert "zz_near.jpg" in {Path(p).name for p in fix.excluded}
    apply_fix(ws, "p", "review", kind="label_error")
    with ws.session() as s:
        ds = records.get_dataset(s, "p")
        after = {Path(it.path).name for it in records.items(s, ds)}
        queue = [Path(f.path).name for f in review_queue(s, ds)]
    assert before - after == {Path(p).name for p in fix.excluded}
    assert "zz_flipped.jpg" in queue
    again = curate(ws, "p", CFG)
    gone = {(r["kind"], Path(r["path"]).name) for r in again.changes["resolved"]}
    assert ("near_duplicate", "zz_near.jpg") in gone
    assert all(f["status"] == "review" for f in again.findings if f["kind"] == "label_error"
               and Path(f["path"]).name == "zz_flipped.jpg")


def test_pixel_checks_on_real_photo(photos4):
    im = Image.open(next((photos4 / "hat").glob("*.jpg"))).convert("RGB").resize((64, 64))
    arr = np.stack([np.asarray(im), np.asarray(im.filter(ImageFilter.GaussianBlur(3))),
                    np.asarray(ImageEnhance.Brightness(im).enhance(0.1)), np.asarray(im.convert("L").convert("RGB"))])
    st = pixel_stats(arr)
    assert st["sharpness"][1] < st["sharpness"][0] - 0.5
    assert st["p90"][2] < 40 < st["p90"][0]
    assert st["colorfulness"][3] < 1 < st["colorfulness"][0]
    h = phash(np.stack([arr[0], np.asarray(im.resize((48, 48)).resize((64, 64))), arr[2][::-1]]))
    bits = lambda a, b: int(np.unpackbits(a ^ b).sum())  # noqa: E731
    assert bits(h[0], h[1]) <= 6 < bits(h[0], h[2])


def test_confident_learning_flags_confidently_wrong_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    probs = np.full((150, 3), 0.05)
    probs[np.arange(150), labels] = 0.9
    flipped = rng.choice(150, 8, replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + 1) % 3
    probs += rng.uniform(0, 0.02, probs.shape)
    issues = find_label_issues(noisy, probs / probs.sum(1, keepdims=True))
    assert set(np.where(issues)[0]) == set(flipped)


def test_class_balance_remedies():
    cb = class_balance({"a": 100, "b": 10, "c": 0}, min_per_class=20)
    assert cb["counts"] == {"a": 100, "b": 10, "c": 0}
    assert cb["imbalance_ratio"] == 10.0 and cb["below_minimum"] == ["b", "c"]
    assert any("--balance weights" in r for r in cb["remedies"])
