"""Tuning of the empirical Wiener filter's two parameters on a campaign's training images.

:func:`etem.analysis.baselines.wiener` (Kilaas 1998) has an over-subtraction factor
``alpha`` (gain ``max(0, 1 - alpha x noise power / periodogram)``) and the side
``smooth_px`` of the square of frequencies over which the periodogram is smoothed. Their
defaults (``etem.config.evaluation.WIENER_ALPHA``, ``WIENER_SMOOTH_PX``, the config keys
``evaluation.wiener_alpha`` / ``wiener_smooth_px``) are chosen here, on training-split images
only (``load_train_images``: never the test, held-out-structure or held-out-condition images,
which are the evaluation's held-out sets). Each image is made noisy exactly as in the
cross-condition table (``condition_counts``: ``evaluation.condition_dose_e_per_px`` in vacuum,
the image's detector DQE, noise seeded by the image id) and filtered with every
(alpha, smooth_px) of the grid, the filter seeing the counts and the dose only (Poisson noise
power, ``dqe`` 1, as in the evaluation; ``--image-dqe`` hands it the image's DQE instead).
Scored with Mohan et al.'s PSNR (clean in e/px, both clamped to [0, 1], data range 1; the
metric of issue 14's target) and etem's (intensity, data range of the clean image); beside
them the references ``flat`` (the mean count) and ``gaussian_oracle`` (the width among
``evaluation.oracle_sigmas_px`` best on the clean image).

Output (``--out``): ``wiener_tuning.csv`` (one row per image and method),
``wiener_tuning_summary.csv`` (mean ± s.e.m. per method, and per Wiener pair its mean gain
over the oracle Gaussian), a Markdown table on stdout and the best pair (highest mean Mohan
PSNR) on its last line.

Usage: python benchmarks/wiener_tuning.py --config C --index I --n-images 60 \\
           --alphas 1 2 3 4 5 6 8 --smooth 1 3 5 7 --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etem.analysis import baselines
from etem.analysis.metrics import data_range, psnr, psnr_peak
from etem.config import load_config
from etem.errors import InputError
from etem.evaluation.conditions import condition_counts
from etem.evaluation.inputs import TestImage, load_train_images
from etem.evaluation.tables import mean_sem
from etem.io import atomic_path
from etem.simulation.noise import row_dqe

METRICS = ("psnr_mohan_db", "psnr_db")


def wiener_name(alpha: float, smooth_px: int) -> str:
    """The method name of one grid point, e.g. ``wiener_a4_s3``."""
    return f"wiener_a{alpha:g}_s{smooth_px:d}"


def tuning_table(
    cfg: Any, images: list[TestImage], alphas: list[float], smooths: list[int],
    dose_px: float, image_dqe: bool = False,
) -> pd.DataFrame:
    """One row per (image, method): ``flat``, ``gaussian_oracle`` and one Wiener filter per
    (alpha, smooth_px), with both PSNRs (see module docstring)."""
    sigmas = list(cfg.evaluation.oracle_sigmas_px)
    rows = []
    for im in images:
        if im.params.get("split") != "train":
            raise InputError(f"image {im.image_id}: split {im.params.get('split')!r}, not "
                             f"train: the Wiener filter is tuned on training images only")
        clean = np.asarray(im.clean, dtype=np.float64)
        counts = condition_counts(cfg, im, dose_px)
        dqe = row_dqe(im.params) if image_dqe else 1.0
        ests: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
            "flat": (baselines.flat(counts, dose_px), {})}
        oracle, sigma = baselines.oracle_gaussian(counts, dose_px, clean, sigmas)
        ests["gaussian_oracle"] = (oracle, {"oracle_sigma_px": sigma})
        for s in smooths:
            for a in alphas:
                ests[wiener_name(a, s)] = (baselines.wiener(counts, dose_px, a, s, dqe),
                                           {"alpha": a, "smooth_px": s})
        base = {"image_id": im.image_id, "dqe": row_dqe(im.params),
                "condition": str(im.params.get("condition", "") or "")}
        rng_ = data_range(clean)
        for name, (est, extra) in ests.items():
            rows.append({**base, **extra, "method": name,
                         "psnr_mohan_db": psnr_peak(clean * dose_px, est * dose_px, 1.0),
                         "psnr_db": psnr(clean, est, rng_)})
    return pd.DataFrame(rows)


def summarise(t: pd.DataFrame) -> pd.DataFrame:
    """Mean ± s.e.m. of both PSNRs per method; per Wiener pair also the mean and s.e.m. of
    its per-image gain in Mohan's PSNR over the oracle Gaussian (``gain_vs_oracle_db``)."""
    oracle = t[t["method"] == "gaussian_oracle"].set_index("image_id")["psnr_mohan_db"]
    rows = []
    for method, g in t.groupby("method", sort=False):
        row: dict[str, Any] = {"method": method, "n": len(g),
                               "alpha": g["alpha"].iloc[0] if "alpha" in g else np.nan,
                               "smooth_px": g["smooth_px"].iloc[0] if "smooth_px" in g
                               else np.nan, **mean_sem(g, METRICS)}
        gain = g.set_index("image_id")["psnr_mohan_db"] - oracle.reindex(g["image_id"])
        row.update(mean_sem(pd.DataFrame({"gain_vs_oracle_db": gain.to_numpy()}),
                            ["gain_vs_oracle_db"]))
        rows.append(row)
    return pd.DataFrame(rows)


