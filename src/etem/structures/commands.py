"""Handlers of ``etem structures`` (arguments in :mod:`etem.structures.cli`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from etem.cliutils import config_from_args, stage_run
from etem.errors import ConfigError
from etem.paths import Layout
from etem.plotting import plt
from etem.structures.gallery import write_gallery
from etem.structures.library import build_shard
from etem.structures.library import gather as gather_shards
from etem.structures.recipes import enumerate_recipes, plan_counts

GALLERY_FILE = "gallery.png"


def plan(args: argparse.Namespace) -> int:
    """``etem structures plan``: counts of the library (builds no atoms)."""
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


def build(args: argparse.Namespace) -> int:
    """``etem structures build``: build, validate and write one shard."""
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


def gather(args: argparse.Namespace) -> int:
    """``etem structures gather``: manifest, gallery and the MLflow run of the stage."""
    cfg = config_from_args(args)
    out = Path(args.out)
    params = {
        "n_structures": cfg.structures.total, "n_pt_on_ceo2": cfg.structures.pt_on_ceo2.count,
        "n_oxide": cfg.structures.oxides.count, "n_shards": len(args.shard_dirs),
    }
    with stage_run(args, cfg, "structures", params=params) as run:
        manifest = gather_shards(cfg, out, args.shard_dirs)
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
