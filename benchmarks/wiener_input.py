"""Does a network gain from the Wiener filter's global view? Two denoisers, one experiment.

The small U-Nets of etem see ~40 px around a pixel; the empirical Wiener filter
(:func:`etem.analysis.baselines.wiener`) sees the whole frame's periodogram and beats them on
the cross-condition table at 0.45 e/px. This script trains two identical U-Nets (etem's
``Denoiser``: depth, channels, residual, two input channels) at one dose, the same seed,
steps and patches:

* ``plain``: input (counts / dose, dose channel), residual to the noisy intensity (etem's
  supervised denoiser, specialised to the dose);
* ``wiener_input``: input (Wiener-filtered intensity of the whole frame, counts / dose),
  residual to the Wiener estimate: the network refines the filter.

Training images: ``--n-train`` images of the campaign's training split (never test,
held-out structure or held-out condition images), Poisson/detector noise drawn on the whole
frame at ``--dose`` [e/px in vacuum] (the cross-condition dose), a random ``--patch``
crop with a dihedral transform. Evaluation: the evaluation's own images and noisy frames
(:func:`etem.evaluation.conditions.condition_counts`: test structures, held-out structures,
held-out conditions) in Mohan et al.'s PSNR, beside the Wiener filter, the flat image and
the oracle Gaussian.

Usage (the 2-core VM: ~15-30 min per arm at 1,500 steps):
  python benchmarks/wiener_input.py --config results/mohan_eval/config.yaml \\
      --index results/pretrained2/simulation/index.csv --steps 1500 --out results/wiener_input
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from etem.analysis import baselines
from etem.analysis.metrics import psnr_peak
from etem.config import load_config
from etem.evaluation.conditions import condition_counts, select_images
from etem.evaluation.inputs import TestImage, load_test_images, load_train_images
from etem.io import atomic_path
from etem.models.unet import Denoiser
from etem.simulation.noise import detector_counts, row_dqe

ARMS = ("plain", "wiener_input")


def net_input(arm: str, counts: np.ndarray, dose_px: float) -> np.ndarray:
    """The (2, H, W) float32 input of ``arm`` for one noisy frame [e/px]."""
    norm = counts / dose_px
    if arm == "plain":
        second = np.full_like(norm, dose_px)
        return np.stack([norm, second]).astype(np.float32)
    return np.stack([baselines.wiener(counts, dose_px), norm]).astype(np.float32)


def batch(arm: str, images: list[np.ndarray], dqes: list[float], dose_px: float, patch: int,
          g: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training pairs: noise on the whole frame, then a crop and a dihedral transform."""
    xs, ys = [], []
    for _ in range(n):
        i = int(g.integers(len(images)))
        clean = images[i]
        counts = detector_counts(np.clip(clean, 0, None) * dose_px, g, dqes[i])
        x = net_input(arm, np.asarray(counts, dtype=np.float64), dose_px)
        h, w = clean.shape
        y0, x0 = int(g.integers(h - patch + 1)), int(g.integers(w - patch + 1))
        k = int(g.integers(8))
        xp = np.rot90(x[:, y0:y0 + patch, x0:x0 + patch], k % 4, axes=(1, 2))
        yp = np.rot90(clean[None, y0:y0 + patch, x0:x0 + patch], k % 4, axes=(1, 2))
        if k >= 4:
            xp, yp = xp[:, :, ::-1], yp[:, :, ::-1]
        xs.append(np.ascontiguousarray(xp))
        ys.append(np.ascontiguousarray(yp, dtype=np.float32))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def train_arm(arm: str, images: list[np.ndarray], dqes: list[float], args: argparse.Namespace,
              ) -> Denoiser:
    """One arm, seeded: the same initial weights and patches for both arms."""
    torch.manual_seed(args.seed)
    model = Denoiser(depth=args.depth, base_channels=args.channels, dose_conditioned=True,
                     residual=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = np.random.default_rng(args.seed)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        x, y = batch(arm, images, dqes, args.dose, args.patch, g, args.batch)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 10) == 0:
            print(f"{arm}: step {step}/{args.steps} loss {float(loss):.5f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    return model.eval()


def evaluate(models: dict[str, Denoiser], cfg: object, images: list[TestImage],
             dose_px: float) -> pd.DataFrame:
    """Mohan et al.'s PSNR per (image, method) on the evaluation's noisy frames."""
    rows = []
    sigmas = list(cfg.evaluation.oracle_sigmas_px)  # type: ignore[attr-defined]
    for im in images:
        counts = condition_counts(cfg, im, dose_px)
        clean = np.asarray(im.clean, dtype=np.float64)
        est = {"flat": baselines.flat(counts, dose_px),
               "gaussian_oracle": baselines.oracle_gaussian(counts, dose_px, clean, sigmas)[0],
               "wiener": baselines.wiener(counts, dose_px)}
        with torch.no_grad():
            for arm, m in models.items():
                x = torch.from_numpy(net_input(arm, counts, dose_px)[None])
                est[arm] = m(x).numpy()[0, 0].astype(np.float64)
        for name, e in est.items():
            rows.append({"image_id": im.image_id, "split": im.params.get("split"),
                         "condition": str(im.params.get("condition", "") or ""),
                         "method": name,
                         "psnr_mohan_db": psnr_peak(clean * dose_px, e * dose_px, 1.0)})
    return pd.DataFrame(rows)


def summary(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean ± s.e.m. per split (and held-out band) and method."""
    df = per_image.copy()
    df["group"] = df["split"].astype(str)
    band = df[df["condition"] != ""].copy()
    band["group"] = band["split"].astype(str) + "|" + band["condition"]
    out = pd.concat([df, band]).groupby(["group", "method"])["psnr_mohan_db"].agg(
        ["count", "mean", "sem"]).reset_index()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--dose", type=float, default=0.45, help="e/px in vacuum")
    p.add_argument("--patch", type=int, default=96)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    train = load_train_images(args.index, cfg)
    pick = np.sort(np.random.default_rng(args.seed).choice(
        len(train), min(args.n_train, len(train)), replace=False))
    images = [np.asarray(train[i].clean, dtype=np.float64) for i in pick]
    dqes = [row_dqe(train[i].params) for i in pick]
    models = {arm: train_arm(arm, images, dqes, args) for arm in ARMS}
    test = select_images(cfg, load_test_images(args.index, cfg))
    per_image = evaluate(models, cfg, test, args.dose)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "per_image.csv") as tmp:
        per_image.to_csv(tmp, index=False)
    table = summary(per_image)
    with atomic_path(out / "summary.csv") as tmp:
        table.to_csv(tmp, index=False)
    wide = table.pivot(index="group", columns="method", values="mean").round(2)
    print(wide.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
