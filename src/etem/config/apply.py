"""Config of the application to experimental movies."""

from __future__ import annotations

from pydantic import Field

from etem.config.base import StrictModel


class ApplyConfig(StrictModel):
    """Streaming denoising, column finding, occupancy and event detection."""

    chunk_frames: int = Field(32, ge=1, description="frames held in memory at once")
    batch_size: int = Field(4, ge=1, description="tiles per forward pass")
    tile_px: int = Field(256, ge=32, description="inference tile size [px]")
    overlap_px: int = Field(32, ge=0, description="tile overlap [px]")
    drift_correction: bool = Field(True, description="cross-correlation registration")
    bin_factor: int = Field(1, ge=1, description="spatial binning")
    sum_frames: int = Field(1, ge=1, description="frames summed before processing")
    link_radius_A: float = Field(1.0, gt=0, description="column tracking radius [Å]")
    ewma_alpha: float = Field(0.1, gt=0, le=1, description="EWMA smoothing factor")
    event_false_alarm_rate: float = Field(
        0.01, gt=0, lt=1, description="per-frame false-alarm rate of the event detector"
    )
    calibration_frames: int = Field(20, ge=3, description="leading frames assumed stable")
