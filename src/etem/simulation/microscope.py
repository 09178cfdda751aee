"""The microscope of one image, in physical units, and its seeded randomisation.

A :class:`Microscope` holds everything the CTF step and the detector step of one image need
(voltage, aberrations, partial coherence, objective aperture, detector pixel size and MTF,
source-size/vibration blur, dose). Physics functions take a ``Microscope`` (or plain numbers),
never a config section; :func:`fixed_microscope` and :func:`draw_microscopes` turn the
simulation config into ``Microscope`` values.

Randomisation (``simulation.microscope.enabled``): per image, the CTF parameters, the
detector pixel size, the blur and the dose are drawn from the configured ranges with the
config seed; the voltage is drawn per structure (a new voltage needs a new multislice; drawn
per structure the exit waves of a structure stay shared by all its images, the CTF-reuse that
makes the campaign fast). Defocus: with probability ``scherzer_fraction`` the Scherzer defocus
of the drawn (Cs, voltage) plus a small jitter, otherwise uniform in ``defocus_nm``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from etem.seeding import rng

#: the fields the CTF kernel depends on (the rest is the detector step and the dose)
CTF_FIELDS = ("energy_kv", "cs_um", "c5_mm", "focal_spread_nm", "convergence_mrad",
              "aperture_mrad", "defocus_nm")


@dataclass(frozen=True)
class Microscope:
    """The microscope of one image (units in the names; defocus: abTEM, -C10, + = underfocus).

    ``detector_pixel_A`` None: the detector pixel is the output pixel (no resampling);
    ``blur_fwhm_A``: FWHM [Å] of the Gaussian source-size / vibration / detector blur (0: none);
    ``dose_e_per_A2``: the dose drawn for the image [e/Å²] (NaN: not drawn).
    """

    energy_kv: float
    cs_um: float
    c5_mm: float
    focal_spread_nm: float
    convergence_mrad: float
    aperture_mrad: float
    defocus_nm: float = 0.0
    detector_mtf: str = "counting"
    detector_pixel_A: float | None = None
    blur_fwhm_A: float = 0.0
    dose_e_per_A2: float = math.nan

    def with_defocus(self, defocus_nm: float) -> Microscope:
        """The same microscope at another defocus [nm]."""
        return replace(self, defocus_nm=float(defocus_nm))

    def ctf_key(self) -> tuple[float, ...]:
        """The fields the CTF kernel depends on (cache key)."""
        return tuple(float(getattr(self, f)) for f in CTF_FIELDS)

    def detector_key(self) -> tuple[Any, ...]:
        """The fields the detector transfer depends on (cache key)."""
        return (self.detector_mtf, self.detector_pixel_A, self.blur_fwhm_A)

    @classmethod
    def from_row(cls, row: Any) -> Microscope:
        """The microscope of a parameter-table row (``/params``, the index); NaN detector
        pixel = None (the output pixel), NaN blur = 0."""
        kw = {k: row[k] for k in cls.__dataclass_fields__ if k in row}
        dp = kw.get("detector_pixel_A")
        kw["detector_pixel_A"] = None if dp is None or not math.isfinite(float(dp)) else float(dp)
        blur = float(kw.get("blur_fwhm_A", 0.0))
        kw["blur_fwhm_A"] = blur if math.isfinite(blur) else 0.0
        kw["detector_mtf"] = str(kw.get("detector_mtf", "counting"))
        for k in ("energy_kv", "cs_um", "c5_mm", "focal_spread_nm", "convergence_mrad",
                  "aperture_mrad", "defocus_nm", "dose_e_per_A2"):
            if k in kw:
                kw[k] = float(kw[k])
        return cls(**kw)

    def as_row(self) -> dict[str, Any]:
        """Parameter-table columns of this microscope."""
        d = asdict(self)
        d["detector_pixel_A"] = math.nan if self.detector_pixel_A is None else self.detector_pixel_A
        return d


def wavelength_A(energy_kv: float) -> float:
    """Relativistic electron wavelength [Å] at ``energy_kv`` [kV]."""
    m0c2 = 510.99895e3  # eV
    e = float(energy_kv) * 1e3
    return 12.2642598 / math.sqrt(e * (1.0 + e / (2.0 * m0c2)))


def scherzer_defocus_nm(cs_um: float, energy_kv: float) -> float:
    """Scherzer defocus [nm] (abTEM convention, + = underfocus): sign(Cs) sqrt(1.5 |Cs| λ)."""
    cs_A = float(cs_um) * 1e4
    return math.copysign(math.sqrt(1.5 * abs(cs_A) * wavelength_A(energy_kv)), cs_A) / 10.0


def fixed_microscope(sim: Any, defocus_nm: float = 0.0) -> Microscope:
    """The config's single microscope (no randomisation) at ``defocus_nm``."""
    return Microscope(
        energy_kv=float(sim.energy_kv), cs_um=float(sim.cs_um), c5_mm=float(sim.c5_mm),
        focal_spread_nm=float(sim.focal_spread_nm), convergence_mrad=float(sim.convergence_mrad),
        aperture_mrad=float(sim.aperture_mrad), defocus_nm=float(defocus_nm),
        detector_mtf=str(sim.detector_mtf),
    )


