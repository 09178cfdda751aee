"""Benchmark of the movie stage: frames/s and peak memory of streamed apply vs a naive loop.

Measured on a synthetic 1024 x 1024 counting-mode movie (Gaussian columns on a lattice,
Poisson counts at 0.5 e/px/frame) with the campaign's U-Net denoiser architecture:

* ``naive``: read the whole movie into memory, then one fp32 forward pass per full frame
  (no batching, no tiling, default memory layout), outputs collected in a list;
* ``streamed``: the apply stage's inference path (``etem.models.inference.TiledRunner``):
  chunks of 8 frames, tiles of ``--tile`` px (default 1024 = whole 1024² frames, the
  ``apply.inference.tile_px`` default) with 32 px overlap, batches of ``--batch`` tiles,
  ``torch.inference_mode``, channels-last, a bf16 copy of the network where the CPU/GPU
  supports bf16 natively;
* ``apply``: the whole ``etem apply`` pipeline (drift, denoising, column finding, tracking,
  likelihood, events, all outputs) through :func:`etem.movies.apply.apply_movie`;
* ``ab``: the denoising alone, interleaved in one process on the same 2 frames (medians of
  ``--rounds`` alternations): naive; the previous streamed path (bf16 autocast, channels-last,
  whole frame); TiledRunner at each ``--ab-tiles`` size; plus the numerical difference of
  each to the fp32 output and the PSNR of each against the noise-free movie;
* ``columns``: ``find_columns`` on a denoised-like 1024² frame (the noise-free lattice plus
  Gaussian noise), and, with ``--old-columns FILE`` (a copy of an earlier
  ``etem/evaluation/columns.py``), an interleaved A/B against it with the differences of
  the found columns.

Each measurement runs in its own process so that peak RSS (``ru_maxrss``) is its own; every
mode runs at two movie lengths to show whether memory grows with the length. The network is
the demo campaign's trained denoiser (``results/demo/models/denoiser.pt``) when present,
else the same architecture with random weights (speed does not depend on the weights).

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
DEMO_MODEL = ROOT / "results" / "demo" / "models" / "denoiser.pt"


def clean_frame(size: int) -> np.ndarray:
    """Noise-free intensity (vacuum = 1): Gaussian columns (sigma 2.5 px) every 16 px."""
    spacing, sigma = 16.0, 2.5
    xx = np.arange(size, dtype=np.float32)
    # separable lattice of Gaussian columns: sum of 1D Gaussians in x times in y
    g = (np.arange(int(size // spacing)) + 0.5) * spacing
    gx = np.exp(-((xx[None, :] - g[:, None]) ** 2) / (2 * sigma**2)).sum(0)
    return (1.0 + 1.5 * np.outer(gx, gx)).astype(np.float32)


def make_movie(path: Path, n_frames: int, size: int, dose: float = 0.5, seed: int = 0) -> None:
    """Write a synthetic counting-mode movie (etem HDF5 contract) frame by frame."""
    import h5py

    clean = clean_frame(size)
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset(
            "frames", shape=(n_frames, size, size), dtype=np.uint16, chunks=(1, size, size)
        )
        for t in range(n_frames):
            ds[t] = rng.poisson(clean * dose)
        fh.attrs.update(pixel_size_A=0.2, frame_time_s=0.025, dose_e_per_px_per_frame=dose)


def _model(path: str | None = None):  # type: ignore[no-untyped-def]
    import torch

    from etem.models.factory import build_model
    from etem.models.io import LoadedModel, load

    if path:
        return load(path)
    if DEMO_MODEL.exists():
        return load(str(DEMO_MODEL))
    torch.manual_seed(0)
    return LoadedModel(build_model(ARCH), {"kind": "denoiser", "pixel_size_A": 0.2})


def run_mode(mode: str, movie: str, opts: argparse.Namespace) -> dict[str, float]:
    """One measurement (in this process): frames/s and peak RSS [MiB]."""
    import torch

    torch.set_num_threads(opts.threads)
    from etem.frames.readers import open_movie

    if mode == "columns":
        return run_columns(opts)
    model = _model(opts.model)
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
        from etem.data.inputs import image_input, normalize
        from etem.models.inference import TiledRunner

        runner = TiledRunner(
            model, tile_px=opts.tile, overlap_px=32, batch_size=opts.batch, precision="auto"
        )
        for _, chunk in m.iter_chunks(8):
            runner.run(image_input(normalize(chunk, dose), dose, False))
    elif mode == "apply":
        from etem.config import load_config
        from etem.movies.apply import ApplyModels, apply_movie

        cfg = load_config(
            None,
            {
                "tracking.enabled": False,
                "apply.io.chunk_frames": 8,
                "apply.events.calibration_frames": 4,
                "apply.io.preview_max_frames": 0,
                "apply.inference.tile_px": opts.tile,
                "apply.inference.batch_size": opts.batch,
            },
        )
        with tempfile.TemporaryDirectory() as tmp:
            apply_movie(m, tmp, cfg, ApplyModels(denoiser=model))
    elif mode == "ab":
        return run_ab(model, m, dose, opts.ab_tiles, opts.rounds)
    else:
        raise ValueError(mode)
    elapsed = time.perf_counter() - t0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"fps": n / elapsed, "seconds": elapsed, "peak_rss_mib": rss_mib, "frames": n}


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    """PSNR [dB] of ``x`` against ``ref`` with the peak of ``ref`` as signal."""
    mse = float(np.mean((x.astype(np.float64) - ref) ** 2))
    return 10 * np.log10(float(ref.max()) ** 2 / mse)


def run_ab(model, movie, dose: float, tiles: list[int], rounds: int = 3, n: int = 2) -> dict:  # type: ignore[no-untyped-def]
    """Interleaved A/B of the denoising alone on the same frames (robust to background load).

    ``naive``: per full frame, fp32, default (contiguous) layout, ``no_grad``;
    ``autocast``: the previous streamed path (bf16 autocast, channels-last, whole frame);
    ``t<px>``: TiledRunner (bf16 copy of the network where native) with tiles of <px> and
    32 px overlap (batches of 4 tiles; the whole frame when <px> >= the frame). Medians of
    ``rounds`` alternations of ``n`` frames each, after a warm-up round.
    """
    import copy

    import torch

    from etem.data.inputs import image_input, normalize
    from etem.models.inference import TiledRunner

    frames = movie.read(0, n)
    x = image_input(normalize(frames, dose), dose, False)
    size = frames.shape[-1]
    net_fp32 = copy.deepcopy(model.module).eval()  # default (contiguous) layout, fp32
    net_cl = copy.deepcopy(model.module).eval().to(memory_format=torch.channels_last)

    def naive() -> np.ndarray:
        with torch.no_grad():
            return np.stack([net_fp32(torch.from_numpy(f)[None])[0].numpy() for f in x])

    def autocast() -> np.ndarray:
        outs = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            for f in x:
                xt = torch.from_numpy(f)[None].contiguous(memory_format=torch.channels_last)
                outs.append(net_cl(xt)[0].float().numpy())
        return np.stack(outs)

    variants = {"naive": naive, "autocast": autocast}
    for t in tiles:
        runner = TiledRunner(
            model, tile_px=t, overlap_px=32 if t < size else 0,
            batch_size=4 if t < size else 1, precision="auto",
        )
        variants[f"t{t}"] = lambda r=runner: r.run(x)
    outs = {k: f() for k, f in variants.items()}  # warm-up round, also the outputs
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for k, f in variants.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    clean = clean_frame(size)
    ref = outs["naive"][:, 0]
    res: dict = {"frames": n, "variants": {}}
    for k, v in times.items():
        out = outs[k][:, 0]
        d = np.abs(out.astype(np.float64) - ref)
        res["variants"][k] = {
            "fps": n / float(np.median(v)),
            "speedup": float(np.median(times["naive"]) / np.median(v)),
            "max_abs_diff": float(d.max()),
            "max_rel_diff": float(d.max() / (ref.max() - ref.min())),
            "rms_diff": float(np.sqrt(np.mean(d**2))),
            "psnr_db": float(np.mean([_psnr(o, clean) for o in out])),
        }
    res["fps"] = max(r["fps"] for k, r in res["variants"].items() if k.startswith("t"))
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["trained"] = bool(DEMO_MODEL.exists())
    return res


def run_columns(opts: argparse.Namespace, size: int = 1024) -> dict:
    """find_columns on a denoised-like frame; interleaved A/B against ``--old-columns``."""
    import importlib.util

    from scipy.spatial import cKDTree

    from etem.analysis import columns as new

    rng = np.random.default_rng(1)
    img = clean_frame(size).astype(np.float64) + rng.normal(0, 0.1, (size, size))
    spacing = 16.0
    g = (np.arange(int(size // spacing)) + 0.5) * spacing
    truth = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)  # (x, y) [px]
    impls = {"new": new}
    if opts.old_columns:
        spec = importlib.util.spec_from_file_location("columns_old", opts.old_columns)
        old = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(old)  # type: ignore[union-attr]
        impls["old"] = old
    res: dict = {"frames": 1, "columns": {}}
    for refine in ("centroid", "gaussian"):
        kw = {"pixel_size_A": 0.2, "min_sigma_A": 0.3, "max_sigma_A": 1.2, "threshold": 0.05,
              "refine": refine}
        found = {k: m.find_columns(img, **kw) for k, m in impls.items()}  # warm-up
        times: dict[str, list[float]] = {k: [] for k in impls}
        for _ in range(opts.rounds):
            for k, m in impls.items():
                t0 = time.perf_counter()
                m.find_columns(img, **kw)
                times[k].append(time.perf_counter() - t0)
        row: dict = {"n_columns": len(found["new"])}
        for k, df in found.items():
            p = df[["x_px", "y_px"]].to_numpy()
            dt, _ = cKDTree(p).query(truth)
            dp, _ = cKDTree(truth).query(p)
            row[k] = {
                "seconds": float(np.median(times[k])),
                "recall": float(np.mean(dt < 2.5)),
                "precision": float(np.mean(dp < 2.5)),
                "rmse_px": float(np.sqrt(np.mean(dt[dt < 2.5] ** 2))),
            }
        if "old" in found:
            pa = found["old"][["x_px", "y_px"]].to_numpy()
            d, _ = cKDTree(found["new"][["x_px", "y_px"]].to_numpy()).query(pa)
            row["max_pos_diff_px"] = float(d.max())
            row["speedup"] = row["old"]["seconds"] / row["new"]["seconds"]
        res["columns"][refine] = row
    res["fps"] = 1.0 / res["columns"]["centroid"]["new"]["seconds"]
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _rows(rows: list[dict], args: argparse.Namespace) -> list[tuple[str, str]]:
    """(figure, value) rows of the markdown table."""
    out: list[tuple[str, str]] = []
    sz = f"{args.size}²"
    by = {(r["mode"], r["frames"]): r for r in rows}
    for r in rows:
        if r["mode"] in ("naive", "streamed", "apply"):
            what = {"naive": "naive loop", "streamed": f"streamed (tile {args.tile})",
                    "apply": f"whole `etem apply` (tile {args.tile})"}[r["mode"]]
            out.append((f"{what} {sz}, {r['frames']} frames", f"{r['fps']:.3g} frames/s, "
                        f"peak RSS {r['peak_rss_mib']:.0f} MiB"))
        elif r["mode"] == "ab":
            w = "trained demo denoiser" if r.get("trained") else "random weights"
            for k, v in r["variants"].items():
                label = {
                    "naive": "naive fp32",
                    "autocast": "previous path (bf16 autocast, channels-last, whole frame)",
                }.get(k, f"streamed bf16 weights, tile {k[1:]}")
                out.append((
                    f"denoising {sz}, A/B interleaved ({w}): {label}",
                    f"{v['fps']:.3g} frames/s ({v['speedup']:.2f}x); vs fp32 max abs diff "
                    f"{v['max_abs_diff']:.2g} ({v['max_rel_diff']:.1e} of range), PSNR "
                    f"{v['psnr_db']:.2f} dB",
                ))
        elif r["mode"] == "columns":
            for refine, c in r["columns"].items():
                v = f"{c['new']['seconds'] * 1e3:.0f} ms, {c['n_columns']} columns, " \
                    f"R/P {c['new']['recall']:.3f}/{c['new']['precision']:.3f}"
                if "old" in c:
                    v += (f"; previous code {c['old']['seconds'] * 1e3:.0f} ms "
                          f"(R/P {c['old']['recall']:.3f}/{c['old']['precision']:.3f}), "
                          f"{c['speedup']:.1f}x, max position diff {c['max_pos_diff_px']:.1g} px")
                out.append((f"find_columns 1024² frame ({refine})", v))
    for mode in ("naive", "streamed", "apply"):
        a, b = by.get((mode, args.frames[0])), by.get((mode, args.frames[-1]))
        if a and b and a is not b:
            out.append((f"peak RSS {mode} {sz}, {args.frames[0]} -> {args.frames[-1]} frames",
                        f"{a['peak_rss_mib']:.0f} -> {b['peak_rss_mib']:.0f} MiB "
                        f"({b['peak_rss_mib'] - a['peak_rss_mib']:+.0f})"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, nargs=2, default=[8, 16], help="two movie lengths")
    ap.add_argument("--size", type=int, default=1024, help="frame size [px]")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--modes", nargs="+", default=["naive", "streamed", "apply", "ab"],
                    choices=["naive", "streamed", "apply", "ab", "columns"])
    ap.add_argument("--tile", type=int, default=1024, help="streamed/apply tile [px]")
    ap.add_argument("--batch", type=int, default=4, help="streamed/apply tiles per batch")
    ap.add_argument("--ab-tiles", type=int, nargs="+", default=[1024, 256, 128],
                    help="tile sizes [px] in the A/B")
    ap.add_argument("--rounds", type=int, default=3, help="A/B alternations (medians)")
    ap.add_argument("--old-columns", help="earlier columns.py to compare find_columns with")
    ap.add_argument("--model", help="denoiser .pt to use (default: the demo campaign's, else "
                    "random weights of its architecture)")
    ap.add_argument("--out", type=Path, help="write the markdown table rows here")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "MOVIE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_mode(args.child[0], args.child[1], args)))
        return
    rows = []
    load0 = _load()
    passthrough = [a for a in sys.argv[1:]]
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            movie = Path(tmp) / f"movie_{n}.h5"
            make_movie(movie, n, args.size)
            for mode in args.modes:
                if mode in ("ab", "columns") and n != args.frames[-1]:
                    continue
                out = subprocess.run(
                    [sys.executable, __file__, *passthrough, "--child", mode, str(movie)],
                    capture_output=True, text=True, check=True,
                )
                res = json.loads(out.stdout.strip().splitlines()[-1])
                res["mode"] = mode
                rows.append(res)
                print(f"{mode:9s} {n:4d} frames: {json.dumps(res)}", flush=True)
    import torch

    from etem.models.inference import bf16_supported

    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores (shared; load {load0} -> {_load()}), "
        f"torch {torch.__version__}, {args.threads} threads, native bf16 "
        f"{'yes' if bf16_supported(torch.device('cpu')) else 'no'}"
    )
    date = dt.date.today().isoformat()
    cmd = "python benchmarks/movie.py " + " ".join(sys.argv[1:])
    lines = [f"| {f} | {v} | `{cmd}` | {machine} | {date} |" for f, v in _rows(rows, args)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
