"""Does a blind-spot network learn the noise of the frames it validates on?

The blind-spot validation loss (MSE of the prediction to the noisy middle frame) is the true
MSE plus the noise variance only if the network never trained on those noisy pixels as
targets. Given blind-spot models trained on the same movie (``etem train unsupervised``;
some on every frame, some with the validation crops held out:
:class:`etem.training.tasks.UnsupervisedTask`), this script denoises the movie with each and
reports, on the centre square of every frame that the validation crops cover (the task's
``training.unsupervised.val_patch_px``):

* the true MSE [intensity², vacuum = 1] and PSNR [dB, clean range as peak] of the whole
  movie, against the clean frames the movie file holds;
* the *coupling*: loss − true MSE on the crop = noise variance − 2 cov(estimate error, noise),
  lower where the network learned the frame's noise. The noise variance is common to models
  on the same frames, so the paired difference to ``--reference`` (a model that never trained
  on the validation crops) is compared between the validation frames (those of the training
  task that ``--config`` makes for the movie: ``training.unsupervised.val_samples``) and the
  other frames: a model that trained on its validation frames shows a lower coupling there
  than elsewhere (difference in differences, mean ± s.e. over frames).

Usage: python benchmarks/validation_holdout.py --movie results/demo/movies/synthetic.h5
       --config results/demo/config/training.yaml --reference crop=PATH --model all=PATH
       [--model ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_set as ind

from etem.analysis.metrics import psnr
from etem.config import load_config
from etem.models.inference import denoise_movie
from etem.models.io import load
from etem.simulation.synthetic_movie import read_movie
from etem.training.tasks import UnsupervisedTask


def coupling(est: np.ndarray, noisy: np.ndarray, clean: np.ndarray, crop: int) -> np.ndarray:
    """Per frame: mean (estimate − noisy)² − mean (estimate − clean)² on the centre crop."""
    h, w = noisy.shape[1:]
    ys, xs = slice((h - crop) // 2, (h + crop) // 2), slice((w - crop) // 2, (w + crop) // 2)
    e, a, c = est[:, ys, xs], noisy[:, ys, xs], clean[:, ys, xs]
    return np.asarray(((e - a) ** 2).mean(axis=(1, 2)) - ((e - c) ** 2).mean(axis=(1, 2)))


def _ms(x: np.ndarray) -> str:
    return f"{x.mean():+.5f} ± {x.std(ddof=1) / np.sqrt(len(x)):.5f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movie", type=Path, required=True, help="an etem HDF5 movie with /clean")
    ap.add_argument("--reference", type=ind.model_arg, required=True,
                    help="NAME=PATH: a model that never trained on the validation crops")
    ap.add_argument("--model", type=ind.model_arg, action="append", default=[],
                    help="NAME=PATH (repeatable)")
    ap.add_argument("--config", type=Path, required=True,
                    help="the trainings' config YAML (its training.unsupervised validation)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    m = read_movie(args.movie)
    dose = float(m["attrs"]["dose_e_per_px_per_frame"])
    noisy = m["frames"].astype(np.float64) / dose
    clean = np.asarray(m["clean"], dtype=np.float64) / dose
    cfg = load_config(args.config)
    task = UnsupervisedTask(cfg, cfg.training.unsupervised, args.movie)
    (held,) = task.validation_frames
    crop = min(task.cfg.val_patch_px, *noisy.shape[1:])
    is_val = np.isin(np.arange(len(noisy)), held)
    ref_name, ref_path = args.reference
    print(f"{len(noisy)} frames, validation frames {held}, crop {crop} px\n")
    print("| model | true MSE | PSNR [dB] | coupling − reference's: validation frames | "
          "other frames | difference |")
    print("|---|---|---|---|---|---|")
    ref_c = None
    for name, path in [(ref_name, ref_path), *args.model]:
        est = denoise_movie(load(path).module, m["frames"], dose).astype(np.float64)
        mse = float(np.mean((est - clean) ** 2))
        p = float(np.mean([psnr(clean[t], est[t]) for t in range(len(clean))]))
        c = coupling(est, noisy, clean, crop)
        if ref_c is None:
            ref_c = c
            print(f"| {name} (reference) | {mse:.5f} | {p:.2f} | — | — | — |")
            continue
        d = c - ref_c
        dv, do = d[is_val], d[~is_val]
        diff = dv.mean() - do.mean()
        se = np.sqrt(dv.var(ddof=1) / len(dv) + do.var(ddof=1) / len(do))
        print(f"| {name} | {mse:.5f} | {p:.2f} | {_ms(dv)} | {_ms(do)} | "
              f"{diff:+.5f} ± {se:.5f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
