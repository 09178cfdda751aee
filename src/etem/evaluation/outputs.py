"""Writing the benchmark's tables, calibration, figures and summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etem.analysis.columns import oriented
from etem.evaluation import figures as F
from etem.io import write_json, write_table
from etem.provenance import provenance


def oriented_example(img: np.ndarray) -> np.ndarray:
    """Image with bright columns, for display."""
    return oriented(img, "auto")


# -- outputs ----------------------------------------------------------------------------
#: tables written as Parquet (large, per image/column); the rest are CSV
PARQUET_TABLES = ("per_image", "columns_per_image", "likelihood_columns", "calibration_null")


def write_outputs(cfg: Any, res: Any, out_dir: Path) -> list[Path]:
    """Write tables, calibration, figures and summary.json under ``out_dir``; return the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prov = provenance(cfg, "evaluation")
    files: list[Path] = []
    for name, df in res.tables.items():
        if df is None or len(df) == 0:
            continue
        p = out_dir / (f"{name}.parquet" if name in PARQUET_TABLES else f"{name}.csv")
        write_table(p, df, metadata=prov)
        files.append(p)
    if res.calibration is not None:
        res.calibration.meta["provenance"] = prov
        p = out_dir / "likelihood_calibration.json"
        res.calibration.save(p)
        files.append(p)
    fig_dir = out_dir / "figures"
    t = res.tables
    s = t["denoising_summary"]
    files.append(F.save(F.metric_vs_dose(s, "psnr_db", "PSNR [dB]"), fig_dir / "psnr_vs_dose.png"))
    files.append(F.save(F.metric_vs_dose(s, "ssim", "SSIM"), fig_dir / "ssim_vs_dose.png"))
    primary = res.summary["primary_method"]
    for axis in ("thickness_nm", "defocus_nm", "tilt", "family", "split"):
        if axis in t["per_image"].columns and t["per_image"][axis].nunique() > 0:
            fig = F.heatmap(t["per_image"], primary, axis)
            files.append(F.save(fig, fig_dir / f"heatmap_psnr_{axis}.png"))
    fig = F.conditions_bars(t.get("conditions_summary"))
    if fig is not None:
        files.append(F.save(fig, fig_dir / "conditions_psnr.png"))
    fig = F.segmentation_conditions_bars(t.get("segmentation_conditions"))
    if fig is not None:
        files.append(F.save(fig, fig_dir / "segmentation_conditions.png"))
    fig = F.examples(res.examples)
    if fig is not None:
        files.append(F.save(fig, fig_dir / "examples.png"))
    if res.calibration is not None:
        fig = F.calibration(t.get("calibration_far", pd.DataFrame()),
                            t.get("calibration_null", pd.DataFrame()),
                            t.get("likelihood_columns"), t.get("reliability"), res.calibration)
        files.append(F.save(fig, fig_dir / "calibration.png"))
    summary = dict(res.summary)
    summary["files"] = sorted(str(f.relative_to(out_dir)) for f in files)
    summary["provenance"] = prov
    write_json(out_dir / "summary.json", summary)
    files.append(out_dir / "summary.json")
    return files
