"""benchmarks/wiener_sure.py: it scores etem's SURE choice (etem.analysis.baselines)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etem.analysis.baselines import WIENER_SURE_ALPHAS, WIENER_SURE_SMOOTHS_PX, wiener_sure
from tests.benchmark_scripts import load_benchmark


def test_the_script_scores_etems_sure_choice_the_fixed_pairs_and_the_oracle() -> None:
    ws = load_benchmark("wiener_sure")
    yy, xx = np.indices((96, 96))
    lam = 0.45 * (1 + 0.3 * np.cos(2 * np.pi * yy / 7.3) * np.cos(2 * np.pi * xx / 6.1))
    clean = lam / ws.DOSE
    pairs = [(clean, np.random.default_rng(s).poisson(lam).astype(np.float64), 1.0)
             for s in range(3)]
    df = ws.choose(pairs)
    assert len(df) == 3 and (4.0, 3) in ws.GRID and (2.5, 5) in ws.FIXED
    for (c, y, dqe), (_, row) in zip(pairs, df.iterrows(), strict=True):
        est, alpha, smooth = wiener_sure(y, ws.DOSE, dqe)
        assert (row.alpha, row.smooth_px) == (alpha, smooth)
        assert row.sure == pytest.approx(ws.psnr_peak(c * ws.DOSE, est * ws.DOSE, 1.0))
        assert row.oracle >= max(row.sure, row.fixed_4_3, row["fixed_2.5_5"])


def test_grids_are_compared_by_the_psnr_of_their_sure_choice() -> None:
    ws = load_benchmark("wiener_sure")
    yy, xx = np.indices((64, 64))
    lam = 0.45 * (1 + 0.3 * np.cos(2 * np.pi * yy / 7.3) * np.cos(2 * np.pi * xx / 6.1))
    rows = []
    for seed in (7, 8):
        y = np.random.default_rng(seed).poisson(lam).astype(np.float64)
        rows += ws.grid_rows("a", seed, "in-range", lam / ws.DOSE, y)
    table = pd.DataFrame(rows)
    n_pairs = len({a for g in ws.GRIDS.values() for a in g[0]}) * len(
        {s for g in ws.GRIDS.values() for s in g[1]})
    assert len(table) == 2 * n_pairs
    assert ws.GRIDS["2,3,4,6,8 x 3,5 (etem)"] == (WIENER_SURE_ALPHAS, WIENER_SURE_SMOOTHS_PX)
    out = ws.compare_grids(table, [7]).set_index("grid")
    assert list(out.index) == list(ws.GRIDS)
    # each grid's figure is the PSNR of its least-SURE pair
    a, s = ws.GRIDS["2,3,4,6,8 x 3,5 (etem)"]
    sub = table[(table.seed == 8) & table.alpha.isin(a) & table.smooth.isin(s)]
    assert out.loc["2,3,4,6,8 x 3,5 (etem)", "held_out"] == pytest.approx(
        sub.loc[sub.sure.idxmin(), "psnr"])
    assert out.loc["2,3,4,6,8 x 3,5 (etem)", "in-range"] == pytest.approx(
        out.loc["2,3,4,6,8 x 3,5 (etem)", "held_out"])
    # the bounded figure: the least SURE among the pairs within the noise-pass bound
    ok = [ws.noise_pass_rate(x, y) <= ws.WIENER_SURE_MAX_NOISE_PASS
          for x, y in zip(sub.alpha, sub.smooth, strict=True)]
    fixed = table[(table.seed == 8) & (table.alpha == 2.5) & (table.smooth == 5)].psnr.item()
    best = sub[ok].loc[sub[ok].sure.idxmin(), "psnr"]
    row = out.loc["2,3,4,6,8 x 3,5 (etem)"]
    assert row["held_out_bound"] == pytest.approx(best)
    assert row["worst_bound"] == pytest.approx(best - fixed)
    assert row["below_bound"] == int(best < fixed)
