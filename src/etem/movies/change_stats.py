"""Windowed change statistics of a movie, updated frame by frame.

Each statistic keeps the last k + m frames (or column-count vectors) it needs and compares
the mean of the last k with the mean of the m before them:

* :class:`ImageChange` (``change``): relative rms difference of the two means of the
  smoothed denoised centre region;
* :class:`LocalChange` (``local_change``): the largest per-pixel change in units of each
  pixel's noise, with a change-point estimate of the onset;
* :class:`ColumnCountsChange` (``column_counts_z``): the largest Poisson change z of the raw
  counts at persistent columns (a null that does not depend on the denoiser), with a
  change-point estimate.

Frames whose denoising window was reflected at the movie edges (``edge_frames`` at each end)
are skipped by the image statistics.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def _shift_subpixel(x: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Remove the sub-pixel drift remainder ``frac`` (dy, dx) [px] by linear interpolation."""
    if np.any(frac != 0):
        return bilinear_shift(x, -np.asarray(frac, dtype=np.float64))
    return x


def bilinear_shift(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.shift(x, shift, order=1, mode="nearest")`` of a 2D image, computed
    separably in float64 with whole-row and whole-column interpolation (several times
    faster; equal to float64 rounding, ~1e-16 of the image range); same dtype as ``x``."""
    out = np.asarray(x, dtype=np.float64)
    for axis, s in enumerate(np.asarray(shift, dtype=np.float64).tolist()):
        if s == 0:
            continue
        # output pixel i samples the input at i - s: between i0 = i + floor(-s) and i0 + 1
        f0 = math.floor(-s)
        t = -s - f0
        n = out.shape[axis]
        i0 = np.arange(n) + f0
        a = np.take(out, np.clip(i0, 0, n - 1), axis=axis)
        b = np.take(out, np.clip(i0 + 1, 0, n - 1), axis=axis)
        a *= 1.0 - t
        b *= t
        a += b
        out = a
    return out.astype(x.dtype, copy=False)


def _frame_mean(frames: list[np.ndarray]) -> np.ndarray:
    """Mean of equally shaped frames in float64, summed in frame order (as ``np.mean`` of
    their stack along axis 0) without stacking them."""
    acc = np.array(frames[0], dtype=np.float64)
    for fr in frames[1:]:
        acc += fr
    acc /= len(frames)
    return acc


class ImageChange:
    """Relative rms change between the mean of the last k frames and the m frames before.

    Both means are of drift-corrected denoised centre regions smoothed by ``smooth_px``
    [px]; the difference is taken after removing its mean (dose changes) and divided by the
    rms contrast of the older mean. Two adjacent windows (not the EWMA background) keep the
    noise floor constant from the first value on.
    """

    def __init__(
        self, k: int, m: int, smooth_px: float, n_frames: int, edge_frames: int = 0
    ) -> None:
        self.k, self.m, self.smooth_px = k, m, smooth_px
        self.n_frames, self.edge_frames = n_frames, edge_frames
        self.recent: list[np.ndarray] = []

    def update(self, t: int, centre: np.ndarray, frac: np.ndarray) -> float:
        """The statistic at frame ``t`` (NaN until k + m frames are buffered)."""
        if t < self.edge_frames or t >= self.n_frames - self.edge_frames:
            return np.nan
        x = centre.astype(np.float64)
        if self.smooth_px > 0:
            x = ndimage.gaussian_filter(x, self.smooth_px)
        x = _shift_subpixel(x, frac)
        self.recent = [*self.recent, x][-(self.k + self.m) :]
        if len(self.recent) < self.k + self.m:
            return np.nan
        old = _frame_mean(self.recent[: self.m])
        new = _frame_mean(self.recent[self.m :])
        diff = new - old
        contrast = float(np.mean((old - old.mean()) ** 2))
        if not contrast > 0:
            return np.nan
        return math.sqrt(float(np.mean((diff - diff.mean()) ** 2)) / contrast)


class LocalChange:
    """Largest local change z between the recent frames and the frames before them.

    On drift-corrected denoised centre regions smoothed by ``sigma_px`` (about a column),
    the per-pixel difference of the mean of the last k frames and the mean of the m frames
    before them is divided by its standard error, from the pooled within-window variance of
    each pixel smoothed over ``noise_sigma_px``:
    z(x) = |mean_new - mean_old| / sqrt(s^2 (1/k + 1/m)).
    The statistic is max_x z(x): a change confined to a few columns (atoms leaving a
    particle surface) that is lost in frame averages stands out here, and the noise
    normalisation makes the statistic comparable across movies. It is defined once k + m
    frames are buffered (fixed windows keep its null distribution stationary also for the
    temporally correlated output of the multi-frame blind-spot model).

    :meth:`update` also returns the change-point estimate [frame]: the split of the buffered
    k + m frames (>= 2 frames each side) with the largest max_x z, used to refine event
    onsets (the windowed statistic peaks up to k - 1 frames after the change).
    """

    def __init__(
        self,
        k: int,
        m: int,
        sigma_px: float,
        noise_sigma_px: float,
        n_frames: int,
        edge_frames: int = 0,
    ) -> None:
        self.k, self.m = k, m
        self.sigma_px, self.noise_sigma_px = sigma_px, noise_sigma_px
        self.n_frames, self.edge_frames = n_frames, edge_frames
        self.recent: list[np.ndarray] = []

    def update(self, t: int, centre: np.ndarray, frac: np.ndarray) -> tuple[float, float]:
        """(statistic, change-point frame) at frame ``t`` (NaN, NaN until buffered)."""
        k, m = self.k, self.m
        if t < self.edge_frames or t >= self.n_frames - self.edge_frames:
            return np.nan, np.nan
        x = ndimage.gaussian_filter(centre.astype(np.float32), self.sigma_px)
        x = _shift_subpixel(x, frac)
        self.recent = [*self.recent, x][-(k + m) :]
        n = len(self.recent)
        if n < k + m:
            return np.nan, np.nan
        n1 = n - k
        # frame by frame in float64, no (n, H, W) temporaries: the means of the two windows,
        # then the pooled sum of squared deviations from them
        m1 = _frame_mean(self.recent[:n1])
        m2 = _frame_mean(self.recent[n1:])
        ss = np.zeros_like(m1)
        dev = np.empty_like(m1)
        for i, fr in enumerate(self.recent):
            np.subtract(fr, m1 if i < n1 else m2, out=dev)
            np.multiply(dev, dev, out=dev)
            ss += dev
        ss /= n - 2
        var = ndimage.gaussian_filter(ss, self.noise_sigma_px)
        inv_sd = 1.0 / np.sqrt(np.maximum(var, 1e-30))
        np.subtract(m2, m1, out=dev)
        stat = float((np.abs(dev) * inv_sd).max()) / math.sqrt(1 / n1 + 1 / k)
        # change point on every 2nd pixel (the z-map is smooth on the column scale): cheap
        cs2 = np.cumsum(np.stack([fr[::2, ::2] for fr in self.recent]), axis=0, dtype=np.float64)
        inv2 = inv_sd[::2, ::2]

        def zmax(n2: int) -> float:
            """max_x z for the split with the last n2 frames as 'recent' (noise map of k)."""
            j = n - n2
            d = (cs2[-1] - cs2[j - 1]) / n2 - cs2[j - 1] / j
            return float((np.abs(d) * inv2).max()) / math.sqrt(1 / j + 1 / n2)

        splits = {n2: zmax(n2) for n2 in range(2, n - 1)}
        best = max(splits, key=splits.__getitem__)
        return stat, float(t - best + 1)


class ColumnCountsChange:
    """Largest change z of the raw counts at persistent columns (denoiser-free null).

    Sites are the tracks found in at least half of the m reference frames of the buffered
    k + m frames (real columns; noise blobs flicker), at their mean drift-corrected position.
    At each site s the raw counts in a disk of ``radius_px`` give per-frame sums; the mean
    of the last k frames is compared with the mean of the m before:
    z_s = (mean_new - mean_old) / sqrt(F lambda_s (1/k + 1/m)), lambda_s = the mean sum over
    the k + m frames and F = pooled within-window variance / mean over all sites, the Fano
    factor of the camera (1 for electron counting; it absorbs a gain). The null distribution
    depends on counting statistics only, not on the denoiser, which only picks the sites.
    :meth:`update` returns max_s |z_s| and a change-point estimate [frame] (the split of the
    buffer, >= 2 frames each side, with the largest max_s |z_s|).
    """

    def __init__(self, k: int, m: int, radius_px: float) -> None:
        self.k, self.m, self.radius_px = k, m, radius_px
        self.recent: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def update(
        self, t: int, counts: np.ndarray, ids: np.ndarray, xy_px: np.ndarray
    ) -> tuple[float, float]:
        """Add frame ``t`` (raw counts, track ids and aligned (x, y) [px] of its columns)."""
        k, m = self.k, self.m
        self.recent = [
            *self.recent,
            (counts.astype(np.float32, copy=True), np.asarray(ids), np.asarray(xy_px, float)),
        ][-(k + m) :]
        n = len(self.recent)
        if n < k + m:
            return np.nan, np.nan
        sites = self._sites()
        if len(sites) < 2:
            return np.nan, np.nan
        x = self._disk_sums(sites, counts.shape)
        lam = np.maximum(x.mean(axis=0), 1e-9)

        def zmax(n2: int) -> float:
            """max_s |z_s| with the last n2 frames as 'recent'."""
            old, new = x[: n - n2], x[n - n2 :]
            ss = ((old - old.mean(0)) ** 2).sum() + ((new - new.mean(0)) ** 2).sum()
            fano = max(float(ss) / ((n - 2) * float(lam.sum())), 1e-9)
            z = (new.mean(0) - old.mean(0)) / np.sqrt(fano * lam * (1 / (n - n2) + 1 / n2))
            return float(np.abs(z).max())

        splits = {n2: zmax(n2) for n2 in range(2, n - 1)}
        best = max(splits, key=splits.__getitem__)
        return (splits[k] if k in splits else zmax(k)), float(t - best + 1)

    def _sites(self) -> np.ndarray:
        """(S, 2) mean (x, y) [px] of the tracks seen in >= half of the m reference frames."""
        ref = self.recent[: self.m]
        tid = np.concatenate([r[1] for r in ref]).astype(np.int64)
        pos = np.concatenate([r[2].reshape(-1, 2) for r in ref])
        uniq, inv, n_seen = np.unique(tid, return_inverse=True, return_counts=True)
        mean_xy = np.stack(
            [np.bincount(inv, pos[:, j], len(uniq)) / n_seen for j in (0, 1)], axis=1
        )
        return np.asarray(mean_xy[2 * n_seen >= self.m])

    def _disk_sums(self, sites: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """(k + m, S) raw counts summed in the disk of each site, per buffered frame."""
        h, w = shape
        r = self.radius_px
        q = int(np.ceil(r))
        dy, dx = np.mgrid[-q : q + 1, -q : q + 1]
        inside = dy**2 + dx**2 <= r * r
        xs = np.round(sites).astype(int)
        yy = np.clip(xs[:, 1, None] + dy[inside][None, :], 0, h - 1)
        xx = np.clip(xs[:, 0, None] + dx[inside][None, :], 0, w - 1)
        return np.stack([c[yy, xx].sum(axis=1) for c, _, _ in self.recent]).astype(np.float64)
