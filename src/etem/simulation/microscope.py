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

Residual aberrations after alignment: two-fold astigmatism C12 and axial coma C21 (abTEM's
polar coefficients, magnitudes uniform in their ranges, angles uniform), drawn from a stream of
their own so that zero ranges give the draws of a campaign without them. The detector's
DQE(0) is drawn per image (:func:`etem.simulation.noise.detector_counts` applies it).

Contrast regime (:func:`contrast_index`, :func:`contrast_regime`): the weak-phase transfer
of the drawn microscope, averaged over the lattice band of spatial frequencies, says whether
atom columns come out bright, dark or neither; with ``contrast_balance`` the CTF draws of a
structure are stratified over the regimes in the configured proportions (a seeded shuffle of
the regime quotas, each filled by the next seeded candidate draw of its regime).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from etem.errors import ValidationError
from etem.seeding import rng

#: the fields the CTF kernel depends on (the rest is the detector step and the dose)
CTF_FIELDS = ("energy_kv", "cs_um", "c5_mm", "focal_spread_nm", "convergence_mrad",
              "aperture_mrad", "defocus_nm", "c12_nm", "phi12_deg", "c21_nm", "phi21_deg")

#: contrast regimes of atom columns (:func:`contrast_regime`)
CONTRAST_REGIMES = ("bright", "dark", "intermediate")

#: candidate draws of a structure before a regime is declared out of reach of the ranges
MAX_REGIME_TRIES = 2048

#: candidates drawn and classified at once by the regime balance
REGIME_BATCH = 32

_FLOAT_FIELDS = ("energy_kv", "cs_um", "c5_mm", "focal_spread_nm", "convergence_mrad",
                 "aperture_mrad", "defocus_nm", "dose_e_per_A2", "c12_nm", "phi12_deg",
                 "c21_nm", "phi21_deg", "dqe")


