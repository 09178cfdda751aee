"""Accumulating evidence (windowed GLR): calibration, onsets, noise models, the event table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from etem.config import load_config
from etem.movies.events import detect_frame_events
from etem.movies.evidence import (
    detect_glr,
    fano_factor,
    fit_noise_model,
    glr_scan,
    hampel,
    long_run_sigma,
    mad_sigma,
    split_variance,
)


def test_glr_scan_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    g, split = glr_scan(x, 12)
    t = 30
    w = x[t - 11 : t + 1, 1]
    ll = [(j * (12 - j) / 12 * (w[:j].mean() - w[j:].mean()) ** 2 / 2, t - 11 + j)
          for j in range(2, 11)]
    best = max(ll)
    assert g[t, 1] == pytest.approx(best[0]) and split[t, 1] == best[1]


def test_false_alarms_at_nominal_rate_on_stable_series() -> None:
    """White noise and Poisson region counts, 12,000 frames: alarms near 1 per 1,000 frames
    (no stable leading stretch assumed)."""
    rng = np.random.default_rng(7)
    n_alarms, frames = 0, 0
    for _ in range(4):
        t = 3000
        stats = pd.DataFrame({
            "frame": np.arange(t),
            "n_columns": rng.normal(100, 3, t),
            "mean_intensity": rng.normal(2, 0.1, t),
        })
        regions = rng.poisson(128, (t, 16)).astype(float)
        r = detect_glr(stats, regions, 1.0)
        n_alarms += len(r.alarms)
        frames += t
    assert 1000 * n_alarms / frames <= 2.0


def test_persistent_step_gains_significance_with_onset_interval() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(100, 3, 60)
    x[30:] -= 4.5  # 1.5 sigma from frame 30 on
    r = detect_glr(pd.DataFrame({"frame": np.arange(60), "n_columns": x}), None, 1.0)
    assert len(r.alarms) == 1
    a = r.alarms[0]
    assert a.onset_lo <= 30 <= a.onset_hi and abs(a.onset_frame - 30) <= 1
    assert a.direction == -1 and a.significance > 1.5
    # the evidence grows frame after frame after the change
    sc = r.scores["glr_n_columns"].to_numpy()
    assert sc[45] > sc[36] > sc[31]
    # a change from the first frames on needs no stable leading stretch
    y = rng.normal(100, 3, 60)
    y[10:] += 6
    r2 = detect_glr(pd.DataFrame({"frame": np.arange(60), "n_columns": y}), None, 1.0)
    assert [a.onset_lo <= 10 <= a.onset_hi for a in r2.alarms] == [True]


def test_noise_models() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 2.0, 4000)
    assert mad_sigma(x) == pytest.approx(2.0, rel=0.05)
    x_step = x.copy()
    x_step[2000:] += 50  # a step is one outlier among the differences
    assert mad_sigma(x_step) == pytest.approx(2.0, rel=0.05)
    # a wandering series: the long-run scale grows
    walk = x + np.repeat(rng.normal(0, 3.0, 400), 10)
    assert long_run_sigma(walk) > 1.5 * mad_sigma(walk)
    counts = rng.poisson(50, (500, 8)).astype(float)
    assert fano_factor(counts) == pytest.approx(1.0, abs=0.1)
    assert fano_factor(3 * counts) == pytest.approx(3.0, rel=0.1)  # a gain of 3


def test_event_table_has_onset_interval_kind_region_significance() -> None:
    cfg = load_config(None, {"tracking.enabled": False})
    rng = np.random.default_rng(5)
    t = 60
    stats = pd.DataFrame({"frame": np.arange(t)})
    for k in cfg.apply.events.statistics:
        stats[k] = rng.normal(10, 1, t)
    for k in ("rotation_deg", "shift_x_A", "shift_y_A"):
        stats[k] = rng.normal(0, 0.3, t)
    stats["mean_intensity"] = rng.normal(10, 1, t)
    stats["rotation_deg"] = stats["rotation_deg"] + np.where(np.arange(t) >= 36, 4.0, 0.0)
    regions = rng.poisson(200, (t, 16)).astype(float)
    boxes = [(0, 10, 0, 10)] * 16
    ev = detect_frame_events(cfg.apply.events, stats, regions, boxes, None, 0.5).events
    assert len(ev) == 1, ev
    e = ev.iloc[0]
    assert e["kind"] == "rotation" and e["onset_lo_frame"] <= 36 <= e["onset_hi_frame"]
    assert abs(e["onset_frame"] - 36) <= 1 and e["significance"] > 2
    assert e["onset_time_s"] == pytest.approx(e["onset_frame"] * 0.5)
    assert {"region", "statistic", "method", "threshold", "score"} <= set(ev.columns)


def _ar1(rng: np.random.Generator, t: int, phi: float, n: int) -> np.ndarray:
    e = rng.standard_normal((t, n))
    zi = phi * rng.standard_normal((1, n))
    return lfilter([np.sqrt(1 - phi**2)], [1, -phi], e, axis=0, zi=zi)[0]


def test_false_alarms_at_or_below_nominal_with_slow_wander() -> None:
    """Stable series that wander (white noise + 30 % AR(1) of coefficient 0.97, like the
    statistics of tracks), 5,000 frames x 5 series: at most the nominal 1 alarm per 1,000
    frames (a white-noise scale with a white-noise threshold gives about 29 per 1,000 on
    these series)."""
    rng = np.random.default_rng(2026)
    n_alarms, frames = 0, 0
    for _ in range(2):
        t = 2500
        x = np.sqrt(0.7) * rng.standard_normal((t, 5)) + np.sqrt(0.3) * _ar1(rng, t, 0.97, 5)
        stats = pd.DataFrame({"frame": np.arange(t)})
        names = [f"s{j}" for j in range(5)]
        for j, name in enumerate(names):
            stats[name] = 10 + 2 * x[:, j]
        r = detect_glr(stats, None, 1.0, names=names)
        assert all("AR(1) wander" in m for m in r.noise_model.values()), r.noise_model
        n_alarms += len(r.alarms)
        frames += t
    assert 1000 * n_alarms / frames <= 1.2


def test_noise_model_bounds_the_wander_and_resists_a_step() -> None:
    """The fitted model's variance of a balanced split: right for short splits, an upper
    bound (within about 2x) for the long ones; a step is not taken for wander (a plain
    variance of the 48-frame block differences would be about 8x that of white noise)."""
    rng = np.random.default_rng(4)
    t = 3000
    w = np.sqrt(0.7) * rng.standard_normal(t) + np.sqrt(0.3) * _ar1(rng, t, 0.95, 1)[:, 0]
    m = fit_noise_model(3 * w)
    assert "AR(1) wander" in m.name
    v = split_variance(100, m.wander, m.phi) * m.sigma**2 / 9
    true = split_variance(100, 0.3, 0.95)
    assert v[2, 2] == pytest.approx(true[2, 2], rel=0.1)
    assert 0.9 * true[50, 50] <= v[50, 50] <= 3 * true[50, 50]
    white = rng.standard_normal(t)
    white[1500:] += 3.0  # one event: a step of 3 sigma
    m = fit_noise_model(white)
    v50 = split_variance(100, m.wander, m.phi)[50, 50] * m.sigma**2
    assert v50 <= 2.5 * (2 / 50) and m.sigma == pytest.approx(1.0, rel=0.1)
    # short series: white noise, long-run scale
    assert fit_noise_model(white[:100]).name.startswith("white, long-run")


def test_split_variance_matches_covariance() -> None:
    v = split_variance(20, 0.4, 0.9)
    cov = lambda k: 1.0 if k == 0 else 0.4 * 0.9**k  # noqa: E731
    for n1, n2 in ((2, 3), (7, 11), (20, 5)):
        a = np.array([[cov(abs(i - j)) for j in range(n1 + n2)] for i in range(n1 + n2)])
        wt = np.r_[np.ones(n1) / n1, -np.ones(n2) / n2]
        assert v[n1, n2] == pytest.approx(wt @ a @ wt)
    assert split_variance(20)[4, 5] == pytest.approx(1 / 4 + 1 / 5)


def test_one_frame_outlier_makes_no_alarm() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(100, 3, 300)
    x[150] += 40  # 13 sigma in one frame (a detection glitch)
    r = detect_glr(pd.DataFrame({"frame": np.arange(300), "n_columns": x}), None, 1.0)
    assert r.alarms == []
    z = np.zeros(20)
    z[10:] = 5.0
    assert np.array_equal(hampel(z), z)  # a step is kept
