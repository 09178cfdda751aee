"""Denoiser choice with and without column agreement, against the true columns.

``etem apply`` chooses a movie's denoiser by its uMSE on the movie (:mod:`etem.movies.
selection`) among the candidates ``auto`` may use, and checks that the columns a candidate
lets the analysis find agree with those of the raw frames' mean (``column_f1``;
``apply.inference.column_f1_margin``). This script measures what the check changes on movies
with known columns that the check was *not* developed on (it was developed on
``benchmarks/selection_events.py``'s particle movies, seeds 4 and 7):

* ``SrTiO3 ADF (real)``: the real atomic-resolution STEM image of ``../shared/data/real``
  (openNCEM's ``ncem_16_STOimage_1.ser``, 0.100 Å/px), 2x2-binned to 0.2 Å/px, its centre
  256² as the clean signal (mean 1), Poisson frames at the dose; true columns = the columns
  found on that clean image (skipped when the file is absent);
* a generated particle of another geometry (7 px spacing, 1.2 px columns, contrast 1, 128²,
  seed 21) and a lattice at 0.15 Å/px and 0.3 e/px (seed 9), with their true columns.

Per movie (24 static frames, 8 targets), the candidates are the raw frames, the Gaussian and
Wiener filters and the packaged supervised network (``etem.models.pretrained``, mean-matched as
apply runs it); ``auto`` may choose the network, raw and Gaussian (apply's default). For the
choice made by uMSE alone and with the column agreement: the candidate, its true MSE and the
recall / precision / F1 of its columns against the true ones (match radius 0.5 Å).

Usage::

    python benchmarks/column_agreement.py [--real PATH] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from etem.analysis.matching import detection_metrics
from etem.config import EtemConfig
from etem.frames.readers import open_movie
from etem.models.io import load
from etem.models.pretrained import pretrained_path
from etem.movies.prepare import network_outputs
from etem.movies.selection import (
    ColumnCheck,
    best_candidate,
    classical_filter,
    score_candidates,
    target_frames,
)
from etem.testing import lattice_movie, particle_movie

REAL = Path(__file__).resolve().parents[2] / "shared/data/real/ncem_16_STOimage_1.ser"
AUTO = ("supervised", "raw", "gaussian")
N_FRAMES = 24


def columns_table(pos_px: np.ndarray, px: float) -> pd.DataFrame:
    p = np.asarray(pos_px, dtype=np.float64) * px
    return pd.DataFrame({"x_A": p[:, 0], "y_A": p[:, 1]})


def real_case(path: Path, check: ColumnCheck) -> tuple[np.ndarray, pd.DataFrame, float]:
    """The real image as a clean signal (mean 1) at 0.2 Å/px and its columns."""
    with open_movie(path) as m:
        img = np.asarray(m.frames[0], dtype=np.float64)
        px = float(m.pixel_size_A or 0.1)
    h, w = (s // 2 * 2 for s in img.shape)
    img = img[:h, :w].reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
    c = np.array(img.shape) // 2
    img = img[c[0] - 128:c[0] + 128, c[1] - 128:c[1] + 128]
    clean = (img / img.mean()).astype(np.float32)
    truth = ColumnCheck(check.settings, 2 * px).find(clean, "bright")
    return clean, truth[["x_A", "y_A"]], 2 * px


def cases(real: Path, check: ColumnCheck
          ) -> dict[str, Callable[[], tuple[np.ndarray, list[pd.DataFrame], float, float]]]:
    """name -> () -> (clean frames (T, H, W), true columns per frame, pixel size, dose)."""
    out: dict[str, Callable[[], tuple[np.ndarray, list[pd.DataFrame], float, float]]] = {}
    if real.exists():
        for dose in (0.5, 2.0):
            def make(dose: float = dose) -> tuple[np.ndarray, list[pd.DataFrame], float, float]:
                clean, truth, px = real_case(real, check)
                return np.repeat(clean[None], N_FRAMES, 0), [truth] * N_FRAMES, px, dose
            out[f"SrTiO3 ADF (real), {dose:g} e/px"] = make
    else:  # say so: the other movies' figures are not comparable with a run that had it
        print(f"note: {real} not found: the SrTiO3 (real) movies are left out (give --real "
              "PATH)", file=sys.stderr)
    for dose in (0.5, 1.0):
        def part(dose: float = dose) -> tuple[np.ndarray, list[pd.DataFrame], float, float]:
            m = particle_movie(n_frames=N_FRAMES, size_px=128, event=None, spacing_px=7.0,
                               sigma_px=1.2, contrast=1.0, dose_e_per_px_per_frame=dose,
                               seed=21)
            return m.clean, [columns_table(c, m.pixel_size_A) for c in m.columns], \
                m.pixel_size_A, dose
        out[f"particle 7 px / 1.2 px, {dose:g} e/px"] = part

    def lat() -> tuple[np.ndarray, list[pd.DataFrame], float, float]:
        m = lattice_movie(n_frames=N_FRAMES, size_px=128, pixel_size_A=0.15, event_frame=None,
                          dose_e_per_px_per_frame=0.3, seed=9)
        return m.clean, [columns_table(c, m.pixel_size_A) for c in m.columns], \
            m.pixel_size_A, 0.3
    out["lattice 0.15 Å, 0.3 e/px"] = lat
    return out


def cost(cfg: EtemConfig, size: int, repeats: int = 3) -> str:
    """Wall time of scoring the classical candidates on a ``size``² lattice movie at 0.5 e/px,
    with and without the column agreement (median of ``repeats``)."""
    m = lattice_movie(n_frames=N_FRAMES, size_px=size, event_frame=None,
                      dose_e_per_px_per_frame=0.5, seed=5)
    assert m.counts is not None
    frames = m.counts.astype(np.float32) / np.float32(0.5)
    targets = target_frames(len(frames), 0)
    check = ColumnCheck(cfg.columns, m.pixel_size_A)
    secs: dict[str, list[float]] = {"uMSE alone": [], "with columns": []}
    for _ in range(repeats):
        for label, columns in (("uMSE alone", None), ("with columns", check)):
            t0 = time.perf_counter()
            score_candidates({}, frames, targets, 0, dose_e_per_px=0.5, columns=columns)
            secs[label].append(time.perf_counter() - t0)
    a, b = (float(np.median(v)) for v in secs.values())
    return (f"Scoring cost, {size}² x {N_FRAMES} frames, classical candidates (15 points), "
            f"8 targets, median of {repeats}: uMSE alone {a:.1f} s, with columns {b:.1f} s "
            f"(+{b - a:.1f} s per movie).\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", type=Path, default=REAL)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--timing-px", type=int, default=1024,
                    help="frame size of the cost measurement (0: none)")
    args = ap.parse_args()
    cfg = EtemConfig()
    model = load(pretrained_path())
    rng = np.random.default_rng(cfg.seed)
    rows = []
    for name, make in cases(args.real, ColumnCheck(cfg.columns, 0.2)).items():
        clean, truth, px, dose = make()
        counts = rng.poisson(clean * dose).astype(np.float32)
        frames = counts / np.float32(dose)
        targets = target_frames(len(frames), 0)
        net = network_outputs(model, counts, dose, [], len(frames), targets,
                              cfg.apply.inference)
        check = ColumnCheck(cfg.columns, px)
        for label, columns in (("uMSE alone", None), ("with columns", check)):
            s = score_candidates({"supervised": net.__getitem__}, frames, targets, 0,
                                 dose_e_per_px=dose, columns=columns, allowed=AUTO)
            chosen = best_candidate(s, AUTO)
            row = s.set_index("candidate").loc[chosen]
            if chosen == "supervised":
                den = {t: net[t] for t in targets}
                param = ""
            else:
                f = classical_filter(chosen, dose, row.sigma_px, row.wiener_alpha, 1.0,
                                     None if np.isnan(row.wiener_smooth_px)
                                     else int(row.wiener_smooth_px))
                den = {t: f(frames[t]) for t in targets}
                param = f" sigma {row.sigma_px:g} px" if chosen == "gaussian" else ""
            mse = float(np.mean([np.mean((den[t] - clean[t]) ** 2) for t in targets]))
            det = [detection_metrics(check.find(den[t], "bright"), truth[t], 0.5)
                   for t in targets]
            rec, prec, f1 = (float(np.mean([d[k] for d in det]))
                             for k in ("recall", "precision", "f1"))
            ref_f1 = row.column_f1
            rows.append(f"| {name} | {label} | {chosen}{param} | {mse:.4f} | {rec:.3f} | "
                        f"{prec:.3f} | {f1:.3f} | "
                        f"{'-' if np.isnan(ref_f1) else f'{ref_f1:.2f}'} |")
            print(rows[-1], flush=True)
    timing = cost(cfg, args.timing_px) if args.timing_px else ""
    text = "\n".join([
        f"{N_FRAMES} static frames per movie, 8 targets; auto among {', '.join(AUTO)}; "
        f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"{dt.date.today().isoformat()}.", "",
        "| movie | choice | candidate | true MSE | true column recall | precision | F1 | "
        "column F1 vs raw mean |",
        "|---|---|---|--:|--:|--:|--:|--:|", *rows, "", timing])
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
