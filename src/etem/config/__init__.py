"""The campaign configuration: the one source of truth for every key, its bounds and units.

A YAML file (``config/config.yaml``, ``demo.yaml``, ``smoke.yaml``) is validated into
:class:`EtemConfig`. Unknown keys and bad values raise :class:`~etem.errors.ConfigError`
naming the key, e.g. ``simulation.defocus_nm: Input should be a valid list (got 'abc')``.
The JSON schema used by the Snakefile (``workflow/schemas/config.schema.json``) is exported
from these models (``etem config schema``), never written by hand.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import Field, field_validator, model_validator

from etem.config.apply import MOVED_KEY_ERROR, ApplyConfig
from etem.config.base import FolderName, StrictModel
from etem.config.evaluation import ColumnsConfig, EvaluationConfig
from etem.config.movies import MoviesConfig
from etem.config.simulation import NoiseConfig, SimulationConfig, SyntheticMovieConfig
from etem.config.stages import STAGE_SECTIONS, stage_hash, stage_yaml
from etem.config.structures import StructuresConfig
from etem.config.tracking import TrackingConfig
from etem.config.training import TrainingConfig
from etem.errors import ConfigError
from etem.io import write_text
from etem.provenance import config_hash

__all__ = [
    "STAGE_SECTIONS",
    "EtemConfig",
    "format_validation_error",
    "load_config",
    "schema",
    "stage_hash",
    "stage_yaml",
    "write_resolved",
]


class EtemConfig(StrictModel):
    """A whole campaign: structures → images → networks → benchmarks → movies → report."""

    name: FolderName = Field(
        "campaign", description="campaign name (MLflow experiment, results folder)"
    )
    seed: int = Field(0, ge=0, description="root seed: every random choice derives from it")
    results_dir: str | None = Field(None, description="output root; default results/<name>")
    structures: StructuresConfig = Field(default_factory=StructuresConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    synthetic_movie: SyntheticMovieConfig = Field(default_factory=SyntheticMovieConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    apply: ApplyConfig = Field(default_factory=ApplyConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    movies: MoviesConfig = Field(default_factory=MoviesConfig)
    stage: str | None = Field(
        None,
        description="set by the workflow in <results>/config/<stage>.yaml: the stage whose "
        "config sections the file carries (the others are defaults); leave unset",
    )

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, v: str | None) -> str | None:
        if v is not None and v not in STAGE_SECTIONS:
            raise ValueError(f"not one of {', '.join(STAGE_SECTIONS)}")
        return v

    @model_validator(mode="after")
    def _events_after_calibration(self) -> EtemConfig:
        # The campaign's apply stage runs on the synthetic movie; with a leading-frames
        # calibration its leading frames must be stable: the event detector calibrates its
        # threshold on them. (A per-stage file was cut from a campaign config checked whole,
        # and may carry only one of the two.)
        if self.stage is not None or self.apply.events.calibration != "leading_frames":
            return self
        first = min(self.synthetic_movie.event_frames, default=None)
        calibration = self.apply.events.calibration_frames
        if first is not None and first <= calibration:
            raise ValueError(
                f"synthetic_movie.event_frames: first event at frame {first} falls inside the "
                f"{calibration} stable calibration frames "
                "(apply.events.calibration_frames); move the event later or calibrate on fewer "
                "frames"
            )
        return self

    @property
    def results_path(self) -> Path:
        """Output root of the campaign."""
        return Path(self.results_dir) if self.results_dir else Path("results") / self.name

    def hash(self) -> str:
        """Hash of the validated config (all defaults filled in)."""
        return config_hash(self.model_dump(mode="json"))

    def with_code_path(self, name: str) -> EtemConfig:
        """This config with the ``simulation`` overrides of code path ``name``
        (``evaluation.code_paths``) applied; ConfigError if there is no such code path."""
        data = self.model_dump(mode="json")
        data["simulation"].update(self.evaluation.code_path(name).overrides())
        try:
            return type(self).model_validate(data)
        except pydantic.ValidationError as err:
            raise ConfigError(f"code path {name!r}: {format_validation_error(err)}") from None

    def section(self, dotted: str) -> dict[str, Any]:
        """The JSON-able dict of one section, e.g. ``"training.denoiser"``."""
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj.model_dump(mode="json") if isinstance(obj, pydantic.BaseModel) else obj


def format_validation_error(err: pydantic.ValidationError) -> str:
    """One line per problem: ``dotted.key: reason (got value)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == MOVED_KEY_ERROR:  # a key of a former flat section: name its new home
            moves = e.get("ctx", {}).get("moves", [])
            lines += [f"config key {loc}.{old} moved to {loc}.{new}" for old, new in moves]
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        got = e.get("input")
        shown = "" if e["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{loc}: {msg}{shown}" if loc else msg)
    return "; ".join(lines)


def _merge(node: dict[str, Any], key: str, value: Any) -> None:
    """Set ``node[key] = value``, merging a dict value into a dict already there."""
    old = node.get(key)
    if isinstance(value, dict) and isinstance(old, dict):
        for k, v in value.items():
            _merge(old, k, v)
    else:
        node[key] = value


def load_config(
    source: str | os.PathLike[str] | dict[str, Any] | None,
    overrides: dict[str, Any] | None = None,
) -> EtemConfig:
    """Validate a config from a YAML path or a dict, plus optional overrides.

    ``overrides`` keys are dotted paths from the top of the config, e.g.
    ``{"apply.inference.tile_px": 128}``; a dict value is merged into the section it names
    (``{"apply.inference": {"tile_px": 128}}`` or ``{"apply": {"inference": {"tile_px": 128}}}``
    give the same), any other value replaces the key.
    """
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, dict):
        data = json.loads(json.dumps(source))  # deep copy, plain types
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"config file {path}: no such file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: not valid YAML: {exc}") from None
        if data is None:  # an empty file would silently mean the full default campaign
            raise ConfigError(f"config file {path}: empty (give at least `name:`)")
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        _merge(node, leaf, copy.deepcopy(value))
    try:
        return EtemConfig.model_validate(data)
    except pydantic.ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def schema() -> dict[str, Any]:
    """JSON schema of :class:`EtemConfig` (documentation and editor completion; the pydantic
    models are the one validator)."""
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    out.update(EtemConfig.model_json_schema())
    return out


def write_resolved(config: EtemConfig, path: str | os.PathLike[str]) -> Path:
    """Write the validated config (defaults filled in) as YAML, only if its content changed.

    Keeping the file untouched when nothing changed keeps its mtime, so Snakemake does not
    rerun jobs that depend on it.
    """
    path = Path(path)
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
    return path
