"""Breakdown of the benchmark tables: a campaign grid by value, a randomised axis by bins."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from etem.evaluation.tables import MAX_LEVELS, N_BINS, axis_levels, summarise


def _per_image(defocus: np.ndarray) -> pd.DataFrame:
    n = len(defocus)
    return pd.DataFrame({"method": "noisy", "image_id": [f"i{k}" for k in range(n)],
                         "dose_e_per_A2": 12.5, "defocus_nm": defocus,
                         "psnr_db": np.linspace(10.0, 20.0, n), "ssim": 0.5})


def test_a_campaign_grid_is_broken_down_by_value() -> None:
    grid = np.tile([-12.0, -8.0, -4.0, 0.0, 4.0, 8.0, 12.0], 3)
    s = summarise(_per_image(grid), ["psnr_db", "ssim"])
    subsets = set(s["subset"])
    assert {f"defocus_nm={v:g}" for v in grid} <= subsets
    assert s.loc[s["subset"] == "defocus_nm=-12", "n"].item() == 3


def test_a_drawn_axis_is_broken_down_by_quantile_bins() -> None:
    drawn = np.random.default_rng(0).uniform(-20.0, 20.0, 60)
    s = summarise(_per_image(drawn), ["psnr_db", "ssim"])
    rows = s[s["subset"].str.startswith("defocus_nm=")]
    assert len(rows) == N_BINS and rows["n"].sum() == 60  # every image in one bin
    levels = axis_levels(pd.Series(drawn))
    for label, g in pd.Series(drawn).groupby(levels):
        lo, hi = (float(x) for x in label.split(".."))
        assert np.isclose(g.min(), lo, rtol=1e-2) and np.isclose(g.max(), hi, rtol=1e-2)
    # the bins are ordered and do not overlap
    edges = sorted((g.min(), g.max()) for _, g in pd.Series(drawn).groupby(levels))
    assert all(a[1] < b[0] for a, b in itertools.pairwise(edges))
    assert pd.Series(drawn[:MAX_LEVELS]).pipe(axis_levels).equals(pd.Series(drawn[:MAX_LEVELS]))
