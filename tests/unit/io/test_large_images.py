"""Very large images: refused per file with the reason (never an uncaught Pillow error), thread-safe, and served as
small thumbnails. Big files are made at test time: valid PNGs written row by row (a few KB on disk) and a small JPEG
whose header declares a huge size."""

from __future__ import annotations

import io
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixclass.errors import DataError
from pixclass.io import images
from pixclass.io.images import decode_bytes, image_media_type, load_rgb, probe, thumbnail_jpeg
from pixclass.io.importer import import_dataset
from pixclass.store import Workspace, records
from tests.conftest import need_clothing, write_bad_files


def solid_png(path: Path, width: int, height: int) -> Path:
    """A valid black 1-bit PNG of any size, compressed row by row: no image is ever held in memory."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join([z.compress(row) for _ in range(height)] + [z.flush()])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def jpeg_declaring(path: Path, width: int, height: int) -> Path:
    """A small real JPEG whose frame header (SOF0) claims width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


PNG_LIMIT_W = 12000
PNG_LIMIT_H = images.MAX_PIXELS // PNG_LIMIT_W + 1  # 12000 x 10001: 120.012 MP, just above the non-JPEG limit


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("big")
    return {
        "over_png": solid_png(d / "over_120mp.png", PNG_LIMIT_W, PNG_LIMIT_H),
        "warn_zone": solid_png(d / "zone_300mp.png", 20000, 15000),  # where Pillow only warns (>1x, <2x its limit)
        "bomb": solid_png(d / "bomb_600mp.png", 30000, 20000),  # over Pillow's own 2x limit: it raises on open
        "over_jpeg": jpeg_declaring(d / "over_201mp.jpg", 16384, 12300),
        "ok_99mp": solid_png(d / "ok_99mp.png", 11000, 9000),  # QA's 99 MP PNG: above Pillow's default, accepted
    }


# ---------------------------------------------------------------- refused from the header


@pytest.mark.parametrize("fn", [probe, load_rgb, lambda p: load_rgb(p, 32), lambda p: thumbnail_jpeg(p, 64)])
def test_png_just_above_the_limit_is_a_dataerror_naming_the_file(big, fn):
    with pytest.raises(DataError) as e:
        fn(big["over_png"])
    msg = str(e.value)
    assert msg.startswith(f"{big['over_png']}: image too large: 120.012 megapixels (12000x10001)")
    assert "above the limit of 120 megapixels for PNG images" in msg and "Downscale it" in msg


def test_bomb_over_pillows_own_limit_is_a_dataerror(big):
    for fn in (probe, load_rgb):
        with pytest.raises(DataError) as e:
            fn(big["bomb"])
        assert str(e.value).startswith(f"{big['bomb']}: image too large: 600.0 megapixels, above the limits")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, on opening 200-400 MP
def test_jpeg_has_its_own_higher_limit(big, tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"201\.5 megapixels \(16384x12300\), above the limit of 200 megapixels "
                                        r"for JPEG images"):
        probe(big["over_jpeg"])
    # the limit depends on the format: with a tiny non-JPEG limit, the same picture passes as JPEG only
    Image.new("RGB", (40, 40), (9, 99, 199)).save(tmp_path / "a.png")
    Image.new("RGB", (40, 40), (9, 99, 199)).save(tmp_path / "a.jpg")
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    assert probe(tmp_path / "a.jpg").width == 40
    with pytest.raises(DataError, match=r"\(40x40\), above the limit of 0.001 megapixels for PNG images"):
        probe(tmp_path / "a.png")


