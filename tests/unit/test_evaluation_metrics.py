"""PSNR/SSIM, classical baselines and column detection metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etem.analysis import baselines
from etem.analysis.matching import detection_metrics, match_columns
from etem.analysis.metrics import psnr, psnr_peak, ssim, ssim_peak
from etem.errors import InputError
from tests.benchmark_scripts import load_benchmark
from tests.evaluation_fixtures import lattice_image


def test_psnr_and_ssim_values():
    a = np.zeros((32, 32))
    a[::2] = 1.0
    b = a + 0.1
    assert psnr(a, b) == pytest.approx(20.0)  # range 1, MSE 0.01
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) < 1.0
    with pytest.raises(InputError):
        psnr(a, a[:5])


def test_peak_psnr_clamps_and_uses_a_fixed_peak():
    clean = np.full((32, 32), 0.5)
    assert psnr_peak(clean, clean + 0.1) == pytest.approx(20.0)  # peak 1, MSE 0.01
    assert psnr_peak(clean, clean + 0.1, peak=2.0) == pytest.approx(20.0 + 20 * np.log10(2))
    # values above the peak are clamped: a saturated estimate of a saturated pixel is exact
    c2, e2 = clean.copy(), clean.copy()
    c2[0, 0], e2[0, 0] = 1.0, 7.0
    assert psnr_peak(c2, e2) == psnr_peak(clean, clean)
    # unlike the range-normalised PSNR, a flat clean image has a finite, known peak PSNR
    assert psnr_peak(clean, np.zeros_like(clean)) == pytest.approx(10 * np.log10(1 / 0.25))
    assert ssim_peak(c2, c2) == pytest.approx(1.0)
    assert ssim_peak(c2, e2 + 0.2) < 1.0


def test_noisy_frame_peak_psnr_matches_poisson_theory():
    """Counts clamped to [0, 1]: E[(min(y, 1) - lam)^2] = e^-lam lam^2 + (1 - e^-lam)(1 - lam)^2."""
    lam = 0.45  # Mohan et al.'s mean count per pixel
    clean = np.full((256, 256), lam)
    y = np.random.default_rng(0).poisson(clean).astype(float)
    expected = np.exp(-lam) * lam**2 + (1 - np.exp(-lam)) * (1 - lam) ** 2
    assert psnr_peak(clean, y) == pytest.approx(-10 * np.log10(expected), abs=0.05)


def test_baselines_improve_on_noisy_input_at_low_dose():
    clean, _, _ = lattice_image(96, 0.2, sigma_A=0.5)
    dose_px = 2.0
    g = np.random.default_rng(0)
    counts = g.poisson(clean * dose_px).astype(float)
    noisy = baselines.noisy_intensity(counts, dose_px)
    p0 = psnr(clean, noisy)
    for est in (baselines.gaussian(counts, dose_px, 1.5), baselines.nlm(counts, dose_px)):
        assert est.shape == clean.shape
        assert psnr(clean, est) > p0 + 5.0
        assert abs(est.mean() - clean.mean()) < 0.05 * clean.mean()  # unbiased intensity
    f = baselines.flat(counts, dose_px)
    assert f.shape == clean.shape and np.ptp(f) == 0
    assert f[0, 0] == pytest.approx(counts.mean() / dose_px)
    # no structure: its MSE is the clean image's variance plus the squared bias of the mean
    assert np.mean((f - clean) ** 2) == pytest.approx(
        clean.var() + (f[0, 0] - clean.mean()) ** 2, rel=1e-9)
    z = baselines.anscombe(g.poisson(5.0, 100000).astype(float))
    assert z.std() == pytest.approx(1.0, abs=0.05)
    assert baselines.inverse_anscombe(baselines.anscombe(np.array([20.0])))[0] == pytest.approx(
        20.0, rel=0.05)
    with pytest.raises(InputError):
        baselines.gaussian(counts, 0.0, 1.0)


def test_wiener_beats_the_oracle_gaussian_on_a_low_dose_lattice():
    """A crystal's lattice is a few Bragg reflections above a flat Poisson noise floor: the
    empirical Wiener filter keeps them, a Gaussian of any width (even the one best on the
    clean image) blurs the columns or keeps the noise."""
    clean, _, _ = lattice_image(128, 0.2, sigma_A=0.5)
    dose_px = 0.45  # a real Pt/CeO2 frame's dose in vacuum [e/px]
    sigmas = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]
    for seed in range(2):
        counts = np.random.default_rng(seed).poisson(clean * dose_px).astype(float)
        w = baselines.wiener(counts, dose_px)
        assert w.shape == clean.shape and np.isfinite(w).all()
        oracle, _ = baselines.oracle_gaussian(counts, dose_px, clean, sigmas)
        assert np.mean((w - clean) ** 2) < 0.5 * np.mean((oracle - clean) ** 2)
        # the zero frequency passes untouched: the mean count is kept exactly
        assert w.mean() * dose_px == pytest.approx(counts.mean(), rel=1e-12)


def test_wiener_flattens_pure_poisson_noise():
    """No structure: nothing stands above the noise power, so (almost) every frequency but
    the zero one is cut and the output is nearly the flat mean."""
    dose_px = 0.45
    counts = np.random.default_rng(3).poisson(np.full((128, 96), dose_px)).astype(float)
    w = baselines.wiener(counts, dose_px)
    noisy_mse = np.mean((counts / dose_px - 1.0) ** 2)  # ~ 1 / dose
    assert np.mean((w - 1.0) ** 2) < 0.01 * noisy_mse
    assert w.mean() == pytest.approx(counts.mean() / dose_px, rel=1e-12)


def test_wiener_reaches_the_flat_estimate_on_pure_poisson_noise():
    """The zero frequency (the mean count, by far the largest power) is left out of its
    neighbours' smoothed power: on a flat Poisson image the filter's MSE is the flat mean's
    to within 20 % (the lowest 3-8 frequencies used to pass with their noise: 2.7-7.3 x the
    flat MSE), for a strong pair and for the default alike."""
    dose_px = 0.45
    for alpha, smooth_px in ((2.5, 5), (4.0, 3)):
        mse, mse_flat = 0.0, 0.0
        for seed in range(10):
            counts = np.random.default_rng(seed).poisson(dose_px, (128, 128)).astype(float)
            mse += np.mean((baselines.wiener(counts, dose_px, alpha, smooth_px) - 1.0) ** 2)
            mse_flat += np.mean((baselines.flat(counts, dose_px) - 1.0) ** 2)
        assert mse < 1.2 * mse_flat


#: The filter as first written: the FFT of the image mirror-extended to 2H x 2W (kept by the
#: benchmark that measures what the DCT form saves).
_wiener_mirror_fft = load_benchmark("wiener_memory").wiener_mirror_fft


@pytest.mark.parametrize("shape", [(16, 16), (15, 15), (12, 17), (21, 8), (1, 9), (2, 5)])
@pytest.mark.parametrize("smooth_px", [1, 3, 5])
def test_wiener_dct_form_equals_the_mirror_extended_fft(shape, smooth_px):
    """The DCT-II form (H x W arrays; mirror-mode smoothing of the DCT power with the zero
    frequency-N row and column appended) gives the extension's output and leaves the caller's
    counts alone (float64 counts are not copied, and not overwritten either)."""
    rng = np.random.default_rng(sum(shape) + smooth_px)
    dose_px = 0.8
    clean = 1.0 + 0.5 * np.cos(2 * np.pi * np.arange(shape[1]) / 4.3)[None, :]
    counts = rng.poisson(clean * dose_px, shape).astype(np.float64)
    kept = counts.copy()
    for alpha, dqe in ((2.5, 1.0), (1.0, 0.8)):
        ref = _wiener_mirror_fft(counts, dose_px, alpha, smooth_px, dqe)
        got = baselines.wiener(counts, dose_px, alpha, smooth_px, dqe)
        assert got.dtype == np.float64 and got.shape == shape
        scale = max(float(np.ptp(ref)), float(np.abs(ref).max()))
        assert np.abs(got - ref).max() <= 1e-6 * scale
        np.testing.assert_array_equal(counts, kept)
    # integer counts (a detector's) give the same
    got16 = baselines.wiener(counts.astype(np.uint16), dose_px, 2.5, smooth_px)
    np.testing.assert_allclose(got16, baselines.wiener(counts, dose_px, 2.5, smooth_px),
                               rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("kw", [{"alpha": 0.0}, {"alpha": -1.0}, {"smooth_px": 0},
                                {"smooth_px": 4}, {"dqe": 0.0}, {"dqe": -0.5}])
def test_wiener_bad_parameters_are_one_line_input_errors(kw):
    counts = np.ones((16, 16))
    with pytest.raises(InputError) as exc:
        baselines.wiener(counts, 1.0, **kw)
    assert "\n" not in str(exc.value) and "wiener" in str(exc.value)


def test_detection_metrics_counts_matches_and_position_error():
    truth = pd.DataFrame({"x_A": [0.0, 3.0, 6.0], "y_A": [0.0, 0.0, 0.0], "I": [1.0, 1.0, 1.0]})
    found = pd.DataFrame({"x_A": [0.1, 3.0, 10.0], "y_A": [0.0, 0.2, 0.0], "I": [1.1, 0.9, 1.0]})
    m = detection_metrics(found, truth, 0.5, "I", "I")
    assert m["n_matched"] == 2
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["rmse_pm"] == pytest.approx(np.sqrt((0.1**2 + 0.2**2) / 2) * 100)
    assert m["intensity_rel_err"] == pytest.approx(0.1)
    # one-to-one: two found near one true column match once
    i_f, _i_t = match_columns(pd.DataFrame({"x_A": [0.0, 0.1], "y_A": [0.0, 0.0]}), truth, 0.5)
    assert len(i_f) == 1
    empty = detection_metrics(found.iloc[:0], truth, 0.5)
    assert empty["recall"] == 0.0 and np.isnan(empty["precision"])
