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

Beside them ``flat``, ``gaussian_oracle`` and ``wiener_sure`` as in the table; with
``--denoiser MODEL`` the supervised network (``network``, as ``etem evaluate`` runs it) and,
with ``--splice R0 R1``, ``network_spliced``: the network's estimate with the support
oracle's coefficients in the radial band [R0, R1) (what knowing the support there alone
would add to the network; bands as ``--bands``); and
``welch_support``, an empirical path to the support (no clean image; tried for issue 14, not a
method of etem): the signal's support detected on the periodogram averaged over the image's
``WELCH_TILE_PX``-square tiles (a random-phase texture, an amorphous support, has the same
spectral density in every tile, so its averaged power rises above the noise where no single
coefficient does; a crystal's coherent reflection gains nothing, the single periodogram being
its matched detector: benchmarks/pretrained.md; a tile frequency is kept where its mean power
exceeds the chi²(K) / K quantile of ``WELCH_P_FALSE`` false detections per tile spectrum, K
tiles), there the Wiener gain ``1 -
WELCH_ALPHA v / P`` on the full-resolution power P smoothed over ``WELCH_SMOOTH_PX``
frequencies, elsewhere the SURE-chosen Wiener filter's
(the larger of the two where they overlap). And ``wiener_support_kept``: the share of the
clean signal power on ``support_oracle``'s coefficients that the SURE-chosen Wiener filter
passes (gain > 0) — what the empirical filter loses to not knowing the support.

Mohan's PSNR [dB] (clean in e/px, clamped to [0, 1], data range 1), means per group of
:func:`etem.evaluation.conditions.condition_groups`, or, with ``--by COLUMN --bins E0 E1 ...``,
per split and bin of an image parameter (``blur_fwhm_A``, ...). Per-image rows with
``--csv``. With ``--bands R0 R1 ...`` (radial frequency, fraction of Nyquist: the DCT index
(i/H, j/W)), a second table: per group and band, the clean signal's power and each method's
squared error [counts² per pixel, means over the images] and the support oracle's
coefficients (where in frequency a method loses to the oracles).

Usage: python benchmarks/oracle_filters.py --config EVAL.yaml --index .../simulation/index.csv
       [--by blur_fwhm_A --bins 0 0.9 1.3 2] [--denoiser MODEL [--splice 0.1 0.2]]
       [--bands 0 0.02 0.05 0.1 0.2 0.4 1.5] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.fft import dctn, idctn
from scipy.ndimage import uniform_filter
from scipy.stats import chi2

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
from etem.models.inference import denoise_images
from etem.models.io import load
from etem.simulation.noise import row_dqe

METHODS = ("flat", "gaussian_oracle", "wiener_sure", "welch_support", "support_oracle",
           "linear_oracle")
#: ``welch_support``'s tiles [px], false detections per tile spectrum, over-subtraction on the
#: detected support and smoothing of the full-resolution power there [frequency px]: the best of
#: 24 settings (tiles 32 / 64, 0.1 / 1 false detections, alpha 0.5 / 1 / 2, smoothing 1 / 3)
#: on the test and held-out-structure images of the issue-14 recipe campaign
#: (benchmarks/pretrained.md)
WELCH_TILE_PX = 32
WELCH_P_FALSE = 1.0
WELCH_ALPHA = 2.0
WELCH_SMOOTH_PX = 3


def welch_found(counts: np.ndarray, dqe: float) -> np.ndarray:
    """The tile frequencies (T, T) where the DCT power of ``counts`` (H, W) [e/px] averaged
    over its K ``WELCH_TILE_PX``-square tiles exceeds the noise's chi²(K) / K quantile of
    ``WELCH_P_FALSE`` false detections per tile spectrum (zero frequency excluded)."""
    y = np.asarray(counts, dtype=np.float64)
    h, w = y.shape
    t = min(WELCH_TILE_PX, h, w)
    tiles = [y[i:i + t, j:j + t] for i in range(0, h - t + 1, t)
             for j in range(0, w - t + 1, t)]
    power = np.mean([dctn(x, norm="ortho") ** 2 for x in tiles], axis=0)
    noise = float(np.mean([x.sum() for x in tiles])) / dqe / (t * t)
    found = power > chi2.isf(WELCH_P_FALSE / (t * t), len(tiles)) / len(tiles) * noise
    found[0, 0] = False  # the tiles' mean counts, not a structure's power
    return found


