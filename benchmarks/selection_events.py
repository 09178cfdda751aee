"""What a classical denoiser keeps of a structural change: Gaussian vs Wiener filter in apply.

``apply.inference.denoise_with: auto`` chooses the denoiser by its uMSE on the movie's first
frames (:mod:`etem.movies.selection`), over the whole frame. The empirical Wiener filter
(:func:`etem.analysis.baselines.wiener`) keeps the spatial frequencies above the noise: on a
crystal, its Bragg reflections. A local change (vacancies, lost surface columns) is not
periodic: its power is spread over all frequencies, under the noise, and the filter fills
the lattice back in. This script measures that on generated movies with one known event
(:func:`etem.testing.lattice_movie`: a vacancy patch; :func:`etem.testing.particle_movie`:
surface loss, rotation), running ``etem apply`` once per classical denoiser (no network) and
once with ``auto`` (the packaged network a candidate; the choice made with the column
agreement of :mod:`etem.movies.selection`):

* the parameter and uPSNR gain the movie's own uMSE gave (the score table), and the F1 of
  the columns found on the chosen denoiser's frames against the raw frames' mean;
* true MSE against the clean frames after the event, over the frame and over the event
  region (pixels whose clean intensity changes by > 0.05 at the event, dilated 3 px);
* ``change kept``: the projection of the denoised change (mean of 4 frames after minus
  4 before the event, 2 frames of margin) on the clean change, over the event region
  (1 = the whole change, unbiased by the noise);
* the columns apply found against the true ones (recall / precision, :mod:`etem.movies.truth`:
  a column filled into a vacated site is a found column matched to no true one);
* the events ``etem apply`` found (onset error [frames] or missed) and its false alarms.

Usage::

    python benchmarks/selection_events.py [--size 96] [--frames 48] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

from etem.config import load_config
from etem.frames.readers import open_movie
from etem.movies.apply import ApplyModels, apply_movie
from etem.testing import LatticeMovie, lattice_movie, particle_movie, write_h5

#: ``auto``: apply's own choice (the packaged network is a candidate: no --denoiser given).
MODES = ("gaussian", "wiener", "auto")


def movies(size: int, frames: int) -> dict[str, Callable[[], LatticeMovie]]:
    """The event movies: name -> maker (event at ``frames // 2``)."""
    e = frames // 2
    return {
        f"lattice, vacancy patch, {d:g} e/px": (
            lambda d=d: lattice_movie(n_frames=frames, size_px=size, event_frame=e,
                                      dose_e_per_px_per_frame=d, seed=4))
        for d in (0.5, 2.0)
    } | {
        f"particle, {kind} {mag:g}, 0.5 e/px": (
            lambda kind=kind, mag=mag: particle_movie(
                n_frames=frames, size_px=size, event=kind, magnitude=mag, event_frame=e,
                dose_e_per_px_per_frame=0.5, seed=7))
        for kind, mag in (("surface_loss", 12), ("rotation", 8))
    }


def measure(lm: LatticeMovie, den: np.ndarray) -> dict[str, float]:
    """True MSE after the event (frame, event region) and the change kept in the region."""
    e = lm.event_frame
    assert e is not None
    region = ndimage.binary_dilation(np.abs(lm.clean[e - 1] - lm.clean[e]) > 0.05,
                                     iterations=3)
    after = range(e + 2, min(len(den), e + 10))
    err = np.mean([(den[t] - lm.clean[t]) ** 2 for t in after], axis=0)
    d_clean = lm.clean[e + 2:e + 6].mean(0) - lm.clean[e - 6:e - 2].mean(0)
    d_den = den[e + 2:e + 6].mean(0) - den[e - 6:e - 2].mean(0)
    kept = float((d_den * d_clean)[region].sum() / (d_clean * d_clean)[region].sum())
    return {"mse": float(err.mean()), "mse_region": float(err[region].mean()),
            "kept": kept, "region": float(region.mean())}


def run(name: str, lm: LatticeMovie, mode: str, tmp: Path) -> str:
    path = write_h5(lm, tmp / "m.h5")
    cfg = load_config(None, {"tracking.enabled": False, "apply.io.preview_max_frames": 0,
                             "apply.io.write_tiff": False,
                             "apply.inference.denoise_with": mode})
    with open_movie(path) as movie:
        s = apply_movie(movie, tmp / mode, cfg, ApplyModels())
    with h5py.File(tmp / mode / "results.h5", "r") as h5:
        den = np.asarray(h5["denoised"][()], dtype=np.float64)
    m = measure(lm, den)
    db = s["denoiser_upsnr_dB"]
    chosen = s["denoiser_candidate"]
    gain = "uMSE <= 0" if db[chosen] is None else f"{db[chosen] - db['raw']:.2f}"
    param = (f"sigma {s['gaussian_sigma_px']:g} px" if chosen == "gaussian"
             else f"alpha {s['wiener_alpha']:g}, smoothing {s['wiener_smooth_px']} px"
             if chosen == "wiener" else "")
    if mode == "auto":
        param = f"{chosen}{', ' + param if param else ''}"
    f1 = (s.get("denoiser_column_f1") or {}).get(chosen)
    ev = s.get("truth", {}).get("events", {})
    cols = s.get("truth", {}).get("columns", {})
    pr = "/".join("?" if cols.get(k) is None else f"{cols[k]:.3f}" for k in ("recall",
                                                                             "precision"))
    found = ", ".join(f"{'missed' if v is None else f'{v:+d}'}"
                      for v in (ev.get("by_kind") or {}).values()) or "?"
    return (f"| {name} | {mode} ({param}) | {gain} | "
            f"{'-' if f1 is None else f'{f1:.2f}'} | {m['mse']:.4f} | "
            f"{m['mse_region']:.4f} ({m['region']:.0%}) | {m['kept']:.2f} | {pr} | "
            f"{found} | {ev.get('n_false_alarms', '?')} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--out", type=Path, default=None, help="markdown table (default: print)")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    rows = []
    for name, make in movies(args.size, args.frames).items():
        lm = make()
        for mode in MODES:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(run(name, lm, mode, Path(tmp)))
            print(rows[-1], flush=True)
    text = "\n".join([
        f"Movies {args.size}² x {args.frames} frames, event at frame {args.frames // 2}; "
        f"{platform.machine()}, {os.cpu_count()} cores, load {load:.1f}; "
        f"{dt.date.today().isoformat()}.",
        "",
        "| movie | denoiser (apply's choice) | uPSNR gain [dB] | column F1 vs raw mean | "
        "true MSE after | true MSE, event region (its area) | change kept | "
        "columns recall/precision | event onset error | false alarms |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|--:|",
        *rows, ""])
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
