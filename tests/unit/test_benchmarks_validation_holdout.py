"""benchmarks/validation_holdout.py: the coupling (loss − true MSE) that reveals a network
which learned the noise of its validation frames. For an estimate clean + k noise it is
the noise variance times 1 − 2k: the variance for the clean image, minus it for the noisy
frame itself (a network that learned every noisy pixel), zero half-way."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark

vh = load_benchmark("validation_holdout")


@pytest.mark.parametrize("k", [0.0, 0.5, 1.0])
def test_coupling_falls_as_the_estimate_takes_the_frames_noise(k: float) -> None:
    rng = np.random.default_rng(0)
    clean = np.full((3, 64, 64), 2.0)
    noisy = rng.poisson(clean * 4.0) / 4.0  # variance 0.5
    c = vh.coupling(clean + k * (noisy - clean), noisy, clean, crop=32)
    assert c.shape == (3,)
    assert c == pytest.approx(np.full(3, 0.5 * (1 - 2 * k)), abs=0.06)
