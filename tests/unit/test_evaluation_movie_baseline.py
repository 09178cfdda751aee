"""The temporal-mean baseline of the multi-frame denoiser."""

from __future__ import annotations

import numpy as np

from etem.evaluation.benchmark import temporal_mean


def test_temporal_mean_of_static_poisson_movie_cuts_mse_by_window() -> None:
    rng = np.random.default_rng(0)
    clean = np.full((40, 32, 32), 2.0)
    frames = rng.poisson(clean).astype(np.float64)
    out = temporal_mean(frames, 5)
    assert out.shape == frames.shape
    mse_noisy = np.mean((frames - clean) ** 2)
    mse_mean = np.mean((out - clean) ** 2)
    # averaging 5 independent Poisson frames divides the variance by 5
    assert 4.0 < mse_noisy / mse_mean < 6.0


def test_temporal_mean_keeps_a_step_local() -> None:
    frames = np.zeros((10, 2, 2))
    frames[5:] = 10.0
    out = temporal_mean(frames, 5)
    assert np.allclose(out[:3], 0.0) and np.allclose(out[8:], 10.0)
    assert 0 < out[4, 0, 0] < out[5, 0, 0] < 10
