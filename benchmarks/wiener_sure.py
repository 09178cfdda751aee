"""Choosing the Wiener filter's (alpha, smooth_px) per image without the clean image: SURE.

The defaults of :func:`etem.analysis.baselines.wiener` (alpha 2.5, smooth 5 px) were tuned
on etem's campaign and lose 1.5-1.9 dB on the independent set (benchmarks/pretrained.md;
before the zero frequency left the smoothed power, commit 48d1e49: 1.2 dB behind alpha 4 /
smoothing 3 after it, held-out seeds 8, 9). A
per-image choice by Stein's unbiased risk estimate needs no clean image: for counts ``y``
with noise variance ``y / dqe`` per pixel (Gaussian approximation of the counting noise), the
risk of each pair on :data:`etem.analysis.baselines.WIENER_SURE_ALPHAS` x
``WIENER_SURE_SMOOTHS_PX`` is :func:`etem.analysis.baselines.wiener_sure_risks` (the DCT-II
form, its derivative term exact, see there). Wired into etem: ``etem apply`` chooses the pair
by SURE on a movie too short to be scored by uMSE (:mod:`etem.movies.prepare`) and
``etem evaluate`` reports ``wiener_sure`` beside the fixed ``wiener``
(``evaluation.wiener_sure``); this script was its prototype and now calls them.

The noise level must be right: with each image's DQE(0) SURE works; taking the counts as
Poisson when the detector's DQE is 0.82 made it pick the weakest filter (21 dB instead of
28, before the noise-pass bound, ``WIENER_SURE_MAX_NOISE_PASS``, that now leaves alpha 2 /
smoothing 3 out of the choice; not rerun). This script measures the choice on ``--n-train``
training images of a campaign (drawn from the config seed like the evaluation's training
images; noise as in the cross-condition table, each image's DQE) and on independent ASE +
abTEM images
(``benchmarks/independent_set.py``'s recipe, Poisson counts): per-image SURE choice vs both
fixed pairs vs the per-image best (an oracle). Without ``--config``/``--index`` only the
independent images. ``--grids``: the grids of :data:`GRIDS` compared on the whole widened
independent set (378 images; every pair's SURE and PSNR), chosen on noise seed 7 and checked
on seeds 8, 9: etem's 5 x 2 grid came out of it (re-checked after the zero frequency left the
smoothed power, commit b444bda: alphas up to 64 and smoothing 7 change nothing, the grid's
strong end already being the flat estimate where flat is best; benchmarks/pretrained.md);
each grid also with the noise-pass bound (``*_bound``: its pairs that keep more than
``WIENER_SURE_MAX_NOISE_PASS`` of pure-noise coefficients left out, as etem chooses), with
the held-out images below the fixed 2.5 / 5.

Usage:
  python benchmarks/wiener_sure.py --config results/mohan_eval/config.yaml \\
      --index results/pretrained2/simulation/index.csv --n-train 60
  python benchmarks/wiener_sure.py   # the independent images only
  python benchmarks/wiener_sure.py --grids grid.csv   # the grids compared, 378 images
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from etem.analysis.baselines import (
    WIENER_SURE_ALPHAS,
    WIENER_SURE_MAX_NOISE_PASS,
    WIENER_SURE_SMOOTHS_PX,
    noise_pass_rate,
    wiener,
    wiener_sure_choice,
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
    """Per image: Mohan's PSNR of each fixed pair, the SURE choice and the oracle choice (the
    best of the grid and the fixed pairs)."""
    rows = []
    for clean, y, dqe in pairs:
        y = np.asarray(y, dtype=np.float64)
        score = {p: psnr_peak(clean * DOSE, wiener(y, 1.0, p[0], p[1], dqe), 1.0)
                 for p in dict.fromkeys([*GRID, *FIXED])}
        pick = wiener_sure_choice(y, dqe)  # etem's choice: the noise-pass bound applied
        rows.append({**{f"fixed_{a:g}_{s}": score[(a, s)] for a, s in FIXED},
                     "sure": score[pick], "oracle": max(score.values()),
                     "alpha": pick[0], "smooth_px": pick[1]})
    return pd.DataFrame(rows)


#: Grids compared by ``--grids`` (name -> alphas, smooths [frequency px]).
GRIDS = {
    "prototype 1.5-8 x 3,5,7": ((1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0), (3, 5, 7)),
    "1.5-8 x 3,5": ((1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0), (3, 5)),
    "2-8 x 3,5": ((2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0), (3, 5)),
    "2.5-8 x 3,5": ((2.5, 3.0, 4.0, 5.0, 6.0, 8.0), (3, 5)),
    "2,3,4,6,8 x 3,5 (etem)": ((2.0, 3.0, 4.0, 6.0, 8.0), (3, 5)),
    "2,4,8 x 3,5 (apply's uMSE grid)": ((2.0, 4.0, 8.0), (3, 5)),
    # after the zero frequency left the smoothed power (commit b444bda): stronger filters
    "2-12 x 3,5": ((2.0, 3.0, 4.0, 6.0, 8.0, 12.0), (3, 5)),
    "2-16 x 3,5": ((2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0), (3, 5)),
    "2-8,16 x 3,5": ((2.0, 3.0, 4.0, 6.0, 8.0, 16.0), (3, 5)),
    "2-8,16,32 x 3,5": ((2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0), (3, 5)),
    "2-32 x 3,5": ((2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0), (3, 5)),
    "2-8,16,32,64 x 3,5": ((2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0), (3, 5)),
    "2-8,16,32 x 3,5,7": ((2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0), (3, 5, 7)),
    "2-32 x 3,5,7": ((2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0), (3, 5, 7)),
}


def grid_rows(key: str, seed: int, condition: str, clean: np.ndarray,
              y: np.ndarray) -> list[dict[str, object]]:
    """SURE [counts² per pixel] and Mohan's PSNR of every pair of every grid of :data:`GRIDS`
    on one image (Poisson counts ``y``)."""
    alphas = sorted({a for g in GRIDS.values() for a in g[0]})
    smooths = sorted({s for g in GRIDS.values() for s in g[1]})
    risk = wiener_sure_risks(y, 1.0, alphas, smooths)
    return [{"key": key, "seed": seed, "condition": condition, "alpha": a, "smooth": s,
             "sure": float(risk[i, j]),
             "psnr": psnr_peak(clean * DOSE, wiener(y, 1.0, a, s), 1.0)}
            for i, s in enumerate(smooths) for j, a in enumerate(alphas)]


def compare_grids(rows: pd.DataFrame, dev_seeds: list[int]) -> pd.DataFrame:
    """Per grid: the mean PSNR of the least-SURE pair on the ``dev_seeds`` images and on the
    others (held out), the held-out images below the fixed default 2.5 / 5 (``below``) and
    the worst margin [dB] (``worst``), and per condition on the held-out ones; then
    (``*_bound``) the same for the grid less its pairs that keep more than
    ``WIENER_SURE_MAX_NOISE_PASS`` of pure-noise coefficients (etem's choice,
    :func:`etem.analysis.baselines.noise_pass_rate`)."""
    fixed = rows[(rows.alpha == 2.5) & (rows.smooth == 5)].set_index(["key", "seed"]).psnr
    passes = {(a, s): noise_pass_rate(a, s) <= WIENER_SURE_MAX_NOISE_PASS
              for a, s in rows[["alpha", "smooth"]].drop_duplicates().itertuples(index=False)}
    bounded = rows[[passes[(a, s)] for a, s in zip(rows.alpha, rows.smooth, strict=True)]]

    def score(table: pd.DataFrame, alphas: tuple[float, ...], smooths: tuple[int, ...],
              tag: str) -> tuple[dict[str, object], pd.DataFrame]:
        sub = table[table.alpha.isin(alphas) & table.smooth.isin(smooths)]
        pick = sub.loc[sub.groupby(["key", "seed"]).sure.idxmin()]
        dev = pick.seed.isin(dev_seeds)
        held = pick[~dev].set_index(["key", "seed"]).psnr
        margin = held - fixed.reindex(held.index)
        return ({f"dev{tag}": pick.psnr[dev].mean(), f"held_out{tag}": held.mean(),
                 f"below{tag}": int((margin < 0).sum()), f"worst{tag}": margin.min()},
                pick[~dev])

    out = []
    for name, (alphas, smooths) in GRIDS.items():
        row: dict[str, object] = {"grid": name}
        figures, held = score(rows, alphas, smooths, "")
        row.update(figures)
        row.update(held.groupby("condition").psnr.mean().to_dict())
        row.update(score(bounded, alphas, smooths, "_bound")[0])
        out.append(row)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", help="the campaign's config (with --index)")
    p.add_argument("--index", help="the campaign's simulation index.csv (with --config)")
    p.add_argument("--n-train", type=int, default=60)
    p.add_argument("--grids", type=Path, default=None,
                   help="instead: compare the grids of GRIDS on the whole independent set "
                        "(independent_set.py's defaults, seeds 7 8 9; chosen on seed 7, held "
                        "out 8 9); per-pair table written to this CSV")
    args = p.parse_args(argv)
    if args.grids is not None:
        rows = []
        for spec in ind.specs([3, 5, 8], [2, 4, 6], [-4.0, 0.0, 4.0], list(ind.ALL_CONDITIONS),
                              True):
            clean = independent_image(spec.atoms(), spec.microscope(), spec.pixel_A(0.2))
            for seed in (7, 8, 9):
                y = ind.noise(clean, spec, seed).astype(np.float64)
                rows += grid_rows(spec.key(), seed, spec.condition, clean, y)
        table = pd.DataFrame(rows)
        table.to_csv(args.grids, index=False)
        print(compare_grids(table, [7]).round(3).to_string(index=False))
        return 0
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
