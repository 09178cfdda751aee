"""Unsupervised MSE and PSNR (Morales et al., ICML 2023): judging a denoiser without ground truth.

With four independent noisy copies y, a, b, c of the same signal s (zero-mean noise)::

    uMSE = mean (a - f(y))² - mean (b - c)² / 2

is an unbiased estimate of the true MSE mean (s - f(y))², because E(a - f(y))² =
MSE + var(a) and E(b - c)²/2 = var(noise). The copies come either from the four 2x2
sub-sampled sub-images of one frame (valid when the signal is smooth at the pixel scale) or
from four neighbouring frames of a static stretch of a movie. Each role assignment is used
(the four cyclic rotations of (y, a, b, c)) and the estimates are averaged.

The standard error is estimated from per-block averages of the per-pixel terms (blocks of
``block_px`` pixels, so the spatial correlation introduced by the denoiser is respected).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from etem.errors import InputError

DenoiseFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class UMSEResult:
    """uMSE estimate [image units²], its standard error and the number of pixels used."""

    umse: float
    se: float
    n_pixels: int

    def upsnr(self, peak: float) -> float:
        """uPSNR [dB] = 10 log10(peak² / uMSE) (NaN when uMSE <= 0)."""
        return upsnr(self.umse, peak)


def upsnr(umse_value: float, peak: float) -> float:
    """uPSNR [dB] from an uMSE estimate and the signal's peak value (NaN if uMSE <= 0)."""
    if umse_value <= 0:
        return float("nan")
    return float(10.0 * np.log10(peak**2 / umse_value))


def quartets(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four 2x2 sub-sampled sub-images (even/odd rows x even/odd columns) of a frame."""
    f = np.asarray(frame)
    if f.ndim != 2 or min(f.shape) < 4:
        raise InputError(f"uMSE needs a 2D frame of at least 4x4 px, got shape {f.shape}")
    h, w = (f.shape[0] // 2) * 2, (f.shape[1] // 2) * 2
    f = f[:h, :w]
    return f[0::2, 0::2], f[0::2, 1::2], f[1::2, 1::2], f[1::2, 0::2]


def block_se(terms: np.ndarray, block_px: int) -> float:
    """Standard error of the mean of per-pixel ``terms`` (H, W) from the means of
    ``block_px``-wide blocks (the spatial correlation a denoiser introduces is respected)."""
    h, w = terms.shape
    b = max(1, min(block_px, h, w))
    hb, wb = h // b, w // b
    if hb * wb < 2:
        return float(np.std(terms) / np.sqrt(terms.size))
    blocks = terms[: hb * b, : wb * b].reshape(hb, b, wb, b).mean(axis=(1, 3)).ravel()
    return float(np.std(blocks, ddof=1) / np.sqrt(len(blocks)))


def umse_quartet(
    denoise_fn: DenoiseFn,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    block_px: int = 16,
) -> UMSEResult:
    """uMSE of ``denoise_fn`` applied to ``y``, from three further independent copies."""
    arrs = [np.asarray(v, dtype=np.float64) for v in (y, a, b, c)]
    if len({v.shape for v in arrs}) != 1 or arrs[0].ndim != 2:
        raise InputError("uMSE needs four 2D images of equal shape")
    fy = np.asarray(denoise_fn(arrs[0]), dtype=np.float64)
    if fy.shape != arrs[0].shape:
        raise InputError(f"denoiser changed the image shape {arrs[0].shape} -> {fy.shape}")
    terms = (arrs[1] - fy) ** 2 - 0.5 * (arrs[2] - arrs[3]) ** 2
    return UMSEResult(float(terms.mean()), block_se(terms, block_px), int(terms.size))


def _combine(results: list[UMSEResult]) -> UMSEResult:
    # the rotations reuse the same data, so their errors are correlated: keep the mean SE
    return UMSEResult(
        float(np.mean([r.umse for r in results])),
        float(np.mean([r.se for r in results])),
        int(results[0].n_pixels),
    )


def umse(denoise_fn: DenoiseFn, frame: np.ndarray, block_px: int = 16) -> UMSEResult:
    """uMSE from the 2x2 sub-sampled quartet of one frame (MSE of ``denoise_fn`` on a sub-image).

    ``denoise_fn`` maps a half-resolution noisy sub-image to its estimate (same units).
    """
    q = quartets(frame)
    res = [umse_quartet(denoise_fn, q[i], q[(i + 1) % 4], q[(i + 2) % 4], q[(i + 3) % 4],
                        block_px=block_px) for i in range(4)]
    return _combine(res)


def umse_frames(denoise_fn: DenoiseFn, frames: np.ndarray, block_px: int = 16) -> UMSEResult:
    """uMSE from a static stretch of >= 4 frames (T, H, W): consecutive quartets, averaged."""
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim != 3 or f.shape[0] < 4:
        raise InputError(f"uMSE from frames needs (T >= 4, H, W), got shape {f.shape}")
    res = []
    for t in range(0, f.shape[0] - 3, 4):
        quad = f[t : t + 4]
        res += [umse_quartet(denoise_fn, quad[i], quad[(i + 1) % 4], quad[(i + 2) % 4],
                             quad[(i + 3) % 4], block_px=block_px) for i in range(4)]
    n_groups = len(res) // 4
    out = _combine(res)
    return UMSEResult(out.umse, out.se / np.sqrt(max(n_groups, 1)), out.n_pixels * n_groups)
