"""Validation metrics: PSNR/SSIM of denoised images (per-class IoU and occupancy accuracy:
:mod:`etem.analysis.metrics`, shared with the benchmark)."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def psnr(pred: np.ndarray, clean: np.ndarray) -> float:
    """PSNR [dB] with the clean image's range (max - min) as the peak."""
    pred = np.asarray(pred, dtype=np.float64)
    clean = np.asarray(clean, dtype=np.float64)
    peak = float(clean.max() - clean.min()) or 1.0
    mse = float(np.mean((pred - clean) ** 2))
    return float(10 * np.log10(peak**2 / max(mse, 1e-20)))


def ssim(pred: np.ndarray, clean: np.ndarray) -> float:
    """SSIM (scikit-image, Gaussian window) with the clean image's range."""

    clean = np.asarray(clean, dtype=np.float64)
    rng = float(clean.max() - clean.min()) or 1.0
    return float(structural_similarity(
        np.asarray(pred, dtype=np.float64), clean, data_range=rng, gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False,
    ))
