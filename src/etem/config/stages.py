"""Per-stage configs: each workflow stage reads only the config sections it uses.

The workflow writes ``<results>/config/<stage>.yaml`` per stage (:func:`stage_yaml`): the
campaign's top-level keys plus the sections of :data:`STAGE_SECTIONS`, all defaults filled
in, with ``stage`` set. Changing a section re-runs only the stages that read it (an
``apply`` setting: apply and the report; never the simulation or a training).
"""

from __future__ import annotations

from typing import Any

import yaml

from etem.errors import ConfigError

#: Top-level keys every stage file carries (identity, seed, outputs, MLflow).
COMMON = ("name", "seed", "results_dir", "tracking")

#: Config sections each stage reads (besides :data:`COMMON`); ``report`` reads them all. A
#: dotted entry (``training.split``) carries that key of its section only (the rest of the
#: section is defaults when the file is loaded).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "structures": ("structures",),
    "simulation": ("structures", "simulation", "noise"),
    "simulate-movie": ("structures", "simulation", "noise", "synthetic_movie"),
    # the evaluated structures (training.split) simulated through another code path
    # (evaluation.code_paths); an evaluation setting does not re-run it
    "simulate-code-path": ("structures", "simulation", "noise", "training.split",
                           "evaluation.code_paths"),
    "training": ("structures", "simulation", "noise", "synthetic_movie", "training"),
    "evaluation": ("structures", "simulation", "noise", "synthetic_movie", "training", "evaluation",
                  "columns"),
    # one column finder (columns:) for the benchmark's calibration and the movies; the
    # calibration file comes from the benchmark; fine-tuning starts from training.unsupervised
    # (not ``movies``: a movie added to the sheet must not re-run the others; a row's own
    # settings reach its jobs as arguments)
    "apply": ("training", "columns", "apply"),
    "report": (
        "structures", "simulation", "noise", "synthetic_movie", "training", "evaluation", "columns",
        "apply",
        "movies",
    ),
}


def stage_dict(config: Any, stage: str) -> dict[str, Any]:
    """The JSON-able config of ``stage``: common keys, its sections, ``stage`` set
    (``config`` an :class:`~etem.config.EtemConfig`)."""
    if stage not in STAGE_SECTIONS:
        raise ConfigError(f"stage {stage!r}: not one of {', '.join(STAGE_SECTIONS)}")
    full = config.model_dump(mode="json")
    out: dict[str, Any] = {k: full[k] for k in COMMON}
    for key in STAGE_SECTIONS[stage]:
        *parents, leaf = key.split(".")
        src, dst = full, out
        for part in parents:
            src, dst = src[part], dst.setdefault(part, {})
        dst[leaf] = src[leaf]
    return {**out, "stage": stage}


def stage_yaml(config: Any, stage: str) -> str:
    """The YAML text of ``<results>/config/<stage>.yaml`` (same config → same bytes)."""
    return yaml.safe_dump(stage_dict(config, stage), sort_keys=False)


def stage_hash(config: Any, stage: str) -> str:
    """The config hash a stage's runs and outputs record (hash of its per-stage config)."""
    return str(type(config).model_validate(stage_dict(config, stage)).hash())
