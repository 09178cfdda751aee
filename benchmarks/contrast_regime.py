"""The movie contrast-regime estimate of the domain check against the simulation's labels.

For a random sample of images of a simulation campaign (its ``index.csv`` with the
``contrast_regime`` column of a randomised campaign), a short movie is made of each clean
image at its recorded dose and detector DQE (``--frames`` frames, counts of
:func:`etem.simulation.noise.detector_counts`), and :func:`etem.analysis.domain.
contrast_estimate` classifies it. Two references: the campaign's label (the microscope's
weak-phase contrast index, :func:`etem.simulation.microscope.contrast_index`) and the image
itself: the sign of the clean intensity at the projected atom columns (shard
``columns/x_A, y_A``; 1-px Gaussian-smoothed) against the image mean, in units of its
standard deviation ("column contrast"; thick crystals can reverse the label).

Usage::

    python benchmarks/contrast_regime.py INDEX.csv [--n 360] [--frames 12] [--seed 0]
        [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from scipy import ndimage

from etem.analysis.domain import BRIGHT_ABOVE, DARK_BELOW, contrast_estimate
from etem.seeding import rng
from etem.simulation.noise import detector_counts, dose_per_pixel, row_dqe


def column_contrast(f: h5py.File, k: int, clean: np.ndarray, px: float) -> float:
    """Clean intensity at the atom columns minus the image mean, over its std."""
    sel = np.asarray(f["columns/image_index"]) == k
    x = np.asarray(f["columns/x_A"])[sel] / px
    y = np.asarray(f["columns/y_A"])[sel] / px
    h, w = clean.shape
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    if not ok.any():
        return float("nan")
    sm = ndimage.gaussian_filter(clean, 1.0)
    at = sm[np.round(y[ok]).astype(int).clip(0, h - 1), np.round(x[ok]).astype(int).clip(0, w - 1)]
    return float((at.mean() - clean.mean()) / clean.std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("index")
    ap.add_argument("--n", type=int, default=360)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    t0 = time.time()
    idx = pd.read_csv(a.index)
    root = Path(a.index).parent
    pick = np.sort(rng(a.seed, "contrast-benchmark").choice(len(idx), min(a.n, len(idx)),
                                                             replace=False))
    rows, files = [], {}
    for i in pick:
        r = idx.iloc[int(i)]
        p = root / str(r["shard"])
        f = files.setdefault(p, h5py.File(p, "r"))
        k = int(r["index_in_shard"])
        clean = np.asarray(f["clean"][k], dtype=np.float64)
        px = float(r["pixel_size_A"])
        lam = np.clip(clean, 0, None) * dose_per_pixel(float(r["dose_e_per_A2"]), px)
        g = rng(a.seed, "contrast-benchmark", str(r["image_id"]))
        frames = np.stack([detector_counts(lam, g, row_dqe(r)) for _ in range(a.frames)])
        est = contrast_estimate(frames, px)
        cc = column_contrast(f, k, clean, px)
        rows.append({"image_id": r["image_id"], "label": r["contrast_regime"],
                     "contrast_index": r["contrast_index"], "column_contrast": cc,
                     "truth_sign": "bright" if cc > 0 else "dark",
                     "estimate": est.regime, "skewness": est.skewness, "se": est.skewness_se,
                     "dose_e_per_px": lam.mean()})
    d = pd.DataFrame(rows)
    wall = time.time() - t0
    acc = float((d.estimate == d.label).mean())
    known = d[d.estimate != "unknown"]
    sign = known[known.estimate != "intermediate"]
    sign_acc = float((sign.estimate == sign.truth_sign).mean()) if len(sign) else float("nan")
    rho = d[["skewness", "contrast_index", "column_contrast"]].corr(method="spearman")
    lines = [
        "# Contrast regime of a movie: estimate vs the simulation's labels",
        "",
        f"Command: `python benchmarks/contrast_regime.py {a.index} --n {a.n} --frames "
        f"{a.frames} --seed {a.seed}`. Machine: {platform.machine()} {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}, {dt.date.today()}; wall {wall:.0f} s.",
        "",
        f"{len(d)} images, {a.frames} frames each at the image's dose and DQE (median "
        f"{d.dose_e_per_px.median():.2g} e/px/frame); thresholds: bright above "
        f"{BRIGHT_ABOVE}, dark below {DARK_BELOW}.",
        "",
        f"Agreement with the label (3 classes): {acc:.3f}. Among images called bright or "
        f"dark, agreement with the sign of the column contrast: {sign_acc:.3f} "
        f"({len(sign)} images). Spearman correlation of the skewness with the contrast "
        f"index {rho.loc['skewness', 'contrast_index']:.2f}, with the column contrast "
        f"{rho.loc['skewness', 'column_contrast']:.2f} (label vs column contrast "
        f"{rho.loc['contrast_index', 'column_contrast']:.2f}).",
        "",
        "## Estimate (columns) by label (rows)",
        "",
        pd.crosstab(d.label, d.estimate).to_markdown(),
        "",
        "## Estimate (columns) by the sign of the column contrast (rows)",
        "",
        pd.crosstab(d.truth_sign, d.estimate).to_markdown(),
        "",
        "## Skewness quantiles (25/50/75 %) by label",
        "",
        d.groupby("label")["skewness"].quantile([0.25, 0.5, 0.75]).unstack().round(2)
        .to_markdown(),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
