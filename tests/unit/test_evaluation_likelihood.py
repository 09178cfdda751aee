"""Likelihood maps (Mohan) and their simulation-based calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

from etem.analysis.baselines import gaussian
from etem.analysis.calibration import held_out_report, vacuum_detections, with_random_ties
from etem.analysis.columns import find_columns
from etem.analysis.likelihood import (
    Calibration,
    likelihood_map,
    likelihood_table,
    raw_p_value,
)
from etem.errors import InputError
from etem.simulation.noise import detector_counts

H = W = 96
RR, CC = np.mgrid[:H, :W].astype(float)


def _blob(x: float, y: float, s: float = 2.0) -> np.ndarray:
    return np.exp(-((RR - y) ** 2 + (CC - x) ** 2) / (2 * s * s))


def test_planted_true_atom_positive_spurious_atom_negative():
    g = np.random.default_rng(0)
    lam_v = 2.0
    truth = lam_v * (1.0 + _blob(30, 40))  # the image that generated the counts
    counts = g.poisson(truth).astype(float)
    denoised = lam_v * (1.0 + _blob(30, 40) + _blob(65, 55))  # plus a hallucinated atom
    cols = find_columns(denoised, 0.2, 0.2, 0.8, 0.05)
    assert len(cols) == 2
    tab = likelihood_table(counts, denoised, cols, 2.5, lambda_vac=lam_v)
    true_row = tab.iloc[np.argmin(np.hypot(tab["x_px"] - 30, tab["y_px"] - 40))]
    fake_row = tab.iloc[np.argmin(np.hypot(tab["x_px"] - 65, tab["y_px"] - 55))]
    assert true_row["llr"] > 0
    assert fake_row["llr"] < 0
    assert true_row["p_raw"] < 1e-3 < fake_row["p_raw"]
    # same with the vacuum level taken from a vacuum mask
    mask = np.zeros((H, W), dtype=bool)
    mask[:, 85:] = True
    tab2 = likelihood_table(counts, denoised, cols, 2.5, vacuum_mask=mask)
    assert np.allclose(tab2["lambda_vac"], lam_v)
    assert np.array_equal(np.sign(tab2["llr"]), np.sign(tab["llr"]))
    # the map paints each disk with its column's statistic
    m = likelihood_map(counts, denoised, cols, 2.5, lambda_vac=lam_v)
    assert m[40, 30] == pytest.approx(true_row["llr"]) and m[55, 65] == pytest.approx(
        fake_row["llr"])
    assert m[5, 5] == 0.0


def test_statistic_is_mean_poisson_log_likelihood_ratio_over_the_disk():
    g = np.random.default_rng(1)
    counts = g.poisson(3.0, size=(H, W)).astype(float)
    den = 2.0 + 3.0 * _blob(48, 48)
    cols = pd.DataFrame({"x_px": [48.0], "y_px": [48.0]})
    tab = likelihood_table(counts, den, cols, 3.0, lambda_vac=2.0)
    disk = (RR - 48) ** 2 + (CC - 48) ** 2 <= 9.0
    y = counts[disk]
    lam_a = den[disk].mean()

    def logp(lam: float) -> np.ndarray:
        return -lam + y * np.log(lam) - gammaln(y + 1)

    expected = np.mean(logp(lam_a) - logp(2.0))
    assert tab["llr"].iloc[0] == pytest.approx(expected, rel=1e-10)
    assert tab["n_pixels"].iloc[0] == disk.sum()
    assert tab["lambda_atom"].iloc[0] == pytest.approx(lam_a)


def test_raw_p_value_is_uniform_without_selection():
    g = np.random.default_rng(2)
    n, lam_v, lam_a = 21, 1.3, 2.0
    k = g.poisson(n * lam_v, size=20000)
    stat = (k / n) * np.log(lam_a / lam_v) - (lam_a - lam_v)
    p = raw_p_value(stat, n, lam_a, lam_v, tie=g.uniform(size=k.size))
    for a in (0.01, 0.05, 0.1, 0.5):
        assert abs(np.mean(p <= a) - a) < 4 * np.sqrt(a * (1 - a) / k.size)
    # dark columns: small counts are atom-like
    p_dark = raw_p_value((k / n) * np.log(0.5 / lam_v) - (0.5 - lam_v), n, 0.5, lam_v)
    assert p_dark[np.argmin(k)] < p_dark[np.argmax(k)]


def test_calibrated_false_alarm_rate_on_pure_vacuum_matches_nominal(tmp_path):
    g_fit, g_held = np.random.default_rng(10), np.random.default_rng(11)
    find_kw = {"pixel_size_A": 0.2, "min_sigma_A": 0.3, "max_sigma_A": 0.6, "threshold": 0.05}

    def den(c, d):
        return gaussian(c, d, 1.5)

    fit = pd.concat([vacuum_detections(den, d, (64, 64), 25, g_fit, find_kw, 2.5)
                     for d in (0.5, 2.0)])
    held = pd.concat([vacuum_detections(den, d, (64, 64), 25, g_held, find_kw, 2.5)
                      for d in (0.5, 2.0)])
    cal = Calibration.fit(fit)
    assert len(cal.lambda_vac_bins) == 2
    far = held_out_report(cal, held, [0.9, 0.95, 0.99])
    calib = far[far["kind"] == "calibrated"]
    raw = far[far["kind"] == "raw"]
    # within sampling error (3 s.e.) and within the ±2 pp target
    assert ((calib["observed"] - calib["alpha"]).abs() <= 3 * calib["se"] + 0.005).all()
    assert calib["within_2pp"].all()
    # the uncalibrated Poisson p-value is anti-conservative for spurious detections
    assert (raw["observed"] > raw["alpha"] + 0.02).all()
    # round trip through JSON gives the same p-values
    cal.save(tmp_path / "cal.json")
    back = Calibration.load(tmp_path / "cal.json")
    args = (held["llr"], held["n_pixels"], held["lambda_atom"], held["lambda_vac"])
    assert np.allclose(back.p_value(*args), cal.p_value(*args))
    assert np.allclose(cal.confidence(*args), 1 - cal.p_value(*args))


def test_calibration_errors(tmp_path):
    with pytest.raises(InputError):
        Calibration.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError):
        Calibration.load(tmp_path / "bad.json")
    with pytest.raises(InputError):
        Calibration.fit(pd.DataFrame({"lambda_vac": [], "u": []}))
    with pytest.raises(InputError):
        likelihood_table(np.ones((4, 4)), np.ones((5, 5)), pd.DataFrame({"x_px": [1.0],
                                                                          "y_px": [1.0]}), 1.0)


# -- detector DQE -----------------------------------------------------------------------------
DQE = 0.7


def test_dqe_counts_need_effective_poisson_counts_for_a_uniform_tail():
    """Disks at fixed places in vacuum (no selection) on counts of a detector with DQE 0.7
    (variance/mean 1/0.7): the raw tail probability is uniform on the effective Poisson
    counts (x DQE) and anti-conservative on the counts as recorded."""
    g = np.random.default_rng(20)
    lam_v = 3.0
    yy, xx = np.mgrid[4:H - 4:6, 4:W - 4:6]
    cols = pd.DataFrame({"x_px": xx.ravel().astype(float), "y_px": yy.ravel().astype(float)})
    den = np.full((H, W), 1.3 * lam_v)  # every disk looks like a bright atom
    us: dict[float, list[np.ndarray]] = {DQE: [], 1.0: []}
    for _ in range(24):
        counts = detector_counts(np.full((H, W), lam_v), g, DQE)
        for q in us:
            tab = with_random_ties(likelihood_table(counts, den, cols, 2.0, lambda_vac=lam_v,
                                                    dqe=q), g)
            us[q].append(tab["u"].to_numpy())
    u_ok, u_naive = np.concatenate(us[DQE]), np.concatenate(us[1.0])
    assert u_ok.size > 5000
    for a in (0.01, 0.05, 0.1):
        se = np.sqrt(a * (1 - a) / u_ok.size)
        assert abs(np.mean(u_ok <= a) - a) < 4 * se
        assert np.mean(u_naive <= a) > a + 8 * se  # overdispersed: too many small u
    tab = likelihood_table(counts, den, cols, 2.0, lambda_vac=lam_v, dqe=DQE)
    assert np.allclose(tab["lambda_vac"], DQE * lam_v)
    assert np.allclose(tab["lambda_atom"], DQE * 1.3 * lam_v)
    with pytest.raises(InputError, match="DQE"):
        likelihood_table(counts, den, cols, 2.0, lambda_vac=lam_v, dqe=1.5)


def test_calibrated_coverage_holds_on_dqe_counts_only_with_the_correction():
    """A calibration fitted on Poisson vacuum at the effective dose (DQE x dose), applied to
    spurious detections in the vacuum of a DQE-0.7 detector: the false-alarm rate is nominal
    on effective counts and too high on the counts as recorded."""
    find_kw = {"pixel_size_A": 0.2, "min_sigma_A": 0.3, "max_sigma_A": 0.6, "threshold": 0.05}

    def den(c, d):
        return gaussian(c, d, 1.5)

    dose = 2.0
    cal = Calibration.fit(vacuum_detections(den, DQE * dose, (64, 64), 40,
                                            np.random.default_rng(21), find_kw, 2.5))
    g = np.random.default_rng(22)
    held: dict[float, list[pd.DataFrame]] = {DQE: [], 1.0: []}
    for _ in range(40):
        counts = detector_counts(np.full((64, 64), dose), g, DQE)
        est = den(counts, dose) * dose
        cols = find_columns(est, **find_kw)
        for q in held:
            held[q].append(with_random_ties(likelihood_table(
                counts, est, cols, 2.5, vacuum_mask=np.ones((64, 64), bool), dqe=q), g))
    levels = [0.9, 0.95, 0.99]
    ok = held_out_report(cal, pd.concat(held[DQE]), levels)
    naive = held_out_report(cal, pd.concat(held[1.0]), levels)
    ok, naive = ok[ok["kind"] == "calibrated"], naive[naive["kind"] == "calibrated"]
    assert ok["n"].iloc[0] > 500
    assert ((ok["observed"] - ok["alpha"]).abs() <= 3 * ok["se"] + 0.005).all()
    assert (naive["observed"] > naive["alpha"] + 3 * naive["se"]).all()


def test_apply_uses_the_configured_detector_dqe():
    """``apply.preprocess.detector_dqe`` reaches the per-frame likelihood of etem apply: the
    same frame scored as effective Poisson counts (everything x DQE)."""
    from etem.config import load_config
    from etem.movies.frame_analysis import frame_columns

    g = np.random.default_rng(23)
    dose = 2.0
    clean = 1.0 + _blob(30, 40) + _blob(60, 50)
    counts = detector_counts(clean * dose, g, DQE)
    zero = np.zeros(2)
    tabs = [frame_columns(load_config(None, {"tracking.enabled": False,
                                             "apply.preprocess.detector_dqe": q}),
                          0, clean, counts, dose, zero, None, 0.2, "bright")
            for q in (1.0, DQE)]
    assert len(tabs[0]) == len(tabs[1]) >= 2
    assert tabs[1]["lambda_vac"].to_numpy() == pytest.approx(DQE * tabs[0]["lambda_vac"])
    assert tabs[1]["counts_sum"].to_numpy() == pytest.approx(DQE * tabs[0]["counts_sum"])
