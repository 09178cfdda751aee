"""Network inputs: counts normalised by the dose, so one model serves a range of doses.

A frame of counts divided by the dose per pixel [e/px] is an intensity with vacuum = 1 whose
noise level is 1/sqrt(dose) at vacuum; dose-conditioned models also get that noise level as
a second channel. Datasets (training) and :mod:`etem.models.inference` (inference) both build
inputs here, so they cannot disagree.
"""

from __future__ import annotations

import numpy as np

from etem.errors import InputError


def normalize(counts: np.ndarray, dose_e_per_px: float | np.ndarray) -> np.ndarray:
    """Counts [e/px] divided by the dose [e/px] (scalar or one per leading index): vacuum = 1.

    Parameters
    ----------
    counts : ndarray, (H, W) or (N, H, W)
        Detector counts per pixel.
    dose_e_per_px : float or ndarray (N,)
        Expected counts per pixel in vacuum (dose [e/Å²] times pixel area [Å²]).
    """
    counts = np.asarray(counts, dtype=np.float32)
    dose = np.asarray(dose_e_per_px, dtype=np.float32)
    if np.any(dose <= 0) or not np.all(np.isfinite(dose)):
        raise InputError(f"dose per pixel must be finite and > 0 (got {dose_e_per_px})")
    if dose.ndim == 1:
        if counts.ndim < 3 or dose.shape[0] != counts.shape[0]:
            raise InputError(f"{dose.shape[0]} doses for counts of shape {counts.shape}")
        dose = dose.reshape((-1,) + (1,) * (counts.ndim - 1))
    return counts / dose


def dose_channel(dose_e_per_px: float | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Constant channel 1/sqrt(dose [e/px]) of ``shape`` (the vacuum noise level)."""
    dose = np.asarray(dose_e_per_px, dtype=np.float32)
    level = 1.0 / np.sqrt(dose)
    if level.ndim == 1:
        level = level.reshape((-1,) + (1,) * (len(shape) - 1))
    return np.broadcast_to(level, shape).astype(np.float32)


def image_input(
    norm: np.ndarray, dose_e_per_px: float | np.ndarray, dose_conditioned: bool
) -> np.ndarray:
    """Stack model channels: (H, W) -> (C, H, W); (N, H, W) -> (N, C, H, W)."""
    axis = 0 if norm.ndim == 2 else 1
    chans = [norm.astype(np.float32)]
    if dose_conditioned:
        chans.append(dose_channel(dose_e_per_px, norm.shape))
    return np.stack(chans, axis=axis)
