"""Choosing the Wiener filter's (alpha, smooth_px) per image without the clean image: SURE.

The defaults of :func:`etem.analysis.baselines.wiener` (alpha 2.5, smooth 5 px) were tuned
on etem's campaign and lose 1.5-1.9 dB on the independent set (benchmarks/pretrained.md). A
per-image choice by Stein's unbiased risk estimate needs no clean image. For counts ``y``
with noise variance ``y / dqe`` per pixel (Gaussian approximation of the Poisson noise) and
the filter's output ``f(y)`` in counts::

    SURE = ||f(y) - y||^2 - sum(y)/dqe + 2 sum(y)/dqe * mean_k D_k

with ``D_k`` the derivative of the output's frequency k with respect to its input: ``G_k``
where the gain is 0 or 1, and ``G_k + 2 (1 - G_k) / smooth_px^2`` where it is in between
(the power-subtraction gain 1 - alpha N / P depends on the coefficient itself, through
1 / smooth_px^2 of the smoothed power). Edges of the mirror extension are ignored.

The noise level must be right: with each image's DQE(0) SURE works; taking the counts as
Poisson when the detector's DQE is 0.82 makes it pick the weakest filter (21 dB instead of
28). This script measures the choice on ``--n-train`` training images of a campaign (drawn from
the config seed like the evaluation's training images; noise as in the cross-condition table,
each image's DQE) and on independent ASE + abTEM images
(``benchmarks/independent_set.py``'s recipe, Poisson counts): per-image SURE choice vs both
fixed pairs vs the per-image best (an oracle). Prototype; not wired into etem.

Usage:
  python benchmarks/wiener_sure.py --config results/mohan_eval/config.yaml \\
      --index results/pretrained2/simulation/index.csv --n-train 60
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import uniform_filter

from etem.analysis.metrics import psnr_peak
from etem.config import load_config
from etem.evaluation.conditions import condition_counts
from etem.evaluation.inputs import load_train_images
from etem.simulation.noise import row_dqe
from etem.simulation.reference import independent_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_set as ind

#: (alpha, smooth_px) pairs searched per image.
GRID = [(a, s) for a in (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0) for s in (3, 5, 7)]
#: The two fixed pairs compared: the earlier defaults and the tuned ones.
FIXED = ((4.0, 3), (2.5, 5))
DOSE = 0.45


def wiener_sure(y: np.ndarray, alpha: float, smooth_px: int, dqe: float = 1.0,
                ) -> tuple[np.ndarray, float]:
    """The Wiener estimate [counts] of ``y`` (as baselines.wiener) and its SURE [counts²]."""
    h, w = y.shape
    ext = np.block([[y, y[:, ::-1]], [y[::-1, :], y[::-1, ::-1]]])
    f = np.fft.fft2(ext)
    power = uniform_filter(np.abs(f) ** 2, smooth_px, mode="wrap")
    noise = float(ext.sum()) / dqe
    gain = np.clip(1 - alpha * noise / np.maximum(power, 1e-30), 0, 1)
    gain[0, 0] = 1.0
    est = np.real(np.fft.ifft2(f * gain))[:h, :w]
    inner = (gain > 0) & (gain < 1)
    d = np.where(inner, gain + 2 * (1 - gain) / smooth_px**2, gain)
    var = float(y.sum()) / dqe
    return est, float(np.sum((est - y) ** 2) - var + 2 * var * d.mean())


def choose(pairs: list[tuple[np.ndarray, np.ndarray, float]]) -> pd.DataFrame:
    """Per image: Mohan's PSNR of each fixed pair, the SURE choice and the oracle choice."""
    rows = []
    for clean, y, dqe in pairs:
        res = {p: wiener_sure(np.asarray(y, dtype=np.float64), p[0], p[1], dqe) for p in GRID}
        score = {p: psnr_peak(clean * DOSE, r[0], 1.0) for p, r in res.items()}
        pick = min(res, key=lambda p: res[p][1])
        rows.append({**{f"fixed_{a:g}_{s}": score[(a, s)] for a, s in FIXED},
                     "sure": score[pick], "oracle": max(score.values()),
                     "alpha": pick[0], "smooth_px": pick[1]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--n-train", type=int, default=60)
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    # the evaluation's own draw of training images (config seed; only those are read), as in
    # benchmarks/wiener_tuning.py
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
        df = choose(pairs)
        print(f"{name} (n = {len(df)}), Mohan's PSNR [dB]:")
        print(df.drop(columns=["alpha", "smooth_px"]).mean().round(2).to_string())
        print(df.groupby(["alpha", "smooth_px"]).size().to_string(), "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
