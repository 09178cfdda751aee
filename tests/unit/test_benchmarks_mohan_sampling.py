"""benchmarks/mohan_sampling.py: finer pixels by interpolation, counts binned back (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark

ms = load_benchmark("mohan_sampling")


def test_binning_keeps_the_counts_and_interpolation_the_image() -> None:
    g = np.random.default_rng(0)
    counts = g.poisson(0.7, (64, 64)).astype(float)
    b = ms.binned(counts, 4)
    assert b.shape == (16, 16) and b.sum() == counts.sum()
    y, x = np.mgrid[0:32, 0:32]
    img = 1.0 + 0.3 * np.cos(2 * np.pi * x / 8) * np.cos(2 * np.pi * y / 10)  # band limited
    assert np.array_equal(ms.finer(img, 1), img)
    fine = ms.finer(img, 4)
    assert fine.shape == (128, 128)
    # pixel areas aligned: binning the finer image back gives the image (away from borders)
    back = ms.binned(fine, 4) / 16
    assert back[4:-4, 4:-4] == pytest.approx(img[4:-4, 4:-4], abs=0.02)
    assert fine.mean() == pytest.approx(img.mean(), abs=0.01)
