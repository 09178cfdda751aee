"""Building blocks of the movie stage: tiling, drift correction, binning, tracking, events."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from etem.frames.preprocess import DriftCorrector, bin_frames, shift_integer, sum_frames
from etem.models.inference import TiledRunner, tile_starts
from etem.models.io import LoadedModel
from etem.movies.events import (
    NULL_GAUSSIAN,
    NULL_SIMULATED,
    detect_events,
    ewma_series,
    innovation_threshold_factor,
    persistent_score,
)
from etem.movies.evidence import NoiseModel, simulate_noise
from etem.testing import lattice_movie
from tests.movies_fixtures import BlurDenoiser


@pytest.mark.parametrize(
    ("n", "tile", "overlap"), [(100, 32, 8), (64, 64, 8), (20, 32, 8), (257, 64, 16)]
)
def test_tiles_cover_with_overlap(n: int, tile: int, overlap: int) -> None:
    starts = tile_starts(n, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, n) >= n
    for a, b in itertools.pairwise(starts):
        assert a + tile - b >= overlap


def test_tiled_inference_equals_whole_frame() -> None:
    """Seams in the middle of overlaps wider than the receptive field leave no trace."""
    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, (3, 1, 90, 70)).astype(np.float32)
    model = LoadedModel(BlurDenoiser(1.5, multiple=4), {"kind": "denoiser"})
    whole = TiledRunner(model, tile_px=256, overlap_px=0, batch_size=1, precision="fp32").run(x)
    tiled = TiledRunner(model, tile_px=32, overlap_px=16, batch_size=5, precision="fp32").run(x)
    assert tiled.shape == x.shape
    # the reflect padding to a multiple of 4 only touches the last rows/columns
    np.testing.assert_allclose(tiled[..., :84, :64], whole[..., :84, :64], rtol=1e-5, atol=1e-5)
    # callable input (frame-by-frame construction) gives the same result
    again = TiledRunner(model, tile_px=32, overlap_px=16, batch_size=3, precision="fp32").run(
        lambda i: x[i], n=3
    )
    np.testing.assert_array_equal(again, tiled)


def test_binning_and_summing_conserve_counts() -> None:
    a = np.random.default_rng(1).poisson(1.0, (6, 10, 12)).astype(np.float32)
    b = bin_frames(a, 2)
    assert b.shape == (6, 5, 6) and b.sum() == a.sum()
    s = sum_frames(a, 3)
    assert s.shape == (2, 10, 12) and s.sum() == a.sum()
    assert sum_frames(a, 4).shape[0] == 1  # incomplete trailing group dropped


def test_split_counts_keeps_poisson_statistics() -> None:
    """Splitting Poisson(4) counts over 2x2 pixels gives Poisson(1): mean = variance = 1."""
    from etem.frames.preprocess import split_counts

    a = np.random.default_rng(2).poisson(4.0, (200, 200)).astype(np.float32)
    b = split_counts(a, 2, seed=0, t=0)
    assert b.shape == (400, 400) and b.sum() == a.sum()
    assert b.mean() == pytest.approx(1.0, abs=0.01) and b.var() == pytest.approx(1.0, abs=0.02)
    # neighbouring sub-pixels are uncorrelated (unlike replication or interpolation)
    assert abs(np.corrcoef(b[:, 0::2].ravel(), b[:, 1::2].ravel())[0, 1]) < 0.02
    np.testing.assert_array_equal(b, split_counts(a, 2, seed=0, t=0))  # seeded
    # each block of 2x2 holds exactly the original count
    np.testing.assert_array_equal(b.reshape(200, 2, 200, 2).sum(axis=(1, 3)), a)


def test_integer_shift_moves_content() -> None:
    a = np.zeros((10, 10), np.float32)
    a[4, 5] = 1
    b = shift_integer(a, 2, -3)
    assert b[6, 2] == 1 and b.sum() == 1


@pytest.mark.parametrize(("dose", "tol"), [(None, 0.05), (2.0, 0.5)])
def test_drift_correction_recovers_drift(dose: float | None, tol: float) -> None:
    lm = lattice_movie(
        n_frames=20,
        size_px=96,
        event_frame=None,
        drift_px_per_frame=0.37,
        dose_e_per_px_per_frame=dose or 1.0,
        seed=3,
    )
    frames = lm.clean if dose is None else lm.counts.astype(np.float32)
    corr = DriftCorrector()
    drift = np.array([corr(f)[1] for f in frames])
    truth = 0.37 * np.arange(20)
    assert np.abs(drift - truth[:, None]).max() < tol
    # aligned frames: the lattice no longer moves (to within half a pixel)
    aligned = [corr(f)[0] for f in frames[:1]]
    assert aligned[0].shape == frames[0].shape


def _stats(n: int, step_at: int | None, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(100, 2, n)
    b = rng.normal(0.1, 0.01, n)
    if step_at is not None:
        a[step_at:] -= 15
        b[step_at:] += 0.08
    return pd.DataFrame({"n_columns": a, "dissimilarity": b})


def test_event_found_at_step() -> None:
    for mode in ("whole_movie", "leading_frames"):
        res = detect_events(
            _stats(60, 40, 0), alpha=0.1, false_alarm_rate=0.01, calibration_frames=20,
            calibration=mode,
        )
        assert len(res.events) == 1
        assert res.events["onset_frame"].iloc[0] == 40


@pytest.mark.parametrize("mode", ["whole_movie", "leading_frames"])
@pytest.mark.parametrize("far", [0.01, 0.05])
def test_false_alarm_rate_on_stable_movies(far: float, mode: str) -> None:
    """Event onsets per frame after calibration, over many stable series, stay <= the target."""
    onsets = frames = 0
    for seed in range(150):
        res = detect_events(
            _stats(60, None, seed), alpha=0.1, false_alarm_rate=far, calibration_frames=20,
            calibration=mode,
        )
        onsets += len(res.events)
        frames += 60 - res.calibration_frames
    assert onsets / frames <= far
    # Bonferroni over 2 statistics x (innovation, derivative); scores are Gaussian-equivalent z
    assert res.threshold >= norm.isf(far / (2 * 4)) > (3.0 if far == 0.01 else 2.45)
    assert res.calibration == ("whole-movie robust" if mode == "whole_movie" else "leading frames")


def test_whole_movie_calibration_needs_no_stable_lead_in() -> None:
    """Issue 15: a change inside the first 20 frames. Calibrated on them, the detector reports
    neither it nor a later one of the same size (its scales and threshold come from the
    change); calibrated robustly over the whole movie, it finds both within +-1 frame."""
    for seed in range(5):
        s = _stats(60, None, seed)
        s.loc[8:, "n_columns"] -= 15  # a first step at frame 8, inside the old stretch
        s.loc[40:, "n_columns"] -= 15
        old = detect_events(s, calibration_frames=20, calibration="leading_frames")
        assert old.events.empty
        new = detect_events(s, calibration="whole_movie")
        assert new.calibration_frames == 0 and new.calibration == "whole-movie robust"
        onsets = new.events["onset_frame"].to_numpy()
        assert len(onsets) == 2 and abs(onsets[0] - 8) <= 1 and abs(onsets[1] - 40) <= 1
        # the scale of the column count's innovations left the changes out
        sc = new.noise_scales["n_columns_ewma"]
        assert sc["n_values"] < 59 and 1.0 < sc["sigma"] < 3.5  # sigma 2, e: 2 sqrt(2/1.9)


def test_whole_movie_false_alarms_without_a_representative_lead_in() -> None:
    """Stable movies whose first 20 frames are quieter than the rest (the noise settles in):
    calibrated on them, the detector raises false alarms far above the nominal rate; over the
    whole movie it stays at or below it."""
    far = 0.01
    counts = {"leading_frames": 0, "whole_movie": 0}
    frames = {"leading_frames": 0, "whole_movie": 0}
    for seed in range(60):
        s = _stats(120, None, seed)
        s.iloc[:20] = s.iloc[:20] - (s.iloc[:20] - s.iloc[20:].mean()) * 0.75  # quieter lead-in
        for mode in counts:
            res = detect_events(s, false_alarm_rate=far, calibration_frames=20, calibration=mode)
            counts[mode] += len(res.events)
            frames[mode] += 120 - res.calibration_frames
    assert counts["whole_movie"] / frames["whole_movie"] <= far
    assert counts["leading_frames"] >= 50  # nearly every movie raises a false alarm


def test_simulated_null_holds_the_false_alarm_rate_under_wander() -> None:
    """Issue 15: long stable movies whose statistics wander (white + AR(1), as the fitted
    noise model of frame statistics usually is): the Gaussian threshold's innovation
    exceedances come in runs that pass the persistence rule, giving several times the false
    alarms of white noise; the threshold simulated under the fitted model keeps them at
    white noise's (the nominal the Gaussian threshold and the persistence rule give)."""
    counts = {"white": 0, "gaussian": 0, "simulated": 0}
    for seed in range(20):
        white = pd.DataFrame(simulate_noise(2000, 3, seed=seed), columns=list("abc"))
        wander = pd.DataFrame(simulate_noise(2000, 3, 1.0, 0.5, seed=seed), columns=list("abc"))
        counts["white"] += len(detect_events(white).events)
        counts["gaussian"] += len(detect_events(wander, simulated_null=False).events)
        res = detect_events(wander)
        counts["simulated"] += len(res.events)
    assert counts["gaussian"] >= 3 * counts["white"] > 0
    assert counts["simulated"] <= counts["white"]
    assert res.null == NULL_SIMULATED
    sc = res.noise_scales["a_ewma"]
    assert sc["threshold_factor"] > 1.0 and "AR(1)" in sc["noise_model"]
    assert "threshold_factor" not in res.noise_scales["a_diff"]


