"""Likelihood calibration on simulated vacuum, column-finder settings, uMSE truth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from etem.analysis.calibration import (
    held_out_report,
    reliability_table,
    vacuum_detections,
)
from etem.analysis.likelihood import Calibration
from etem.analysis.umse import quartets
from etem.config.evaluation import ColumnsConfig
from etem.errors import InputError
from etem.evaluation.methods import Method
from etem.seeding import rng


def skew(img: np.ndarray) -> float:
    d = img - img.mean()
    return float(np.mean(d**3))


def find_kwargs(c: ColumnsConfig, px: float, polarity: str) -> dict[str, Any]:
    """Keyword arguments of :func:`~etem.analysis.columns.find_columns` from ``columns:``."""
    return {"pixel_size_A": px, "min_sigma_A": c.blob_min_sigma_A,
            "max_sigma_A": c.blob_max_sigma_A, "threshold": c.blob_threshold,
            "refine": c.refine, "polarity": polarity}


def quartet_truth(clean_counts: np.ndarray, counts: np.ndarray, fn: Callable) -> float:
    """True MSE matching :func:`umse` (rotations of the quartet, vs the clean sub-image)."""
    qc, qn = quartets(clean_counts), quartets(counts)
    return float(np.mean([np.mean((qc[(i + 1) % 4] - fn(qn[i])) ** 2) for i in range(4)]))


def calibrate(
    cfg: Any, method: Method, shape: tuple[int, int], px: float, lik: pd.DataFrame
) -> tuple[Calibration, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Fit the likelihood calibration on simulated vacuum at every benchmark dose and at the
    movie's dose per frame.

    Half of ``cfg.benchmark.calibration_vacuum_images`` per dose fit the null, the other
    half is held out for the false-alarm table. Returns (calibration, FAR table, reliability
    table, fitted null sample).
    """
    b = cfg.benchmark
    n_fit = max(b.calibration_vacuum_images // 2, 1)
    fits: list[pd.DataFrame] = []
    held: list[pd.DataFrame] = []
    # the benchmark doses, plus the movie's dose per frame (what the apply stage sees)
    doses = sorted({*cfg.noise.benchmark_doses_e_per_A2,
                    round(cfg.movie.dose_e_per_px_per_frame / (px * px), 6)})
    for dose in doses:
        dose_px = dose * px * px
        find_kw = find_kwargs(cfg.columns, px, "bright")
        for part, n, store in (("fit", n_fit, fits), ("held_out", n_fit, held)):
            g = rng(cfg.seed, "benchmark", "vacuum", part, f"{dose:g}")
            d = vacuum_detections(
                method, dose_px, shape, n, g, find_kw, cfg.columns.disk_radius_A / px
            )
            d["dose_e_per_A2"] = dose
            store.append(d)
    null_fit = pd.concat(fits, ignore_index=True)
    null_held = pd.concat(held, ignore_index=True)
    true_df = lik[lik["is_true"]] if len(lik) else None
    if len(null_fit) == 0:
        raise InputError("calibration: no spurious detections in simulated vacuum (threshold?)")
    cal = Calibration.fit(null_fit, true_df, meta={
        "doses_e_per_A2": doses, "pixel_size_A": px,
        "disk_radius_A": cfg.columns.disk_radius_A, "n_null": len(null_fit),
        "n_true": 0 if true_df is None else len(true_df),
        "find_columns": find_kwargs(cfg.columns, px, "bright"),
    })
    far = held_out_report(cal, null_held, list(b.confidence_levels))
    rel = pd.DataFrame()
    if true_df is not None and len(true_df):
        rel = reliability_table(cal, null_held, true_df)
    keep = ["dose_e_per_A2", "lambda_vac", "n_pixels", "llr", "u"]
    return cal, far, rel, null_fit[keep]

