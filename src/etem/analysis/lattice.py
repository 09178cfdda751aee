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

from dataclasses import dataclass

import numpy as np

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
