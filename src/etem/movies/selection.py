"""Which denoiser helps on this movie: the uPSNR of every candidate, measured on the movie.

There is no clean image of an experimental movie, so candidates are scored with the
unsupervised MSE of Morales et al. (ICML 2023; :mod:`etem.analysis.umse`) from neighbouring
frames of the movie itself. For a target frame ``t`` denoised from its window
``t-h .. t+h`` (``h`` = the largest half-window of the candidates, 2 for the 5-frame
blind-spot network), three further noisy copies of the same signal are the aligned frames
``t-h-1``, ``t+h+1`` and ``t+h+2``, outside every candidate's input, so their noise is
independent of the estimate::

    uMSE(t) = mean (x[t+h+1] - f(t))² - mean (x[t-h-1] - x[t+h+2])² / 2

an unbiased estimate of the MSE against the signal as long as the signal is static over
these ``2h + 4`` drift-corrected frames (a changing signal adds the same bias to every
candidate, so the ranking holds). Targets never straddle a scene break. Intensities are in
units of the dose (vacuum = 1); uPSNR [dB] = 10 log10(peak² / uMSE) with ``peak`` the
99.9th percentile of the mean of the targets' frames, so a candidate's gain over the raw
frame (``gain_dB``) does not depend on the peak.

Candidates: the raw frame (no denoising), a Gaussian filter (its width chosen by the same
uMSE over :data:`GAUSSIAN_SIGMAS_PX`, the classical bar), the empirical Wiener filter of HRTEM
(:func:`etem.analysis.baselines.wiener`, Kilaas 1998: no training, it keeps the spatial
frequencies that stand above the Poisson noise, a crystal's Bragg reflections; its
over-subtraction and periodogram smoothing chosen by the same uMSE over :data:`WIENER_ALPHAS`
x :data:`WIENER_SMOOTHS_PX`), and each network given (supervised, blind-spot, fine-tuned
blind-spot). ``apply.inference.denoise_with: auto`` denoises with the candidate of the lowest
uMSE among ``apply.inference.auto_candidates`` (networks and classical alike; the Wiener filter
only when listed: it paints lattice into vacancies, :data:`WIENER_CAVEAT`), so a denoiser that
hurts on this movie is never used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd
from scipy import ndimage

from etem.analysis.baselines import WIENER_ALPHA, WIENER_SMOOTH_PX, wiener
from etem.analysis.umse import UMSEResult, block_se, upsnr
from etem.config.apply import CLASSICAL
from etem.errors import InputError

#: Widths [px] of the Gaussian-filter candidates; the best one is reported as ``gaussian``.
GAUSSIAN_SIGMAS_PX = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
#: Over-subtraction factors and periodogram smoothings [frequency px] of the Wiener-filter
#: candidates (every pair is scored); the best pair is reported as ``wiener``. The smoothing
#: is chosen per movie too: etem's campaign favours 5, bulk crystals of other fields 3
#: (benchmarks/pretrained.md: a fixed choice loses 1.5-1.9 dB on one or the other).
WIENER_ALPHAS = (2.0, 4.0, 8.0)
WIENER_SMOOTHS_PX = (3, 5)
# CLASSICAL (etem.config.apply, imported above): the candidates that are not networks
# (``denoise_with: auto`` may choose them too).
#: Targets scored per movie at most (spread evenly over the frames available).
MAX_TARGETS = 8
#: Columns of the score table (``denoiser_scores.csv``): ``sigma_px`` the Gaussian's width
#: [px], ``wiener_alpha`` and ``wiener_smooth_px`` the Wiener filter's over-subtraction and
#: periodogram smoothing [frequency px], NaN on the other rows.
SCORE_COLUMNS = ("candidate", "network", "umse", "umse_se", "upsnr_dB", "gain_dB",
                 "sigma_px", "wiener_alpha", "wiener_smooth_px", "n_targets", "chosen")

#: A grid point of a classical candidate's parameter search.
_P = TypeVar("_P")

#: A candidate: target frame index -> its denoised intensity (H, W), vacuum = 1.
DenoiseTarget = Callable[[int], np.ndarray]
#: A classical candidate: intensity frame (H, W) -> its denoised intensity.
FrameFilter = Callable[[np.ndarray], np.ndarray]


def frames_needed(half_window: int) -> int:
    """Frames of one scoring quartet: the window ``2h + 1`` and three further copies."""
    return 2 * half_window + 4


def target_frames(
    n_frames: int, half_window: int, breaks: Sequence[int] = (), max_targets: int = MAX_TARGETS
) -> list[int]:
    """Frames ``t`` whose scoring quartet ``t-h-1 .. t+h+2`` lies inside one segment,
    evenly spread over those available (at most ``max_targets``, deterministic)."""
    h = half_window
    ok = [
        t for t in range(h + 1, n_frames - h - 2)
        if not any(t - h - 1 < b <= t + h + 2 for b in breaks)
    ]
    if len(ok) <= max_targets:
        return ok
    picks = np.linspace(0, len(ok) - 1, max_targets).round().astype(int)
    return [ok[i] for i in sorted(set(picks.tolist()))]


def umse_targets(
    denoise: DenoiseTarget,
    frames: np.ndarray | Mapping[int, np.ndarray],
    targets: Sequence[int],
    half_window: int,
    block_px: int = 16,
) -> UMSEResult:
    """uMSE of ``denoise`` over ``targets`` from the neighbouring frames (module docstring);
    standard error from per-block means of the per-pixel terms, averaged over targets."""
    if not targets:
        raise InputError("uMSE from frames: no target frame (the movie is too short)")
    h = half_window
    means, ses, n_px = [], [], 0
    for t in targets:
        fy = np.asarray(denoise(t), dtype=np.float64)
        a = np.asarray(frames[t + h + 1], dtype=np.float64)
        b = np.asarray(frames[t - h - 1], dtype=np.float64)
        c = np.asarray(frames[t + h + 2], dtype=np.float64)
        if fy.shape != a.shape:
            raise InputError(f"denoiser changed the frame shape {a.shape} -> {fy.shape}")
        terms = (a - fy) ** 2 - 0.5 * (b - c) ** 2
        means.append(float(terms.mean()))
        ses.append(block_se(terms, block_px))
        n_px += terms.size
    return UMSEResult(float(np.mean(means)), float(np.mean(ses) / np.sqrt(len(targets))), n_px)


def gaussian_denoise(sigma_px: float) -> FrameFilter:
    """The classical candidate: a Gaussian filter of width ``sigma_px`` [px] (reflect)."""

    def run(frame: np.ndarray) -> np.ndarray:
        return np.asarray(ndimage.gaussian_filter(np.asarray(frame, dtype=np.float32),
                                                  sigma_px, mode="reflect"))

    return run


def wiener_denoise(
    alpha: float, dose_e_per_px: float, dqe: float = 1.0, smooth_px: int = WIENER_SMOOTH_PX
) -> FrameFilter:
    """The Wiener candidate on an intensity frame (vacuum = 1): the frame x the dose are its
    counts (:func:`etem.analysis.baselines.wiener`, periodogram smoothing ``smooth_px``,
    detector DQE ``dqe``); the whole frame at once (the filter is global, no tiles)."""

    def run(frame: np.ndarray) -> np.ndarray:
        counts = np.asarray(frame, dtype=np.float64) * dose_e_per_px
        return wiener(counts, dose_e_per_px, alpha, smooth_px, dqe).astype(np.float32)

    return run


def classical_filter(
    name: str,
    dose_e_per_px: float,
    sigma_px: float | None = None,
    wiener_alpha: float | None = None,
    dqe: float = 1.0,
    wiener_smooth_px: int | None = None,
) -> FrameFilter:
    """The classical candidate ``name`` (:data:`CLASSICAL`) as a filter of an intensity frame:
    the raw frame, a Gaussian of ``sigma_px`` (default 1 px), or the Wiener filter of
    ``wiener_alpha`` and ``wiener_smooth_px`` (defaults :data:`etem.analysis.baselines.
    WIENER_ALPHA`, ``WIENER_SMOOTH_PX``)."""
    if name == "raw":
        return lambda frame: np.asarray(frame, dtype=np.float32)
    if name == "gaussian":
        return gaussian_denoise(sigma_px or 1.0)
    if name == "wiener":
        return wiener_denoise(wiener_alpha or WIENER_ALPHA, dose_e_per_px, dqe,
                              int(wiener_smooth_px or WIENER_SMOOTH_PX))
    raise InputError(f"{name!r} is not a classical denoiser (one of {', '.join(CLASSICAL)})")


def score_candidates(
    networks: Mapping[str, DenoiseTarget],
    frames: np.ndarray | Mapping[int, np.ndarray],
    targets: Sequence[int],
    half_window: int,
    block_px: int = 16,
    *,
    dose_e_per_px: float,
    dqe: float = 1.0,
) -> pd.DataFrame:
    """Score the raw frame, the best Gaussian filter, the best Wiener filter and every network
    (name -> denoiser) on ``frames`` (intensity, vacuum = 1; their counts are the frames x
    ``dose_e_per_px``, with detector DQE ``dqe``: the Wiener filter's noise power).

    Returns the table of :data:`SCORE_COLUMNS`, best candidate first (lowest uMSE); the
    column ``chosen`` is left False (set by the caller for the candidate it uses).
    """
    mean = np.mean([np.asarray(frames[t], dtype=np.float64) for t in targets], axis=0)
    peak = float(np.percentile(mean, 99.9))
    if not peak > 0:
        raise InputError(f"uPSNR: the frames' 99.9th percentile is {peak} (no signal)")
    rows: list[dict[str, object]] = []
    nan = float("nan")

    def add(name: str, r: UMSEResult, network: bool, sigma: float = nan,
            alpha: float = nan, smooth: float = nan) -> None:
        rows.append({"candidate": name, "network": network, "umse": r.umse, "umse_se": r.se,
                     "upsnr_dB": upsnr(r.umse, peak), "sigma_px": sigma, "wiener_alpha": alpha,
                     "wiener_smooth_px": smooth, "n_targets": len(targets), "chosen": False})

    def score(filt: FrameFilter) -> UMSEResult:
        return umse_targets(lambda t: filt(frames[t]), frames, targets, half_window, block_px)

    def best_of(grid: Sequence[_P], make: Callable[[_P], FrameFilter]
                ) -> tuple[UMSEResult, _P]:
        return min(((score(make(p)), p) for p in grid), key=lambda rp: rp[0].umse)

    add("raw", score(np.asarray), False)
    best, sigma = best_of(GAUSSIAN_SIGMAS_PX, gaussian_denoise)
    add("gaussian", best, False, sigma=sigma)
    pairs = [(a, s) for s in WIENER_SMOOTHS_PX for a in WIENER_ALPHAS]
    best, (alpha, smooth) = best_of(
        pairs, lambda p: wiener_denoise(p[0], dose_e_per_px, dqe, p[1]))
    add("wiener", best, False, alpha=alpha, smooth=smooth)
    for name, fn in networks.items():
        add(name, umse_targets(fn, frames, targets, half_window, block_px), True)
    table = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    raw = float(table.loc[table.candidate == "raw", "umse"].iloc[0])
    table["gain_dB"] = [
        10 * np.log10(raw / u) if u > 0 and raw > 0 else float("nan") for u in table.umse
    ]
    return table.sort_values("umse", kind="stable").reset_index(drop=True)


def best_candidate(scores: pd.DataFrame, allowed: Sequence[str] | None = None) -> str:
    """The candidate of the lowest uMSE (among ``allowed``; all by default)."""
    t = scores if allowed is None else scores[scores.candidate.isin(list(allowed))]
    if t.empty:
        raise InputError("no denoiser candidate to choose from (scored: "
                         f"{', '.join(map(str, scores.candidate))}; allowed: "
                         f"{', '.join(allowed or [])}: apply.inference.auto_candidates)")
    return str(t.sort_values("umse", kind="stable").candidate.iloc[0])


#: Said in the summary and the log whenever the Wiener filter denoises a movie.
WIENER_CAVEAT = (
    "the Wiener filter keeps only periodic signal: vacancies, surface changes and the vacuum "
    "around a particle come out with lattice painted in (benchmarks/selection.md); check "
    "local defects on the raw frame sums or with denoise_with gaussian or a network")


def hurting(scores: pd.DataFrame, chosen: str,
            auto_candidates: Sequence[str] | None = None) -> str:
    """A warning when the chosen candidate scores worse than a classical one: the raw
    frames, a Gaussian or the Wiener filter ('' otherwise). The advice names ``auto`` when
    auto may choose the better one (``auto_candidates``; all by default), else that one."""
    umse = {str(c): float(u) for c, u in zip(scores.candidate, scores.umse, strict=True)}
    db = {str(c): float(u) for c, u in zip(scores.candidate, scores.upsnr_dB, strict=True)}
    if chosen not in umse:
        return ""
    worse = [c for c in CLASSICAL if c in umse and c != chosen and umse[c] < umse[chosen]]
    if not worse:
        return ""
    best = min(worse, key=umse.__getitem__)
    hurts = ": denoising hurts here" if best == "raw" else ""
    advice = ("auto" if auto_candidates is None or best in auto_candidates else best)
    return (f"the {chosen} denoiser scores below '{best}' on this movie (uPSNR "
            f"{_db(db[chosen])} vs {_db(db[best])}){hurts}; use "
            f"apply.inference.denoise_with: {advice}")


def _db(upsnr_dB: float) -> str:
    """A uPSNR for a message: NaN when the uMSE estimate is <= 0 (an error below its noise,
    e.g. a Wiener filter on a clean lattice)."""
    return "(uMSE <= 0: above the measurable)" if np.isnan(upsnr_dB) else f"{upsnr_dB:.2f} dB"
