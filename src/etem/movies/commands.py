"""Handlers of ``etem apply`` and ``etem movie-info`` (arguments in :mod:`etem.movies.cli`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from etem.analysis.likelihood import Calibration
from etem.cliutils import config_from_args, emit, stage_run
from etem.config import EtemConfig
from etem.errors import InputError
from etem.frames.files import movie_name
from etem.frames.readers import Movie, open_movie
from etem.models.io import LoadedModel, load
from etem.models.pretrained import SOURCE as PRETRAINED
from etem.models.pretrained import pretrained_path
from etem.movies.apply import apply_movie
from etem.movies.gather import gather_results, summarise
from etem.movies.outputs import clear_outputs, output_lock
from etem.movies.prepare import (
    ApplyModels,
    check_movie,
    prepare_movie,
    read_prepared,
    write_prepared,
)
from etem.movies.shard import run_shard
from etem.movies.sheet import pin_models, read_sheet, sheet_schema
from etem.movies.truth import metrics as truth_metrics
from etem.runs import StageRun, is_registry_uri, model_file
from etem.training.finetune import FINETUNED_NAME


def _open(paths: list[str], frame_time_s: float | None = None) -> Movie:
    movie = open_movie(paths[0] if len(paths) == 1 else paths)
    if frame_time_s is not None:  # --frame-time-s (the sheet's frame_time_s column)
        movie.frame_time_s = frame_time_s
    return movie


def sheet(args: argparse.Namespace) -> int:
    """``etem sheet validate|schema``: check a movie sheet, or print its row schema."""
    if args.action == "schema":
        emit(json.dumps(sheet_schema(), indent=2, sort_keys=True) + "\n", args.out)
        return 0
    if not args.sheet:
        raise InputError("etem sheet validate needs SHEET")
    rows = read_sheet(args.sheet, args.cache)
    if any(is_registry_uri(spec) for r in rows for spec in r.models.values()):
        rows = pin_models(rows, config_from_args(args), args.sheet)  # registry asked once each
    for r in rows:
        models = " ".join(f"{k}={v}" for k, v in r.models.items())
        print(f"{r.name}\t{r.n_frames} frames\t{r.path}\t{r.group or ''}"
              + (f"\t{models}" if models else ""))
    print(f"{args.sheet}: valid ({len(rows)} movies)")
    return 0


def movie_info(args: argparse.Namespace) -> int:
    """``etem movie-info``: print a movie's metadata as JSON."""
    with _open(args.movie) as movie:
        sys.stdout.write(json.dumps(movie.describe(), indent=2) + "\n")
    return 0


log = logging.getLogger("etem.movies.commands")


def _model(spec: str | None, cfg: EtemConfig, kind: str) -> LoadedModel | None:
    """A model argument loaded: a file, or a registry URI ``models:/NAME/VERSION`` resolved in
    the config's tracking store (one-line error when it holds no such model)."""
    if not spec:
        return None
    model = load(model_file(spec, cfg), kind=kind)
    if is_registry_uri(spec):
        model.source = spec
    return model


def _uses_pretrained(args: argparse.Namespace, cfg: EtemConfig) -> bool:
    """Whether the packaged pretrained denoiser stands in for a missing --denoiser: when
    ``apply.inference.pretrained`` is on, the package ships one, and the choice can use it
    (supervised, or auto with a network among its candidates, scoring them or given no
    --unsupervised)."""
    inf = cfg.apply.inference
    if args.denoiser or not inf.pretrained or not inf.uses_network or pretrained_path() is None:
        return False
    if inf.denoise_with == "supervised":
        return True
    return inf.denoise_with == "auto" and (inf.score_targets > 0 or not args.unsupervised)


def _load_models(args: argparse.Namespace, cfg: EtemConfig) -> ApplyModels:
    denoiser = _model(args.denoiser, cfg, "denoiser")
    if _uses_pretrained(args, cfg):
        path = pretrained_path()
        denoiser = load(str(path), kind="denoiser")
        denoiser.source = PRETRAINED
        log.info("no --denoiser given: using the pretrained general denoiser shipped in the "
                 "package (%s; model card %s)", path, Path(str(path)).with_name("MODEL_CARD.md"))
    models = ApplyModels(
        denoiser=denoiser,
        unsupervised=_model(args.unsupervised, cfg, "unsupervised"),
        segmenter=_model(args.segmenter, cfg, "segmenter"),
    )
    if args.calibration:
        models.calibration = Calibration.load(args.calibration)
        models.calibration_path = str(args.calibration)
    return models


def _log_run(run: StageRun, summary: dict[str, Any], out: Path) -> None:
    """Metrics, tags and artifacts of one apply in its MLflow run."""
    timing = json.loads((out / "timing.json").read_text())
    metrics = {
        "n_frames": summary["n_frames"],
        "n_events": summary["n_events"],
        "n_columns": summary["n_columns"],
        "n_tracks": summary["n_tracks"],
        "processing_fps": timing["processing_fps"],
    }
    if summary["mean_confidence"] is not None:
        metrics["mean_confidence"] = summary["mean_confidence"]
    run.log_metrics(metrics)
    ft = summary.get("finetune")
    if isinstance(ft, dict):
        run.log_metrics(
            {
                "finetune_loss_before": ft["loss_before"],
                "finetune_loss_after": ft["loss_after"],
                "finetune_steps_done": ft["steps"],
                "finetune_kept": float(ft["kept"]),
                "finetune_s": timing.get("finetune_s", 0.0),
            }
        )
        run.set_tags({"etem.finetune.parent_sha256": ft["parent"]["sha256"] or ""})
    truth = summary.get("truth")
    if isinstance(truth, dict):  # the movie carried its ground truth (etem.movies.truth)
        run.log_metrics(truth_metrics(truth))
    for f in summary["files"].values():
        if f.endswith((".png", ".gif", ".csv", ".json", ".pt")):
            run.log_artifact(out / f, "apply")
    run.log_artifact(out / "summary.json", "apply")


