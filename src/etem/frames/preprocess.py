"""Frame preprocessing: temporal summing, spatial binning and drift correction.

Counts stay counts: summing and binning add counts (Poisson statistics are kept), and drift
is corrected by **integer-pixel** shifts of the counts (no interpolation, so the noise stays
Poisson and the denoiser sees the statistics it was trained on). The sub-pixel remainder of
the measured drift is kept and added to column positions, which are therefore in the frame of
the first frame with sub-pixel accuracy.

Drift is measured by cross-correlation (``skimage.registration.phase_cross_correlation``
without phase normalisation, which is unstable at < 1 e/px) of each Gaussian-smoothed frame
against an exponentially weighted reference of the already aligned frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import fourier_shift, gaussian_filter

from etem.errors import InputError
from etem.seeding import rng

log = logging.getLogger("etem.frames.preprocess")


def bin_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor`` x ``factor`` pixel blocks of (N, H, W) frames (edges cropped) [counts]."""
    if factor == 1:
        return frames
    n, h, w = frames.shape
    hb, wb = h // factor, w // factor
    if hb == 0 or wb == 0:
        raise InputError(f"bin factor {factor} larger than the frame ({h}x{w} px)")
    cut = frames[:, : hb * factor, : wb * factor]
    return cut.reshape(n, hb, factor, wb, factor).sum(axis=(2, 4), dtype=np.float32)


def integer_counts(frame: np.ndarray) -> bool:
    """Whether ``frame`` holds counts (integers >= 0), which can be split multinomially
    (else, e.g. gain-normalised data, values are spread deterministically)."""
    return bool(np.all(np.rint(frame) == frame) and np.all(frame >= 0))


def split_counts(frame: np.ndarray, k: int, seed: int, t: int) -> np.ndarray:
    """Upsample a frame of counts k x k by splitting each count over k² sub-pixels.

    Integer counts are split multinomially with equal probabilities (seeded per frame), so
    Poisson counts of mean lambda become independent Poisson counts of mean lambda / k²: the
    noise statistics a model trained at the finer pixel expects. Non-integer values (gain-
    normalised data) are spread evenly.
    """

    h, w = frame.shape
    if integer_counts(frame):
        parts = rng(seed, "apply", "split_counts", t).multinomial(
            np.rint(frame).astype(np.int64), np.full(k * k, 1.0 / (k * k))
        )
        out = parts.reshape(h, w, k, k).transpose(0, 2, 1, 3).reshape(h * k, w * k)
        return out.astype(np.float32)
    return np.repeat(np.repeat(frame / (k * k), k, axis=0), k, axis=1).astype(np.float32)


#: Counts per binomial draw of the row/column split up to which :func:`resample_by_overlap`
#: places the counts one by one instead (same distribution; the faster way, measured).
SCATTER_PER_DRAW = 2.0
#: Overlap fractions below this are rounding noise of the pixel edges (treated as 0).
_EDGE_EPS = 1e-9


def resampled_size(n: int, ratio: float) -> int:
    """Output pixels along an axis of ``n`` pixels resampled by ``ratio`` (output pixel /
    input pixel): the whole output pixels inside the input (a partial last one is cropped)."""
    return int(np.floor(n / ratio + _EDGE_EPS))


