"""Simulation and output grids: FFT-friendly sizes and the pixel geometry of stored images.

Array convention of stored images: ``image[i, j]`` (row i, column j) samples the position
``x = j * pixel_size_A``, ``y = i * pixel_size_A`` [Å] of the structure's cell (abTEM samples
grid point k at ``k * sampling``; etem stores abTEM's ``(x, y)`` arrays transposed to
``(y, x)``, the usual image order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from etem.errors import ValidationError

#: Prime factors FFTW handles fastest (a 1061-point FFT is ~4x slower than 1024 here).
FFT_PRIMES = (2, 3, 5)


def is_fft_friendly(n: int, primes: tuple[int, ...] = FFT_PRIMES) -> bool:
    """True if ``n`` has no prime factor outside ``primes``."""
    if n < 1:
        return False
    for p in primes:
        while n % p == 0:
            n //= p
    return n == 1


def fft_size(n_min: int, primes: tuple[int, ...] = FFT_PRIMES) -> int:
    """Smallest even size >= ``n_min`` whose prime factors are all in ``primes``."""
    n = max(2, int(n_min))
    while n % 2 or not is_fft_friendly(n, primes):
        n += 1
    return n


@dataclass(frozen=True)
class ImageGrid:
    """Simulation grid (square, FFT-friendly) and output pixel grid of one structure.

    Attributes
    ----------
    extent_A : float
        Lateral cell size [Å] (square cells only).
    gpts : int
        Simulation grid points per axis.
    output_px : int
        Output image size [px].
    """

    extent_A: float
    gpts: int
    output_px: int

    @property
    def sampling_A(self) -> float:
        """Simulation sampling [Å]."""
        return self.extent_A / self.gpts

    @property
    def pixel_size_A(self) -> float:
        """Output pixel size [Å]."""
        return self.extent_A / self.output_px


def image_grid(cell_xy_A: tuple[float, float], sampling_A: float, output_px: int) -> ImageGrid:
    """The grid of a structure with lateral cell ``cell_xy_A`` [Å].

    The simulation uses the smallest FFT-friendly size with sampling <= ``sampling_A``.
    Raises :class:`ValidationError` for non-square cells (all images of a campaign share one
    output shape).
    """
    ex, ey = (float(v) for v in cell_xy_A)
    if ex <= 0 or ey <= 0:
        raise ValidationError(f"cell {ex:.3f} x {ey:.3f} Å: lateral size must be positive")
    if abs(ex - ey) > 1e-3 * max(ex, ey):
        raise ValidationError(
            f"cell {ex:.3f} x {ey:.3f} Å: the simulation needs square lateral cells"
        )
    return ImageGrid(extent_A=ex, gpts=fft_size(math.ceil(ex / sampling_A - 1e-9)),
                     output_px=int(output_px))