def best_pair(summary: pd.DataFrame) -> tuple[float, int]:
    """(alpha, smooth_px) of the Wiener filter with the highest mean Mohan PSNR."""
    w = summary[summary["method"].str.startswith("wiener_")]
    if w.empty:
        raise InputError("no Wiener filter in the table")
    r = w.loc[w["psnr_mohan_db_mean"].idxmax()]
    return float(r["alpha"]), int(r["smooth_px"])


def markdown(summary: pd.DataFrame, alphas: list[float], smooths: list[int]) -> str:
    """The grid as a Markdown table (rows smooth_px, columns alpha: mean Mohan PSNR [dB]),
    then the references."""
    by = summary.set_index("method")
    lines = ["| smooth_px \\ alpha | " + " | ".join(f"{a:g}" for a in alphas) + " |",
             "|---" * (len(alphas) + 1) + "|"]
    for s in smooths:
        cells = [f"{by.loc[wiener_name(a, s), 'psnr_mohan_db_mean']:.2f}" for a in alphas]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    for ref in ("flat", "gaussian_oracle"):
        r = by.loc[ref]
        lines.append(f"\n{ref}: {r['psnr_mohan_db_mean']:.2f} ± {r['psnr_mohan_db_sem']:.2f} "
                     f"dB (etem's PSNR {r['psnr_db_mean']:.2f} dB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--index", required=True, help="the campaign's image index (index.csv)")
    p.add_argument("--n-images", type=int, default=60,
                   help="training images drawn from the seed")
    p.add_argument("--alphas", nargs="+", type=float, default=[1, 2, 3, 4, 5, 6, 8])
    p.add_argument("--smooth", nargs="+", type=int, default=[1, 3, 5, 7],
                   help="periodogram smoothing widths [frequency px]")
    p.add_argument("--dose", type=float, default=None,
                   help="dose in vacuum [e/px] (default evaluation.condition_dose_e_per_px)")
    p.add_argument("--image-dqe", action="store_true",
                   help="give the filter each image's DQE (default: Poisson, dqe 1)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    cfg.evaluation.occupancy_baseline_train_images = args.n_images  # the draw's cap
    dose_px = float(args.dose if args.dose is not None
                    else cfg.evaluation.condition_dose_e_per_px)
    images = load_train_images(args.index, cfg)
    if not images:
        raise SystemExit(f"no training images in {args.index}")
    t = tuning_table(cfg, images, args.alphas, args.smooth, dose_px, args.image_dqe)
    s = summarise(t)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "wiener_tuning.csv") as tmp:
        t.to_csv(tmp, index=False)
    with atomic_path(out / "wiener_tuning_summary.csv") as tmp:
        s.to_csv(tmp, index=False)
    a, sm = best_pair(s)
    best = s.set_index("method").loc[wiener_name(a, sm)]
    print(f"Mohan et al.'s PSNR [dB] of the Wiener filter on {len(images)} training images "
          f"at {dose_px:g} e/px ({'image DQE' if args.image_dqe else 'Poisson, dqe 1'}); "
          f"mean over images")
    print(markdown(s, args.alphas, args.smooth))
    print(f"best: alpha {a:g}, smooth_px {sm}: {best['psnr_mohan_db_mean']:.2f} ± "
          f"{best['psnr_mohan_db_sem']:.2f} dB, {best['gain_vs_oracle_db_mean']:+.2f} ± "
          f"{best['gain_vs_oracle_db_sem']:.2f} dB over the oracle Gaussian")
    return 0


if __name__ == "__main__":
    sys.exit(main())
