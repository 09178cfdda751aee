"""The synthetic movie table: true MSE/PSNR and uMSE per method, the temporal-mean baseline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import convolve1d

from etem.analysis.metrics import psnr
from etem.analysis.umse import umse_frames
from etem.evaluation.methods import Method
from etem.models.inference import denoise_movie


def temporal_mean(frames: np.ndarray, n_frames: int) -> np.ndarray:
    """Sliding mean over ``n_frames`` consecutive frames (reflected at the ends).

    The classical baseline of the multi-frame denoiser: same input window, no network.
    """
    half = n_frames // 2
    padded = np.pad(frames, ((half, half), (0, 0), (0, 0)), mode="reflect")
    kernel = np.ones(n_frames) / n_frames

    return convolve1d(padded, kernel, axis=0, mode="constant")[half : half + frames.shape[0]]


def movie_table(
    cfg: Any, movie: dict[str, Any], methods: dict[str, Method], unsupervised: Any | None
) -> pd.DataFrame:
    """Synthetic movie: true MSE/PSNR (vs the clean frames) and uMSE from frame quartets."""
    frames = np.asarray(movie["frames"], dtype=np.float64)
    clean = movie.get("clean")
    dose_px = float(movie["dose_e_per_px"])
    n = frames.shape[0]
    n_static = (int(movie["static_frames"] if "static_frames" in movie else n) // 4) * 4
    outs: dict[str, np.ndarray] = {}
    for name, fn in methods.items():
        outs[name] = np.stack([fn(f, dose_px) for f in frames])
    if unsupervised is not None:
        n_win = int(getattr(unsupervised, "n_frames", 5) or 5)
        outs[f"temporal_mean_{n_win}"] = temporal_mean(frames, n_win) / dose_px
        outs["unsupervised"] = np.asarray(denoise_movie(
            unsupervised, frames, dose_px, match=cfg.apply.inference.match_mean))
    rows = []
    for name, est in outs.items():
        row: dict[str, Any] = {"method": name, "n_frames": n, "n_static_frames": n_static}
        if clean is not None:
            c = np.asarray(clean, dtype=np.float64)[:n]
            row["mse"] = float(np.mean((est - c) ** 2))
            row["psnr_db"] = float(np.mean([psnr(c[i], est[i]) for i in range(n)]))
            if n_static:
                row["mse_static"] = float(np.mean((est[:n_static] - c[:n_static]) ** 2))
        if name in methods and n_static >= 4:
            def f_int(z: np.ndarray, fn: Method = methods[name]) -> np.ndarray:
                return fn(z * dose_px, dose_px)

            r = umse_frames(f_int, frames[:n_static] / dose_px)
            row["umse"] = r.umse
            row["umse_se"] = float(r.se)
        rows.append(row)
    return pd.DataFrame(rows)

