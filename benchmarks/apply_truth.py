"""Ground-truth scores of ``etem apply`` on the demo campaign's synthetic movie.

Runs ``etem apply`` on ``results/demo/movies/synthetic.h5`` (known columns and events) with
the demo models, once per denoiser (supervised, unsupervised), into a scratch folder, and
writes the ``truth`` block of each summary (column recall/precision/RMSE, event onsets) as a
markdown table. Needs a finished demo campaign (``make demo``).

Usage::

    .venv/bin/python benchmarks/apply_truth.py [--results results/demo] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path


def _run(results: Path, mode: str, out: Path, extra: list[str]) -> dict:
    m = results / "models"
    cmd = [
        sys.executable, "-m", "etem.cli", "apply", "-c", str(results / "config.yaml"),
        "--set", "tracking.enabled=false", "--set", f"results_dir={out / 'results'}",
        "--set", f"apply.inference.denoise_with={mode}", *extra,
        "--movie", str(results / "movies" / "synthetic.h5"), "--out", str(out / mode),
        "--denoiser", str(m / "denoiser.pt"), "--unsupervised", str(m / "unsupervised.pt"),
        "--segmenter", str(m / "segmenter.pt"),
        "--calibration", str(results / "evaluation" / "likelihood_calibration.json"),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads((out / mode / "summary.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default="results/demo", type=Path)
    ap.add_argument("--out", default="benchmarks/apply_truth.md", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config overrides for the apply runs")
    args = ap.parse_args()
    extra = [x for kv in args.set for x in ("--set", kv)]
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("supervised", "unsupervised"):
            s = _run(args.results, mode, Path(tmp), extra)
            c, e = s["truth"]["columns"], s["truth"]["events"]
            site = c["recall_by_site"]
            ev = ", ".join(f"{k}: {'missed' if v is None else f'{v:+d}'}"
                           for k, v in e["by_kind"].items())
            cmd = "benchmarks/apply_truth.py" + "".join(f" --set {kv}" for kv in args.set)
            rows.append(
                f"| {mode} | {c['recall']:.3f} (min frame {c['recall_min_frame']:.3f}) | "
                f"{c['precision']:.3f} | {c['rmse_A']:.3f} | "
                + " / ".join(f"{site.get(k, float('nan')):.3f}"
                             for k in ("cation", "metal", "anion"))
                + f" | {ev} | {e['n_false_alarms']} | `{cmd}` |"
            )
    date = dt.date.today().isoformat()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, load {load:.1f}"
    text = "\n".join([
        "# apply: ground-truth scores on the demo movie",
        "",
        f"Movie `{args.results}/movies/synthetic.h5`; visible columns: n_atoms x Z >= 150; "
        f"match radius 0.5 Å; event tolerance ±2 frames. Machine: {machine}; {date}.",
        "",
        "| denoiser | column recall (visible) | precision | RMSE [Å] | recall Ce / Pt / O | "
        "event onset error [frames] | false alarms | command |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
