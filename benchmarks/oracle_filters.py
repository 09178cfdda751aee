"""Oracle filters on the cross-condition images: the headroom of a denoiser, and where it lies.

A diagnostic, not a method: two filters that know what a noisy image does not tell, beside
the table's baselines, on the images and noisy frames of ``etem evaluate``'s cross-condition
table (same config and index: :func:`etem.evaluation.conditions.select_images`,
:func:`etem.evaluation.conditions.condition_counts`), all in the orthonormal 2-D DCT of the
counts ``c_k`` [e/px], noise variance per coefficient ``v = sum(counts) / (dqe N)`` (N pixels;
the noise level of :func:`etem.analysis.baselines.wiener_sure`), clean coefficients ``s_k``
(expected counts), the zero frequency always kept:

- ``linear_oracle``: gain ``s_k² / (s_k² + v)`` (the ideal linear filter: the clean spectrum
  known);
- ``support_oracle``: gain 1 where ``s_k² > v``, else 0 (only *which* coefficients carry more
  signal than noise is known; their values are the noisy ones).

Beside them ``flat``, ``gaussian_oracle`` and ``wiener_sure`` as in the table, and
``wiener_support_kept``: the share of the clean signal power on ``support_oracle``'s
coefficients that the SURE-chosen Wiener filter passes (gain > 0) — what the empirical filter
loses to not knowing the support.

Mohan's PSNR [dB] (clean in e/px, clamped to [0, 1], data range 1), means per group of
:func:`etem.evaluation.conditions.condition_groups`, or, with ``--by COLUMN --bins E0 E1 ...``,
per split and bin of an image parameter (``blur_fwhm_A``, ...). Per-image rows with
``--csv``.

Usage: python benchmarks/oracle_filters.py --config EVAL.yaml --index .../simulation/index.csv
       [--by blur_fwhm_A --bins 0 0.9 1.3 2] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.fft import dctn, idctn

from etem.analysis import baselines
from etem.analysis.metrics import psnr_peak
from etem.config import load_config
from etem.errors import InputError
from etem.evaluation.conditions import (
    binned_groups,
    condition_counts,
    condition_groups,
    select_images,
)
from etem.evaluation.inputs import load_test_images
from etem.simulation.noise import row_dqe

METHODS = ("flat", "gaussian_oracle", "wiener_sure", "support_oracle", "linear_oracle")


def oracle_estimates(clean_counts: np.ndarray, counts: np.ndarray, dqe: float,
                     sigmas_px: list[float]) -> tuple[dict[str, np.ndarray], float]:
    """The estimates [e/px] of :data:`METHODS` from ``counts`` (H, W) [e/px] of expected counts
    ``clean_counts`` (detector DQE(0) ``dqe``), and ``wiener_support_kept`` (see the module
    docstring; nan on an image with no coefficient above the noise)."""
    y = np.asarray(counts, dtype=np.float64)
    lam = np.asarray(clean_counts, dtype=np.float64)
    v = float(y.sum()) / dqe / y.size
    cy, cs = dctn(y, norm="ortho"), dctn(lam, norm="ortho")
    s2 = cs * cs
    linear = s2 / (s2 + v)
    support = (s2 > v).astype(np.float64)
    linear[0, 0] = support[0, 0] = 1.0
    # the oracle Gaussian and the Wiener filter take intensity (vacuum = 1): any dose works,
    # 1 keeps counts
    gauss, _ = baselines.oracle_gaussian(y, 1.0, lam, sigmas_px)
    wiener, _, _ = baselines.wiener_sure(y, 1.0, dqe)
    cw = dctn(wiener, norm="ortho")  # the Wiener filter is diagonal in this basis: gain cw / cy
    nonzero = cy != 0
    passed = np.zeros(cy.shape, dtype=bool)
    passed[nonzero] = np.abs(cw[nonzero] / cy[nonzero]) > 1e-9
    on = support.astype(bool)
    on[0, 0] = False
    total = float(s2[on].sum())
    kept = float(s2[on & passed].sum()) / total if total > 0 else float("nan")
    est = {"flat": np.full_like(y, y.mean()), "gaussian_oracle": gauss,
           "wiener_sure": wiener, "support_oracle": idctn(cy * support, norm="ortho"),
           "linear_oracle": idctn(cy * linear, norm="ortho")}
    return est, kept


def table(config: Path, index: Path) -> pd.DataFrame:
    """One row per image: split, condition, image parameters, Mohan's PSNR of each method
    and ``wiener_support_kept``."""
    cfg = load_config(config)
    dose = float(cfg.evaluation.condition_dose_e_per_px)
    rows = []
    for im in select_images(cfg, load_test_images(index, cfg)):
        lam = np.asarray(im.clean, dtype=np.float64) * dose
        est, kept = oracle_estimates(lam, condition_counts(cfg, im, dose), row_dqe(im.params),
                                     list(cfg.evaluation.oracle_sigmas_px))
        row = {"image_id": im.image_id, "split": im.params.get("split"),
               "condition": str(im.params.get("condition", "") or ""),
               "blur_fwhm_A": im.params.get("blur_fwhm_A"),
               "detector_pixel_A": im.params.get("detector_pixel_A"),
               "defocus_nm": im.params.get("defocus_nm"),
               "contrast_regime": im.params.get("contrast_regime")}
        row.update({m: psnr_peak(lam, est[m], 1.0) for m in METHODS})
        row["wiener_support_kept"] = kept
        rows.append(row)
    return pd.DataFrame(rows)


def summary(per_image: pd.DataFrame, by: str | None = None,
            edges: list[float] | None = None) -> pd.DataFrame:
    """Per group: n, each method's mean PSNR and its margin over the oracle Gaussian, and the
    mean ``wiener_support_kept``."""
    groups = (condition_groups(per_image) if by is None
              else binned_groups(per_image, by, list(edges or [])))
    rows = []
    for name, g in groups:
        row: dict[str, object] = {"group": name, "n": len(g)}
        row.update({m: float(g[m].mean()) for m in METHODS})
        row.update({f"{m}-gaussian_oracle": float((g[m] - g["gaussian_oracle"]).mean())
                    for m in METHODS if m != "gaussian_oracle"})
        row["wiener_support_kept"] = float(g["wiener_support_kept"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(s: pd.DataFrame) -> str:
    over = [m for m in METHODS if m != "gaussian_oracle"]
    head = ["group", "n", *METHODS, *(f"{m} − oracle G" for m in over), "Wiener keeps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in s.iterrows():
        cells = [str(r["group"]), str(int(r["n"]))] + [f"{r[m]:.2f}" for m in METHODS]
        cells += [f"{r[f'{m}-gaussian_oracle']:+.2f}" for m in over]
        cells.append(f"{r['wiener_support_kept']:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="the evaluation's config YAML")
    ap.add_argument("--index", type=Path, required=True, help="the campaign's index.csv")
    ap.add_argument("--by", metavar="COLUMN", help="group each split by this image parameter")
    ap.add_argument("--bins", type=float, nargs="+", metavar="EDGE", help="bin edges of --by")
    ap.add_argument("--csv", type=Path, help="write the per-image rows here")
    a = ap.parse_args()
    if (a.by is None) != (a.bins is None):
        raise SystemExit("--by and --bins go together")
    for p in (a.config, a.index):
        if not p.is_file():
            raise SystemExit(f"{p}: no such file")
    per_image = table(a.config, a.index)
    try:
        s = summary(per_image, a.by, a.bins)
    except InputError as e:
        raise SystemExit(str(e)) from None
    if a.csv:
        per_image.to_csv(a.csv, index=False)
    print(markdown(s))


if __name__ == "__main__":
    main()
