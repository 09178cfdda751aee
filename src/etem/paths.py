"""The results layout of a campaign: one definition used by the CLI defaults and the workflow.

::

    <results_dir>/
      config/<stage>.yaml            per-stage resolved config (the sections the stage reads,
                                     etem.config.stages), written by the workflow's rule
      mlflow.db, mlartifacts/        default MLflow store (sqlite) and artifacts
      structures/shard_NNN/          per-shard structure files (*.extxyz), manifest.csv, columns.h5
      structures/manifest.csv        gathered structure manifest
      structures/gallery.png         projected views of a sample of the library
      simulation/shard_NNN.h5        HDF5 image shards (see etem.simulation.contract)
      simulation/index.csv           gathered image index
      simulation/code_paths/<name>/  shard_NNN.h5 + index.csv: the evaluated structures made
                                     through another abTEM code path (evaluation.code_paths)
      movies/synthetic.h5            synthetic movie with ground truth
      models/{denoiser,unsupervised,segmenter}.pt
      evaluation/                    tables (csv/parquet) and figures of the evaluation stage
      apply/<movie>/                 results of the movie stage, one folder per movie
      apply/<movie>/.work/           its prepare.h5 and shards/shard_NNN.h5 (intermediate)
      report/report.html             the campaign report
      report/runs.csv                MLflow stage runs of the campaign (lineage: run ids)
      logs/<rule>/...                Snakemake job logs
      runtime/<rule>/...             Snakemake per-job runtime/memory records (`benchmark:`)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The only files of a campaign whose bytes differ between two runs of the same config and
#: seed (glob patterns relative to the results folder): lineage (MLflow run ids), logs and
#: wall-clock timings. Every other output is byte-identical (tests/workflow/test_resume.py).
VARYING_OUTPUTS = (
    "mlflow.db", "mlflow.db.lock", "mlartifacts/**/*",  # the tracking store: run ids, times
    "report/runs.csv",                                  # lineage sidecar of the report
    "logs/**/*", "runtime/**/*",                        # Snakemake job logs, runtime records
    "apply/*/timing.json",                             # seconds per pass of an apply
)


@dataclass(frozen=True)
class Layout:
    """Paths of one campaign's outputs under ``root``."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def stage_config(self, stage: str) -> Path:
        """Resolved config of one stage (see :mod:`etem.config.stages`)."""
        return self.root / "config" / f"{stage}.yaml"

    def structure_shard(self, i: int) -> Path:
        return self.root / "structures" / f"shard_{i:03d}"

    @property
    def structures_manifest(self) -> Path:
        return self.root / "structures" / "manifest.csv"

    @property
    def structures_gallery(self) -> Path:
        return self.root / "structures" / "gallery.png"

    def simulation_shard(self, i: int) -> Path:
        return self.root / "simulation" / f"shard_{i:03d}.h5"

    @property
    def simulation_index(self) -> Path:
        return self.root / "simulation" / "index.csv"

    def code_path_dir(self, name: str) -> Path:
        """Images of the evaluated structures made through code path ``name``."""
        return self.root / "simulation" / "code_paths" / name

    def code_path_shard(self, name: str, i: int) -> Path:
        return self.code_path_dir(name) / f"shard_{i:03d}.h5"

    def code_path_index(self, name: str) -> Path:
        return self.code_path_dir(name) / "index.csv"

    @property
    def synthetic_movie(self) -> Path:
        return self.root / "movies" / "synthetic.h5"

    def model(self, kind: str) -> Path:
        return self.root / "models" / f"{kind}.pt"

    def group_model(self, group: str) -> Path:
        """The blind-spot network trained on the movies of one group of the sheet."""
        return self.root / "models" / "groups" / f"{group}.pt"

    @property
    def evaluation_dir(self) -> Path:
        return self.root / "evaluation"

    def apply_dir(self, movie: str) -> Path:
        return self.root / "apply" / movie

    def apply_summary(self, movie: str) -> Path:
        """Written last by the movie's gather job: the movie's results are complete."""
        return self.apply_dir(movie) / "summary.json"

    def apply_prepared(self, movie: str) -> Path:
        """First pass of the movie's apply (etem.movies.prepare)."""
        return self.apply_dir(movie) / ".work" / "prepare.h5"

    def apply_shard(self, movie: str, shard: str | int) -> Path:
        """Second pass: shard ``shard`` (index or its 3-digit text) of the movie's frames."""
        name = shard if isinstance(shard, str) else f"{shard:03d}"
        return self.apply_dir(movie) / ".work" / "shards" / f"shard_{name}.h5"

    @property
    def report(self) -> Path:
        return self.root / "report" / "report.html"
