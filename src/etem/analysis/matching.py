"""Column-level detection metrics: matching found columns to the projected column table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from etem.errors import InputError


def match_columns(
    found: pd.DataFrame, truth: pd.DataFrame, radius_A: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of found to true columns within ``radius_A`` [Å].

    Uses ``x_A, y_A`` of both tables; minimises the total distance (Hungarian algorithm on
    the candidate pairs). Returns index arrays ``(i_found, i_true)`` of the matched pairs.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree

    for name, df in (("found", found), ("truth", truth)):
        for col in ("x_A", "y_A"):
            if col not in df.columns:
                raise InputError(f"{name} column table lacks {col!r}")
    if radius_A <= 0:
        raise InputError(f"matching radius must be > 0 Å, got {radius_A}")
    if len(found) == 0 or len(truth) == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    pf = found[["x_A", "y_A"]].to_numpy(dtype=np.float64)
    pt = truth[["x_A", "y_A"]].to_numpy(dtype=np.float64)
    pairs = cKDTree(pf).query_ball_tree(cKDTree(pt), r=radius_A)
    big = 1e6
    cost = np.full((len(pf), len(pt)), big)
    for i, js in enumerate(pairs):
        for j in js:
            cost[i, j] = float(np.hypot(*(pf[i] - pt[j])))
    rows, cols = linear_sum_assignment(cost)
    ok = cost[rows, cols] < big
    return rows[ok], cols[ok]


def detection_metrics(
    found: pd.DataFrame, truth: pd.DataFrame, radius_A: float,
    intensity_col: str | None = None, true_intensity_col: str | None = None,
) -> dict[str, float]:
    """Precision, recall, F1, position RMSE [pm] and (optionally) relative intensity error.

    Returns ``n_found, n_true, n_matched, precision, recall, f1, rmse_pm`` and, when both
    intensity columns are given, ``intensity_rel_err`` (median |I_found/I_true - 1|).
    """
    i_f, i_t = match_columns(found, truth, radius_A)
    n_f, n_t, n_m = len(found), len(truth), len(i_f)
    prec = n_m / n_f if n_f else float("nan")
    rec = n_m / n_t if n_t else float("nan")
    f1 = 2 * prec * rec / (prec + rec) if n_m else 0.0
    if n_m:
        d = found[["x_A", "y_A"]].to_numpy()[i_f] - truth[["x_A", "y_A"]].to_numpy()[i_t]
        rmse_pm = float(np.sqrt(np.mean(np.sum(d**2, axis=1)))) * 100.0
    else:
        rmse_pm = float("nan")
    out = {"n_found": float(n_f), "n_true": float(n_t), "n_matched": float(n_m),
           "precision": prec, "recall": rec, "f1": f1, "rmse_pm": rmse_pm}
    if intensity_col and true_intensity_col and n_m:
        a = found[intensity_col].to_numpy(dtype=float)[i_f]
        b = truth[true_intensity_col].to_numpy(dtype=float)[i_t]
        ok = np.abs(b) > 1e-12
        out["intensity_rel_err"] = (
            float(np.median(np.abs(a[ok] / b[ok] - 1.0))) if ok.any() else float("nan")
        )
    return out
