"""Peak memory of the gather job (``etem apply-gather``) against the movie length.

For each ``--frames`` a generated lattice movie of ``--size`` px (the movie, untrained
demo-size U-Net and settings of ``benchmarks/shards.py``) goes through ``etem apply-prepare``
and one ``etem apply-shard`` over all frames, once, into ``--work``/w<frames>_<size>/ (kept
and reused: the shard stage is the slow part); then ``etem apply-gather`` runs under
``/usr/bin/time -v`` and its peak RSS and wall time are reported. The gather's memory should
not depend on the movie length (tracks, statistics, events, truth scoring all streamed).

    .venv/bin/python benchmarks/gather_rss.py --frames 250 2000 --size 256 --work /tmp/gather_rss
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from etem.models.factory import build_model
from etem.models.io import save_model
from etem.testing import lattice_movie, write_h5

ETEM = str(Path(sys.executable).parent / "etem")
ARCH = dict(kind="denoiser", depth=3, base_channels=16)  # config/demo.yaml's denoiser


def _common(w: Path) -> list[str]:
    return ["--denoiser", str(w / "denoiser.pt"), "--set", "tracking.enabled=false",
            "--set", "apply.inference.denoise_with=supervised",
            "--set", "apply.preprocess.pixel_size_A=0.2"]


def prepare(w: Path, n: int, size: int) -> None:
    """Movie, model, prepare.h5 and one shard over all frames in ``w`` (skipped when there)."""
    if (w / "shard_0.h5").is_file():
        return
    w.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_model(w / "denoiser.pt", build_model(ARCH),
               {"kind": "denoiser", "arch": ARCH, "pixel_size_A": 0.2})
    movie = write_h5(lattice_movie(n_frames=n, size_px=size, event_frame=None, seed=1,
                                   dose_e_per_px_per_frame=0.5), w / "movie.h5")
    subprocess.run([ETEM, "apply-prepare", "--movie", str(movie), "--out",
                    str(w / "prepare.h5"), *_common(w)], check=True)
    subprocess.run([ETEM, "apply-shard", "--movie", str(movie), "--prepared",
                    str(w / "prepare.h5"), "--frames", f"0:{n}", "--out",
                    str(w / "shard_0.h5"), *_common(w)], check=True)


def gather(w: Path) -> tuple[float, float]:
    """Wall time [s] and peak RSS [MiB] of ``etem apply-gather`` on the shard in ``w``."""
    shutil.rmtree(w / "out", ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", ETEM, "apply-gather", "--movie", str(w / "movie.h5"),
         "--prepared", str(w / "prepare.h5"), "--shards", str(w / "shard_0.h5"),
         "--out", str(w / "out"), *_common(w)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return time.perf_counter() - t0, int(m.group(1)) / 1024 if m else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[250, 2000])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--work", type=Path, required=True)
    args = ap.parse_args()
    lines = ["| frames | gather [s] | gather peak RSS [MiB] | load before |", "|---|---|---|---|"]
    for n in args.frames:
        w = args.work / f"w{n}_{args.size}"
        prepare(w, n, args.size)
        load = os.getloadavg()[0]
        wall, rss = gather(w)
        lines.append(f"| {n} | {wall:.1f} | {rss:.0f} | {load:.1f} |")
        print(lines[-1], flush=True)
    print(f"\n{args.size}² frames; {platform.node()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
