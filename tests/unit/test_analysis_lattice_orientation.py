"""Lattice orientation of a region from its power spectrum (no column tracks)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from etem.analysis.lattice import LatticeOrientation
from etem.testing import particle_movie, render_columns


def _angles(
    frames: np.ndarray, px: float, margin: int = 0
) -> tuple[np.ndarray, LatticeOrientation]:
    lo = LatticeOrientation(px)
    for f in frames:
        lo.add(f[margin : f.shape[0] - margin, margin : f.shape[1] - margin])
    return lo.angles(), lo


def test_square_lattice_rotation_is_a_step_of_its_angle() -> None:
    lm = particle_movie(event="rotation", magnitude=8.0, dose_e_per_px_per_frame=1.0, seed=3)
    den = np.stack([ndimage.gaussian_filter(c.astype(np.float32), 1.5) for c in lm.counts])
    a, lo = _angles(den, lm.pixel_size_A, 10)
    assert lo.order == 4 and lo.period_A == pytest.approx(9 * lm.pixel_size_A, rel=0.1)
    step = np.median(a[24:]) - np.median(a[:24])
    assert step == pytest.approx(8.0, abs=1.0)  # anticlockwise in x, y: positive
    assert np.std(a[:24]) < 2.0


def test_hexagonal_lattice_and_missing_frames() -> None:
    rng = np.random.default_rng(0)
    size, a0 = 96, 8.0
    ij = np.stack(np.meshgrid(np.arange(-8, 9), np.arange(-8, 9)), -1).reshape(-1, 2)
    base = ij[:, :1] * np.array([a0, 0]) + ij[:, 1:] * np.array([a0 / 2, a0 * np.sqrt(3) / 2])
    frames = []
    for t in range(30):
        ang = np.deg2rad(5.0 if t >= 15 else 0.0)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        img = render_columns(base @ rot.T + size / 2, size, 1.4, 1.0)
        frames.append(ndimage.gaussian_filter(rng.poisson(img * 2.0) / 2.0, 1.0))
    lo = LatticeOrientation(0.2)
    for t, f in enumerate(frames):
        lo.add(None if t == 3 else f)
    a = lo.angles()
    assert lo.order == 6 and np.isnan(a[3]) and np.isfinite(np.delete(a, 3)).all()
    assert np.nanmedian(a[15:]) - np.nanmedian(a[:15]) == pytest.approx(5.0, abs=0.7)
