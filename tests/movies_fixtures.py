"""Shared helpers of the movie-stage tests: tiny deterministic 'denoisers' and test movies.

The networks of the campaign are trained by the training stage; unit tests of the movie stage
need denoisers that are fast and known to work, so they use fixed linear filters wrapped as
``nn.Module`` with the attributes of the real networks (``multiple``, ``in_channels``,
``n_frames``, ``n_classes``, ``max_occupancy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from etem.movies.inference import LoadedModel


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = int(np.ceil(3 * sigma))
    x = np.arange(-r, r + 1)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return torch.tensor(g / g.sum(), dtype=torch.float32)[None, None]


class BlurDenoiser(nn.Module):
    """Single-frame 'denoiser': Gaussian smoothing of the normalised frame."""

    def __init__(self, sigma_px: float = 1.5, multiple: int = 4) -> None:
        super().__init__()
        self.register_buffer("k", _gauss_kernel(sigma_px))
        self.pad = self.k.shape[-1] // 2
        self.multiple = multiple
        self.in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x[:, :1], self.k.to(x.dtype), padding=self.pad)


class WindowDenoiser(BlurDenoiser):
    """Multi-frame 'denoiser': mean of the window's frames, then Gaussian smoothing."""

    def __init__(self, n_frames: int = 5, sigma_px: float = 1.5) -> None:
        super().__init__(sigma_px)
        self.n_frames = n_frames
        self.in_channels = n_frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.mean(dim=1, keepdim=True))


class ThresholdSegmenter(BlurDenoiser):
    """Segmenter-shaped module: class 1 where the smoothed frame is bright; occupancy grows
    with brightness (ordinal logits)."""

    def __init__(self, n_classes: int = 3, max_occupancy: int = 4) -> None:
        super().__init__(1.5)
        self.n_classes = n_classes
        self.max_occupancy = max_occupancy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = super().forward(x) - 1.0
        cls = [torch.zeros_like(s), 8 * (s - 0.3)] + [torch.full_like(s, -9.0)] * (
            self.n_classes - 2
        )
        ks = torch.arange(self.max_occupancy, dtype=s.dtype, device=s.device).view(1, -1, 1, 1)
        occ = 10 * (s * 4 - ks)
        return torch.cat([*cls, occ, occ], dim=1)


def blur_model(
    pixel_size_A: float | None = 0.2, run_id: str | None = "run-denoiser", **kw: Any
) -> LoadedModel:
    return LoadedModel(
        BlurDenoiser(**kw),
        {"kind": "denoiser", "pixel_size_A": pixel_size_A, "mlflow_run_id": run_id},
    )


def window_model(pixel_size_A: float | None = 0.2) -> LoadedModel:
    return LoadedModel(
        WindowDenoiser(),
        {
            "kind": "unsupervised",
            "pixel_size_A": pixel_size_A,
            "n_frames": 5,
            "mlflow_run_id": "run-unsup",
        },
    )


def segmenter_model(pixel_size_A: float | None = 0.2) -> LoadedModel:
    return LoadedModel(
        ThresholdSegmenter(),
        {"kind": "segmenter", "pixel_size_A": pixel_size_A, "mlflow_run_id": "run-seg"},
    )
