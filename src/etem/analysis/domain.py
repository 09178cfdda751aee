"""A model's training distribution and whether a movie lies inside it.

Training records, in the model file's metadata (``meta["training_distribution"]``), the
ranges of what the network saw: pixel size [Å], dose [e/Å² and e/px], the apparent
column width [Å] measured on clean training images by :func:`column_fwhm_A`, and the
contrast regimes of its training images (``contrast_regimes``: regime -> fraction, from the
simulation index's ``contrast_regime`` column; absent in older model files: "unknown").
``etem apply`` measures the same quantities on the movie and :func:`domain_warnings` lists,
one sentence each, what falls outside (see :func:`warning_line` for the single line shown
to the user). This module is the one reader and writer of that record.

Contrast regime of a movie (:func:`contrast_estimate`)
-----------------------------------------------------
Whether atom columns are brighter or darker than their surroundings, estimated on the raw
frames without knowing where the columns are. Sparse sharp columns make the intensity
distribution skewed: positively for bright atoms, negatively for dark ones (the skewness is
the sum of the image's Fourier triplets F(k1) F(k2) F(-k1-k2), which for a lattice of
positive peaks seen through a transfer T(k) carry the sign of T(k1) T(k2) T(k1+k2): + for
bright, - for dark atoms, mixed for the intermediate regime). The estimate is the skewness of
the image band-passed to the lattice band ``CONTRAST_BAND_PER_NM`` (2-8 nm⁻¹, the band of the
simulation's contrast index), made unbiased for the noise by three *independent* copies of
the scene: the frames split into three interleaved groups (t mod 3; with fewer than 3
frames, three 2x2 sub-lattices of the summed frame). With g1, g2, g3 the band-passed copies,
E[g1 g2 g3] and E[gi gj] are the signal's third and second moments whatever the noise
(shot noise, DQE, read noise, signal-dependent variance), as long as it is independent
between frames; the skewness is m3 / m2^1.5 and its standard error is approximated as
((m2 + v_noise) / m2)^1.5 / sqrt(N), N the real degrees of freedom of the band (v_noise from
the differences of the copies; checked against the spread over noise draws). Regime:
``bright`` above :data:`BRIGHT_ABOVE`, ``dark`` below :data:`DARK_BELOW`, else
``intermediate``; ``unknown`` when the band holds no significant signal (m2 within
3 (m2 + v_noise) / sqrt(N) of 0) or when skewness ± :data:`CONTRAST_Z` standard errors
reaches both the bright and the dark side (bright and dark are undecided: a call of 'dark'
is never within two standard errors of 'bright'). Thresholds and their agreement with the
simulation's labels: ``benchmarks/contrast_regime.py`` (dark is told from the rest reliably;
bright and intermediate overlap, as their images do: an intermediate transfer often leaves
sparse bright features between the atoms).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.signal import windows

#: relative margins outside which a value counts as outside the training range
PIXEL_MARGIN = 0.10
COLUMN_MARGIN = 0.25

#: the imaging mode of every etem training image: HRTEM (a camera image of the transmitted
#: beam; etem's campaign simulates multislice HRTEM only), as etem.frames.readers names it
TRAINING_IMAGING_MODE = "TEM"
#: the contrast regimes of atom columns (as etem.simulation.microscope.CONTRAST_REGIMES)
CONTRAST_REGIMES = ("bright", "dark", "intermediate")
#: band [1/nm] of the contrast estimate (the simulation's ``contrast_band_per_nm`` default)
CONTRAST_BAND_PER_NM = (2.0, 8.0)
#: band-limited skewness above which atoms count as bright, below which as dark
BRIGHT_ABOVE = 0.6
DARK_BELOW = -0.4
#: standard errors within which a regime call must hold (see :func:`contrast_estimate`)
CONTRAST_Z = 2.0
#: a regime below this fraction of the training images counts as not trained on
MIN_REGIME_FRACTION = 0.02


def column_fwhm_A(image: np.ndarray, pixel_size_A: float, max_lag_A: float = 4.0) -> float:
    """Apparent FWHM [Å] of the atomic columns of an image, from its autocorrelation.

    The autocorrelation of a lattice of Gaussian columns of FWHM w has a central peak of FWHM
    w sqrt(2). A Gaussian plus a constant is fitted to the radial profile at lags 1 pixel to
    70 % of its first minimum (the zero lag, where white shot noise adds its variance, is left
    out). Exact for separated columns; columns that overlap their neighbours (FWHM above
    about half the spacing) come out narrower. NaN if no peak can be measured.
    """
    img = np.asarray(image, dtype=np.float64)
    img = img - img.mean()
    if not np.any(img) or min(img.shape) < 12:
        return math.nan
    ac = np.fft.irfft2(np.abs(np.fft.rfft2(img)) ** 2, s=img.shape)
    n_lag = int(min(max(4, round(max_lag_A / pixel_size_A)), min(img.shape) // 2 - 1))
    r = np.arange(1, n_lag + 1)
    prof = (ac[0, r] + ac[0, -r] + ac[r, 0] + ac[-r, 0]) / 4.0
    k = max(3, round((int(np.argmin(prof)) + 1) * 0.7))
    rr, pp = r[:k].astype(np.float64), prof[:k]
    if not pp[0] > pp[-1]:
        return math.nan

    def model(x: np.ndarray, a: float, s: float, b: float) -> np.ndarray:
        return a * np.exp(-(x**2) / (2 * s * s)) + b

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (_a, s, _b), _ = curve_fit(model, rr, pp,
                                       p0=(pp[0] - pp[-1], max(1.0, k / 2), pp[-1]),
                                       maxfev=2000)
    except (RuntimeError, ValueError):
        return math.nan
    w = abs(float(s)) * 2.0 * math.sqrt(2.0 * math.log(2.0)) / math.sqrt(2.0) * pixel_size_A
    return w if math.isfinite(w) else math.nan


@dataclass(frozen=True)
class ContrastEstimate:
    """The contrast regime of a movie (:func:`contrast_estimate`): ``regime`` (bright, dark,
    intermediate or unknown), the band-limited ``skewness`` and its standard error
    ``skewness_se`` (NaN when unmeasurable)."""

    regime: str
    skewness: float
    skewness_se: float

    def to_dict(self) -> dict[str, Any]:
        return {"regime": self.regime,
                "skewness": None if math.isnan(self.skewness) else round(self.skewness, 4),
                "skewness_se": None if math.isnan(self.skewness_se)
                else round(self.skewness_se, 4)}


UNKNOWN_CONTRAST = ContrastEstimate("unknown", math.nan, math.nan)


def _copies(frames: np.ndarray) -> tuple[list[np.ndarray], float]:
    """Three copies of the scene with independent noise (float64) and the pixel-size factor."""
    if frames.shape[0] >= 3:
        return [frames[j::3].mean(axis=0, dtype=np.float64) for j in range(3)], 1.0
    s = frames.mean(axis=0, dtype=np.float64)
    h, w = (s.shape[0] // 2) * 2, (s.shape[1] // 2) * 2
    s = s[:h, :w]
    return [s[0::2, 0::2], s[0::2, 1::2], s[1::2, 0::2]], 2.0


def contrast_estimate(
    frames: Any, pixel_size_A: float,
    band_per_nm: tuple[float, float] = CONTRAST_BAND_PER_NM, max_frames: int = 48,
) -> ContrastEstimate:
    """Contrast regime of the atom columns of a movie (see the module docstring).

    ``frames``: (T, H, W) raw (aligned) frames, the first ``max_frames`` used, or one
    (H, W) image [counts]; ``pixel_size_A`` [Å]. Unknown when the frames are too small, the
    band lies beyond the Nyquist frequency or holds no measurable signal.
    """
    arr = np.asarray(frames)
    if arr.ndim == 2:
        arr = arr[None]
    arr = arr[:max_frames]
    if arr.ndim != 3 or arr.shape[0] == 0 or not np.all(np.isfinite(arr)) or not (
            pixel_size_A and math.isfinite(pixel_size_A) and pixel_size_A > 0):
        return UNKNOWN_CONTRAST
    copies, factor = _copies(arr)
    px = float(pixel_size_A) * factor
    ny, nx = copies[0].shape
    if min(ny, nx) < 16:
        return UNKNOWN_CONTRAST
    lo, hi = band_per_nm[0] / 10.0, min(band_per_nm[1] / 10.0, 0.5 / px)  # 1/Å
    k = np.hypot(np.fft.fftfreq(ny, px)[:, None], np.fft.rfftfreq(nx, px)[None, :])
    mask = (k >= lo) & (k <= hi)
    n_dof = 2 * int(mask.sum())
    if lo >= hi or n_dof < 16:
        return UNKNOWN_CONTRAST
    taper = np.outer(windows.tukey(ny, 0.2), windows.tukey(nx, 0.2))
    g = [np.fft.irfft2(np.fft.rfft2((c - c.mean()) * taper) * mask, s=(ny, nx))
         for c in copies]
    pairs = ((0, 1), (0, 2), (1, 2))
    m2 = float(np.mean([np.mean(g[i] * g[j]) for i, j in pairs]))
    m3 = float(np.mean(g[0] * g[1] * g[2]))
    v_noise = float(np.mean([np.mean((g[i] - g[j]) ** 2) for i, j in pairs])) / 2.0
    if not m2 > 3.0 * (m2 + v_noise) / math.sqrt(n_dof):  # no significant signal
        return UNKNOWN_CONTRAST
    skewness = m3 / m2**1.5
    se = ((m2 + v_noise) / m2) ** 1.5 / math.sqrt(n_dof)
    if skewness - CONTRAST_Z * se < DARK_BELOW and skewness + CONTRAST_Z * se > BRIGHT_ABOVE:
        return ContrastEstimate("unknown", skewness, se)
    return ContrastEstimate(contrast_regime_of(skewness), skewness, se)


def contrast_regime_of(skewness: float) -> str:
    """The regime of a band-limited skewness (:data:`BRIGHT_ABOVE`, :data:`DARK_BELOW`)."""
    if not math.isfinite(skewness):
        return "unknown"
    if skewness > BRIGHT_ABOVE:
        return "bright"
    if skewness < DARK_BELOW:
        return "dark"
    return "intermediate"


def regime_fractions(regimes: Any) -> dict[str, float]:
    """Fractions of the contrast regimes among training images (index column
    ``contrast_regime``); names other than :data:`CONTRAST_REGIMES` (empty: not recorded)
    are left out, and no valid name gives {}."""
    names = [str(v) for v in regimes if str(v) in CONTRAST_REGIMES]
    if not names:
        return {}
    return {r: names.count(r) / len(names) for r in CONTRAST_REGIMES if r in names}


def trained_regimes(meta: dict[str, Any]) -> list[str] | None:
    """The contrast regimes a model was trained on (at least :data:`MIN_REGIME_FRACTION` of
    its images); None when its file does not record them (older model files)."""
    rec = (meta.get("training_distribution") or {}).get("contrast_regimes")
    if not isinstance(rec, dict) or not rec:
        return None
    return [r for r in CONTRAST_REGIMES if float(rec.get(r, 0.0)) >= MIN_REGIME_FRACTION]


def contrast_record(meta: dict[str, Any] | None, estimate: ContrastEstimate) -> dict[str, Any]:
    """The summary's ``contrast`` entry: the movie's estimate and the regimes the model was
    trained on (``"unknown"`` for model files without them, None without a network)."""
    out = estimate.to_dict()
    if meta is None:
        out["trained_regimes"] = None
    else:
        tr = trained_regimes(meta)
        out["trained_regimes"] = "unknown" if tr is None else tr
    return out


def training_distribution(
    pixel_sizes_A: Any, dose_e_per_A2: tuple[float, float], column_fwhms_A: Any,
    detector_pixels_A: Any = (), contrast_regimes: Any = (),
) -> dict[str, Any]:
    """The ``training_distribution`` record of a model file (ranges of what it saw);
    ``contrast_regimes``: the regime of each training image (recorded as fractions)."""
    px = np.asarray(pixel_sizes_A, dtype=np.float64)
    px = px[np.isfinite(px)]
    cw = np.asarray(column_fwhms_A, dtype=np.float64)
    cw = cw[np.isfinite(cw)]
    dp = np.asarray(detector_pixels_A, dtype=np.float64)
    dp = dp[np.isfinite(dp) & (dp > 0)]
    lo, hi = float(dose_e_per_A2[0]), float(dose_e_per_A2[1])
    out: dict[str, Any] = {"dose_e_per_A2": [lo, hi]}
    if len(px):
        out["pixel_size_A"] = [float(px.min()), float(px.max())]
        out["dose_e_per_px"] = [lo * float(px.min()) ** 2, hi * float(px.max()) ** 2]
    if len(cw):
        out["column_fwhm_A"] = [float(np.percentile(cw, 5)), float(np.percentile(cw, 95))]
    if len(dp):
        out["detector_pixel_A"] = [float(dp.min()), float(dp.max())]
    fractions = regime_fractions(contrast_regimes)
    if fractions:
        out["contrast_regimes"] = fractions
    return out


def _range_of(meta: dict[str, Any], key: str) -> tuple[float, float] | None:
    dist = meta.get("training_distribution") or {}
    v = dist.get(key)
    if v is None and key == "pixel_size_A" and meta.get("pixel_size_A"):
        v = [meta["pixel_size_A"], meta["pixel_size_A"]]
    if v is None and key == "dose_e_per_px":
        v = meta.get("train_dose_e_per_px")
    if v is None:
        return None
    lo, hi = float(v[0]), float(v[1])
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def domain_warnings(
    meta: dict[str, Any], pixel_size_A: float | None, dose_e_per_px: float | None,
    column_fwhm: float | None = None, contrast: ContrastEstimate | None = None,
    imaging_mode: str | None = None,
) -> list[str]:
    """What about a movie lies outside the model's training distribution (empty: nothing).

    ``pixel_size_A`` [Å] and ``dose_e_per_px`` [e/px per frame] as the network sees them
    (after binning); ``column_fwhm`` [Å] measured by :func:`column_fwhm_A` on the movie;
    ``contrast``: the movie's :func:`contrast_estimate` (no warning when it or the model's
    regimes are unknown); ``imaging_mode``: ``TEM``/``STEM`` as the movie's file records it
    (:func:`etem.frames.readers.imaging_mode`; None: not recorded, nothing said). Models
    without a recorded distribution fall back to their ``pixel_size_A`` and
    ``train_dose_e_per_px``; every etem model is trained on HRTEM images
    (:data:`TRAINING_IMAGING_MODE`).
    """
    out: list[str] = []
    if imaging_mode is not None and imaging_mode != TRAINING_IMAGING_MODE:
        out.append(f"imaging mode {imaging_mode} (the file's metadata): the network was "
                   f"trained on {TRAINING_IMAGING_MODE} (HRTEM phase-contrast) images, not "
                   "scanned-probe images")
    r = _range_of(meta, "pixel_size_A")
    if r and pixel_size_A and not (
            r[0] * (1 - PIXEL_MARGIN) <= pixel_size_A <= r[1] * (1 + PIXEL_MARGIN)):
        out.append(f"pixel size {pixel_size_A:.4g} Å outside the training range "
                   f"{r[0]:.4g}-{r[1]:.4g} Å")
    r = _range_of(meta, "dose_e_per_px")
    if r and dose_e_per_px:
        if dose_e_per_px < r[0]:
            out.append(f"dose {dose_e_per_px:.3g} e/px below the lowest training dose "
                       f"{r[0]:.3g} e/px")
        elif dose_e_per_px > r[1]:
            out.append(f"dose {dose_e_per_px:.3g} e/px above the training range "
                       f"{r[0]:.3g}-{r[1]:.3g} e/px")
    r = _range_of(meta, "column_fwhm_A")
    if r and column_fwhm is not None and math.isfinite(column_fwhm) and not (
            r[0] * (1 - COLUMN_MARGIN) <= column_fwhm <= r[1] * (1 + COLUMN_MARGIN)):
        out.append(f"estimated column width {column_fwhm:.2f} Å outside the training range "
                   f"{r[0]:.2f}-{r[1]:.2f} Å")
    trained = trained_regimes(meta)
    if contrast is not None and trained is not None and contrast.regime in CONTRAST_REGIMES \
            and contrast.regime not in trained:
        out.append(f"contrast regime '{contrast.regime}' (estimated on the movie: "
                   f"band skewness {contrast.skewness:+.2f}) not among the training regimes "
                   f"({', '.join(trained) or 'none'})")
    return out


def warning_line(model_kind: str, warnings: list[str]) -> str:
    """The one line shown to the user ('' when there is nothing to say)."""
    if not warnings:
        return ""
    return (f"movie outside the {model_kind} model's training distribution: "
            + "; ".join(warnings) + " (results may be unreliable)")
