"""``etem apply``: a movie through drift correction, denoising, column finding, tracking,
occupancy, likelihood and event detection, at memory bounded by the chunk size.

Three passes, so that long movies run as parallel frame-range jobs (Snakemake makes one job
per shard of ``apply.io.shard_frames`` frames; :func:`apply_movie` runs them one after another):

1. :func:`etem.movies.prepare.prepare_movie` (``prepare.h5``): frame geometry, drift of every
   frame, dose, fine-tuning of the blind-spot model, column polarity;
2. :func:`etem.movies.shard.run_shard` (``shards/shard_NNN.h5``): denoise (tiled, batched;
   5-frame window for the blind-spot model), segment, find columns and their likelihood;
3. :func:`etem.movies.gather.gather_results` and :func:`~etem.movies.gather.summarise`:
   tracks, frame statistics, events, results.h5, tables, figures and, last, summary.json.

Every file is written through :func:`etem.io.atomic_path`; ``summary.json`` is removed at the
start and written only when everything else is complete, so a failed run never leaves an
output folder that looks complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from etem.config import EtemConfig
from etem.frames.readers import Movie
from etem.movies.gather import gather_results, summarise
from etem.movies.outputs import clear_outputs, output_lock
from etem.movies.plan import shard_ranges
from etem.movies.prepare import (
    ApplyModels,
    CheckedMovie,
    check_movie,
    prepare_movie,
    write_prepared,
)
from etem.movies.shard import run_shard

__all__ = ["ApplyModels", "apply_movie", "shard_paths", "work_dir"]

#: Folder of an apply's intermediate files (prepare.h5, shards) inside its output folder.
WORK_DIR = ".work"


def work_dir(out: Path) -> Path:
    """The intermediate files' folder of the apply writing into ``out``."""
    return out / WORK_DIR


def shard_paths(out: Path, n: int) -> list[Path]:
    """The shard files of an apply into ``out`` with ``n`` shards."""
    return [work_dir(out) / "shards" / f"shard_{i:03d}.h5" for i in range(n)]


def apply_movie(
    movie: Movie,
    out_dir: str | Path,
    cfg: EtemConfig,
    models: ApplyModels,
    name: str | None = None,
    checked: CheckedMovie | None = None,
) -> dict[str, Any]:
    """Run the whole movie stage on ``movie`` and write the outputs into ``out_dir``.

    The inputs are checked (:func:`etem.movies.prepare.check_movie`) before ``out_dir`` is
    locked or cleared: a movie the models cannot take changes nothing there.

    Parameters
    ----------
    movie : Movie
        From :func:`etem.frames.readers.open_movie`.
    out_dir : path
        Output folder (created).
    cfg : EtemConfig
        Uses ``cfg.apply``, ``cfg.columns`` and ``cfg.seed``.
    models : ApplyModels
        Supervised and/or unsupervised denoiser, optional segmenter and calibration.
    name : str, optional
        Name of the movie in the summary (default: file stem).
    checked : optional
        What :func:`etem.movies.prepare.check_movie` returned for these arguments, if the
        caller checked them already.

    Returns
    -------
    dict
        The summary (also written to ``out_dir/summary.json``, last).
    """
    out = Path(out_dir)
    checked = checked or check_movie(movie, cfg, models)
    with output_lock(out):
        clear_outputs(out)
        prep = prepare_movie(movie, cfg, models, out, checked)
        work = work_dir(out)
        write_prepared(work / "prepare.h5", prep)
        a = cfg.apply
        ranges = shard_ranges(prep.geometry.n_frames, a.io.shard_frames, a.io.chunk_frames)
        paths = shard_paths(out, len(ranges))
        for (start, stop), path in zip(ranges, paths, strict=True):
            run_shard(movie, prep, cfg, models, start, stop, path)
        gathered = gather_results(movie, prep, cfg, models, list(paths), out)
        summary = summarise(movie, prep, models, gathered, out, name or movie.path.stem)
        shutil.rmtree(work, ignore_errors=True)
    return summary
