"""Handler of ``etem report`` (arguments in :mod:`etem.report.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from etem.cliutils import config_from_args, stage_run
from etem.errors import InputError
from etem.io import write_table, write_text
from etem.paths import Layout
from etem.report.build import RUNS_FILE, build_report, campaign_runs, runs_table


def report(args: argparse.Namespace) -> int:
    """``etem report``: build and write the campaign report."""
    cfg = config_from_args(args)
    results = Path(args.results) if args.results else cfg.results_path
    if not results.is_dir():
        raise InputError(f"results folder {results}: no such folder")
    out = Path(args.out) if args.out else Layout(results).report
    banks = [Path(p) for p in args.detection_power]
    for p in banks:
        if not p.is_file():
            raise InputError(f"--detection-power {p}: no such file")
    with stage_run(args, cfg, "report", params={"results": str(results)}) as run_:
        runs = campaign_runs(cfg)  # one MLflow query: the report and its lineage sidecar
        doc, present = build_report(cfg, results, runs, banks)
        write_text(out, doc)
        if runs is not None and not runs.empty:  # lineage sidecar (run ids are not in the report)
            write_table(out.with_name(RUNS_FILE), runs_table(runs))
        run_.log_artifact(out)
        run_.log_metrics({f"section_present.{k}": float(v) for k, v in present.items()})
    have = [k for k, v in present.items() if v]
    lack = [k for k, v in present.items() if not v]
    print(f"report: {out} ({len(doc) / 1e6:.1f} MB); sections: {', '.join(have) or 'none'}"
          + (f"; missing: {', '.join(lack)}" if lack else ""))
    return 0
