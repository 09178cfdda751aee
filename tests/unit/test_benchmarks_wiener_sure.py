"""benchmarks/wiener_sure.py: it scores etem's SURE choice (etem.analysis.baselines)."""

from __future__ import annotations

import numpy as np
import pytest

from etem.analysis.baselines import wiener_sure
from tests.benchmark_scripts import load_benchmark


def test_the_script_scores_etems_sure_choice_the_fixed_pairs_and_the_oracle() -> None:
    ws = load_benchmark("wiener_sure")
    yy, xx = np.indices((96, 96))
    lam = 0.45 * (1 + 0.3 * np.cos(2 * np.pi * yy / 7.3) * np.cos(2 * np.pi * xx / 6.1))
    clean = lam / ws.DOSE
    pairs = [(clean, np.random.default_rng(s).poisson(lam).astype(np.float64), 1.0)
             for s in range(3)]
    df = ws.choose(pairs)
    assert len(df) == 3 and (4.0, 3) in ws.GRID and (2.5, 5) in ws.GRID
    for (c, y, dqe), (_, row) in zip(pairs, df.iterrows(), strict=True):
        est, alpha, smooth = wiener_sure(y, ws.DOSE, dqe)
        assert (row.alpha, row.smooth_px) == (alpha, smooth)
        assert row.sure == pytest.approx(ws.psnr_peak(c * ws.DOSE, est * ws.DOSE, 1.0))
        assert row.oracle >= max(row.sure, row.fixed_4_3, row["fixed_2.5_5"])
