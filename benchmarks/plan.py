"""Planning cost of a campaign: wall time and job count of a Snakemake dry run.

Usage:
  .venv/bin/python benchmarks/plan.py [--config config/config.yaml] [--repeats 3]
  .venv/bin/python benchmarks/plan.py --sheet-movies 50 --frames 20000   # a movie sheet

Prints the median wall time of ``snakemake -n`` and the number of jobs it plans. With
``--sheet-movies N`` the campaign also runs a sheet of N movies of ``--frames`` frames each:
N tiny MRC files are written and their frame counts faked in the frame-count cache
(``.snakemake/etem/movie_shapes.json``, keyed by path + size + mtime), as after a first
planning of real movies of that length; the per-movie shard jobs are planned from it.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np

from etem.config import load_config
from etem.movies.sheet import DEFAULT_CACHE, ShapeCache

ROOT = Path(__file__).resolve().parents[1]


def fake_sheet(tmp: Path, n_movies: int, n_frames: int) -> Path:
    """N tiny movies whose cached frame count is ``n_frames``, and their sheet."""
    cache = ShapeCache(ROOT / DEFAULT_CACHE)
    lines = ["name\tpath\tpixel_size_A\tgroup"]
    for i in range(n_movies):
        p = tmp / f"movie_{i:03d}.mrc"
        with mrcfile.new(p) as m:
            m.set_data(np.full((4, 16, 16), i % 7, dtype=np.uint16))
        cache.entries[ShapeCache.key((str(p),))] = [n_frames, 4096, 4096]
        lines.append(f"run{i:03d}\t{p}\t0.5\tgroup{i % 5}")
    cache.dirty = True
    cache.save()
    sheet = tmp / "movies.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sheet-movies", type=int, default=0, help="movies in a generated sheet")
    ap.add_argument("--frames", type=int, default=20000, help="frames per sheet movie")
    args = ap.parse_args()
    snakemake = str(Path(sys.executable).parent / "snakemake")
    times, jobs, counts = [], None, {}
    with tempfile.TemporaryDirectory() as tmp:
        configs = [args.config]
        if args.sheet_movies:
            sheet = fake_sheet(Path(tmp), args.sheet_movies, args.frames)
            overlay = Path(tmp) / "sheet.yaml"
            overlay.write_text(f"movies:\n  sheet: {sheet}\n")
            configs.append(str(overlay))
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = subprocess.run(
                [snakemake, "-n", "--quiet", "rules", "--configfile", *configs,
                 "--config", f"results_dir={tmp}/results"],
                cwd=ROOT, capture_output=True, text=True, check=True,
                env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            )
            times.append(time.perf_counter() - t0)
            text = out.stdout + out.stderr
            m = re.search(r"^total\s+(\d+)", text, flags=re.MULTILINE)
            jobs = int(m.group(1)) if m else None
            counts = dict(re.findall(r"^(apply_\w+)\s+(\d+)$", text, flags=re.MULTILINE))
    what = args.config + (f" + a sheet of {args.sheet_movies} movies x {args.frames} frames"
                          if args.sheet_movies else "")
    print(f"dry run of {what}: median {statistics.median(times):.2f} s over {args.repeats} "
          f"runs ({', '.join(f'{t:.2f}' for t in times)} s), {jobs} jobs planned "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())})")
    if args.sheet_movies:
        a = load_config(ROOT / args.config).apply.io
        step = math.ceil(a.shard_frames / a.chunk_frames) * a.chunk_frames
        print(f"  apply.io.shard_frames {a.shard_frames} (x{a.chunk_frames}-frame chunks: {step}) "
              f"-> {math.ceil(args.frames / step)} shard jobs per movie")


if __name__ == "__main__":
    main()
