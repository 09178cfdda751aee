"""Denoiser selection by uPSNR on the movie itself (etem.movies.selection)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from etem.analysis.baselines import WIENER_ALPHA, WIENER_SMOOTH_PX, wiener, wiener_sure_choice
from etem.analysis.matching import detection_metrics
from etem.config import ColumnsConfig
from etem.config.apply import InferenceConfig, uses_network
from etem.errors import InputError
from etem.movies.prepare import score_and_choose, unscored_choice
from etem.movies.selection import (
    CLASSICAL,
    GAUSSIAN_SIGMAS_PX,
    SURE_FRAMES,
    WIENER_ALPHAS,
    WIENER_SMOOTHS_PX,
    ColumnCheck,
    best_candidate,
    classical_filter,
    column_reference,
    frames_needed,
    gaussian_denoise,
    hurting,
    score_candidates,
    target_frames,
    umse_targets,
    wiener_denoise,
)
from etem.testing import lattice_movie, particle_movie

DOSE = 0.5


@pytest.fixture(scope="module")
def static_movie() -> tuple[np.ndarray, np.ndarray]:
    m = lattice_movie(n_frames=24, size_px=128, dose_e_per_px_per_frame=DOSE, event_frame=None,
                      seed=3)
    assert m.counts is not None
    return m.clean, m.counts.astype(np.float32) / DOSE


def test_targets_stay_inside_segments() -> None:
    assert frames_needed(2) == 8
    assert target_frames(7, 2) == []
    assert target_frames(8, 2) == [3]
    # a break at frame 10 starts a new segment: no quartet t-3..t+4 may contain 9 and 10
    ts = target_frames(40, 2, breaks=[10], max_targets=100)
    assert ts and all(not (t - 3 < 10 <= t + 4) for t in ts)
    assert len(target_frames(400, 2, max_targets=8)) == 8


def test_raw_umse_is_the_poisson_variance_and_unbiased(static_movie) -> None:
    clean, noisy = static_movie
    targets = target_frames(len(noisy), 2)
    raw = umse_targets(lambda t: noisy[t], noisy, targets, 2)
    # noise of counts/dose: variance = clean / dose per pixel
    expected = float(clean.mean() / DOSE)
    assert raw.umse == pytest.approx(expected, rel=0.05)
    true_raw = float(np.mean([(noisy[t] - clean[t]) ** 2 for t in targets]))
    assert abs(raw.umse - true_raw) < 3 * raw.se + 0.02 * true_raw
    # a Gaussian filter: uMSE within a few standard errors of its true MSE
    g = lambda t: ndimage.gaussian_filter(noisy[t], 1.5)  # noqa: E731
    est = umse_targets(g, noisy, targets, 2)
    true = float(np.mean([(g(t) - clean[t]) ** 2 for t in targets]))
    assert abs(est.umse - true) < 4 * est.se + 0.05 * true


def test_ranking_oracle_first_and_a_hurting_network_flagged(static_movie) -> None:
    clean, noisy = static_movie
    targets = target_frames(len(noisy), 2)
    flat = float(clean.mean())
    networks = {
        "oracle": lambda t: clean[t],
        # a network that erases the lattice (what a denoiser out of its domain did)
        "eraser": lambda t: np.full_like(noisy[t], flat),
    }
    scores = score_candidates(networks, noisy, targets, 2, dose_e_per_px=DOSE)
    assert list(scores.candidate[:3]) == ["oracle", "wiener", "gaussian"]
    by = scores.set_index("candidate")
    assert by.loc["gaussian", "gain_dB"] > 3  # smoothing helps at 0.5 e/px
    assert by.loc["raw", "gain_dB"] == pytest.approx(0.0)
    assert by.loc["gaussian", "sigma_px"] in GAUSSIAN_SIGMAS_PX
    assert best_candidate(scores) == "oracle"
    # at 0.5 e/px even a flat image beats the raw frame; the Gaussian filter beats both
    assert best_candidate(scores, allowed=["eraser", "gaussian"]) == "gaussian"
    # the warning names the best classical candidate that beats it
    assert "eraser" in hurting(scores, "eraser") and "'wiener'" in hurting(scores, "eraser")
    assert hurting(scores, "oracle") == ""


def test_wiener_beats_the_gaussian_on_a_lattice(static_movie) -> None:
    """A lattice's power is in its Bragg peaks: the Wiener filter keeps them above the noise
    and beats every Gaussian width, by uMSE and against the clean frames alike."""
    clean, noisy = static_movie
    targets = target_frames(len(noisy), 2)
    scores = score_candidates({}, noisy, targets, 2, dose_e_per_px=DOSE)
    assert set(scores.candidate) == set(CLASSICAL)
    by = scores.set_index("candidate")
    assert np.isfinite(by.loc["wiener", "umse"]) and np.isfinite(by.loc["wiener", "upsnr_dB"])
    assert by.loc["wiener", "wiener_alpha"] in WIENER_ALPHAS
    assert by.loc["wiener", "wiener_smooth_px"] in WIENER_SMOOTHS_PX
    assert np.isnan(by.loc["wiener", "sigma_px"]) and np.isnan(by.loc["gaussian", "wiener_alpha"])
    assert np.isnan(by.loc["gaussian", "wiener_smooth_px"])
    assert by.loc["wiener", "umse"] < by.loc["gaussian", "umse"]
    # the reported pair is the best of the whole (alpha, smoothing) grid
    grid = {(a, s): umse_targets(lambda t, f=wiener_denoise(a, DOSE, 1.0, s): f(noisy[t]),
                                 noisy, targets, 2).umse
            for a in WIENER_ALPHAS for s in WIENER_SMOOTHS_PX}
    assert min(grid, key=grid.__getitem__) == (by.loc["wiener", "wiener_alpha"],
                                               by.loc["wiener", "wiener_smooth_px"])
    assert by.loc["wiener", "umse"] == pytest.approx(min(grid.values()))

    def true_mse(name: str) -> float:
        f = classical_filter(name, DOSE, by.loc["gaussian", "sigma_px"],
                             by.loc["wiener", "wiener_alpha"], 1.0,
                             int(by.loc["wiener", "wiener_smooth_px"]))
        return float(np.mean([np.mean((f(noisy[t]) - clean[t]) ** 2) for t in targets]))

    assert true_mse("wiener") < 0.6 * true_mse("gaussian")
    # auto's choice is closer to the clean frames than the raw frames
    assert true_mse(best_candidate(scores)) < 0.1 * true_mse("raw")


def test_classical_filter_is_the_wiener_of_the_counts(static_movie) -> None:
    _, noisy = static_movie
    frame = noisy[5]  # intensity: counts / dose
    got = classical_filter("wiener", DOSE, wiener_alpha=2.0, dqe=0.5)(frame)
    want = wiener(frame * DOSE, DOSE, 2.0, WIENER_SMOOTH_PX, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # a lower DQE means more noise power: more is filtered away
    poisson = classical_filter("wiener", DOSE, wiener_alpha=2.0)(frame)
    assert np.var(got) < np.var(poisson)
    np.testing.assert_array_equal(classical_filter("raw", DOSE)(frame), frame)
    with pytest.raises(InputError, match="not a classical denoiser"):
        classical_filter("supervised", DOSE)


def test_hurting_message_names_an_error_below_the_noise() -> None:
    """A Wiener filter on a clean lattice can score uMSE <= 0 (uPSNR NaN): said in words."""
    t = pd.DataFrame({"candidate": ["wiener", "unsupervised", "raw"],
                      "umse": [-0.01, 0.05, 2.0], "upsnr_dB": [float("nan"), 20.0, 8.0]})
    msg = hurting(t, "unsupervised")
    assert "below 'wiener'" in msg and "uMSE <= 0" in msg and "nan" not in msg
    assert "denoising hurts" not in msg  # a better filter, not worse than no denoising
    assert "denoising hurts here" in hurting(t[t.candidate != "wiener"].assign(
        umse=[3.0, 2.0]), "unsupervised")


def test_no_target_is_one_clear_error(static_movie) -> None:
    _, noisy = static_movie
    with pytest.raises(InputError, match="too short"):
        umse_targets(lambda t: noisy[t], noisy[:6], target_frames(6, 2), 2)


def test_auto_chooses_only_among_its_candidates() -> None:
    """``apply.inference.auto_candidates``: the best allowed candidate, not the best scored;
    none allowed is one error line naming the key."""
    t = pd.DataFrame({"candidate": ["wiener", "gaussian", "raw"], "umse": [0.1, 0.2, 0.9]})
    assert best_candidate(t) == "wiener"
    assert best_candidate(t, ["raw", "gaussian", "supervised"]) == "gaussian"
    with pytest.raises(InputError, match="auto_candidates"):
        best_candidate(t, ["supervised"])


# --- column agreement (the columns a candidate lets the analysis find) ---------------------

def _truth_recall(m, frame: np.ndarray, t: int, check: ColumnCheck, polarity: str) -> float:
    p = np.asarray(m.columns[t]) * m.pixel_size_A
    truth = pd.DataFrame({"x_A": p[:, 0], "y_A": p[:, 1]})
    return detection_metrics(check.find(frame, polarity), truth, 0.5)["recall"]


@pytest.fixture(scope="module")
def particle() -> tuple[object, np.ndarray]:
    """A sparse particle in vacuum at 0.5 e/px: a wide Gaussian has the lowest uMSE and
    erases the columns (benchmarks/selection.md)."""
    m = particle_movie(n_frames=24, size_px=96, event=None, dose_e_per_px_per_frame=DOSE,
                       seed=11)
    assert m.counts is not None
    return m, m.counts.astype(np.float32) / DOSE


def test_columns_keep_the_gaussian_from_erasing_a_particle(particle) -> None:
    m, noisy = particle
    targets = target_frames(len(noisy), 0)
    check = ColumnCheck(ColumnsConfig(), m.pixel_size_A)
    by_umse = score_candidates({}, noisy, targets, 0, dose_e_per_px=DOSE).set_index("candidate")
    assert by_umse.loc["gaussian", "sigma_px"] >= 4  # uMSE alone: the columns blur away
    assert np.isnan(by_umse.loc["gaussian", "column_f1"])
    scores = score_candidates({}, noisy, targets, 0, dose_e_per_px=DOSE, columns=check)
    by = scores.set_index("candidate")
    sigma = by.loc["gaussian", "sigma_px"]
    assert sigma <= 2
    ref = column_reference(check, noisy, targets, 0)
    assert ref is not None and ref.polarity == "bright"

    def recall(s: float) -> float:
        return float(np.mean([_truth_recall(m, gaussian_denoise(s)(noisy[t]), t, check, "bright")
                              for t in ref.columns]))

    # against the true columns: the width chosen with the columns keeps most, the other few
    assert recall(sigma) > 0.5 > 0.2 > recall(by_umse.loc["gaussian", "sigma_px"])
    assert best_candidate(scores, ["raw", "gaussian"]) == "gaussian"


def test_a_network_that_paints_a_smooth_image_is_not_chosen(particle) -> None:
    """A network out of its domain that returns a smooth image close to the mean: lowest
    uMSE of all, no columns; auto does not use it and choosing it is warned about."""
    m, noisy = particle
    targets = target_frames(len(noisy), 0)
    smooth = {"supervised": lambda t: ndimage.gaussian_filter(m.clean[t], 4.0)}
    check = ColumnCheck(ColumnsConfig(), m.pixel_size_A)
    scores = score_candidates(smooth, noisy, targets, 0, dose_e_per_px=DOSE, columns=check)
    by = scores.set_index("candidate")
    assert by.loc["supervised", "umse"] < by.loc["gaussian", "umse"]
    assert not by.loc["supervised", "columns_agree"]
    assert by.loc["supervised", "column_recall"] < 0.2
    assert by.loc["supervised", "column_f1"] < by.loc["gaussian", "column_f1"] - 0.1
    assert best_candidate(scores, ["supervised", "raw", "gaussian"]) != "supervised"
    msg = hurting(scores, "supervised", ["supervised", "raw", "gaussian"])
    assert "columns disagree" in msg and "erases or invents columns" in msg


def test_no_columns_no_agreement_measured() -> None:
    """Vacuum (pure Poisson noise): too few columns on the raw mean; uMSE alone decides."""
    rng = np.random.default_rng(0)
    noisy = rng.poisson(DOSE, (24, 64, 64)).astype(np.float32) / DOSE
    targets = target_frames(len(noisy), 0)
    check = ColumnCheck(ColumnsConfig(), 0.2)
    assert column_reference(check, noisy, targets, 0) is None
    scores = score_candidates({}, noisy, targets, 0, dose_e_per_px=DOSE, columns=check)
    assert scores.column_f1.isna().all() and scores.columns_agree.all()


def test_column_agreement_is_chance_corrected(static_movie) -> None:
    """Blobs of an unrelated noise image agree with the lattice by chance only: about 0 after
    the correction, while the true frames agree almost perfectly."""
    clean, noisy = static_movie
    targets = target_frames(len(noisy), 0)
    ref = column_reference(ColumnCheck(ColumnsConfig(), 0.2), noisy, targets, 0)
    assert ref is not None
    rng = np.random.default_rng(1)
    unrelated = ref.agreement(lambda t: rng.poisson(DOSE, noisy[t].shape).astype(np.float32))
    assert abs(unrelated.recall) < 0.1 and abs(unrelated.f1) < 0.1
    assert ref.agreement(lambda t: clean[t]).f1 > 0.9


def test_auto_among_classical_candidates_needs_no_network() -> None:
    """``auto`` whose ``auto_candidates`` list no network needs none given (the workflow gives
    such a movie none): an unscored movie takes the first candidate listed, never a network;
    with a network listed, the unscored fallback is the network it was."""
    assert CLASSICAL == ("raw", "gaussian", "wiener")
    assert not uses_network("wiener", ["supervised"]) and uses_network("supervised", ["raw"])
    assert not uses_network("auto", ["gaussian", "raw"]) and uses_network("auto", ["finetuned"])
    inf = InferenceConfig(auto_candidates=["gaussian", "raw"], score_targets=0)
    assert not inf.uses_network and InferenceConfig().uses_network
    counts = np.random.default_rng(0).poisson(2.0, (12, 16, 16)).astype(np.float32)
    choice = score_and_choose(inf, {}, counts, 2.0, [], 12)
    assert choice.candidate == "gaussian" and choice.model is None and choice.scores is None
    assert choice.sigma_px == 1.0
    assert unscored_choice(InferenceConfig(auto_candidates=["wiener", "raw"]), {}) == "wiener"
    with pytest.raises(InputError, match="no denoiser given"):
        unscored_choice(InferenceConfig(auto_candidates=["unsupervised", "raw"]), {})


def test_unscored_auto_takes_the_first_available_of_its_candidates() -> None:
    """An unscored movie (too short, score_targets 0) never takes a network that
    ``auto_candidates`` leaves out: the first listed that is available."""
    nets = {"supervised": object(), "unsupervised": object()}
    default = InferenceConfig()
    assert unscored_choice(default, nets) == "supervised"  # the default order: as before
    assert unscored_choice(default, {"unsupervised": object()}) == "unsupervised"
    assert unscored_choice(default, {**nets, "finetuned": object()}) == "supervised"
    blind = InferenceConfig(auto_candidates=["unsupervised", "raw"])
    assert unscored_choice(blind, nets) == "unsupervised"  # supervised given, not allowed
    assert unscored_choice(blind, {**nets, "finetuned": object()}) == "finetuned"
    assert unscored_choice(InferenceConfig(auto_candidates=["supervised", "gaussian"]),
                           {"unsupervised": object()}) == "gaussian"


def test_an_unscored_wiener_takes_its_pair_by_sure_not_the_default() -> None:
    """A movie too short for uMSE (3 frames < 2h + 4) named ``denoise_with: wiener``, and a
    long one under ``auto`` with ``score_targets: 0`` falling back on the Wiener filter: the
    pair is the least SURE of the leading frames with the detector's DQE, not the fixed
    default (here a pair of lower true MSE)."""
    m = lattice_movie(n_frames=12, size_px=128, spacing_px=9.0, sigma_px=1.6,
                      dose_e_per_px_per_frame=0.45, event_frame=None, seed=4)
    assert m.counts is not None
    counts = m.counts.astype(np.float32)
    short = counts[:3]
    for dqe in (1.0, 0.8):
        choice = score_and_choose(InferenceConfig(denoise_with="wiener"), {}, short, 0.45, [],
                                  3, dqe)
        assert choice.scores is None and choice.candidate == "wiener"
        assert (choice.wiener_alpha, choice.wiener_smooth_px) == wiener_sure_choice(short, dqe)
        if dqe == 1.0:  # Poisson counts, the right noise level: better than the default
            pair = (choice.wiener_alpha, choice.wiener_smooth_px)
            assert pair != (WIENER_ALPHA, WIENER_SMOOTH_PX)

            def true_mse(a: float, s: int) -> float:
                return float(np.mean([np.mean((wiener(f, 0.45, a, s) - m.clean[0]) ** 2)
                                      for f in short]))

            assert true_mse(*pair) < true_mse(WIENER_ALPHA, WIENER_SMOOTH_PX)
    inf = InferenceConfig(auto_candidates=["wiener", "raw"], score_targets=0)
    choice = score_and_choose(inf, {}, counts, 0.45, [], 12)
    assert choice.candidate == "wiener" and choice.scores is None
    assert (choice.wiener_alpha, choice.wiener_smooth_px) == wiener_sure_choice(
        counts[:SURE_FRAMES], 1.0)
    # scored, the uMSE grid chooses as before
    scored = score_and_choose(InferenceConfig(denoise_with="wiener"), {}, counts, 0.45, [], 12)
    assert scored.scores is not None and scored.wiener_alpha in WIENER_ALPHAS
