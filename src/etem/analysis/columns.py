"""Atomic-column finding: Laplacian-of-Gaussian blobs, then sub-pixel refinement.

The procedure follows Mohan et al. (scikit-image ``blob_log`` on the denoised image) and
Atomap-style refinement: an intensity-weighted centroid or a 2D Gaussian fit around each blob
gives sub-pixel positions, widths and integrated intensities above the local background.

Coordinates: ``x`` is the column index, ``y`` the row index of the image array, in pixels
from the centre of pixel (0, 0); ``x_A = x_px * pixel_size_A``.

Long module (about 570 lines): one algorithm (detection, FFT Laplacian-of-Gaussian, centroid
and vectorised Gaussian refinement) whose parts share their conventions; split, the
coordinate conventions above would have to be stated twice.
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

import numpy as np
import pandas as pd
from scipy import fft, ndimage, spatial

from etem.errors import InputError

log = logging.getLogger("etem.analysis.columns")

#: Columns of the table returned by :func:`find_columns`.
COLUMN_FIELDS = ("x_px", "y_px", "x_A", "y_A", "sigma_A", "intensity", "peak")
#: Percentiles of the image that ``find_columns`` maps to 0 and 1 before ``blob_log``.
ROBUST_RANGE_PERCENT = (0.1, 99.9)

Polarity = Literal["bright", "dark", "auto"]


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InputError(f"column finding needs a 2D image, got shape {arr.shape}")
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InputError("column finding: image is empty or has NaN/inf values")
    return arr.astype(np.float64, copy=False)


def guess_polarity(image: np.ndarray) -> Literal["bright", "dark"]:
    """``bright`` when the intensity distribution is not negatively skewed (sparse bright
    columns on a darker background), else ``dark`` (sparse dark columns)."""
    d = image - image.mean()
    return "bright" if float(np.mean(d**3)) >= 0 else "dark"


def oriented(image: np.ndarray, polarity: Polarity = "bright") -> np.ndarray:
    """The image with atomic columns bright.

    ``dark`` negates the image; ``auto`` negates it when the intensity distribution is
    negatively skewed (sparse dark columns on a brighter background).
    """
    img = _check_image(image)
    if polarity == "bright":
        return img
    if polarity == "dark":
        return -img
    if polarity == "auto":
        return img if guess_polarity(img) == "bright" else -img
    raise InputError(f"polarity must be 'bright', 'dark' or 'auto', got {polarity!r}")


# long (86 lines): mostly the documented parameters; the body is detection, polarity,
# refinement and the table.
def find_columns(
    image: np.ndarray,
    pixel_size_A: float,
    min_sigma_A: float = 0.3,
    max_sigma_A: float = 1.2,
    threshold: float = 0.05,
    refine: Literal["centroid", "gaussian", "none"] = "centroid",
    polarity: Polarity = "bright",
    num_sigma: int = 5,
    exclude_border_px: int = 0,
) -> pd.DataFrame:
    """Find atomic columns in an image.

    Detection is scikit-image's ``blob_log`` (scale-normalised Laplacian of Gaussian at
    ``num_sigma`` scales, 3x3x3 local maxima above ``threshold``, overlapping blobs pruned),
    computed here with FFT filtering (same result, several times faster); the sub-pixel
    refinement runs on all columns at once (vectorised over columns of one scale).

    Parameters
    ----------
    image : ndarray (H, W)
        Image with bright columns (a denoised image; use ``polarity`` for dark columns).
    pixel_size_A : float
        Pixel size [Å].
    min_sigma_A, max_sigma_A : float
        Range of Gaussian widths of the columns searched by ``blob_log`` [Å].
    threshold : float
        ``blob_log`` threshold on the image rescaled so that its 0.1 and 99.9 % percentiles
        map to 0 and 1 (relative, dimensionless; percentiles rather than min / max so that
        one outlier pixel does not change the detections of a whole frame).
    refine : {'centroid', 'gaussian', 'none'}
        Sub-pixel refinement: intensity-weighted centroid above the local background, or a
        least-squares fit of a 2D Gaussian plus constant (columns whose fit fails or runs
        away fall back to the centroid).
    polarity : {'bright', 'dark', 'auto'}
        Contrast of the columns (see :func:`oriented`).
    num_sigma : int
        Number of scales between the two widths.
    exclude_border_px : int
        Ignore blobs closer than this to the edge [px].

    Returns
    -------
    DataFrame
        One row per column: ``x_px, y_px`` (sub-pixel, x = column index) [px],
        ``x_A, y_A`` [Å], ``sigma_A`` (Gaussian width) [Å], ``intensity`` (integrated
        intensity above the local background, image units × px), ``peak`` (image value at
        the column minus local background). Sorted by row then column.
    """
    if pixel_size_A <= 0:
        raise InputError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    if not 0 < min_sigma_A <= max_sigma_A:
        raise InputError(
            f"need 0 < min_sigma_A <= max_sigma_A, got {min_sigma_A}, {max_sigma_A}"
        )
    if refine not in ("centroid", "gaussian", "none"):
        raise InputError(f"refine must be 'centroid', 'gaussian' or 'none', got {refine!r}")
    img = oriented(image, polarity)
    # robust range: the extreme pixels of a (denoised) frame fluctuate from frame to frame
    # (one bright outlier halves every scaled column), the 0.1 / 99.9 % percentiles do not
    lo, hi = (float(v) for v in np.percentile(img, ROBUST_RANGE_PERCENT))
    if hi - lo <= 0:
        lo, hi = float(img.min()), float(img.max())
        if hi - lo <= 0:
            return _empty()
    scaled = (img - lo) / (hi - lo)
    smin = max(min_sigma_A / pixel_size_A, 0.5)
    smax = max(max_sigma_A / pixel_size_A, smin)
    blobs = blob_log_fft(
        scaled, smin, smax, max(int(num_sigma), 1), threshold, int(exclude_border_px)
    )
    if len(blobs) == 0:
        return _empty()
    arr = refine_columns(img, blobs, refine)
    df = pd.DataFrame(
        {
            "x_px": arr[:, 1],
            "y_px": arr[:, 0],
            "x_A": arr[:, 1] * pixel_size_A,
            "y_A": arr[:, 0] * pixel_size_A,
            "sigma_A": arr[:, 2] * pixel_size_A,
            "intensity": arr[:, 3],
            "peak": arr[:, 4],
        }
    )
    return df.sort_values(["y_px", "x_px"], kind="mergesort").reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({k: np.zeros(0) for k in COLUMN_FIELDS})


# -- detection -------------------------------------------------------------------------------
def _gauss_kernels(sigma: float, truncate: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """scipy.ndimage's sampled Gaussian and second-derivative kernels (radius 4 sigma)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    s2 = sigma * sigma
    phi = np.exp(-0.5 / s2 * x**2)
    phi = phi / phi.sum()
    return phi, (-1.0 / s2 + x**2 / (s2 * s2)) * phi


