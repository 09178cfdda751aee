"""Config of the application to experimental movies (``etem apply``), nested by concern.

``apply:`` has one sub-section per concern: ``io`` (chunks, shards, output files),
``preprocess`` (raw frames to processed frames), ``inference`` (the denoising network),
``tracks`` (column tracks), ``events`` (frame statistics and event detection), ``truth``
(ground-truth scoring), ``finetune`` (fine-tuning the blind-spot model on the movie) and
``models`` (networks other than the campaign's: files or ``models:/NAME/VERSION``).
Column finding is the top-level ``columns:`` section (shared with the evaluation stage).
A key of the former flat ``apply:`` block is refused with its new home
(:data:`MOVED_KEYS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

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

#: Error type of a key of the former flat ``apply:`` block (see ``format_validation_error``).
MOVED_KEY_ERROR = "moved_key"


class IoConfig(StrictModel):
    """I/O: frames held in memory at once, frames per shard job, the TIFF and the preview."""

    chunk_frames: int = Field(32, ge=1, description="frames held in memory at once")
    shard_frames: int = Field(
        2048,
        ge=1,
        description="frames per shard job of a long movie (rounded up to a multiple of "
        "chunk_frames); Snakemake runs the shards of a movie in parallel",
    )
    write_tiff: bool = Field(True, description="write denoised.tif (TIFF stack for Fiji/napari)")
    preview_max_frames: int = Field(120, ge=0, description="frames in the GIF preview (0: none)")
    preview_size_px: int = Field(256, ge=32, description="longest side of the preview [px]")


class PreprocessConfig(StrictModel):
    """Preprocessing: pixel size, dose, resampling, binning, summing and drift of raw frames.

    Turns raw frames into the processed frames every later step sees: pixel size and dose
    of the movie, resampling to the models' pixel size, binning, frame summing and drift
    correction.
    """

    pixel_size_A: float | None = Field(
        None, gt=0, description="pixel size of the movie [Å] when the file does not record it"
    )
    dose_e_per_px_per_frame: float | None = Field(
        None,
        gt=0,
        description="dose [e/px/frame] of the raw movie; default: file metadata, else the "
        "mean counts of the first chunk (vacuum-free fields then normalise to mean 1)",
    )
    detector_dqe: float = Field(
        1.0, gt=0, le=1,
        description="DQE(0) of the detector: counts with variance/mean 1/DQE (a counting "
        "detector's lost and miscounted events); the column likelihood and its confidence "
        "use the effective Poisson counts, counts x DQE (1: Poisson counts)",
    )
    pixel_size_tolerance: float = Field(
        0.1, gt=0, lt=1, description="relative pixel-size mismatch to the model accepted as is"
    )
    pixel_size_mismatch: Literal["resample", "refuse", "ignore"] = Field(
        "resample",
        description="movie pixel size differs from the model's (beyond the tolerance): "
        "'resample' sums k x k pixels (finer by an integer k), splits each count "
        "multinomially over k x k pixels (coarser by k <= 4), or, for any other ratio up to "
        "4x coarser, splits each pixel's counts multinomially over the output pixels it "
        "overlaps, by area (counts conserved, exact Poisson statistics; non-integer frames "
        "spread by area, not Poisson); 'refuse' stops; 'ignore' uses the movie's pixels",
    )
    bin_factor: int = Field(1, ge=1, description="spatial binning (sum of k x k pixels)")
    sum_frames: int = Field(1, ge=1, description="frames summed before processing")
    drift_correction: bool = Field(True, description="cross-correlation registration")
    drift_smooth_px: float = Field(2.0, gt=0, description="smoothing before registration [px]")


#: A denoiser candidate of apply's choice (etem.movies.selection).
Candidate = Literal["supervised", "unsupervised", "finetuned", "raw", "gaussian", "wiener"]
#: The candidates ``denoise_with: auto`` may choose by default (not the Wiener filter).
AUTO_CANDIDATES: tuple[Candidate, ...] = ("supervised", "unsupervised", "finetuned", "raw",
                                          "gaussian")
#: The denoisers that are no network (classical filters, :mod:`etem.movies.selection`).
CLASSICAL: tuple[Candidate, ...] = ("raw", "gaussian", "wiener")


def uses_network(denoise_with: str, auto_candidates: Sequence[str]) -> bool:
    """Whether a movie denoised under ``denoise_with`` may be denoised by a network: one named
    (``supervised``, ``unsupervised``), or ``auto`` with a network among ``auto_candidates``.
    A classical filter (:data:`CLASSICAL`), or ``auto`` among classical filters only, needs
    no network given (and the workflow trains none for such a movie)."""
    if denoise_with == "auto":
        return any(c not in CLASSICAL for c in auto_candidates)
    return denoise_with not in CLASSICAL


class InferenceConfig(StrictModel):
    """Inference: which denoiser, its tiles, batches, precision and device, and the mean
    constraint on its output."""

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
    match_mean: bool = Field(
        True,
        description="the mean constraint: scale each whole denoised frame of a network so its "
        "mean equals the frame's mean count / dose (an unbiased estimate of the clean mean "
        "for Poisson counts; etem.models.inference.match_mean); the blind-spot network's "
        "output takes the mean of its centre frame. The evaluation (etem evaluate) follows "
        "the same switch",
    )
    denoise_with: Literal["auto", "supervised", "unsupervised", "raw", "gaussian", "wiener"] = (
        Field(
            "auto",
            description="which denoiser: auto = the candidate of the highest uPSNR on the movie "
            "itself among auto_candidates whose columns agree with the raw frames' (the "
            "networks given, the fine-tuned blind-spot model, the raw frames, a Gaussian filter "
            "and the empirical Wiener filter of HRTEM; etem.movies.selection), so a network "
            "that hurts is never used (movies too short to score: the first of auto_candidates "
            "that is available); raw/gaussian/wiener = no network (none needs to be given, and "
            "the workflow trains no denoising network for such a movie)",
        )
    )
    auto_candidates: list[Candidate] = Field(
        default_factory=lambda: list(AUTO_CANDIDATES),
        min_length=1,
        description="the candidates denoise_with: auto may choose (every candidate is scored "
        "and shown); the Wiener filter is left out by default: it keeps only what is periodic, "
        "so a vacancy or the vacuum around a particle comes out with lattice painted in "
        "(benchmarks/selection.md: 10-38 % of a vacancy's change kept), which the whole-frame "
        "uPSNR cannot see; add wiener here, or name it in denoise_with, for crystals; with no "
        "network listed, auto needs no network given (as a classical denoise_with)",
    )
    column_f1_margin: float = Field(
        0.1,
        ge=0,
        le=1,
        description="auto uses no candidate whose columns disagree with the raw frames': the F1 "
        "of the columns found on its denoised frames against those of the mean of the "
        "neighbouring raw frames more than this below the best candidate's (also how a "
        "Gaussian's width and the Wiener filter's parameters are chosen; etem.movies."
        "selection); 1 = uMSE alone",
    )
    pretrained: bool = Field(
        True,
        description="with no --denoiser given (and denoise_with supervised, or auto with a "
        "network among auto_candidates), use the "
        "pretrained general denoiser shipped in the package (etem.models.pretrained; its "
        "model card beside it); under auto it is one more candidate",
    )
    score_targets: int = Field(
        8,
        ge=0,
        description="frames at the movie's start on which every denoiser is scored by uPSNR "
        "(denoiser_scores.csv; each needs the 2 x half-window + 4 static frames around it; 0 = "
        "no scoring, auto then takes the first of auto_candidates that is available: a "
        "classical filter, or a network given, unsupervised as the fine-tuned one when kept)",
    )

    @property
    def uses_network(self) -> bool:
        """Whether a network may denoise (:func:`uses_network`; else none needs to be given)."""
        return uses_network(self.denoise_with, self.auto_candidates)


class TracksConfig(StrictModel):
    """Column tracks: column contrast, linking across frames, low-confidence tracks removed.

    (Column finding itself is the top-level ``columns:`` section.)
    """

    polarity: Literal["auto", "bright", "dark"] = Field(
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


class EventsConfig(StrictModel):
    """Events: frame statistics and the event detectors (threshold and accumulating GLR).

    Both detectors estimate their noise over the whole movie by default (no stable leading
    stretch assumed); the threshold (EWMA) detector can instead be calibrated on leading
    frames known to be stable (``calibration: leading_frames``, ``calibration_frames``).
    """

    stats_margin_frac: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="frame statistics use the centre region inside this margin (fraction of "
        "the frame size), away from edges that drift correction fills by reflection",
    )
    ewma_alpha: float = Field(0.1, gt=0, le=1, description="EWMA smoothing factor")
    window_frames: int = Field(
        3,
        ge=1,
        description="image-change statistic: relative rms difference between the mean of the "
        "last k drift-corrected denoised frames (k = this) and the mean of the "
        "reference_frames frames before them",
    )
    reference_frames: int = Field(
        5,
        ge=1,
        description="frames of the reference mean of the image-change statistic (the statistic "
        "is undefined for the first window_frames + this - 1 frames)",
    )
    smooth_px: float = Field(
        1.0,
        ge=0,
        description="Gaussian smoothing of the frames for the image-change statistic [px]",
    )
    false_alarm_rate: float = Field(
        0.01, gt=0, lt=1, description="per-frame false-alarm rate of the event detector"
    )
    merge_gap_frames: int = Field(
        2, ge=0, description="frames below threshold allowed within one event"
    )
    min_frames: int = Field(
        2, ge=1, description="frames above threshold needed for an event (persistence)"
    )
    calibration: Literal["whole_movie", "leading_frames"] = Field(
        "whole_movie",
        description="noise scales of the threshold (EWMA) detector: whole_movie = robustly "
        "over all frames (MAD of the innovations and derivatives, frames of changes set "
        "aside; no stable stretch assumed); leading_frames = from the first "
        "calibration_frames frames, which must then be stable (for a movie whose changes "
        "fill most of its frames, with a known stable start); summary.json says which",
    )
    calibration_frames: int = Field(
        20, ge=3, description="calibration: leading_frames only: leading frames assumed stable"
    )
    glr: bool = Field(
        True,
        description="also detect events by accumulating evidence (windowed GLR of a step, "
        "etem.movies.evidence) on frame statistics and region counts; needs no stable "
        "leading frames (noise from the whole movie)",
    )
    false_alarms_per_1000: float = Field(
        1.0,
        gt=0,
        description="nominal false alarms per 1,000 frames of the accumulating (GLR) detector, "
        "over all its statistics and regions",
    )
    region_grid: int = Field(
        4, ge=1, le=16, description="the GLR detector scores raw counts in a g x g grid of "
        "regions of the centre of the frame (Poisson noise model)"
    )
    statistics: list[EventStatistic] = Field(
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
    local_window_frames: int = Field(
        6,
        ge=2,
        description="local-change statistic: frames of the recent mean compared with the "
        "reference mean (longer: more sensitive to small changes, onset refined by a "
        "change-point fit)",
    )
    local_reference_frames: int = Field(
        8,
        ge=2,
        description="local-change statistic: frames of the reference mean before the recent "
        "ones (the statistic starts after local_window_frames + this frames; with "
        "calibration leading_frames keep calibration_frames well above that)",
    )
    local_sigma_A: float = Field(
        0.3,
        gt=0,
        description="local-change statistic: Gaussian smoothing of the frames (about a column "
        "width) before the per-pixel change z-map [Å]",
    )
    local_noise_sigma_A: float = Field(
        0.8,
        gt=0,
        description="local-change statistic: Gaussian smoothing of the per-pixel noise variance "
        "map [Å]",
    )


class TruthConfig(StrictModel):
    """Ground-truth scoring of movies that carry their true columns and events (simulated).

    Visibility of true columns, matching radius, border and event-onset tolerance.
    """

    min_column_Z: float = Field(
        150.0,
        ge=0,
        description="ground-truth scoring (movies that carry true columns): a true column counts "
        "as visible when the sum of the atomic numbers of its atoms (a proxy of its projected "
        "potential) is at least this; recall is over visible columns",
    )
    match_radius_A: float = Field(
        0.5, gt=0, description="ground-truth scoring: found-to-true matching radius [Å]"
    )
    border_A: float = Field(
        1.0,
        ge=0,
        description="ground-truth scoring ignores true and found columns closer than this to "
        "the frame edge [Å]",
    )
    event_tolerance_frames: int = Field(
        2, ge=0, description="ground-truth scoring: a detected onset within this many frames "
        "of a true event is a hit [frames]"
    )


class ModelsConfig(StrictModel):
    """The networks the movies are applied with, when not the campaign's own.

    Each is a model file (.pt) or a model registry URI ``models:/NAME/VERSION`` or
    ``models:/NAME/latest`` (MLflow, the campaign's tracking store: the workflow checks it
    when it plans and pins ``latest`` to its version). A sheet row's ``<kind>_model`` column
    wins over these; a movie's group network (``movies.group_training``) over ``unsupervised``.
    """

    denoiser: str | None = Field(
        None, min_length=1, description="supervised denoiser: model file or "
        "models:/NAME/VERSION (default: the campaign's, <results>/models/denoiser.pt)"
    )
    unsupervised: str | None = Field(
        None, min_length=1, description="blind-spot (multi-frame) network: model file or "
        "models:/NAME/VERSION (default: the campaign's, <results>/models/unsupervised.pt)"
    )
    segmenter: str | None = Field(
        None, min_length=1, description="occupancy segmenter: model file or "
        "models:/NAME/VERSION (default: the campaign's, <results>/models/segmenter.pt)"
    )


class FinetuneConfig(StrictModel):
    """Fine-tuning of the unsupervised (blind-spot) model on the movie before it denoises."""

    steps: int = Field(
        0,
        ge=0,
        description="fine-tune the unsupervised (blind-spot) model on the movie for this many "
        "optimizer steps before denoising (0 = off); used when the unsupervised model denoises",
    )
    lr: float = Field(
        1e-3, gt=0, description="Adam learning rate of the fine-tuning (the fine-tuned weights "
        "are kept only if they lower the validation loss)"
    )
    keep_se: float = Field(
        0.0, ge=0, description="keep the fine-tuned weights only when the validation loss "
        "falls by more than this many standard errors of its fall (paired, from 16 px blocks of "
        "the validation pixels; 0 = any fall, the unbiased choice: at 2, 4 of 16 demo images "
        "lost real +2-3 dB fine-tunings whose falls were 1.0-2.0 s.e.)"
    )
    batch_size: int = Field(4, ge=1, description="patches per fine-tuning step")
    patch_px: int = Field(64, ge=16, description="fine-tuning patch size [px]")
    max_frames: int = Field(
        64,
        ge=3,
        description="leading (preprocessed) frames the fine-tuning samples from; bounds its "
        "memory to max_frames x frame size x 4 bytes",
    )

#: Former flat ``apply:`` keys and their home in the nested section.
def _section_fields(model: type[BaseModel], section: str) -> set[str]:
    """The keys of one section (a sub-model field) of ``model``."""
    sub = model.model_fields[section].annotation
    return set(sub.model_fields) if isinstance(sub, type) and issubclass(sub, BaseModel) else set()


MOVED_KEYS: dict[str, str] = {
    "chunk_frames": "io.chunk_frames",
    "shard_frames": "io.shard_frames",
    "write_tiff": "io.write_tiff",
    "preview_max_frames": "io.preview_max_frames",
    "preview_size_px": "io.preview_size_px",
    "pixel_size_A": "preprocess.pixel_size_A",
    "dose_e_per_px_per_frame": "preprocess.dose_e_per_px_per_frame",
    "pixel_size_tolerance": "preprocess.pixel_size_tolerance",
    "pixel_size_mismatch": "preprocess.pixel_size_mismatch",
    "bin_factor": "preprocess.bin_factor",
    "sum_frames": "preprocess.sum_frames",
    "drift_correction": "preprocess.drift_correction",
    "drift_smooth_px": "preprocess.drift_smooth_px",
    "batch_size": "inference.batch_size",
    "tile_px": "inference.tile_px",
    "overlap_px": "inference.overlap_px",
    "precision": "inference.precision",
    "device": "inference.device",
    "denoise_with": "inference.denoise_with",
    "column_polarity": "tracks.polarity",
    "link_radius_A": "tracks.link_radius_A",
    "max_gap_frames": "tracks.max_gap_frames",
    "min_track_confidence": "tracks.min_track_confidence",
    "stats_margin_frac": "events.stats_margin_frac",
    "ewma_alpha": "events.ewma_alpha",
    "event_window_frames": "events.window_frames",
    "event_reference_frames": "events.reference_frames",
    "event_smooth_px": "events.smooth_px",
    "event_false_alarm_rate": "events.false_alarm_rate",
    "event_merge_gap_frames": "events.merge_gap_frames",
    "event_min_frames": "events.min_frames",
    "calibration_frames": "events.calibration_frames",
    "event_glr": "events.glr",
    "event_false_alarms_per_1000": "events.false_alarms_per_1000",
    "event_region_grid": "events.region_grid",
    "event_statistics": "events.statistics",
    "event_local_window_frames": "events.local_window_frames",
    "event_local_reference_frames": "events.local_reference_frames",
    "event_local_sigma_A": "events.local_sigma_A",
    "event_local_noise_sigma_A": "events.local_noise_sigma_A",
    "truth_min_column_Z": "truth.min_column_Z",
    "truth_match_radius_A": "truth.match_radius_A",
    "truth_border_A": "truth.border_A",
    "truth_event_tolerance_frames": "truth.event_tolerance_frames",
    "finetune_steps": "finetune.steps",
    "finetune_lr": "finetune.lr",
    "finetune_batch_size": "finetune.batch_size",
    "finetune_patch_px": "finetune.patch_px",
    "finetune_max_frames": "finetune.max_frames",
}


class ApplyConfig(StrictModel):
    """Streaming denoising, column finding, tracks, statistics and event detection.

    Column finding uses the ``columns:`` section (one finder for the benchmark, whose
    likelihood calibration it must match, and the movies).
    """

    io: IoConfig = Field(default_factory=IoConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    tracks: TracksConfig = Field(default_factory=TracksConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    truth: TruthConfig = Field(default_factory=TruthConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        """Refuse a key of the former flat block, naming its new home."""
        if isinstance(data, dict):
            old = [k for k in data if k in MOVED_KEYS]
            # an old key written inside a section (``events: {event_glr: ...}``) too
            old += [f"{s}.{k}" for s, sub in data.items() if s in cls.model_fields
                    and isinstance(sub, dict) for k in sub
                    if k in MOVED_KEYS and MOVED_KEYS[k] != f"{s}.{k}"
                    and k not in _section_fields(cls, s)]
            if old:
                raise PydanticCustomError(
                    MOVED_KEY_ERROR,
                    "config key {old} moved to {new}",
                    {"old": old[0], "new": MOVED_KEYS[old[0].split(".")[-1]],
                     "moves": [(k, MOVED_KEYS[k.split(".")[-1]]) for k in old]},
                )
        return data
