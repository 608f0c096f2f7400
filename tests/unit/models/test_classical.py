"""Classical estimators, the torch wrapper around them, and the merged ONNX graph."""

import numpy as np
import pytest
import torch

from pixclass.errors import ConfigError
from pixclass.export.classical import build_onnx
from pixclass.io.images import normalize
from pixclass.models.classical import CLASSICAL, ClassicalModel, create_estimator, expand_probs
from pixclass.models.embed import ort_session, predict_probs
from pixclass.models.features import PixelFeatures
from pixclass.models.net import IMAGENET_MEAN, IMAGENET_STD


def blobs(n_per: int = 30, k: int = 3, d: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(k, d))
    x = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


@pytest.mark.parametrize("name", list(CLASSICAL))
def test_every_estimator_learns_and_gives_probabilities(name):
    x, y = blobs()
    xt, yt = blobs(seed=0)
    est = create_estimator(name, data_shape=x.shape).fit(x, y)
    probs = est.predict_proba(xt)
    assert probs.shape == (len(xt), 3)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    assert np.mean(probs.argmax(1) == yt) > 0.9


def test_unknown_estimator_suggests_close_names():
    with pytest.raises(ConfigError, match="Did you mean logreg"):
        create_estimator("logreq")


def test_expand_probs_puts_unseen_classes_at_zero():
    out = expand_probs(np.array([[0.25, 0.75]]), np.array([0, 2]), 3)
    np.testing.assert_allclose(out, [[0.25, 0.0, 0.75]])


def pixel_model(k_seen: tuple[int, ...] = (0, 1, 2), num_classes: int = 3, name: str = "logreg"):
    """A ClassicalModel on 4x4 pixels of images whose colour says the class; classes outside k_seen never trained."""
    rng = np.random.default_rng(0)
    colours = {0: (220, 30, 30), 1: (30, 220, 30), 2: (30, 30, 220)}
    labels = np.array([c for c in k_seen for _ in range(12)])
    images = np.stack([np.clip(np.array(colours[c]) + rng.normal(0, 25, (16, 16, 3)), 0, 255) for c in labels])
    images = images.astype(np.uint8)
    feats = PixelFeatures(4).eval()
    with torch.no_grad():
        x = feats(torch.from_numpy(normalize(images, IMAGENET_MEAN, IMAGENET_STD))).numpy()
    est = create_estimator(name, data_shape=x.shape).fit(x, labels)
    model = ClassicalModel(feats, est, num_classes, name=name, feature_name="pixels", mean=IMAGENET_MEAN,
                           std=IMAGENET_STD)
    return model.eval(), images, labels


def test_wrapper_returns_the_estimators_probabilities_through_predict_probs():
    model, images, labels = pixel_model()
    probs = predict_probs(model, images)  # the Classifier path: bf16 autocast, channels_last, softmax
    ref = model.estimator.predict_proba(model.features(torch.from_numpy(
        normalize(images, IMAGENET_MEAN, IMAGENET_STD))).detach().numpy())
    np.testing.assert_allclose(probs, ref, atol=1e-6)
    assert np.mean(probs.argmax(1) == labels) == 1.0


@pytest.mark.parametrize("name", list(CLASSICAL))
def test_merged_onnx_matches_torch_and_sklearn_with_an_unseen_class(tmp_path, name):
    model, images, labels = pixel_model(k_seen=(0, 2), num_classes=3, name=name)
    path = build_onnx(model, 16, tmp_path / "m.onnx")
    x = normalize(images, IMAGENET_MEAN, IMAGENET_STD)
    got = ort_session(path).run(None, {"input": x})[0]
    ref = model.predict_proba(torch.from_numpy(x))
    assert got.shape == (len(images), 3)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.all(got[:, 1] == 0) and np.mean(got.argmax(1) == labels) == 1.0


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace is deprecated, still what exporters use
def test_wrapper_refuses_to_be_traced_as_a_whole():
    model, _, _ = pixel_model()
    with pytest.raises(ConfigError, match="export_classical"):
        torch.jit.trace(model, torch.zeros(1, 3, 16, 16))


def test_unconvertible_estimator_is_a_clear_error(tmp_path):
    model, _, _ = pixel_model()

    class Custom:  # has the sklearn surface, but skl2onnx knows no converter for it
        classes_ = np.arange(3)

        def predict_proba(self, x):
            return np.full((len(x), 3), 1 / 3)

    model.estimator = Custom()
    with pytest.raises(ConfigError, match="skl2onnx cannot convert Custom"):
        build_onnx(model, 16, tmp_path / "m.onnx")
