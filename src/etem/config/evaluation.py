"""Config of the benchmarks (metrics, likelihood maps, calibration) and the report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from etem.config.base import FolderName, Fraction, OddPositiveInt, Positive, StrictModel
from etem.errors import ConfigError

#: The simulation keys a code path may override (see :class:`CodePath`).
CODE_PATH_KEYS = ("parametrization", "projection", "frozen_phonons", "frozen_phonon_sigma_A",
                  "slice_thickness_A", "images_per_structure", "n_shards")
#: The keys of those that change the physics (a code path sets at least one).
CODE_PATH_PHYSICS = CODE_PATH_KEYS[:5]
#: Over-subtraction factor and periodogram smoothing [frequency px] of the empirical Wiener
#: filter (:func:`etem.analysis.baselines.wiener`, which takes them as its defaults), chosen
#: on 200 training images of the randomised campaign ``results/pretrained2`` at 0.45 e/px
#: (``benchmarks/wiener_tuning.py``: best mean Mohan PSNR of a grid alpha 2-8 x smooth 1-9;
#: +0.47 dB over the prototype's 4 / 3, see benchmarks/pretrained.md). Their one home is
#: here, below the analysis layer, so that the config sections can default to them.
WIENER_ALPHA = 2.5
WIENER_SMOOTH_PX = 5


class CodePath(StrictModel):
    """A test set made through another abTEM code path: the evaluated structures (splits
    ``test`` and ``held_out``) simulated again with these ``simulation`` keys overridden
    (``etem simulate-code-path``); the cross-condition table scores them as the group
    ``split=code_path|condition=<name>``. A key left unset (None) keeps the campaign's value.
    """

    name: FolderName = Field(description="name of the set (a folder and a table group)")
    parametrization: Literal["lobato", "kirkland"] | None = Field(
        None, description="abTEM atomic potential parametrisation"
    )
    projection: Literal["infinite", "finite"] | None = Field(
        None, description="potential projection (finite: integrated along each slice)"
    )
    frozen_phonons: int | None = Field(
        None, ge=0, description="frozen-phonon configurations (0 = static)"
    )
    frozen_phonon_sigma_A: float | None = Field(
        None, ge=0, description="thermal displacement rms [Å]"
    )
    slice_thickness_A: float | None = Field(
        None, gt=0, description="multislice slice thickness [Å]"
    )
    images_per_structure: int | None = Field(
        None, ge=1, description="images kept per structure (None = the campaign's)"
    )
    n_shards: int | None = Field(
        None, ge=1, description="Snakemake jobs of this set (None = simulation.n_shards)"
    )

    @model_validator(mode="after")
    def _changes_the_physics(self) -> CodePath:
        if all(getattr(self, k) is None for k in CODE_PATH_PHYSICS):
            raise ValueError(f"code path {self.name!r}: set at least one of "
                             f"{', '.join(CODE_PATH_PHYSICS)}")
        return self

    def overrides(self) -> dict[str, Any]:
        """The ``simulation`` keys this set overrides (unset keys left out)."""
        return {k: getattr(self, k) for k in CODE_PATH_KEYS if getattr(self, k) is not None}


class EvaluationConfig(StrictModel):
    """Denoising tables, column finding, likelihood maps and their calibration."""

    max_test_images: int = Field(2000, ge=1, description="cap on test images evaluated")
    gaussian_sigma_px: list[Positive] = Field(
        default_factory=lambda: [1.0, 1.5, 2.0], description="Gaussian baseline widths [px]"
    )
    nlm: bool = Field(True, description="include the Anscombe + non-local means baseline")
    nlm_patch_size_px: int = Field(5, ge=3, description="NLM patch size [px]")
    nlm_patch_distance_px: int = Field(6, ge=1, description="NLM search distance [px]")
    nlm_h: float = Field(
        0.8, gt=0, description="NLM strength on Anscombe-stabilised counts (noise sd = 1)"
    )
    wiener: bool = Field(
        True,
        description="include the empirical Wiener filter of HRTEM (Kilaas 1998; "
        "etem.analysis.baselines.wiener): no training, no clean image, Poisson noise power "
        "from the counts",
    )
    wiener_alpha: float = Field(
        WIENER_ALPHA, gt=0,
        description="Wiener over-subtraction factor (dimensionless): gain max(0, 1 - alpha "
        "x noise power / smoothed periodogram) per spatial frequency",
    )
    wiener_smooth_px: OddPositiveInt = Field(
        WIENER_SMOOTH_PX,
        description="side [frequency px of the mirror-extended image's FFT] of the square "
        "over which the Wiener filter smooths the periodogram (odd: centred, so the gain is "
        "symmetric and the mean kept; 1 = none)",
    )
    wiener_sure: bool = Field(
        True,
        description="also include wiener_sure: the empirical Wiener filter with its alpha and "
        "periodogram smoothing [frequency px] chosen per image, without the clean image, by "
        "Stein's unbiased risk estimate of its MSE [counts² per pixel] over alpha 2, 3, 4, 6, "
        "8 x smoothing 3, 5 px less alpha 2 / smoothing 3 (it keeps 3.5 % of pure-noise "
        "coefficients: SURE picks it by chance) (etem.analysis.baselines.wiener_sure; "
        "what etem apply uses on movies too short to score); its noise level is each "
        "image's detector DQE(0) (counts of variance counts / dqe), which SURE needs (the "
        "fixed wiener: dqe 1)",
    )
    confidence_levels: list[Fraction] = Field(
        default_factory=lambda: [0.9, 0.95, 0.99], description="nominal confidence levels"
    )
    calibration_vacuum_images: int = Field(
        40, ge=2,
        description="simulated vacuum images per dose for the likelihood calibration "
        "(half fit, half held out)",
    )
    umse_images: int = Field(16, ge=0, description="test images used to validate uMSE")
    example_images: int = Field(2, ge=1, description="example panels in the figures")
    mohan_protocol: bool = Field(
        True,
        description="also evaluate with Mohan et al.'s protocol: clean image scaled to a "
        "maximum of mohan_peak_counts [e/px], Poisson noise, PSNR/SSIM in counts with that "
        "peak after clamping (their 35-38 dB are in this convention)",
    )
    mohan_peak_counts: float = Field(
        1.0, gt=0, description="maximum of the scaled clean image [e/px] (Mohan et al.: 1)"
    )

    conditions: bool = Field(
        True,
        description="cross-condition table: held-out structures vs held-out microscope "
        "conditions (training.split.held_out_conditions) vs test, per method",
    )
    condition_dose_e_per_px: float = Field(
        0.45, gt=0,
        description="mean dose in vacuum [e/px] of the cross-condition table (a real "
        "Pt/CeO2 frame: about 0.45 e/px)",
    )
    oracle_sigmas_px: list[float] = Field(
        default_factory=lambda: [0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0],
        min_length=1,
        description="widths [px] the oracle Gaussian chooses from (best on the clean image); "
        "wide enough that the best lies inside on low-contrast images (heavily blurred "
        "columns at ~0.5 e/px pick the widest: the image mean)",
    )
    condition_max_images: int = Field(
        200, ge=1, description="cap on images of the cross-condition table (and, apart, on "
        "those of each code path)"
    )
    finetune_images: int = Field(
        0, ge=0,
        description="cross-condition images (held-out conditions first) on which the "
        "blind-spot network is also fine-tuned on its own noisy frames before denoising them "
        "(method blind_spot_finetuned, as `etem apply` does with apply.finetune; 0 = off); "
        "each costs finetune_steps optimizer steps",
    )
    finetune_steps: int = Field(
        100, ge=1,
        description="optimizer steps of each fine-tuning of blind_spot_finetuned (lr, batch "
        "and patch size: apply.finetune's defaults)",
    )
    code_paths: list[CodePath] = Field(
        default_factory=list,
        description="test sets simulated through other abTEM code paths (parametrisation, "
        "projection, frozen phonons, slice thickness) on the evaluated structures; each a "
        "group of the cross-condition table",
    )

    occupancy_baseline_neighbours: int = Field(
        8, ge=1,
        description="training images behind each test image's intensity-to-occupancy "
        "curve in the segmenter's cross-condition table: those nearest in microscope "
        "parameters (same family), i.e. the nearest condition bin seen in training",
    )
    occupancy_baseline_train_images: int = Field(
        400, ge=1,
        description="cap on training-split images loaded for the intensity-to-occupancy "
        "curves (drawn from the seed)",
    )

    def code_path(self, name: str) -> CodePath:
        """The code path called ``name``; ConfigError naming the configured ones if none."""
        for cp in self.code_paths:
            if cp.name == name:
                return cp
        known = ", ".join(cp.name for cp in self.code_paths) or "none configured"
        raise ConfigError(f"code path {name!r}: not in evaluation.code_paths ({known})")

    @model_validator(mode="after")
    def _check(self) -> EvaluationConfig:
        if any(not 0 < c < 1 for c in self.confidence_levels):
            raise ValueError("confidence_levels must lie strictly between 0 and 1")
        names = [cp.name for cp in self.code_paths]
        if len(set(names)) != len(names):
            raise ValueError(f"code_paths: names must be unique (got {names})")
        return self


class ColumnsConfig(StrictModel):
    """Atomic-column finding, one setting for the benchmark and the movies alike (the
    likelihood calibration of the benchmark is valid only for the finder it was fitted with).
    """

    blob_min_sigma_A: float = Field(0.3, gt=0, description="blob_log min sigma [Å]")
    blob_max_sigma_A: float = Field(1.2, gt=0, description="blob_log max sigma [Å]")
    blob_threshold: float = Field(
        0.08,
        gt=0,
        description="blob_log threshold on the image rescaled so that its 0.1 / 99.9 % "
        "percentiles map to 0 / 1",
    )
    refine: Literal["centroid", "gaussian", "none"] = Field(
        "centroid", description="sub-pixel refinement of column positions"
    )
    disk_radius_A: float = Field(0.5, gt=0, description="likelihood disk radius [Å]")
    max_pixel_size_A: float = Field(
        0.5,
        gt=0,
        description="coarsest pixel size [Å] at which etem apply looks for atomic columns "
        "(about a third of the shortest column spacing of interest); coarser movies, or "
        "movies without lattice fringes, get frame-level statistics only",
    )
    match_radius_A: float = Field(0.5, gt=0, description="detection matching radius [Å]")

    @model_validator(mode="after")
    def _sigma_range(self) -> ColumnsConfig:
        if self.blob_min_sigma_A > self.blob_max_sigma_A:
            raise ValueError("blob_min_sigma_A must be <= blob_max_sigma_A")
        return self
