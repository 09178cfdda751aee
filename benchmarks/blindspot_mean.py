"""Which mean should the blind-spot network's output take: its centre frame's or its window's?

The mean constraint (:func:`etem.models.inference.match_mean`) scales each denoised frame so
that its mean is an unbiased estimate of the clean frame's mean. A single-frame denoiser has
one candidate, its input frame. The blind-spot network sees a window of ``n_frames`` frames
and denoises the centre one: the centre frame's mean count / dose is unbiased for that frame
whatever the other frames hold, the window's mean has ``n_frames`` x the counts (less noise)
but is biased where the frames differ (beam current from frame to frame, a thickness change
inside the window).

The script makes static-scene movies from the independent images of
:mod:`etem.simulation.reference` (ASE bulk Pt along [001], abTEM, the corrected microscope at
Scherzer; clean mean about 0.85 in vacuum units, where the supervised networks came out 2-8 %
too bright), Poisson counts at ``--dose`` e/px per frame, in three variants:

- ``static``: constant beam;
- ``flicker``: the beam current of each frame drawn from a log-normal of ``--flicker`` sd;
- ``step``: ``--cells`` unit cells in the first half, ``--cells-after`` in the second (a
  thickness change inside some windows; no scene break declared).

A blind-spot network (``--depth``/``--base-channels``) is trained once, on the first seed's
static movie, from a random start by :func:`etem.training.finetune.finetune_unsupervised` (the
``etem apply`` code path, ``--steps`` steps), or ``--model`` is fine-tuned there instead; the
same network then denoises every movie. Its output
(:func:`etem.models.inference.denoise_movie`, ``match=False``) is scored as it is, matched to
the centre frame's mean and matched to the window's mean: MSE to the clean frames
[intensity², vacuum = 1], PSNR [dB] (etem's: the clean frame's range as peak), and the mean
offset from the clean frame.

Usage::

    python benchmarks/blindspot_mean.py --out results/blindspot_mean [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from etem.analysis.metrics import data_range, psnr
from etem.config import load_config
from etem.frames.breaks import segment_window
from etem.io import atomic_path
from etem.models.factory import build_model
from etem.models.inference import denoise_movie, match_mean, scaled_to_means
from etem.models.io import LoadedModel, load
from etem.simulation.microscope import scherzer_defocus_nm
from etem.simulation.reference import (
    CS_UM,
    ENERGY_KV,
    bulk_crystal,
    corrected_microscope,
    independent_image,
)

VARIANTS = ("static", "flicker", "step")


def clean_frames(variant: str, n: int, cells: int, cells_after: int, pixel_A: float,
                 repeat: int = 1) -> np.ndarray:
    """(n, H, W) clean intensity (vacuum = 1) of a static scene, or a thickness step; the
    (periodic) crystal image tiled ``repeat`` x ``repeat`` (larger frames: a less noisy mean)."""
    mic = corrected_microscope("in-range", scherzer_defocus_nm(CS_UM, ENERGY_KV))
    first = np.tile(independent_image(bulk_crystal("Pt", cells), mic, pixel_A), (repeat, repeat))
    if variant != "step":
        return np.broadcast_to(first, (n, *first.shape)).astype(np.float64)
    second = np.tile(independent_image(bulk_crystal("Pt", cells_after), mic, pixel_A),
                     (repeat, repeat))
    h, w = min(first.shape[0], second.shape[0]), min(first.shape[1], second.shape[1])
    return np.stack([first[:h, :w]] * (n // 2) + [second[:h, :w]] * (n - n // 2))


def movie(variant: str, clean: np.ndarray, dose: float, flicker: float, seed: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Counts (n, H, W) and each frame's beam level (1 = the nominal dose)."""
    g = np.random.default_rng(seed)
    level = (np.exp(g.normal(0.0, flicker, len(clean))) if variant == "flicker"
             else np.ones(len(clean)))
    lam = np.clip(clean, 0, None) * dose * level[:, None, None]
    return g.poisson(lam).astype(np.float32), level


