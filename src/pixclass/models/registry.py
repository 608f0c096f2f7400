"""Model names -> Classifier. ``create_model`` resolves built-in, torchvision (``tv/<name>``) and timm names."""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pixclass.errors import ConfigError, OfflineError
from pixclass.models import weights as W
from pixclass.models.net import CascadeHead, Classifier, SmallCNN

log = logging.getLogger(__name__)

CIFAR_MEAN, CIFAR_STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
BUILTIN = {"smallcnn": lambda: SmallCNN(32), "smallcnn_wide": lambda: SmallCNN(64)}
# Shown by `pixclass models`; any other timm or torchvision name works too.
SUGGESTED = [
    "smallcnn", "smallcnn_wide", "mobilenetv2_100", "tv/mobilenet_v2", "tf_efficientnet_lite0", "efficientnet_lite0",
    "efficientnet_b0", "mobilenetv3_large_100", "resnet18", "resnet50", "convnext_nano", "vit_tiny_patch16_224", "deit_tiny_patch16_224",
    "tv/resnet18",
]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # builtin | timm | torchvision
    offline_weights: bool  # ImageNet weights loadable without network
    source: str  # where pretrained weights would come from


def _timm_names() -> set[str]:
    import timm

    return set(timm.list_models())


def _tv_names() -> set[str]:
    import torchvision

    return {f"tv/{n}" for n in torchvision.models.list_models(module=torchvision.models)}


def check_model_name(name: str) -> str:
    """The family ("builtin", "torchvision", "timm") of a model name; ConfigError naming close matches if unknown."""
    if name in BUILTIN:
        return "builtin"
    if name.startswith("tv/"):
        if name in _tv_names():
            return "torchvision"
        pool = sorted(_tv_names())
    else:
        if name in _timm_names():
            return "timm"
        pool = sorted(set(BUILTIN) | _timm_names())
    close = difflib.get_close_matches(name, pool, n=4, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"Unknown model {name!r}.{hint} Run `pixclass models` to list names.")


def _expand_stages(model: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for cname, child in model.named_children():
        if cname in ("blocks", "stages", "layers", "features") and isinstance(child, (nn.Sequential, nn.ModuleList)):
            out.extend(child.children())
        elif not isinstance(child, nn.Identity):
            out.append(child)
    return out


def _timm_hub_file(net: nn.Module) -> str | None:
    """The locally cached pretrained file for a timm model, if the Hugging Face cache has it."""
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for fname in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(hub_id, fname)
        if isinstance(hit, str):
            return hit
    return None


def _pretrained_state(name: str, family: str, net: nn.Module) -> tuple[dict, str]:
    """ImageNet weights for ``name`` from the first source that has them."""
    pkg = W.offline_package_file(name)
    if pkg is not None:
        return W.read_state_dict(pkg), f"package file {pkg.name}"
    if family == "timm":
        cached = _timm_hub_file(net)
        if cached:
            return W.read_state_dict(cached), f"timm cache {cached}"
        if not W.hub_reachable():
            raise OfflineError(f"No offline ImageNet weights for {name!r} and the hub is unreachable. {W.OFFLINE_HINT}")
        import timm

        hub_net = timm.create_model(name, pretrained=True, num_classes=0)
        return hub_net.state_dict(), "timm hub"
    if family == "torchvision":
        import torchvision

        weights = torchvision.models.get_model_weights(name[3:]).DEFAULT
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.is_file() and not W.hub_reachable("download.pytorch.org"):
            raise OfflineError(f"No offline ImageNet weights for {name!r} and the hub is unreachable. {W.OFFLINE_HINT}")
        return weights.get_state_dict(progress=False), f"torchvision {weights}"
    raise ConfigError(f"Model {name!r} has no pretrained weights; train it with --no-pretrained.")


def create_model(name: str, *, pretrained: bool = False, num_classes: int = 2,
                 weights: str | Path | None = None) -> Classifier:
    """Build ``name`` as a Classifier with a fresh ``num_classes`` head.

    Weights: ``weights`` file if given; else ImageNet weights when ``pretrained`` (see models.weights).
    """
    family = check_model_name(name)
    mean, std = mean_std(name, family)
    if family == "builtin":
        backbone = BUILTIN[name]()
        num_features, stages = backbone.num_features, list(backbone.body.children())
    elif family == "timm":
        import timm

        backbone = timm.create_model(name, pretrained=False, num_classes=0)
        num_features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        stages = _expand_stages(backbone)
    else:
        import torchvision

        backbone = torchvision.models.get_model(name[3:], weights=None)
        last_name, last = [(n, m) for n, m in backbone.named_modules() if isinstance(m, nn.Linear)][-1]
        num_features = last.in_features
        parent = backbone.get_submodule(last_name.rsplit(".", 1)[0]) if "." in last_name else backbone
        setattr(parent, last_name.rsplit(".", 1)[-1], nn.Identity())
        stages = _expand_stages(backbone)
    if weights:
        W.load_into(backbone, W.read_state_dict(weights), str(weights))
    elif pretrained:
        state, source = _pretrained_state(name, family, backbone)
        W.load_into(backbone, state, source)
        log.info("%s: ImageNet weights from %s", name, source)
    return Classifier(backbone, num_features, num_classes, name=name, mean=mean, std=std, stages=stages)


def mean_std(name: str, family: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation of the backbone's pretrained config (ImageNet for torchvision)."""
    if family == "builtin":
        return CIFAR_MEAN, CIFAR_STD
    if family == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(name)
        if cfg is not None:
            return tuple(cfg.mean), tuple(cfg.std)
    from pixclass.models.net import IMAGENET_MEAN, IMAGENET_STD

    return IMAGENET_MEAN, IMAGENET_STD


def list_models(all_names: bool = False) -> list[ModelInfo]:
    names = sorted(set(BUILTIN) | _timm_names() | _tv_names()) if all_names else SUGGESTED
    out = []
    for name in names:
        family = check_model_name(name)
        if family == "builtin":
            out.append(ModelInfo(name, family, False, "none (trained from scratch)"))
            continue
        pkg = W.offline_package_file(name)
        out.append(ModelInfo(name, family, pkg is not None, f"package {pkg.name}" if pkg else "hub (online)"))
    return out


def load_checkpoint(path: str | Path) -> tuple[Classifier, dict]:
    """A trained Classifier from a run's ``model.pt``; returns (model in eval mode, checkpoint dict)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ConfigError(f"No checkpoint at {path}. Train a run first (`pixclass train`).")
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)  # no pickled code runs
    if ckpt.get("kind") == "classical":  # features + scikit-learn estimator (models.classical)
        from pixclass.models.classical import load_classical

        return load_classical(path, ckpt)
    model = create_model(ckpt["model_name"], pretrained=False, num_classes=ckpt["num_classes"])
    if ckpt.get("cascade"):
        model.head = CascadeHead(model.num_features, ckpt["cascade"])
    model.multilabel = bool(ckpt.get("multilabel", False))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt
