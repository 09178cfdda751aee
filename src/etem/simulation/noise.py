"""Electron dose and detector noise: Poisson shot noise on clean images (vacuum = 1).

A clean image ``I`` (expected intensity, vacuum = 1) at a dose ``D`` [e/Å²] on pixels of
``p`` [Å] has expected counts ``I * D * p**2`` per pixel. Used on the fly by training (any
dose), by the benchmarks and by the synthetic movie generator.

Detector DQE(0) below 1 (a randomised campaign's ``dqe`` column): a counting detector that
records with DQE(0) = q carries the information of q of the electrons (lost and miscounted
events, coincidence loss) while its counts are calibrated to the dose. Its counts are
Poisson at q times the expected electrons, rescaled by 1/q (:func:`detector_counts`): mean =
the expected electrons, variance/mean = 1/q, and DQE(0) = SNR²_out / SNR²_in = q exactly.
The noise stays white: the frequency dependence of the detector is its MTF, applied to the
clean image by the simulation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from etem.errors import InputError


def dose_per_pixel(dose_e_per_A2: float, pixel_size_A: float) -> float:
    """Electrons per pixel [e/px] of a dose [e/Å²] on square pixels of ``pixel_size_A`` [Å]."""
    if dose_e_per_A2 < 0 or pixel_size_A <= 0:
        raise InputError(
            f"dose {dose_e_per_A2} e/Å² and pixel size {pixel_size_A} Å: need dose >= 0, "
            "pixel > 0"
        )
    return float(dose_e_per_A2) * float(pixel_size_A) ** 2


def dose_per_A2(dose_e_per_px: float, pixel_size_A: float) -> float:
    """Dose [e/Å²] of ``dose_e_per_px`` [e/px] on pixels of ``pixel_size_A`` [Å]."""
    return float(dose_e_per_px) / float(pixel_size_A) ** 2


def row_dqe(row: Any) -> float:
    """The DQE(0) of a parameter row (``/params``, index row, dict): 1.0 when the row has no
    ``dqe`` or it is NaN or 0 (an ideal counting detector); else it must lie in (0, 1]."""
    v = row.get("dqe") if hasattr(row, "get") else None
    try:
        q = float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        raise InputError(f"image parameter dqe = {v!r}: not a number") from None
    if not math.isfinite(q) or q == 0.0:
        return 1.0
    if not 0.0 < q <= 1.0:
        raise InputError(f"image parameter dqe = {q}: must lie in (0, 1]")
    return q


def detector_counts(
    expected_e: np.ndarray, rng: np.random.Generator, dqe: float = 1.0
) -> np.ndarray:
    """Counts (float64) of a counting detector with DQE(0) ``dqe`` for ``expected_e`` expected
    electrons per pixel: Poisson(expected) at ``dqe == 1`` (the same draws as
    ``rng.poisson``), else Poisson(dqe x expected) / dqe: same mean, variance/mean = 1/dqe."""
    if dqe == 1.0:
        return rng.poisson(expected_e).astype(np.float64)
    if not 0.0 < dqe < 1.0:
        raise InputError(f"detector DQE {dqe}: must lie in (0, 1]")
    return rng.poisson(np.asarray(expected_e, dtype=np.float64) * dqe) / float(dqe)


def expected_counts(
    clean: np.ndarray, dose_e_per_A2: float, pixel_size_A: float, gain: float = 1.0
) -> np.ndarray:
    """Expected counts per pixel (float32) of a clean image at a dose [e/Å²]."""
    scale = dose_per_pixel(dose_e_per_A2, pixel_size_A) * float(gain)
    return (np.asarray(clean, dtype=np.float32) * np.float32(scale)).astype(np.float32)


def apply_dose(
    clean: np.ndarray,
    dose_e_per_A2: float,
    pixel_size_A: float,
    rng: np.random.Generator,
    read_noise_e: float = 0.0,
    gain: float = 1.0,
    dqe: float = 1.0,
) -> np.ndarray:
    """A noisy image in counts (float32): Poisson shot noise, optional read noise and gain.

    Parameters
    ----------
    clean : ndarray
        Clean image(s), expected intensity with vacuum = 1 (any shape); negative values
        are treated as 0.
    dose_e_per_A2 : float
        Electron dose [e/Å²].
    pixel_size_A : float
        Pixel size [Å].
    rng : numpy.random.Generator
        Source of randomness (derive it with :func:`etem.seeding.rng`).
    read_noise_e : float
        Gaussian read noise [e rms/px] (0 for a counting detector).
    gain : float
        Counts per electron.
    dqe : float
        Detector DQE(0) (:func:`detector_counts`; 1 = Poisson, the same draws as before).

    Returns
    -------
    ndarray
        float32 counts, same shape as ``clean``.
    """
    clean = np.asarray(clean, dtype=np.float32)
    if not np.all(np.isfinite(clean)):
        raise InputError("clean image contains NaN or inf")
    # intensities are >= 0; tiny negative values (resampling ringing) count as 0
    lam = np.clip(clean.astype(np.float64), 0.0, None) * dose_per_pixel(
        dose_e_per_A2, pixel_size_A
    )
    electrons = detector_counts(lam, rng, dqe)
    if read_noise_e > 0:
        electrons += rng.normal(0.0, float(read_noise_e), size=electrons.shape)
    return (electrons * float(gain)).astype(np.float32)
