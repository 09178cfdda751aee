"""Sharded apply: wall time of one movie with 1 vs 2 parallel shard jobs, and the peak memory
of each job against the movie length.

A generated lattice movie (``--frames`` frames of ``--size`` px, Poisson at 0.5 e/px/frame)
goes through ``etem apply-prepare``, then ``etem apply-shard`` over 1 or 2 frame ranges run
as parallel processes (each with ``--threads`` torch threads), then ``etem apply-gather``,
exactly as the workflow's rules call them. The denoiser is an untrained U-Net of the demo's
size (time per frame does not depend on the weights). Each command's peak RSS comes from
``/usr/bin/time -v``. Both layouts run in one invocation, so their ratio is measured side by
side.

    .venv/bin/python benchmarks/shards.py --frames 400 --size 512 --out benchmarks/shards.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from etem.config import load_config
from etem.models.factory import build_model
from etem.models.io import save_model
from etem.testing import lattice_movie, write_h5

ETEM = str(Path(sys.executable).parent / "etem")


def _timed(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _rss_mb(stderr: str) -> float:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(m.group(1)) / 1024 if m else float("nan")


def _finish(proc: subprocess.Popen[str]) -> float:
    _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(err[-2000:])
    return _rss_mb(err)


def run(movie: Path, model: Path, work: Path, n_frames: int, n_shards: int,
        threads: int) -> dict[str, float]:
    """Prepare, ``n_shards`` parallel shards, gather; wall times [s] and peak RSS [MB]."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    common = ["--denoiser", str(model), "--set", "tracking.enabled=false",
              "--set", "apply.inference.denoise_with=supervised",  # the network, not a filter
              "--set", "apply.preprocess.pixel_size_A=0.2"]
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    rss_prep = _finish(_timed([ETEM, "apply-prepare", "--movie", str(movie), "--out",
                               str(work / "prepare.h5"), *common], env))
    t1 = time.perf_counter()
    chunk = load_config(None).apply.io.chunk_frames
    per = -(-n_frames // n_shards // chunk) * chunk  # shard starts on chunk boundaries
    procs, shards = [], []
    for i in range(n_shards):
        start, stop = i * per, min(n_frames, (i + 1) * per)
        shards.append(work / f"shard_{i}.h5")
        procs.append(_timed([ETEM, "apply-shard", "--movie", str(movie), "--prepared",
                             str(work / "prepare.h5"), "--frames", f"{start}:{stop}", "--out",
                             str(shards[-1]), *common], env))
    rss_shard = max(_finish(p) for p in procs)
    t2 = time.perf_counter()
    rss_gather = _finish(_timed([ETEM, "apply-gather", "--movie", str(movie), "--prepared",
                                 str(work / "prepare.h5"), "--shards", *map(str, shards),
                                 "--out", str(work / "out"), *common], env))
    t3 = time.perf_counter()
    return {"prepare_s": t1 - t0, "shards_s": t2 - t1, "gather_s": t3 - t2, "total_s": t3 - t0,
            "rss_prepare_mb": rss_prep, "rss_shard_mb": rss_shard, "rss_gather_mb": rss_gather}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[400])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    arch = dict(kind="denoiser", depth=3, base_channels=16)  # config/demo.yaml's denoiser
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = save_model(Path(tmp) / "denoiser.pt", build_model(arch),
                           {"kind": "denoiser", "arch": arch, "pixel_size_A": 0.2})
        for n in args.frames:
            torch.manual_seed(0)
            movie = write_h5(lattice_movie(n_frames=n, size_px=args.size, event_frame=None,
                                           seed=1, dose_e_per_px_per_frame=0.5),
                             Path(tmp) / f"movie_{n}.h5")
            for shards, threads in ((1, 2), (2, 1)):
                r = run(movie, model, Path(tmp) / f"w{n}_{shards}", n, shards, threads)
                rows.append({"frames": n, "shards": shards, "threads": threads, **r})
                print(rows[-1], flush=True)
    lines = ["| frames | shards x threads | prepare [s] | shards [s] | gather [s] | total [s] | "
             "peak RSS prepare / shard / gather [MB] |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['frames']} | {r['shards']} x {r['threads']} | {r['prepare_s']:.1f} | "
                     f"{r['shards_s']:.1f} | {r['gather_s']:.1f} | {r['total_s']:.1f} | "
                     f"{r['rss_prepare_mb']:.0f} / {r['rss_shard_mb']:.0f} / "
                     f"{r['rss_gather_mb']:.0f} |")
    head = (f"Sharded apply of a generated {args.size}² movie, untrained demo-size denoiser; "
            f"{platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, load "
            f"{os.getloadavg()[0]:.1f}.\n\nCommand: `.venv/bin/python benchmarks/shards.py "
            f"--frames {' '.join(map(str, args.frames))} --size {args.size}`\n\n")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(head + text)


if __name__ == "__main__":
    main()