def test_refusal_does_not_depend_on_warning_filters(big):
    """A process where DecompressionBombWarning raises (what a leaked warnings filter did in the thread pool)
    still gets a DataError, never the warning itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for key in ("over_png", "warn_zone", "bomb", "over_jpeg"):
            with pytest.raises(DataError, match="image too large"):
                probe(big[key])
            with pytest.raises(DataError, match="image too large"):
                thumbnail_jpeg(big[key], 64)


def test_a_99_megapixel_png_is_accepted_without_pillow_warnings(big):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = probe(big["ok_99mp"])
        thumb = Image.open(io.BytesIO(thumbnail_jpeg(big["ok_99mp"], 100)))
    assert (info.width, info.height, info.format) == (11000, 9000, "PNG")
    assert thumb.size == (100, 82) and thumb.mode == "RGB"
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


# ---------------------------------------------------------------- import: listed as broken, the rest imported


@pytest.fixture(scope="module")
def mixed_tree(tmp_path_factory, big) -> tuple[Path, list[Path]]:
    """20 real photos in two class folders, and the big files in a third."""
    src = need_clothing() / "train"
    root = tmp_path_factory.mktemp("mixed")
    good = []
    for cls in ("hat", "shoes"):
        (root / cls).mkdir()
        for f in sorted((src / cls).glob("*.jpg"))[:10]:
            good.append(Path(shutil.copy(f, root / cls / f.name)))
    (root / "big").mkdir()
    for p in big.values():
        shutil.copy(p, root / "big" / p.name)
    return root, good


@pytest.mark.parametrize("attempt", range(3))  # the old bug aborted the whole import on some runs only
def test_import_lists_oversized_files_as_broken_and_imports_the_rest(tmp_path, mixed_tree, attempt):
    root, good = mixed_tree
    ws = Workspace.open(tmp_path / "ws")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # process-wide, so the pool's threads too
        res = import_dataset(ws, root, "mixed", workers=4)
    broken = {Path(b["path"]).name: b["reason"] for b in res.broken}
    assert set(broken) == {"over_120mp.png", "zone_300mp.png", "bomb_600mp.png", "over_201mp.jpg"}
    assert all(r.startswith("image too large: ") and "Downscale it" in r for r in broken.values()), broken
    assert broken["over_120mp.png"].startswith("image too large: 120.012 megapixels (12000x10001), above the limit")
    assert res.imported == len(good) + 1  # the 20 photos and the 99 MP PNG
    with ws.session() as s:
        ds = records.get_dataset(s, "mixed")
        assert {Path(b["path"]).name for b in records.broken_files(s, ds)} == set(broken)


# ---------------------------------------------------------------- thumbnails and media types


def _halves_jpeg(path: Path, size: tuple[int, int], orientation: int) -> Path:
    """Left half red, right half blue, with an EXIF orientation tag."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (220, 20, 20)
    arr[:, w // 2 :] = (20, 20, 220)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=95, exif=exif.tobytes())
    return path


def test_thumbnail_of_an_exif_rotated_jpeg_is_upright_and_fits(tmp_path):
    path = _halves_jpeg(tmp_path / "rot.jpg", (1600, 800), 6)  # shown turned 90 degrees clockwise: left -> top
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(path, 100)))
    assert thumb.format == "JPEG" and thumb.mode == "RGB"
    assert thumb.size == (50, 100)  # upright it is 800 x 1600
    arr = np.asarray(thumb, np.float32)
    top, bottom = arr[:40].mean(axis=(0, 1)), arr[60:].mean(axis=(0, 1))
    assert top[0] > 180 and top[2] < 60, top  # red on top
    assert bottom[2] > 180 and bottom[0] < 60, bottom
    upright = load_rgb(path)  # the same picture the full decode gives
    assert upright.shape == (1600, 800, 3) and upright[:100].mean(axis=(0, 1))[0] > 180


def test_thumbnail_matches_a_full_decode_of_a_real_photo(tmp_path):
    photo = min((need_clothing() / "train" / "hat").glob("*.jpg"))
    big_photo = tmp_path / "big.jpg"
    Image.open(photo).resize((3200, 4272), Image.BICUBIC).save(big_photo, quality=92)  # draft mode decodes at 1/8
    ref = Image.fromarray(load_rgb(big_photo))
    ref.thumbnail((160, 160))
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(big_photo, 160, quality=95)))
    assert thumb.size == ref.size == (120, 160)
    assert np.abs(np.asarray(thumb, np.float32) - np.asarray(ref, np.float32)).mean() < 4


def test_thumbnail_any_mode_to_rgb_and_broken_files_raise(tmp_path, photos4):
    kinds = write_bad_files(tmp_path / "odd", next((photos4 / "hat").glob("*.jpg")))
    for name, kind in kinds.items():
        path = tmp_path / "odd" / name
        if kind == "ok":  # CMYK, 16-bit grey, palette with transparency, alpha, EXIF-rotated, PNG named .jpg
            thumb = Image.open(io.BytesIO(thumbnail_jpeg(path, 48)))
            ref = Image.fromarray(load_rgb(path))  # to_rgb's colours: alpha on white, 16-bit rescaled
            ref.thumbnail((48, 48))
            assert thumb.mode == "RGB" and thumb.size == ref.size and max(thumb.size) == 48, name
            assert np.abs(np.asarray(thumb, np.float32) - np.asarray(ref, np.float32)).mean() < 6, name
        else:
            with pytest.raises(DataError) as e:
                thumbnail_jpeg(path, 48)
            assert str(path) in str(e.value)


def test_media_type_follows_the_content_and_non_images_have_none(tmp_path):
    """Images are served with the type of their content; a file that is no image (say, replaced by text or a link to
    /etc/passwd since import) has no image type, whatever its name says, so it is never served as one."""
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png", format="JPEG")
    Image.new("RGB", (8, 8)).save(tmp_path / "pic.jpg", format="PNG")
    Image.new("RGB", (8, 8)).save(tmp_path / "pic.webp")
    (tmp_path / "fake.gif").write_text("not an image")
    (tmp_path / "blob.zzz").write_bytes(b"\x00\x01")
    assert image_media_type(tmp_path / "photo.png") == "image/jpeg"
    assert image_media_type(tmp_path / "pic.jpg") == "image/png"
    assert image_media_type(tmp_path / "pic.webp") == "image/webp"
    assert image_media_type(tmp_path / "fake.gif") is None
    assert image_media_type(tmp_path / "blob.zzz") is None
    assert image_media_type(tmp_path / "missing.png") is None
    Image.new("RGB", (8, 8)).save(tmp_path / "page.html", format="TIFF")  # an image, but not one browsers show
    assert image_media_type(tmp_path / "page.html") is None  # never text/html from the name


def test_decode_bytes_refuses_an_oversized_upload_by_name(big):
    for key in ("over_png", "bomb"):
        with pytest.raises(DataError, match=r"^upload\.png: image too large: "):
            decode_bytes(big[key].read_bytes(), 32, "upload.png")
    assert decode_bytes(big["ok_99mp"].read_bytes(), 32, "ok.png").shape == (32, 32, 3)
