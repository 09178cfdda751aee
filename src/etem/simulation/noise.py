"""Electron dose and detector noise: Poisson shot noise on clean images (vacuum = 1).

A clean image ``I`` (expected intensity, vacuum = 1) at a dose ``D`` [e/Å²] on pixels of
``p`` [Å] has expected counts ``I * D * p**2`` per pixel. Used on the fly by training (any
dose), by the benchmarks and by the synthetic movie generator.
"""

from __future__ import annotations

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
    electrons = rng.poisson(lam).astype(np.float64)
    if read_noise_e > 0:
        electrons += rng.normal(0.0, float(read_noise_e), size=electrons.shape)
    return (electrons * float(gain)).astype(np.float32)
