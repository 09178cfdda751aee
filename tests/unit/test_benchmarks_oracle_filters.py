"""benchmarks/oracle_filters.py: the oracle filters that bound what a denoiser could gain.
On a noisy lattice the filter that knows the clean spectrum beats the empirical Wiener
filter, which beats no structure at all; on a structureless image nothing rises above the
noise, so knowing the support leaves only the mean."""

from __future__ import annotations

import numpy as np
import pytest

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
