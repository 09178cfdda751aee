"""Image formation: abTEM's CTF on stored exit waves, then the detector (resampling, MTF).

Conventions
-----------
* Defocus follows abTEM: ``defocus = -C10``; positive defocus is underfocus. ``Cs = C30``,
  ``C5 = C50``. Partial coherence in the quasi-coherent approximation of abTEM's ``CTF``:
  ``focal_spread`` is the 1/e width [Å] of the focal spread, ``angular_spread`` the standard
  deviation of the beam angles [mrad]; the objective aperture is ``semiangle_cutoff`` [mrad]
  (soft edge, abTEM default).
* The clean image is ``|IFFT(FFT(psi_exit) * CTF)|**2`` with an incident wave of amplitude 1,
  so vacuum = 1, followed by :func:`detect`.
* Detector: the intensity is resampled to the output grid by Fourier cropping (or zero
  padding) at the same field of view (band-limited, mean preserving) and multiplied by the
  detector MTF. ``counting`` is the MTF of a counting detector's square pixels (K3-like):
  ``MTF(u, v) = sinc(u) sinc(v)`` with u, v in cycles per output pixel (0.64 at Nyquist).
"""

from __future__ import annotations

from typing import Any

import abtem
import numpy as np
import scipy.fft

from etem.config.simulation import SimulationConfig
from etem.simulation.fft import ComplexPlan, RealPlan
from etem.simulation.grid import ImageGrid, fft_size


def ctf_parameters(sim: SimulationConfig, defocus_nm: float) -> dict[str, Any]:
    """Keyword arguments of :class:`abtem.CTF` for one defocus under the config ``sim``.

    Units converted to abTEM's: lengths [Å], angles [mrad].
    """
    return {
        "semiangle_cutoff": float(sim.aperture_mrad),
        "focal_spread": float(sim.focal_spread_nm) * 10.0,
        "angular_spread": float(sim.convergence_mrad),
        "aberration_coefficients": {
            "C10": -float(defocus_nm) * 10.0,
            "C30": float(sim.cs_um) * 1e4,
            "C50": float(sim.c5_mm) * 1e7,
        },
    }


def ctf_kernel(sim: SimulationConfig, grid: ImageGrid, defocus_nm: float) -> np.ndarray:
    """abTEM's CTF (aberrations, envelopes, aperture) on the simulation grid, complex64 (x, y)."""

    ctf = abtem.CTF(
        energy=sim.energy_kv * 1e3, gpts=(grid.gpts, grid.gpts),
        sampling=(grid.sampling_A, grid.sampling_A), **ctf_parameters(sim, defocus_nm),
    )
    return np.ascontiguousarray(ctf._evaluate_kernel(), dtype=np.complex64)


