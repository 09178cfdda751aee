"""``etem report``: one self-contained HTML report of a campaign."""

from __future__ import annotations

import argparse
from typing import Any

from etem.cliutils import add_config_args

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
    p.add_argument("--detection-power", nargs="*", default=[], metavar="FILE",
                   help="detection-power bank results (JSON of benchmarks/detection_power.py) "
                   "shown in the section 'Event detection power'")
    p.set_defaults(handler="etem.report.commands:report")
