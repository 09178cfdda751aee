"""Column tracks on a demo-sized generated movie: spanning fraction, precision and recall.

A generated lattice movie (``etem.testing.lattice_movie``: demo size 256² x 48
frames, demo dose 0.5 e/px/frame, a vacancy patch at frame 24, drift 0.1 px/frame) runs
through ``etem apply`` with a Gaussian stand-in denoiser (sigma 2 px, no network), once with
``apply.tracks.min_track_confidence`` = 0 (all tracks) and once at the given value. Scores
(:func:`etem.analysis.tracks.score_tracks`): fraction of matched detections in a track
spanning their column's lifetime, precision and recall of the tracked columns (1 Å match
radius), tracks per true column.

``--window 5`` replaces the stand-in by a 5-frame one (mean of the window, then the
Gaussian, as the unsupervised model): the shape of the blind-spot model, whose noise blobs
persist over its window.

Usage::

    python benchmarks/tracks.py [--size 256] [--frames 48] [--dose 0.5] [--min-conf 0.5]
        [--window 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from etem.analysis.tracks import score_tracks
from etem.config import load_config
from etem.frames.readers import open_movie
from etem.models.io import LoadedModel
from etem.movies.apply import ApplyModels, apply_movie
from etem.testing import lattice_movie, write_h5


class Blur(nn.Module):
    """Gaussian stand-in denoiser (the shape of the real networks)."""

    def __init__(self, sigma_px: float = 2.0) -> None:
        super().__init__()
        r = int(np.ceil(3 * sigma_px))
        x = np.arange(-r, r + 1)
        k = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma_px**2))
        self.register_buffer("k", torch.tensor(k / k.sum(), dtype=torch.float32)[None, None])
        self.pad, self.multiple, self.in_channels = r, 4, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x[:, :1], self.k.to(x.dtype), padding=self.pad)


class WindowBlur(Blur):
    """Multi-frame stand-in (the shape of the blind-spot model): mean of a window of
    ``n_frames`` frames, then the Gaussian; its noise blobs persist over the window."""

    def __init__(self, n_frames: int, sigma_px: float = 2.0) -> None:
        super().__init__(sigma_px)
        self.n_frames = self.in_channels = n_frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.mean(dim=1, keepdim=True))


def stand_in(window: int) -> tuple[ApplyModels, dict[str, object]]:
    """The stand-in denoiser (window 1: Gaussian, else the windowed one as the unsupervised
    model) and the config keys that make apply use it."""
    if window <= 1:
        return ApplyModels(denoiser=LoadedModel(Blur(), {"kind": "denoiser",
                                                         "pixel_size_A": 0.2})), {}
    model = LoadedModel(WindowBlur(window), {"kind": "unsupervised", "pixel_size_A": 0.2,
                                             "n_frames": window})
    return ApplyModels(unsupervised=model), {"apply.inference.denoise_with": "unsupervised"}


def run(
    size: int, frames: int, dose: float, min_conf: float, seed: int,
    extra: dict[str, object] | None = None, window: int = 1,
) -> list[dict]:
    lm = lattice_movie(
        n_frames=frames, size_px=size, event_frame=frames // 2, drift_px_per_frame=0.1,
        dose_e_per_px_per_frame=dose, seed=seed,
    )
    rows = []
    models, keys = stand_in(window)
    with tempfile.TemporaryDirectory() as tmp:
        movie = open_movie(write_h5(lm, Path(tmp) / "m.h5"))
        for mc in (0.0, min_conf):
            cfg = load_config(None, {
                "tracking.enabled": False, "apply.inference.precision": "fp32",
                "apply.inference.tile_px": 256,
                "apply.events.calibration_frames": 16, "apply.io.write_tiff": False,
                "apply.io.preview_max_frames": 0, "apply.tracks.min_track_confidence": mc,
                **keys, **(extra or {}),
            })
            out = Path(tmp) / f"out{mc}"
            t0 = time.perf_counter()
            s = apply_movie(movie, out, cfg, models)
            wall = time.perf_counter() - t0
            cols = pd.read_parquet(out / "columns.parquet")
            # truth in the drift-corrected frame of the first frame
            txy = [c - 0.1 * t for t, c in enumerate(lm.columns)]
            sc = score_tracks(cols, txy, lm.ids or [], 1.0 / 0.2, 8.0, (size, size))
            rows.append({"min_track_confidence": mc, "window": window, **sc, "wall_s": wall,
                         "tracks_summary": s.get("tracks")})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--dose", type=float, default=0.5)
    ap.add_argument("--min-conf", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--window", type=int, default=1,
                    help="frames of the stand-in denoiser's window (1: single-frame Gaussian; "
                    "5: the blind-spot model's window, its noise persisting over 5 frames)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides (YAML values), e.g. apply.tracks.max_gap_frames=3")
    args = ap.parse_args()
    extra = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    for r in run(args.size, args.frames, args.dose, args.min_conf, args.seed, extra,
                 args.window):
        print(json.dumps(r, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
