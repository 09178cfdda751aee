"""Choosing the Wiener filter's (alpha, smooth_px) per image without the clean image: SURE.

The defaults of :func:`etem.analysis.baselines.wiener` (alpha 2.5, smooth 5 px) were tuned
on etem's campaign and lose 1.5-1.9 dB on the independent set (benchmarks/pretrained.md). A
per-image choice by Stein's unbiased risk estimate needs no clean image: for counts ``y``
with noise variance ``y / dqe`` per pixel (Gaussian approximation of the counting noise), the
risk of each pair on :data:`etem.analysis.baselines.WIENER_SURE_ALPHAS` x
``WIENER_SURE_SMOOTHS_PX`` is :func:`etem.analysis.baselines.wiener_sure_risks` (the DCT-II
form, its derivative term exact, see there). Wired into etem: ``etem apply`` chooses the pair
by SURE on a movie too short to be scored by uMSE (:mod:`etem.movies.prepare`) and
``etem evaluate`` reports ``wiener_sure`` beside the fixed ``wiener``
(``evaluation.wiener_sure``); this script was its prototype and now calls them.

The noise level must be right: with each image's DQE(0) SURE works; taking the counts as
Poisson when the detector's DQE is 0.82 makes it pick the weakest filter (21 dB instead of
28). This script measures the choice on ``--n-train`` training images of a campaign (drawn from
the config seed like the evaluation's training images; noise as in the cross-condition table,
each image's DQE) and on independent ASE + abTEM images
(``benchmarks/independent_set.py``'s recipe, Poisson counts): per-image SURE choice vs both
fixed pairs vs the per-image best (an oracle). Without ``--config``/``--index`` only the
independent images.

Usage:
  python benchmarks/wiener_sure.py --config results/mohan_eval/config.yaml \\
      --index results/pretrained2/simulation/index.csv --n-train 60
  python benchmarks/wiener_sure.py   # the independent images only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from etem.analysis.baselines import (
    WIENER_SURE_ALPHAS,
    WIENER_SURE_SMOOTHS_PX,
    wiener,
    wiener_sure_risks,
)
from etem.analysis.metrics import psnr_peak
from etem.config import load_config
from etem.evaluation.conditions import condition_counts
from etem.evaluation.inputs import load_train_images
from etem.simulation.noise import row_dqe
from etem.simulation.reference import independent_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_set as ind

#: (alpha, smooth_px) pairs searched per image: etem's grid.
GRID = [(a, s) for s in WIENER_SURE_SMOOTHS_PX for a in WIENER_SURE_ALPHAS]
#: The two fixed pairs compared: the earlier defaults and the tuned ones.
FIXED = ((4.0, 3), (2.5, 5))
DOSE = 0.45


def choose(pairs: list[tuple[np.ndarray, np.ndarray, float]]) -> pd.DataFrame:
    """Per image: Mohan's PSNR of each fixed pair, the SURE choice and the oracle choice."""
    rows = []
    for clean, y, dqe in pairs:
        y = np.asarray(y, dtype=np.float64)
        risk = wiener_sure_risks(y, dqe).ravel()  # (smooth, alpha) in GRID's order
        score = {p: psnr_peak(clean * DOSE, wiener(y, 1.0, p[0], p[1], dqe), 1.0)
                 for p in GRID}
        pick = GRID[int(np.argmin(risk))]
        rows.append({**{f"fixed_{a:g}_{s}": score[(a, s)] for a, s in FIXED},
                     "sure": score[pick], "oracle": max(score.values()),
                     "alpha": pick[0], "smooth_px": pick[1]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", help="the campaign's config (with --index)")
    p.add_argument("--index", help="the campaign's simulation index.csv (with --config)")
    p.add_argument("--n-train", type=int, default=60)
    args = p.parse_args(argv)
    if (args.config is None) != (args.index is None):
        p.error("--config and --index go together")
    campaign = []
    if args.config is not None:
        cfg = load_config(args.config)
        # the evaluation's own draw of training images (config seed; only those are read),
        # as in benchmarks/wiener_tuning.py
        cfg.evaluation.occupancy_baseline_train_images = args.n_train
        campaign = [(np.asarray(im.clean, dtype=np.float64), condition_counts(cfg, im, DOSE),
                     row_dqe(im.params)) for im in load_train_images(args.index, cfg)]
    independent = []
    for spec in ind.specs([5], [4], [-4.0, 0.0, 4.0],
                          ["in-range", "pixel-0.05", "uncorrected", "pixel-0.3", "blur"], False):
        clean = independent_image(spec.atoms(), spec.microscope(), spec.pixel_A(0.2))
        independent += [(clean, ind.noise(clean, spec, s), 1.0) for s in (7, 8)]
    for name, pairs in (("campaign training images", campaign),
                        ("independent images", independent)):
        if not pairs:
            continue
        df = choose(pairs)
        print(f"{name} (n = {len(df)}), Mohan's PSNR [dB]:")
        print(df.drop(columns=["alpha", "smooth_px"]).mean().round(2).to_string())
        print(df.groupby(["alpha", "smooth_px"]).size().to_string(), "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
