"""Does a network refining the Wiener estimate keep the local changes that the filter paints over?

The empirical Wiener filter keeps the frequencies that stand above the noise — the lattice's
Bragg reflections — so it fills a vacancy patch with lattice and paints lattice where surface
columns left (``apply.inference.auto_candidates`` leaves it out by default for that reason).
A supervised network given the Wiener estimate as its first channel (``training.denoiser.
prefilter: wiener_sure``) also sees the counts: does it put the change back?

Movies (not etem's campaign images; :mod:`etem.testing`, 0.2 Å pixels, 0.5 e/px per frame):
a lattice with a vacancy patch appearing at frame 24 and a particle losing surface columns at
frame 24, 96² and 256² (and a 1024² lattice with ``--large``). For frame pairs
``(24 - 2 - i, 24 + 2 + i)``, i < 8, each method denoises both frames alone; *change kept*
is the regression coefficient of the denoised difference on the clean difference over the
event region (1: the whole change, 0: none),
mean ± s.e.m. over pairs; *MSE after* is the true MSE of the after frame in that region; and
*vacuum rms* the rms of the before frame in the particle's vacuum (clean 1). Models run the
way ``etem apply`` gives them frames (:func:`independent_set.through_apply`: resampled to the
model's pixel, back to the movie's).

``--timing``: seconds per 1024² frame of each model through
:func:`etem.models.inference.denoise_images` (fp32 on this CPU, torch threads as set; median
of 3 after one warm-up call) and of the SURE-chosen Wiener filter alone (a prefilter model's
extra work).

Usage: python benchmarks/prefilter_events.py --model v1=PATH --model v2=PATH [--pairs 8]
       [--large] [--timing] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_set as ind

from etem.analysis import baselines
from etem.config.evaluation import WIENER_ALPHA, WIENER_SMOOTH_PX
from etem.models.inference import denoise_images
from etem.models.io import load_model
from etem.testing import LatticeMovie, lattice_movie, particle_movie

EVENT_FRAME = 24
#: The Wiener filter at its defaults (over-subtraction, periodogram smoothing [px]), by name.
WIENER_DEFAULTS = f"Wiener {WIENER_ALPHA:g} / {WIENER_SMOOTH_PX}"
#: A detector-sized frame (``--large``): the Wiener filter's Bragg peaks are sharper still.
LARGE = "lattice 1024², vacancy patch"


def movies() -> dict[str, Callable[[], LatticeMovie]]:
    """The movies by name, each made when called."""
    e = EVENT_FRAME
    return {
        "lattice 96², vacancy patch": lambda: lattice_movie(
            n_frames=48, size_px=96, event_frame=e, dose_e_per_px_per_frame=0.5, seed=4),
        "lattice 256², vacancy patch": lambda: lattice_movie(
            n_frames=48, size_px=256, event_frame=e, dose_e_per_px_per_frame=0.5, seed=4),
        "particle 96², surface loss 12": lambda: particle_movie(
            n_frames=48, size_px=96, event="surface_loss", magnitude=12, event_frame=e,
            dose_e_per_px_per_frame=0.5, seed=7),
        "particle 256², surface loss 40": lambda: particle_movie(
            n_frames=48, size_px=256, event="surface_loss", magnitude=40, event_frame=e,
            dose_e_per_px_per_frame=0.5, seed=7),
        LARGE: lambda: lattice_movie(
            n_frames=48, size_px=1024, event_frame=e, dose_e_per_px_per_frame=0.5, seed=4),
    }


#: A method of the table: (counts of the frames (N, H, W) [e/px], dose [e/px], pixel [Å])
#: -> their denoised intensities (N, H, W), vacuum = 1; each frame denoised alone.
Method = Callable[[np.ndarray, float, float], np.ndarray]


def classical() -> dict[str, Method]:
    """The classical bars every table carries: a 1.5 px Gaussian, the Wiener filter at its
    defaults and the SURE-chosen Wiener filter."""
    return {
        "Gaussian 1.5 px": lambda c, d, _px: np.stack(
            [baselines.gaussian(f, d, 1.5) for f in c]),
        WIENER_DEFAULTS: lambda c, d, _px: np.stack([baselines.wiener(f, d) for f in c]),
        "Wiener SURE": lambda c, d, _px: np.stack([baselines.wiener_sure(f, d)[0] for f in c]),
    }


def model_methods(models: dict[str, tuple[torch.nn.Module, float]]) -> dict[str, Method]:
    """Denoisers run the way ``etem apply`` gives them frames (resampled to the model's
    pixel and back: :func:`independent_set.through_apply`)."""
    return {name: (lambda c, d, px, m=module, mpx=mpx:
                   ind.through_apply(m, mpx, c, px, 0, dose_e_per_px=d)[0])
            for name, (module, mpx) in models.items()}


def measure(methods: dict[str, Method], pairs: int,
            names: list[str] | None = None) -> list[dict[str, object]]:
    """One row per (movie, method) for :func:`classical` and ``methods``: change kept (mean,
    s.e.m. over pairs), MSE after in the event region, vacuum rms (particles); ``names``: a
    subset of :func:`movies`. The one home of the change-kept measure (also
    ``wiener_local.py events``)."""
    e = EVENT_FRAME
    rows: list[dict[str, object]] = []
    for name, make in movies().items():
        if names is not None and name not in names:
            continue
        lm = make()
        assert lm.counts is not None
        counts = np.asarray(lm.counts, dtype=np.float32)
        clean = np.asarray(lm.clean, dtype=np.float64)
        d, px = float(lm.dose_e_per_px_per_frame), float(lm.pixel_size_A)
        idx = [i for k in range(pairs) for i in (e - 2 - k, e + 2 + k)]
        est = {mname: f(counts[idx], d, px) for mname, f in {**classical(), **methods}.items()}
        region = ndimage.binary_dilation(np.abs(clean[e - 1] - clean[e]) > 0.05, iterations=3)
        # the particle's vacuum (clean 1; its columns are brighter), as wiener_local.py's
        vac = (ndimage.binary_erosion(clean[0] < 1.001, iterations=6)
               if "particle" in name else None)
        for mname, out in est.items():
            kept, mse, rms = [], [], []
            for k in range(pairs):
                b, a = idx[2 * k], idx[2 * k + 1]
                db, da = out[2 * k], out[2 * k + 1]
                dc = clean[a] - clean[b]
                kept.append(float(((da - db) * dc)[region].sum() / (dc * dc)[region].sum()))
                mse.append(float(np.mean(((da - clean[a]) ** 2)[region])))
                if vac is not None:
                    rms.append(float(np.sqrt(np.mean((db - clean[b])[vac] ** 2))))
            k_arr = np.array(kept)
            rows.append({"movie": name, "method": mname, "kept": float(k_arr.mean()),
                         "kept_sem": float(k_arr.std(ddof=1) / np.sqrt(len(k_arr))),
                         "mse_after": float(np.mean(mse)),
                         "vacuum_rms": float(np.mean(rms)) if rms else None})
        print(f"{name} done", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, object]]) -> str:
    head = ["movie", "method", "change kept", "MSE after, region", "vacuum rms (clean 1)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rms = r["vacuum_rms"]
        lines.append(f"| {r['movie']} | {r['method']} | {r['kept']:.2f} ± {r['kept_sem']:.2f} | "
                     f"{r['mse_after']:.4f} | {(f'{rms:.3f}' if rms is not None else '—')} |")
    return "\n".join(lines) + "\n"


def timing(models: dict[str, tuple[torch.nn.Module, float]], size: int = 1024) -> str:
    counts = np.random.default_rng(0).poisson(0.45, (size, size)).astype(np.float32)
    calls = {"Wiener SURE alone": lambda: baselines.wiener_sure(counts, 0.45)}
    for name, (module, _) in models.items():
        calls[name] = lambda m=module: denoise_images(m, counts, 0.45, amp=False)
    lines = []
    for name, f in calls.items():
        f()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        lines.append(f"{name}: {np.median(ts):.3f} s per {size}² frame "
                     f"({', '.join(f'{t:.3f}' for t in ts)})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", type=ind.model_arg, default=[],
                    help="NAME=PATH of a supervised denoiser (repeatable)")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--timing", action="store_true", help="time the models at 1024² instead")
    ap.add_argument("--large", action="store_true",
                    help="also the 1024² lattice movie (minutes on a CPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {}
    for name, path in args.model:
        module, meta = load_model(path)
        models[name] = (module, float(meta["pixel_size_A"]))
    names = [n for n in movies() if args.large or n != LARGE]
    print(timing(models) if args.timing
          else table(measure(model_methods(models), args.pairs, names)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
