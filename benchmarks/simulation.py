"""Benchmark of the simulation stage: naive per-image abTEM vs etem's campaign path.

Measures in ONE run, on the same structures and grid:

(a) naive: per image a new ``abtem.Potential`` + multislice + CTF (+ the same detector step),
    i.e. :func:`etem.simulation.reference.abtem_image`;
(b) campaign: :class:`etem.simulation.images.ImageSimulator` (potential once per
    structure, one pass per tilt with exit planes, every defocus on stored exit waves),
    with and without label maps, for both FFT backends (deterministic pocketfft, FFTW);

and prints images/s, their ratio, the multislice time per slice against the FFT floor (two
FFTs per slice with the same FFT library and plans at the same grid), shard compression, and the
extrapolated full-campaign time. Threads: 1 FFT thread, dask synchronous, one process (the
campaign runs one such process per core).

Usage: ``.venv/bin/python benchmarks/simulation.py [--config config/config.yaml]
[--structures 6] [--naive-images 8] [--out benchmarks/simulation.md]``
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def _structures(config, n: int):
    """``n`` structures of the campaign's library (alternating families), built in memory."""
    from etem.structures.build import build
    from etem.structures.recipes import enumerate_recipes

    recipes = enumerate_recipes(config)
    pt = [r for r in recipes if getattr(r, "family", "") == "pt_on_ceo2"]
    ox = [r for r in recipes if getattr(r, "family", "") != "pt_on_ceo2"]
    rng = np.random.default_rng(0)
    pick = []
    for i in range(n):
        pool = pt if (i % 2 == 0 and pt) or not ox else ox
        pick.append(pool[int(rng.integers(len(pool)))])
    out = []
    for r in pick:
        atoms = build(r)
        out.append((str(atoms.info.get("structure_id")), str(atoms.info.get("family")), atoms))
    return out


def _campaign(cfg, structures, per_naive: int):
    """Time the campaign path (with/without labels) and, interleaved, the naive path."""
    from etem.simulation.images import ImageSimulator
    from etem.simulation.reference import abtem_image

    sim = cfg.simulation
    campaign = ImageSimulator(cfg)
    t0 = time.perf_counter()
    campaign.simulate(structures[0][2], structures[0][0], structures[0][1])
    warmup_s = time.perf_counter() - t0
    out = {"warmup_s": warmup_s, "with": [], "without": [], "n": [], "naive": [],
           "results": [], "campaign": campaign}
    for sid, fam, atoms in structures[1:]:
        t = time.perf_counter()
        res = campaign.simulate(atoms, sid, fam, with_labels=False)
        out["without"].append(time.perf_counter() - t)
        t = time.perf_counter()
        res = campaign.simulate(atoms, sid, fam)
        out["with"].append(time.perf_counter() - t)
        out["n"].append(len(res.params))
        out["results"].append(res)
        grid = campaign.grid_of(atoms)
        for row, img in list(zip(res.params, res.clean, strict=True))[:per_naive]:
            t = time.perf_counter()
            ref = abtem_image(atoms, grid, sim, exit_plane=row["exit_plane"],
                              tilt_mrad=(row["tilt_x_mrad"], row["tilt_y_mrad"]),
                              defocus_nm=row["defocus_nm"], seed=row["seed"])
            out["naive"].append(time.perf_counter() - t)
            err = float(np.abs(ref - img).max())
            assert err < 1e-3, f"{sid}: campaign image differs from abTEM by {err}"
    return out


