"""Config of the networks and their training (``training:`` block).

One training loop serves the three networks; :class:`LoopConfig` holds what they share.
Doses are in e/Å² (converted to electrons per pixel through the image pixel size).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from etem.config.base import PositiveRange, StrictModel


class UNetConfig(StrictModel):
    """U-Net family: depth (scales) and width (channels at the first scale)."""

    depth: int = Field(4, ge=1, le=6, description="number of scales")
    base_channels: int = Field(32, ge=4, description="channels at scale 0 (doubling)")
    bias_free: bool = Field(False, description="bias-free convolutions (scale equivariant)")
    dose_conditioned: bool = Field(
        False, description="extra input channel 1/sqrt(dose [e/px]): the vacuum noise level"
    )


class LoopConfig(StrictModel):
    """Settings shared by every training run (one loop serves all three networks)."""

    steps: int = Field(2000, ge=1, description="optimizer steps (upper bound with early stopping)")
    batch_size: int = Field(16, ge=1, description="patches per step")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    lr_plateau_factor: float = Field(0.5, gt=0, lt=1, description="lr factor on plateau")
    lr_plateau_patience: int = Field(3, ge=0, description="validations without gain before lr drop")
    patch_px: int = Field(128, ge=16, description="random crop size [px]")
    val_every_steps: int = Field(200, ge=1, description="validate every N steps (and at the end)")
    val_samples: int = Field(16, ge=1, description="fixed validation patches, doses spread")
    val_patch_px: int = Field(128, ge=16, description="centre crop of validation images [px]")
    checkpoint_every_steps: int = Field(200, ge=1, description="resumable checkpoint every N steps")
    early_stopping_patience: int = Field(10, ge=1, description="validations without gain")
    early_stopping_min_steps: int | None = Field(
        None, ge=0,
        description="early stopping cannot end a training before this step (a plateau at the "
        "start, such as a segmenter still predicting all background, is not the end); "
        "null: half of steps",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader workers")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA if present")
    amp: bool = Field(True, description="bf16 autocast + channels_last where supported")
    deterministic: bool = Field(True, description="deterministic algorithms (bitwise on CPU)")
    dose_e_per_A2: PositiveRange | None = Field(
        None,
        description="training dose range [e/Å²], log-uniform; default noise.train_dose_e_per_A2",
    )
    families: list[str] = Field(
        default_factory=lambda: ["pt_on_ceo2", "oxide"],
        description="image families (index column 'family') used for training",
    )
    model: UNetConfig = Field(default_factory=UNetConfig)

    @property
    def min_steps_before_stop(self) -> int:
        """The step before which early stopping cannot end the training
        (``early_stopping_min_steps``; null: half of ``steps``, rounded up)."""
        if self.early_stopping_min_steps is None:
            return -(-self.steps // 2)
        return int(self.early_stopping_min_steps)

    @model_validator(mode="after")
    def _check(self) -> LoopConfig:
        if self.dose_e_per_A2 is not None:
            lo, hi = self.dose_e_per_A2
            if not 0 < lo <= hi:
                raise ValueError("dose_e_per_A2 must be (low, high) with 0 < low <= high")
        return self


#: Classical estimates a supervised denoiser can take as its first input channel and refine
#: (:mod:`etem.data.inputs`).
Prefilter = Literal["none", "wiener_sure"]
PREFILTERS: tuple[str, ...] = get_args(Prefilter)


class DenoiserConfig(LoopConfig):
    """Supervised denoiser trained on simulated clean/noisy pairs (MSE to the clean image)."""

    residual: bool = Field(
        True, description="predict the correction to the first input channel (the noisy "
        "input, or the prefilter's estimate)")
    prefilter: Prefilter = Field(
        "none",
        description="classical estimate of the whole frame given to the network as its first "
        "input channel (beside the counts) to refine: 'wiener_sure' = the empirical Wiener "
        "filter at the pair SURE chooses per frame (noise drawn on the whole training image, "
        "then cropped); 'none' = the counts only",
    )
    erase_probability: float = Field(
        0.0, ge=0, le=1,
        description="fraction of training samples with the columns of a random disc of the "
        "clean image removed (blended into its 2 Å blur) before the noise: non-periodic "
        "content (vacancy patches, amorphous regions) that the Wiener prefilter paints "
        "lattice into, so the network learns to take it from the counts; 0 = none",
    )
    erase_radius_A: PositiveRange = Field(
        (3.0, 12.0), description="radius range of an erased disc [Å] (uniform); its centre "
        "lies in the training crop")


class UnsupervisedConfig(LoopConfig):
    """Blind-spot multi-frame denoiser trained on a noisy movie (no clean data)."""

    n_frames: int = Field(5, ge=3, description="frames in (odd); the middle is denoised")
    loss: Literal["mse", "poisson"] = Field("mse", description="to the noisy middle frame")
    dose_e_per_px: float | None = Field(
        None, gt=0, description="mean dose per frame [e/px]; default: the movie's mean count"
    )

    @model_validator(mode="after")
    def _odd(self) -> UnsupervisedConfig:
        if self.n_frames % 2 == 0:
            raise ValueError("n_frames must be odd")
        return self


class SegmenterConfig(LoopConfig):
    """Occupancy segmenter trained on oxide and Pt/CeO2 images (class map + ordinal occupancy).

    Both families by default: the CeO2 support of ``pt_on_ceo2`` images is the same
    material as the defect oxides and brings the ``metal`` class the movies need.
    """

    max_occupancy: int = Field(12, ge=1, description="largest atom count per column class")
    families: list[str] = Field(
        default_factory=lambda: ["oxide", "pt_on_ceo2"],
        description="image families used for training",
    )
    occupancy_loss_pixels: Literal["site", "all"] = Field(
        "site",
        description="pixels of the ordinal occupancy loss: 'site' = pixels of that column "
        "class only (cation head on cation discs, anion head on anion discs); 'all' = every "
        "pixel (occupancy 0 outside columns, dominated by background)",
    )
    class_weighting: Literal["median_frequency", "sqrt_median_frequency", "none"] = Field(
        "sqrt_median_frequency",
        description="cross-entropy class weights from the training label frequencies: "
        "median / frequency, its square root (milder for rare classes such as metal), or none",
    )
    dice_weight: float = Field(
        1.0, ge=0, description="weight of a soft Dice loss (present classes) added to the "
        "weighted cross-entropy of the class map"
    )


class ConditionBand(StrictModel):
    """A band of one image parameter (a ``/params`` column): low <= value <= high."""

    column: str = Field(..., description="parameter column, e.g. energy_kv, detector_pixel_A")
    low: float = Field(..., description="lower bound (inclusive), in the column's unit")
    high: float = Field(..., description="upper bound (inclusive), in the column's unit")

    @model_validator(mode="after")
    def _ordered(self) -> ConditionBand:
        if self.low > self.high:
            raise ValueError(f"held-out condition {self.column}: low {self.low} > high "
                             f"{self.high}")
        return self

    @property
    def label(self) -> str:
        """``column=[low,high]`` (``column>=low`` for an open band, high >= 1e8)."""
        if self.high >= 1e8:
            return f"{self.column}>={self.low:g}"
        return f"{self.column}=[{self.low:g},{self.high:g}]"


class SplitConfig(StrictModel):
    """Train/validation/test split by structure_id, a held-out family, and held-out
    microscope conditions (images, whatever their structure, never used in training)."""

    val_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of structures")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="fraction of structures")
    held_out: dict[str, str] = Field(
        default_factory=lambda: {"particle_shape": "decahedron"},
        description="manifest column -> value never seen in training (generalisation test)",
    )
    held_out_conditions: list[ConditionBand] = Field(
        default_factory=lambda: [
            ConditionBand(column="blur_fwhm_A", low=1.3, high=1e9),
            ConditionBand(column="detector_pixel_A", low=0.16, high=1e9),
        ],
        description="image-parameter bands never used in training (split "
        "'held_out_condition'); the defaults only match randomised campaigns",
    )

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self


class TrainingConfig(StrictModel):
    """All networks."""

    split: SplitConfig = Field(default_factory=SplitConfig)
    denoiser: DenoiserConfig = Field(default_factory=DenoiserConfig)
    unsupervised: UnsupervisedConfig = Field(default_factory=UnsupervisedConfig)
    segmenter: SegmenterConfig = Field(default_factory=SegmenterConfig)
