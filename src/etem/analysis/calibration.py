"""Simulation-based calibration of the likelihood statistic (see :mod:`.likelihood`).

Spurious detections come from pure-vacuum images: Poisson counts at the vacuum level,
denoised by the method under test, columns found by :func:`~.columns.find_columns` (every
blob is spurious). True detections come from simulated images with known columns: found
columns matched to the projected column table. Each detection's raw tail probability ``u``
is computed with random tie-breaking (seeded) so that the null sample is continuous.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from etem.analysis.columns import find_columns
from etem.analysis.likelihood import (
    Calibration,
    false_alarm_rates,
    likelihood_table,
    raw_p_value,
)

#: maps counts [e/px] and the dose per pixel [e/px] to intensity (vacuum = 1)
DenoiseFn = Callable[[np.ndarray, float], np.ndarray]

__all__ = [
    "Calibration",
    "fit_from_detections",
    "held_out_report",
    "reliability_table",
    "vacuum_detections",
    "with_random_ties",
]


def with_random_ties(tab: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Add ``u``: raw tail probability with uniform random ties (exactly uniform null)."""
    out = tab.copy()
    out["u"] = raw_p_value(
        out["llr"].to_numpy(), out["n_pixels"].to_numpy(), out["lambda_atom"].to_numpy(),
        out["lambda_vac"].to_numpy(), tie=rng.uniform(size=len(out)),
    )
    return out


def vacuum_detections(
    denoise: DenoiseFn,
    dose_e_per_px: float,
    shape: tuple[int, int],
    n_images: int,
    rng: np.random.Generator,
    find_kwargs: dict[str, Any],
    disk_radius_px: float,
) -> pd.DataFrame:
    """Spurious detections in ``n_images`` pure-vacuum images at ``dose_e_per_px`` [e/px].

    Returns the likelihood table of all blobs found (plus ``u`` and ``image``).
    """
    tabs = []
    for i in range(n_images):
        counts = rng.poisson(dose_e_per_px, size=shape).astype(np.float64)
        den = np.asarray(denoise(counts, dose_e_per_px), dtype=np.float64) * dose_e_per_px
        cols = find_columns(den, **find_kwargs)
        if len(cols) == 0:
            continue
        tab = likelihood_table(
            counts, den, cols, disk_radius_px, vacuum_mask=np.ones(shape, dtype=bool)
        )
        tab["image"] = i
        tab["dose_e_per_px"] = float(dose_e_per_px)
        tabs.append(with_random_ties(tab, rng))
    if not tabs:
        return pd.DataFrame(columns=["llr", "n_pixels", "lambda_atom", "lambda_vac", "u", "image"])
    return pd.concat(tabs, ignore_index=True)


def fit_from_detections(
    null_df: pd.DataFrame, true_df: pd.DataFrame | None = None, meta: dict[str, Any] | None = None
) -> Calibration:
    """:meth:`Calibration.fit` on detection tables that carry ``u``."""
    return Calibration.fit(null_df, true_df, meta=meta)


def held_out_report(
    calibration: Calibration, held_out_null: pd.DataFrame, levels: list[float]
) -> pd.DataFrame:
    """False-alarm rates of calibrated and raw p-values on held-out spurious detections.

    One row per (p-value kind, dose, confidence level): ``kind`` (calibrated / raw),
    ``dose_e_per_px`` ('all' or the vacuum dose [e/px]), ``confidence_level``, ``alpha``,
    ``observed``, ``se``, ``n``, ``within_2pp`` (|observed - alpha| <= 0.02).
    """
    rows = []
    if len(held_out_null) == 0:
        return pd.DataFrame()
    p_cal = calibration.calibrate_u(
        held_out_null["u"].to_numpy(), held_out_null["lambda_vac"].to_numpy()
    )
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(held_out_null), dtype=bool))]
    if "dose_e_per_px" in held_out_null.columns:
        dose = held_out_null["dose_e_per_px"].to_numpy()
        for d in sorted(np.unique(dose)):
            groups.append((f"{d:.4g}", dose == d))
    for kind, p in (("calibrated", p_cal), ("raw", held_out_null["u"].to_numpy())):
        for name, sel in groups:
            far = false_alarm_rates(p[sel], levels)
            far.insert(0, "dose_e_per_px", name)
            far.insert(0, "kind", kind)
            rows.append(far)
    out = pd.concat(rows, ignore_index=True)
    out["within_2pp"] = (out["observed"] - out["alpha"]).abs() <= 0.02
    return out


def reliability_table(
    calibration: Calibration, null_df: pd.DataFrame, true_df: pd.DataFrame, n_bins: int = 10
) -> pd.DataFrame:
    """Reliability diagram data: predicted P(true column) vs observed fraction of true ones.

    Bins detections (held-out spurious + true) by predicted probability; one row per
    non-empty bin with ``p_pred_mean``, ``frac_true``, ``n``.
    """
    u = np.concatenate([null_df["u"].to_numpy(), true_df["u"].to_numpy()])
    t = np.concatenate([np.zeros(len(null_df)), np.ones(len(true_df))])
    p = calibration.probability_true(u)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            rows.append({"bin_lo": edges[b], "bin_hi": edges[b + 1],
                         "p_pred_mean": float(p[sel].mean()), "frac_true": float(t[sel].mean()),
                         "n": int(sel.sum())})
    return pd.DataFrame(rows)
