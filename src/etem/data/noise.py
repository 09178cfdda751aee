"""Shot noise on the fly: expected intensity (vacuum = 1) to detector counts at a dose."""

from __future__ import annotations

import numpy as np


def counts_at_dose(
    clean: np.ndarray, dose_e_per_A2: float, pixel_size_A: float, rng: np.random.Generator,
    read_noise_e: float = 0.0, gain: float = 1.0,
) -> np.ndarray:
    """Noisy counts of ``clean`` (vacuum = 1) at ``dose_e_per_A2`` [e/Å²], pixel [Å].

    Uses ``etem.simulation.noise.apply_dose`` (Poisson shot noise, Gaussian read noise
    [e rms/px], gain [counts/e]) when the simulation stage provides it, else Poisson counts
    with mean clean*D*px² (times the gain; no read noise).
    """
    try:
        from etem.simulation.noise import apply_dose
    except ImportError:
        lam = np.clip(clean, 0, None).astype(np.float64) * dose_e_per_A2 * pixel_size_A**2
        return (gain * rng.poisson(lam)).astype(np.float32)
    out = apply_dose(clean, dose_e_per_A2, pixel_size_A, rng, read_noise_e, gain)
    return np.asarray(out, dtype=np.float32)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A log-uniform draw in [low, high]."""
    if low == high:
        return float(low)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))
