"""Shared fixtures: tiny real-photo datasets made at test time from ../shared/data, and a folder of broken files."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PIXCLASS_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLOTHING = SHARED / "clothing-small"


def need_clothing() -> Path:
    if not CLOTHING.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{CLOTHING} is missing; CI must have ../shared/data")
        pytest.skip("clothing-small not available")
    return CLOTHING


def make_subset(dst: Path, classes: list[str], per_class: int, *, size: int = 96, seed: int = 0,
                splits: bool = False) -> Path:
    """Copy ``per_class`` real photos of each class, downscaled to ``size`` px, into an ImageFolder tree."""
    src = need_clothing()
    rng = random.Random(seed)
    for cls in classes:
        files = sorted((src / "train" / cls).glob("*.jpg")) + sorted((src / "validation" / cls).glob("*.jpg"))
        rng.shuffle(files)
        for i, f in enumerate(files[:per_class]):
            sub = ("train" if i < 0.7 * per_class else "val" if i < 0.85 * per_class else "test") if splits else ""
            d = dst / sub / cls if sub else dst / cls
            d.mkdir(parents=True, exist_ok=True)
            im = Image.open(f).convert("RGB")
            im.thumbnail((size, size))
            im.save(d / f.name, quality=90)
    return dst


@pytest.fixture(scope="session")
def photos4(tmp_path_factory) -> Path:
    """4 classes x 30 real photos, ImageFolder layout (no splits)."""
    return make_subset(tmp_path_factory.mktemp("photos4"), ["hat", "pants", "shoes", "t-shirt"], 30)


def write_bad_files(d: Path, good_jpeg: Path) -> dict[str, str]:
    """Write every kind of awkward file into d; returns {file name: 'broken' | 'ok'}."""
    d.mkdir(parents=True, exist_ok=True)
    data = good_jpeg.read_bytes()
    kinds: dict[str, str] = {}
    (d / "zero.jpg").write_bytes(b"")
    kinds["zero.jpg"] = "broken"
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    kinds["truncated.jpg"] = "broken"
    (d / "corrupt.jpg").write_bytes(data[:200] + bytes(random.Random(1).randbytes(2000)))
    kinds["corrupt.jpg"] = "broken"
    (d / "notes.jpg").write_text("this is not an image")
    kinds["notes.jpg"] = "broken"
    (d / "readme.txt").write_text("not an image either")
    kinds["readme.txt"] = "broken"
    base = Image.open(good_jpeg).convert("RGB")
    base.thumbnail((80, 80))
    base.save(d / "png_named.jpg", format="PNG")  # wrong extension, still an image
    kinds["png_named.jpg"] = "ok"
    base.convert("CMYK").save(d / "cmyk.jpg")
    kinds["cmyk.jpg"] = "ok"
    arr16 = (np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(arr16).save(d / "gray16.png")
    kinds["gray16.png"] = "ok"
    base.convert("P", palette=Image.ADAPTIVE).save(d / "palette.png", transparency=0)
    kinds["palette.png"] = "ok"
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "alpha.png")
    kinds["alpha.png"] = "ok"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    wide = base.resize((80, 40))
    wide.save(d / "exif_rotated.jpg", exif=exif.tobytes())
    kinds["exif_rotated.jpg"] = "ok"
    base.save(d / "ünïcødé 名前.jpg")
    kinds["ünïcødé 名前.jpg"] = "ok"
    return kinds


@pytest.fixture()
def broken_tree(tmp_path, photos4) -> tuple[Path, dict[str, str]]:
    """A two-class tree of real photos plus a class folder full of awkward files."""
    root = tmp_path / "broken"
    for cls in ("hat", "shoes"):
        shutil.copytree(photos4 / cls, root / cls)
    kinds = write_bad_files(root / "odd", next((photos4 / "hat").glob("*.jpg")))
    return root, kinds


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a real PostgreSQL server started for this test session on 127.0.0.1."""
    from tests.pg import PostgresServer

    server = PostgresServer()
    if not server.available:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL (initdb, pg_ctl) is not installed; .ci/run installs it")
        pytest.skip("PostgreSQL not installed")
    url = server.start()
    yield url
    server.stop()


@pytest.fixture()
def taxonomy_tree(tmp_path, photos4):
    """photos4 as a two-level tree: accessory/{hat,shoes}, clothes/{pants,t-shirt} (imports hierarchical), and
    tmp_path/taxonomy.txt with one class more (clothes/dress)."""
    root = tmp_path / "taxo"
    for c, parent in [("hat", "accessory"), ("shoes", "accessory"), ("pants", "clothes"), ("t-shirt", "clothes")]:
        shutil.copytree(photos4 / c, root / parent / c)
    (tmp_path / "taxonomy.txt").write_text("accessory/hat\naccessory/shoes\nclothes/pants\nclothes/t-shirt\n"
                                           "clothes/dress\n")
    return root