def welch_support(counts: np.ndarray, dqe: float,
                  wiener: np.ndarray | None = None) -> np.ndarray:
    """The ``welch_support`` estimate [e/px] of ``counts`` (H, W) [e/px] (module docstring);
    ``wiener``: the SURE-chosen Wiener estimate of the counts [e/px] if the caller has it."""
    y = np.asarray(counts, dtype=np.float64)
    h, w = y.shape
    found = welch_found(y, dqe)
    t = found.shape[0]
    # full-resolution DCT index i <-> tile frequency i t / h
    rows = np.minimum(np.rint(np.arange(h) * t / h).astype(int), t - 1)
    cols = np.minimum(np.rint(np.arange(w) * t / w).astype(int), t - 1)
    support = found[np.ix_(rows, cols)]
    cy = dctn(y, norm="ortho")
    v = float(y.sum()) / dqe / y.size
    p = cy * cy
    p[0, 0] = 0.0
    p = uniform_filter(p, WELCH_SMOOTH_PX, mode="mirror")
    inside = np.clip(1.0 - WELCH_ALPHA * v / np.maximum(p, 1e-30), 0.0, 1.0) * cy
    if wiener is None:
        wiener = baselines.wiener_sure(y, 1.0, dqe)[0]
    cw = dctn(wiener, norm="ortho")
    out = np.where(support & (np.abs(inside) > np.abs(cw)), inside, cw)
    return idctn(out, norm="ortho")


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
           "wiener_sure": wiener, "welch_support": welch_support(y, dqe, wiener),
           "support_oracle": idctn(cy * support, norm="ortho"),
           "linear_oracle": idctn(cy * linear, norm="ortho")}
    return est, kept


