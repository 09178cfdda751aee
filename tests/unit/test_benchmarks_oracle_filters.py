"""benchmarks/oracle_filters.py: the oracle filters that bound what a denoiser could gain.
On a noisy lattice the filter that knows the clean spectrum beats the empirical Wiener
filter, which beats no structure at all; on a structureless image nothing rises above the
noise, so knowing the support leaves only the mean."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import dctn, idctn

from etem.analysis.metrics import psnr_peak
from tests.benchmark_scripts import load_benchmark

of = load_benchmark("oracle_filters")
SIGMAS = [0.5, 1.0, 2.0, 4.0, 8.0]


def _lattice(n: int = 96, period_px: float = 7.3, contrast: float = 0.3) -> np.ndarray:
    y, x = np.mgrid[:n, :n]
    return 0.45 * (1 + contrast * np.cos(2 * np.pi * x / period_px)
                   * np.cos(2 * np.pi * y / (period_px * 1.1)))


def test_knowing_the_spectrum_beats_the_empirical_wiener_filter() -> None:
    lam = _lattice()
    counts = np.random.default_rng(3).poisson(lam).astype(np.float64)
    est, kept = of.oracle_estimates(lam, counts, 1.0, SIGMAS)
    p = {m: psnr_peak(lam, e, 1.0) for m, e in est.items()}
    assert p["linear_oracle"] > p["wiener_sure"] > p["flat"]
    assert p["support_oracle"] > p["flat"] and p["linear_oracle"] >= p["support_oracle"] - 0.1
    assert 0.0 < kept <= 1.0


def test_a_structureless_image_has_no_support_above_the_noise() -> None:
    lam = np.full((64, 64), 0.45)
    counts = np.random.default_rng(4).poisson(lam).astype(np.float64)
    est, kept = of.oracle_estimates(lam, counts, 0.8, SIGMAS)
    assert np.isnan(kept)
    np.testing.assert_allclose(est["support_oracle"], counts.mean(), rtol=1e-9)
    assert est["linear_oracle"] == pytest.approx(est["support_oracle"], rel=1e-9)


def test_the_support_is_where_the_clean_power_exceeds_the_counts_noise_over_the_dqe() -> None:
    """v = sum(counts) / (dqe N) per orthonormal coefficient: a clean coefficient of power
    1.5 v is kept as the noisy one, one of 0.5 v is dropped (dqe 0.5: a slip of the DQE
    factor would swap them)."""
    n, dqe = 32, 0.5
    counts = np.random.default_rng(5).poisson(0.45, (n, n)).astype(np.float64)
    v = counts.sum() / (dqe * n * n)
    spec = np.zeros((n, n))
    spec[0, 0] = 0.45 * n
    spec[3, 5], spec[7, 2] = np.sqrt(1.5 * v), np.sqrt(0.5 * v)
    est, _ = of.oracle_estimates(idctn(spec, norm="ortho"), counts, dqe, SIGMAS)
    out, cy = dctn(est["support_oracle"], norm="ortho"), dctn(counts, norm="ortho")
    assert out[3, 5] == pytest.approx(cy[3, 5]) and out[0, 0] == pytest.approx(cy[0, 0])
    assert abs(out[7, 2]) < 1e-9 and np.count_nonzero(np.abs(out) > 1e-9) == 2
    lin = dctn(est["linear_oracle"], norm="ortho")
    assert lin[3, 5] == pytest.approx(cy[3, 5] * 1.5 / 2.5)
    assert lin[7, 2] == pytest.approx(cy[7, 2] * 0.5 / 1.5)