def network(args: argparse.Namespace, frames: np.ndarray, dose: float, pixel_A: float,
            seed: int) -> tuple[torch.nn.Module, float]:
    """The blind-spot network fine-tuned (or trained from a random start) on ``frames``."""
    from etem.training.finetune import finetune_unsupervised

    if args.model:
        parent = load(args.model)
    else:
        torch.manual_seed(seed)
        arch = {"kind": "unsupervised", "n_frames": 5, "depth": args.depth,
                "base_channels": args.base_channels}
        parent = LoadedModel(build_model(arch), {"kind": "unsupervised", "arch": arch,
                                                 "n_frames": 5, "pixel_size_A": pixel_A})
    cfg = load_config(None, {"tracking.enabled": False, "apply.finetune.steps": args.steps,
                             "apply.finetune.lr": args.lr, "apply.inference.device": "cpu",
                             "seed": seed})
    t0 = time.perf_counter()
    model, record = finetune_unsupervised(cfg, parent, frames, dose, pixel_A)
    print(f"  trained {record['steps']} steps, val loss {record['loss_before']:.4g} -> "
          f"{record['loss_after']:.4g} ({'kept' if record['kept'] else 'parent'}), "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return model.module, time.perf_counter() - t0


def window_matched(raw: np.ndarray, frames: np.ndarray, dose: float, n_win: int) -> np.ndarray:
    """``raw`` (T, H, W) scaled per frame to the mean count / dose of the frame's window."""
    t_all = len(frames)
    means = frames.reshape(t_all, -1).mean(axis=1, dtype=np.float64) / dose
    target = np.array([means[segment_window(t, n_win, (), t_all)].mean() for t in range(t_all)])
    return np.asarray(scaled_to_means(raw, target))


def score(clean: np.ndarray, est: np.ndarray) -> dict[str, float]:
    mse = float(np.mean((est - clean) ** 2))
    p = float(np.mean([psnr(clean[t], est[t], data_range(clean[t])) for t in range(len(clean))]))
    return {"mse": mse, "psnr_db": p, "offset": float(est.mean() - clean.mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--dose", type=float, default=0.1, help="dose per frame [e/px]")
    ap.add_argument("--flicker", type=float, default=0.05, help="beam level sd (log)")
    ap.add_argument("--cells", type=int, default=5)
    ap.add_argument("--cells-after", type=int, default=8)
    ap.add_argument("--pixel", type=float, default=0.2, help="pixel [Å]")
    ap.add_argument("--repeat", type=int, default=1,
                    help="tile the crystal image repeat x repeat (larger frames)")
    ap.add_argument("--model", help="blind-spot model file to fine-tune (default: random start)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--base-channels", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    t0 = time.perf_counter()
    static = clean_frames("static", args.frames, args.cells, args.cells_after, args.pixel,
                          args.repeat)
    train_frames, _ = movie("static", static, args.dose, args.flicker, args.seeds[0])
    module, secs = network(args, train_frames, args.dose, args.pixel, args.seeds[0])
    for variant in args.variants:
        clean = clean_frames(variant, args.frames, args.cells, args.cells_after, args.pixel,
                             args.repeat)
        for seed in args.seeds:
            print(f"{variant}, seed {seed}", file=sys.stderr, flush=True)
            frames, level = movie(variant, clean, args.dose, args.flicker, seed + 1000)
            raw = np.asarray(denoise_movie(module, frames, args.dose, match=False), np.float64)
            assert np.allclose(match_mean(raw.astype(np.float32), frames, args.dose),
                               denoise_movie(module, frames, args.dose), rtol=1e-4, atol=1e-5)
            n_win = int(getattr(module, "n_frames", 5))
            # the target: the clean frame under the frame's beam (what counts / dose estimate)
            target = clean * level[:, None, None]
            outs = {"unmatched": raw,
                    "centre": np.asarray(match_mean(raw, frames.astype(np.float64),
                                                    args.dose)),
                    "window": window_matched(raw, frames, args.dose, n_win)}
            for name, est in outs.items():
                rows.append({"variant": variant, "seed": seed, "match": name,
                             "train_s": round(secs, 1), "clean_mean": float(target.mean()),
                             **score(target, est)})
    table = pd.DataFrame(rows)
    summary = (table.groupby(["variant", "match"], sort=False)[["mse", "psnr_db", "offset"]]
               .mean().reset_index())
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "per_movie.csv") as tmp:
        table.to_csv(tmp, index=False)
    text = (f"{len(table) // 3} movies, {args.frames} frames of {clean.shape[1]}x"
            f"{clean.shape[2]} px at {args.dose} e/px/frame, "
            f"{time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f}\n\n"
            + summary.to_markdown(index=False, floatfmt=".5g") + "\n")
    with atomic_path(args.out / "summary.md") as tmp:
        Path(tmp).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
