"""Cluster resources derived from the campaign config (used by the Snakemake rules).

The SLURM profile (``profiles/slurm``) sizes CPUs, memory and wall time per rule; whether a
training job needs a GPU depends on the campaign config, so the training rules ask for it via
:func:`gpus`, e.g. ``resources: gpu=gpus(ETEM.training.denoiser)``.

The gather job of a movie (``etem apply-gather``: tracks, statistics and events over the whole
series) runs on one core through every frame, so its wall time grows with the movie; its
memory is a constant part plus the per-frame statistics the whole-series event detection holds
(:func:`gather_runtime_min`, :func:`gather_mem_mb`, from the measurements of
``benchmarks/gather_rss.py`` and ``benchmarks/shards.py``).
"""

from __future__ import annotations

import math

from etem.config.training import LoopConfig
from etem.errors import ConfigError


def gpus(loop_config: LoopConfig) -> int:
    """Number of GPUs a training job requests: 1 when ``device == "cuda"``, else 0.

    Parameters
    ----------
    loop_config
        A training section of the config (``ETEM.training.denoiser`` etc.) with ``device``.

    Returns
    -------
    int
        GPUs per job (0 means none: the SLURM plugin then adds no ``--gpus``/``--gres``).
    """
    return 1 if getattr(loop_config, "device", "cpu") == "cuda" else 0


def retrain_run_ids(value: str | None) -> list[str]:
    """MLflow run ids to retrain, from ``$ETEM_RETRAIN_RUN_IDS`` (comma separated).

    Raises
    ------
    ConfigError
        When no run id is given.
    """

    ids = [r.strip() for r in (value or "").split(",") if r.strip()]
    if not ids:
        raise ConfigError(
            "retrain: set ETEM_RETRAIN_RUN_IDS=<mlflow run id>[,...] (runs of train-* stages)"
        )
    return ids


#: gather seconds per processed frame: fixed part [s] and part per pixel [s/px], measured on
#: one core of the 2-core VM (0.20 s/frame at 256², 0.29 s/frame at 512², 2,000 frames,
#: benchmarks/shards.md)
GATHER_S_PER_FRAME = 0.17
GATHER_S_PER_PIXEL = 4.6e-7
#: gather memory per processed frame [MB]: the per-frame statistics (~5.6 KB/frame measured
#: from 2,000 to 8,000 frames of 256², benchmarks/gather_rss.py), with a factor 2 of margin
GATHER_MB_PER_FRAME = 0.012


def gather_runtime_min(n_frames: int | None, frame_px: int | None, base_min: int = 60,
                       margin: float = 2.0) -> int:
    """Wall time [min] to request for a movie's gather job: ``margin`` x the measured rate for
    ``n_frames`` processed frames of ``frame_px`` pixels, at least ``base_min``."""
    if not n_frames:
        return base_min
    s = n_frames * (GATHER_S_PER_FRAME + GATHER_S_PER_PIXEL * (frame_px or 1024 * 1024))
    return max(base_min, math.ceil(margin * s / 60.0))


def gather_mem_mb(n_frames: int | None, base_mb: int = 4000) -> int:
    """Memory [MB] to request for a movie's gather job: ``base_mb`` (the frame-size part and
    the bounded blocks) plus the per-frame statistics of ``n_frames`` processed frames."""
    return base_mb + math.ceil(GATHER_MB_PER_FRAME * (n_frames or 0))
