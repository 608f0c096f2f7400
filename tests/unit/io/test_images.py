
import numpy as np
import pytest

from pixclass.errors import DataError
from pixclass.io.images import decode_bytes, load_rgb, probe
from tests.conftest import write_bad_files


@pytest.fixture()
def odd(tmp_path, photos4):
    kinds = write_bad_files(tmp_path / "odd", next((photos4 / "hat").glob("*.jpg")))
    return tmp_path / "odd", kinds


def test_broken_files_raise_dataerror_naming_the_file(odd):
    d, kinds = odd
    for name, kind in kinds.items():
        if kind == "broken":
            with pytest.raises(DataError) as e:
                probe(d / name)
            assert str(d / name) in str(e.value)


def test_reasons_are_specific(odd):
    d, _ = odd
    with pytest.raises(DataError, match="empty file"):
        probe(d / "zero.jpg")
    with pytest.raises(DataError, match="truncated"):
        probe(d / "truncated.jpg")
    with pytest.raises(DataError, match="not an image"):
        probe(d / "notes.jpg")


def test_awkward_but_valid_images_decode_to_rgb(odd):
    d, kinds = odd
    for name, kind in kinds.items():
        if kind == "ok":
            arr = load_rgb(d / name, 32)
            assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8, name


def test_exif_rotation_applied(odd):
    d, _ = odd
    info = probe(d / "exif_rotated.jpg")
    assert (info.width, info.height) == (40, 80)  # stored 80x40, orientation 6 turns it upright
    assert load_rgb(d / "exif_rotated.jpg").shape == (80, 40, 3)


def test_alpha_composited_on_white(odd):
    d, _ = odd
    arr = load_rgb(d / "alpha.png")
    assert arr.mean() > 120  # half-transparent photo over white is lighter than the photo


def test_decode_bytes_reports_name():
    with pytest.raises(DataError, match="upload.jpg"):
        decode_bytes(b"garbage", 32, "upload.jpg")


def test_sha256_identifies_content(odd, tmp_path):
    d, _ = odd
    copy = tmp_path / "copy.png"
    copy.write_bytes((d / "alpha.png").read_bytes())
    assert probe(copy).sha256 == probe(d / "alpha.png").sha256
    assert probe(copy).sha256 != probe(d / "palette.png").sha256
