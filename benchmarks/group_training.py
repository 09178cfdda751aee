"""Memory of the blind-spot network trained on a group of movies, streamed from disk.

Writes ``n_movies`` movies of ``frames`` frames (``size`` px, Poisson lattice at 1 e/px)
per length in ``--frames`` and per format in ``--formats`` (``tiff``: TIFF stacks; ``h5``:
etem's HDF5 movies, ``/frames`` and ``/clean`` chunked per frame, lzf, as the simulation
writes them), then, in a fresh process per case, trains the unsupervised network for
``--steps`` steps on the group with frames read per patch (GROUP_MEMORY_BYTES = 0) and
reports the peak resident memory. Constant memory in movie length is the claim.

    .venv/bin/python benchmarks/group_training.py --frames 100 800 --formats tiff h5 \
        --out benchmarks/group_training.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import tifffile

from etem.testing import lattice_image


def write_group(folder: Path, n_movies: int, frames: int, size: int,
                fmt: str = "tiff") -> list[Path]:
    """``n_movies`` movies of a Poisson lattice at 1 e/px/frame, written frame by frame:
    TIFF stacks (``tiff``) or etem's HDF5 movies with their clean frames (``h5``)."""
    paths = []
    for i in range(n_movies):
        rng = np.random.default_rng(i)
        clean, _, _ = lattice_image(size, 0.2, offset_px=float(i))
        if fmt == "h5":
            path = folder / f"movie_{i}.h5"
            with h5py.File(path, "w") as f:
                kw = {"chunks": (1, size, size), "compression": "lzf", "shuffle": True}
                noisy = f.create_dataset("frames", (frames, size, size), np.float32, **kw)
                ideal = f.create_dataset("clean", (frames, size, size), np.float32, **kw)
                f.attrs["pixel_size_A"] = 0.2
                for t in range(frames):
                    noisy[t] = rng.poisson(clean).astype(np.float32)
                    ideal[t] = clean
        else:
            path = folder / f"movie_{i}.tif"
            with tifffile.TiffWriter(path, bigtiff=True) as tif:
                for _ in range(frames):
                    tif.write(rng.poisson(clean).astype(np.float32), contiguous=True)
        paths.append(path)
    return paths


#: How the table names a format.
FORMATS = {"tiff": "TIFF stack", "h5": "etem HDF5 (/frames + /clean)"}


def train_once(paths: list[str], steps: int, results: str) -> dict[str, float]:
    """Train on the group (frames streamed) and return wall time and peak RSS."""
    import torch

    from etem.config import load_config
    from etem.training import tasks
    from etem.training.run import train_network

    torch.set_num_threads(1)
    tasks.GROUP_MEMORY_BYTES = 0  # stream every movie, whatever its size
    cfg = load_config({"name": "group", "seed": 1, "results_dir": results,
                       "tracking": {"enabled": False},
                       "training": {"unsupervised": {
                           "steps": steps, "batch_size": 4, "patch_px": 64,
                           "val_every_steps": steps, "val_samples": 4, "val_patch_px": 64,
                           "model": {"depth": 2, "base_channels": 8}}}})
    t0 = time.perf_counter()
    train_network("unsupervised", cfg, [Path(p) for p in paths], Path(results) / "u.pt",
                  panels=False)
    return {"seconds": time.perf_counter() - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[100, 400])
    ap.add_argument("--formats", nargs="+", choices=["tiff", "h5"], default=["tiff", "h5"])
    ap.add_argument("--n-movies", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        print(json.dumps(train_once(args.worker[:-1], args.steps, args.worker[-1])))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            for frames in args.frames:
                folder = Path(tmp) / f"{fmt}{frames}"
                folder.mkdir()
                paths = write_group(folder, args.n_movies, frames, args.size, fmt)
                disk_mb = sum(p.stat().st_size for p in paths) / 2**20
                out = subprocess.run(
                    [sys.executable, __file__, "--steps", str(args.steps), "--worker",
                     *map(str, paths), str(folder / "results")],
                    capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                # what the group would hold read whole (float32; an HDF5 movie's clean too)
                whole_mb = args.n_movies * frames * args.size**2 * 4 * (1 + (fmt == "h5"))
                rows.append({"format": FORMATS[fmt], "frames_per_movie": frames,
                             "movies": args.n_movies, "movies_on_disk_mb": round(disk_mb),
                             "whole_mb": round(whole_mb / 2**20),
                             **{k: round(v, 1) for k, v in res.items()}})
                print(rows[-1], flush=True)
                for p in paths:  # disk space for the next case
                    p.unlink()
    text = ["| format | frames per movie | movies | on disk [MB] | read whole [MB] | "
            "peak RSS [MB] | wall [s] |", "|---|---|---|---|---|---|---|"]
    text += [f"| {r['format']} | {r['frames_per_movie']} | {r['movies']} | "
             f"{r['movies_on_disk_mb']} | {r['whole_mb']} | {r['peak_rss_mb']} | "
             f"{r['seconds']} |" for r in rows]
    head = (f"Group training of the blind-spot network, {args.n_movies} movies of "
            f"{args.size}² px per case, {args.steps} steps, frames streamed "
            f"(GROUP_MEMORY_BYTES = 0); {platform.node()}, {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d')}, load {os.getloadavg()[0]:.1f}.\n\n"
            f"Command: `.venv/bin/python benchmarks/group_training.py --frames "
            f"{' '.join(map(str, args.frames))} --formats {' '.join(args.formats)}`\n\n")
    if args.out:
        args.out.write_text(head + "\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
