"""Config of the application to experimental movies (``etem apply``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from etem.config.base import StrictModel

#: Frame statistics (columns of frames.csv) the event detector can score.
EventStatistic = Literal[
    "n_columns",
    "mean_intensity",
    "mean_displacement_A",
    "appeared_frac",
    "vanished_frac",
    "dissimilarity",
    "change",
    "local_change",
    "column_counts_z",
]

class ApplyConfig(StrictModel):
    """Streaming denoising, column finding, occupancy and event detection.

    Column finding uses the ``columns:`` section (one finder for the benchmark, whose
    likelihood calibration it must match, and the movies).
    """

    chunk_frames: int = Field(32, ge=1, description="frames held in memory at once")
    shard_frames: int = Field(
        2048,
        ge=1,
        description="frames per shard job of a long movie (rounded up to a multiple of "
        "chunk_frames); Snakemake runs the shards of a movie in parallel",
    )
    batch_size: int = Field(4, ge=1, description="tiles per forward pass")
    tile_px: int = Field(
        1024,
        ge=32,
        description="largest inference tile [px]; frames up to this size run whole (fastest "
        "on CPU), larger frames in equal overlapping tiles (bounded memory)",
    )
    overlap_px: int = Field(32, ge=0, description="tile overlap [px]")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="inference precision (a bf16/fp16 copy of the network, fp32 residual skip): "
        "auto = bf16 on CUDA and on CPUs with native bf16",
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
    link_radius_A: float = Field(1.0, gt=0, description="column tracking radius [Å]")
    max_gap_frames: int = Field(
        2, ge=0, description="frames a column track may be missing (trackpy linking memory)"
    )
    min_track_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description="columns of tracks whose confidence (posterior probability of a real column "
        "from the detections along the track, etem.analysis.tracks) is below this are removed "
        "from the column tables; summary.json counts them (0 keeps all)",
    )
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
    event_glr: bool = Field(
        True,
        description="also detect events by accumulating evidence (windowed GLR of a step, "
        "etem.movies.evidence) on frame statistics and region counts; needs no stable "
        "leading frames (noise from the whole movie)",
    )
    event_false_alarms_per_1000: float = Field(
        1.0,
        gt=0,
        description="nominal false alarms per 1,000 frames of the accumulating (GLR) detector, "
        "over all its statistics and regions",
    )
    event_region_grid: int = Field(
        4, ge=1, le=16, description="the GLR detector scores raw counts in a g x g grid of "
        "regions of the centre of the frame (Poisson noise model)"
    )
    event_statistics: list[EventStatistic] = Field(
        default_factory=lambda: list[EventStatistic]([
            "n_columns",
            "mean_intensity",
            "mean_displacement_A",
            "change",
            "local_change",
            "column_counts_z",
        ]),
        min_length=1,
        description="frame statistics (columns of frames.csv) scored by the event detector",
    )
    event_local_window_frames: int = Field(
        6,
        ge=2,
        description="local-change statistic: frames of the recent mean compared with the "
        "reference mean (longer: more sensitive to small changes, onset refined by a "
        "change-point fit)",
    )
    event_local_reference_frames: int = Field(
        8,
        ge=2,
        description="local-change statistic: frames of the reference mean before the recent "
        "ones (the statistic starts after event_local_window_frames + this frames; keep "
        "apply.calibration_frames well above that)",
    )
    event_local_sigma_A: float = Field(
        0.3,
        gt=0,
        description="local-change statistic: Gaussian smoothing of the frames (about a column "
        "width) before the per-pixel change z-map [Å]",
    )
    event_local_noise_sigma_A: float = Field(
        0.8,
        gt=0,
        description="local-change statistic: Gaussian smoothing of the per-pixel noise variance "
        "map [Å]",
    )
    truth_min_column_Z: float = Field(
        150.0,
        ge=0,
        description="ground-truth scoring (movies that carry true columns): a true column counts "
        "as visible when the sum of the atomic numbers of its atoms (a proxy of its projected "
        "potential) is at least this; recall is over visible columns",
    )
    truth_match_radius_A: float = Field(
        0.5, gt=0, description="ground-truth scoring: found-to-true matching radius [Å]"
    )
    truth_border_A: float = Field(
        1.0,
        ge=0,
        description="ground-truth scoring ignores true and found columns closer than this to "
        "the frame edge [Å]",
    )
    truth_event_tolerance_frames: int = Field(
        2, ge=0, description="ground-truth scoring: a detected onset within this many frames "
        "of a true event is a hit [frames]"
    )
    write_tiff: bool = Field(True, description="write denoised.tif (TIFF stack for Fiji/napari)")
    preview_max_frames: int = Field(120, ge=0, description="frames in the GIF preview (0: none)")
    preview_size_px: int = Field(256, ge=32, description="longest side of the preview [px]")
    finetune_steps: int = Field(
        0,
        ge=0,
        description="fine-tune the unsupervised (blind-spot) model on the movie for this many "
        "optimizer steps before denoising (0 = off); used when the unsupervised model denoises",
    )
    finetune_lr: float = Field(
        1e-3, gt=0, description="Adam learning rate of the fine-tuning (the fine-tuned weights "
        "are kept only if they lower the validation loss)"
    )
    finetune_batch_size: int = Field(4, ge=1, description="patches per fine-tuning step")
    finetune_patch_px: int = Field(64, ge=16, description="fine-tuning patch size [px]")
    finetune_max_frames: int = Field(
        64,
        ge=3,
        description="leading (preprocessed) frames the fine-tuning samples from; bounds its "
        "memory to finetune_max_frames x frame size x 4 bytes",
    )