@dataclass(frozen=True)
class Microscope:
    """The microscope of one image (units in the names; defocus: abTEM, -C10, + = underfocus).

    ``detector_pixel_A`` None: the detector pixel is the output pixel (no resampling);
    ``blur_fwhm_A``: FWHM [Å] of the Gaussian source-size / vibration / detector blur (0: none);
    ``dose_e_per_A2``: the dose drawn for the image [e/Å²] (NaN: not drawn).
    ``c12_nm``, ``phi12_deg``: two-fold astigmatism (abTEM ``C12``, ``phi12``): the phase
    gains ½ α² C12 cos 2(φ - φ12), i.e. the effective defocus along φ12 is ``defocus - C12``.
    ``c21_nm``, ``phi21_deg``: axial coma (abTEM ``C21``, ``phi21``; Krivanek notation,
    C21 = 3 B2 of Haider's): the phase gains ⅓ α³ C21 cos(φ - φ21). Angles φ from the image
    x axis (columns) toward +y (rows).
    ``dqe``: the detector's DQE(0) (NaN: an ideal counting detector, Poisson counts).
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
    c12_nm: float = 0.0
    phi12_deg: float = 0.0
    c21_nm: float = 0.0
    phi21_deg: float = 0.0
    dqe: float = math.nan

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
        for k in _FLOAT_FIELDS:
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


def _phase_and_envelope(
    mics: list[Microscope], k_per_A: np.ndarray, phi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """χ and log E of :func:`transfer` for several microscopes at once, float64 arrays
    (len(mics), *broadcast(k, phi))."""
    k = np.asarray(k_per_A, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    shape = (len(mics),) + (1,) * max(k.ndim, phi.ndim)

    def col(values: Any) -> np.ndarray:
        return np.asarray(list(values), dtype=np.float64).reshape(shape)

    lam = col(wavelength_A(m.energy_kv) for m in mics)
    a = k * lam
    c10 = col(-m.defocus_nm * 10.0 for m in mics)
    c30, c50 = col(m.cs_um * 1e4 for m in mics), col(m.c5_mm * 1e7 for m in mics)
    c12, c21 = col(m.c12_nm * 10.0 for m in mics), col(m.c21_nm * 10.0 for m in mics)
    d12 = 2.0 * (phi - col(math.radians(m.phi12_deg) for m in mics))
    d21 = phi - col(math.radians(m.phi21_deg) for m in mics)
    f = 2.0 * math.pi / lam
    a2 = a * a
    defocus = c10 + c12 * np.cos(d12)
    coma = c21 * np.cos(d21)
    chi = f * a2 * (0.5 * defocus + a / 3.0 * coma + 0.25 * a2 * c30 + a2 * a2 / 6.0 * c50)
    dchi_da = f * a * (defocus + a * coma + a2 * c30 + a2 * a2 * c50)
    dchi_dphi = f * a * (c12 * np.sin(d12) + a / 3.0 * c21 * np.sin(d21))
    beta = col(m.convergence_mrad * 1e-3 for m in mics)
    spread = col(m.focal_spread_nm * 10.0 for m in mics)
    log_env = -(beta / 2.0) ** 2 * (dchi_da**2 + dchi_dphi**2) - (0.5 * math.pi / lam
                                                                   * spread * a2) ** 2
    return chi, log_env


def transfer(m: Microscope, k_per_A: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """abTEM's CTF ``E exp(-iχ)`` of ``m`` without the aperture, at spatial frequencies
    ``k_per_A`` [1/Å] and azimuths ``phi`` [rad] (from the image x axis toward +y), complex128.

    The same formulas as abTEM's ``CTF`` (polar aberrations C10 = -defocus, C12, C21, C30,
    C50; temporal envelope ``exp(-(π Δ α² / 2λ)²)`` of the focal spread Δ; spatial envelope
    ``exp(-(β/2)² |∇χ|²)`` of the angular spread β), evaluated anywhere without a grid (a test
    holds it to :func:`etem.simulation.imaging.ctf_kernel`).
    """
    chi, log_env = _phase_and_envelope([m], k_per_A, phi)
    return np.exp(log_env[0] - 1j * chi[0])


def contrast_indices(
    mics: list[Microscope], band_per_nm: tuple[float, float] = (2.0, 8.0), n_k: int = 96,
    n_phi: int = 12,
) -> np.ndarray:
    """:func:`contrast_index` of several microscopes (one vectorised evaluation), float64."""
    if not mics:
        return np.zeros(0)
    lo, hi = (float(v) / 10.0 for v in band_per_nm)  # 1/Å
    k = np.sqrt(lo**2 + (hi**2 - lo**2) * (np.arange(n_k) + 0.5) / n_k)[:, None]
    phi = (2.0 * math.pi * (np.arange(n_phi) + 0.5) / n_phi)[None, :]  # holds -k with k
    chi, log_env = _phase_and_envelope(mics, k, phi)
    lam = np.array([wavelength_A(m.energy_kv) for m in mics])[:, None, None]
    ap = np.array([m.aperture_mrad * 1e-3 for m in mics])[:, None, None]
    t = np.where(k[None] * lam <= ap, np.exp(log_env) * np.sin(chi), 0.0)
    return np.asarray(t.mean(axis=(1, 2)), dtype=np.float64)


def contrast_index(
    m: Microscope, band_per_nm: tuple[float, float] = (2.0, 8.0), n_k: int = 96,
    n_phi: int = 12,
) -> float:
    """Weak-phase contrast of atom columns under ``m``, in [-1, 1]: + bright, - dark atoms.

    A weak phase object ψ = 1 + iσV (σV > 0 at the atoms) imaged through the CTF
    H = E exp(-iχ) has I = 1 + σ V ⊗ t with FT(t) = T(k) = i[H(k) - H*(-k)], which is
    2 E sin χ for an even χ (coma, odd in k, adds a factor cos χ_odd and a shift). The index
    is the mean of T/2 over the annulus ``band_per_nm`` [1/nm], i.e. the mean of E sin χ
    over it (k and -k both in it; uniform in area; ``n_k`` x ``n_phi`` points, within 0.015
    of the exact mean; 2-8 nm⁻¹ holds the lattice fringes of the campaign's oxides and Pt,
    d = 0.125-0.5 nm, and agrees with the simulated column contrast where 2-5 nm⁻¹ did not
    for a quarter of the images), with the
    objective aperture: +1 = every frequency of the band transferred as bright atoms, -1 as
    dark atoms; near 0 = mixed transfer over the band or damped by the envelopes. It is the
    microscope's regime: thick crystals (dynamical scattering) can still reverse contrast.
    """
    return float(contrast_indices([m], band_per_nm, n_k, n_phi)[0])


def contrast_regime(index: float, threshold: float) -> str:
    """``'bright'`` (index > threshold), ``'dark'`` (< -threshold) or ``'intermediate'``."""
    if index > threshold:
        return "bright"
    if index < -threshold:
        return "dark"
    return "intermediate"


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
    r: np.random.Generator, ranges: Any, energy_kv: float, sim: Any, dose_range: Any,
    r_aberr: np.random.Generator | None = None,
) -> Microscope:
    """One randomised microscope at ``energy_kv`` [kV] from ``ranges`` (MicroscopeRanges).

    ``r_aberr``: the generator of the astigmatism and coma draws (default ``r``); no draw is
    made for a range of zero width at 0 (a campaign without them draws as before).
    """
    if r.uniform() < ranges.uncorrected_fraction:
        cs_um = _uniform(r, ranges.cs_uncorrected_um)
    else:
        cs_um = _uniform(r, ranges.cs_um)
    if r.uniform() < ranges.scherzer_fraction:
        defocus = scherzer_defocus_nm(cs_um, energy_kv) + _uniform(
            r, (-ranges.scherzer_jitter_nm, ranges.scherzer_jitter_nm))
    else:
        defocus = _uniform(r, ranges.defocus_nm)
    m = Microscope(
        energy_kv=float(energy_kv), cs_um=cs_um, c5_mm=_uniform(r, ranges.c5_mm),
        focal_spread_nm=_uniform(r, ranges.focal_spread_nm),
        convergence_mrad=_uniform(r, ranges.convergence_mrad),
        aperture_mrad=float(sim.aperture_mrad), defocus_nm=float(defocus),
        detector_mtf=str(sim.detector_mtf),
        detector_pixel_A=_log_uniform(r, ranges.detector_pixel_A),
        blur_fwhm_A=_uniform(r, ranges.blur_fwhm_A),
        dose_e_per_A2=_log_uniform(r, ranges.dose_e_per_A2 or dose_range),
    )
    ra = r if r_aberr is None else r_aberr
    aberr: dict[str, Any] = {}
    if max(ranges.c12_nm) > 0:
        aberr.update(c12_nm=_uniform(ra, ranges.c12_nm), phi12_deg=float(ra.uniform(0, 180)))
    if max(ranges.c21_nm) > 0:
        aberr.update(c21_nm=_uniform(ra, ranges.c21_nm), phi21_deg=float(ra.uniform(0, 360)))
    return replace(m, **aberr) if aberr else m


def regime_quotas(
    balance: dict[str, float], n: int, r: np.random.Generator
) -> list[str]:
    """``n`` contrast regimes in the proportions ``balance`` (relative weights), in a seeded
    random order: each regime gets the floor of its share, the few slots left go to regimes
    drawn (seeded, without replacement) with the weights of their remainders, so every
    regime is within one of its share and the expected count is its share (a structure of
    8 images does not always give the extra ones to the same regimes)."""
    names = [k for k in CONTRAST_REGIMES if balance.get(k, 0.0) > 0]
    w = np.array([float(balance[k]) for k in names])
    exact = n * w / w.sum()
    count = np.floor(exact).astype(int)
    rest = exact - count
    left = n - int(count.sum())
    if left:
        count[r.choice(len(names), size=left, replace=False, p=rest / rest.sum())] += 1
    out = [name for name, c in zip(names, count, strict=True) for _ in range(int(c))]
    return [out[i] for i in r.permutation(n)]


def microscope_regimes(mics: list[Microscope], ranges: Any) -> list[tuple[float, str]]:
    """The contrast index and regime of each microscope under the band and threshold of
    ``ranges`` (MicroscopeRanges)."""
    idx = contrast_indices(mics, tuple(ranges.contrast_band_per_nm))
    t = float(ranges.contrast_threshold)
    return [(float(v), contrast_regime(float(v), t)) for v in idx]


def microscope_regime(m: Microscope, ranges: Any) -> tuple[float, str]:
    """The contrast index and regime of ``m`` (:func:`microscope_regimes`)."""
    return microscope_regimes([m], ranges)[0]


def _balanced_draws(
    quotas: list[str], draw: Any, ranges: Any, energy_kv: float
) -> list[Microscope]:
    """One microscope per quota: candidates are drawn in batches of ``REGIME_BATCH`` from
    ``draw()`` and classified at once; each quota takes the earliest unused candidate of its
    regime (so each regime's draws are independent draws from the ranges given the regime,
    as by rejection, with every candidate a later quota can use kept for it)."""
    pool: dict[str, list[Microscope]] = {name: [] for name in CONTRAST_REGIMES}
    out, made = [], 0
    for q in quotas:
        while not pool[q]:
            if made >= MAX_REGIME_TRIES:
                raise ValidationError(
                    f"simulation.microscope.contrast_balance: no {q!r} microscope at "
                    f"{energy_kv:g} kV in {MAX_REGIME_TRIES} draws from the ranges (widen "
                    f"defocus_nm or cs_um, or give {q!r} no share)")
            batch = [draw() for _ in range(REGIME_BATCH)]
            made += REGIME_BATCH
            for m, (_, regime) in zip(batch, microscope_regimes(batch, ranges), strict=True):
                pool[regime].append(m)
        out.append(pool[q].pop(0))
    return out


def draw_microscopes(
    sim: Any, seed: int, structure_id: str, n: int, dose_range: Any
) -> list[Microscope]:
    """``n`` randomised microscopes of a structure's images (a function of seed and id).

    With ``microscope.ctf_draws_per_structure = k`` only k CTF draws are made and image i
    takes CTF draw i mod k; its detector pixel, blur, dose and DQE are its own. With
    ``microscope.contrast_balance`` the CTF draws get their regimes from
    :func:`regime_quotas` and are filled from seeded candidates (:func:`_balanced_draws`).
    """
    ranges = sim.microscope
    energy = structure_energy_kv(sim, seed, structure_id)
    r = rng(seed, "simulation", "microscope", structure_id)
    ra = rng(seed, "simulation", "microscope", structure_id, "aberrations")
    k = n if ranges.ctf_draws_per_structure is None else min(ranges.ctf_draws_per_structure, n)

    def draw() -> Microscope:
        return draw_microscope(r, ranges, energy, sim, dose_range, ra)

    if ranges.contrast_balance is None:
        draws = [draw() for _ in range(n)]
    else:
        rq = rng(seed, "simulation", "microscope", structure_id, "regimes")
        draws = _balanced_draws(regime_quotas(ranges.contrast_balance, k, rq), draw, ranges,
                                energy)
        draws += [draw() for _ in range(n - k)]  # detector draws of the cycled images
    if ranges.dqe is not None:
        rd = rng(seed, "simulation", "microscope", structure_id, "dqe")
        draws = [replace(m, dqe=_uniform(rd, ranges.dqe)) for m in draws]
    if k >= n:
        return draws
    return [replace(draws[i], **{f: getattr(draws[i % k], f) for f in CTF_FIELDS})
            for i in range(n)]