def _config(args: argparse.Namespace) -> EtemConfig:
    """The config with ``--finetune-steps`` applied, a network not given taken from
    ``apply.models``; checks that a denoiser is given (none needed for a classical
    ``denoise_with``, raw, gaussian, wiener, nor for ``auto`` among classical
    ``auto_candidates`` only: :func:`etem.config.apply.uses_network`)."""
    if args.finetune_steps is not None:
        if args.finetune_steps < 0:
            raise InputError(f"--finetune-steps {args.finetune_steps}: must be >= 0")
        args.overrides = [*(args.overrides or []), f"apply.finetune.steps={args.finetune_steps}"]
    cfg = config_from_args(args)
    for kind in ("denoiser", "unsupervised", "segmenter"):  # the config's apply.models
        if not getattr(args, kind, None) and getattr(cfg.apply.models, kind):
            setattr(args, kind, getattr(cfg.apply.models, kind))
    classical = not cfg.apply.inference.uses_network
    if not (args.denoiser or args.unsupervised or classical or _uses_pretrained(args, cfg)):
        raise InputError(f"etem {args.command} needs --denoiser and/or --unsupervised (no "
                         "pretrained denoiser is used: apply.inference.pretrained, denoise_with)")
    return cfg


def _tracked(
    args: argparse.Namespace, cfg: EtemConfig, models: ApplyModels, name: str
) -> StageRun:
    """The MLflow run of one movie's apply (tagged with the model runs it used)."""
    params = {
        "movie": " ".join(args.movie),
        "out": args.out,
        **{
            f"apply.{section}.{k}": v
            for section, keys in cfg.section("apply").items()
            for k, v in keys.items()
        },
    }
    tags = {f"etem.model.{k}.sha256": v for k, v in models.digests().items()} | {
        "etem.movie": name,
    }
    # a standalone apply tracks into its own output folder, never a campaign it would guess
    # from the config (the workflow's rules set MLFLOW_TRACKING_URI to the campaign's store)
    return stage_run(args, cfg, "apply", params=params, run_name=f"apply {name}", tags=tags,
                     store_dir=Path(args.out))


def _done(name: str, summary: dict[str, Any], out: str) -> None:
    print(
        f"{name}: {summary['n_frames']} frames, {summary['n_columns']} columns/frame, "
        f"{summary['n_events']} events -> {out}"
    )


def apply(args: argparse.Namespace) -> int:
    """``etem apply``: the movie stage on one movie (the three passes in one process)."""
    cfg = _config(args)
    models = _load_models(args, cfg)
    name = args.name or movie_name(args.movie[0])
    out = Path(args.out)
    with _open(args.movie, args.frame_time_s) as movie:
        checked = check_movie(movie, cfg, models)  # a movie they cannot take starts nothing
        with _tracked(args, cfg, models, name) as run:
            summary = apply_movie(movie, out, cfg, models, name=name, checked=checked)
            _log_run(run, summary, out)
    _done(name, summary, args.out)
    return 0


def apply_prepare(args: argparse.Namespace) -> int:
    """``etem apply-prepare``: geometry, drift, dose, fine-tuning, polarity -> prepare.h5."""
    cfg = _config(args)
    models = _load_models(args, cfg)
    out = Path(args.out)
    ft_dir = Path(args.finetuned_dir) if args.finetuned_dir else out.parent
    with _open(args.movie, args.frame_time_s) as movie:
        prep = prepare_movie(movie, cfg, models, ft_dir)
    write_prepared(out, prep)
    geo = prep.geometry
    print(f"{out}: {geo.n_frames} frames of {geo.height}x{geo.width} px at "
          f"{geo.pixel_size_A:.4g} Å, dose {prep.dose_e_per_px:.4g} e/px ({prep.dose_source})")
    return 0


def apply_shard(args: argparse.Namespace) -> int:
    """``etem apply-shard``: denoise, segment and find columns in one frame range."""
    cfg = _config(args)
    models = _load_models(args, cfg)
    prep = read_prepared(args.prepared)
    start, stop = args.frames
    with _open(args.movie, args.frame_time_s) as movie:
        run_shard(movie, prep, cfg, models, start, min(stop, prep.geometry.n_frames), args.out)
    print(f"{args.out}: frames {start}:{stop}")
    return 0


def apply_gather(args: argparse.Namespace) -> int:
    """``etem apply-gather``: tracks, statistics, events and outputs of a movie's shards."""
    cfg = _config(args)
    models = _load_models(args, cfg)
    prep = read_prepared(args.prepared)
    name = args.name or movie_name(args.movie[0])
    out = Path(args.out)
    with output_lock(out), _tracked(args, cfg, models, name) as run:
        clear_outputs(out, keep=(FINETUNED_NAME,))  # written by apply-prepare
        with _open(args.movie, args.frame_time_s) as movie:
            gathered = gather_results(movie, prep, cfg, models, args.shards, out)
            summary = summarise(movie, prep, models, gathered, out, name)
        _log_run(run, summary, out)
    _done(name, summary, args.out)
    return 0
