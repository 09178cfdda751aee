"""Planning cost of the full campaign: wall time and job count of a Snakemake dry run.

Usage: .venv/bin/python benchmarks/plan.py [--config config/config.yaml] [--repeats 3]
Prints the median wall time of ``snakemake -n`` and the number of jobs it plans.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    snakemake = str(Path(sys.executable).parent / "snakemake")
    times, jobs = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = subprocess.run(
                [snakemake, "-n", "--quiet", "rules", "--configfile", args.config,
                 "--config", f"results_dir={tmp}/results"],
                cwd=ROOT, capture_output=True, text=True, check=True,
                env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            )
            times.append(time.perf_counter() - t0)
            text = out.stdout + out.stderr
            m = re.search(r"^total\s+(\d+)", text, flags=re.MULTILINE)
            jobs = int(m.group(1)) if m else None
    print(f"dry run of {args.config}: median {statistics.median(times):.2f} s over "
          f"{args.repeats} runs, {jobs} jobs planned")


if __name__ == "__main__":
    main()