def test_simulated_null_factor_and_short_movies() -> None:
    """White noise keeps the Gaussian threshold (factor 1), wander raises it, more with
    stronger wander; movies shorter than the model fit keep the Gaussian null."""
    rate, f = 0.01 / 12, innovation_threshold_factor
    assert f(NoiseModel(1.0), 0.1, 1000, rate, 2, 2) == 1.0
    weak = f(NoiseModel(1.0, 0.3, 0.5), 0.1, 1000, rate, 2, 2)
    strong = f(NoiseModel(1.0, 1.0, 0.5), 0.1, 1000, rate, 2, 2)
    assert 1.0 <= weak < strong
    assert strong == f(NoiseModel(1.0, 1.0, 0.5), 0.1, 1000, rate, 2, 2)  # fixed seed
    # persistence: a frame scores the smaller of its value and the best of the 3 before it
    z = np.array([[0.0], [5.0], [0.0], [0.0], [4.0], [1.0]])
    assert persistent_score(z, 2, 2)[:, 0].tolist() == [0.0, 0.0, 0.0, 0.0, 4.0, 1.0]
    assert persistent_score(z, 1, 2)[:, 0].tolist() == z[:, 0].tolist()
    short = detect_events(pd.DataFrame(simulate_noise(150, 2, 1.0, 0.5), columns=["a", "b"]))
    assert short.null == NULL_GAUSSIAN
    assert "threshold_factor" not in short.noise_scales["a_ewma"]


