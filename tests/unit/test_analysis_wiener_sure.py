"""The Wiener filter's (alpha, smooth_px) chosen per image by SURE (etem.analysis.baselines)."""

from __future__ import annotations

import numpy as np
import pytest

from etem.analysis import baselines
from etem.analysis.baselines import (
    WIENER_SURE_ALPHAS,
    WIENER_SURE_SMOOTHS_PX,
    wiener,
    wiener_sure,
    wiener_sure_choice,
    wiener_sure_risks,
)
from etem.errors import InputError
from etem.testing import lattice_image

DOSE = 0.45  # e/px in vacuum: issue 14's dose


def _true_mse(y: np.ndarray, lam: np.ndarray, dqe: float = 1.0) -> np.ndarray:
    """The true MSE [counts² per pixel] of every pair, laid out as wiener_sure_risks."""
    return np.array([[np.mean((wiener(y, DOSE, a, s, dqe) * DOSE - lam) ** 2)
                      for a in WIENER_SURE_ALPHAS] for s in WIENER_SURE_SMOOTHS_PX])


@pytest.mark.parametrize("smooth_px", [1, 3, 5])
def test_sure_is_steins_formula_with_the_exact_divergence(smooth_px: int) -> None:
    """On a small image the divergence of the filter, sum_i d f_i / d y_i, by finite
    differences in pixel space gives the same SURE as the DCT form's analytic derivative
    (mirror-mode windows at the spectrum's ends included; the noise power's dependence on
    sum(y) moves only the mean, whose gain is 1, so it adds nothing)."""
    rng = np.random.default_rng(smooth_px)
    y = rng.poisson(3.0 * (1 + 0.5 * np.cos(np.arange(11) / 1.3))[None, :],
                    (9, 11)).astype(np.float64)
    dqe, alphas = 0.7, (0.5, 1.0, 2.5)
    n, var = y.size, y.sum() / dqe / y.size
    got = wiener_sure_risks(y, dqe, alphas, (smooth_px,))[0]
    for k, a in enumerate(alphas):
        f = wiener(y, 1.0, a, smooth_px, dqe)
        div = 0.0
        eps = 1e-6
        for i in np.ndindex(y.shape):
            yp = y.copy()
            yp[i] += eps
            div += (wiener(yp, 1.0, a, smooth_px, dqe)[i] - f[i]) / eps
        want = (np.sum((f - y) ** 2) - n * var + 2 * var * div) / n
        assert got[k] == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_sure_tracks_the_true_mse_over_the_grid_on_a_lattice() -> None:
    """A generated lattice at 0.45 e/px, 8 noise draws: SURE ranks the pairs as their true
    MSE does (correlation over the grid), its choice is within 0.3 dB of the grid's best pair's PSNR
    on average (and 1 dB on every draw) where the fixed default loses 1-2 dB, and averaged
    over the draws it is unbiased. On one 128² image its level is not within a few % of the
    filter's MSE: the realised noise power (its spread sqrt(2 / N) var = 0.006 counts²/px,
    twice the filter's MSE here) enters SURE alike for every pair; less that term, SURE is
    within 60 % of the true MSE at the chosen pair."""
    clean, _, _ = lattice_image(128, 0.2, sigma_A=0.5)
    lam = clean * DOSE
    loss, loss_default, sure, true = [], [], [], []
    for seed in range(8):
        y = np.random.default_rng(seed).poisson(lam).astype(np.float64)
        risk, mse = wiener_sure_risks(y), _true_mse(y, lam)
        assert risk.shape == (len(WIENER_SURE_SMOOTHS_PX), len(WIENER_SURE_ALPHAS))
        assert np.corrcoef(risk.ravel(), mse.ravel())[0, 1] > 0.9
        pick = np.unravel_index(int(np.argmin(risk)), risk.shape)
        loss.append(10 * np.log10(mse[pick] / mse.min()))
        fixed = np.mean((wiener(y, DOSE) * DOSE - lam) ** 2)  # the default pair, 2.5 / 5
        loss_default.append(10 * np.log10(fixed / mse.min()))
        common = np.mean((y - lam) ** 2) - y.mean()  # the realised noise power's excess
        assert risk[pick] - common == pytest.approx(mse[pick], rel=0.6)
        sure.append(risk)
        true.append(mse)
    assert max(loss) < 1.0 and np.mean(loss) < 0.3 < 1.0 < np.mean(loss_default)
    diff = np.array(sure) - np.array(true)
    assert np.all(np.abs(diff.mean(0)) < 3 * diff.std(0, ddof=1) / np.sqrt(len(diff)))


