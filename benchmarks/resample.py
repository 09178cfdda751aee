"""Time of apply's count-conserving resampling of one frame to the model's pixel size.

For each ratio r (model pixel / movie pixel) and dose [e/px] a Poisson frame of ``--size``²
pixels is resampled by :func:`etem.frames.preprocess.resample_by_overlap` (the path etem apply
takes for non-integer ratios; counts placed one by one at low dose, binomial row/column
splits above), ``--rounds`` times; medians of wall and CPU time [ms]. For comparison, the
same frame through the integer paths (2x2 binning, 2x2 count splitting) and a gain-normalised
(non-integer) frame through the deterministic spread. Prints markdown table rows with the
machine, date and load.

Usage::

    python benchmarks/resample.py [--size 1024] [--ratios 1.37 0.73] [--doses 0.5 2 8 50]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from collections.abc import Callable

import numpy as np

from etem.frames.preprocess import bin_frames, resample_by_overlap, split_counts


def _time(f: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median wall and CPU time [ms] of ``f`` (after one warm-up call)."""
    f()
    wall, cpu = [], []
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        f()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--ratios", type=float, nargs="+", default=[1.37, 0.73])
    ap.add_argument("--doses", type=float, nargs="+", default=[0.5, 2.0, 8.0, 50.0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    g = np.random.default_rng(0)
    n = args.size
    where = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"load {os.getloadavg()[0]:.1f}")
    date = datetime.date.today().isoformat()
    cmd = "`python benchmarks/resample.py " + " ".join(
        [f"--size {n}", "--ratios", *map(str, args.ratios), "--doses", *map(str, args.doses)]
    ) + "`"
    print("| path | ratio | dose e/px | output | wall ms | CPU ms | command | machine | date |")
    print("|---|---|---|---|---|---|---|---|---|")

    def row(path: str, ratio: object, dose: object, out: np.ndarray, t: tuple[float, float]
            ) -> None:
        print(f"| {path} | {ratio} | {dose} | {out.shape[0]}x{out.shape[1]} | {t[0]:.1f} | "
              f"{t[1]:.1f} | {cmd} | {where} | {date} |", flush=True)

    for dose in args.doses:
        frame = g.poisson(dose, (n, n)).astype(np.float32)
        for r in args.ratios:
            out = resample_by_overlap(frame, r, 0, 0)
            assert out.sum() <= frame.sum()
            row("resample_by_overlap (counts)", r, dose, out,
                _time(lambda f=frame, r=r: resample_by_overlap(f, r, 0, 0), args.rounds))
        row("bin_frames 2x2 (integer path)", 2, dose, bin_frames(frame[None], 2)[0],
            _time(lambda f=frame: bin_frames(f[None], 2), args.rounds))
        row("split_counts 2x2 (integer path)", 0.5, dose, split_counts(frame, 2, 0, 0),
            _time(lambda f=frame: split_counts(f, 2, 0, 0), args.rounds))
    gain = g.gamma(2.0, 0.5, (n, n)).astype(np.float32)
    for r in args.ratios:
        row("resample_by_overlap (non-integer frame: spread)", r, 1.0,
            resample_by_overlap(gain, r, 0, 0),
            _time(lambda r=r: resample_by_overlap(gain, r, 0, 0), args.rounds))


if __name__ == "__main__":
    main()
