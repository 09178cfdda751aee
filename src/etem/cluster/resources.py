"""Cluster resources derived from the campaign config (used by the Snakemake rules).

The SLURM profile (``profiles/slurm``) sizes CPUs, memory and wall time per rule; whether a
training job needs a GPU depends on the campaign config, so the training rules ask for it via
:func:`gpus`, e.g. ``resources: gpu=gpus(ETEM.training.denoiser)``.
"""

from __future__ import annotations

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
