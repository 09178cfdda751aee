"""Validation metrics: PSNR/SSIM of denoised images, per-class IoU and occupancy accuracy."""

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


def iou_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Intersection over union per class (NaN where a class is absent from both)."""
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        p, t = pred == c, truth == c
        union = np.count_nonzero(p | t)
        if union:
            out[c] = np.count_nonzero(p & t) / union
    return out


def occupancy_accuracy(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, tol: int) -> float:
    """Fraction of masked pixels whose rounded occupancy is within ``tol`` atoms (NaN if empty)."""
    if not np.any(mask):
        return float("nan")
    diff = np.abs(np.rint(pred[mask]) - truth[mask])
    return float(np.mean(diff <= tol))
