"""Dose and Poisson noise (etem.simulation.noise)."""

from __future__ import annotations

import numpy as np
import pytest

from etem.errors import InputError
from etem.seeding import rng
from etem.simulation.noise import apply_dose, dose_per_A2, dose_per_pixel, expected_counts


def test_dose_per_pixel_units():
    assert dose_per_pixel(100.0, 0.1) == pytest.approx(1.0)
    assert dose_per_A2(0.45, 0.15) == pytest.approx(20.0)
    with pytest.raises(InputError):
        dose_per_pixel(10.0, 0.0)


def test_poisson_mean_and_variance_follow_the_dose():
    clean = np.full((200, 200), 1.0, np.float32)
    clean[:100] = 0.5
    noisy = apply_dose(clean, 50.0, 0.2, rng(0, "t"))  # 2 e/px in vacuum
    assert noisy.dtype == np.float32
    assert np.all(noisy == np.round(noisy)) and noisy.min() >= 0
    top, bottom = noisy[:100], noisy[100:]
    assert top.mean() == pytest.approx(1.0, rel=0.03)
    assert bottom.mean() == pytest.approx(2.0, rel=0.03)
    assert bottom.var() == pytest.approx(2.0, rel=0.08)  # Poisson: variance = mean
    assert np.allclose(expected_counts(clean, 50.0, 0.2), clean * 2.0)


def test_read_noise_gain_and_seeding():
    clean = np.ones((100, 100), np.float32)
    a = apply_dose(clean, 100.0, 0.1, rng(1, "t"), read_noise_e=0.5, gain=2.0)
    b = apply_dose(clean, 100.0, 0.1, rng(1, "t"), read_noise_e=0.5, gain=2.0)
    assert np.array_equal(a, b)
    assert a.mean() == pytest.approx(2.0, rel=0.05)
    assert a.var() == pytest.approx(4 * (1.0 + 0.25), rel=0.1)


def test_bad_clean_image_is_an_input_error():
    noisy = apply_dose(np.array([[1.0, -1e-4]]), 1e4, 0.1, rng(0, "t"))
    assert noisy[0, 1] == 0  # ringing below 0 counts as no electrons
    with pytest.raises(InputError):
        apply_dose(np.array([[np.nan]]), 10.0, 0.1, rng(0, "t"))
