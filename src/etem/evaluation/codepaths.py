"""``etem simulate-code-path``: the evaluated structures through another abTEM code path.

A code path (``evaluation.code_paths``) is a named set of ``simulation`` overrides:
parametrisation (Lobato / Kirkland), projection (infinite / finite), frozen phonons, slice
thickness (plus images per structure and shards). Its images are those of the structures the
benchmark evaluates and no network was trained on (splits ``test`` and ``held_out`` of
:mod:`etem.data.splits`), made by the campaign's own simulation code
(:func:`etem.simulation.commands.simulate_rows`) under the overridden config, from the same
seed; the shards record the code path and its overrides. ``etem simulate-index`` gathers them
and ``etem evaluate --code-path NAME=INDEX`` scores them as their own group of the
cross-condition table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from etem.cliutils import config_from_args
from etem.config import EtemConfig
from etem.data.splits import assign_splits
from etem.errors import InputError
from etem.paths import Layout
from etem.simulation.commands import MANIFEST_REQUIRED, simulate_rows
from etem.structures.library import read_manifest

#: Structure splits a code path simulates: evaluated, never trained on.
CODE_PATH_SPLITS = ("test", "held_out")


def evaluated_structures(manifest: pd.DataFrame, cfg: EtemConfig) -> pd.DataFrame:
    """Rows of the structures manifest in the splits :data:`CODE_PATH_SPLITS`."""
    split = assign_splits(manifest, cfg.training.split, cfg.seed)
    return manifest[split.isin(list(CODE_PATH_SPLITS)).to_numpy()]


def simulate_code_path(args: argparse.Namespace) -> int:
    """``etem simulate-code-path``: one shard of a code path's images."""
    base = config_from_args(args)
    name = args.code_path
    cfg = base.with_code_path(name)
    layout = Layout(cfg.results_path)
    manifest = Path(args.manifest) if args.manifest else layout.structures_manifest
    out = Path(args.out) if args.out else layout.code_path_shard(name, args.shard[0])
    rows = evaluated_structures(read_manifest(manifest, MANIFEST_REQUIRED), cfg)
    if rows.empty:
        raise InputError(f"structures manifest {manifest}: no test or held-out structures to "
                         f"simulate for code path {name!r}")
    overrides = cfg.evaluation.code_path(name).overrides()
    simulate_rows(args, cfg, manifest, rows, out, stage="simulate-code-path",
                  extra={"code_path": name,
                         "code_path_overrides": json.dumps(overrides, sort_keys=True)})
    return 0
