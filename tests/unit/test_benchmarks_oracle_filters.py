"""benchmarks/oracle_filters.py: the oracle filters that bound what a denoiser could gain.
On a noisy lattice the filter that knows the clean spectrum beats the empirical Wiener
filter, which beats no structure at all; on a structureless image nothing rises above the
noise, so knowing the support leaves only the mean."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import dctn, idctn

from etem.analysis import baselines
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


def test_the_bands_split_each_methods_squared_error_and_the_support() -> None:
    """Orthonormal DCT: the bands' errors add up to the mean squared error [counts² per
    pixel], their support coefficients to the support oracle's."""
    lam = _lattice(64)
    counts = np.random.default_rng(6).poisson(lam).astype(np.float64)
    est, _ = of.oracle_estimates(lam, counts, 1.0, SIGMAS)
    rows = of.band_errors(lam, est, 1.0, counts, [0.0, 0.05, 0.2, 1.5])
    assert [r["band"] for r in rows] == ["0-0.05", "0.05-0.2", "0.2-1.5"]
    for m, e in est.items():
        assert sum(r[m] for r in rows) == pytest.approx(np.mean((e - lam) ** 2), rel=1e-9)
    v = counts.sum() / counts.size
    assert sum(r["support_coefficients"] for r in rows) == np.count_nonzero(
        dctn(lam, norm="ortho") ** 2 > v)
    assert sum(r["signal"] for r in rows) == pytest.approx(np.mean(lam ** 2), rel=1e-9)


def test_splicing_takes_the_oracles_coefficients_in_the_band_only() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(32, 48)), rng.normal(size=(32, 48))
    np.testing.assert_allclose(of.spliced(a, b, (0.0, 2.0)), b, atol=1e-12)
    np.testing.assert_allclose(of.spliced(a, b, (1.5, 2.0)), a, atol=1e-12)
    mixed = dctn(of.spliced(a, b, (0.1, 0.3)), norm="ortho")
    r = np.hypot(*np.meshgrid(np.arange(32) / 32, np.arange(48) / 48, indexing="ij"))
    on = (r >= 0.1) & (r < 0.3)
    np.testing.assert_allclose(mixed[on], dctn(b, norm="ortho")[on], atol=1e-12)
    np.testing.assert_allclose(mixed[~on], dctn(a, norm="ortho")[~on], atol=1e-12)


def test_welch_support_detects_at_its_false_detection_rate() -> None:
    """WELCH_P_FALSE false detections per tile spectrum on structureless Poisson images (20
    images: Poisson(20 x rate) in all); where nothing is found the estimate is the
    SURE-chosen Wiener filter's."""
    n_found = 0
    for seed in range(20):
        counts = np.random.default_rng(100 + seed).poisson(0.45, (128, 128)).astype(float)
        found = of.welch_found(counts, 1.0)
        n_found += int(found.sum())
        if not found.any():
            np.testing.assert_allclose(of.welch_support(counts, 1.0),
                                       baselines.wiener_sure(counts, 1.0, 1.0)[0], atol=1e-9)
    rate = 20 * of.WELCH_P_FALSE
    assert rate - 4 * np.sqrt(rate) <= n_found <= rate + 4 * np.sqrt(rate)


def test_welch_support_finds_an_incoherent_texture_that_no_single_coefficient_shows() -> None:
    """A random-phase texture in the band 0.2-0.3 x Nyquist with as much power per coefficient
    as the noise: the tiles' mean power finds most of the band, and the estimate beats the
    SURE-chosen Wiener filter, which sees each coefficient alone (a crystal's reflection is
    coherent over the field: there the single periodogram is the better detector)."""
    n = 256
    rng = np.random.default_rng(8)
    band = (of._radius((n, n)) >= 0.2) & (of._radius((n, n)) < 0.3)
    spec = rng.normal(size=(n, n)) * band * np.sqrt(2.0)  # variance = the noise's (2 e/px)
    spec[0, 0] = 2.0 * n
    lam = idctn(spec, norm="ortho")
    counts = rng.poisson(lam).astype(float)
    found = of.welch_found(counts, 1.0)
    r = of._radius(found.shape)
    on = (r >= 0.2) & (r < 0.3)
    assert found[on].mean() > 0.4 and found[~on].sum() <= 10
    wiener = baselines.wiener_sure(counts, 1.0, 1.0)[0]
    assert np.mean((of.welch_support(counts, 1.0) - lam) ** 2) < 0.95 * np.mean(
        (wiener - lam) ** 2)
