"""Config of the application to experimental movies (``etem apply``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from etem.config.base import StrictModel


class ApplyConfig(StrictModel):
    """Streaming denoising, column finding, occupancy and event detection.

    Column finding reuses ``benchmark.blob_min_sigma_A``, ``blob_max_sigma_A``,
    ``blob_threshold`` and ``column_disk_radius_A`` so benchmarks and movies agree.
    """

    chunk_frames: int = Field(32, ge=1, description="frames held in memory at once")
    batch_size: int = Field(4, ge=1, description="tiles per forward pass")
    tile_px: int = Field(
        1024,
        ge=32,
        description="largest inference tile [px]; frames up to this size run whole (fastest "
        "on CPU), larger frames in equal overlapping tiles (bounded memory)",
    )
    overlap_px: int = Field(32, ge=0, description="tile overlap [px]")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast: auto = bf16 on CUDA and on CPUs with native bf16"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="inference device")
    denoise_with: Literal["auto", "supervised", "unsupervised"] = Field(
        "auto", description="which denoiser; auto = supervised if given, else unsupervised"
    )
    drift_correction: bool = Field(True, description="cross-correlation registration")
    drift_smooth_px: float = Field(2.0, gt=0, description="smoothing before registration [px]")
    bin_factor: int = Field(1, ge=1, description="spatial binning (sum of k x k pixels)")
    sum_frames: int = Field(1, ge=1, description="frames summed before processing")
    pixel_size_A: float | None = Field(
        None, gt=0, description="pixel size of the movie [Å] when the file does not record it"
    )
    dose_e_per_px_per_frame: float | None = Field(
        None,
        gt=0,
        description="dose [e/px/frame] of the raw movie; default: file metadata, else the "
        "mean counts of the first chunk (vacuum-free fields then normalise to mean 1)",
    )
    pixel_size_tolerance: float = Field(
        0.1, gt=0, lt=1, description="relative pixel-size mismatch to the model accepted as is"
    )
    pixel_size_mismatch: Literal["resample", "refuse", "ignore"] = Field(
        "resample",
        description="movie pixel size differs from the model's by an integer factor k: "
        "'resample' sums k x k pixels (finer movie) or splits each count multinomially over "
        "k x k pixels (coarser movie; exact Poisson statistics), 'refuse' stops; non-integer "
        "ratios are always refused unless 'ignore'",
    )
    column_polarity: Literal["auto", "bright", "dark"] = Field(
        "auto", description="contrast of columns in the denoised frames; auto = from frame 0"
    )
    column_refine: Literal["centroid", "gaussian", "none"] = Field(
        "centroid", description="sub-pixel refinement of column positions"
    )
    link_radius_A: float = Field(1.0, gt=0, description="column tracking radius [Å]")
    max_gap_frames: int = Field(2, ge=0, description="frames a column track may be missing")
    stats_margin_frac: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="frame statistics use the centre region inside this margin (fraction of "
        "the frame size), away from edges that drift correction fills by reflection",
    )
    ewma_alpha: float = Field(0.1, gt=0, le=1, description="EWMA smoothing factor")
    event_window_frames: int = Field(
        3,
        ge=1,
        description="image-change statistic: relative rms difference between the mean of the "
        "last k drift-corrected denoised frames (k = this) and the mean of the "
        "event_reference_frames frames before them",
    )
    event_reference_frames: int = Field(
        5,
        ge=1,
        description="frames of the reference mean of the image-change statistic (the statistic "
        "is undefined for the first event_window_frames + this - 1 frames)",
    )
    event_smooth_px: float = Field(
        1.0,
        ge=0,
        description="Gaussian smoothing of the frames for the image-change statistic [px]",
    )
    event_false_alarm_rate: float = Field(
        0.01, gt=0, lt=1, description="per-frame false-alarm rate of the event detector"
    )
    event_merge_gap_frames: int = Field(
        2, ge=0, description="frames below threshold allowed within one event"
    )
    event_min_frames: int = Field(
        2, ge=1, description="frames above threshold needed for an event (persistence)"
    )
    calibration_frames: int = Field(20, ge=3, description="leading frames assumed stable")
    write_tiff: bool = Field(True, description="write denoised.tif (TIFF stack for Fiji/napari)")
    preview_max_frames: int = Field(120, ge=0, description="frames in the GIF preview (0: none)")
    preview_size_px: int = Field(256, ge=32, description="longest side of the preview [px]")
