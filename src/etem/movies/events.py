"""Structural event detection from frame-level statistics.

For every frame statistic s_t (number of columns, mean column intensity, mean tracked-column
displacement, fraction of columns appearing/vanishing, dissimilarity of the denoised frame to
its EWMA background image ...) the detector keeps an exponentially weighted moving average
m_t = alpha s_t + (1 - alpha) m_{t-1} and scores each frame by

* the innovation e_t = s_t - m_{t-1} (deviation from the EWMA background) and
* the time derivative d_t = s_t - s_{t-1},

each divided by its noise scale and read as a Gaussian z. The noise scales come from one of
two calibrations (``apply.events.calibration``; results name it, :data:`CALIBRATION_NAMES`):

* ``whole_movie`` (default; "whole-movie robust"): over all frames, no stable stretch
  assumed (:func:`robust_scale`): starting from a scale that steps do not inflate (MAD of
  the statistic's first differences, :func:`start_scales`), values beyond the threshold are
  set aside as changes, with the innovations of the EWMA adopting the new level after them,
  and the scale (1.4826 median |v|, at least the root mean square) is re-measured on the
  rest until it settles. The innovations of the first frames (an EWMA of few values) are
  scaled to the steady state's first (:func:`ewma_series`). Scoring starts at frame 1.
  Threshold z* = Phi^-1(1 - far / (4k)): a per-frame false-alarm rate ``far`` with a
  Bonferroni correction over the 2k tests. Null ("simulated under the fitted noise model",
  :data:`NULL_SIMULATED`): a statistic with at least
  :data:`etem.movies.evidence.WANDER_MIN_FRAMES` values gets the GLR's noise model
  (:func:`etem.movies.evidence.fit_noise_model`: white + AR(1) wander); the Gaussian
  threshold was designed for white noise, whose innovation exceedances rarely persist for
  ``min_frames`` frames, while those of wander come in runs. Its innovation score is
  divided by :func:`innovation_threshold_factor` (>= 1): the level that the persistence
  statistic (:func:`persistent_score`) of the innovations, simulated under the model for
  the movie's length (fixed seed, cached), exceeds at the per-test rate far / (4k), over
  the same for white noise. Shorter statistics (and all with ``simulated_null=False``)
  keep the Gaussian null (:data:`NULL_GAUSSIAN`); results name the null used.
* ``leading_frames`` ("leading frames"): from the finite values of the first
  ``calibration_frames`` frames, which must be stable (the larger of 1.4826 MAD and the
  standard deviation); the threshold is z* but never below 1.05 x the largest score of that
  stretch, and scoring starts after it. For a movie whose changes fill most of its frames
  with a known stable start.

NaN values (e.g. of a statistic still warming up) count as "no change" and are left out of
the scales. As a scale comes from n values, each standardised value is read as Student t
with n - 1 degrees of freedom and mapped to the Gaussian z of the same tail probability.
The frame score is the largest of these 2k values.
An event starts at the first frame whose score exceeds the threshold and lasts while the
score stays above half the threshold (hysteresis, gaps <= ``merge_gap``), i.e. until the EWMA
has adopted the new state. It is reported only if the EWMA innovation alone exceeds the
threshold in at least ``min_frames`` frames of one run of above-threshold frames (gaps <=
``merge_gap``): a structural change persists in the innovation, a one-frame detection glitch
does not (its derivative spike on recovery does not count). The onset is the first frame of
the first such run (a glitch that the hysteresis only bridges to the change does not set
it). Peak = frame of the highest score from the onset on.

Statistics with fewer than ``MIN_CALIBRATION_VALUES`` values for their scale (in the
calibration stretch: they start too late, e.g. long-window statistics) have no noise scale
and are not scored (a warning says so).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from scipy.stats import norm
from scipy.stats import t as student_t

from etem.config.apply import EventsConfig
from etem.movies.evidence import (
    SERIES_KIND,
    WANDER_MIN_FRAMES,
    CusumResult,
    NoiseModel,
    detect_glr,
    fit_noise_model,
    group_alarms,
    simulate_noise,
)

log = logging.getLogger("etem.movies.events")

#: Fewest finite calibration values of a statistic for it to be scored.
MIN_CALIBRATION_VALUES = 3
#: Columns of the events table.
EVENT_FIELDS = ("event", "onset_frame", "peak_frame", "end_frame", "score", "statistic")


#: Calibration modes of the EWMA detector (``apply.events.calibration``) and how results
#: name them.
CALIBRATION_NAMES = {
    "whole_movie": "whole-movie robust",
    "leading_frames": "leading frames",
}
#: Whole-movie calibration: rounds of the robust scale fit that set aside change frames.
ROBUST_ROUNDS = 8
#: Whole-movie calibration: fewest values (fraction of the finite ones) a round of the
#: robust scale fit may keep.
MIN_KEPT_FRACTION = 0.25
#: Nulls of the whole-movie threshold and how results name them.
NULL_SIMULATED = "simulated under the fitted noise model"
NULL_GAUSSIAN = "Gaussian"
#: Simulated null of the EWMA innovation: frames in all (series x movie length; fixed seed).
EWMA_NULL_FRAMES = 131072


@dataclass
class EventResult:
    """Per-frame scores, the threshold and the event table."""

    scores: pd.DataFrame  # frame, score, driver, z_<stat>...
    events: pd.DataFrame  # EVENT_FIELDS (+ onset_time_s when the frame time is known)
    threshold: float
    calibration_frames: int  # leading frames calibrated on (0: whole-movie calibration)
    glr: CusumResult | None = None
    calibration: str = CALIBRATION_NAMES["whole_movie"]
    #: per scored series (``<stat>_ewma`` / ``<stat>_diff``): noise scale and values used
    #: (and, for an innovation, ``threshold_factor`` and ``noise_model``)
    noise_scales: dict[str, dict[str, Any]] | None = None
    #: null of the whole-movie threshold: :data:`NULL_SIMULATED` or :data:`NULL_GAUSSIAN`
    null: str = NULL_GAUSSIAN


def ewma_series(s: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EWMA innovation e_t = s_t - m_{t-1} and derivative d_t = s_t - s_{t-1} of one
    statistic (NaN: no value, e.g. warm-up; the first finite value starts the EWMA), and the
    warm-up factor of each innovation: its standard deviation under white noise relative to
    the steady state's (the EWMA m_{t-1} of few values is noisier than that of many:
    Var m = sigma^2 v, v_1 = 1, v_{n+1} = alpha^2 + (1 - alpha)^2 v_n ->
    alpha / (2 - alpha); Var e = sigma^2 (1 + v))."""
    t_n = len(s)
    e = np.full(t_n, np.nan)
    d = np.full(t_n, np.nan)
    warm = np.ones(t_n)
    steady = 2.0 / (2.0 - alpha)
    m: float | None = None
    prev = np.nan
    v_m = 1.0
    for t in range(t_n):
        st = s[t]
        if not np.isfinite(st):
            continue
        if m is None:  # first finite value starts the EWMA (no innovation yet)
            m = prev = float(st)
            continue
        e[t] = st - m
        d[t] = st - prev
        warm[t] = float(np.sqrt((1.0 + v_m) / steady))
        m = alpha * st + (1 - alpha) * m
        v_m = alpha * alpha + (1 - alpha) ** 2 * v_m
        prev = st
    return e, d, warm


