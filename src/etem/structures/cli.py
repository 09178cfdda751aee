"""``etem structures``: plan, build (sharded) and gather the structure library."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from etem.cliutils import add_config_args, add_shard_arg, config_from_args, stage_run

log = logging.getLogger("etem.structures.cli")

GALLERY_FILE = "gallery.png"


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
    q.set_defaults(func=_plan)

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
    b.set_defaults(func=_build)

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
    g.set_defaults(func=_gather)


def _plan(args: argparse.Namespace) -> int:
    from etem.structures.recipes import enumerate_recipes, plan_counts

    cfg = config_from_args(args)
    recipes = enumerate_recipes(cfg)
    counts = plan_counts(recipes)
    print(f"campaign {cfg.name}: {len(recipes)} structures in "
          f"{cfg.structures.n_shards} shards (seed {cfg.seed})")
    for key, counter in counts.items():
        if counter:
            items = ", ".join(f"{k}: {v}" for k, v in sorted(counter.items()))
            print(f"  {key}: {items}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from etem.errors import ConfigError
    from etem.paths import Layout
    from etem.structures.library import build_shard

    cfg = config_from_args(args)
    if args.workers < 1:
        raise ConfigError("--workers must be >= 1")
    out = Path(args.out) if args.out else Layout(cfg.results_path).structure_shard(args.shard[0])
    start = time.monotonic()
    manifest = build_shard(cfg, args.shard, out, workers=args.workers)
    dt = time.monotonic() - start
    print(f"shard {args.shard[0]}/{args.shard[1]}: {len(manifest)} structures, "
          f"{int(manifest['n_atoms'].sum())} atoms in {dt:.1f} s -> {out}")
    return 0


def _gather(args: argparse.Namespace) -> int:
    import matplotlib.pyplot as plt

    from etem.structures.gallery import write_gallery
    from etem.structures.library import gather

    cfg = config_from_args(args)
    out = Path(args.out)
    params = {
        "n_structures": cfg.structures.total, "n_pt_on_ceo2": cfg.structures.pt_on_ceo2.count,
        "n_oxide": cfg.structures.oxides.count, "n_shards": len(args.shard_dirs),
    }
    with stage_run(args, cfg, "structures", params=params) as run:
        manifest = gather(cfg, out, args.shard_dirs)
        gallery = out.parent / GALLERY_FILE
        fig = write_gallery(manifest, out.parent, gallery, n=args.gallery_size)
        run.log_figure(fig, "structures_gallery.png")
        plt.close(fig)
        run.log_artifact(out)
        fam = manifest.groupby("family")
        metrics = {
            "structures": float(len(manifest)),
            "atoms_mean": float(manifest["n_atoms"].mean()) if len(manifest) else 0.0,
            "vacancies_total": float(manifest["n_vacancies"].sum()),
            "reduced_ce_total": float(manifest["n_reduced_ce"].sum()),
        }
        metrics.update({f"structures_{k}": float(len(v)) for k, v in fam})
        run.log_metrics(metrics)
    print(f"{len(manifest)} structures -> {out} (gallery {gallery})")
    return 0