def test_whole_movie_warm_up_and_short_movies() -> None:
    """The first innovations (an EWMA of few frames) are scaled to the steady state's; a
    short movie's step is found without any calibration stretch."""
    e, d, warm = ewma_series(np.arange(6, dtype=float), 0.1)
    assert np.isnan(e[0]) and e[1] == d[1] == 1.0
    assert warm[1] == pytest.approx(np.sqrt(2 / (2 / 1.9)))
    assert np.all(np.diff(warm[1:]) < 0) and warm[-1] > 1
    res = detect_events(_stats(16, 8, 0))
    assert res.events["onset_frame"].tolist() == [8]


def test_single_frame_outlier_is_not_an_event() -> None:
    s = _stats(60, None, 2)
    s.loc[45, "n_columns"] -= 30  # detection glitch in one frame
    assert detect_events(s, calibration_frames=20).events.empty
    assert len(detect_events(s, calibration_frames=20, min_frames=1).events) == 1


def test_glitch_bridged_to_a_step_does_not_set_the_onset() -> None:
    s = _stats(60, 40, 0)
    s.loc[35, "n_columns"] -= 30  # one-frame glitch shortly before a real step
    # (the onset rule is the same for both calibrations; the leading one sets this series'
    # threshold where the glitch's drag on the EWMA stays below it)
    res = detect_events(s, calibration_frames=20, calibration="leading_frames")
    sc, th = res.scores["score"].to_numpy(), res.threshold
    assert sc[35] > th  # the glitch crosses the threshold ...
    # ... and the hysteresis (half the threshold, gaps <= merge_gap) bridges it to the step
    assert all(any(sc[v] > 0.5 * th for v in range(u, u + 3)) for u in range(36, 40))
    assert len(res.events) == 1 and res.events["onset_frame"].iloc[0] == 40


def test_short_movie_has_no_events_after_a_leading_calibration() -> None:
    res = detect_events(_stats(10, 5, 0), calibration_frames=20, calibration="leading_frames")
    assert res.events.empty and res.calibration_frames == 10


def test_a_movie_too_short_for_event_statistics_says_so_in_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    """Two frames leave every statistic without a noise scale: one warning naming them all
    (and how many values each had), no event."""
    stats = pd.DataFrame({"n_columns": [10.0, 11.0], "change": [np.nan, 0.2]})
    with caplog.at_level("WARNING", logger="etem.movies.events"):
        res = detect_events(stats)
    lines = [r.getMessage() for r in caplog.records if "not scored" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "n_columns (" in lines[0] and "change (" in lines[0] and "2 frames" in lines[0]
    assert res.events.empty
