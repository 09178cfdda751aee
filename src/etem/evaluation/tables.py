"""Summary tables of the benchmark: per subset (breakdown axes) means, columns, confidence,
segmentation, and the headline summary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: image parameters used to break the tables down (``tilt`` is derived from tilt_x/y)
BREAKDOWN_AXES = ("dose_e_per_A2", "thickness_nm", "defocus_nm", "tilt", "family", "split",
                  "condition")
#: a numeric axis with more distinct values than this (a randomised campaign's drawn defocus,
#: thicknesses clipped per structure) is broken down by quantile bins instead of by value
MAX_LEVELS = 10
#: number of quantile bins of such an axis
N_BINS = 4


def axis_levels(values: pd.Series) -> pd.Series:
    """The breakdown level of each value of an axis: the value itself, or for a numeric axis
    with more than :data:`MAX_LEVELS` distinct values its quantile bin, labelled ``lo..hi``
    (the bin's smallest and largest value, 3 significant digits)."""
    if values.dtype.kind not in "fi" or values.nunique() <= MAX_LEVELS:
        return values
    bins = pd.qcut(values.rank(method="first"), N_BINS, labels=False)
    lo = values.groupby(bins).transform("min")
    hi = values.groupby(bins).transform("max")
    return pd.Series([f"{a:.3g}..{b:.3g}" for a, b in zip(lo, hi, strict=True)],
                     index=values.index, dtype=object)


def summarise_segmentation(seg: pd.DataFrame) -> pd.DataFrame:
    """Pooled IoU per class and occupancy accuracy (exact, ±1 atom) on column pixels.

    One row per (quantity, subset); ``value`` = sum(num) / sum(den) over the images.
    """
    rows = []
    for subset, sel in _subsets(seg):
        for q, g in sel.groupby("quantity"):
            den = g["den"].sum()
            rows.append({"quantity": q, "subset": subset, "n": len(g),
                         "value": float(g["num"].sum() / den) if den else float("nan")})
    return pd.DataFrame(rows)


def _subsets(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Subsets: all, each value of each breakdown axis, and dose x each other axis."""
    out: list[tuple[str, pd.DataFrame]] = [("all", df)]
    axes = [a for a in BREAKDOWN_AXES if a in df.columns]
    df = df.assign(**{a: axis_levels(df[a]) for a in axes if a != "dose_e_per_A2"})
    for a in axes:
        for v, g in df.groupby(a, sort=True):
            if isinstance(v, str) and not v:
                continue  # e.g. condition '' (an image in no held-out band)
            out.append((f"{a}={v:g}" if isinstance(v, float) else f"{a}={v!s}", g))
    if "dose_e_per_A2" in df.columns:
        for a in axes:
            if a == "dose_e_per_A2":
                continue
            for (d, w), g in df.groupby(["dose_e_per_A2", a], sort=True):
                if isinstance(w, str) and not w:
                    continue
                vs = f"{w:g}" if isinstance(w, float) else str(w)
                out.append((f"dose_e_per_A2={d:g}|{a}={vs}", g))
    return out


def mean_sem(g: pd.DataFrame, metrics: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``<metric>_mean`` and ``<metric>_sem`` (standard error; 0 for one row) of each metric."""
    row: dict[str, float] = {}
    for m in metrics:
        v = g[m].to_numpy(dtype=np.float64)
        row[f"{m}_mean"] = float(v.mean())
        row[f"{m}_sem"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return row


def summarise(per_image: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (method, subset): n, mean and standard error of each metric."""
    rows = []
    for method, g_m in per_image.groupby("method", sort=False):
        for subset, g in _subsets(g_m):
            rows.append({"method": method, "subset": subset, "n": len(g), **mean_sem(g, metrics)})
    return pd.DataFrame(rows)


def summarise_columns(cpi: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, subset): pooled precision, recall, F1 and position RMSE [pm]."""
    rows = []
    for method, g_m in cpi.groupby("method", sort=False):
        for subset, g in _subsets(g_m):
            nf, nt, nm = g["n_found"].sum(), g["n_true"].sum(), g["n_matched"].sum()
            p = nm / nf if nf else float("nan")
            r = nm / nt if nt else float("nan")
            rows.append({"method": method, "subset": subset, "n": len(g), "precision": p,
                         "recall": r, "f1": 2 * p * r / (p + r) if nm else 0.0,
                         "rmse_pm": float(np.sqrt(g["sum_sq_err_A2"].sum() / nm)) * 100
                         if nm else float("nan")})
    return pd.DataFrame(rows)


def confidence_filtered(
    lik: pd.DataFrame, cpi: pd.DataFrame, method: str, levels: list[float]
) -> pd.DataFrame:
    """Precision and recall of the primary method's columns kept at each confidence level.

    One row per (confidence level, subset) with subsets ``all`` and each dose; level 0 keeps
    every detection (the plain blob detector).
    """
    rows = []
    c = cpi[cpi["method"] == method]
    for lev in [0.0, *levels]:
        for subset, sel_l, sel_c in [("all", lik.index == lik.index, c.index == c.index)] + [
            (f"dose_e_per_A2={d:g}", lik["dose_e_per_A2"] == d, c["dose_e_per_A2"] == d)
            for d in sorted(lik["dose_e_per_A2"].unique())
        ]:
            kept = lik[sel_l & (lik["confidence"] >= lev)]
            n_true = float(c.loc[sel_c, "n_true"].sum())
            tp = float(kept["is_true"].sum())
            rows.append({"method": method, "confidence_level": lev, "subset": subset,
                         "n_kept": len(kept), "precision": tp / len(kept) if len(kept) else
                         float("nan"), "recall": tp / n_true if n_true else float("nan")})
    return pd.DataFrame(rows)


def headline_summary(res: Any, primary: str, methods: dict[str, Any]) -> dict[str, Any]:
    """summary.json's numbers from the tables of a ``BenchmarkResult``."""
    s = res.tables["denoising_summary"]
    out: dict[str, Any] = {"methods": list(methods), "primary_method": primary}
    allrows = s[s["subset"] == "all"]
    out["psnr_db"] = {r.method: r.psnr_db_mean for r in allrows.itertuples()}
    out["ssim"] = {r.method: r.ssim_mean for r in allrows.itertuples()}
    far = res.tables.get("calibration_far")
    if far is not None and len(far):
        a = far[far["dose_e_per_px"] == "all"]
        out["false_alarm"] = {
            f"{r.kind}@{r.confidence_level:g}": {"alpha": r.alpha, "observed": r.observed,
                                                 "se": r.se}
            for r in a.itertuples()
        }
    if "columns_summary" in res.tables:
        c = res.tables["columns_summary"]
        c = c[c["subset"] == "all"]
        out["columns"] = {r.method: {"precision": r.precision, "recall": r.recall,
                                     "rmse_pm": r.rmse_pm} for r in c.itertuples()}
    if "mohan_summary" in res.tables:
        m = res.tables["mohan_summary"]
        m = m[m["subset"] == "all"]
        out["mohan_protocol"] = {
            "peak_counts": float(res.tables["mohan_per_image"]["peak_counts"].iloc[0]),
            "mean_counts_per_px": float(m["mean_counts_per_px_mean"].iloc[0]),
            "psnr_db": {r.method: r.psnr_db_mean for r in m.itertuples()},
            "ssim": {r.method: r.ssim_mean for r in m.itertuples()},
        }
    if "conditions_summary" in res.tables:
        c = res.tables["conditions_summary"]
        out["conditions"] = {
            g: {r.method: {"psnr_db": r.psnr_db_mean, "ssim": r.ssim_mean,
                           "psnr_mohan_db": r.psnr_mohan_db_mean, "ssim_mohan": r.ssim_mohan_mean,
                           "n": int(r.n)} for r in grp.itertuples()}
            for g, grp in c.groupby("group", sort=True)
        }
    if "segmentation_conditions" in res.tables:
        c = res.tables["segmentation_conditions"]
        out["segmentation_conditions"] = {
            g: {r["method"]: {k: v for k, v in r.items() if k not in ("method", "group")
                              and v == v} for r in grp.to_dict("records")}
            for g, grp in c.groupby("group", sort=True)
        }
    if "umse" in res.tables:
        u = res.tables["umse"]
        z = np.abs(u["z"].to_numpy(dtype=np.float64))
        z = z[np.isfinite(z)]
        out["umse_mean_abs_z"] = float(z.mean()) if len(z) else float("nan")
    return out

