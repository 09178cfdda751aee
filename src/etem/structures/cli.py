"""``etem structures``: plan, build (sharded) and gather the structure library."""

from __future__ import annotations

import argparse

from etem.cliutils import add_config_args, add_shard_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``etem structures {plan,build,gather}``."""
    p = subparsers.add_parser(
        "structures", help="build the library of atomic models (ASE)",
        description="Build the structure library: Pt nanoparticles on CeO2 and defect oxides "
        "(CeO2, SrTiO3) seen along a zone axis, with projected column tables. Lengths in Å.",
    )
    sub = p.add_subparsers(dest="action", metavar="<action>", required=True)

    q = sub.add_parser(
        "plan", help="print the counts of the library (cheap: builds no atoms)",
        description="Enumerate the recipes of the config (grid + seed) and print counts per "
        "family, particle shape, support facet, oxide material and vacancy mode.",
    )
    add_config_args(q)
    q.set_defaults(handler="etem.structures.commands:plan")

    b = sub.add_parser(
        "build", help="build, validate and write one shard of the library",
        description="Build, validate and write the structures of shard I/N. Outputs in OUT: "
        "<structure_id>.extxyz (ase.io.read-able; positions [Å], beam along z, recipe in "
        "atoms.info, vacancy sites in info 'vacancy_xyz'), manifest.csv (one row per "
        "structure, see etem.structures.contract.MANIFEST_COLUMNS) and columns.h5 (projected "
        "column tables: x_A, y_A [Å], element, site, n_sites, n_atoms, n_vacancies, "
        "occupancy). A structure that fails validation is an error naming it and the rule.",
    )
    add_config_args(b)
    add_shard_arg(b)
    b.add_argument("--out", metavar="DIR",
                   help="output folder (default: <results>/structures/shard_III)")
    b.add_argument("--workers", type=int, default=1, metavar="N",
                   help="parallel worker processes within the shard (default 1)")
    b.set_defaults(handler="etem.structures.commands:build")

    g = sub.add_parser(
        "gather", help="gather shard manifests, draw the gallery, log the MLflow run",
        description="Concatenate the manifests of SHARD_DIRs into MANIFEST (paths made "
        "relative to it), write gallery.png beside it (projected views of a sample, coloured "
        "by element and vacancy) and record the structures stage in MLflow.",
    )
    add_config_args(g)
    g.add_argument("--out", required=True, metavar="MANIFEST",
                   help="gathered manifest (csv), e.g. <results>/structures/manifest.csv")
    g.add_argument("shard_dirs", nargs="+", metavar="SHARD_DIR", help="folders of built shards")
    g.add_argument("--gallery-size", type=int, default=12, metavar="N",
                   help="structures shown in the gallery (default 12)")
    g.set_defaults(handler="etem.structures.commands:gather")