def _uniform(r: np.random.Generator, lo_hi: Any) -> float:
    lo, hi = (float(v) for v in lo_hi)
    return float(r.uniform(lo, hi)) if hi > lo else lo


def _log_uniform(r: np.random.Generator, lo_hi: Any) -> float:
    lo, hi = (float(v) for v in lo_hi)
    return float(math.exp(r.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo


def structure_energy_kv(sim: Any, seed: int, structure_id: str) -> float:
    """Voltage [kV] of a structure's images: drawn from ``microscope.energy_kv`` if enabled."""
    ranges = sim.microscope
    if not ranges.enabled:
        return float(sim.energy_kv)
    r = rng(seed, "simulation", "voltage", structure_id)
    return float(ranges.energy_kv[int(r.integers(len(ranges.energy_kv)))])


def draw_microscope(
    r: np.random.Generator, ranges: Any, energy_kv: float, sim: Any, dose_range: Any
) -> Microscope:
    """One randomised microscope at ``energy_kv`` [kV] from ``ranges`` (MicroscopeRanges)."""
    if r.uniform() < ranges.uncorrected_fraction:
        cs_um = _uniform(r, ranges.cs_uncorrected_um)
    else:
        cs_um = _uniform(r, ranges.cs_um)
    if r.uniform() < ranges.scherzer_fraction:
        defocus = scherzer_defocus_nm(cs_um, energy_kv) + _uniform(
            r, (-ranges.scherzer_jitter_nm, ranges.scherzer_jitter_nm))
    else:
        defocus = _uniform(r, ranges.defocus_nm)
    return Microscope(
        energy_kv=float(energy_kv), cs_um=cs_um, c5_mm=_uniform(r, ranges.c5_mm),
        focal_spread_nm=_uniform(r, ranges.focal_spread_nm),
        convergence_mrad=_uniform(r, ranges.convergence_mrad),
        aperture_mrad=float(sim.aperture_mrad), defocus_nm=float(defocus),
        detector_mtf=str(sim.detector_mtf),
        detector_pixel_A=_log_uniform(r, ranges.detector_pixel_A),
        blur_fwhm_A=_uniform(r, ranges.blur_fwhm_A),
        dose_e_per_A2=_log_uniform(r, ranges.dose_e_per_A2 or dose_range),
    )


def draw_microscopes(
    sim: Any, seed: int, structure_id: str, n: int, dose_range: Any
) -> list[Microscope]:
    """``n`` randomised microscopes of a structure's images (a function of seed and id).

    With ``microscope.ctf_draws_per_structure = k`` only k CTF draws are made and image i
    takes CTF draw i mod k; its detector pixel, blur and dose are its own.
    """
    energy = structure_energy_kv(sim, seed, structure_id)
    r = rng(seed, "simulation", "microscope", structure_id)
    draws = [draw_microscope(r, sim.microscope, energy, sim, dose_range) for _ in range(n)]
    k = sim.microscope.ctf_draws_per_structure
    if k is None or k >= n:
        return draws
    return [replace(draws[i], **{f: getattr(draws[i % k], f) for f in CTF_FIELDS})
            for i in range(n)]
