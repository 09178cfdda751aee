"""Benchmark of the movie stage: frames/s and peak memory of streamed apply vs a naive loop.

Measured on a synthetic 1024 x 1024 counting-mode movie (Gaussian columns on a lattice,
Poisson counts at 0.5 e/px/frame) with the campaign's U-Net denoiser architecture:

* ``naive``: read the whole movie into memory, then one fp32 forward pass per full frame
  (no batching, no tiling, default memory layout), outputs collected in a list;
* ``streamed``: the apply stage's inference path (``etem.movies.inference.TiledRunner``):
  chunks of ``apply.chunk_frames`` frames, 256 px tiles with 32 px overlap, batches of tiles,
  ``torch.inference_mode``, channels-last, bf16 autocast where the CPU/GPU supports it;
* ``apply``: the whole ``etem apply`` pipeline (drift, denoising, column finding, tracking,
  likelihood, events, all outputs) through :func:`etem.movies.pipeline.apply_movie`.

Each measurement runs in its own process so that peak RSS (``ru_maxrss``) is its own; every
mode runs at two movie lengths to show whether memory grows with the length.

Usage::

    .venv/bin/python benchmarks/movie.py [--frames 8 16] [--size 1024] [--out benchmarks/movie.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARCH = {"kind": "denoiser", "depth": 3, "base_channels": 16}  # demo config's denoiser


def make_movie(path: Path, n_frames: int, size: int, dose: float = 0.5, seed: int = 0) -> None:
    """Write a synthetic counting-mode movie (etem HDF5 contract) frame by frame."""
    import h5py

    spacing, sigma = 16.0, 2.5
    _yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    clean = np.ones((size, size), np.float32)
    # separable lattice of Gaussian columns: sum of 1D Gaussians in x times in y
    g = (np.arange(int(size // spacing)) + 0.5) * spacing
    gx = np.exp(-((xx[0][None, :] - g[:, None]) ** 2) / (2 * sigma**2)).sum(0)
    clean += 1.5 * np.outer(gx, gx).astype(np.float32)
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset(
            "frames", shape=(n_frames, size, size), dtype=np.uint16, chunks=(1, size, size)
        )
        for t in range(n_frames):
            ds[t] = rng.poisson(clean * dose)
        fh.attrs.update(pixel_size_A=0.2, frame_time_s=0.025, dose_e_per_px_per_frame=dose)


def _model():  # type: ignore[no-untyped-def]
    import torch

    from etem.models.factory import build_model
    from etem.movies.inference import LoadedModel

    torch.manual_seed(0)
    return LoadedModel(build_model(ARCH), {"kind": "denoiser", "pixel_size_A": 0.2})


def run_mode(mode: str, movie: str, threads: int) -> dict[str, float]:
    """One measurement (in this process): frames/s and peak RSS [MiB]."""
    import torch

    torch.set_num_threads(threads)
    from etem.movies.io import open_movie

    model = _model()
    m = open_movie(movie)
    n = len(m)
    dose = m.dose_e_per_px_per_frame
    t0 = time.perf_counter()
    if mode == "naive":
        frames = m.read(0, n)  # read all
        net = model.module.eval()
        outs = []
        with torch.no_grad():
            for f in frames:
                x = torch.from_numpy(f / dose)[None, None]
                outs.append(net(x)[0, 0].numpy())
    elif mode == "streamed":
        from etem.models.inputs import image_input, normalize
        from etem.movies.inference import TiledRunner

        runner = TiledRunner(model, tile_px=256, overlap_px=32, batch_size=4, precision="auto")
        for _, chunk in m.iter_chunks(8):
            runner.run(image_input(normalize(chunk, dose), dose, False))
    elif mode == "apply":
        from etem.config import load_config
        from etem.movies.pipeline import ApplyModels, apply_movie

        cfg = load_config(
            None,
            {
                "tracking.enabled": False,
                "apply.chunk_frames": 8,
                "apply.calibration_frames": 4,
                "apply.preview_max_frames": 0,
            },
        )
        with tempfile.TemporaryDirectory() as tmp:
            apply_movie(m, tmp, cfg, ApplyModels(denoiser=model))
    elif mode == "ab":
        return run_ab(model, m, dose)
    else:
        raise ValueError(mode)
    elapsed = time.perf_counter() - t0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"fps": n / elapsed, "seconds": elapsed, "peak_rss_mib": rss_mib, "frames": n}


def run_ab(model, movie, dose: float, rounds: int = 3, n: int = 2) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Interleaved A/B of the denoising alone on the same frames (robust to background load).

    A = naive (per full frame, fp32, default layout, no_grad); B = TiledRunner with 256 px
    tiles; C = TiledRunner with one whole-frame tile (no tiling overhead). Medians of
    ``rounds`` alternations of ``n`` frames each.
    """
    import torch

    from etem.models.inputs import image_input, normalize
    from etem.movies.inference import TiledRunner

    frames = movie.read(0, n)
    x = image_input(normalize(frames, dose), dose, False)
    net = model.module.eval()
    tiled = TiledRunner(model, tile_px=256, overlap_px=32, batch_size=4, precision="auto")
    whole = TiledRunner(
        model, tile_px=frames.shape[-1], overlap_px=0, batch_size=1, precision="auto"
    )
    times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    net_fp32 = _model().module.eval()  # a separate copy in the default (contiguous) layout
    for _ in range(rounds + 1):  # first round warms up
        t0 = time.perf_counter()
        with torch.no_grad():
            for f in x:
                net_fp32(torch.from_numpy(f)[None])
        times["a"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tiled.run(x)
        times["b"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        whole.run(x)
        times["c"].append(time.perf_counter() - t0)
    del net
    med = {k: float(np.median(v[1:])) for k, v in times.items()}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "fps": n / med["b"],
        "naive_fps": n / med["a"],
        "whole_fps": n / med["c"],
        "speedup_tiled": med["a"] / med["b"],
        "speedup_whole": med["a"] / med["c"],
        "seconds": sum(sum(v) for v in times.values()),
        "peak_rss_mib": rss,
        "frames": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, nargs=2, default=[8, 16], help="two movie lengths")
    ap.add_argument("--size", type=int, default=1024, help="frame size [px]")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--modes", nargs="+", default=["naive", "streamed", "apply", "ab"])
    ap.add_argument("--out", type=Path, help="write the markdown table here")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "MOVIE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_mode(args.child[0], args.child[1], args.threads)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            movie = Path(tmp) / f"movie_{n}.h5"
            make_movie(movie, n, args.size)
            for mode in args.modes:
                if mode == "ab" and n != args.frames[-1]:
                    continue
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--threads",
                        str(args.threads),
                        "--child",
                        mode,
                        str(movie),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                res = json.loads(out.stdout.strip().splitlines()[-1])
                res["mode"] = mode
                rows.append(res)
                print(
                    f"{mode:9s} {n:4d} frames: {res['fps']:.3f} frames/s, "
                    f"peak RSS {res['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    import torch

    from etem.models.predict import bf16_supported

    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {args.threads}, bf16 {'yes' if bf16_supported(torch.device('cpu')) else 'no'}"
    )
    date = dt.date.today().isoformat()
    cmd = "python benchmarks/movie.py " + " ".join(sys.argv[1:])
    by = {(r["mode"], r["frames"]): r for r in rows}
    n_long = args.frames[-1]
    lines = [
        "# Movie stage benchmark",
        "",
        f"Synthetic {args.size}x{args.size} movie, 0.5 e/px/frame, U-Net denoiser {ARCH} "
        "(demo config). naive = read all + per-frame fp32 forward; streamed = chunked, tiled "
        "(256 px, overlap 32), batched, inference_mode, channels-last, bf16 autocast if the "
        "CPU has native bf16; apply = whole `etem apply` pipeline.",
        "",
        "| figure | value | command | machine | date |",
        "|---|---|---|---|---|",
    ]
    tail = f"`{cmd}` | {machine} | {date} |"
    for r in [r for r in rows if r["mode"] != "ab"]:
        lines.append(f"| {r['mode']} frames/s ({r['frames']} frames) | {r['fps']:.3f} | {tail}")
        lines.append(
            f"| {r['mode']} peak RSS ({r['frames']} frames) | {r['peak_rss_mib']:.0f} MiB | {tail}"
        )
    for r in rows:
        if r["mode"] == "ab":
            lines.append(f"| A/B interleaved: naive fp32 frames/s | {r['naive_fps']:.3f} | {tail}")
            lines.append(
                f"| A/B interleaved: tiled bf16 channels-last frames/s | {r['fps']:.3f} | {tail}"
            )
            lines.append(
                f"| A/B interleaved: whole-frame bf16 channels-last frames/s | "
                f"{r['whole_fps']:.3f} | {tail}"
            )
            lines.append(f"| A/B speed-up tiled / naive | {r['speedup_tiled']:.2f}x | {tail}")
            lines.append(f"| A/B speed-up whole-frame / naive | {r['speedup_whole']:.2f}x | {tail}")
    if ("naive", n_long) in by and ("streamed", n_long) in by:
        sp = by[("streamed", n_long)]["fps"] / by[("naive", n_long)]["fps"]
        lines.append(
            f"| denoising speed-up streamed / naive ({n_long} frames) | {sp:.2f}x | {tail}"
        )
    for mode in args.modes:
        a, b = by.get((mode, args.frames[0])), by.get((mode, n_long))
        if a and b:
            lines.append(
                f"| {mode} peak RSS growth {args.frames[0]} -> {n_long} frames | "
                f"{b['peak_rss_mib'] - a['peak_rss_mib']:+.0f} MiB | `{cmd}` | {machine} | {date} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
