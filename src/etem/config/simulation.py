"""Config of the simulation stage: abTEM HRTEM images, labels, noise and synthetic movies."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from etem.config.base import (
    Defocus,
    FrameIndex,
    Positive,
    PositiveRange,
    StrictModel,
    TiltMrad,
)

EventKind = Literal["surface_loss", "rotation", "vacancy"]
ContrastRegime = Literal["bright", "dark", "intermediate"]


def _equal_regimes() -> dict[ContrastRegime, float]:
    return {"bright": 1.0, "dark": 1.0, "intermediate": 1.0}


class MicroscopeRanges(StrictModel):
    """Microscope randomisation: per image, parameters drawn from these ranges (config seed).

    Disabled by default (the fixed microscope of the simulation section). Ranges are
    ``(low, high)``, drawn uniformly (detector pixel and dose log-uniformly); the voltage is
    drawn per structure from ``energy_kv``; astigmatism and coma angles uniformly; the CTF
    draws are balanced over the contrast regimes by ``contrast_balance``. See
    :mod:`etem.simulation.microscope`.
    """

    enabled: bool = Field(False, description="draw a microscope per image")
    energy_kv: list[float] = Field(
        default_factory=lambda: [80.0, 200.0, 300.0], min_length=1,
        description="voltages drawn per structure [kV]",
    )
    cs_um: tuple[float, float] = Field(
        (-40.0, 40.0), description="C30 of a corrected microscope [µm]"
    )
    cs_uncorrected_um: tuple[float, float] = Field(
        (500.0, 1300.0), description="C30 of an uncorrected microscope [µm]"
    )
    uncorrected_fraction: float = Field(
        0.25, ge=0, le=1, description="fraction of images drawn from cs_uncorrected_um"
    )
    c5_mm: tuple[float, float] = Field((0.0, 10.0), description="C50 [mm]")
    focal_spread_nm: tuple[float, float] = Field(
        (1.0, 6.0), description="focal spread, 1/e width [nm]"
    )
    convergence_mrad: tuple[float, float] = Field(
        (0.05, 0.4), description="beam angular spread, std [mrad]"
    )
    defocus_nm: tuple[float, float] = Field(
        (-30.0, 30.0), description="defocus [nm] (abTEM convention, + = underfocus)"
    )
    scherzer_fraction: float = Field(
        0.3, ge=0, le=1, description="fraction of images at the Scherzer defocus of their Cs"
    )
    scherzer_jitter_nm: float = Field(2.0, ge=0, description="jitter around Scherzer [nm]")
    detector_pixel_A: tuple[float, float] = Field(
        (0.03, 0.2), description="detector pixel size [Å], resampled to the output grid"
    )
    blur_fwhm_A: tuple[float, float] = Field(
        (0.3, 1.5), description="Gaussian source-size/vibration/MTF blur, FWHM [Å]"
    )
    dose_e_per_A2: tuple[float, float] | None = Field(
        None, description="dose recorded per image [e/Å²] (None = noise.train_dose_e_per_A2)"
    )
    c12_nm: tuple[float, float] = Field(
        (0.0, 5.0),
        description="two-fold astigmatism |C12| [nm] (abTEM C12; angle uniform in 0-180°): "
        "residual after alignment, ~1-2 nm on a tuned microscope, the π/4 limit at 0.1 nm "
        "resolution and 300 kV is ~1.3 nm",
    )
    c21_nm: tuple[float, float] = Field(
        (0.0, 50.0),
        description="axial coma |C21| [nm] (abTEM C21, Krivanek notation = 3 B2; angle "
        "uniform in 0-360°): the π/4 limit at 0.1 nm resolution and 300 kV is ~100 nm",
    )
    dqe: tuple[float, float] | None = Field(
        (0.7, 0.95),
        description="detector DQE(0) drawn per image (K3-like counting detector): the "
        "recorded counts have the mean of the dose and variance/mean = 1/DQE (None = ideal "
        "Poisson counting)",
    )
    contrast_band_per_nm: tuple[float, float] = Field(
        (2.0, 8.0),
        description="spatial-frequency band [1/nm] over which the weak-phase transfer is "
        "averaged to classify a microscope's atom contrast (lattice fringes, d = 0.125-0.5 nm)",
    )
    contrast_threshold: float = Field(
        0.25, gt=0, lt=1,
        description="contrast index (mean E sin χ over the band, in [-1, 1]) above which atoms "
        "are 'bright', below minus which 'dark', else 'intermediate'",
    )
    contrast_balance: dict[ContrastRegime, float] | None = Field(
        default_factory=_equal_regimes,
        description="proportions of the contrast regimes among a structure's CTF draws "
        "(relative weights, normalised; stratified, each filled by the next seeded candidate "
        "draw of its regime; None = the ranges' own mix)",
    )
    ctf_draws_per_structure: int | None = Field(
        None, ge=1,
        description="distinct CTF draws (voltage, aberrations, coherence, defocus) per "
        "structure, cycled over its images (None = one per image); detector pixel, blur, DQE "
        "and dose stay per image. Fewer draws = fewer CTF kernels to evaluate (faster)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> MicroscopeRanges:
        for name in ("cs_um", "cs_uncorrected_um", "c5_mm", "focal_spread_nm",
                     "convergence_mrad", "defocus_nm", "detector_pixel_A", "blur_fwhm_A",
                     "dose_e_per_A2", "c12_nm", "c21_nm", "dqe", "contrast_band_per_nm"):
            v = getattr(self, name)
            if v is not None and v[0] > v[1]:
                raise ValueError(f"microscope.{name}: low {v[0]} > high {v[1]}")
        for name in ("detector_pixel_A", "dose_e_per_A2"):
            v = getattr(self, name)
            if v is not None and v[0] <= 0:
                raise ValueError(f"microscope.{name}: must be > 0 (drawn log-uniformly)")
        if min(self.focal_spread_nm) < 0 or min(self.convergence_mrad) < 0 or min(
                self.blur_fwhm_A) < 0:
            raise ValueError("microscope: focal spread, convergence and blur must be >= 0")
        if min(self.c12_nm) < 0 or min(self.c21_nm) < 0:
            raise ValueError("microscope: c12_nm and c21_nm are magnitudes, must be >= 0")
        if self.dqe is not None and not (0 < self.dqe[0] and self.dqe[1] <= 1):
            raise ValueError(f"microscope.dqe: {list(self.dqe)} must lie in (0, 1]")
        if self.contrast_band_per_nm[0] <= 0:
            raise ValueError("microscope.contrast_band_per_nm: must be > 0")
        return self

    @field_validator("contrast_balance")
    @classmethod
    def _balance(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        if any(p < 0 for p in v.values()) or sum(v.values()) <= 0:
            raise ValueError(f"contrast_balance {v}: shares must be >= 0 with a positive sum")
        return v


class SimulationConfig(StrictModel):
    """Plane-wave HRTEM simulation grid, microscope, detector and campaign grid.

    Per structure the campaign draws ``tilts_per_structure`` tilts from ``tilts_mrad``; for each
    tilt one multislice pass gives every exit plane of ``thickness_nm``; every defocus of
    ``defocus_nm`` is applied to the stored exit waves. ``images_per_structure`` (if set) keeps
    a seeded random subset of that (tilt, thickness, defocus) grid.
    """

    energy_kv: float = Field(300.0, gt=0, description="acceleration voltage [kV]")
    sampling_A: float = Field(
        0.1, gt=0, le=0.5,
        description="max potential/wave sampling [Å]; the grid is the next FFT-friendly size",
    )
    slice_thickness_A: float = Field(2.0, gt=0, description="multislice slice thickness [Å]")
    parametrization: Literal["lobato", "kirkland"] = "lobato"
    projection: Literal["infinite", "finite"] = "infinite"
    frozen_phonons: int = Field(0, ge=0, description="frozen phonon configs (0 = static)")
    frozen_phonon_sigma_A: float = Field(0.08, ge=0, description="thermal displacement rms [Å]")
    thickness_nm: list[Positive] = Field(
        default_factory=lambda: [1.0, 2.0, 3.0, 4.0, 5.0], min_length=1,
        description="exit-plane depths from the cell top [nm] (one multislice pass gives all); "
        "depths beyond a structure are clipped to its last slice",
    )
    tilts_mrad: list[tuple[TiltMrad, TiltMrad]] = Field(
        default_factory=lambda: [(0.0, 0.0), (2.0, 1.0), (-1.0, 2.0), (3.0, -2.0), (-2.0, -3.0)],
        min_length=1,
        description="incident beam tilts (x, y) [mrad]",
    )
    tilts_per_structure: int | None = Field(
        2, ge=1,
        description="tilts drawn per structure from tilts_mrad (at most all; None = all)",
    )
    defocus_nm: list[Defocus] = Field(
        default_factory=lambda: [-12.0, -8.0, -4.0, 0.0, 4.0, 8.0, 12.0], min_length=1,
        description="defocus [nm], abTEM convention: defocus = -C10 (positive = underfocus)",
    )
    images_per_structure: int | None = Field(
        22, ge=1,
        description="images kept per structure, a seeded subset of its grid (None = all)",
    )
    cs_um: float = Field(-9.0, ge=-10000, le=10000, description="spherical aberration C30 [µm]")
    c5_mm: float = Field(
        5.0, ge=-100, le=100, description="fifth-order spherical aberration C50 [mm]"
    )
    focal_spread_nm: float = Field(
        3.0, ge=0, description="focal spread, 1/e width (temporal coherence) [nm]"
    )
    convergence_mrad: float = Field(
        0.2, ge=0,
        description="beam angular spread, std (spatial coherence; abTEM angular_spread) [mrad]",
    )
    aperture_mrad: float = Field(40.0, gt=0, description="objective aperture [mrad]")
    output_size_px: int = Field(512, ge=32, description="output image size [px] (square)")
    detector_mtf: Literal["none", "counting"] = Field(
        "counting", description="detector MTF model (counting: pixel sinc, K3-like)"
    )
    label_disc_radius_A: float = Field(0.6, gt=0, description="label disc radius [Å]")
    n_shards: int = Field(
        2, ge=1, description="Snakemake jobs (HDF5 shards); aim at 5-30 min per job"
    )
    compression: Literal["none", "gzip", "lzf"] = "lzf"
    fft_backend: Literal["deterministic", "fftw"] = Field(
        "deterministic",
        description="FFT library of etem's multislice and of abTEM's own code paths (finite "
        "projection, reference images): 'deterministic' (pocketfft / numpy, byte-identical "
        "shards in any process) or 'fftw' (FFTW_MEASURE, ~1.4x faster FFTs in the multislice, "
        "last-bit differences between processes)",
    )
    fft_threads: int = Field(
        1, ge=1,
        description="FFT threads per process (keep 1 when several jobs share the cores)",
    )
    microscope: MicroscopeRanges = Field(
        default_factory=MicroscopeRanges,
        description="per-image microscope randomisation (disabled by default)",
    )

    @property
    def images_per_structure_max(self) -> int:
        """Upper bound of images per structure under this grid."""
        n_tilts = min(self.tilts_per_structure or len(self.tilts_mrad), len(self.tilts_mrad))
        grid = n_tilts * len(self.thickness_nm) * len(self.defocus_nm)
        return min(grid, self.images_per_structure or grid)


class NoiseConfig(StrictModel):
    """Electron dose and detector noise (Poisson shot noise, optional read noise and gain)."""

    train_dose_e_per_A2: PositiveRange = Field(
        (20.0, 400.0), description="training dose range [e/Å²], sampled log-uniformly"
    )
    benchmark_doses_e_per_A2: list[Positive] = Field(
        default_factory=lambda: [25.0, 50.0, 100.0, 200.0, 400.0], min_length=1,
        description="doses of the benchmark tables [e/Å²]",
    )
    read_noise_e: float = Field(0.0, ge=0, description="Gaussian read noise [e rms/px]")
    gain: float = Field(1.0, gt=0, description="counts per electron")


class SyntheticMovieConfig(StrictModel):
    """Synthetic experimental movie (ground truth for the movie stage and unsupervised training).

    A structure of the library is imaged frame by frame; at each of ``event_frames`` it changes
    (the next kind of ``event_kinds``, cycling) and stays changed afterwards.
    """

    n_frames: int = Field(60, ge=5, description="number of frames")
    frame_rate_hz: float = Field(40.0, gt=0, description="frames per second")
    dose_e_per_px_per_frame: float = Field(0.5, gt=0, description="mean dose [e/px/frame]")
    size_px: int = Field(256, ge=32, description="frame size [px]")
    event_frames: list[FrameIndex] = Field(
        default_factory=lambda: [24, 40], description="frames where the structure changes"
    )
    event_kinds: list[EventKind] = Field(
        default_factory=lambda: list[EventKind](["surface_loss", "rotation", "vacancy"]),
        min_length=1,
        description="what happens at the event frames, in turn (cycling)",
    )
    surface_atoms_lost: int = Field(
        6, ge=1, description="metal surface atoms removed by a 'surface_loss' event"
    )
    rotation_deg: float = Field(
        8.0, ge=-180, le=180,
        description="particle rotation about the beam axis at a 'rotation' event [deg]",
    )
    vacancies_per_event: int = Field(
        4, ge=1, description="anion (O) atoms removed by a 'vacancy' event"
    )
    structure_family: str = Field(
        "pt_on_ceo2", description="family of the manifest's structure to animate"
    )
    thickness_nm: float | None = Field(
        None, gt=0, description="exit-plane depth [nm] (None = whole structure)"
    )
    defocus_nm: float = Field(
        4.0, ge=-2000, le=2000, description="defocus [nm] (abTEM: defocus = -C10)"
    )
    drift_px_per_frame: float = Field(0.0, ge=0, description="stage drift [px/frame]")

    @model_validator(mode="after")
    def _events_in_range(self) -> SyntheticMovieConfig:
        bad = [f for f in self.event_frames if not 0 < f < self.n_frames]
        if bad:
            raise ValueError(f"event_frames {bad} outside 1..{self.n_frames - 1}")
        return self
