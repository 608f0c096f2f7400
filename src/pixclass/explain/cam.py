"""Heatmaps that show which pixels drove a prediction, and their overlays on the image.

- ``gradcam`` / ``gradcampp``: Grad-CAM and Grad-CAM++ from the ``grad-cam`` package (pytorch-grad-cam, MIT) on the
  last convolutional stage of a CNN; for a timm ViT, on the last block's ``norm1`` with the patch tokens reshaped
  into a grid (the package's documented ViT recipe).
- ``gradxinput``: |gradient x input| summed over channels and smoothed; works for any network, ViTs included.
- ``lime``: superpixel LIME, see ``pixclass.explain.lime_explain``.

Heatmaps are (H, W) float32 in [0, 1] at the image's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pixclass.errors import ConfigError
from pixclass.io.images import normalize
from pixclass.models.net import Classifier

METHODS = ("gradcam", "gradcampp", "gradxinput", "lime")
MIN_CAM_SIDE = 6  # coarser maps (3x3 at 96 px) cannot say where in the image the evidence is
LABELS = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "gradxinput": "gradient x input", "lime": "LIME"}


@dataclass(frozen=True)
class Explanation:
    heatmap: np.ndarray  # (H, W) float32 in [0, 1]
    label: int  # the class explained
    score: float  # the model's probability for that class
    method: str

    def overlay(self, image: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        return overlay(image, self.heatmap, alpha)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(f"Unknown explanation method {method!r}. Choose one of {', '.join(METHODS)}.")
    return method


def is_vit(model: Classifier) -> bool:
    bb = model.backbone
    return hasattr(bb, "patch_embed") and hasattr(bb, "blocks") and hasattr(bb, "num_prefix_tokens")


def cam_target_layer(model: Classifier, img_size: int = 224) -> nn.Module:
    """The last backbone stage whose output is a spatial map (N, C, H, W) at least ``MIN_CAM_SIDE`` a side
    (the last conv stage at 224 px; a slightly earlier, finer one for small inputs), else the finest last one."""
    if is_vit(model):
        return model.backbone.blocks[-1].norm1
    shapes: dict[int, tuple] = {}
    hooks = [s.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, tuple(o.shape)))
             for k, s in enumerate(model.stages)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, img_size, img_size))
    finally:
        for h in hooks:
            h.remove()
    spatial = [k for k, shp in shapes.items() if len(shp) == 4 and shp[2] > 1 and shp[3] > 1]
    if not spatial:
        raise ConfigError(f"Model {model.name!r} has no spatial stage for Grad-CAM. Use --method gradxinput or lime.")
    fine = [k for k in spatial if min(shapes[k][2:]) >= MIN_CAM_SIDE]
    return model.stages[max(fine or spatial)]


def _vit_reshape(model: Classifier):
    gh, gw = model.backbone.patch_embed.grid_size
    skip = model.backbone.num_prefix_tokens

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, skip:, :].reshape(t.size(0), gh, gw, t.size(2)).permute(0, 3, 1, 2)

    return reshape


def _probs(model: Classifier, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(x).float(), 1).numpy()


def heatmaps(model: Classifier, images: np.ndarray, method: str = "gradcam",
             targets: list[int] | np.ndarray | None = None, batch_size: int = 16) -> list[Explanation]:
    """Explanations of ``targets`` (default: the predicted classes) for uint8 images (N, S, S, 3)."""
    check_method(method)
    if method == "lime":
        from pixclass.explain.lime_explain import lime_explanation

        return [lime_explanation(model, img, target=None if targets is None else int(targets[i]))
                for i, img in enumerate(images)]
    model = model.float().eval()
    out: list[Explanation] = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(normalize(images[start : start + batch_size], model.mean, model.std))
        probs = _probs(model, x)
        tgt = probs.argmax(1) if targets is None else np.asarray(targets[start : start + len(x)], dtype=int)
        maps = _gradxinput(model, x, tgt) if method == "gradxinput" else _cam(model, x, tgt, method)
        out += [Explanation(maps[i].astype(np.float32), int(tgt[i]), float(probs[i, tgt[i]]), method)
                for i in range(len(x))]
    return out


def _cam(model: Classifier, x: torch.Tensor, targets: np.ndarray, method: str) -> np.ndarray:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = GradCAM if method == "gradcam" else GradCAMPlusPlus
    reshape = _vit_reshape(model) if is_vit(model) else None
    with cls(model=model, target_layers=[cam_target_layer(model, x.shape[-1])], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    model.zero_grad(set_to_none=True)  # the package backpropagates into the parameters; leave no trace
    return np.nan_to_num(maps)


def _gradxinput(model: Classifier, x: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    x = x.clone().requires_grad_(True)
    logits = model(x)
    score = logits[torch.arange(len(x)), torch.as_tensor(targets)].sum()
    (grad,) = torch.autograd.grad(score, x)
    sal = (grad * x).abs().sum(1).detach().numpy()
    sigma = max(1.0, x.shape[-1] / 56)
    out = np.stack([gaussian_filter(s, sigma) for s in sal])
    out -= out.min(axis=(1, 2), keepdims=True)
    return out / np.maximum(out.max(axis=(1, 2), keepdims=True), 1e-12)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heatmap in the 'jet' colour map blended over a uint8 image (H, W, 3)."""
    from matplotlib import colormaps

    h = np.clip(heatmap, 0, 1)
    if h.shape != image.shape[:2]:
        from PIL import Image

        h = np.asarray(Image.fromarray((h * 255).astype(np.uint8)).resize(image.shape[1::-1]), np.float32) / 255
    colour = colormaps["jet"](h)[..., :3] * 255
    return np.clip((1 - alpha) * image + alpha * colour, 0, 255).astype(np.uint8)


def mass_inside(heatmap: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of the heatmap's total mass inside box (top, left, bottom, right), bottom/right exclusive."""
    t, l, b, r = box
    total = float(heatmap.sum())
    return float(heatmap[t:b, l:r].sum()) / total if total > 0 else 0.0
