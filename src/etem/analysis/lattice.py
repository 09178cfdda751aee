"""Can atomic columns be seen at all? Pixel size and lattice fringes in the power spectrum.

Column finding on frames that cannot resolve a lattice only finds noise blobs (a movie at
1.6 Å/px gave about 70,000 "columns" per frame). :func:`columns_resolvable` says whether a
movie can show atomic columns: its pixel size must be at most ``max_pixel_size_A`` (about a
third of the shortest column spacing of interest: 0.5 Å/px for the 1.4-2 Å spacings of Pt and
CeO2) and the power spectrum of a mean of its frames must show lattice fringes: in the band
of lattice periods (:data:`MIN_PERIOD_A` to :data:`MAX_PERIOD_A`, up to the Nyquist
frequency) the strongest spatial frequency must stand :data:`MIN_VISIBILITY` times above the
band's median power. For white noise the ratio of the maximum to the median of M
exponentially distributed powers is about 1.44 ln M (17 for M = 10^5), so fringes are
unlikely to be claimed in noise alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

#: Shortest and longest lattice periods looked for [Å].
MIN_PERIOD_A = 1.0
MAX_PERIOD_A = 4.0
#: Peak-to-median power ratio in the lattice band that counts as visible fringes.
MIN_VISIBILITY = 40.0


@dataclass(frozen=True)
class Resolvability:
    """Whether columns can be seen, and why not."""

    resolvable: bool
    visibility: float
    reason: str


def lattice_visibility(image: np.ndarray, pixel_size_A: float) -> float:
    """Peak-to-median power of ``image`` (e.g. a mean of frames) in the lattice band.

    Returns 0 when the band lies beyond the Nyquist frequency (pixels too coarse).
    """
    img = np.asarray(image, dtype=np.float64)
    img = img - img.mean()
    h, w = img.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.rfft2(img * win)) ** 2
    fy = np.fft.fftfreq(h, d=pixel_size_A)[:, None]
    fx = np.fft.rfftfreq(w, d=pixel_size_A)[None, :]
    f = np.hypot(fy, fx)
    nyquist = 0.5 / pixel_size_A
    band = (f >= 1.0 / MAX_PERIOD_A) & (f <= min(1.0 / MIN_PERIOD_A, nyquist))
    if band.sum() < 16:
        return 0.0
    values = power[band]
    med = float(np.median(values))
    return float(values.max() / med) if med > 0 else 0.0


def columns_resolvable(
    mean_frame: np.ndarray, pixel_size_A: float, max_pixel_size_A: float
) -> Resolvability:
    """Whether atomic columns can be found in frames like ``mean_frame`` (see the module)."""
    if pixel_size_A > max_pixel_size_A:
        return Resolvability(
            False, 0.0,
            f"pixel size {pixel_size_A:.3g} Å is coarser than {max_pixel_size_A:g} Å "
            "(columns.max_pixel_size_A): atomic columns cannot be resolved",
        )
    vis = lattice_visibility(mean_frame, pixel_size_A)
    if vis < MIN_VISIBILITY:
        return Resolvability(
            False, vis,
            f"no lattice fringes in the mean of the leading frames (power peak/median "
            f"{vis:.3g} < {MIN_VISIBILITY:g} for periods {MIN_PERIOD_A:g}-{MAX_PERIOD_A:g} Å)",
        )
    return Resolvability(True, vis, f"lattice fringes visible (power peak/median {vis:.3g})")


#: Symmetry orders tried for the lattice orientation: rings of 2, 4 or 6 spots (oblique,
#: square, hexagonal projections).
ORIENTATION_ORDERS = (2, 4, 6)
#: Ratio of successive radial-bin edges of the orientation moments.
RING_RATIO = 1.1
#: Fewest cycles across the region for a spatial frequency to count.
MIN_CYCLES = 3.0


class LatticeOrientation:
    """Orientation of the lattice of a region, frame by frame, from its power spectrum; no
    column tracks involved.

    For each frame the region (e.g. the drift-corrected denoised centre region) is windowed
    (radial Hann window: no preferred direction) and its power P(f) computed; in each radial
    bin of the lattice band (periods :data:`MIN_PERIOD_A` to :data:`MAX_PERIOD_A`, at least
    :data:`MIN_CYCLES` cycles across the region) the n-fold angular moment

        m_n = sum (P(f) - mean of P over the bin) exp(i n theta_f)

    is kept for n in :data:`ORIENTATION_ORDERS` (subtracting the bin's mean removes the
    anisotropy of the pixel grid itself). Once the movie is complete (:meth:`angles`) the
    ring (three adjacent bins) and order n with the largest median |m_n| relative to the
    median power of the ring is chosen -- the strongest ring of lattice spots and its
    symmetry -- and the orientation of frame t is arg(m_n(t) conj(mean direction)) / n [deg]
    about the movie's mean orientation (in (-180/n, 180/n]; positive = anticlockwise in x, y
    coordinates, as the track-based ``rotation_deg``). A rotation of the particle by a turns
    its spots by a: a step of a in this series however the columns are tracked.
    """

    def __init__(self, pixel_size_A: float) -> None:
        self.px = float(pixel_size_A)
        self.shape: tuple[int, int] | None = None
        self.moments: list[np.ndarray | None] = []
        self.order = 0
        self.period_A = float("nan")

    def _geometry(self, h: int, w: int) -> None:
        self.shape = (h, w)
        yy = (np.arange(h) - (h - 1) / 2) / (h / 2)
        xx = (np.arange(w) - (w - 1) / 2) / (w / 2)
        r = np.minimum(np.hypot(yy[:, None], xx[None, :]), 1.0)
        self.window = (0.5 * (1 + np.cos(np.pi * r))).astype(np.float32)
        # half plane (real FFT): the power is centrosymmetric and the moments have even n,
        # so the columns 0 < fx < 1/2 count twice (the full plane's sums)
        fy = np.fft.fftfreq(h)[:, None] * np.ones((1, w // 2 + 1))
        fx = np.fft.rfftfreq(w)[None, :] * np.ones((h, 1))
        twice = (fx > 0) & (fx < 0.5)
        f = np.hypot(fy, fx)  # cycles / px
        lo = max(self.px / MAX_PERIOD_A, MIN_CYCLES / min(h, w))
        hi = min(self.px / MIN_PERIOD_A, 0.45)
        n_bins = int(np.floor(np.log(hi / lo) / np.log(RING_RATIO))) if hi > lo else 0
        self.edges = lo * RING_RATIO ** np.arange(n_bins + 1)
        sel = (f >= lo) & (f < self.edges[-1]) if n_bins >= 3 else np.zeros_like(f, bool)
        self.idx = np.flatnonzero(sel)
        self.ring = np.searchsorted(self.edges, f.ravel()[self.idx], side="right") - 1
        theta = np.arctan2(fy, fx).ravel()[self.idx]
        self.mult = np.where(twice.ravel()[self.idx], 2.0, 1.0)
        self.phase = np.exp(1j * np.outer(ORIENTATION_ORDERS, theta)) * self.mult  # (N, px)
        self.count = np.bincount(self.ring, self.mult, n_bins)
        self.grid = np.stack([
            np.bincount(self.ring, p.real, n_bins) + 1j * np.bincount(self.ring, p.imag, n_bins)
            for p in self.phase
        ])  # sum of exp(i n theta) per bin: the pixel grid's own anisotropy
        self.n_bins = n_bins

    def add(self, image: np.ndarray | None) -> None:
        """Moments of one frame's region (None: a frame without one)."""
        if image is None:
            self.moments.append(None)
            return
        img = np.asarray(image, dtype=np.float32)
        if self.shape != img.shape:
            self._geometry(*img.shape)
        if self.n_bins < 3:
            self.moments.append(None)
            return
        v = (img - np.float32(img.mean(dtype=np.float64))) * self.window
        p = (np.abs(sfft.rfft2(v)) ** 2).ravel()[self.idx].astype(np.float64)
        s = np.bincount(self.ring, p * self.mult, self.n_bins)
        mean = s / np.maximum(self.count, 1)
        m = np.stack([
            np.bincount(self.ring, p * q.real, self.n_bins)
            + 1j * np.bincount(self.ring, p * q.imag, self.n_bins)
            for q in self.phase
        ]) - mean[None, :] * self.grid
        self.moments.append(np.concatenate([m, s[None, :].astype(np.complex128)]))

    def angles(self) -> np.ndarray:
        """(T,) lattice orientation [deg] about the movie's mean orientation (NaN where a
        frame has no region or the region resolves no lattice band); sets ``order`` and
        ``period_A`` (the chosen ring)."""
        t_n = len(self.moments)
        out = np.full(t_n, np.nan)
        ok = [t for t, m in enumerate(self.moments) if m is not None]
        if len(ok) < 3:
            return out
        arr = np.stack([self.moments[t] for t in ok])  # type: ignore[misc]
        # three adjacent bins: a ring of spots may straddle a bin edge
        m3 = arr[:, :, :-2] + arr[:, :, 1:-1] + arr[:, :, 2:]
        power = np.median(m3[:, -1].real, axis=0)  # (bins - 2,)
        q = np.median(np.abs(m3[:, :-1]), axis=0) / np.maximum(power, 1e-300)[None, :]
        n_i, r_i = np.unravel_index(int(np.argmax(q)), q.shape)
        n = ORIENTATION_ORDERS[n_i]
        u = m3[:, n_i, r_i]
        unit = u / np.maximum(np.abs(u), 1e-300)
        ref = unit.mean()
        ang = np.angle(u * np.conj(ref / max(abs(ref), 1e-300))) / n
        out[ok] = np.degrees(ang)
        self.order = n
        f_mid = self.edges[r_i + 1] * math.sqrt(RING_RATIO)
        self.period_A = self.px / f_mid
        return out