def _edges(n_in: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The output pixel edges ``a ratio`` (a = 0..n_out) along an axis of ``n_in`` input
    pixels: the input pixel each lies in, and the fraction of that pixel left of it."""
    e = np.arange(resampled_size(n_in, ratio) + 1) * ratio
    pix = np.floor(e + _EDGE_EPS).astype(np.int64)
    frac = e - pix
    frac[frac < _EDGE_EPS] = 0.0
    return pix, frac


def _split_rows(counts: np.ndarray, ratio: float, gen: np.random.Generator) -> np.ndarray:
    """Integer ``counts`` (n_in, W) resampled along axis 0 by ``ratio``.

    Output row a holds the counts between edges a and a + 1: the whole input rows between
    them (a cumulative sum) and, of an input row an edge cuts, the counts left of the edge,
    a binomial draw with the fraction left of it (edges cutting the same row: binomials on
    what the previous edge left, so each count lands in one output row with the overlap's
    share of its row: a multinomial).
    """
    n_in, w = counts.shape
    pix, frac = _edges(n_in, ratio)
    cum = np.zeros((n_in + 1, w), np.int64)
    np.cumsum(counts, axis=0, out=cum[1:])
    left = np.zeros((len(pix), w), np.int64)
    cut = np.flatnonzero(frac > 0)
    if len(cut):
        # the order of each cutting edge among the edges in the same input row
        first = np.r_[True, pix[cut][1:] != pix[cut][:-1]]
        order = np.arange(len(cut)) - np.maximum.accumulate(np.where(first, np.arange(len(cut)), 0))
        for k in range(int(order.max()) + 1):
            rows = cut[order == k]
            n = counts[pix[rows]]
            lp = np.zeros_like(n) if k == 0 else left[rows - 1]
            fp = np.zeros((len(rows), 1)) if k == 0 else frac[rows - 1, None]
            # the previous edge (k > 0) lies in the same input row: split what it left
            n = n - lp
            left[rows] = lp + gen.binomial(n, (frac[rows, None] - fp) / (1.0 - fp))
    return np.diff(cum[pix] + left, axis=0)


def _spread_rows(values: np.ndarray, ratio: float) -> np.ndarray:
    """``values`` (n_in, W) resampled along axis 0 by ``ratio`` deterministically: each input
    row spread over the output rows by its overlap fractions (sums conserved, no noise)."""
    n_in, w = values.shape
    pix, frac = _edges(n_in, ratio)
    cum = np.zeros((n_in + 1, w), np.float64)
    np.cumsum(values, axis=0, out=cum[1:])
    padded = np.concatenate([values, np.zeros((1, w))]).astype(np.float64)
    return np.diff(cum[pix] + frac[:, None] * padded[pix], axis=0)


def _scatter_counts(
    counts: np.ndarray, ratio: float, shape: tuple[int, int], gen: np.random.Generator
) -> np.ndarray:
    """Integer ``counts`` resampled by placing each count uniformly at random in its input
    pixel and counting it in the output pixel there (the same multinomial as
    :func:`_split_rows` on both axes, in time proportional to the counts)."""
    h, w = counts.shape
    y = np.repeat(np.arange(h, dtype=np.float64), counts.sum(axis=1))  # row-major order
    x = np.repeat(np.tile(np.arange(w, dtype=np.float64), h), counts.ravel())
    y += gen.random(len(y))
    y *= 1.0 / ratio
    x += gen.random(len(x))
    x *= 1.0 / ratio
    iy, ix = y.astype(np.int64), x.astype(np.int64)
    ok = (iy < shape[0]) & (ix < shape[1])
    iy *= shape[1]
    iy += ix
    flat = np.bincount(iy[ok], minlength=shape[0] * shape[1])
    return flat.reshape(shape)


def resample_by_overlap(frame: np.ndarray, ratio: float, seed: int, t: int) -> np.ndarray:
    """Resample a frame of counts to pixels ``ratio`` times the size of its own (any ratio
    > 0: coarser above 1, finer below), conserving counts.

    Output pixel (a, b) covers input pixels [a ratio, (a + 1) ratio) x [b ratio, (b + 1)
    ratio); the partial output pixels at the far edges are cropped (their counts dropped, as
    binning crops). Integer counts are split multinomially: each count of an input pixel
    lands in an output pixel it overlaps with probability equal to the overlap's share of
    its area (separable: binomials along y, then along x), seeded per frame ``t``. Poisson
    input therefore gives independent Poisson output pixels whose mean is the input mean
    integrated over the output pixel (what a detector of the output pixel would count).
    Non-integer values (gain-normalised data) are spread by the same fractions: sums
    conserved, but not Poisson.
    """
    if integer_counts(frame):
        gen = rng(seed, "apply", "resample_by_overlap", t)
        counts = np.rint(frame).astype(np.int64)
        shape = (resampled_size(frame.shape[0], ratio), resampled_size(frame.shape[1], ratio))
        draws = (shape[0] + 1) * frame.shape[1] + (shape[1] + 1) * shape[0]
        if counts.sum() <= SCATTER_PER_DRAW * draws:  # few counts: place each one
            return _scatter_counts(counts, ratio, shape, gen).astype(np.float32)
        ys = _split_rows(counts, ratio, gen)
        return _split_rows(ys.T, ratio, gen).T.astype(np.float32)
    ys = _spread_rows(np.asarray(frame, dtype=np.float64), ratio)
    return _spread_rows(ys.T, ratio).T.astype(np.float32)


def sum_frames(frames: np.ndarray, n_sum: int) -> np.ndarray:
    """Sum groups of ``n_sum`` consecutive frames (a trailing incomplete group is dropped)."""
    if n_sum == 1:
        return frames
    n = frames.shape[0] // n_sum
    return frames[: n * n_sum].reshape(n, n_sum, *frames.shape[1:]).sum(axis=1, dtype=np.float32)


def shift_integer(frame: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift a frame by whole pixels (content moves by +dy, +dx); edges filled by reflection."""
    if dy == 0 and dx == 0:
        return frame
    h, w = frame.shape
    py, px = min(abs(dy), h - 1), min(abs(dx), w - 1)
    padded = np.pad(frame, ((py, py), (px, px)), mode="reflect")
    return padded[
        py - np.clip(dy, -py, py) : py - np.clip(dy, -py, py) + h,
        px - np.clip(dx, -px, px) : px - np.clip(dx, -px, px) + w,
    ]


@dataclass
class DriftCorrector:
    """Stateful drift correction over a stream of frames.

    Each Gaussian-smoothed frame is first shifted by the whole-pixel drift of the previous
    frame, then cross-correlated (FFT) with the reference; the correlation peak is searched
    only within ``max_step_px`` of zero, so the periodicity of a crystal lattice cannot make
    the registration jump by a lattice vector. A parabolic fit around the peak gives the
    sub-pixel part.

    Parameters
    ----------
    smooth_px : float
        Gaussian smoothing of frames before correlation [px].
    alpha : float
        Weight of each new aligned frame in the reference (EWMA).
    max_step_px : float
        Largest drift between consecutive frames [px].
    """

    smooth_px: float = 2.0
    alpha: float = 0.2
    max_step_px: float = 4.0

    def __post_init__(self) -> None:
        self.reference: np.ndarray | None = None
        self._ref_fft: np.ndarray | None = None
        self.last = np.zeros(2)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned frame (integer shift) and the measured drift (dy, dx) [px] of the content."""

        sm = gaussian_filter(frame.astype(np.float32), self.smooth_px)
        sm -= sm.mean()
        if self.reference is None:
            self.reference = sm
            return frame, np.zeros(2)
        iy0, ix0 = (int(v) for v in np.round(self.last))
        pre = shift_integer(sm, -iy0, -ix0)
        residual = _peak_shift(self.reference, pre, self.max_step_px)
        drift = np.array([iy0, ix0], dtype=np.float64) + residual
        self.last = drift
        iy, ix = (int(v) for v in np.round(drift))
        aligned = shift_integer(frame, -iy, -ix)
        # the reference gets the sub-pixel aligned frame, so it stays anchored to frame 0

        sub = np.fft.ifft2(fourier_shift(np.fft.fft2(sm), -drift)).real.astype(np.float32)
        self.reference = (1 - self.alpha) * self.reference + self.alpha * sub
        return aligned, drift


def _window(shape: tuple[int, ...]) -> np.ndarray:
    """Separable Hann window that suppresses the frame edges (wrap-around, drifted-in strips)."""
    wy, wx = np.hanning(shape[0]), np.hanning(shape[1])
    return np.outer(wy, wx).astype(np.float32)


def _peak_shift(ref: np.ndarray, mov: np.ndarray, radius: float) -> np.ndarray:
    """Shift (dy, dx) [px] of the content of ``mov`` relative to ``ref`` within ``radius``."""
    win = _window(ref.shape)
    ref = (ref - ref.mean()) * win
    mov = (mov - mov.mean()) * win
    cc = np.fft.irfft2(np.conj(np.fft.rfft2(ref)) * np.fft.rfft2(mov), s=ref.shape)
    cc = np.fft.fftshift(cc)
    cy, cx = ref.shape[0] // 2, ref.shape[1] // 2
    r = int(np.ceil(radius))
    win = cc[cy - r : cy + r + 1, cx - r : cx + r + 1]
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    win = np.where(yy**2 + xx**2 <= radius**2, win, -np.inf)
    py, px = np.unravel_index(int(np.argmax(win)), win.shape)
    out = np.array([py - r, px - r], dtype=np.float64)
    for axis, (p, n) in enumerate(((py, win.shape[0]), (px, win.shape[1]))):
        if 0 < p < n - 1:
            if axis == 0:
                a, b, c = win[p - 1, px], win[p, px], win[p + 1, px]
            else:
                a, b, c = win[py, p - 1], win[py, p], win[py, p + 1]
            den = a - 2 * b + c
            if np.isfinite(den) and den < 0:
                out[axis] += float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return out