def detector_mtf(output_px: int, model: str) -> np.ndarray:
    """MTF on the rfft2 grid of an ``output_px`` square image, float32 (output_px, px//2+1)."""
    if model == "none":
        return np.ones((output_px, output_px // 2 + 1), dtype=np.float32)
    if model == "counting":
        u = np.fft.fftfreq(output_px)  # cycles / pixel
        v = np.fft.rfftfreq(output_px)
        return (np.sinc(u)[:, None] * np.sinc(v)[None, :]).astype(np.float32)
    raise ValueError(f"unknown detector MTF model {model!r}")


def _crop_rfft(spec: np.ndarray, n_out: int) -> np.ndarray:
    """Crop/pad a centred-in-frequency rfft2 spectrum (..., n_in, n_in//2+1) to n_out."""
    n_in = spec.shape[-2]
    out = np.zeros((*spec.shape[:-2], n_out, n_out // 2 + 1), dtype=spec.dtype)
    h = min(n_in, n_out) // 2  # frequencies kept per sign
    cols = min(spec.shape[-1], n_out // 2 + 1)
    out[..., :h, :cols] = spec[..., :h, :cols]
    out[..., n_out - h:, :cols] = spec[..., n_in - h:, :cols]
    return out


def detect(
    intensity_xy: np.ndarray, grid: ImageGrid, mtf_model: str, threads: int = 1
) -> np.ndarray:
    """Detector: resample (..., G, G) intensities in (x, y) order to the output grid, apply the
    MTF, and return float32 images (..., N, N) in (y, x) image order.

    Fourier resampling at a fixed field of view preserves the mean, so vacuum stays 1;
    negative values (ringing next to near-zero intensities) are clipped to 0.
    """
    n_out = grid.output_px
    spec = scipy.fft.rfft2(intensity_xy, axes=(-2, -1), workers=threads)
    if n_out != grid.gpts:
        spec = _crop_rfft(spec, n_out)
    spec *= detector_mtf(n_out, mtf_model)
    img = scipy.fft.irfft2(spec, s=(n_out, n_out), axes=(-2, -1), workers=threads)
    img *= (n_out * n_out) / float(grid.gpts * grid.gpts)
    np.maximum(img, 0.0, out=img)  # an intensity: clip the (rare, tiny) resampling ringing
    return np.ascontiguousarray(np.swapaxes(img, -1, -2), dtype=np.float32)


def wave_size(kernel: np.ndarray) -> int:
    """Smallest even FFT-friendly grid M <= G on which the CTF-filtered wave and its
    intensity are exact: the kernel is zero beyond |index| k (objective aperture), so the
    intensity's spectrum is zero beyond 2k, alias-free on M if M/2 > 2k. G if none is smaller.
    """

    g = kernel.shape[-1]
    support = np.flatnonzero((np.abs(kernel) > 0).any(axis=0))
    if not len(support):
        return g
    k = int(np.abs(np.fft.fftfreq(g, 1.0 / g)[support]).max())
    return min(fft_size(4 * k + 2), g)


def _crop_fft(spec: np.ndarray, m: int) -> np.ndarray:
    """Central (m, m) frequencies of a (G, G) fft2 spectrum (even m <= G), a new array."""
    g = spec.shape[-1]
    idx = np.r_[0:m // 2, g - m // 2:g]
    return spec[np.ix_(idx, idx)]


class Imager:
    """Applies cached CTF kernels to Fourier-space exit waves and detects the images.

    The fast path of the campaign: per image one complex multiply, one inverse FFT, the
    intensity, and a real FFT pair for the detector, on FFT plans of
    :mod:`etem.simulation.fft` (same result as :func:`detect` on abTEM's intensity).

    The objective aperture band-limits the filtered wave to |k| <= k_ap, so its intensity is
    band-limited to 2 k_ap: the wave spectrum and the kernels are cropped to the smallest
    grid M that holds that band alias-free (:func:`wave_size`; 432² instead of 512² at
    40 mrad, 300 kV, 0.1 Å sampling), the inverse FFT and the intensity's FFT run on M, and
    the detector pads/crops the intensity spectrum to the output grid. Exact up to float
    rounding (the dropped frequencies are zero).
    """

    def __init__(self, sim: SimulationConfig, grid: ImageGrid, threads: int = 1) -> None:
        self.sim = sim
        self.grid = grid
        self.threads = threads
        self._kernels: dict[tuple[float, bool], np.ndarray] = {}
        n = grid.output_px
        # the aperture (and so M) does not depend on defocus
        self.m = m = wave_size(ctf_kernel(sim, grid, 0.0))
        backend = sim.fft_backend
        self._wave_plan = ComplexPlan(m, threads, backend)
        self._in = RealPlan(m, threads, backend)
        self._out = self._in if n == m else RealPlan(n, threads, backend)
        # MTF and the mean-preserving resampling factor in one array
        self._mtf = detector_mtf(n, sim.detector_mtf) * np.float32((n * n) / float(m * m))
        self._tmp: np.ndarray | None = None  # float32 (M, M) scratch of the intensity

    def kernel(self, defocus_nm: float, transposed: bool = False) -> np.ndarray:
        """The cached CTF kernel of one defocus on the wave grid M, scaled by M²/G² (the
        inverse FFT on M then gives the wave's values), (x, y) order or (y, x) if
        ``transposed``."""
        key = (float(defocus_nm), transposed)
        if key not in self._kernels:
            if transposed:
                self._kernels[key] = np.ascontiguousarray(self.kernel(defocus_nm).T)
            else:
                g, m = self.grid.gpts, self.m
                k = ctf_kernel(self.sim, self.grid, key[0])
                if m != g:
                    k = _crop_fft(k, m) * np.float32((m * m) / float(g * g))
                self._kernels[key] = np.ascontiguousarray(k, dtype=np.complex64)
        return self._kernels[key]

    def _detect_one(self, out: np.ndarray, transposed: bool) -> None:
        """Detector on ``self._in.real`` (intensity) into ``out`` ((y, x) order).

        ``transposed``: the intensity is already in (y, x) order (then the clip writes the
        output directly); otherwise it is in (x, y) order and transposed at the end.
        """
        n = self.grid.output_px
        self._in.forward()
        if n != self.m:
            self._out.spec[...] = _crop_rfft(self._in.spec, n)
        self._out.spec *= self._mtf
        self._out.backward()
        if transposed:
            np.maximum(self._out.real, 0.0, out=out)
        else:
            np.maximum(self._out.real, 0.0, out=self._out.real)
            out[...] = self._out.real.T

    def images(self, exit_fourier: np.ndarray, defoci_nm: list[float]) -> np.ndarray:
        """Clean output images (n_defocus, N, N), float32, (y, x) order, vacuum = 1.

        Without resampling (N = G) the detector is symmetric in x and y, and the 2D FFT
        commutes with the transpose, so the exit wave (once) and the CTF kernels (cached) are
        transposed in Fourier space and every intensity comes out in (y, x) order directly
        (no transpose of each image). With Fourier cropping to N < G the crop keeps the
        +Nyquist column but the -Nyquist row, so the (x, y) order of :func:`detect` is kept.
        """
        n, g, m = self.grid.output_px, self.grid.gpts, self.m
        transposed = n == g
        out = np.empty((len(defoci_nm), n, n), dtype=np.float32)
        w = self._wave_plan.buffer
        inten = self._in.real
        if self._tmp is None:
            self._tmp = np.empty_like(inten)
        tmp = self._tmp
        wave = _crop_fft(exit_fourier, m) if m != g else exit_fourier
        if transposed:
            wave = np.ascontiguousarray(wave.T)
        for i, d in enumerate(defoci_nm):
            np.multiply(wave, self.kernel(d, transposed), out=w)
            self._wave_plan.backward()
            np.multiply(w.real, w.real, out=inten)
            np.multiply(w.imag, w.imag, out=tmp)
            inten += tmp
            self._detect_one(out[i], transposed)
        return out
