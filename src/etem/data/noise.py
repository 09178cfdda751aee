"""Dose sampling for on-the-fly noise (the noise itself is etem.simulation.noise.apply_dose)."""

from __future__ import annotations

import numpy as np


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A log-uniform draw in [low, high]."""
    if low == high:
        return float(low)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))
