"""Handlers of ``etem apply`` and ``etem movie-info`` (arguments in :mod:`etem.movies.cli`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from etem.analysis.likelihood import Calibration
from etem.cliutils import config_from_args, stage_run
from etem.errors import InputError
from etem.frames.readers import Movie, open_movie
from etem.models.io import load
from etem.movies.apply import ApplyModels, apply_movie
from etem.movies.truth import metrics as truth_metrics
from etem.runs import StageRun


def _open(paths: list[str]) -> Movie:
    return open_movie(paths[0] if len(paths) == 1 else paths)


def movie_info(args: argparse.Namespace) -> int:
    """``etem movie-info``: print a movie's metadata as JSON."""
    with _open(args.movie) as movie:
        sys.stdout.write(json.dumps(movie.describe(), indent=2) + "\n")
    return 0


def _load_models(args: argparse.Namespace) -> ApplyModels:
    models = ApplyModels(
        denoiser=load(args.denoiser) if args.denoiser else None,
        unsupervised=load(args.unsupervised) if args.unsupervised else None,
        segmenter=load(args.segmenter) if args.segmenter else None,
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
        run.set_tags({"etem.finetune.parent_run_id": ft["parent"]["run_id"] or ""})
    truth = summary.get("truth")
    if isinstance(truth, dict):  # the movie carried its ground truth (etem.movies.truth)
        run.log_metrics(truth_metrics(truth))
    for f in summary["files"].values():
        if f.endswith((".png", ".gif", ".csv", ".json", ".pt")):
            run.log_artifact(out / f, "apply")
    run.log_artifact(out / "summary.json", "apply")


def apply(args: argparse.Namespace) -> int:
    """``etem apply``: the movie stage on one movie."""
    if args.finetune_steps is not None:
        if args.finetune_steps < 0:
            raise InputError(f"--finetune-steps {args.finetune_steps}: must be >= 0")
        args.overrides = [*(args.overrides or []), f"apply.finetune_steps={args.finetune_steps}"]
    cfg = config_from_args(args)
    if not (args.denoiser or args.unsupervised):
        raise InputError("etem apply needs --denoiser and/or --unsupervised")
    models = _load_models(args)
    name = args.name or Path(args.movie[0]).stem
    params = {
        "movie": " ".join(args.movie),
        "out": args.out,
        **{f"apply.{k}": v for k, v in cfg.section("apply").items()},
    }
    out = Path(args.out)
    with stage_run(args, cfg, "apply", params=params, run_name=f"apply {name}") as run:
        run.set_tags(
            {f"etem.model.{k}.run_id": v for k, v in models.run_ids().items()}
            | {"etem.model_run_ids": ",".join(models.run_ids().values()), "etem.movie": name}
        )
        with _open(args.movie) as movie:
            summary = apply_movie(movie, out, cfg, models, name=name)
        _log_run(run, summary, out)
    print(
        f"{name}: {summary['n_frames']} frames, {summary['n_columns']} columns/frame, "
        f"{summary['n_events']} events -> {args.out}"
    )
    return 0
