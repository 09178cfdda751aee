"""The ``etem`` command line: one subcommand per stage, each usable without Snakemake.

Run ``etem --help`` for the list and ``etem <stage> --help`` for inputs, outputs and units.
User errors print one line (``etem: error: ...``) and exit non-zero, without a traceback.

Each stage declares its arguments in ``etem.<stage>.cli`` (light imports only) and names its
handler as ``"module:function"`` (``handler`` default of the subparser); :func:`main` imports
the handler's module only for the subcommand that runs, so ``etem --help`` and a bad argument
answer at once instead of after seconds of torch, abTEM and MLflow imports.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import yaml

from etem import __version__
from etem.cliutils import add_config_args, config_from_args, emit
from etem.cluster import cli as cluster_cli
from etem.config import schema
from etem.config.defaults import defaults_yaml
from etem.errors import EtemError
from etem.evaluation import cli as evaluation_cli
from etem.movies import cli as movies_cli
from etem.report import cli as report_cli
from etem.simulation import cli as simulation_cli
from etem.structures import cli as structures_cli
from etem.training import cli as training_cli

#: Stage modules that register subcommands (each has ``register(subparsers)``).
STAGE_CLIS = (
    structures_cli,
    simulation_cli,
    training_cli,
    evaluation_cli,
    movies_cli,
    report_cli,
    cluster_cli,
)


def _config_command(args: argparse.Namespace) -> int:
    if args.action == "defaults":
        emit(defaults_yaml(), args.out)
        return 0
    if args.action == "schema":
        emit(json.dumps(schema(), indent=2, sort_keys=True) + "\n", args.out)
        return 0
    cfg = config_from_args(args)
    if args.action == "validate":
        print(f"{args.config or '<defaults>'}: valid (campaign {cfg.name}, hash {cfg.hash()})")
    else:  # show
        sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0


class EtemParser(argparse.ArgumentParser):
    """Bad arguments give one line (``etem <command>: error: ...``) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (stage modules add their subcommands)."""
    parser = EtemParser(
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
    p.add_argument("action", choices=["validate", "show", "schema", "defaults"])
    p.add_argument("--out", help="with 'schema' or 'defaults': write the JSON schema / the "
                   "commented defaults YAML here")
    add_config_args(p)
    p.set_defaults(func=_config_command)

    for stage in STAGE_CLIS:
        stage.register(sub)
    p = sub.add_parser(
        "check", help="verify a campaign's outputs and MLflow runs",
        description="Verify that every output of a campaign exists, is readable and "
        "consistent with the config, and that every stage has a finished MLflow run.",
    )
    add_config_args(p)
    p.set_defaults(handler="etem.check:run")
    p = sub.add_parser(
        "run", help="run the workflow (Snakemake); the same command resumes an interrupted run",
        description="Run Snakemake with the given arguments, e.g. `etem run --cores all "
        "--configfile config/demo.yaml`. After an interruption (kill -9, power cut) the same "
        "command removes Snakemake's stale lock and redoes the incomplete jobs.",
    )
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, metavar="SNAKEMAKE_ARGS",
                   help="arguments for snakemake")
    p.set_defaults(handler="etem.workflow:run")
    return parser


def resolve_handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], int] | None:
    """The function that runs the parsed subcommand (its module imported now, see above)."""
    if getattr(args, "func", None):
        return args.func
    spec = getattr(args, "handler", None)
    if not spec:
        return None
    if getattr(args, "passive_openmp", False):
        # idle OpenMP threads sleep instead of spinning; must be set before torch is imported
        # (spinning threads of a 2-thread torch process on a shared machine were measured
        # 20-40x slower per step: benchmarks/training.md)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    module_name, _, function = spec.partition(":")
    return getattr(importlib.import_module(module_name), function)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``etem`` console script."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "run" in argv and set(argv[: argv.index("run")]) <= {"-v", "--verbose"}:
        # `etem run ...`: everything after `run` belongs to Snakemake, options included
        i = argv.index("run")
        args = parser.parse_args([*argv[:i], "run"])
        args.snakemake_args = [*args.snakemake_args, *argv[i + 1 :]]
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "numba", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        handler = resolve_handler(args)
        if handler is None:
            parser.print_help()
            return 1
        return int(handler(args) or 0)
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
