"""Image formation: abTEM's CTF on stored exit waves, then the detector (resampling, MTF).

Conventions
-----------
* Defocus follows abTEM: ``defocus = -C10``; positive defocus is underfocus. ``Cs = C30``,
  ``C5 = C50``; two-fold astigmatism ``C12``/``phi12`` and axial coma ``C21``/``phi21`` are
  abTEM's polar coefficients (angles from the x axis, the image columns, toward +y).
  Partial coherence in the quasi-coherent approximation of abTEM's ``CTF``: ``focal_spread``
  is the 1/e width [Å] of the focal spread, ``angular_spread`` the standard deviation of the
  beam angles [mrad]; the objective aperture is ``semiangle_cutoff`` [mrad] (soft edge,
  abTEM default).
* The clean image is ``|IFFT(FFT(psi_exit) * CTF)|**2`` with an incident wave of amplitude 1,
  so vacuum = 1, followed by :func:`detect`.
* Detector: the intensity is resampled to the output grid by Fourier cropping (or zero
  padding) at the same field of view (band-limited, mean preserving) and multiplied by the
  detector MTF. ``counting`` is the MTF of a counting detector's square pixels (K3-like):
  ``MTF(u, v) = sinc(u) sinc(v)`` with u, v in cycles per output pixel (0.64 at Nyquist).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import abtem
import numpy as np
import scipy.fft

from etem.config.simulation import SimulationConfig
from etem.simulation.fft import ComplexPlan, RealPlan
from etem.simulation.grid import ImageGrid, fft_size
from etem.simulation.microscope import Microscope, fixed_microscope, wavelength_A


def ctf_parameters(m: Microscope) -> dict[str, Any]:
    """Keyword arguments of :class:`abtem.CTF` (without energy) for the microscope ``m``.

    Units converted to abTEM's: lengths [Å], angles [mrad], aberration angles [rad].
    Astigmatism (``C12``, ``phi12``) and coma (``C21``, ``phi21``) are passed when non-zero
    (abTEM's default for every coefficient is 0: the same CTF either way).
    """
    coefficients = {
        "C10": -float(m.defocus_nm) * 10.0,
        "C30": float(m.cs_um) * 1e4,
        "C50": float(m.c5_mm) * 1e7,
    }
    if m.c12_nm:
        coefficients.update(C12=float(m.c12_nm) * 10.0, phi12=math.radians(m.phi12_deg))
    if m.c21_nm:
        coefficients.update(C21=float(m.c21_nm) * 10.0, phi21=math.radians(m.phi21_deg))
    return {
        "semiangle_cutoff": float(m.aperture_mrad),
        "focal_spread": float(m.focal_spread_nm) * 10.0,
        "angular_spread": float(m.convergence_mrad),
        "aberration_coefficients": coefficients,
    }


def ctf_kernel(grid: ImageGrid, m: Microscope) -> np.ndarray:
    """abTEM's CTF (aberrations, envelopes, aperture) on the simulation grid, complex64 (x, y).

    Public abTEM API only: ``CTF.to_diffraction_patterns()`` evaluates the kernel on the
    CTF's grid (returned fftshifted; no FFT involved). The kernel is zero outside the
    objective aperture, so it is evaluated on the smallest FFT-friendly grid of the same
    field of view (the same spatial frequencies) that holds the aperture with a margin, and
    zero-padded to the simulation grid: exact, and 5-6x fewer points than the full grid at
    40 mrad, 300 kV, 0.1 Å (one kernel per image in a randomised campaign).
    """
    g, extent = grid.gpts, grid.extent_A
    k_ap = float(m.aperture_mrad) * 1e-3 / wavelength_A(m.energy_kv) * extent  # index units
    small = min(fft_size(2 * math.ceil(k_ap) + 8), g)
    ctf = abtem.CTF(energy=m.energy_kv * 1e3, gpts=(small, small),
                    sampling=(extent / small,) * 2, **ctf_parameters(m))
    kernel = np.fft.ifftshift(np.asarray(ctf.to_diffraction_patterns().array), axes=(-2, -1))
    if small < g:
        full = np.zeros((g, g), dtype=np.complex64)
        idx = np.r_[0:small // 2, g - small // 2:g]
        full[np.ix_(idx, idx)] = kernel
        kernel = full
    return np.ascontiguousarray(kernel, dtype=np.complex64)


def detector_mtf(output_px: int, model: str) -> np.ndarray:
    """MTF on the rfft2 grid of an ``output_px`` square image, float32 (output_px, px//2+1)."""
    if model == "none":
        return np.ones((output_px, output_px // 2 + 1), dtype=np.float32)
    if model == "counting":
        u = np.fft.fftfreq(output_px)  # cycles / pixel
        v = np.fft.rfftfreq(output_px)
        return (np.sinc(u)[:, None] * np.sinc(v)[None, :]).astype(np.float32)
    raise ValueError(f"unknown detector MTF model {model!r}")


def detector_transfer(
    output_px: int, pixel_size_A: float, model: str, detector_pixel_A: float | None = None,
    blur_fwhm_A: float = 0.0,
) -> np.ndarray:
    """Detector + blur transfer on the rfft2 grid of the output image, float32.

    ``pixel_size_A``: the output (network) pixel [Å]. ``detector_pixel_A``: the detector's
    pixel [Å] (None: the output pixel, then this is :func:`detector_mtf`); the image is
    recorded on detector pixels (their MTF, sinc(f p) for a counting detector, and no
    frequency above the detector's Nyquist 1/(2p), aliasing neglected) and resampled to the
    output grid at the same field of view. ``blur_fwhm_A``: Gaussian blur (source size,
    vibration, detector point spread) of that FWHM [Å]. The transfer at f = 0 is 1: counts per
    Å² (the dose) are conserved.
    """
    if detector_pixel_A is None:
        out = detector_mtf(output_px, model).astype(np.float64)
    else:
        p = float(detector_pixel_A)
        fu = np.fft.fftfreq(output_px, d=pixel_size_A)  # cycles / Å
        fv = np.fft.rfftfreq(output_px, d=pixel_size_A)
        bu, bv = np.abs(fu) <= 0.5 / p, np.abs(fv) <= 0.5 / p
        if model == "counting":
            tu, tv = np.sinc(fu * p), np.sinc(fv * p)
        elif model == "none":
            tu, tv = np.ones_like(fu), np.ones_like(fv)
        else:
            raise ValueError(f"unknown detector MTF model {model!r}")
        out = (tu * bu)[:, None] * (tv * bv)[None, :]
    if blur_fwhm_A > 0:
        sigma = float(blur_fwhm_A) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        fu = np.fft.fftfreq(output_px, d=pixel_size_A)
        fv = np.fft.rfftfreq(output_px, d=pixel_size_A)
        f2 = fu[:, None] ** 2 + fv[None, :] ** 2
        out = out * np.exp(-2.0 * math.pi**2 * sigma**2 * f2)
    return out.astype(np.float32)


def resample_counts(
    image: np.ndarray, from_pixel_A: float, to_pixel_A: float, threads: int = 1
) -> np.ndarray:
    """Resample counts (..., H, W) [e/px] from pixels of ``from_pixel_A`` to pixels of
    ``to_pixel_A`` [Å] over the same field of view; float32.

    Counts per Å² (the dose) are conserved: the total count stays the same. An integer
    ratio k = to/from (binning) sums k x k blocks (exact; Poisson counts stay Poisson; a
    remainder of fewer than k rows/columns is dropped). Otherwise Fourier resampling
    (band-limited; the output has ``round(H from/to)`` x ``round(W from/to)`` pixels; values
    may ring slightly below 0 next to zero counts and are not clipped, so the total is kept).
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape[-2:]
    k = float(to_pixel_A) / float(from_pixel_A)
    if abs(k - round(k)) < 1e-6 and round(k) >= 1:
        k = round(k)
        hb, wb = h // k, w // k
        blocks = img[..., :hb * k, :wb * k].reshape(*img.shape[:-2], hb, k, wb, k)
        return blocks.sum(axis=(-3, -1)).astype(np.float32)
    ho, wo = max(1, round(h / k)), max(1, round(w / k))
    spec = scipy.fft.fftshift(scipy.fft.fft2(img, workers=threads), axes=(-2, -1))
    out = np.zeros((*img.shape[:-2], ho, wo), dtype=complex)
    hh, ww = min(h, ho), min(w, wo)
    si, sj, di, dj = h // 2 - hh // 2, w // 2 - ww // 2, ho // 2 - hh // 2, wo // 2 - ww // 2
    out[..., di:di + hh, dj:dj + ww] = spec[..., si:si + hh, sj:sj + ww]
    # ifft2 divides by ho*wo: the DC term (the total) is kept, so counts per Å² are conserved
    res = scipy.fft.ifft2(scipy.fft.ifftshift(out, axes=(-2, -1)), workers=threads).real
    return res.astype(np.float32)


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
    intensity_xy: np.ndarray, grid: ImageGrid, mtf_model: str, threads: int = 1,
    detector_pixel_A: float | None = None, blur_fwhm_A: float = 0.0,
) -> np.ndarray:
    """Detector: resample (..., G, G) intensities in (x, y) order to the output grid, apply the
    MTF (of ``detector_pixel_A`` [Å] pixels and a ``blur_fwhm_A`` [Å] Gaussian blur, see
    :func:`detector_transfer`), and return float32 images (..., N, N) in (y, x) image order.

    Fourier resampling at a fixed field of view preserves the mean, so vacuum stays 1;
    negative values (ringing next to near-zero intensities) are clipped to 0.
    """
    n_out = grid.output_px
    spec = scipy.fft.rfft2(intensity_xy, axes=(-2, -1), workers=threads)
    if n_out != grid.gpts:
        spec = _crop_rfft(spec, n_out)
    spec *= detector_transfer(n_out, grid.pixel_size_A, mtf_model, detector_pixel_A,
                              blur_fwhm_A)
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

    #: cached kernels/transfers per Imager beyond which the caches are emptied (randomised
    #: microscopes rarely repeat)
    max_cached = 64

    def __init__(
        self, sim: SimulationConfig, grid: ImageGrid, threads: int = 1,
        energy_kv: float | None = None,
    ) -> None:
        self.grid = grid
        self.threads = threads
        base = fixed_microscope(sim)
        if energy_kv is not None:
            base = replace(base, energy_kv=float(energy_kv))
        self.base = base
        self._kernels: dict[tuple[tuple[float, ...], bool], np.ndarray] = {}
        self._transfers: dict[tuple[Any, ...], np.ndarray] = {}
        n = grid.output_px
        # the aperture (and so M) does not depend on defocus or aberrations
        self.m = m = wave_size(ctf_kernel(grid, base))
        backend = sim.fft_backend
        self._wave_plan = ComplexPlan(m, threads, backend)
        self._in = RealPlan(m, threads, backend)
        self._out = self._in if n == m else RealPlan(n, threads, backend)
        self._tmp: np.ndarray | None = None  # float32 (M, M) scratch of the intensity

    def transfer(self, mic: Microscope) -> np.ndarray:
        """Detector transfer of ``mic`` times the mean-preserving resampling factor N²/M²."""
        key = mic.detector_key()
        if key not in self._transfers:
            if len(self._transfers) >= self.max_cached:
                self._transfers.clear()
            n = self.grid.output_px
            t = detector_transfer(n, self.grid.pixel_size_A, mic.detector_mtf,
                                  mic.detector_pixel_A, mic.blur_fwhm_A)
            self._transfers[key] = t * np.float32((n * n) / float(self.m * self.m))
        return self._transfers[key]

    def kernel(self, defocus_nm: float | Microscope, transposed: bool = False) -> np.ndarray:
        """The cached CTF kernel of one microscope (or the base one at a defocus) on the wave
        grid M, scaled by M²/G² (the inverse FFT on M then gives the wave's values), (x, y)
        order or (y, x) if ``transposed``."""
        mic = (defocus_nm if isinstance(defocus_nm, Microscope)
               else self.base.with_defocus(float(defocus_nm)))
        if mic.energy_kv != self.base.energy_kv or mic.aperture_mrad != self.base.aperture_mrad:
            raise ValueError(
                f"microscope at {mic.energy_kv} kV, {mic.aperture_mrad} mrad on an imager "
                f"made for {self.base.energy_kv} kV, {self.base.aperture_mrad} mrad")
        key = (mic.ctf_key(), transposed)
        if key not in self._kernels:
            if len(self._kernels) >= self.max_cached:
                self._kernels.clear()
            if transposed:
                self._kernels[key] = np.ascontiguousarray(self.kernel(mic).T)
            else:
                g, m = self.grid.gpts, self.m
                k = ctf_kernel(self.grid, mic)
                if m != g:
                    k = _crop_fft(k, m) * np.float32((m * m) / float(g * g))
                self._kernels[key] = np.ascontiguousarray(k, dtype=np.complex64)
        return self._kernels[key]

    def _detect_one(self, out: np.ndarray, transposed: bool, transfer: np.ndarray) -> None:
        """Detector on ``self._in.real`` (intensity) into ``out`` ((y, x) order).

        ``transposed``: the intensity is already in (y, x) order (then the clip writes the
        output directly); otherwise it is in (x, y) order and transposed at the end.
        """
        n = self.grid.output_px
        self._in.forward()
        if n != self.m:
            self._out.spec[...] = _crop_rfft(self._in.spec, n)
        self._out.spec *= transfer
        self._out.backward()
        if transposed:
            np.maximum(self._out.real, 0.0, out=out)
        else:
            np.maximum(self._out.real, 0.0, out=self._out.real)
            out[...] = self._out.real.T

    def images(
        self, exit_fourier: np.ndarray, defoci_nm: Sequence[float | Microscope]
    ) -> np.ndarray:
        """Clean output images (n, N, N), float32, (y, x) order, vacuum = 1.

        ``defoci_nm``: defoci [nm] of the base microscope, or one :class:`Microscope` per
        image (same voltage and aperture as this imager; aberrations, coherence, detector
        pixel and blur of their own).

        Without resampling (N = G) the detector is symmetric in x and y, and the 2D FFT
        commutes with the transpose, so the exit wave (once) and the CTF kernels (cached) are
        transposed in Fourier space and every intensity comes out in (y, x) order directly
        (no transpose of each image). With Fourier cropping to N < G the crop keeps the
        +Nyquist column but the -Nyquist row, so the (x, y) order of :func:`detect` is kept.
        """
        mics = [d if isinstance(d, Microscope) else self.base.with_defocus(float(d))
                for d in defoci_nm]
        n, g, m = self.grid.output_px, self.grid.gpts, self.m
        transposed = n == g
        out = np.empty((len(mics), n, n), dtype=np.float32)
        w = self._wave_plan.buffer
        inten = self._in.real
        if self._tmp is None:
            self._tmp = np.empty_like(inten)
        tmp = self._tmp
        wave = _crop_fft(exit_fourier, m) if m != g else exit_fourier
        if transposed:
            wave = np.ascontiguousarray(wave.T)
        for i, mic in enumerate(mics):
            np.multiply(wave, self.kernel(mic, transposed), out=w)
            self._wave_plan.backward()
            np.multiply(w.real, w.real, out=inten)
            np.multiply(w.imag, w.imag, out=tmp)
            inten += tmp
            self._detect_one(out[i], transposed, self.transfer(mic))
        return out
