"""benchmarks/finetune.py: its label-free uMSE must stay unbiased for a network fine-tuned on
the movie, which learned the noise of the frames it denoises. The extreme case is an
"estimate" that is the noisy frame itself: its true MSE is the noise variance; an estimator
comparing it with that same frame would call it perfect."""

from __future__ import annotations

import numpy as np

from tests.benchmark_scripts import load_benchmark

ft = load_benchmark("finetune")


def _movie(seed: int = 0, n: int = 24, dose: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    clean = 1.0 + 0.3 * np.cos(2 * np.pi * xx / 8) * np.cos(2 * np.pi * yy / 8)
    frames = rng.poisson(dose * clean, (n, 64, 64)).astype(np.float32)
    return frames, np.broadcast_to(clean, (n, 64, 64))


def test_umse_of_a_memorised_frame_is_its_noise_not_zero() -> None:
    dose = 4.0
    frames, clean = _movie(dose=dose)
    est = frames / dose  # "denoised" = the noisy frame: true MSE = noise variance
    r = ft.movie_umse(est, frames, clean, dose, n_static=len(frames), half_window=2)
    assert r["mse_static"] > 0.2
    assert abs(r["umse"] - r["mse_static"]) < 4 * r["umse_se"] + 0.02 * r["mse_static"]


def test_paired_delta_ranks_the_clean_image_above_the_noisy_frame() -> None:
    dose = 4.0
    frames, clean = _movie(seed=1, dose=dose)
    noisy, exact = frames / dose, np.array(clean)
    d, se = ft.paired_delta(exact, noisy, frames, dose, n_static=len(frames), half_window=2)
    true = float(np.mean((exact - clean) ** 2) - np.mean((noisy - clean) ** 2))
    assert d < -10 * se
    assert abs(d - true) < 4 * se + 0.02 * abs(true)
