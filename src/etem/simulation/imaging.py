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

import numpy as np
import scipy.fft

from etem.simulation.grid import ImageGrid


def ctf_parameters(sim: Any, defocus_nm: float) -> dict[str, Any]:
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


def ctf_kernel(sim: Any, grid: ImageGrid, defocus_nm: float) -> np.ndarray:
    """abTEM's CTF (aberrations, envelopes, aperture) on the simulation grid, complex64 (x, y)."""
    import abtem

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


class Imager:
    """Applies cached CTF kernels to Fourier-space exit waves and detects the images.

    The fast path of the campaign: per image one complex multiply, one inverse FFT, the
    intensity, and a real FFT pair for the detector, on FFT plans of
    :mod:`etem.simulation.fft` (same result as :func:`detect` on abTEM's intensity).
    """

    def __init__(self, sim: Any, grid: ImageGrid, threads: int = 1) -> None:
        from etem.simulation.fft import ComplexPlan, RealPlan

        self.sim = sim
        self.grid = grid
        self.threads = threads
        self._kernels: dict[float, np.ndarray] = {}
        g, n = grid.gpts, grid.output_px
        backend = getattr(sim, "fft_backend", "deterministic")
        self._wave_plan = ComplexPlan(g, threads, backend)
        self._in = RealPlan(g, threads, backend)
        self._out = self._in if n == g else RealPlan(n, threads, backend)
        # MTF and the mean-preserving resampling factor in one array
        self._mtf = detector_mtf(n, sim.detector_mtf) * np.float32((n * n) / float(g * g))

    def kernel(self, defocus_nm: float) -> np.ndarray:
        """The cached CTF kernel of one defocus."""
        key = float(defocus_nm)
        if key not in self._kernels:
            self._kernels[key] = ctf_kernel(self.sim, self.grid, key)
        return self._kernels[key]

    def _detect_one(self, out: np.ndarray) -> None:
        """Detector on ``self._in.real`` (intensity, (x, y)) into ``out`` ((y, x) order)."""
        g, n = self.grid.gpts, self.grid.output_px
        self._in.forward()
        if n == g:
            self._out.spec *= self._mtf
        else:
            self._out.spec[...] = _crop_rfft(self._in.spec, n)
            self._out.spec *= self._mtf
        self._out.backward()
        np.maximum(self._out.real, 0.0, out=self._out.real)
        out[...] = self._out.real.T

    def images(self, exit_fourier: np.ndarray, defoci_nm: list[float]) -> np.ndarray:
        """Clean output images (n_defocus, N, N), float32, (y, x) order, vacuum = 1."""
        n = self.grid.output_px
        out = np.empty((len(defoci_nm), n, n), dtype=np.float32)
        w = self._wave_plan.buffer
        for i, d in enumerate(defoci_nm):
            np.multiply(exit_fourier, self.kernel(d), out=w)
            self._wave_plan.backward()
            np.multiply(w.real, w.real, out=self._in.real)
            self._in.real += w.imag * w.imag
            self._detect_one(out[i])
        return out
