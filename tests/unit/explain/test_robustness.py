"""Corruptions change images by severity; FGSM/PGD stay inside the epsilon ball and hurt a real classifier."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixclass.errors import ConfigError
from pixclass.train.robustness import CORRUPTIONS, adversarial_batch, attack, corrupt


@pytest.fixture(scope="module")
def photos(photos4) -> np.ndarray:
    from pixclass.io.images import load_rgb

    return np.stack([load_rgb(p, 64) for p in sorted((photos4 / "hat").glob("*.jpg"))[:4]])


def test_every_corruption_grows_with_severity(photos):
    for name in CORRUPTIONS:
        diffs = []
        for s in (1, 3, 5):
            out = corrupt(photos, name, s)
            assert out.shape == photos.shape and out.dtype == np.uint8
            diffs.append(np.abs(out.astype(float) - photos).mean())
        assert 0 < diffs[0] < diffs[1] < diffs[2], (name, diffs)
    with pytest.raises(ConfigError, match="gaussian_noise"):
        corrupt(photos, "fog", 1)
    with pytest.raises(ConfigError, match="1 to 5"):
        corrupt(photos, "jpeg", 6)


def test_attacks_stay_in_the_ball_and_lower_accuracy(composites):
    model = composites.model
    x = torch.from_numpy(composites.images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(composites.labels)
    mean, std = torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)

    def loss_acc(images):
        with torch.no_grad():
            logits = model((images - mean) / std)
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())

    eps = 4 / 255
    model.zero_grad(set_to_none=True)
    clean_loss, clean_acc = loss_acc(x)
    fgsm = attack(model, x, y, eps=eps)
    pgd = attack(model, x, y, eps=eps, steps=4, random_start=True, generator=torch.Generator().manual_seed(0))
    for adv in (fgsm, pgd):
        assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    fgsm_loss, _ = loss_acc(fgsm)
    pgd_loss, pgd_acc = loss_acc(pgd)
    assert clean_acc >= 0.5
    assert fgsm_loss > clean_loss and pgd_loss > fgsm_loss  # PGD is the stronger attack
    assert pgd_acc < clean_acc
    assert all(p.grad is None for p in model.parameters())  # attacks never touch parameter gradients


def test_adversarial_batch_keeps_layout_and_radius(composites):
    model = composites.model
    mean, std = torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)
    x01 = torch.from_numpy(composites.images[:2]).permute(0, 3, 1, 2).float() / 255
    x = ((x01 - mean) / std).contiguous(memory_format=torch.channels_last)
    out = adversarial_batch(model, x, torch.from_numpy(composites.labels[:2]), eps=2 / 255, bf16=False)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)
    back = out * std + mean
    assert (back - x01).abs().max() <= 2 / 255 + 1e-5 and (back - x01).abs().max() > 1 / 255
