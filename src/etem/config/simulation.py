"""Config of the simulation stage: abTEM HRTEM images, labels, noise and synthetic movies."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from etem.config.base import StrictModel


class SimulationConfig(StrictModel):
    """Plane-wave HRTEM simulation grid and microscope."""

    energy_kv: float = Field(300.0, gt=0, description="acceleration voltage [kV]")
    sampling_A: float = Field(0.1, gt=0, le=0.5, description="potential/wave sampling [Å]")
    slice_thickness_A: float = Field(2.0, gt=0, description="multislice slice thickness [Å]")
    parametrization: Literal["lobato", "kirkland"] = "lobato"
    projection: Literal["infinite", "finite"] = "infinite"
    frozen_phonons: int = Field(0, ge=0, description="frozen phonon configs (0 = static)")
    frozen_phonon_sigma_A: float = Field(0.08, ge=0, description="thermal displacement rms [Å]")
    thickness_nm: list[float] = Field(
        default_factory=lambda: [2.0, 3.5, 5.0], min_length=1,
        description="exit-plane thicknesses [nm] (one multislice pass gives all)",
    )
    tilts_mrad: list[tuple[float, float]] = Field(
        default_factory=lambda: [(0.0, 0.0), (2.0, 1.0)], min_length=1,
        description="incident beam tilts (x, y) [mrad]",
    )
    defocus_nm: list[float] = Field(
        default_factory=lambda: [-8.0, -4.0, 0.0, 4.0], min_length=1,
        description="defocus [nm], abTEM convention: defocus = -C10 (positive = underfocus)",
    )
    cs_um: float = Field(-9.0, description="spherical aberration C30 [µm]")
    c5_mm: float = Field(5.0, description="fifth-order spherical aberration C50 [mm]")
    focal_spread_nm: float = Field(3.0, ge=0, description="focal spread (temporal coherence) [nm]")
    convergence_mrad: float = Field(
        0.2, ge=0, description="beam convergence semi-angle (spatial coherence) [mrad]"
    )
    aperture_mrad: float = Field(40.0, gt=0, description="objective aperture [mrad]")
    output_size_px: int = Field(512, ge=32, description="output image size [px] (square)")
    detector_mtf: Literal["none", "counting"] = Field(
        "counting", description="detector MTF model (counting: pixel sinc, K3-like)"
    )
    label_disc_radius_A: float = Field(0.6, gt=0, description="label disc radius [Å]")
    n_shards: int = Field(60, ge=1, description="Snakemake jobs (HDF5 shards)")
    compression: Literal["none", "gzip", "lzf"] = "lzf"


class NoiseConfig(StrictModel):
    """Electron dose and detector noise (Poisson shot noise, optional read noise and gain)."""

    train_dose_e_per_A2: tuple[float, float] = Field(
        (20.0, 400.0), description="training dose range [e/Å²], sampled log-uniformly"
    )
    benchmark_doses_e_per_A2: list[float] = Field(
        default_factory=lambda: [25.0, 50.0, 100.0, 200.0, 400.0], min_length=1,
        description="doses of the benchmark tables [e/Å²]",
    )
    read_noise_e: float = Field(0.0, ge=0, description="Gaussian read noise [e rms/px]")
    gain: float = Field(1.0, gt=0, description="counts per electron")


class MovieConfig(StrictModel):
    """Synthetic experimental movie (ground truth for the movie stage and unsupervised training)."""

    n_frames: int = Field(60, ge=5, description="number of frames")
    frame_rate_hz: float = Field(40.0, gt=0, description="frames per second")
    dose_e_per_px_per_frame: float = Field(0.5, gt=0, description="mean dose [e/px/frame]")
    size_px: int = Field(256, ge=32, description="frame size [px]")
    event_frames: list[int] = Field(
        default_factory=lambda: [30], description="frames where the structure changes"
    )
    drift_px_per_frame: float = Field(0.0, ge=0, description="stage drift [px/frame]")
