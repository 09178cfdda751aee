"""Segmenter losses: site-masked ordinal BCE, soft Dice, class weighting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from etem.training.run import make_task
from etem.training.tasks import ordinal_bce, soft_dice
from tests.configs import TinyConfig
from tests.training_fixtures import write_campaign


def test_masked_ordinal_loss_ignores_pixels_outside_the_mask() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 8, 8, generator=g)
    target = torch.randint(0, 6, (2, 8, 8), generator=g)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[:, 2:4, 2:4] = True
    base = ordinal_bce(logits, target, mask)
    other = logits.clone()
    other[:, :, 5:, 5:] += 10.0  # change the logits only outside the mask
    assert float(ordinal_bce(other, target, mask)) == pytest.approx(float(base))
    assert float(ordinal_bce(other, target)) != pytest.approx(float(ordinal_bce(logits, target)))
    # the masked mean equals the plain mean over the masked pixels
    sub = ordinal_bce(logits[:, :, 2:4, 2:4], target[:, 2:4, 2:4])
    assert float(base) == pytest.approx(float(sub), rel=1e-6)
    assert float(ordinal_bce(logits, target, torch.zeros_like(mask))) == 0.0


def test_soft_dice_rewards_the_rare_class() -> None:
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, 7:9, 7:9] = 1  # a 4-pixel column disc in a background image
    perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 20.0
    all_bg = torch.zeros(1, 2, 16, 16)
    all_bg[:, 0] = 20.0
    both = torch.ones(2, dtype=torch.bool)
    assert float(soft_dice(perfect, target, both)) < 0.01
    # 'all background' is 98 % pixel-accurate but misses the rare class: Dice loss ~0.4
    # (0.5 without the +1 smoothing)
    assert float(soft_dice(all_bg, target, both)) > 0.35
    # unselected classes do not count
    assert float(soft_dice(all_bg, target, torch.tensor([True, False]))) < 0.01


def test_sqrt_class_weights_are_milder(tmp_path: Path, tiny_config: TinyConfig) -> None:
    campaign = write_campaign(tmp_path / "results", n_structures=6)
    w = {}
    for mode in ("median_frequency", "sqrt_median_frequency", "none"):
        loop = {"class_weighting": mode}
        cfg = tiny_config(tmp_path / "results", training={"segmenter": loop})
        w[mode] = make_task("segmenter", cfg, campaign).class_weights().numpy()
    present = w["median_frequency"] > 0
    assert np.allclose(w["sqrt_median_frequency"], np.sqrt(w["median_frequency"]))
    assert np.array_equal(w["none"], present.astype(np.float32))
    # the background (majority class) is down-weighted, columns up-weighted
    assert w["median_frequency"][0] < 1 < w["median_frequency"][present].max()
    assert w["sqrt_median_frequency"].max() < w["median_frequency"].max()
