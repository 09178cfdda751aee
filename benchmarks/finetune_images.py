"""Fine-tuning the blind-spot network on short static image stacks: kept or not, and its gain.

The images and frames of the cross-condition table's ``blind_spot_finetuned`` column
(:mod:`etem.evaluation.conditions`): each clean image made into ``n_frames`` independent
noisy frames at ``evaluation.condition_dose_e_per_px`` in all, fine-tuned with
:func:`etem.training.finetune.finetune_unsupervised` (``apply.finetune``'s defaults but the
steps and ``--keep-se``), the middle frame denoised by the parent and by the model the
fine-tuning returns. Prints, per number of steps: images, how many kept, the PSNR gain over the
parent of the kept ones (etem's PSNR, clean range as peak; mean ± s.e.m., range) and the best
steps. Unlike ``etem evaluate``, it also runs on a code path's images (``--code-path``), which
the evaluation does not fine-tune on.

With ``--all-frames``, every frame of the stack is scored, as ``etem apply --finetune-steps``
denoises them: the fine-tuning holds out only the validation frame (the middle one) and
trains on the others' noise, so the gain per frame index (mean ± s.e.m. over the kept
images) and the trained middle neighbours' gain less the held-out frame's show what that
costs (the end frames gain most where the parent handled the stack's ends worst).

Usage: python benchmarks/finetune_images.py --config results/demo/config/evaluation.yaml
       --index results/demo/simulation/index.csv --unsupervised results/demo/models/unsupervised.pt
       [--code-path kirkland_fp2=results/demo/simulation/code_paths/kirkland_fp2/index.csv]
       [--images 16] [--steps 25 100] [--keep-se 0] [--all-frames]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from etem.analysis.metrics import data_range, psnr
from etem.config import load_config
from etem.config.apply import FinetuneConfig
from etem.evaluation.conditions import finetuned_images, select_images, static_frames
from etem.evaluation.inputs import load_code_path_images, load_test_images
from etem.models.inference import denoise_movie
from etem.models.io import LoadedModel, load
from etem.simulation.noise import row_dqe
from etem.training.finetune import finetune_unsupervised


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="the evaluation's config YAML")
    ap.add_argument("--index", type=Path, required=True, help="the campaign's index.csv")
    ap.add_argument("--unsupervised", type=Path, required=True, help="blind-spot model file")
    ap.add_argument("--code-path", metavar="NAME=INDEX",
                    help="a code path's images instead of the campaign's test images")
    ap.add_argument("--images", type=int, default=16,
                    help="images of the table, held-out conditions first (as the column)")
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--keep-se", type=float, default=0.0, help="apply.finetune.keep_se")
    ap.add_argument("--all-frames", action="store_true",
                    help="score every frame of the stack, not only the middle one")
    a = ap.parse_args()
    for p in (a.config, a.index, a.unsupervised):
        if not p.is_file():
            raise SystemExit(f"{p}: no such file")
    cfg = load_config(a.config)
    if a.code_path:
        name, _, index = a.code_path.partition("=")
        images = select_images(cfg, load_code_path_images(index, cfg, name, a.index))
    else:
        selected = select_images(cfg, load_test_images(a.index, cfg))
        chosen = finetuned_images(selected, a.images)
        images = [im for im in selected if im.image_id in chosen]
    model = load(a.unsupervised)
    n = int(model.n_frames)
    dose = float(cfg.evaluation.condition_dose_e_per_px)

    def scored(m: LoadedModel, frames: np.ndarray, clean: np.ndarray) -> np.ndarray:
        """PSNR [dB] of ``m``'s estimate of each frame (etem's: the clean range as peak); the
        middle frame only unless ``--all-frames``."""
        est = denoise_movie(m.module, frames, dose / n)
        keep = range(n) if a.all_frames else [n // 2]
        return np.array([psnr(clean, est[i].astype(np.float64), data_range(clean))
                         for i in keep])

    # each image's frames and the parent's PSNR, the same for every number of steps
    stacks = {}
    for im in images:
        frames = static_frames(im.clean, dose, n, im.image_id, cfg.seed, row_dqe(im.params))
        clean = np.asarray(im.clean, dtype=np.float64)
        stacks[im.image_id] = (frames, clean, scored(model, frames, clean))
    for steps in a.steps:
        ft = FinetuneConfig(steps=steps, keep_se=a.keep_se)
        run_cfg = cfg.model_copy(update={"apply": cfg.apply.model_copy(update={"finetune": ft})})
        gains, kept, best = [], 0, []
        for im in images:
            frames, clean, p0 = stacks[im.image_id]
            tuned, rec = finetune_unsupervised(run_cfg, model, frames, dose / n,
                                               float(im.params["pixel_size_A"]), name=im.image_id)
            best.append(int(rec["best_step"]))
            if rec["kept"]:
                kept += 1
                gains.append(scored(tuned, frames, clean) - p0)
        per_frame = np.asarray(gains).reshape(len(gains), n if a.all_frames else 1)
        g = per_frame[:, n // 2 if a.all_frames else 0]
        sem = g.std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else float("nan")
        span = f"{g.min():+.2f} to {g.max():+.2f}" if len(g) else "-"
        print(f"steps {steps}: {len(images)} images, {kept} kept, gain of the kept "
              f"{g.mean() if len(g) else float('nan'):+.2f} ± {sem:.2f} dB ({span}); "
              f"best steps {best}", flush=True)
        if a.all_frames and len(g) > 1:
            fsem = per_frame.std(axis=0, ddof=1) / np.sqrt(len(g))
            cells = ", ".join(f"{i}: {m:+.2f} ± {e:.2f}"
                              for i, (m, e) in enumerate(zip(per_frame.mean(0), fsem,
                                                             strict=True)))
            print(f"  gain per frame (held out: {n // 2}): {cells}")
            if n >= 3:
                d = per_frame[:, [n // 2 - 1, n // 2 + 1]].mean(1) - g
                print(f"  trained neighbours {n // 2 - 1}, {n // 2 + 1} less the held-out "
                      f"frame: {d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f} dB")

if __name__ == "__main__":
    main()
