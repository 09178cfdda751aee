"""Image-quality metrics: PSNR and SSIM against the noise-free image.

Both are computed on intensities normalised so that vacuum = 1 (the shard contract), with
``data_range`` = max - min of the clean image (per image), so values are comparable across
doses and contrast regimes.

:func:`psnr_peak` / :func:`ssim_peak` implement Mohan et al.'s convention instead (images in
counts [e/px], clamped to [0, peak], peak = 1 count): their 35-38 dB are in that convention
and are not comparable with the range-normalised figures above.

Segmentation (the segmenter's validation and the benchmark alike): per-class IoU
(:func:`class_overlap`, :func:`iou_per_class`) and column-occupancy accuracy, exact or within
±1 atom (:func:`occupancy_hits`, :func:`occupancy_accuracy`).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from etem.errors import InputError


def _pair(clean: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(clean, dtype=np.float64)
    b = np.asarray(estimate, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"metrics need two 2D images of equal shape, got {a.shape}, {b.shape}")
    return a, b


def data_range(clean: np.ndarray) -> float:
    """Dynamic range of the reference image (max - min), at least 1e-12."""
    a = np.asarray(clean, dtype=np.float64)
    return max(float(a.max() - a.min()), 1e-12)


def mse(clean: np.ndarray, estimate: np.ndarray) -> float:
    """Mean squared error (units of the images, squared)."""
    a, b = _pair(clean, estimate)
    return float(np.mean((a - b) ** 2))


def psnr(clean: np.ndarray, estimate: np.ndarray, data_range_value: float | None = None) -> float:
    """Peak signal-to-noise ratio [dB] = 10 log10(range² / MSE)."""
    a, b = _pair(clean, estimate)
    rng = data_range(a) if data_range_value is None else float(data_range_value)
    err = float(np.mean((a - b) ** 2))
    return float(10.0 * np.log10(rng**2 / max(err, 1e-30)))


def ssim(clean: np.ndarray, estimate: np.ndarray, data_range_value: float | None = None) -> float:
    """Structural similarity (scikit-image, Gaussian-weighted 11x11 window, sigma 1.5 px)."""

    a, b = _pair(clean, estimate)
    rng = data_range(a) if data_range_value is None else float(data_range_value)
    return float(
        structural_similarity(a, b, data_range=rng, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
    )


def psnr_peak(clean: np.ndarray, estimate: np.ndarray, peak: float = 1.0) -> float:
    """PSNR [dB] with a fixed peak after clamping both images to [0, peak].

    Mohan et al.'s protocol (``skimage.metrics.peak_signal_noise_ratio`` with
    ``data_range=1`` after clamping to [0, 1]) when images are in counts [e/px] and the clean
    image is scaled to a maximum of ``peak`` = 1 count.
    """
    a, b = _pair(clean, estimate)
    return psnr(np.clip(a, 0.0, peak), np.clip(b, 0.0, peak), peak)


def ssim_peak(clean: np.ndarray, estimate: np.ndarray, peak: float = 1.0) -> float:
    """SSIM with ``data_range = peak`` after clamping to [0, peak] (scikit-image defaults:
    7x7 uniform window), as in Mohan et al.'s evaluation."""

    a, b = _pair(clean, estimate)
    return float(structural_similarity(np.clip(a, 0.0, peak), np.clip(b, 0.0, peak),
                                       data_range=peak))


# -- segmentation: class maps and column occupancies ------------------------------------
def class_overlap(pred: np.ndarray, truth: np.ndarray, k: int) -> tuple[int, int]:
    """(intersection, union) [px] of class ``k`` in two class maps: IoU = the ratio."""
    p, t = np.asarray(pred) == k, np.asarray(truth) == k
    return int(np.count_nonzero(p & t)), int(np.count_nonzero(p | t))


def iou_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Intersection over union per class (NaN where a class is absent from both)."""
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        inter, union = class_overlap(pred, truth, c)
        if union:
            out[c] = inter / union
    return out


def occupancy_hits(
    pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, tol: int
) -> tuple[int, int]:
    """(hits, pixels): masked pixels whose rounded predicted occupancy is within ``tol`` atoms
    of the rounded true one, and the number of masked pixels (``tol`` 0 = exact)."""
    m = np.asarray(mask, dtype=bool)
    diff = np.abs(np.rint(np.asarray(pred)[m]) - np.rint(np.asarray(truth)[m]))
    return int(np.count_nonzero(diff <= tol)), int(m.sum())


def occupancy_accuracy(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, tol: int) -> float:
    """Fraction of masked pixels whose rounded occupancy is within ``tol`` atoms (NaN if empty)."""
    hits, n = occupancy_hits(pred, truth, mask, tol)
    return hits / n if n else float("nan")
