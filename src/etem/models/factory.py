"""Build the networks from config: one place that maps a kind + architecture dict to a module."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from etem.config.training import (
    PREFILTERS,
    DenoiserConfig,
    LoopConfig,
    SegmenterConfig,
    UnsupervisedConfig,
)
from etem.errors import ConfigError
from etem.models.blindspot import BlindSpotDenoiser
from etem.models.unet import Denoiser, Segmenter
from etem.simulation.contract import CLASSES

KINDS = ("denoiser", "unsupervised", "segmenter")


def architecture(kind: str, cfg: LoopConfig) -> dict[str, Any]:
    """The architecture dict (stored in model files) of ``kind`` from its training config."""

    m = cfg.model
    arch: dict[str, Any] = {
        "kind": kind, "depth": m.depth, "base_channels": m.base_channels,
    }
    if kind == "denoiser":
        dcfg = cast(DenoiserConfig, cfg)
        arch.update(bias_free=m.bias_free, dose_conditioned=m.dose_conditioned,
                    residual=dcfg.residual)
        if dcfg.prefilter != "none":  # absent in model files from before the prefilter
            arch["prefilter"] = dcfg.prefilter
    elif kind == "segmenter":
        arch.update(bias_free=m.bias_free, dose_conditioned=m.dose_conditioned,
                    classes=list(CLASSES), max_occupancy=cast(SegmenterConfig, cfg).max_occupancy)
    elif kind == "unsupervised":
        arch.update(n_frames=cast(UnsupervisedConfig, cfg).n_frames)
    else:
        raise ConfigError(f"unknown model kind {kind!r}; expected one of {KINDS}")
    return arch


def build_model(arch: dict[str, Any]) -> nn.Module:
    """A freshly initialised network from an architecture dict (see :func:`architecture`)."""

    kind = arch.get("kind")
    if kind == "denoiser":
        prefilter = str(arch.get("prefilter", "none"))
        if prefilter not in PREFILTERS:
            raise ConfigError(f"denoiser prefilter {prefilter!r}: this etem knows "
                              f"{list(PREFILTERS)}")
        return Denoiser(arch["depth"], arch["base_channels"], arch.get("bias_free", False),
                        arch.get("dose_conditioned", False), arch.get("residual", True),
                        prefilter)
    if kind == "segmenter":
        return Segmenter(len(arch["classes"]), arch["max_occupancy"], arch["depth"],
                         arch["base_channels"], arch.get("bias_free", False),
                         arch.get("dose_conditioned", False))
    if kind == "unsupervised":
        return BlindSpotDenoiser(arch["n_frames"], arch["depth"], arch["base_channels"])
    raise ConfigError(f"unknown model kind {kind!r}; expected one of {KINDS}")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_frame(arch: dict[str, Any], size_px: int = 1024) -> int:
    """Floating-point operations of one output frame of ``size_px``² [FLOP], counted exactly.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a meta-device copy of
    :func:`build_model` ``(arch)`` (no arithmetic is run): convolutions and matrix products,
    2 FLOP per multiply-add; activations, pooling, padding and additions are not counted
    (they are a small fraction). One output frame takes one input of ``in_channels``
    channels: a single frame for the denoiser and the segmenter, the window of ``n_frames``
    frames for the blind-spot network (``kind`` unsupervised). ``size_px`` must be a
    multiple of the network's size multiple (2**(depth-1)).
    """
    model = build_model(arch).to("meta").eval()
    mult = int(getattr(model, "multiple", 1))
    if size_px < 1 or size_px % mult:
        raise ConfigError(f"frame size {size_px} px: must be a positive multiple of {mult} "
                          f"for a network of depth {arch.get('depth')}")
    channels = int(getattr(model, "in_channels", 1))
    x = torch.empty(1, channels, size_px, size_px, device="meta")
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return int(counter.get_total_flops())
