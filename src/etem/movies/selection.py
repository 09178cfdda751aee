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
hurts on this movie is never used. A movie too short to be scored (fewer than ``2h + 4``
frames; a single image) that the Wiener filter denoises gets its pair by Stein's unbiased risk
estimate on its first :data:`SURE_FRAMES` frames instead
(:func:`etem.analysis.baselines.wiener_sure_choice`, over ``WIENER_SURE_ALPHAS`` x
``WIENER_SURE_SMOOTHS_PX`` within ``WIENER_SURE_MAX_NOISE_PASS``; it needs the detector's
DQE, ``apply.preprocess.detector_dqe``).

Column agreement
----------------
A whole-frame error can be low while the columns are gone: a wide Gaussian on a sparse
particle, or a network out of its domain that paints a smooth image. So every candidate (every
width and parameter pair of the classical ones too) is also scored by the columns it lets the
analysis find (:class:`ColumnCheck`): the atomic columns of its denoised target frame
(:func:`etem.analysis.columns.find_columns` with the movie's ``columns`` settings) matched
one to one (:func:`etem.analysis.matching.match_columns`, ``columns.match_radius_A``) to
those found on the mean of the target's segment of raw frames *outside* its window (noise
independent of the estimate); recall, precision and F1 pooled over the targets
(``column_recall``, ``column_precision``, ``column_f1``), each corrected for chance like
Cohen's kappa: the matches expected between unrelated point sets of the same numbers,
``m0 = n_ref (1 - exp(-n_found pi r² / A))`` (match radius r, frame area A), are removed from
the matches and from both counts (``(m - m0) / (n - m0)``), so a candidate that finds a blob
everywhere (noise read as columns) does not gain recall by covering the frame. A candidate
whose F1 falls more than ``apply.inference.column_f1_margin`` below the best F1 of the
candidates ``auto`` may choose (any of their scored points; ``columns_agree`` False) is not
what ``auto`` uses, and the width and parameters of a classical candidate are the lowest-uMSE
ones among those whose columns agree. Measured on movies with known columns
(``benchmarks/column_agreement.py``, ``benchmarks/selection_events.py``): it stops a wide
Gaussian from erasing a particle's columns. Without columns (pixels too coarse, no fringes,
fewer than :data:`MIN_REFERENCE_COLUMNS` on the raw
mean) the agreement is not measured (NaN) and the choice is by uMSE alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage

from etem.analysis.baselines import WIENER_ALPHA, WIENER_SMOOTH_PX, wiener
from etem.analysis.columns import find_columns, guess_polarity
from etem.analysis.lattice import columns_resolvable
from etem.analysis.matching import match_columns
from etem.analysis.umse import UMSEResult, block_se, upsnr
from etem.config import ColumnsConfig
from etem.config.apply import CLASSICAL
from etem.errors import InputError

log = logging.getLogger(__name__)

#: Widths [px] of the Gaussian-filter candidates; the best one is reported as ``gaussian``.
GAUSSIAN_SIGMAS_PX = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
#: Over-subtraction factors and periodogram smoothings [frequency px] of the Wiener-filter
#: candidates (every pair is scored); the best pair is reported as ``wiener``. The smoothing
#: is chosen per movie too: etem's campaign favours 5, bulk crystals of other fields 3
#: (benchmarks/pretrained.md: a fixed choice loses 1.5-1.9 dB on one or the other).
WIENER_ALPHAS = (2.0, 4.0, 8.0)
WIENER_SMOOTHS_PX = (3, 5)
#: Leading frames whose summed SURE chooses the Wiener filter's pair on a movie uMSE cannot
#: score (:func:`etem.analysis.baselines.wiener_sure_choice`; :mod:`etem.movies.prepare`).
SURE_FRAMES = 8
# CLASSICAL (etem.config.apply, imported above): the candidates that are not networks
# (``denoise_with: auto`` may choose them too).
#: Targets scored per movie at most (spread evenly over the frames available).
MAX_TARGETS = 8
#: Columns of the score table (``denoiser_scores.csv``): ``sigma_px`` the Gaussian's width
#: [px], ``wiener_alpha`` and ``wiener_smooth_px`` the Wiener filter's over-subtraction and
#: periodogram smoothing [frequency px], NaN on the other rows.
#: ``column_recall``, ``column_precision``, ``column_f1``: agreement of the columns found on its
#: denoised targets with those of the raw frames' mean (module docstring; NaN: not measured),
#: ``columns_agree``: F1 within ``apply.inference.column_f1_margin`` of the best.
SCORE_COLUMNS = ("candidate", "network", "umse", "umse_se", "upsnr_dB", "gain_dB",
                 "sigma_px", "wiener_alpha", "wiener_smooth_px", "n_targets", "column_recall",
                 "column_precision", "column_f1", "columns_agree", "chosen")
