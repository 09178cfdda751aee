"""Measured figures of the evaluation stage -> benchmarks/evaluation.md.

    .venv/bin/python benchmarks/evaluation.py [--quick]

Measures (on synthetic lattice images, 256 x 256 px at 0.2 Å/px, vacuum = 1):
* likelihood calibration: false-alarm rate of calibrated vs raw p-values on held-out
  simulated vacuum (Gaussian 1.5 px and Anscombe+NLM denoisers, 5 doses);
* uMSE vs true MSE: |z| = |uMSE - MSE| / s.e. over images, doses and denoisers;
* column finding: position RMSE [pm] (centroid vs Gaussian fit) after NLM at each dose;
* cost per 256² image: each method, SSIM, column finding, likelihood table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from etem.analysis import baselines
from etem.analysis.calibration import held_out_report, vacuum_detections
from etem.analysis.columns import find_columns
from etem.analysis.likelihood import Calibration, likelihood_table
from etem.analysis.matching import detection_metrics
from etem.analysis.metrics import ssim
from etem.analysis.umse import quartets, umse
from etem.testing import lattice_image

ROOT = Path(__file__).resolve().parents[1]

PX = 0.2
DOSES_A2 = [25.0, 50.0, 100.0, 200.0, 400.0]
FIND = {"pixel_size_A": PX, "min_sigma_A": 0.3, "max_sigma_A": 0.6, "threshold": 0.05}


def machine() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}"


def _median_time(fn, n: int = 5) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def calibration_rows(n_images: int) -> list[tuple[str, str]]:
    rows = []
    methods = {"gaussian 1.5 px": lambda c, d: baselines.gaussian(c, d, 1.5),
               "Anscombe+NLM": lambda c, d: baselines.nlm(c, d)}
    for name, fn in methods.items():
        fit, held = [], []
        for dose in DOSES_A2:
            dpx = dose * PX * PX
            fit.append(vacuum_detections(fn, dpx, (256, 256), n_images,
                                         np.random.default_rng([1, int(dose)]), FIND, 2.5))
            held.append(vacuum_detections(fn, dpx, (256, 256), n_images,
                                          np.random.default_rng([2, int(dose)]), FIND, 2.5))
        cal = Calibration.fit(pd.concat(fit, ignore_index=True))
        far = held_out_report(cal, pd.concat(held, ignore_index=True), [0.9, 0.95, 0.99])
        for kind in ("calibrated", "raw"):
            a = far[(far["kind"] == kind) & (far["dose_e_per_px"] == "all")]
            txt = ", ".join(f"α={r.alpha:.2f}: {100 * r.observed:.1f} %" for r in a.itertuples())
            n = int(a["n"].iloc[0])
            rows.append((f"false-alarm rate, {kind} p-value, {name}, held-out vacuum "
                         f"({n} spurious detections, 5 doses 25-400 e/Å²)", txt))
        per_dose = far[(far["kind"] == "calibrated") & (far["dose_e_per_px"] != "all")]
        worst = float((per_dose["observed"] - per_dose["alpha"]).abs().max())
        rows.append((f"worst abs(observed - nominal) per dose and level, calibrated, {name}",
                     f"{100 * worst:.2f} pp (target ≤ 2 pp)"))
    return rows


def umse_rows(n_images: int) -> list[tuple[str, str]]:
    zs = []
    for i in range(n_images):
        clean, _, _ = lattice_image(256, PX, offset_px=i * 0.37, sigma_A=0.5)
        for dose in DOSES_A2:
            dpx = dose * PX * PX
            counts = np.random.default_rng([3, i, int(dose)]).poisson(clean * dpx).astype(float)
            for s in (1.0, 2.0):
                def f(z, s=s, d=dpx):
                    return baselines.gaussian(z, d, s) * d

                r = umse(f, counts)
                qc, qn = quartets(clean * dpx), quartets(counts)
                true = np.mean([np.mean((qc[(k + 1) % 4] - f(qn[k])) ** 2) for k in range(4)])
                zs.append((r.umse - true) / r.se)
    z = np.abs(np.asarray(zs))
    return [(f"uMSE vs true MSE, abs(z), z = (uMSE - MSE) / s.e. ({len(z)} image x dose x "
             "Gaussian-width cases)", f"median {np.median(z):.2f}, {100 * np.mean(z <= 2):.0f} % "
             "within 2 s.e.")]


def column_rows(n_images: int) -> list[tuple[str, str]]:
    out = []
    for dose in (25.0, 100.0, 400.0):
        res = {"centroid": [], "gaussian": []}
        rec = []
        for i in range(n_images):
            clean, _, pos = lattice_image(256, PX, offset_px=i * 0.29, sigma_A=0.4)
            truth = pd.DataFrame({"x_A": pos[:, 0] * PX, "y_A": pos[:, 1] * PX})
            dpx = dose * PX * PX
            counts = np.random.default_rng([4, i, int(dose)]).poisson(clean * dpx).astype(float)
            den = baselines.nlm(counts, dpx)
            for refine in res:
                m = detection_metrics(find_columns(den, refine=refine, **FIND), truth, 0.5)
                res[refine].append(m["rmse_pm"])
                rec.append(m["recall"])
        out.append((f"column position RMSE after NLM at {dose:g} e/Å² (lattice, σ = 0.4 Å)",
                    f"centroid {np.mean(res['centroid']):.1f} pm, Gaussian fit "
                    f"{np.mean(res['gaussian']):.1f} pm (recall {np.mean(rec):.2f})"))
    return out


def cost_rows() -> list[tuple[str, str]]:
    clean, _, _ = lattice_image(256, PX)
    dpx = 100 * PX * PX
    counts = np.random.default_rng(5).poisson(clean * dpx).astype(float)
    den = baselines.nlm(counts, dpx)
    cols = find_columns(den, **FIND)
    items = {
        "Gaussian filter": lambda: baselines.gaussian(counts, dpx, 1.5),
        "Anscombe + NLM (fast mode, 5 px patch, 6 px search)": lambda: baselines.nlm(counts, dpx),
        "SSIM": lambda: ssim(clean, den),
        "find_columns (blob_log + centroid)": lambda: find_columns(den, **FIND),
        "find_columns (blob_log + Gaussian fit)": lambda: find_columns(den, refine="gaussian",
                                                                       **FIND),
        f"likelihood_table ({len(cols)} columns)": lambda: likelihood_table(
            counts, den * dpx, cols, 2.5, lambda_vac=dpx),
    }
    return [(f"time per 256² image: {k}", f"{1000 * _median_time(fn):.0f} ms (median of 5)")
            for k, fn in items.items()]


DEMO_MARK = "## Demo campaign (etem benchmark outputs)"


def demo_rows(bench_dir: Path, label: str) -> list[tuple[str, str]]:
    """Figures read from an ``etem benchmark`` output folder: Mohan protocol, segmentation."""
    from etem.io import read_table

    rows: list[tuple[str, str]] = []
    mp = bench_dir / "mohan_summary.csv"
    if mp.exists():
        t = read_table(mp)
        for subset in ["all", *sorted(x for x in t["subset"].unique()
                                      if x.startswith(("family=", "split=")))]:
            sel = t[t["subset"] == subset].set_index("method")
            if sel.empty:
                continue
            vals = ", ".join(f"{m} {r.psnr_db_mean:.2f} dB / {r.ssim_mean:.3f}"
                             for m, r in sel.iterrows())
            mean = sel["mean_counts_per_px_mean"].iloc[0]
            rows.append((f"{label}: Mohan protocol PSNR / SSIM (peak 1 count, mean "
                         f"{mean:.2f} e/px), {subset}, n = {int(sel['n'].iloc[0])} images "
                         "(Mohan et al.: 35-38 dB)", vals))
    sp = bench_dir / "segmentation.csv"
    if sp.exists():
        t = read_table(sp)
        for subset in ("all", "split=test", "split=held_out", "dose_e_per_A2=12.5|split=test",
                       "dose_e_per_A2=400|split=test"):
            sel = t[t["subset"] == subset].set_index("quantity")["value"]
            if sel.empty:
                continue
            vals = ", ".join(f"{q} {v:.3f}" for q, v in sel.items() if v == v)
            rows.append((f"{label}: segmenter IoU / occupancy accuracy, {subset}", vals))
    return rows


def write_demo_section(bench_dirs: list[str], labels: list[str], cmds: list[str]) -> str:
    """Replace the demo section of benchmarks/evaluation.md with rows from benchmark folders."""
    import subprocess

    md = ROOT / "benchmarks" / "evaluation.md"
    text = md.read_text(encoding="utf-8") if md.exists() else ""
    head = text.split(DEMO_MARK)[0].rstrip("\n")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines = [DEMO_MARK, "",
             "Read from `etem benchmark` output folders by `benchmarks/evaluation.py --demo` "
             f"(machine load during this summary: `{load}`). The command column is the "
             "benchmark run that produced the folder.", "",
             "| figure | value | command | machine | date |", "|---|---|---|---|---|"]
    today = date.today().isoformat()
    for d, label, cmd in zip(bench_dirs, labels, cmds, strict=True):
        for fig, val in demo_rows(Path(d), label):
            lines.append(f"| {fig} | {val} | `{cmd}` | {machine()} | {today} |")
    out = head + "\n\n" + "\n".join(lines) + "\n"
    md.write_text(out, encoding="utf-8")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer images (a smoke test)")
    ap.add_argument("--demo", nargs="+", metavar="BENCH_DIR",
                    help="only (re)write the demo section from these etem benchmark folders")
    ap.add_argument("--labels", nargs="+", help="one label per --demo folder")
    ap.add_argument("--commands", nargs="+",
                    help="one per --demo folder: the command that produced it")
    args = ap.parse_args()
    if args.demo:
        labels = args.labels or [Path(d).name for d in args.demo]
        cmds = args.commands or [f"etem benchmark ... --out {d}" for d in args.demo]
        print(write_demo_section(args.demo, labels, cmds))
        return
    n = 2 if args.quick else 8
    rows = []
    t0 = time.time()
    rows += calibration_rows(n)
    rows += umse_rows(n // 2)
    rows += column_rows(max(n // 4, 1))
    rows += cost_rows()
    cmd = "python benchmarks/evaluation.py" + (" --quick" if args.quick else "")
    today = date.today().isoformat()
    lines = ["# Evaluation stage: measured figures", "",
             "Synthetic square lattices of Gaussian columns (256 × 256 px, 0.2 Å/px, vacuum = 1),",
             "Poisson noise at the benchmark doses. Produced by `benchmarks/evaluation.py` in "
             f"{time.time() - t0:.0f} s.", "",
             "| figure | value | command | machine | date |", "|---|---|---|---|---|"]
    for fig, val in rows:
        lines.append(f"| {fig} | {val} | `{cmd}` | {machine()} | {today} |")
    text = "\n".join(lines) + "\n"
    md = ROOT / "benchmarks" / "evaluation.md"
    old = md.read_text(encoding="utf-8") if md.exists() else ""
    if DEMO_MARK in old:  # keep the demo section (written by --demo)
        text += "\n" + DEMO_MARK + old.split(DEMO_MARK, 1)[1]
    md.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
