"""Config of the networks and their training."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from etem.config.base import StrictModel


class UNetConfig(StrictModel):
    """U-Net family: depth (scales) and width (channels at the first scale)."""

    depth: int = Field(4, ge=1, le=6, description="number of scales")
    base_channels: int = Field(32, ge=4, description="channels at the first scale")
    bias_free: bool = Field(False, description="bias-free convolutions (scale equivariant)")
    dose_conditioned: bool = Field(False, description="dose given to the network as input")


class LoopConfig(StrictModel):
    """Settings shared by every training run (one loop serves all three networks)."""

    steps: int = Field(2000, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    lr_plateau_factor: float = Field(0.5, gt=0, lt=1, description="lr factor on plateau")
    lr_plateau_patience: int = Field(3, ge=1, description="validations without gain before lr drop")
    patch_px: int = Field(128, ge=16, description="random crop size [px]")
    val_every_steps: int = Field(200, ge=1)
    checkpoint_every_steps: int = Field(200, ge=1)
    early_stopping_patience: int = Field(10, ge=1, description="validations without gain")
    num_workers: int = Field(0, ge=0, description="DataLoader workers")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="bf16 autocast where the device supports it")
    deterministic: bool = Field(True, description="deterministic algorithms (bitwise on CPU)")
    model: UNetConfig = Field(default_factory=UNetConfig)


class DenoiserConfig(LoopConfig):
    """Supervised denoiser trained on simulated clean/noisy pairs."""


class UnsupervisedConfig(LoopConfig):
    """Blind-spot multi-frame denoiser trained on a noisy movie."""

    n_frames: int = Field(5, ge=3, description="consecutive frames in (odd)")
    loss: Literal["mse", "poisson"] = "mse"


class SegmenterConfig(LoopConfig):
    """Occupancy segmenter trained on defect-oxide images."""

    max_occupancy: int = Field(12, ge=1, description="largest atom count per column class")


class SplitConfig(StrictModel):
    """Train/validation/test split by structure_id, and a held-out family."""

    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    held_out: dict[str, str] = Field(
        default_factory=lambda: {"particle_shape": "decahedron"},
        description="manifest column -> value never seen in training (generalisation test)",
    )


class TrainingConfig(StrictModel):
    """All networks."""

    split: SplitConfig = Field(default_factory=SplitConfig)
    denoiser: DenoiserConfig = Field(default_factory=DenoiserConfig)
    unsupervised: UnsupervisedConfig = Field(default_factory=UnsupervisedConfig)
    segmenter: SegmenterConfig = Field(default_factory=SegmenterConfig)
