"""Handlers of the simulation subcommands (arguments in :mod:`etem.simulation.cli`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd

from etem.cliutils import config_from_args, shard_slice, stage_run
from etem.config import EtemConfig
from etem.errors import InputError
from etem.paths import Layout
from etem.progress import progress
from etem.provenance import provenance
from etem.simulation.images import ImageSimulator
from etem.simulation.shard import build_index, open_shard
from etem.simulation.synthetic_movie import simulate_movie, write_movie
from etem.structures.io import read_structure
from etem.structures.library import read_manifest

#: Manifest columns the simulation reads.
MANIFEST_REQUIRED = ("structure_id", "family", "path")


def _paths(cfg: EtemConfig, args: argparse.Namespace) -> tuple[Path, Layout]:
    layout = Layout(cfg.results_path)
    manifest = Path(args.manifest) if args.manifest else layout.structures_manifest
    return manifest, layout


def simulate(args: argparse.Namespace) -> int:
    """``etem simulate``: the images of one shard of the structure library."""
    cfg = config_from_args(args)
    manifest, layout = _paths(cfg, args)
    out = Path(args.out) if args.out else layout.simulation_shard(args.shard[0])
    df = read_manifest(manifest, MANIFEST_REQUIRED)
    simulate_rows(args, cfg, manifest, df, out)
    return 0


def simulate_rows(
    args: argparse.Namespace, cfg: EtemConfig, manifest: Path, df: pd.DataFrame, out: Path,
    stage: str = "simulation", extra: dict[str, Any] | None = None,
) -> None:
    """Simulate shard ``args.shard`` of the manifest rows ``df`` into the image shard ``out``.

    ``stage`` names the MLflow run; ``extra`` goes into the run's params and the shard's
    attributes (e.g. a code path and its overrides).
    """
    rows = df.iloc[list(shard_slice(len(df), args.shard))]
    sim = ImageSimulator(cfg)
    n_px = cfg.simulation.output_size_px
    params: list[dict[str, Any]] = []
    columns: list[pd.DataFrame] = []
    start = time.perf_counter()
    shard = f"{args.shard[0]}/{args.shard[1]}"
    with stage_run(args, cfg, stage, params={"shard": shard, **(extra or {})}) as run, \
            open_shard(out, n_px, cfg.simulation.compression) as writer:
        for _, row in progress(list(rows.iterrows()), "simulate structures"):
            atoms = read_structure(manifest.parent / row["path"])
            res = sim.simulate(atoms, str(row["structure_id"]), str(row["family"]),
                               str(row["path"]))
            offset = len(params)
            writer.append(res.clean, res.labels)
            params.extend(res.params)
            columns.extend(c.assign(image_index=c["image_index"] + offset) for c in res.columns)
        cols = pd.concat(columns, ignore_index=True) if columns else pd.DataFrame()
        attrs = {**provenance(cfg, "simulation"), **(extra or {}), "shard": args.shard[0],
                 "n_shards": args.shard[1]}
        writer.finish(params, cols, attrs)
        seconds = time.perf_counter() - start
        run.log_metrics({"n_structures": len(rows), "n_images": len(params),
                         "seconds": seconds,
                         "images_per_s": len(params) / max(seconds, 1e-9)})
    print(f"{out}: {len(params)} images of {len(rows)} structures in {seconds:.1f} s")


def index(args: argparse.Namespace) -> int:
    """``etem simulate-index``: gather image shards into one index."""
    index = build_index(args.shards, args.out)
    print(f"{args.out}: {len(index)} images from {len(args.shards)} shards")
    return 0


def synthetic_movie(args: argparse.Namespace) -> int:
    """``etem simulate-movie``: the synthetic movie with ground truth."""
    cfg = config_from_args(args)
    manifest, layout = _paths(cfg, args)
    out = Path(args.out) if args.out else layout.synthetic_movie
    df = read_manifest(manifest, MANIFEST_REQUIRED)
    if not len(df):
        raise InputError(f"structures manifest {manifest}: no structures")
    mine = df[df["family"] == cfg.synthetic_movie.structure_family]
    row = (mine if len(mine) else df).iloc[0]
    atoms = read_structure(manifest.parent / row["path"])
    sid = str(row["structure_id"])
    with stage_run(args, cfg, "simulate-movie", params={"structure_id": sid}) as run:
        start = time.perf_counter()
        result = simulate_movie(cfg, atoms, sid)
        write_movie(out, result, cfg, sid, provenance(cfg, "simulate-movie"))
        run.log_metrics({"n_frames": cfg.synthetic_movie.n_frames,
                         "seconds": time.perf_counter() - start,
                         "mean_counts": float(result["frames"].mean())})
    print(f"{out}: {cfg.synthetic_movie.n_frames} frames of {sid}, events at "
          f"{result['events'].tolist()} ({', '.join(result['event_kinds'])})")
    return 0