#: Fewest columns on the raw frames' mean of a target for the column agreement to be measured.
MIN_REFERENCE_COLUMNS = 10
#: Reference columns compared per candidate at least: targets are added (evenly spread) until
#: their reference columns reach this many (a 1024² frame holds thousands: one target).
COLUMN_MATCHES = 1000
#: Default of ``apply.inference.column_f1_margin``.
COLUMN_F1_MARGIN = 0.1

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


@dataclass(frozen=True)
class Agreement:
    """Columns of a candidate's denoised targets against the raw frames' (NaN: not measured)."""

    recall: float = math.nan
    precision: float = math.nan
    f1: float = math.nan


@dataclass(frozen=True)
class ColumnCheck:
    """How candidates' columns are compared with the raw frames' (module docstring): the
    movie's column settings, its pixel size [Å], the column polarity (``auto``: from the raw
    frames' mean) and the F1 margin of ``auto``."""

    settings: ColumnsConfig
    pixel_size_A: float
    polarity: str = "auto"
    f1_margin: float = COLUMN_F1_MARGIN

    def find(self, image: np.ndarray, polarity: str) -> pd.DataFrame:
        """Columns of ``image`` as the analysis finds them (positions in Å)."""
        b = self.settings
        return find_columns(image, self.pixel_size_A, b.blob_min_sigma_A, b.blob_max_sigma_A,
                            b.blob_threshold, refine=b.refine,
                            polarity=polarity)  # type: ignore[arg-type]


@dataclass
class ColumnReference:
    """The raw frames' columns of the targets the candidates' columns are compared on."""

    check: ColumnCheck
    polarity: str
    columns: dict[int, pd.DataFrame] = field(default_factory=dict)

    def agreement(self, denoise: DenoiseTarget) -> Agreement:
        """Recall, precision and F1 of the columns of ``denoise``'s targets, pooled over
        them and corrected for chance (module docstring), at least 0."""
        n_found = n_ref = n_matched = 0
        chance = 0.0
        radius = self.check.settings.match_radius_A
        disc_px = math.pi * (radius / self.check.pixel_size_A) ** 2
        for t, ref in self.columns.items():
            frame = np.asarray(denoise(t), dtype=np.float32)
            found = self.check.find(frame, self.polarity)
            n_found, n_ref = n_found + len(found), n_ref + len(ref)
            n_matched += len(match_columns(found, ref, radius)[0])
            chance += len(ref) * -math.expm1(-len(found) * disc_px / frame.size)
        kept = max(n_matched - chance, 0.0)
        recall = kept / (n_ref - chance) if n_ref > chance else 0.0
        precision = kept / (n_found - chance) if n_found > chance else 0.0
        f1 = 2 * kept / (n_found + n_ref - 2 * chance) if n_found + n_ref > 2 * chance else 0.0
        return Agreement(recall, precision, f1)


def column_reference(
    check: ColumnCheck,
    frames: np.ndarray | Mapping[int, np.ndarray],
    targets: Sequence[int],
    half_window: int,
    breaks: Sequence[int] = (),
) -> ColumnReference | None:
    """Columns of the mean of each compared target's segment of ``frames`` without its window
    ``t-h .. t+h``; targets evenly spread, as many as :data:`COLUMN_MATCHES` columns need.
    None when the first target's mean shows no columns to compare: too coarse pixels or no
    lattice fringes (:func:`etem.analysis.lattice.columns_resolvable`), or fewer than
    :data:`MIN_REFERENCE_COLUMNS` columns."""
    available = list(range(len(frames))) if isinstance(frames, np.ndarray) else list(frames)
    cuts = sorted(breaks)

    def mean_outside_window(t: int) -> np.ndarray | None:
        lo = max([b for b in cuts if b <= t], default=0)
        hi = min([b for b in cuts if b > t], default=math.inf)
        use = [i for i in available if lo <= i < hi and abs(i - t) > half_window]
        if not use:
            return None
        return np.mean([np.asarray(frames[i], dtype=np.float64) for i in use], axis=0)

    if not targets:
        return None
    first = mean_outside_window(targets[0])
    if first is None:
        return None
    seen = columns_resolvable(first, check.pixel_size_A, check.settings.max_pixel_size_A)
    if not seen.resolvable:
        return None
    polarity = check.polarity if check.polarity != "auto" else guess_polarity(first)
    ref = ColumnReference(check, polarity)
    ref.columns[targets[0]] = check.find(first, polarity)
    n_first = len(ref.columns[targets[0]])
    if n_first < MIN_REFERENCE_COLUMNS:
        return None
    k = min(len(targets), math.ceil(COLUMN_MATCHES / n_first))
    for i in sorted(set(np.linspace(0, len(targets) - 1, k).round().astype(int).tolist())):
        t = targets[i]
        mean = first if t == targets[0] else mean_outside_window(t)
        if mean is not None and t not in ref.columns:
            ref.columns[t] = check.find(mean, polarity)
    return ref


