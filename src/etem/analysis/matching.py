"""Column-level detection metrics: matching found columns to the projected column table."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from etem.errors import InputError

#: Cost of a non-candidate pair (never chosen over a real one).
BIG = 1e6


def match_columns(
    found: pd.DataFrame, truth: pd.DataFrame, radius_A: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of found to true columns within ``radius_A`` [Å].

    Uses ``x_A, y_A`` of both tables; maximises the number of pairs, then minimises their
    total distance (Hungarian algorithm on each connected group of candidate pairs: columns
    farther apart than the radius never compete). Returns index arrays ``(i_found, i_true)``
    of the matched pairs, sorted by ``i_found``.
    """
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
    nf = len(pf)
    pairs = cKDTree(pf).sparse_distance_matrix(cKDTree(pt), radius_A, output_type="coo_matrix")
    if pairs.nnz == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    i, j = pairs.row, pairs.col
    dist = np.hypot(pf[i, 0] - pt[j, 0], pf[i, 1] - pt[j, 1])
    # groups of competing columns: connected components of the bipartite candidate graph
    graph = coo_matrix((np.ones(len(i)), (i, nf + j)), shape=(nf + len(pt),) * 2)
    _, label = connected_components(graph, directed=False)
    group = label[i]
    order = np.argsort(group, kind="stable")
    rows_out, cols_out = [], []
    for sel in np.split(order, np.flatnonzero(np.diff(group[order])) + 1):
        if len(sel) == 1:
            rows_out.append(i[sel])
            cols_out.append(j[sel])
            continue
        fi, ri = np.unique(i[sel], return_inverse=True)
        tj, rj = np.unique(j[sel], return_inverse=True)
        cost = np.full((len(fi), len(tj)), BIG)
        cost[ri, rj] = dist[sel]
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] < BIG
        rows_out.append(fi[r[ok]])
        cols_out.append(tj[c[ok]])
    rows = np.concatenate(rows_out).astype(int)
    cols = np.concatenate(cols_out).astype(int)
    o = np.argsort(rows, kind="stable")
    return rows[o], cols[o]


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
