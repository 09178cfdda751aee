"""``etem simulate``, ``etem simulate-index``, ``etem simulate-movie``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from etem.cliutils import add_config_args, add_shard_arg, config_from_args, shard_slice, stage_run
from etem.errors import InputError

log = logging.getLogger("etem.simulation.cli")

MANIFEST_REQUIRED = ("structure_id", "family", "path")


def register(sub: Any) -> None:
    """Add the simulation subcommands to the ``etem`` parser."""
    p = sub.add_parser(
        "simulate",
        help="simulate the HRTEM images of a shard of the structure library (abTEM)",
        description=(
            "Simulate clean HRTEM images (expected intensity, vacuum = 1) and label maps of the "
            "structures of one shard of the manifest. Input: the structures manifest "
            "(structure_id, family, path relative to the manifest). Output: one HDF5 shard "
            "(/clean float32 (N,H,W), /labels/*, /params/*, /columns/*; lengths in Å, "
            "thickness/defocus in nm, tilts in mrad, energy in kV; see docs/simulation.md)."
        ),
    )
    add_config_args(p)
    p.add_argument("--manifest", help="structures manifest (default: <results>/structures/"
                   "manifest.csv)")
    add_shard_arg(p)
    p.add_argument("--out", help="output shard .h5 (default: <results>/simulation/shard_I.h5)")
    p.set_defaults(func=_simulate)

    p = sub.add_parser(
        "simulate-index",
        help="gather the image shards into one index table",
        description=(
            "Read /params of every shard and write one table (CSV or Parquet by suffix) with "
            "the per-image parameters plus 'shard' (relative to the index) and "
            "'index_in_shard'."
        ),
    )
    p.add_argument("--out", required=True, help="index file (.csv or .parquet)")
    p.add_argument("shards", nargs="+", help="image shards (.h5)")
    p.set_defaults(func=_index)

    p = sub.add_parser(
        "simulate-movie",
        help="simulate a synthetic K3-like movie of an evolving structure with ground truth",
        description=(
            "Animate one structure of the manifest (config movie.*): stable, then changed at "
            "the event frames. Output HDF5: /frames float32 counts (T,H,W), /clean expected "
            "counts, /events frame indices, /columns per-frame column tables [Å]; attrs "
            "pixel_size_A [Å], frame_time_s [s], dose_e_per_px_per_frame [e/px]."
        ),
    )
    add_config_args(p)
    p.add_argument("--manifest", help="structures manifest (default: <results>/structures/"
                   "manifest.csv)")
    p.add_argument("--out", help="output movie .h5 (default: <results>/movies/synthetic.h5)")
    p.set_defaults(func=_movie)


def read_manifest(path: Path) -> Any:
    """The structures manifest with the columns the simulation needs."""
    from etem.io import read_table, require_file

    require_file(path, "structures manifest")
    df = read_table(path)
    missing = [c for c in MANIFEST_REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"structures manifest {path}: missing columns {missing}")
    if df["structure_id"].duplicated().any():
        raise InputError(f"structures manifest {path}: duplicate structure_id")
    return df


def _paths(cfg: Any, args: argparse.Namespace) -> tuple[Path, Any]:
    from etem.paths import Layout

    layout = Layout(cfg.results_path)
    manifest = Path(args.manifest) if args.manifest else layout.structures_manifest
    return manifest, layout


def _simulate(args: argparse.Namespace) -> int:
    import pandas as pd

    from etem.progress import progress
    from etem.provenance import provenance
    from etem.simulation.images import ImageSimulator
    from etem.simulation.shard import open_shard
    from etem.structures.io import read_structure

    cfg = config_from_args(args)
    manifest, layout = _paths(cfg, args)
    out = Path(args.out) if args.out else layout.simulation_shard(args.shard[0])
    df = read_manifest(manifest)
    rows = df.iloc[list(shard_slice(len(df), args.shard))]
    sim = ImageSimulator(cfg)
    n_px = cfg.simulation.output_size_px
    params: list[dict[str, Any]] = []
    columns = []
    start = time.perf_counter()
    shard = f"{args.shard[0]}/{args.shard[1]}"
    with stage_run(args, cfg, "simulation", params={"shard": shard}) as run, \
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
        attrs = {**provenance(cfg, "simulation"), "shard": args.shard[0],
                 "n_shards": args.shard[1]}
        writer.finish(params, cols, attrs)
        seconds = time.perf_counter() - start
        run.log_metrics({"n_structures": len(rows), "n_images": len(params),
                         "seconds": seconds,
                         "images_per_s": len(params) / max(seconds, 1e-9)})
    print(f"{out}: {len(params)} images of {len(rows)} structures in {seconds:.1f} s")
    return 0


def _index(args: argparse.Namespace) -> int:
    from etem.simulation.shard import build_index

    index = build_index(args.shards, args.out)
    print(f"{args.out}: {len(index)} images from {len(args.shards)} shards")
    return 0


def _movie(args: argparse.Namespace) -> int:
    from etem.provenance import provenance
    from etem.simulation.synthetic_movie import simulate_movie, write_movie
    from etem.structures.io import read_structure

    cfg = config_from_args(args)
    manifest, layout = _paths(cfg, args)
    out = Path(args.out) if args.out else layout.synthetic_movie
    df = read_manifest(manifest)
    if not len(df):
        raise InputError(f"structures manifest {manifest}: no structures")
    mine = df[df["family"] == cfg.movie.structure_family]
    row = (mine if len(mine) else df).iloc[0]
    atoms = read_structure(manifest.parent / row["path"])
    sid = str(row["structure_id"])
    with stage_run(args, cfg, "simulate-movie", params={"structure_id": sid}) as run:
        start = time.perf_counter()
        result = simulate_movie(cfg, atoms, sid)
        write_movie(out, result, cfg, sid, provenance(cfg, "simulate-movie"))
        run.log_metrics({"n_frames": cfg.movie.n_frames, "seconds": time.perf_counter() - start,
                         "mean_counts": float(result["frames"].mean())})
    print(f"{out}: {cfg.movie.n_frames} frames of {sid}, events at "
          f"{result['events'].tolist()} ({', '.join(result['event_kinds'])})")
    return 0
