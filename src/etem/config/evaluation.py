"""Config of the benchmarks (metrics, likelihood maps, calibration) and the report."""

from __future__ import annotations

from pydantic import Field

from etem.config.base import StrictModel


class BenchmarkConfig(StrictModel):
    """Denoising tables, likelihood maps and their calibration."""

    max_test_images: int = Field(2000, ge=1, description="cap on test images evaluated")
    gaussian_sigma_px: list[float] = Field(
        default_factory=lambda: [1.0, 1.5, 2.0], description="Gaussian baseline widths [px]"
    )
    blob_min_sigma_A: float = Field(0.3, gt=0, description="blob_log min sigma [Å]")
    blob_max_sigma_A: float = Field(1.2, gt=0, description="blob_log max sigma [Å]")
    blob_threshold: float = Field(0.05, gt=0, description="blob_log threshold (relative)")
    column_disk_radius_A: float = Field(0.5, gt=0, description="likelihood disk radius [Å]")
    match_radius_A: float = Field(0.5, gt=0, description="detection matching radius [Å]")
    confidence_levels: list[float] = Field(
        default_factory=lambda: [0.9, 0.95, 0.99], description="nominal confidence levels"
    )