def _multislice_vs_floor(cfg, atoms, grid):
    """Median multislice time per slice and the 2-FFT floor with the same plans [s]."""
    from etem.simulation.fft import complex_plan
    from etem.simulation.multislice import Multislice, build_sliced_potential

    sim = cfg.simulation
    t = time.perf_counter()
    sp = build_sliced_potential(atoms, grid, sim, sim.fft_threads)
    potential_s = time.perf_counter() - t
    ms = Multislice(sp, sim.fft_threads)
    ms.exit_waves_fourier((2.0, 1.0), [sp.n_slices - 1])
    plans = complex_plan(grid.gpts, sim.fft_threads, sim.fft_backend)
    slice_t, floor_t = [], []
    for _ in range(7):  # interleaved repeats, medians
        t = time.perf_counter()
        ms.exit_waves_fourier((2.0, 1.0), [sp.n_slices - 1])
        slice_t.append((time.perf_counter() - t) / sp.n_slices)
        t = time.perf_counter()
        for _k in range(sp.n_slices):
            plans.forward()
            plans.backward()
        floor_t.append((time.perf_counter() - t) / sp.n_slices)
    return potential_s, statistics.median(slice_t), statistics.median(floor_t), sp.n_slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--structures", type=int, default=6)
    parser.add_argument("--naive-images", type=int, default=8,
                        help="naive images timed per backend (spread over the structures)")
    parser.add_argument("--out", default="benchmarks/simulation.md")
    args = parser.parse_args()

    import pandas as pd

    from etem.config import load_config
    from etem.simulation.multislice import configure_abtem
    from etem.simulation.shard import write_shard

    base = load_config(args.config, {"tracking.enabled": False})
    configure_abtem(base.simulation.fft_threads, base.simulation.fft_backend)
    structures = _structures(base, args.structures + 1)
    per = max(1, args.naive_images // args.structures)
    date = _dt.date.today().isoformat()
    machine = f"{platform.node()} ({os.cpu_count()} cores), {platform.processor() or 'cpu'}"
    cmd = f"python benchmarks/simulation.py --config {args.config} --structures {args.structures}"
    rows: list[tuple[str, str]] = []
    n_struct = base.structures.total
    for backend in ("deterministic", "fftw"):
        cfg = load_config(args.config, {"tracking.enabled": False,
                                         "simulation.fft_backend": backend})
        sim = cfg.simulation
        m = _campaign(cfg, structures, per)
        naive_ips = 1.0 / statistics.mean(m["naive"])
        ips = sum(m["n"]) / sum(m["with"])
        ips_nolab = sum(m["n"]) / sum(m["without"])
        atoms = structures[1][2]
        grid = m["campaign"].grid_of(atoms)
        pot_s, ms_slice, floor, n_slices = _multislice_vs_floor(cfg, atoms, grid)
        mean_s = statistics.mean(m["with"])
        n_jobs = sim.n_shards
        job_overhead_s = 6.0 + m["warmup_s"] - mean_s  # imports + planning/JIT per job
        total_core_s = n_struct * mean_s + n_jobs * job_overhead_s
        img_per_struct = statistics.mean(m["n"])
        b = f"[{backend}] "
        if backend == "deterministic":
            rows += [
                ("grid", f"{grid.gpts}² simulation, {grid.output_px}² output, "
                 f"{grid.extent_A:.1f} Å FOV, {sim.slice_thickness_A} Å slices, {n_slices} "
                 "slices (multislice rows)"),
                ("structures timed", f"{len(structures) - 1} "
                 f"({', '.join(s for s, _, _ in structures[1:])}), "
                 f"{img_per_struct:.1f} images each"),
            ]
        rows += [
            (b + "(a) naive abTEM per image", f"{naive_ips:.2f} images/s "
             f"({statistics.mean(m['naive']):.3f} s/image, n={len(m['naive'])})"),
            (b + "(b) campaign path, with labels",
             f"{ips:.1f} images/s ({mean_s:.3f} s/structure)"),
            (b + "(b) campaign path, images only", f"{ips_nolab:.1f} images/s"),
            (b + "speed-up (b)/(a), with labels", f"**{ips / naive_ips:.1f}x** (target >= 20x)"),
            (b + "speed-up (b)/(a), images only", f"{ips_nolab / naive_ips:.1f}x"),
            (b + "potential + transmission, once per structure", f"{pot_s:.3f} s"),
            (b + "multislice per slice", f"{ms_slice * 1e3:.2f} ms"),
            (b + "FFT floor per slice (2 FFTs, same library and plans)", f"{floor * 1e3:.2f} ms"),
            (b + "multislice / FFT floor", f"**{ms_slice / floor:.2f}x** (target <= 2x)"),
            (b + "first structure in a process (planning, JIT)", f"{m['warmup_s']:.2f} s"),
            (b + "full campaign extrapolated, 2 cores",
             f"{total_core_s / 2 / 60:.1f} min ({n_struct} structures, "
             f"~{n_struct * img_per_struct:.0f} images, {n_jobs} jobs of "
             f"~{total_core_s / n_jobs / 60:.1f} min; target <= 4 h)"),
            (b + "full campaign extrapolated, 64 cores",
             f"{(n_struct * mean_s / 64 + job_overhead_s) / 60:.1f} min with n_shards=64 "
             "(target <= 15 min)"),
        ]
        if backend == "deterministic":
            res = m["results"][0]
            cols = pd.concat(res.columns, ignore_index=True)
            comp = {}
            with tempfile.TemporaryDirectory() as tmp:
                for name in ("none", "lzf", "gzip"):
                    p = Path(tmp) / f"{name}.h5"
                    t = time.perf_counter()
                    write_shard(p, res.clean, res.labels, res.params, cols, {}, name)
                    comp[name] = (p.stat().st_size / len(res.params) / 1e6,
                                  time.perf_counter() - t)
            rows.append(("shard size per image, none / lzf / gzip",
                         " / ".join(f"{comp[k][0]:.2f} MB" for k in ("none", "lzf", "gzip"))
                         + " (write " + " / ".join(f"{comp[k][1]:.2f}" for k in
                                                   ("none", "lzf", "gzip"))
                         + f" s for {len(res.params)} images)"))
    rows.append(("machine load average at the end (1 min, other jobs)",
                 f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"))
    lines = [
        "# Simulation benchmark",
        "",
        "Threads: 1 FFT thread, dask synchronous scheduler, one process; the campaign runs "
        "one such process per core (Snakemake jobs). Naive and campaign images were checked "
        "equal (max |diff| < 1e-3 of the vacuum level). `deterministic` = pocketfft "
        "(default, byte-identical shards), `fftw` = FFTW_MEASURE (faster, last-bit "
        "differences between processes). Timings on a shared machine: see the load row.",
        "",
        "| figure | value | command | machine | date |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {k} | {v} | `{cmd}` | {machine} | {date} |" for k, v in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
