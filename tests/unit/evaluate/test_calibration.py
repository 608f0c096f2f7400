import numpy as np
import pytest

from pixclass.artifact import Manifest, Preprocess
from pixclass.errors import DataError
from pixclass.evaluate.calibration import (apply_temperature, expected_calibration_error, fit_temperature, nll,
                                           reliability_bins, save_temperature, stored_temperature)
from pixclass.schema import LabelSchema


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_ece_by_hand():
    # 10 images all predicted with confidence 0.9, half of them right: ECE = |0.5 - 0.9| = 0.4
    probs = np.tile([[0.9, 0.1]], (10, 1))
    labels = np.array([0] * 5 + [1] * 5)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.4)
    b = reliability_bins(labels, probs)
    assert b.count.sum() == 10 and b.count[13] == 10 and b.accuracy[13] == pytest.approx(0.5)
    assert expected_calibration_error(np.zeros(10, int), probs) == pytest.approx(0.1)


def test_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax(logits)])  # calibrated at T = 1
    overconfident = softmax(3 * logits)
    t = fit_temperature(labels, overconfident)
    assert t == pytest.approx(3.0, rel=0.1)
    fixed = apply_temperature(overconfident, t)
    assert np.array_equal(fixed.argmax(1), overconfident.argmax(1))  # predictions unchanged
    assert nll(labels, fixed) < nll(labels, overconfident)
    assert expected_calibration_error(labels, fixed) < 0.03 < expected_calibration_error(labels, overconfident)
    with pytest.raises(DataError, match="validation"):
        fit_temperature(np.zeros(0, int), np.zeros((0, 5)))


def test_temperature_is_stored_in_the_manifest(tmp_path):
    m = Manifest(schema=LabelSchema("multiclass", ("a", "b", "c")), preprocess=Preprocess(64, (0.5,) * 3, (0.2,) * 3),
                 model="smallcnn", mode="linear", thresholds={"a": 0.5})
    m.save(tmp_path)
    save_temperature(tmp_path, 1.734)
    again = Manifest.load(tmp_path)
    assert stored_temperature(again) == pytest.approx(1.734)
    assert again.thresholds["a"] == 0.5 and again.model == "smallcnn"  # the rest is kept
