"""Cluster-side figures: DAG planning time and job count of the campaigns, test-cluster timings.

    .venv/bin/python benchmarks/cluster.py               # planning figures -> benchmarks/cluster.md
    .venv/bin/python benchmarks/cluster.py --slurm       # + single-node SLURM timings (root)

Planning: wall time of ``snakemake -n --quiet`` (median of --repeats runs, each a fresh process,
so Python/Snakemake start-up is included) and the number of jobs in the DAG. SLURM: start-up of
the test cluster (munged + slurmctld + slurmd until the node is idle) and the wall time of the
mini workflow (7 jobs, 3 of them SLURM jobs) through ``profiles/slurm``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def machine() -> str:
    """Short description of this machine."""
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
            f"load {load:.1f}")


def plan(configfile: str, repeats: int, profile: str | None = None) -> tuple[float, int, str]:
    """Median wall time [s] and job count of a dry run."""
    cmd = [str(BIN / "snakemake"), "-n", "--quiet", "rules", "--configfile", configfile]
    if profile:
        cmd[1:1] = ["--profile", profile]
    times, jobs = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"))
        times.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
        m = re.search(r"^total\s+(\d+)", res.stdout + res.stderr, re.M)
        jobs = int(m.group(1)) if m else 0
    shown = "snakemake -n --quiet rules " + (f"--profile {profile} " if profile else "")
    return statistics.median(times), jobs, shown + f"--configfile {configfile}"


def slurm_figures() -> list[tuple[str, str, str]]:
    """Test-cluster start-up and the mini workflow through the SLURM profile."""
    rows = []
    state = Path(tempfile.mkdtemp(prefix="etem-bench-slurm-"))
    state.chmod(0o755)
    env = dict(os.environ, ETEM_SLURM_DIR=str(state), PATH=f"{BIN}:{os.environ['PATH']}")
    script = REPO / "tests" / "cluster" / "slurm_cluster.sh"
    try:
        t0 = time.perf_counter()
        subprocess.run(["bash", str(script), "start"], env=env, check=True, timeout=120)
        rows.append(("test cluster start-up (munged+slurmctld+slurmd, node idle)",
                     f"{time.perf_counter() - t0:.1f} s", "tests/cluster/slurm_cluster.sh start"))
        work = state / "mini"
        work.mkdir()
        cmd = [str(BIN / "snakemake"), "-s", str(REPO / "tests/cluster/mini/Snakefile"),
               "--profile", str(REPO / "profiles/slurm"),
               "--profile", str(REPO / "tests/cluster/ci_profile"),
               "--config", f"etem_config={REPO / 'config/smoke.yaml'}", "-d", str(work)]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, timeout=600, capture_output=True)
        rows.append(("mini workflow via profiles/slurm (3 SLURM jobs, 1 grouped; 2 s first poll)",
                     f"{time.perf_counter() - t0:.1f} s",
                     "snakemake -s tests/cluster/mini/Snakefile --profile profiles/slurm "
                     "--profile tests/cluster/ci_profile"))
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
    return rows


def main() -> None:
    """Measure and write benchmarks/cluster.md."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slurm", action="store_true", help="also time the test cluster (root)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "cluster.md"))
    args = ap.parse_args()
    rows = []
    for cfg in ("config/config.yaml", "config/demo.yaml"):
        t, jobs, cmd = plan(cfg, args.repeats)
        rows.append((f"dry-run planning time, {cfg} (median of {args.repeats})", f"{t:.1f} s", cmd))
        rows.append((f"jobs in the DAG, {cfg}", str(jobs), cmd))
    t, jobs, cmd = plan("config/config.yaml", 1, profile="profiles/slurm")
    rows.append(("jobs in the DAG with profiles/slurm (grouping happens at submission)",
                 str(jobs), cmd))
    if args.slurm:
        rows += slurm_figures()
    today = date.today().isoformat()
    lines = ["# Cluster benchmarks", "", "| figure | value | command | machine | date |",
             "|---|---|---|---|---|"]
    lines += [f"| {f} | {v} | `{c}` | {machine()} | {today} |" for f, v, c in rows]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