def robust_scale(
    v: np.ndarray, start: float, z_cut: float, floor: float, alpha: float | None
) -> tuple[float, np.ndarray]:
    """Noise scale of an innovation (``alpha``: the EWMA's) or derivative (``alpha`` None)
    series over the whole movie, robust to the changes it should find, and the mask of the
    values it used.

    ``start``: a first scale that changes do not inflate (:func:`start_scales`; the MAD of
    the innovations themselves breaks down when a change leaves adopting innovations in half
    of the frames, which a step of a few sigma does in a short movie). Each round, a value
    beyond ``z_cut`` scales is set aside as a change and, for an innovation, so are the
    ln(z) / -ln(1 - alpha) values after it (the EWMA adopting the new level: a step of z
    scales leaves innovations z (1 - alpha)^k, above one scale that long); the scale of the
    values kept, 1.4826 median |v| (a stable series' innovations and derivatives centre on
    0), sets the next round, up to :data:`ROBUST_ROUNDS` rounds. A round that would keep
    fewer than :data:`MIN_KEPT_FRACTION` of the values (a start too small, e.g. for a
    serially correlated statistic) raises the scale by half instead. Scale = the larger of
    that and the root mean square of the values kept (tails heavier than Gaussian)."""
    fin = np.isfinite(v)
    use = fin.copy()
    n_fin = int(fin.sum())
    if n_fin < 2:
        return max(floor, 1e-9), use
    a = np.abs(np.where(fin, v, 0.0))
    scale = start if np.isfinite(start) and start > 0 else 1.4826 * float(np.median(a[fin]))
    scale = max(scale, floor, 1e-9)
    decay = -math.log(1.0 - alpha) if alpha is not None and alpha < 1 else math.inf
    for _ in range(ROBUST_ROUNDS):
        z = a / scale
        out = fin & (z > z_cut)
        if alpha is not None:
            until = -1
            for t in (int(i) for i in np.flatnonzero(fin)):
                if out[t]:
                    until = max(until, t + int(math.log(z[t]) / decay))
                out[t] = t <= until
        new = fin & ~out
        if new.sum() < max(MIN_KEPT_FRACTION * n_fin, 2):
            scale *= 1.5
            continue
        new_scale = max(1.4826 * float(np.median(a[new])), floor, 1e-9)
        done = np.array_equal(new, use) and abs(new_scale - scale) <= 1e-6 * scale
        use, scale = new, new_scale
        if done:
            break
    rms = float(np.sqrt(np.mean(a[use] ** 2))) if use.sum() >= 2 else 0.0
    return max(scale, rms, floor, 1e-9), use