#: A scored point of a candidate: its parameters (score-table columns), uMSE and columns.
_Point = tuple[dict[str, float], UMSEResult, Agreement]


# long (~60 lines): the grid of every candidate scored the same way, then one point each.
def score_candidates(
    networks: Mapping[str, DenoiseTarget],
    frames: np.ndarray | Mapping[int, np.ndarray],
    targets: Sequence[int],
    half_window: int,
    block_px: int = 16,
    *,
    dose_e_per_px: float,
    dqe: float = 1.0,
    columns: ColumnCheck | None = None,
    breaks: Sequence[int] = (),
    allowed: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score the raw frame, the Gaussian filters, the Wiener filters and every network
    (name -> denoiser) on ``frames`` (intensity, vacuum = 1; their counts are the frames x
    ``dose_e_per_px``, with detector DQE ``dqe``: the Wiener filter's noise power), by uMSE
    and, with ``columns``, by column agreement (module docstring; ``breaks``: the frames that
    start a new segment) with the best F1 of the candidates ``auto`` may choose (``allowed``;
    all by default).

    Returns the table of :data:`SCORE_COLUMNS`, one row per candidate (a classical one at its
    lowest-uMSE parameters among those whose columns agree; when none agree, at its best
    column F1), best candidate first (lowest uMSE); the column ``chosen`` is left False (set by
    the caller for the candidate it uses).
    """
    mean = np.mean([np.asarray(frames[t], dtype=np.float64) for t in targets], axis=0)
    peak = float(np.percentile(mean, 99.9))
    if not peak > 0:
        raise InputError(f"uPSNR: the frames' 99.9th percentile is {peak} (no signal)")
    ref = (column_reference(columns, frames, targets, half_window, breaks)
           if columns is not None else None)
    if columns is not None and ref is None:
        log.info("column agreement not measured: no columns to compare on the raw frames' "
                 "mean (no lattice fringes, or fewer than %d columns)", MIN_REFERENCE_COLUMNS)

    def point(params: dict[str, float], denoise: DenoiseTarget) -> _Point:
        r = umse_targets(denoise, frames, targets, half_window, block_px)
        return params, r, ref.agreement(denoise) if ref is not None else Agreement()

    def filtered(f: FrameFilter) -> DenoiseTarget:
        return lambda t: f(frames[t])

    grids: dict[str, list[_Point]] = {
        "raw": [point({}, filtered(np.asarray))],
        "gaussian": [point({"sigma_px": s}, filtered(gaussian_denoise(s)))
                     for s in GAUSSIAN_SIGMAS_PX],
        "wiener": [point({"wiener_alpha": a, "wiener_smooth_px": sm},
                         filtered(wiener_denoise(a, dose_e_per_px, dqe, sm)))
                   for sm in WIENER_SMOOTHS_PX for a in WIENER_ALPHAS],
    }
    for name, fn in networks.items():
        grids[name] = [point({}, fn)]
    bar = [g for name, g in grids.items() if allowed is None or name in allowed] or list(
        grids.values())
    best_f1 = max((ag.f1 for g in bar for _, _, ag in g if not math.isnan(ag.f1)),
                  default=math.nan)
    margin = columns.f1_margin if columns is not None else COLUMN_F1_MARGIN

    def agrees(ag: Agreement) -> bool:
        return math.isnan(ag.f1) or ag.f1 >= best_f1 - margin

    rows: list[dict[str, object]] = []
    nan = float("nan")
    for name, grid in grids.items():
        ok = [p for p in grid if agrees(p[2])]
        params, r, ag = (min(ok, key=lambda p: p[1].umse) if ok
                         else max(grid, key=lambda p: p[2].f1))
        rows.append({"candidate": name, "network": name in networks, "umse": r.umse,
                     "umse_se": r.se, "upsnr_dB": upsnr(r.umse, peak),
                     "sigma_px": params.get("sigma_px", nan),
                     "wiener_alpha": params.get("wiener_alpha", nan),
                     "wiener_smooth_px": params.get("wiener_smooth_px", nan),
                     "n_targets": len(targets), "column_recall": ag.recall,
                     "column_precision": ag.precision, "column_f1": ag.f1,
                     "columns_agree": agrees(ag), "chosen": False})
    table = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    raw = float(table.loc[table.candidate == "raw", "umse"].iloc[0])
    table["gain_dB"] = [
        10 * np.log10(raw / u) if u > 0 and raw > 0 else float("nan") for u in table.umse
    ]
    return table.sort_values("umse", kind="stable").reset_index(drop=True)


def _agreeing(scores: pd.DataFrame) -> pd.Series:
    """Rows whose columns agree (all rows of a table without the column)."""
    if "columns_agree" not in scores:
        return pd.Series(True, index=scores.index)
    return scores.columns_agree.fillna(True).astype(bool)


def best_candidate(scores: pd.DataFrame, allowed: Sequence[str] | None = None) -> str:
    """The candidate of the lowest uMSE among those whose columns agree (among ``allowed``;
    all by default); when no allowed candidate's columns agree, the allowed one of the best
    column F1."""
    t = scores if allowed is None else scores[scores.candidate.isin(list(allowed))]
    if t.empty:
        raise InputError("no denoiser candidate to choose from (scored: "
                         f"{', '.join(map(str, scores.candidate))}; allowed: "
                         f"{', '.join(allowed or [])}: apply.inference.auto_candidates)")
    ok = t[_agreeing(t)]
    if ok.empty:
        return str(t.sort_values("column_f1", ascending=False, kind="stable").candidate.iloc[0])
    return str(ok.sort_values("umse", kind="stable").candidate.iloc[0])


#: Said in the summary and the log whenever the Wiener filter denoises a movie.
WIENER_CAVEAT = (
    "the Wiener filter keeps only periodic signal: vacancies, surface changes and the vacuum "
    "around a particle come out with lattice painted in (benchmarks/selection.md); check "
    "local defects on the raw frame sums or with denoise_with gaussian or a network")


def hurting(scores: pd.DataFrame, chosen: str,
            auto_candidates: Sequence[str] | None = None) -> str:
    """A warning when the chosen candidate's columns disagree with the raw frames' (its column
    F1 beyond the margin below the best), or when it scores worse than a classical one whose
    columns agree: the raw frames, a Gaussian or the Wiener filter ('' otherwise). The advice
    names ``auto`` when auto may choose the better one (``auto_candidates``; all by default),
    else that one."""
    if chosen not in set(scores.candidate):
        return ""
    agree = dict(zip(scores.candidate, _agreeing(scores), strict=True))
    umse = {str(c): float(u) for c, u in zip(scores.candidate, scores.umse, strict=True)}
    db = {str(c): float(u) for c, u in zip(scores.candidate, scores.upsnr_dB, strict=True)}

    def advice(best: str) -> str:
        return "auto" if auto_candidates is None or best in auto_candidates else best

    said = []
    if not agree[chosen]:
        f1 = dict(zip(scores.candidate, scores.column_f1, strict=True))
        best = max(f1, key=lambda c: f1[c])
        said.append(
            f"the {chosen} denoiser's columns disagree with those of the raw frames' mean on "
            f"this movie (F1 {f1[chosen]:.2f} vs {f1[best]:.2f} with {best}): it erases or "
            f"invents columns; use apply.inference.denoise_with: {advice(best)}")
    worse = [c for c in CLASSICAL
             if c in umse and c != chosen and agree[c] and umse[c] < umse[chosen]]
    if worse:
        best = min(worse, key=umse.__getitem__)
        hurts = ": denoising hurts here" if best == "raw" else ""
        said.append(f"the {chosen} denoiser scores below '{best}' on this movie (uPSNR "
                    f"{_db(db[chosen])} vs {_db(db[best])}){hurts}; use "
                    f"apply.inference.denoise_with: {advice(best)}")
    return "; ".join(said)


def _db(upsnr_dB: float) -> str:
    """A uPSNR for a message: NaN when the uMSE estimate is <= 0 (an error below its noise,
    e.g. a Wiener filter on a clean lattice)."""
    return "(uMSE <= 0: above the measurable)" if np.isnan(upsnr_dB) else f"{upsnr_dB:.2f} dB"
