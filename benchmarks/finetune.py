"""Fine-tuning the unsupervised denoiser on the movie it denoises: quality gain and cost.

For each movie and number of fine-tuning steps (0 = the parent model as trained), the
script fine-tunes with :func:`etem.training.finetune.finetune_unsupervised` (the ``etem apply``
code path, ``apply.finetune`` of the config), denoises the whole movie and reports

* the blind-spot validation loss before/after (MSE to the noisy middle frame, [intensity²]);
* true MSE and PSNR [dB] vs the clean frames the movie file holds (intensity units,
  vacuum = 1; PSNR with the clean frame's range as peak, as in the benchmark stage);
* uMSE (Morales et al., :mod:`etem.analysis.umse`) without the clean frames, at full
  resolution, as ``denoise_with: auto`` scores it (:func:`etem.movies.selection.umse_targets`:
  the copies are frames outside the network's window, static frames before the first event),
  with the true MSE of the same frames next to it as a check; uPSNR with peak 1 (vacuum
  intensity). (Until 2026-12-07 the noisy frame t itself was the first copy: unbiased for
  the parent, whose blind spot never sees it, but biased low for a fine-tuned model, which
  trained on frame t as a target: -0.0003 on the demo movie.)
* the wall-clock time of the fine-tuning [s].

Usage::

    python benchmarks/finetune.py --threads 2 \\
        --movie results/demo/movies/synthetic.h5 --model results/demo/models/unsupervised.pt \\
        --steps 0 100 200 [--lr 2e-4 1e-3] [--append benchmarks/training.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np


def _movie(path: str) -> dict[str, Any]:
    from etem.simulation.synthetic_movie import read_movie

    m = read_movie(path)
    dose = float(m["attrs"]["dose_e_per_px_per_frame"])
    events = [int(e) for e in m["events"]]
    n = len(m["frames"])
    return {"frames": m["frames"].astype(np.float32), "clean": m["clean"] / dose,
            "dose": dose, "px": float(m["attrs"]["pixel_size_A"]),
            "n_static": min(events) if events else n}


def movie_umse(est: np.ndarray, frames: np.ndarray, clean: np.ndarray, dose: float,
               n_static: int, half_window: int) -> dict[str, float]:
    """uMSE [intensity²] of the denoised static frames, no clean data used, with the true MSE
    of the same target frames next to it as a check.

    The selection's estimate (:func:`etem.movies.selection.umse_targets`): for target t the
    copies are frames t+h+1 (compared with the estimate), t-h-1 and t+h+2, outside the
    window ``t-h .. t+h`` that made the estimate, so their noise is independent of it even
    for a network fine-tuned on the movie (which learned frame t's noise as a target).
    """
    from etem.movies.selection import target_frames, umse_targets

    norm = frames / dose
    targets = target_frames(n_static, half_window, max_targets=n_static)
    if not targets:
        print(f"uMSE: {n_static} static frames, fewer than the {2 * half_window + 4} a "
              "target needs: not measured", file=sys.stderr)
        return {"umse": float("nan"), "umse_se": float("nan"), "mse_static": float("nan")}
    r = umse_targets(lambda t: est[t], norm, targets, half_window)
    trues = [float(np.mean((est[t] - clean[t]) ** 2)) for t in targets]
    return {"umse": r.umse, "umse_se": r.se, "mse_static": float(np.mean(trues))}


def paired_delta(est: np.ndarray, base: np.ndarray, frames: np.ndarray, dose: float,
                 n_static: int, half_window: int, block_px: int = 16) -> tuple[float, float]:
    """uMSE(est) - uMSE(base) [intensity²] and its standard error, no clean data used.

    The noise-variance term is common to both and cancels: the difference is
    mean (a - f_est)² - (a - f_base)² over the targets of :func:`movie_umse` (a = the noisy
    frame t+h+1, outside both estimates' windows), with the standard error from per-block
    means (blocks of ``block_px`` px, all targets).
    """
    from etem.analysis.umse import block_se
    from etem.movies.selection import target_frames

    targets = target_frames(n_static, half_window, max_targets=n_static)
    if not targets:
        return float("nan"), float("nan")
    a = frames[[t + half_window + 1 for t in targets]] / dose
    d = (a - est[targets]) ** 2 - (a - base[targets]) ** 2
    # the targets side by side: their blocks pooled (frames of a multiple of block_px wide)
    return float(d.mean()), block_se(np.concatenate(list(d), axis=-1), block_px)


def evaluate(module: Any, mv: dict[str, Any], half_window: int) -> dict[str, Any]:
    """True MSE/PSNR of the denoised movie and the label-free uMSE/uPSNR (:func:`movie_umse`,
    copies outside the window ``2 half_window + 1``)."""
    from etem.analysis.metrics import psnr
    from etem.analysis.umse import upsnr
    from etem.models.inference import denoise_movie

    est = denoise_movie(module, mv["frames"], mv["dose"])
    c = mv["clean"]
    out: dict[str, Any] = {"mse": float(np.mean((est - c) ** 2)),
           "psnr_db": float(np.mean([psnr(c[t], est[t]) for t in range(len(c))]))}
    out.update(movie_umse(est, mv["frames"], c, mv["dose"], mv["n_static"], half_window))
    out["upsnr_db"] = upsnr(out["umse"], 1.0)
    out["est"] = est
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--movie", nargs="+", default=["results/demo/movies/synthetic.h5"])
    ap.add_argument("--model", default="results/demo/models/unsupervised.pt")
    ap.add_argument("--config", default="config/demo.yaml")
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 100, 200])
    ap.add_argument("--lr", type=float, nargs="+", default=[None])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--append", help="markdown table to append rows to")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from etem.config import load_config
    from etem.models.io import load
    from etem.training.finetune import finetune_unsupervised

    parent = load(args.model)
    load_avg = os.getloadavg()[0]
    rows = []
    for path in args.movie:
        mv = _movie(path)
        for lr in args.lr:
            for steps in sorted({0, *args.steps}):
                over = {"apply.finetune.steps": max(steps, 1), "tracking.enabled": False}
                if lr is not None:
                    over["apply.finetune.lr"] = lr
                cfg = load_config(args.config, over)
                if steps == 0:
                    model, secs = parent, 0.0
                    rec: dict[str, Any] = {}
                else:
                    t0 = time.perf_counter()
                    model, rec = finetune_unsupervised(cfg, parent, mv["frames"], mv["dose"],
                                                       mv["px"], None, name=Path(path).name)
                    secs = time.perf_counter() - t0
                h = parent.n_frames // 2
                ev = evaluate(model.module, mv, h)
                if steps == 0:
                    mv["base_est"] = ev["est"]
                d, d_se = paired_delta(ev.pop("est"), mv["base_est"], mv["frames"], mv["dose"],
                                       mv["n_static"], h)
                ev["d_umse"], ev["d_umse_se"] = d, d_se
                row = {"movie": Path(path).name, "steps": steps, "lr": cfg.apply.finetune.lr,
                       "seconds": secs, "loss_before": rec.get("loss_before"),
                       "loss_after": rec.get("loss_after"), "kept": rec.get("kept"), **ev}
                rows.append(row)
                print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()},
                      flush=True)
    if args.append:
        cpu = platform.processor() or platform.machine()
        torch_v = torch.__version__
        cmd = ("python benchmarks/finetune.py --threads " + str(args.threads) + " --movie "
               + " ".join(args.movie) + " --steps " + " ".join(map(str, args.steps)))
        if args.lr != [None]:
            cmd += " --lr " + " ".join(map(str, args.lr))
        date = datetime.date.today().isoformat()
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, check=False).stdout.strip()
        except OSError:
            commit = "?"
        lines = []
        for r in rows:
            base = next(b for b in rows if b["movie"] == r["movie"] and b["steps"] == 0)
            what = (f"fine-tune unsupervised on {r['movie']}, {r['steps']} steps, lr {r['lr']:g}"
                    if r["steps"] else f"unsupervised parent model on {r['movie']} (no fine-tune)")
            val = (f"true PSNR {r['psnr_db']:.2f} dB ({r['psnr_db'] - base['psnr_db']:+.2f}), "
                   f"MSE {r['mse']:.4f}; uMSE {r['umse']:.4f} ± {r['umse_se']:.4f} "
                   f"(true {r['mse_static']:.4f}) = uPSNR {r['upsnr_db']:.2f} dB "
                   f"({r['upsnr_db'] - base['upsnr_db']:+.2f}); paired ΔuMSE "
                   f"{r['d_umse']:+.4f} ± {r['d_umse_se']:.4f} (true "
                   f"{r['mse_static'] - base['mse_static']:+.4f})")
            if r["steps"]:
                val += (f"; val loss {r['loss_before']:.4f} -> {r['loss_after']:.4f}"
                        f"{'' if r['kept'] else ' (not lower: parent kept)'}; "
                        f"{r['seconds']:.0f} s")
            lines.append(f"| {what} | {val} | `{cmd}` | {cpu}, {args.threads} threads, "
                         f"load {load_avg:.1f}, torch {torch_v}, {commit} | {date} |")
        with open(args.append, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