def _radius(shape: tuple[int, ...]) -> np.ndarray:
    """The radial frequency (i/H, j/W) of each orthonormal DCT coefficient [x Nyquist]."""
    h, w = shape
    return np.hypot(*np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij"))


def spliced(estimate: np.ndarray, oracle: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """``estimate`` with the DCT coefficients of ``oracle`` in the radial band [R0, R1)."""
    r = _radius(estimate.shape)
    on = (r >= band[0]) & (r < band[1])
    return idctn(np.where(on, dctn(oracle, norm="ortho"), dctn(estimate, norm="ortho")),
                 norm="ortho")


def band_errors(clean_counts: np.ndarray, estimates: dict[str, np.ndarray], dqe: float,
                counts: np.ndarray, edges: list[float]) -> list[dict[str, object]]:
    """Per radial band [R0, R1) of the DCT frequency (i/H, j/W) [fraction of Nyquist]: the
    clean power, each estimate's squared error [counts² per pixel, orthonormal DCT: the
    bands sum to the MSE] and the support oracle's coefficients there."""
    lam = np.asarray(clean_counts, dtype=np.float64)
    band = np.digitize(_radius(lam.shape), edges) - 1
    cs = dctn(lam, norm="ortho")
    v = float(np.sum(counts)) / dqe / lam.size
    coef = {m: dctn(e, norm="ortho") for m, e in estimates.items()}
    rows = []
    for b in range(len(edges) - 1):
        on = band == b
        row = {"band": f"{edges[b]:g}-{edges[b + 1]:g}",
               "signal": float(np.sum(cs[on] ** 2)) / lam.size,
               "support_coefficients": float(np.count_nonzero(cs[on] ** 2 > v))}
        row.update({m: float(np.sum((c[on] - cs[on]) ** 2)) / lam.size
                    for m, c in coef.items()})
        rows.append(row)
    return rows


def table(config: Path, index: Path, denoiser: Path | None = None,
          bands: list[float] | None = None, splice: tuple[float, float] | None = None,
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per image: split, condition, image parameters, Mohan's PSNR of each method
    (``network`` too with ``denoiser``, ``network_spliced`` with ``splice`` too) and
    ``wiener_support_kept``; and, with ``bands``, one
    row per image and band (:func:`band_errors`; else empty)."""
    cfg = load_config(config)
    dose = float(cfg.evaluation.condition_dose_e_per_px)
    model = load(denoiser, kind="denoiser") if denoiser is not None else None
    rows, band_rows = [], []
    for im in select_images(cfg, load_test_images(index, cfg)):
        lam = np.asarray(im.clean, dtype=np.float64) * dose
        counts = condition_counts(cfg, im, dose)
        dqe = row_dqe(im.params)
        est, kept = oracle_estimates(lam, counts, dqe, list(cfg.evaluation.oracle_sigmas_px))
        if model is not None:  # as etem evaluate's supervised column
            est["network"] = dose * np.asarray(denoise_images(
                model.module, counts.astype(np.float32), dose,
                match=cfg.apply.inference.match_mean, dqe=dqe), dtype=np.float64)
            if splice is not None:
                est["network_spliced"] = spliced(est["network"], est["support_oracle"], splice)
        row = {"image_id": im.image_id, "split": im.params.get("split"),
               "condition": str(im.params.get("condition", "") or ""),
               "blur_fwhm_A": im.params.get("blur_fwhm_A"),
               "detector_pixel_A": im.params.get("detector_pixel_A"),
               "defocus_nm": im.params.get("defocus_nm"),
               "contrast_regime": im.params.get("contrast_regime")}
        row.update({m: psnr_peak(lam, e, 1.0) for m, e in est.items()})
        row["wiener_support_kept"] = kept
        rows.append(row)
        if bands:
            band_rows += [{**{k: row[k] for k in ("image_id", "split", "condition",
                                                   "blur_fwhm_A", "detector_pixel_A")}, **b}
                          for b in band_errors(lam, est, dqe, counts, bands)]
    return pd.DataFrame(rows), pd.DataFrame(band_rows)


def _methods(df: pd.DataFrame) -> list[str]:
    return [m for m in (*METHODS, "network", "network_spliced") if m in df.columns]


def summary(per_image: pd.DataFrame, by: str | None = None,
            edges: list[float] | None = None) -> pd.DataFrame:
    """Per group: n, each method's mean PSNR and its margin over the oracle Gaussian, and the
    mean ``wiener_support_kept``."""
    groups = (condition_groups(per_image) if by is None
              else binned_groups(per_image, by, list(edges or [])))
    methods = _methods(per_image)
    rows = []
    for name, g in groups:
        row: dict[str, object] = {"group": name, "n": len(g)}
        row.update({m: float(g[m].mean()) for m in methods})
        row.update({f"{m}-gaussian_oracle": float((g[m] - g["gaussian_oracle"]).mean())
                    for m in methods if m != "gaussian_oracle"})
        row["wiener_support_kept"] = float(g["wiener_support_kept"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def band_summary(per_band: pd.DataFrame, by: str | None = None,
                 edges: list[float] | None = None) -> pd.DataFrame:
    """Per group (as :func:`summary`) and band: images, mean signal power, support
    coefficients and each method's mean squared error [counts² per pixel]."""
    groups = (condition_groups(per_band) if by is None
              else binned_groups(per_band, by, list(edges or [])))
    cols = ["signal", "support_coefficients", *_methods(per_band)]
    rows = []
    for name, g in groups:
        for band, gb in g.groupby("band", sort=False):
            rows.append({"group": name, "band": band, "n": len(gb),
                         **{c: float(gb[c].mean()) for c in cols}})
    return pd.DataFrame(rows)


def markdown(s: pd.DataFrame) -> str:
    methods = _methods(s)
    over = [m for m in methods if m != "gaussian_oracle"]
    head = ["group", "n", *methods, *(f"{m} − oracle G" for m in over), "Wiener keeps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in s.iterrows():
        cells = [str(r["group"]), str(int(r["n"]))] + [f"{r[m]:.2f}" for m in methods]
        cells += [f"{r[f'{m}-gaussian_oracle']:+.2f}" for m in over]
        cells.append(f"{r['wiener_support_kept']:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def band_markdown(s: pd.DataFrame) -> str:
    cols = ["signal", "support_coefficients", *_methods(s)]
    head = ["group", "band (x Nyquist)", "n", "signal", "support coef.", *_methods(s)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in s.iterrows():
        cells = [str(r["group"]), str(r["band"]), str(int(r["n"]))]
        cells += [f"{r[c]:.1f}" if c == "support_coefficients" else f"{r[c]:.2e}" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="the evaluation's config YAML")
    ap.add_argument("--index", type=Path, required=True, help="the campaign's index.csv")
    ap.add_argument("--by", metavar="COLUMN", help="group each split by this image parameter")
    ap.add_argument("--bins", type=float, nargs="+", metavar="EDGE", help="bin edges of --by")
    ap.add_argument("--denoiser", type=Path, help="a supervised model file: the network too")
    ap.add_argument("--splice", type=float, nargs=2, metavar=("R0", "R1"),
                    help="with --denoiser: the network with the support oracle's band [R0, R1)")
    ap.add_argument("--bands", type=float, nargs="+", metavar="R",
                    help="radial frequency band edges [fraction of Nyquist]: errors per band")
    ap.add_argument("--csv", type=Path, help="write the per-image rows here")
    a = ap.parse_args()
    if (a.by is None) != (a.bins is None):
        raise SystemExit("--by and --bins go together")
    if a.bands is not None and (len(a.bands) < 2 or np.any(np.diff(a.bands) <= 0)):
        raise SystemExit("--bands: two or more increasing edges")
    if a.splice is not None and (a.denoiser is None or a.splice[1] <= a.splice[0]):
        raise SystemExit("--splice R0 R1: R0 < R1, with --denoiser")
    for p in (a.config, a.index, *([a.denoiser] if a.denoiser else [])):
        if not p.is_file():
            raise SystemExit(f"{p}: no such file")
    try:
        per_image, per_band = table(a.config, a.index, a.denoiser, a.bands,
                                    tuple(a.splice) if a.splice else None)
        s = summary(per_image, a.by, a.bins)
        bands = band_summary(per_band, a.by, a.bins) if a.bands else None
    except InputError as e:
        raise SystemExit(str(e)) from None
    if a.csv:
        per_image.to_csv(a.csv, index=False)
    print(markdown(s))
    if bands is not None:
        print()
        print(band_markdown(bands))


if __name__ == "__main__":
    main()