def start_scales(s: np.ndarray, alpha: float) -> tuple[float, float]:
    """First scales of the innovation and the derivative of a statistic, robust to steps:
    sigma = 1.4826 MAD of the first differences / sqrt(2) (a step is one outlier among
    them; a serially correlated statistic gets too small a start, which the rounds of
    :func:`robust_scale` grow back) and, for white noise, Var e = sigma^2 2 / (2 - alpha),
    Var d = 2 sigma^2."""
    v = s[np.isfinite(s)]
    if len(v) < 3:
        return float("nan"), float("nan")
    dv = np.diff(v)
    sig = 1.4826 * float(np.median(np.abs(dv - np.median(dv)))) / math.sqrt(2.0)
    return sig * math.sqrt(2.0 / (2.0 - alpha)), sig * math.sqrt(2.0)


def persistent_score(z: np.ndarray, min_frames: int, merge_gap: int) -> np.ndarray:
    """(T, M) |standardised innovations| -> the level each frame's innovation and
    ``min_frames`` - 1 of the (``min_frames`` - 1) (``merge_gap`` + 1) frames before it
    exceed: the event rule's persistence (an event needs ``min_frames`` innovation
    exceedances with gaps <= ``merge_gap``), read as one statistic per frame."""
    a = np.abs(z)
    if min_frames <= 1:
        return a
    span = (min_frames - 1) * (merge_gap + 1)
    pad = np.concatenate([np.zeros((span, a.shape[1])), a])
    prev = np.stack([pad[span - i : span - i + len(a)] for i in range(1, span + 1)])
    # the (min_frames - 1)-th largest of the previous span frames
    kth = np.sort(prev, axis=0)[span - (min_frames - 1)]
    return np.minimum(a, kth)


