"""The Python API: the common calls of etem without the command line or Snakemake.

::

    import etem

    movie = etem.open_movie("movie.h5")             # any format the readers know, lazily
    summary = etem.apply_movie(movie, "out", denoiser="models/denoiser.pt",
                               overrides={"apply.inference.tile_px": 128})

``import etem`` stays light: these names load their modules on first use (PEP 562).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from etem.analysis.likelihood import Calibration
from etem.config import EtemConfig, load_config
from etem.frames.readers import Movie, open_movie
from etem.models.io import LoadedModel, load
from etem.movies.apply import ApplyModels
from etem.movies.apply import apply_movie as _apply_movie

__all__ = ["apply_movie", "load_model", "open_movie"]

PathLike = str | os.PathLike[str]


def load_model(path: PathLike, kind: str | None = None, device: str = "cpu") -> LoadedModel:
    """A model file of ``etem train`` (``kind``: denoiser, unsupervised or segmenter, checked
    against the file when given)."""
    return load(path, device=device, kind=kind)


def _model(value: PathLike | LoadedModel | None, kind: str) -> LoadedModel | None:
    if value is None or isinstance(value, LoadedModel):
        return value
    return load(value, kind=kind)


def apply_movie(
    movie: PathLike | Movie,
    out: PathLike,
    denoiser: PathLike | LoadedModel | None = None,
    unsupervised: PathLike | LoadedModel | None = None,
    segmenter: PathLike | LoadedModel | None = None,
    calibration: PathLike | None = None,
    config: PathLike | EtemConfig | None = None,
    overrides: dict[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Denoise, find columns, track and detect events in ``movie``; outputs into ``out``.

    ``movie``: a path (file, folder of frames) or an opened :class:`Movie`. Models: model
    files or loaded models (at least one denoiser). ``config``: a campaign config (YAML path
    or object; default: the defaults) with ``overrides``: keys are dotted paths from the top
    of the config, e.g. ``{"apply.preprocess.pixel_size_A": 0.2}`` [Å]; a dict value merges
    into the section it names, so ``{"apply.inference": {"tile_px": 512, "device": "cpu"}}``
    and ``{"apply": {"inference": {"tile_px": 512}}}`` work too. The ``apply`` sections are
    ``io``, ``preprocess``, ``inference``, ``tracks``, ``events``, ``truth`` and ``finetune``
    (docs/movies.md); a key of the former flat ``apply:`` block (``apply.tile_px``) is
    refused with its new home. Returns the summary (also ``out/summary.json``). Nothing is
    tracked in MLflow (``etem apply`` does that).
    """
    if isinstance(config, EtemConfig):
        cfg = load_config(config.model_dump(mode="json"), overrides)
    else:
        cfg = load_config(config, overrides)
    opened = movie if isinstance(movie, Movie) else open_movie(Path(movie))
    models = ApplyModels(
        denoiser=_model(denoiser, "denoiser"),
        unsupervised=_model(unsupervised, "unsupervised"),
        segmenter=_model(segmenter, "segmenter"),
        calibration=Calibration.load(calibration) if calibration else None,
        calibration_path=str(calibration) if calibration else None,
    )
    return _apply_movie(opened, Path(out), cfg, models, name=name)
