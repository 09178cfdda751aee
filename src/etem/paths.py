"""The results layout of a campaign: one definition used by the CLI defaults and the workflow.

::

    <results_dir>/
      config.yaml                    resolved, validated config of the campaign
      mlflow.db, mlartifacts/        default MLflow store (sqlite) and artifacts
      structures/shard_NNN/          per-shard structure files (*.extxyz), manifest.csv, columns.h5
      structures/manifest.csv        gathered structure manifest
      structures/gallery.png         projected views of a sample of the library
      simulation/shard_NNN.h5        HDF5 image shards (see etem.simulation.contract)
      simulation/index.csv           gathered image index
      movies/synthetic.h5            synthetic movie with ground truth
      models/{denoiser,unsupervised,segmenter}.pt
      benchmark/                     tables (csv/parquet) and figures
      apply/<movie>/                 results of the movie stage
      report/report.html             the campaign report
      report/runs.csv                MLflow stage runs of the campaign (lineage: run ids)
      logs/<rule>/...                Snakemake job logs
      benchmarks/<rule>/...          Snakemake per-job runtime/memory records
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
    "logs/**/*", "benchmarks/**/*",                     # Snakemake job logs, runtime records
    "apply/*/timing.json",                             # seconds per pass of an apply
)


@dataclass(frozen=True)
class Layout:
    """Paths of one campaign's outputs under ``root``."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

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

    @property
    def synthetic_movie(self) -> Path:
        return self.root / "movies" / "synthetic.h5"

    def model(self, kind: str) -> Path:
        return self.root / "models" / f"{kind}.pt"

    @property
    def benchmark_dir(self) -> Path:
        return self.root / "benchmark"

    def apply_dir(self, movie: str) -> Path:
        return self.root / "apply" / movie

    @property
    def report(self) -> Path:
        return self.root / "report" / "report.html"
