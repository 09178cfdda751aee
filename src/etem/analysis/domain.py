"""A model's training distribution and whether a movie lies inside it.

Training records, in the model file's metadata (``meta["training_distribution"]``), the
ranges of what the network saw: pixel size [Å], dose [e/Å² and e/px], and the apparent
column width [Å] measured on clean training images by :func:`column_fwhm_A`. ``etem apply``
measures the same quantities on the movie and :func:`domain_warnings` lists, one sentence
each, what falls outside (see :func:`warning_line` for the single line shown to the user).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

#: relative margins outside which a value counts as outside the training range
PIXEL_MARGIN = 0.10
COLUMN_MARGIN = 0.25


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


def training_distribution(
    pixel_sizes_A: Any, dose_e_per_A2: tuple[float, float], column_fwhms_A: Any,
    detector_pixels_A: Any = (),
) -> dict[str, Any]:
    """The ``training_distribution`` record of a model file (ranges of what it saw)."""
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
    column_fwhm: float | None = None,
) -> list[str]:
    """What about a movie lies outside the model's training distribution (empty: nothing).

    ``pixel_size_A`` [Å] and ``dose_e_per_px`` [e/px per frame] as the network sees them
    (after binning); ``column_fwhm`` [Å] measured by :func:`column_fwhm_A` on the movie.
    Models without a recorded distribution fall back to their ``pixel_size_A`` and
    ``train_dose_e_per_px``.
    """
    out: list[str] = []
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
    return out


def warning_line(model_kind: str, warnings: list[str]) -> str:
    """The one line shown to the user ('' when there is nothing to say)."""
    if not warnings:
        return ""
    return (f"movie outside the {model_kind} model's training distribution: "
            + "; ".join(warnings) + " (results may be unreliable)")