@functools.lru_cache(maxsize=64)
def persistent_null_level(
    alpha: float, wander: float, phi: float, n_frames: int, rate: float, min_frames: int,
    merge_gap: int,
) -> float:
    """Level that :func:`persistent_score` of the standardised EWMA innovations of the null
    noise (:func:`etem.movies.evidence.simulate_noise`: white + a share ``wander`` of AR(1)
    with ``phi``; series of ``n_frames`` frames, :data:`EWMA_NULL_FRAMES` in all, fixed seed)
    exceeds at ``rate`` per frame; each series standardised by its own scale (the larger of
    1.4826 median |e| and the root mean square: as :func:`robust_scale` of a stable series)."""
    n = max(int(n_frames), 8)
    m = max(EWMA_NULL_FRAMES // n, 4)
    x = simulate_noise(n, m, wander, phi)
    # EWMA m_t started at the first value; innovation e_t = x_t - m_{t-1}, t >= 1
    ms = lfilter([alpha], [1.0, alpha - 1.0], x[1:], axis=0, zi=(1 - alpha) * x[:1])[0]
    prev = np.concatenate([x[:1], ms[:-1]])
    _, _, warm = ewma_series(np.zeros(n), alpha)
    e = (x[1:] - prev) / warm[1:, None]
    sig = np.maximum(1.4826 * np.median(np.abs(e), axis=0), np.sqrt(np.mean(e * e, axis=0)))
    p = persistent_score(e / sig, min_frames, merge_gap)
    return float(np.quantile(p, 1.0 - rate))


def innovation_threshold_factor(
    model: NoiseModel, alpha: float, n_frames: int, rate: float, min_frames: int,
    merge_gap: int,
) -> float:
    """Factor (>= 1) on the Gaussian threshold of a statistic's EWMA innovation under its
    fitted noise model (:func:`etem.movies.evidence.fit_noise_model`): the ratio of the
    persistence levels (:func:`persistent_null_level`) exceeded at the per-test rate ``rate``
    under the model and under white noise of the same movie length. White noise (for which
    the Gaussian threshold and the persistence rule were designed) gets 1; wander, whose
    innovations stay beyond a level for several frames, more."""
    if model.wander <= 0:
        return 1.0
    h_model = persistent_null_level(
        alpha, model.wander, model.phi, n_frames, rate, min_frames, merge_gap
    )
    h_white = persistent_null_level(alpha, 0.0, 0.0, n_frames, rate, min_frames, merge_gap)
    return max(1.0, h_model / h_white)


# long (~110 lines): the EWMA detector in one pass over shared arrays (innovation and
# derivative per statistic, calibration, threshold, onsets).
def detect_events(
    stats: pd.DataFrame,
    alpha: float = 0.1,
    false_alarm_rate: float = 0.01,
    calibration_frames: int = 20,
    merge_gap: int = 2,
    min_frames: int = 2,
    floors: dict[str, float] | None = None,
    frame_time_s: float | None = None,
    calibration: str = "whole_movie",
    simulated_null: bool = True,
) -> EventResult:
    """Detect events in a (T, k) table of frame statistics (one row per frame, in order).

    Parameters
    ----------
    stats : DataFrame
        Frame statistics; NaN values (e.g. a statistic still warming up) are treated as
        "no change" (score 0) and are left out of the noise scales.
    alpha : float
        EWMA weight of the newest frame.
    false_alarm_rate : float
        Target per-frame probability of a false alarm in a stable stretch.
    calibration_frames : int
        With ``calibration="leading_frames"``: leading frames assumed free of events, used to
        estimate noise scales and threshold (ignored otherwise).
    merge_gap : int
        Frames below half the threshold allowed inside one event.
    min_frames : int
        Frames above threshold needed for an event: a structural change persists in the EWMA
        innovation for several frames, a one-frame detection flicker does not.
    floors : dict, optional
        Smallest noise scale per statistic (units of the statistic), e.g. 1 column for counts.
    frame_time_s : float, optional
        Frame time [s]; adds ``onset_time_s``.
    calibration : {"whole_movie", "leading_frames"}
        Noise scales robustly over all frames (:func:`robust_scale`; no stable stretch
        assumed) or from the leading ``calibration_frames`` frames.
    simulated_null : bool
        With ``calibration="whole_movie"``: the threshold of each statistic's innovation
        from its fitted noise model (:func:`innovation_threshold_factor`) where the
        statistic has at least :data:`etem.movies.evidence.WANDER_MIN_FRAMES` values
        (False: the Gaussian threshold for all).
    """

    if calibration not in CALIBRATION_NAMES:
        raise ValueError(f"calibration {calibration!r}: not one of {', '.join(CALIBRATION_NAMES)}")
    whole = calibration == "whole_movie"
    floors = floors or {}
    names = list(stats.columns)
    t_n = len(stats)
    cal = 0 if whole else int(min(calibration_frames, t_n))
    n_tests = max(2 * len(names), 1)
    z_gauss = float(norm.isf(false_alarm_rate / (2.0 * n_tests)))
    z_all = np.zeros((t_n, 2 * len(names)))
    scales: dict[str, dict[str, Any]] = {}
    simulated = False
    unscored: list[str] = []  # "name (values)" of the statistics without a noise scale
    for k, name in enumerate(names):
        s = stats[name].to_numpy(dtype=np.float64)
        s = np.where(np.isfinite(s), s, np.nan)
        e, d, warm = ewma_series(s, alpha)
        starts = (np.nan, np.nan)
        if whole:
            e = e / warm  # innovations of a young EWMA scaled to the steady state's
            starts = start_scales(s, alpha)
        for j, v in ((2 * k, e), (2 * k + 1, d)):
            # the standardised value is Student t with n - 1 degrees of freedom (n values
            # measured the scale), mapped to the Gaussian z of the same tail probability so
            # that statistics with different warm-ups share one threshold
            if whole:
                sigma, used = robust_scale(
                    v, starts[j - 2 * k], z_gauss, floors.get(name, 0.0),
                    alpha if j == 2 * k else None,
                )
                n_cal = int(used.sum())
            else:
                n_cal = int(np.isfinite(v[1:cal]).sum())
                sigma = _scale(v[1:cal], floors.get(name, 0.0))
            if n_cal < MIN_CALIBRATION_VALUES:
                # no noise scale: the statistic cannot be scored (it starts too late)
                if j == 2 * k:
                    unscored.append(f"{name} ({n_cal})")
                continue
            entry: dict[str, Any] = {"sigma": sigma, "n_values": n_cal}
            scales[f"{name}_{'ewma' if j == 2 * k else 'diff'}"] = entry
            z = np.abs(v) / sigma
            if n_cal >= 2:
                p = student_t.sf(np.nan_to_num(z), df=n_cal - 1)
                z = np.where(np.isfinite(z), norm.isf(np.maximum(p, 1e-300)), 0.0)
            if (
                whole and simulated_null and j == 2 * k
                and int(np.isfinite(s).sum()) >= WANDER_MIN_FRAMES
            ):
                # threshold of the innovation from the statistic's fitted noise model: the
                # score is divided by the factor (one threshold for all series)
                model = fit_noise_model(s)
                factor = innovation_threshold_factor(
                    model, alpha, t_n, false_alarm_rate / (2.0 * n_tests), min_frames,
                    merge_gap,
                )
                z = z / factor
                entry.update(threshold_factor=factor, noise_model=model.name)
                simulated = True
            z_all[:, j] = np.nan_to_num(z)
    if unscored:  # one line for all: a short movie leaves every statistic without a scale
        log.warning(
            "event statistics with fewer than %d values %s, not scored: %s%s",
            MIN_CALIBRATION_VALUES,
            f"in the movie ({t_n} frames)" if whole else f"in the {cal} calibration frames",
            ", ".join(unscored),
            "" if whole else "; raise apply.events.calibration_frames",
        )
    score = z_all.max(axis=1) if z_all.size else np.zeros(t_n)
    if whole:
        threshold = z_gauss
    else:
        # never below the largest score of the calibration stretch (stable by assumption)
        z_cal = float(score[1:cal].max()) if cal > 1 else 0.0
        threshold = max(z_gauss, z_cal * 1.05)
    driver = (
        [names[int(i) // 2] if z_all.size else "" for i in np.argmax(z_all, axis=1)]
        if names
        else [""] * t_n
    )
    scores = pd.DataFrame({"frame": np.arange(t_n), "score": score, "driver": driver})
    for k, name in enumerate(names):
        scores[f"z_{name}_ewma"] = z_all[:, 2 * k]
        scores[f"z_{name}_diff"] = z_all[:, 2 * k + 1]
    ewma_score = z_all[:, 0::2].max(axis=1) if z_all.size else np.zeros(t_n)
    rows = _event_rows(score, ewma_score, threshold, driver, max(cal, 1), merge_gap, min_frames)
    events = pd.DataFrame(rows, columns=list(EVENT_FIELDS))
    if frame_time_s:
        events["onset_time_s"] = events["onset_frame"].astype(float) * frame_time_s
    if not whole and t_n <= cal:
        log.warning(
            "movie of %d frames has no frames after the %d calibration frames: "
            "no events can be detected",
            t_n,
            cal,
        )
    return EventResult(
        scores, events, threshold, cal, calibration=CALIBRATION_NAMES[calibration],
        noise_scales=scales, null=NULL_SIMULATED if simulated else NULL_GAUSSIAN,
    )


def _event_rows(
    score: np.ndarray,
    ewma_score: np.ndarray,
    threshold: float,
    driver: list[str],
    start: int,
    merge_gap: int,
    min_frames: int,
) -> list[dict[str, Any]]:
    """Events of a score series from frame ``start`` on (hysteresis, persistence, onset)."""
    t_n = len(score)
    rows: list[dict[str, Any]] = []
    t = start
    while t < t_n:
        if score[t] <= threshold:
            t += 1
            continue
        # an event starts; it lasts while the score stays above half the threshold
        # (hysteresis: the EWMA takes a while to adopt the new state), allowing short gaps
        g = [t]
        u = t + 1
        while u < t_n and (
            score[u] > 0.5 * threshold
            or any(score[v] > 0.5 * threshold for v in range(u + 1, min(u + 1 + merge_gap, t_n)))
        ):
            g.append(u)
            u += 1
        # onset: the first run of above-threshold frames (gaps <= merge_gap) in which the
        # innovation persists; an earlier one-frame glitch that the hysteresis merely bridges
        # to the real change neither counts nor sets the onset
        above = [v for v in g if score[v] > threshold]
        runs = np.split(np.array(above), np.flatnonzero(np.diff(above) > merge_gap + 1) + 1)
        onset = next(
            (int(r[0]) for r in runs if (ewma_score[r] > threshold).sum() >= min_frames), None
        )
        if onset is not None:
            g = [v for v in g if v >= onset]
            peak = g[int(np.argmax(score[g]))]
            rows.append(
                {
                    "event": len(rows),
                    "onset_frame": g[0],
                    "peak_frame": peak,
                    "end_frame": g[-1],
                    "score": float(score[peak]),
                    "statistic": driver[peak],
                }
            )
        t = u
    return rows


def _scale(values: np.ndarray, floor: float) -> float:
    v = values[np.isfinite(values)]
    if len(v) < 2:
        return max(floor, 1e-9)
    mad = 1.4826 * float(np.median(np.abs(v - np.median(v))))
    # the larger of the robust and the plain scale: few calibration frames underestimate tails
    return max(mad, float(np.std(v, ddof=1)), floor, 1e-9)


def statistic_floors(stats: pd.DataFrame) -> dict[str, float]:
    """Smallest noise scales of the event statistics (units of each statistic)."""
    med_i = (
        float(np.nanmedian(np.abs(stats["mean_intensity"])))
        if stats["mean_intensity"].notna().any()
        else 0.0
    )
    return {
        "n_columns": 1.0,
        "mean_intensity": 0.005 * med_i,
        "mean_displacement_A": 0.02,
        "appeared_frac": 0.01,
        "vanished_frac": 0.01,
        "dissimilarity": 1e-4,
        "change": 1e-4,
        "local_change": 0.05,
        "column_counts_z": 0.05,
    }


def refine_onsets(
    events: EventResult, stats: pd.DataFrame, a: EventsConfig, frame_time_s: float | None = None
) -> None:
    """Move event onsets to the change point of a windowed statistic (in place).

    The windowed statistics (``local_change``, ``column_counts_z``) cross the threshold up to
    ``local_window_frames`` - 1 frames after the change. For each event in whose first
    ``k + m`` frames the innovation of one of them exceeds the threshold (the one with the
    largest innovation there when both do), the onset becomes the median change-point
    estimate (``<statistic>_onset``) over the k frames from the detected onset on (the
    estimate steadies as post-change frames fill the buffer), if that is earlier than the
    detected onset and after the previous event. The detected onset is kept as
    ``detected_frame``.
    """
    ev = events.events
    ev["detected_frame"] = ev["onset_frame"].copy()
    windowed = [s for s in ("local_change", "column_counts_z") if s in a.statistics]
    if not windowed or not len(ev):
        return
    zs = {s: events.scores[f"z_{s}_ewma"].to_numpy() for s in windowed}
    cps = {s: stats[f"{s}_onset"].to_numpy(dtype=np.float64) for s in windowed}
    span = a.local_window_frames + a.local_reference_frames
    detected = ev["onset_frame"].to_numpy().copy()
    onsets = detected.copy()
    prev_end = -1
    for i, (on, end) in enumerate(zip(detected, ev["end_frame"].to_numpy(), strict=True)):
        lo, hi = int(on), int(min(end, on + span - 1)) + 1
        best = max(windowed, key=lambda s: float(zs[s][lo:hi].max()))
        z, cp = zs[best], cps[best]
        est = cp[lo : min(lo + a.local_window_frames, int(end) + 1)]
        est = est[np.isfinite(est)]
        if (z[lo:hi] > events.threshold).any() and len(est):
            c = int(np.floor(np.median(est) + 0.5))
            if prev_end < c < on:
                onsets[i] = c
        prev_end = int(end)
    ev["detected_frame"] = detected
    ev["onset_frame"] = onsets
    if frame_time_s:
        ev["onset_time_s"] = onsets.astype(float) * frame_time_s


#: Kind of event each EWMA-scored statistic reports.
EWMA_KIND = {
    "n_columns": "appearance/disappearance",
    "appeared_frac": "appearance/disappearance",
    "vanished_frac": "appearance/disappearance",
    "mean_displacement_A": "displacement",
}
#: Columns of the per-event table (events.csv).
EVENT_TABLE_FIELDS = (
    "event", "onset_frame", "onset_lo_frame", "onset_hi_frame", "peak_frame", "end_frame",
    "kind", "statistic", "region", "significance", "score", "threshold", "method",
    "detected_frame",
)


# long (87 lines): merges the EWMA and GLR event tables into the one events.csv contract
# (onset, interval, kind, region, significance), column by column.
def combine_events(
    events: EventResult,
    glr: CusumResult | None,
    boxes: list[tuple[int, int, int, int]],
    merge_gap: int,
    frame_time_s: float | None = None,
) -> None:
    """Merge the EWMA events and the GLR alarms into one event table (in place): one row per
    structural event with onset, uncertainty interval, kind, region and significance
    (score / threshold of the detector that saw it best).

    GLR alarms are grouped (:func:`etem.movies.evidence.group_alarms`); a group and an EWMA
    event whose onset lies within ``merge_gap`` + 1 frames of the group's onset interval are
    one event, whose onset is the EWMA onset when it lies inside the GLR interval, else the
    GLR onset. The interval of an EWMA-only event is heuristic: from its refined onset to the
    frame it was detected, widened by one frame.
    """
    ev = events.events
    rows: list[dict[str, Any]] = []
    used: set[int] = set()
    for group in group_alarms(glr.alarms if glr is not None else [], merge_gap):
        best = max(group, key=lambda a: a.significance)
        lo = min(a.onset_lo for a in group)
        hi = max(a.onset_hi for a in group)
        series = sorted({a.series for a in group})
        reg = [boxes[a.index] for a in group if a.series == "region_counts" and boxes]
        region = (
            f"x {min(b[0] for b in reg)}-{max(b[1] for b in reg)} px, "
            f"y {min(b[2] for b in reg)}-{max(b[3] for b in reg)} px"
            if reg
            else "centre region"
        )
        row: dict[str, Any] = {
            "onset_frame": best.onset_frame, "onset_lo_frame": lo, "onset_hi_frame": hi,
            "peak_frame": max(group, key=lambda a: a.significance).peak_frame,
            "end_frame": max(a.end_frame for a in group),
            "kind": SERIES_KIND.get(best.series, "intensity/occupancy"),
            "statistic": ";".join(series), "region": region,
            "significance": best.significance, "score": best.significance * best.threshold,
            "threshold": best.threshold, "method": "glr",
            "detected_frame": min(a.alarm_frame for a in group),
        }
        for i, e in ev.iterrows():
            on = int(e["onset_frame"])
            if i in used or not (lo - merge_gap - 1 <= on <= hi + merge_gap + 1):
                continue
            used.add(int(i))  # type: ignore[call-overload]
            sig = float(e["score"]) / events.threshold
            if lo <= on <= hi:
                row["onset_frame"] = on
            row["onset_lo_frame"] = min(row["onset_lo_frame"], on)
            row["onset_hi_frame"] = max(row["onset_hi_frame"], on)
            row["method"] = "ewma+glr"
            row["detected_frame"] = min(row["detected_frame"], int(e["detected_frame"]))
            if sig > row["significance"]:
                row.update(
                    significance=sig, score=float(e["score"]), threshold=events.threshold,
                    statistic=f"{e['statistic']};{row['statistic']}",
                )
        rows.append(row)
    for i, e in ev.iterrows():
        if i in used:
            continue
        on, det = int(e["onset_frame"]), int(e["detected_frame"])
        rows.append({
            "onset_frame": on, "onset_lo_frame": max(min(on, det) - 1, 0),
            "onset_hi_frame": max(on, det) + 1, "peak_frame": int(e["peak_frame"]),
            "end_frame": int(e["end_frame"]),
            "kind": EWMA_KIND.get(str(e["statistic"]), "intensity/occupancy"),
            "statistic": str(e["statistic"]), "region": "centre region",
            "significance": float(e["score"]) / events.threshold, "score": float(e["score"]),
            "threshold": events.threshold, "method": "ewma", "detected_frame": det,
        })
    rows.sort(key=lambda r: r["onset_frame"])
    for k, r in enumerate(rows):
        r["event"] = k
    out = pd.DataFrame(rows, columns=list(EVENT_TABLE_FIELDS))
    for c in ("event", "onset_frame", "onset_lo_frame", "onset_hi_frame", "peak_frame",
              "end_frame", "detected_frame"):
        out[c] = out[c].astype(np.int64)
    if frame_time_s:
        for c in ("onset", "onset_lo", "onset_hi"):
            out[f"{c}_time_s"] = out[f"{c}_frame"].astype(float) * frame_time_s
    events.events = out
    events.glr = glr
    if glr is not None:
        events.scores = events.scores.merge(glr.scores, on="frame", how="left")


def detect_frame_events(
    a: EventsConfig,
    stats: pd.DataFrame,
    regions: np.ndarray | None,
    boxes: list[tuple[int, int, int, int]],
    edge: np.ndarray | None = None,
    frame_time_s: float | None = None,
) -> EventResult:
    """Events from the frame statistics ``stats`` and the (T, R) raw region counts
    ``regions`` (boxes (x0, x1, y0, y1) [px]) with the ``apply.events`` config ``a``: the EWMA
    detector (:func:`detect_events`, onsets refined) and, with ``a.glr``, the
    accumulating GLR detector (:func:`etem.movies.evidence.detect_glr`), merged
    (:func:`combine_events`). ``edge``: frames whose image statistics are left out."""
    ev_stats = stats[list(a.statistics)].copy()
    if edge is not None:
        ev_stats.loc[edge] = np.nan
    events = detect_events(
        ev_stats,
        a.ewma_alpha,
        a.false_alarm_rate,
        a.calibration_frames,
        a.merge_gap_frames,
        a.min_frames,
        statistic_floors(stats),
        frame_time_s,
        a.calibration,
    )
    refine_onsets(events, stats, a, frame_time_s)
    glr = None
    if a.glr and len(stats):
        glr_stats = stats.copy()
        if edge is not None:  # raw region counts need no such exclusion
            scored = [c for c in SERIES_KIND if c in glr_stats]
            glr_stats.loc[edge, scored] = np.nan
        glr = detect_glr(
            glr_stats, regions if regions is not None and len(regions) else None,
            a.false_alarms_per_1000, merge_gap=a.merge_gap_frames,
        )
    combine_events(events, glr, boxes, a.merge_gap_frames, frame_time_s)
    return events