def test_the_noise_level_matters_and_the_noise_pass_bound_limits_a_wrong_one() -> None:
    """Counts of a detector of DQE 0.82 (variance / mean 1 / 0.82): with the right DQE SURE
    chooses well; taken as Poisson (dqe 1) the noise looks 18 % weaker, the residual's excess
    looks like signal, and the least SURE over the whole grid is the weakest pair, alpha 2 /
    smoothing 3, on 3 of 4 noise draws, ~5 dB worse. That pair keeps 3.5 % of pure-noise
    coefficients and is not chosen (WIENER_SURE_MAX_NOISE_PASS): the wrong noise level then
    moves the PSNR by < 1 dB (0.25 dB lost on average, -0.01 to +0.59 per draw, since the
    zero frequency left the smoothed power; 0.34 dB lost before). Before the bound
    wiener_sure took it and lost ~5 dB."""
    clean, _, _ = lattice_image(128, 0.2, sigma_A=0.5)
    lam = clean * DOSE

    def db(est: np.ndarray) -> float:
        return float(10 * np.log10(np.max(clean) ** 2 / np.mean((est - clean) ** 2)))

    weakest, loss = 0, []
    for seed in range(4):
        y = np.random.default_rng(seed).poisson(lam * 0.82) / 0.82
        right, _, _ = wiener_sure(y, DOSE, 0.82)
        wrong, a_wrong, s_wrong = wiener_sure(y, DOSE, 1.0)
        risk = wiener_sure_risks(y, 1.0)  # every pair's SURE, the bound not applied
        i, j = np.unravel_index(int(np.argmin(risk)), risk.shape)
        if (WIENER_SURE_ALPHAS[j], WIENER_SURE_SMOOTHS_PX[i]) == (2.0, 3):
            weakest += 1
            assert db(right) - db(wiener(y, DOSE, 2.0, 3, 1.0)) > 3
        assert (a_wrong, s_wrong) != (2.0, 3)
        loss.append(db(right) - db(wrong))
    assert weakest >= 3 and max(np.abs(loss)) < 1 and np.mean(loss) < 0.5


def test_noise_pass_rate_is_the_fraction_of_pure_noise_kept_and_bounds_the_choice() -> None:
    """noise_pass_rate (chi² of s² degrees of freedom) is the fraction of a flat Poisson
    image's coefficients with gain > 0 (to the few % the mirror-mode ends add; the zero
    frequency's neighbours included, the mean being left out of their windows); the default
    grid has one pair above WIENER_SURE_MAX_NOISE_PASS, alpha 2 / smoothing 3, which is never
    chosen, even where its SURE is the least; a grid of such pairs only is an input error."""
    y = np.random.default_rng(0).poisson(0.45, (256, 256)).astype(np.float64)
    coef = baselines.dctn(y, type=2)
    noise = 4.0 * y.sum()
    for a, s in [(2.0, 3), (3.0, 3), (2.0, 5), (1.5, 5)]:
        power = baselines._smoothed_power(coef, s)[:256, :256]
        kept = power > a * noise
        assert kept.mean() == pytest.approx(baselines.noise_pass_rate(a, s), rel=0.3)
    over = [(a, s) for s in WIENER_SURE_SMOOTHS_PX for a in WIENER_SURE_ALPHAS
            if baselines.noise_pass_rate(a, s) > baselines.WIENER_SURE_MAX_NOISE_PASS]
    assert over == [(2.0, 3)]
    # where alpha 2 at smoothing 3 has the least SURE of alpha 2's pairs (the lattice of the
    # test above, its noise level taken 18 % low)
    clean, _, _ = lattice_image(128, 0.2, sigma_A=0.5)
    y = np.random.default_rng(1).poisson(clean * DOSE * 0.82) / 0.82
    risk = wiener_sure_risks(y, 1.0, [2.0], [3, 5])
    assert risk[0, 0] < risk[1, 0]
    assert wiener_sure_choice(y, 1.0, [2.0], [3, 5]) == (2.0, 5)
    assert wiener_sure(y, DOSE, 1.0, [2.0], [3, 5])[1:] == (2.0, 5)
    with pytest.raises(InputError, match="noise_pass_rate"):
        wiener_sure_choice(y, 1.0, [1.5, 2.0], [3])


def test_wiener_sure_is_wiener_at_the_chosen_pair_and_frames_add_up() -> None:
    clean, _, _ = lattice_image(96, 0.2, sigma_A=0.5)
    g = np.random.default_rng(5)
    frames = g.poisson(clean * DOSE, (3, *clean.shape)).astype(np.uint16)
    est, alpha, smooth = wiener_sure(frames[0], DOSE, 0.9)
    assert (alpha, smooth) == wiener_sure_choice(frames[0], 0.9)
    np.testing.assert_array_equal(est, wiener(frames[0], DOSE, alpha, smooth, 0.9))
    assert est.dtype == np.float64 and est.shape == clean.shape
    # several frames: the pair of the least summed SURE (each frame filtered alone)
    total = sum(wiener_sure_risks(f, 0.9) for f in frames)
    i, j = np.unravel_index(int(np.argmin(total)), total.shape)
    assert wiener_sure_choice(frames, 0.9) == (WIENER_SURE_ALPHAS[j], WIENER_SURE_SMOOTHS_PX[i])
    # a grid of one pair is that pair; the risks are in counts², whatever the dose
    assert wiener_sure_choice(frames, 1.0, [3.0], [7]) == (3.0, 7)
    assert wiener_sure_risks(frames[0]).dtype == np.float64


@pytest.mark.parametrize("kw", [{"alphas": []}, {"smooths": []}, {"alphas": [0.0]},
                                {"smooths": [4]}, {"dqe": 0.0}])
def test_wiener_sure_bad_parameters_are_one_line_input_errors(kw: dict) -> None:
    counts = np.ones((16, 16))
    with pytest.raises(InputError) as exc:
        wiener_sure(counts, DOSE, **kw)
    assert "\n" not in str(exc.value) and "wiener" in str(exc.value)
    with pytest.raises(InputError):
        wiener_sure_choice(np.ones((2, 2, 2, 2)))
    with pytest.raises(InputError):
        baselines.wiener_sure(counts, 0.0)
