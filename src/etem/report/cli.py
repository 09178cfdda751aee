"""``etem report``: one self-contained HTML report of a campaign."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from etem.cliutils import add_config_args, config_from_args, stage_run

HELP = """\
Build the campaign report: one self-contained HTML file (figures embedded as PNG).

inputs : --results DIR  the campaign results folder (default: the config's results_dir):
         structures/manifest.csv, simulation/index.csv + shards, benchmark/ (tables,
         figures, likelihood_calibration.json), apply/<movie>/ (summary.json, figures),
         and the MLflow store (training curves, run ids). Missing parts are reported as
         missing, not errors.
outputs: --out FILE  the HTML report (default: <results>/report/report.html).
units  : as in the tables: doses [e/Å²], PSNR [dB], positions [pm], lengths [Å].
"""


def register(sub: Any) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser("report", help="self-contained HTML report of a campaign",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--results", help="results folder (default: the config's results_dir)")
    p.add_argument("--out", help="output HTML (default: <results>/report/report.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build and write the report."""
    from etem.errors import InputError
    from etem.io import write_text
    from etem.paths import Layout
    from etem.report.build import build_report

    cfg = config_from_args(args)
    results = Path(args.results) if args.results else cfg.results_path
    if not results.is_dir():
        raise InputError(f"results folder {results}: no such folder")
    out = Path(args.out) if args.out else Layout(results).report
    with stage_run(args, cfg, "report", params={"results": str(results)}) as run_:
        doc, present = build_report(cfg, results)
        write_text(out, doc)
        run_.log_artifact(out)
        run_.log_metrics({f"section_present.{k}": float(v) for k, v in present.items()})
    have = [k for k, v in present.items() if v]
    lack = [k for k, v in present.items() if not v]
    print(f"report: {out} ({len(doc) / 1e6:.1f} MB); sections: {', '.join(have) or 'none'}"
          + (f"; missing: {', '.join(lack)}" if lack else ""))
    return 0
