"""Hand-made feature modules: what they compute, and ONNX parity (they are exported inside classical models)."""

import numpy as np
import pytest
import torch

from pixclass.errors import ConfigError
from pixclass.io.images import load_rgb, normalize
from pixclass.models.embed import export_onnx, ort_session
from pixclass.models.features import HOG, ColorHistogram, PixelFeatures, create_features, split_name
from pixclass.models.net import IMAGENET_MEAN, IMAGENET_STD


def as_input(images_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(normalize(images_u8, IMAGENET_MEAN, IMAGENET_STD))


@pytest.mark.parametrize("name,dim", [("pixels", 768), ("colorhist", 512), ("hog", 1764)])
@pytest.mark.parametrize("size", [96, 100])  # 100: not a multiple of the working size, so resized first
def test_feature_onnx_parity_on_real_photos(tmp_path, photos4, name, dim, size):
    files = [sorted((photos4 / c).glob("*.jpg"))[0] for c in ("hat", "pants", "shoes", "t-shirt")]
    x = as_input(np.stack([load_rgb(f, size) for f in files]))
    module, _, _ = create_features(name)
    with torch.no_grad():
        ref = module(x).numpy()
    assert ref.shape == (4, dim) and np.isfinite(ref).all()
    export_onnx(module, tmp_path / "f.onnx", size)
    got = ort_session(tmp_path / "f.onnx").run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert np.abs(ref[0] - ref[1]).max() > 1e-3  # different photos, different features


def test_pixels_are_the_downscaled_image():
    img = np.zeros((1, 64, 64, 3), np.uint8)
    img[:, :32] = (255, 0, 0)  # top half red
    f = PixelFeatures(16)(as_input(img)).reshape(3, 16, 16).detach().numpy()
    np.testing.assert_allclose(f[0, :8], 1.0, atol=1e-5)
    np.testing.assert_allclose(f[:, 8:], 0.0, atol=1e-5)


def test_color_histogram_is_a_distribution_with_mass_in_the_right_bins():
    img = np.zeros((1, 64, 64, 3), np.uint8)
    img[:, :32] = (250, 5, 5)  # half red
    img[:, 32:] = (5, 5, 250)  # half blue
    h = ColorHistogram(bins=8)(as_input(img))[0].detach().numpy() ** 2  # the module returns the square root
    assert abs(h.sum() - 1) < 1e-4
    joint = h.reshape(8, 8, 8)
    assert joint[7, 0, 0] == pytest.approx(0.5, abs=0.02) and joint[0, 0, 7] == pytest.approx(0.5, abs=0.02)


def test_hog_orientation_follows_the_edges():
    xs = np.arange(64)
    stripes = ((np.sin(xs / 3.0) + 1) * 120).astype(np.uint8)
    vertical = np.broadcast_to(stripes[None, :, None], (64, 64, 3))  # intensity changes along x: angle 0
    horizontal = vertical.transpose(1, 0, 2)  # changes along y: angle 90 degrees
    hog = HOG()
    for img, expected in ((vertical, {0}), (horizontal, {4, 5})):
        f = hog(as_input(np.ascontiguousarray(img)[None]))[0].detach().reshape(4 * 9, 7, 7)
        per_bin = f.reshape(4, 9, 7, 7).sum(dim=(0, 2, 3)).numpy()
        assert int(per_bin.argmax()) in expected
    # block-normalised: every 36-value block has (about) unit length on a textured image
    f = hog(as_input(np.ascontiguousarray(vertical)[None]))[0].detach().reshape(36, 7, 7)
    np.testing.assert_allclose(torch.linalg.norm(f, dim=0).numpy(), 1.0, atol=1e-3)


def test_feature_names_are_checked():
    assert split_name("embed") == ("embed", "mobilenetv2_100")
    assert split_name("embed:resnet18") == ("embed", "resnet18")
    assert split_name("hog") == ("hog", None)
    with pytest.raises(ConfigError, match="Did you mean colorhist"):
        split_name("colorhst")
    with pytest.raises(ConfigError, match="Only embed"):
        split_name("hog:resnet18")
