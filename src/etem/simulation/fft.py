"""2D FFT plans on fixed buffers: FFTW (fastest) or pocketfft (bit-reproducible).

``deterministic`` (default) uses scipy's pocketfft, whose results do not depend on timing:
the same config and seed give byte-identical shards in any process. ``fftw`` uses pyFFTW
plans made with FFTW_MEASURE, ~1.5x faster per transform here, but FFTW picks its algorithm
by timing, so results may differ in the last bits (~1e-6) between processes.
(FFTW_ESTIMATE is deterministic but ~10x slower at 512² on this machine.)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyfftw
import scipy.fft

Backend = Literal["deterministic", "fftw"]


class ComplexPlan:
    """In-place complex64 2D FFT on ``self.buffer``: ``forward()`` and normalised ``backward()``."""

    def __init__(self, n: int, threads: int = 1, backend: Backend = "deterministic") -> None:
        self.threads = threads
        self.backend = backend
        if backend == "fftw":
            self.buffer = pyfftw.empty_aligned((n, n), dtype=np.complex64)
            flags = ("FFTW_MEASURE",)
            self._f = pyfftw.FFTW(self.buffer, self.buffer, axes=(0, 1),
                                  direction="FFTW_FORWARD", flags=flags, threads=threads)
            self._b = pyfftw.FFTW(self.buffer, self.buffer, axes=(0, 1),
                                  direction="FFTW_BACKWARD", flags=flags, threads=threads)
        else:
            self.buffer = np.empty((n, n), dtype=np.complex64)

    def forward(self) -> None:
        """Unnormalised forward FFT of the buffer, in place."""
        if self.backend == "fftw":
            self._f()
        else:
            self.buffer[...] = scipy.fft.fft2(self.buffer, overwrite_x=True,
                                              workers=self.threads)

    def backward(self) -> None:
        """Inverse FFT (normalised by 1/N) of the buffer, in place."""
        if self.backend == "fftw":
            self._b()
        else:
            self.buffer[...] = scipy.fft.ifft2(self.buffer, overwrite_x=True,
                                               workers=self.threads)


class RealPlan:
    """Real 2D FFT between ``self.real`` (n, n) float32 and ``self.spec`` (n, n//2+1)."""

    def __init__(self, n: int, threads: int = 1, backend: Backend = "deterministic") -> None:
        self.n = n
        self.threads = threads
        self.backend = backend
        shape_r, shape_c = (n, n), (n, n // 2 + 1)
        if backend == "fftw":
            self.real = pyfftw.empty_aligned(shape_r, dtype=np.float32)
            self.spec = pyfftw.empty_aligned(shape_c, dtype=np.complex64)
            flags = ("FFTW_MEASURE",)
            self._f = pyfftw.FFTW(self.real, self.spec, axes=(0, 1), flags=flags,
                                  threads=threads)
            self._b = pyfftw.FFTW(self.spec, self.real, axes=(0, 1),
                                  direction="FFTW_BACKWARD", flags=flags, threads=threads)
        else:
            self.real = np.empty(shape_r, dtype=np.float32)
            self.spec = np.empty(shape_c, dtype=np.complex64)

    def forward(self) -> None:
        """``spec = rfft2(real)`` (unnormalised)."""
        if self.backend == "fftw":
            self._f()
        else:
            self.spec[...] = scipy.fft.rfft2(self.real, workers=self.threads)

    def backward(self) -> None:
        """``real = irfft2(spec)`` (normalised by 1/N); ``spec`` may be destroyed."""
        if self.backend == "fftw":
            self._b()
        else:
            self.real[...] = scipy.fft.irfft2(self.spec, s=(self.n, self.n), overwrite_x=True,
                                              workers=self.threads)


_COMPLEX: dict[tuple[int, int, str], ComplexPlan] = {}
_REAL: dict[tuple[int, int, str], RealPlan] = {}


def complex_plan(n: int, threads: int = 1, backend: Backend = "deterministic") -> ComplexPlan:
    """Cached :class:`ComplexPlan` (FFTW planning costs once per process)."""
    key = (n, threads, backend)
    if key not in _COMPLEX:
        _COMPLEX[key] = ComplexPlan(n, threads, backend)
    return _COMPLEX[key]


def real_plan(n: int, threads: int = 1, backend: Backend = "deterministic") -> RealPlan:
    """Cached :class:`RealPlan`."""
    key = (n, threads, backend)
    if key not in _REAL:
        _REAL[key] = RealPlan(n, threads, backend)
    return _REAL[key]
