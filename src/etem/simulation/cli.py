"""``etem simulate``, ``etem simulate-index``, ``etem simulate-movie``."""

from __future__ import annotations

from typing import Any

from etem.cliutils import add_config_args, add_shard_arg


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
    p.set_defaults(handler="etem.simulation.commands:simulate")

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
    p.set_defaults(handler="etem.simulation.commands:index")

    p = sub.add_parser(
        "simulate-movie",
        help="simulate a synthetic K3-like movie of an evolving structure with ground truth",
        description=(
            "Animate one structure of the manifest (config synthetic_movie.*): stable, then "
            "changed at the event frames. Output HDF5: /frames float32 counts (T,H,W), /clean "
            "expected counts, /events frame indices, /columns per-frame column tables [Å]; attrs "
            "pixel_size_A [Å], frame_time_s [s], dose_e_per_px_per_frame [e/px]."
        ),
    )
    add_config_args(p)
    p.add_argument("--manifest", help="structures manifest (default: <results>/structures/"
                   "manifest.csv)")
    p.add_argument("--out", help="output movie .h5 (default: <results>/movies/synthetic.h5)")
    p.set_defaults(handler="etem.simulation.commands:synthetic_movie")
