"""Files that break after import (truncated, deleted) are skipped and named; the rest still trains."""

import json
import shutil

import pytest

from pixclass.config import TrainConfig
from pixclass.errors import DataError
from pixclass.evaluate.scores import run_probs
from pixclass.io.importer import import_dataset
from pixclass.store import Workspace, records
from pixclass.train.active import label_queue
from pixclass.train.run import train


def _dataset(tmp_path, photos4, per_class=10, val=3, unlabeled=0):
    """hat and shoes photos, ``per_class - val`` train and ``val`` val images each, and ``unlabeled`` pants and
    t-shirt photos without labels; returns (ws, train paths)."""
    lines, train_paths = ["path,label,split"], []
    for cls in ("pants", "t-shirt"):
        for i, f in enumerate(sorted((photos4 / cls).glob("*.jpg"))[:unlabeled]):
            dst = tmp_path / "img" / f"u-{cls}{i}.jpg"
            dst.parent.mkdir(exist_ok=True)
            shutil.copy(f, dst)
            lines.append(f"img/{dst.name},,train")
    for cls in ("hat", "shoes"):
        for i, f in enumerate(sorted((photos4 / cls).glob("*.jpg"))[:per_class]):
            dst = tmp_path / "img" / f"{cls}{i}.jpg"
            dst.parent.mkdir(exist_ok=True)
            shutil.copy(f, dst)
            split = "train" if i < per_class - val else "val"
            lines.append(f"img/{dst.name},{cls},{split}")
            if split == "train":
                train_paths.append(dst)
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace.open(tmp_path / "ws")
    import_dataset(ws, tmp_path / "labels.csv", "d")
    return ws, train_paths


def test_linear_training_skips_broken_files_and_names_them(tmp_path, photos4, caplog):
    ws, train_paths = _dataset(tmp_path, photos4)
    truncated, deleted = train_paths[0], train_paths[-1]  # a hat and a shoe
    truncated.write_bytes(truncated.read_bytes()[:400])
    deleted.unlink()
    res = train(ws, "d", TrainConfig(mode="linear", img_size=128), out=tmp_path / "run")

    skipped = {b["path"]: b for b in res.skipped}
    assert set(skipped) == {str(truncated.resolve()), str(deleted.resolve())}
    assert skipped[str(deleted.resolve())]["reason"] == "file not found."
    assert skipped[str(truncated.resolve())]["reason"] and all(b["split"] == "train" for b in res.skipped)
    assert json.loads((res.run / "metrics.json").read_text())["skipped"] == res.metrics["skipped"]
    assert f"skipped {truncated.resolve()}" in caplog.text and f"skipped {deleted.resolve()}" in caplog.text
    assert res.metrics["val_accuracy"] >= 5 / 6  # 6 val photos of hats and shoes, learned from the 12 good ones
    assert res.metrics["linear_c_by"] == "cv"  # 6 validation images: C by cross-validation on train

    shutil.copy(sorted((photos4 / "shoes").glob("*.jpg"))[6], deleted)  # restored: used by the next run
    again = train(ws, "d", TrainConfig(mode="linear", img_size=128), out=tmp_path / "run2")
    assert [b["path"] for b in again.skipped] == [str(truncated.resolve())]


def test_every_training_image_broken_is_a_clear_error_naming_them(tmp_path, photos4):
    ws, train_paths = _dataset(tmp_path, photos4, per_class=3, val=1)
    for p in train_paths:
        p.unlink()
    with pytest.raises(DataError, match="every labeled training image no longer decodes") as e:
        train(ws, "d", TrainConfig(mode="linear", img_size=128), out=tmp_path / "run")
    assert all(str(p.resolve()) in str(e.value) for p in train_paths)


@pytest.mark.parametrize("cfg", [
    TrainConfig(mode="finetune", model="smallcnn", pretrained=False, epochs=1, img_size=32, batch_size=8),
    TrainConfig(model="logreg", img_size=64),  # classical, on cached embeddings
], ids=["finetune-from-scratch", "classical"])
def test_other_trainers_skip_broken_files_too(tmp_path, photos4, cfg):
    ws, train_paths = _dataset(tmp_path, photos4, per_class=6, val=2)
    train_paths[1].write_bytes(b"garbage, not a JPEG any more")
    train_paths[-2].unlink()
    res = train(ws, "d", cfg, out=tmp_path / "run")
    assert sorted(b["path"] for b in res.skipped) == sorted(str(p.resolve()) for p in (train_paths[1], train_paths[-2]))
    assert "not an image" in next(b["reason"] for b in res.skipped if b["path"] == str(train_paths[1].resolve()))
    assert (res.run / "model.pt").is_file() and "val_accuracy" in res.metrics


def test_label_queue_leaves_out_broken_unlabeled_images(tmp_path, photos4, caplog):
    ws, _ = _dataset(tmp_path, photos4, per_class=6, val=2, unlabeled=3)
    train(ws, "d", TrainConfig(mode="linear", img_size=128), out=tmp_path / "run")
    with ws.session() as s:
        pool = records.items(s, records.get_dataset(s, "d"), labeled=False)
    by_path = {it.path: it.image_id for it in pool}
    truncated, deleted = tmp_path / "img" / "u-pants0.jpg", tmp_path / "img" / "u-t-shirt2.jpg"
    truncated.write_bytes(truncated.read_bytes()[:500])
    deleted.unlink()
    bad = {by_path[str(truncated.resolve())], by_path[str(deleted.resolve())]}
    for strategy in ("margin", "kcenter"):
        q = label_queue(ws, "d", strategy, n=10, img_size=128)
        assert len(q.image_ids) == 4 and set(q.image_ids) == set(by_path.values()) - bad
    assert str(deleted.resolve()) in caplog.text
    with pytest.raises(DataError, match="2 image file") as e:  # a caller that cannot skip still says which files
        run_probs(ws, tmp_path / "run", pool)
    assert str(truncated.resolve()) in str(e.value) and str(deleted.resolve()) in str(e.value)
