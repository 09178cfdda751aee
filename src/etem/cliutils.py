"""Helpers shared by the stage subcommands of the ``etem`` CLI."""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from etem.config import EtemConfig, load_config
from etem.errors import ConfigError
from etem.io import write_text
from etem.runs import StageRun, is_registry_uri


def add_config_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """Add ``--config FILE`` and repeated ``--set key=value`` (dotted keys, YAML values)."""
    parser.add_argument(
        "--config", "-c", required=required, metavar="YAML",
        help="campaign config (config/demo.yaml, ...); defaults apply when omitted",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set simulation.defocus_nm='[0, 5]' (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> EtemConfig:
    """Load and validate the config named by ``--config`` plus ``--set`` overrides."""
    overrides: dict[str, Any] = {}
    for item in getattr(args, "overrides", []) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return load_config(getattr(args, "config", None), overrides)


def emit(text: str, out: str | None) -> None:
    """Write ``text`` to the file ``out`` (atomically), or to standard output."""
    if out:
        write_text(out, text)
    else:
        sys.stdout.write(text)


def add_shard_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--shard i/n`` (0-based shard index i of n)."""
    parser.add_argument(
        "--shard", default="0/1", metavar="I/N", type=parse_shard,
        help="process only shard I of N (0-based), default 0/1 = everything",
    )


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` into ``(i, n)`` with 0 <= i < n."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected I/N, e.g. 3/10") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def shard_slice(n_items: int, shard: tuple[int, int]) -> range:
    """Contiguous, balanced index range of ``shard`` (i, n) over ``n_items`` items."""
    i, n = shard
    return range(i * n_items // n, (i + 1) * n_items // n)


def tags_from_args(args: argparse.Namespace) -> dict[str, str]:
    """Tags given with the global ``--tag KEY=VALUE`` option (e.g. Snakemake rule)."""
    tags = {}
    for item in getattr(args, "tags", []) or []:
        key, _, value = item.partition("=")
        tags[f"etem.snakemake.{key}" if key in ("rule", "wildcards", "jobid") else key] = value
    return tags


def stage_run(
    args: argparse.Namespace, config: EtemConfig, stage: str,
    params: dict[str, Any] | None = None, run_name: str | None = None,
    tags: dict[str, str] | None = None, store_dir: Path | None = None,
) -> StageRun:
    """An MLflow :class:`~etem.runs.StageRun` for this invocation (``--tag`` tags + ``tags``);
    the store is ``MLFLOW_TRACKING_URI``, the config's, else sqlite in ``store_dir`` (default:
    the campaign's results folder)."""
    return StageRun(config, stage, params=params, tags=tags_from_args(args) | (tags or {}),
                    run_name=run_name, store_dir=store_dir)


def existing_path(text: str) -> str:
    """argparse type: a file or folder that exists (or a glob that matches one)."""
    if not Path(text).exists() and not glob.glob(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return text


def model_arg(text: str) -> str:
    """argparse type: a model file that exists, or a model registry URI ``models:/NAME/VERSION``
    (resolved later, with the config's tracking store: :func:`etem.runs.model_file`)."""
    return text if is_registry_uri(text) else existing_path(text)


def output_folder(text: str) -> str:
    """argparse type: a folder etem may write into (existing or creatable)."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    ancestor = p
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: lies under {ancestor}, which is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: {ancestor} is not writable")
    return text


def output_file(text: str) -> str:
    """argparse type: a file etem may write (its folder existing or creatable)."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file name")
    output_folder(str(p.parent))
    return text
