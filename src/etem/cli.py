"""The ``etem`` command line: one subcommand per stage, each usable without Snakemake.

Run ``etem --help`` for the list and ``etem <stage> --help`` for inputs, outputs and units.
User errors print one line (``etem: error: ...``) and exit non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from etem import __version__
from etem.cliutils import add_config_args, config_from_args
from etem.errors import EtemError

#: Modules that register stage subcommands (each has ``register(subparsers)``).
STAGE_MODULES = (
    "etem.structures.cli",
    "etem.simulation.cli",
    "etem.training.cli",
    "etem.evaluation.cli",
    "etem.movies.cli",
    "etem.report.cli",
    "etem.cluster.cli",
    "etem.check",
)


def _config_command(args: argparse.Namespace) -> int:
    import json

    import yaml

    from etem.config import schema
    from etem.io import write_text

    if args.action == "schema":
        text = json.dumps(schema(), indent=2, sort_keys=True) + "\n"
        if args.out:
            write_text(args.out, text)
        else:
            sys.stdout.write(text)
        return 0
    cfg = config_from_args(args)
    if args.action == "validate":
        print(f"{args.config or '<defaults>'}: valid (campaign {cfg.name}, hash {cfg.hash()})")
    else:  # show
        sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (stage modules add their subcommands)."""
    parser = argparse.ArgumentParser(
        prog="etem",
        description="Quantitative in situ ETEM: simulate, train, benchmark, apply, report.",
    )
    parser.add_argument("--version", action="version", version=f"etem {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--tag", dest="tags", action="append", default=[], metavar="KEY=VALUE",
        help="extra MLflow tag (Snakemake passes rule=... and wildcards=...)",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    p = sub.add_parser("config", help="validate, show or export the config schema")
    p.add_argument("action", choices=["validate", "show", "schema"])
    p.add_argument("--out", help="with 'schema': write the JSON schema here")
    add_config_args(p)
    p.set_defaults(func=_config_command)

    for name in STAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # stage not part of this installation
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``etem`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "numba", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except EtemError as exc:
        print(f"etem: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("etem: interrupted", file=sys.stderr)
        return 130
    except FileNotFoundError as exc:
        print(f"etem: error: {Path(exc.filename or '?')}: no such file", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