def _kernel_dft(k: np.ndarray, n: int, real: bool) -> np.ndarray:
    """DFT of a centred symmetric 1D kernel placed circularly (origin at index 0) in length
    ``n``: real-valued (the kernel is even); the half spectrum when ``real``."""

    buf = np.zeros(n)
    r = len(k) // 2
    buf[: r + 1] = k[r:]
    buf[n - r :] = k[:r]
    return (fft.rfft(buf) if real else fft.fft(buf)).real


@functools.lru_cache(maxsize=4)
def _log_transfer(ny: int, nx: int, sigmas: tuple[float, ...]) -> np.ndarray:
    """Transfer functions (S, ny, nx // 2 + 1) of ``-s² (d²/dy² + d²/dx²)`` Gaussian filters
    (ndimage's sampled kernels), cached: every frame of a movie has the same shape."""
    out = np.empty((len(sigmas), ny, nx // 2 + 1))
    for i, s in enumerate(sigmas):
        g, d2 = _gauss_kernels(s)
        gy, dy = _kernel_dft(g, ny, False), _kernel_dft(d2, ny, False)
        gx, dx = _kernel_dft(g, nx, True), _kernel_dft(d2, nx, True)
        out[i] = (dy[:, None] * gx[None, :] + gy[:, None] * dx[None, :]) * (-s * s)
    out = out.astype(np.float32)
    out.setflags(write=False)
    return out


def log_stack(image: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Scale-normalised LoG ``-sigma² ∇²G_sigma * image`` at each sigma [px] -> (S, H, W).

    Equals ``-scipy.ndimage.gaussian_laplace(image, s) * s**2`` (mode 'reflect', kernels
    truncated at 4 sigma) to float32 rounding (~1e-7 of the image range): the image is
    padded by symmetric reflection by the largest kernel radius and filtered with the same
    sampled kernels in Fourier space, in single precision (twice as fast as double, and the
    float32 cube halves the memory traffic of the maximum search).
    """

    h, w = image.shape
    pad = int(4.0 * float(np.max(sigmas)) + 0.5)
    if pad > min(h, w):  # pragma: no cover - kernels wider than the image: direct filtering

        return np.stack(
            [-ndimage.gaussian_laplace(image, float(s)) * float(s) ** 2 for s in sigmas]
        ).astype(np.float32)
    padded = np.pad(np.asarray(image, dtype=np.float32), pad, mode="symmetric")  # 'reflect'
    ny = fft.next_fast_len(h + 2 * pad + 1, real=False)
    nx = fft.next_fast_len(w + 2 * pad + 1, real=True)
    spec = fft.rfft2(padded, s=(ny, nx), workers=-1)
    tf = _log_transfer(ny, nx, tuple(float(s) for s in sigmas))
    out = np.empty((len(sigmas), h, w), dtype=np.float32)
    for i in range(len(sigmas)):
        res = fft.irfft2(spec * tf[i], s=(ny, nx), workers=-1)
        out[i] = res[pad : pad + h, pad : pad + w]
    return out


def blob_log_fft(
    image: np.ndarray,
    min_sigma: float,
    max_sigma: float,
    num_sigma: int,
    threshold: float,
    exclude_border_px: int = 0,
    overlap: float = 0.5,
) -> np.ndarray:
    """``skimage.feature.blob_log`` (linear sigma scale, scalar sigmas) with FFT filtering.

    The same 3x3x3 maxima above ``threshold``, in the same order, and the same overlap
    pruning as scikit-image, on a LoG stack computed in float32 (:func:`log_stack`): only
    exact ties between neighbouring pixels (e.g. a noise-free column centred between two
    pixels) may be broken differently. Returns (n, 3) rows ``(row, col, sigma)`` [px].
    """
    sigmas = np.linspace(min_sigma, max_sigma, num_sigma)
    cube = log_stack(np.asarray(image), sigmas)
    # 3x3x3 maximum filter (mode 'nearest', as peak_local_max): 3x3 per scale, then over
    # neighbouring scales (the maximum is separable)
    cube_max = cube
    for axis in range(3):
        cube_max = _max3(cube_max, axis)
    mask = cube == cube_max
    del cube_max
    if mask.all():
        return np.zeros((0, 3))
    mask &= cube > np.float32(threshold)
    b = int(exclude_border_px)
    if b > 0:
        mask[:, :b] = False
        mask[:, -b:] = False
        mask[:, :, :b] = False
        mask[:, :, -b:] = False
    ss, rr, cc = np.nonzero(mask)
    if len(rr) == 0:
        return np.zeros((0, 3))
    # scikit-image orders the maxima by decreasing response, ties in (row, col, scale) order
    key = np.lexsort((ss, cc, rr))
    ss, rr, cc = ss[key], rr[key], cc[key]
    order = np.argsort(-cube[ss, rr, cc], kind="stable")
    ss, rr, cc = ss[order], rr[order], cc[order]
    blobs = np.stack([rr.astype(np.float64), cc.astype(np.float64), sigmas[ss]], axis=1)
    return _prune_blobs(blobs, overlap)


def _max3(a: np.ndarray, axis: int) -> np.ndarray:
    """Maximum over 3 neighbours along ``axis``, edges repeated (ndimage mode 'nearest')."""
    out = a.copy()
    if a.shape[axis] > 1:
        lo = [slice(None)] * a.ndim
        hi = [slice(None)] * a.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        np.maximum(out[tuple(hi)], a[tuple(lo)], out=out[tuple(hi)])
        np.maximum(out[tuple(lo)], a[tuple(hi)], out=out[tuple(lo)])
    return out


def _prune_blobs(blobs: np.ndarray, overlap: float) -> np.ndarray:
    """scikit-image's pruning of overlapping blobs (the smaller one goes), overlaps vectorised.

    Pairs are visited in scikit-image's order; a removed blob removes no other, so only the
    pairs overlapping by more than ``overlap`` need the sequential pass.
    """

    sig = blobs[:, 2]
    distance = 2 * float(sig.max()) * np.sqrt(2.0)
    pairs = np.array(list(spatial.cKDTree(blobs[:, :2]).query_pairs(distance)))
    if len(pairs) == 0:
        return blobs
    i, j = pairs[:, 0], pairs[:, 1]
    s1, s2 = sig[i], sig[j]
    big = np.where(s1 > s2, s1, s2)
    r1 = np.where(s1 > s2, 1.0, s1 / s2)
    r2 = np.where(s1 > s2, s2 / s1, 1.0)
    scale = big * np.sqrt(2.0)
    d = np.sqrt(((blobs[j, :2] / scale[:, None] - blobs[i, :2] / scale[:, None]) ** 2).sum(1))
    frac = np.zeros(len(pairs))
    inside = d <= np.abs(r1 - r2)
    frac[inside] = 1.0
    part = ~inside & (d <= r1 + r2)
    if part.any():
        dd, a1, a2 = d[part], r1[part], r2[part]
        acos1 = np.arccos(np.clip((dd**2 + a1**2 - a2**2) / (2 * dd * a1), -1, 1))
        acos2 = np.arccos(np.clip((dd**2 + a2**2 - a1**2) / (2 * dd * a2), -1, 1))
        a = -dd + a2 + a1
        b = dd - a2 + a1
        c = dd + a2 - a1
        e = dd + a2 + a1
        area = a1**2 * acos1 + a2**2 * acos2 - 0.5 * np.sqrt(np.abs(a * b * c * e))
        frac[part] = area / (np.pi * np.minimum(a1, a2) ** 2)
    alive = np.ones(len(blobs), dtype=bool)
    for k in np.flatnonzero(frac > overlap):
        p, q = int(i[k]), int(j[k])
        if alive[p] and alive[q]:
            alive[q if sig[p] > sig[q] else p] = False
    return blobs[alive]


# -- refinement ------------------------------------------------------------------------------
def refine_columns(img: np.ndarray, blobs: np.ndarray, method: str) -> np.ndarray:
    """Refine blobs ``(row, col, sigma [px])`` -> (n, 5) ``row, col, sigma [px], intensity, peak``.

    For each blob, a window of ``max(ceil(3 sigma), 2)`` px around it (clipped to the image);
    the local background is the median over the ring 2-3 sigma from the blob (the window's
    10th percentile when the ring has < 4 pixels); ``centroid`` iterates the background-
    subtracted, intensity-weighted centroid over a 2-sigma disk (at most 10 times; a step
    longer than sigma stops it at the previous position); ``gaussian`` fits
    ``A exp(-d²/2s²) + B`` (falls back to the centroid when the fit fails); the integrated
    intensity is the background-subtracted sum over the 2-sigma disk (2 pi A s² for a fit).
    Blobs of one sigma are processed together as an (n, k, k) stack of windows.
    """
    out = np.empty((len(blobs), 5), dtype=np.float64)
    if len(blobs) == 0:
        return out
    # one NaN-padded copy of the image for the windows of every scale
    pad = _half_window(float(blobs[:, 2].max()))
    padded = np.pad(img, pad, mode="constant", constant_values=np.nan)
    for s in np.unique(blobs[:, 2]):
        sel = np.flatnonzero(blobs[:, 2] == s)
        out[sel] = _refine_group(img, padded, pad, blobs[sel, 0], blobs[sel, 1], float(s), method)
    return out


def _half_window(sigma: float) -> int:
    """Half width [px] of a blob's refinement window: ``max(ceil(3 sigma), 2)``."""
    return max(int(np.ceil(3.0 * sigma)), 2)


def _windows(
    padded: np.ndarray, pad: int, r0: np.ndarray, c0: np.ndarray, half: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n, k, k) windows centred on integer pixels of the image padded by ``pad`` >= ``half``
    NaN pixels (NaN outside the image), validity mask."""
    k = 2 * half + 1
    # every k x k window of the padded image as a strided view: the gather copies whole
    # windows instead of indexing each pixel
    views = np.lib.stride_tricks.sliding_window_view(padded, (k, k))
    win = views[r0 + (pad - half), c0 + (pad - half)]
    valid = ~np.isnan(win)
    return win, valid


# long (~90 lines): one vectorised pass over a group of columns (windows, centroid iterations,
# optional Gaussian fit, quality flags); split, it would pass the same arrays back and forth.
def _refine_group(
    img: np.ndarray,
    padded: np.ndarray,
    pad: int,
    r: np.ndarray,
    c: np.ndarray,
    sigma: float,
    method: str,
) -> np.ndarray:
    n = len(r)
    half = _half_window(sigma)
    r0 = np.rint(r).astype(np.int64)
    c0 = np.rint(c).astype(np.int64)
    win, valid = _windows(padded, pad, r0, c0, half)
    d = np.arange(-half, half + 1, dtype=np.float64)
    dy, dx = d[None, :, None], d[None, None, :]  # offsets from (r0, c0) [px]
    # local background: median over the 2-3 sigma ring around the blob centre
    d2_0 = d[:, None] ** 2 + d[None, :] ** 2
    ring0 = (d2_0 >= (2.0 * sigma) ** 2) & (d2_0 <= (3.0 * sigma) ** 2)
    bg = np.empty(n)
    full = valid.all(axis=(1, 2))
    if full.any():
        rows_full = np.flatnonzero(full)
        bg[full] = np.median(
            win.reshape(n, -1)[np.ix_(rows_full, np.flatnonzero(ring0.ravel()))], axis=1
        )
    if (~full).any():
        part = np.flatnonzero(~full)
        ring = ring0[None] & valid[part]
        cnt = ring.sum(axis=(1, 2))
        ok = cnt >= 4
        wp = win[part]
        if ok.any():
            bg[part[ok]] = np.nanmedian(
                np.where(ring[ok], wp[ok], np.nan).reshape(int(ok.sum()), -1), axis=1
            )
        if (~ok).any():
            bg[part[~ok]] = np.nanpercentile(wp[~ok].reshape(int((~ok).sum()), -1), 10, axis=1)
    dr, dc = r - r0, c - c0  # sub-pixel position relative to (r0, c0) [px]
    sig = np.full(n, sigma)
    res = np.full((n, 5), np.nan)
    todo = np.ones(n, dtype=bool)
    if method == "gaussian":
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            fit = _gauss_fit_batch(win, valid, dy, dx, dr, dc, sigma, bg)
        good = ~np.isnan(fit[:, 0])
        res[good] = fit[good]
        res[good, 0] += r0[good]
        res[good, 1] += c0[good]
        todo = ~good
        method = "centroid"
    if not todo.any():
        return res
    idx = np.flatnonzero(todo)
    every = len(idx) == n
    winz = np.nan_to_num(win if every else win[idx])  # NaN (outside the image) -> 0
    vld = valid if every else valid[idx]
    above = np.where(vld, np.clip(winz - bg[idx, None, None], 0, None), 0)
    # absolute coordinates [px] (the same rounding as a per-column loop)
    ry = r0[idx, None, None].astype(np.float64) + dy
    cx = c0[idx, None, None].astype(np.float64) + dx
    pr, pc = r[idx].astype(np.float64), c[idx].astype(np.float64)
    if method == "centroid":
        active = np.arange(len(idx))
        lim2 = (2.0 * sigma) ** 2
        for _ in range(10):
            if len(active) == 0:
                break
            ar, ac = pr[active], pc[active]
            # the whole group on the first pass: no gathered copies
            a_all = len(active) == len(idx)
            ry_a, cx_a = (ry, cx) if a_all else (ry[active], cx[active])
            disk = (ry_a - ar[:, None, None]) ** 2 + (cx_a - ac[:, None, None]) ** 2
            w = (above if a_all else above[active]) * (disk <= lim2)
            tot = w.sum(axis=(1, 2))
            pos = tot > 0
            safe = np.where(pos, tot, 1.0)
            r_new = (w * ry_a).sum(axis=(1, 2)) / safe
            c_new = (w * cx_a).sum(axis=(1, 2)) / safe
            away = (np.abs(r_new - ar) > sigma) | (np.abs(c_new - ac) > sigma)
            move = pos & ~away
            conv = (np.abs(r_new - ar) < 1e-3) & (np.abs(c_new - ac) < 1e-3)
            pr[active[move]] = r_new[move]
            pc[active[move]] = c_new[move]
            active = active[move & ~conv]
    disk = (ry - pr[:, None, None]) ** 2 + (cx - pc[:, None, None]) ** 2 <= (2.0 * sigma) ** 2
    disk &= vld
    intensity = np.where(disk, winz - bg[idx, None, None], 0.0).sum(axis=(1, 2))
    rows, cols = pr, pc
    ri = np.clip(np.rint(rows).astype(np.int64), 0, img.shape[0] - 1)
    ci = np.clip(np.rint(cols).astype(np.int64), 0, img.shape[1] - 1)
    res[idx] = np.stack([rows, cols, sig[idx], intensity, img[ri, ci] - bg[idx]], axis=1)
    return res


# long (91 lines): one vectorised Levenberg-Marquardt fit of every column at once.
def _gauss_fit_batch(
    win: np.ndarray,
    valid: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    dr: np.ndarray,
    dc: np.ndarray,
    sigma: float,
    bg: np.ndarray,
    max_iter: int = 60,
) -> np.ndarray:
    """Batched Levenberg-Marquardt fit of ``A exp(-d²/2s²) + B`` to each window.

    Returns (n, 5) ``row, col`` (relative to the window centre) [px], ``s`` [px],
    ``2 pi A s²``, ``A``; NaN rows where the fit fails (amplitude <= 0 at the start, no
    convergence, width outside [0.3, 4 sigma] px, or a centre that moved more than sigma).
    """
    n = win.shape[0]
    wts = valid.reshape(n, -1).astype(np.float64)
    y = np.nan_to_num(win).reshape(n, -1)
    yy = np.broadcast_to(dy, win.shape).reshape(n, -1)
    xx = np.broadcast_to(dx, win.shape).reshape(n, -1)
    amp0 = np.where(valid, win, -np.inf).reshape(n, -1).max(axis=1) - bg
    p = np.stack([amp0, dr, dc, np.full(n, sigma), bg], axis=1)
    out = np.full((n, 5), np.nan)
    ok0 = amp0 > 0

    def model(q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, r0, c0, s, b = (q[:, i : i + 1] for i in range(5))
        d2 = (yy[k] - r0) ** 2 + (xx[k] - c0) ** 2
        e = np.exp(-d2 / (2.0 * s * s))
        return (a * e + b - y[k]) * wts[k], e, d2

    def jac(q: np.ndarray, k: np.ndarray, e: np.ndarray, d2: np.ndarray) -> np.ndarray:
        a, r0, c0, s, _ = (q[:, i : i + 1] for i in range(5))
        ae = a * e
        jm = np.stack(
            [e, ae * (yy[k] - r0) / s**2, ae * (xx[k] - c0) / s**2, ae * d2 / s**3,
             np.ones_like(e)],
            axis=2,
        )
        return jm * wts[k][:, :, None]

    lam = np.full(n, 1e-3)
    cost = np.full(n, np.inf)
    act = np.flatnonzero(ok0)
    if len(act):
        cost[act] = (model(p[act], act)[0] ** 2).sum(1)
    done = np.zeros(n, dtype=bool)
    conv = np.zeros(n, dtype=bool)
    eye = np.eye(5)[None]
    for _ in range(max_iter):
        act = np.flatnonzero(ok0 & ~done)
        if len(act) == 0:
            break
        q = p[act]
        f, e, d2 = model(q, act)
        jm = jac(q, act, e, d2)
        jt = jm.transpose(0, 2, 1)
        jtj = jt @ jm
        g = (jt @ f[:, :, None])[:, :, 0]
        diag = np.einsum("nii->ni", jtj)
        lhs = jtj + lam[act, None, None] * (diag[:, :, None] * eye)
        try:
            step = -np.linalg.solve(lhs, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # a singular system: least squares, one at a time
            step = -np.stack(
                [np.linalg.lstsq(m, v, rcond=None)[0] for m, v in zip(lhs, g, strict=True)]
            )
        q_new = q + step
        c_new = (model(q_new, act)[0] ** 2).sum(1)
        c_old = cost[act]
        better = np.isfinite(c_new) & (c_new <= c_old)
        upd = act[better]
        p[upd] = q_new[better]
        cost[upd] = c_new[better]
        lam[upd] = np.maximum(lam[upd] / 3.0, 1e-12)
        lam[act[~better]] *= 4.0
        small_step = np.all(np.abs(step) <= 1e-8 * (np.abs(q) + 1e-8), axis=1)
        small_cost = better & (c_old - c_new <= 1e-10 * np.maximum(c_old, 1e-300))
        fin = small_step | small_cost
        conv[act[fin]] = True
        done[act[fin]] = True
        done[act[lam[act] > 1e10]] = True
    a, r0, c0, s = p[:, 0], p[:, 1], p[:, 2], np.abs(p[:, 3])
    good = (
        ok0 & conv & (a > 0) & (s >= 0.3) & (s <= 4.0 * sigma)
        & (np.abs(r0 - dr) <= sigma) & (np.abs(c0 - dc) <= sigma)
    )
    out[good] = np.stack([r0, c0, s, 2.0 * np.pi * a * s * s, a], axis=1)[good]
    return out


def disk_mask(shape: tuple[int, int], x_px: float, y_px: float, radius_px: float) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie within ``radius_px`` of (x, y)."""
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - y_px) ** 2 + (cc - x_px) ** 2 <= radius_px**2


def columns_from_labels(
    class_map: np.ndarray, pixel_size_A: float, min_area_px: int = 1
) -> pd.DataFrame:
    """Ground-truth column positions from a per-pixel class label map (discs around columns).

    Each connected region of one non-background class is one projected column; its centroid
    is the column position. Returns ``x_px, y_px, x_A, y_A, class_index, area_px``.
    """

    cls = np.asarray(class_map)
    if cls.ndim != 2:
        raise InputError(f"class map must be 2D, got shape {cls.shape}")
    out = []
    for k in np.unique(cls):
        if k == 0:
            continue
        lab, n = ndimage.label(cls == k)
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        areas = ndimage.sum_labels(np.ones_like(lab), lab, idx)
        cms = ndimage.center_of_mass(np.ones_like(lab, dtype=float), lab, idx)
        for (r, c), a in zip(cms, areas, strict=True):
            if a >= min_area_px:
                out.append((c, r, int(k), int(a)))
    if not out:
        return pd.DataFrame(
            {"x_px": [], "y_px": [], "x_A": [], "y_A": [], "class_index": [], "area_px": []}
        )
    arr = np.asarray(out, dtype=np.float64)
    return pd.DataFrame(
        {
            "x_px": arr[:, 0], "y_px": arr[:, 1],
            "x_A": arr[:, 0] * pixel_size_A, "y_A": arr[:, 1] * pixel_size_A,
            "class_index": arr[:, 2].astype(int), "area_px": arr[:, 3].astype(int),
        }
    )
