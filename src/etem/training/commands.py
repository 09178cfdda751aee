"""Handlers of ``etem train`` and ``etem retrain`` (arguments in :mod:`etem.training.cli`)."""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from mlflow.tracking import MlflowClient

from etem.cliutils import config_from_args, stage_run
from etem.config import load_config
from etem.errors import ConfigError, InputError
from etem.frames.files import is_pattern, movie_files
from etem.paths import Layout
from etem.runs import StageRun, model_file, tracking_uri
from etem.training.run import (
    SOURCES_ARTIFACT,
    STAGES,
    logged_sources,
    prepare_task,
    train_network,
)
from etem.training.tasks import movie_record


def _set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(max(1, n))


def train(args: argparse.Namespace) -> int:
    """``etem train <network>``: train one network (resumes from its checkpoint)."""
    kind = args.kind
    if getattr(args, "steps", None) is not None:
        if args.steps < 1:
            raise InputError(f"--steps {args.steps}: must be >= 1")
        args.overrides = [*(args.overrides or []), f"training.{kind}.steps={args.steps}"]
    cfg = config_from_args(args)
    layout = Layout(cfg.results_path)
    source: Path | list[Path]
    if kind == "unsupervised":
        movies = [Path(m) for m in args.movie] if args.movie else [layout.synthetic_movie]
        for m in movies:  # a file, a folder of frames, or a glob pattern of frames
            if not movie_files(m):
                what = "no file matches the pattern" if is_pattern(m) else "no such file or folder"
                raise InputError(f"movie {m}: {what}")
        source = movies[0] if len(movies) == 1 else movies  # several: one group, streamed
    else:
        source = Path(args.index) if args.index else layout.simulation_index
        if not source.exists():
            raise InputError(f"index {source}: no such file")
    out = Path(args.out) if args.out else layout.model(kind)
    _set_threads(args.threads)
    manifest = getattr(args, "manifest", None)
    if getattr(args, "init_from", None):  # a file, or models:/NAME/VERSION resolved here
        args.init_from = model_file(args.init_from, cfg)
    # inputs opened and checked before the MLflow run starts: a bad one starts nothing
    task = prepare_task(kind, cfg, source, manifest, getattr(args, "init_from", None))
    with stage_run(args, cfg, STAGES[kind]) as run:
        result = train_network(kind, cfg, source, out, tracker=run, manifest=manifest,
                               resume=not args.no_resume,
                               init_from=getattr(args, "init_from", None), task=task)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    print(f"{out}: {kind} trained for {result.steps} steps (best step {result.best_step}); {shown}")
    return 0


def _json_artifact(client: MlflowClient, run_id: str, name: str, tmp: str) -> Any:
    """A run's JSON artifact ``name``, or None when it has none (older runs)."""
    try:
        local = client.download_artifacts(run_id, name, tmp)
        return json.loads(Path(local).read_text(encoding="utf-8"))
    except Exception:
        return None


def _same_movies(sources: list[str], records: Any, run_id: str) -> None:
    """Check that a retrain opens the movies the run trained on (content digests of its
    movies.json, in the order of its inputs): a movie missing or changed is one error."""
    for i, src in enumerate(sources):
        if not movie_files(src):
            what = "no file matches the pattern" if is_pattern(src) else "no such file or folder"
            raise InputError(f"movie {src}: {what} (an input of run {run_id})")
        if not isinstance(records, list) or i >= len(records):
            continue  # a run of an older version: nothing to compare with
        now, then = movie_record(src)["digest"], records[i].get("digest")
        if then and now != then:
            raise InputError(f"movie {src}: changed since run {run_id} (content digest {now}, "
                             f"logged {then}); a retrain reproduces a training on its movies")


def retrain(args: argparse.Namespace) -> int:
    """``etem retrain``: re-run a logged training and compare its validation metrics."""
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        if not args.config:
            raise ConfigError("retrain needs --tracking-uri, --config or MLFLOW_TRACKING_URI")
        uri = tracking_uri(load_config(args.config))
    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(args.run_id)
    except Exception:
        raise InputError(f"MLflow run {args.run_id}: not found in {uri}") from None
    params = run.data.params
    kind = params.get("train.kind")
    if kind not in STAGES:
        raise InputError(f"MLflow run {args.run_id} is not a training run (stage "
                         f"{run.data.tags.get('etem.stage')!r})")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(args.run_id, "config.yaml", tmp)
        except Exception:
            raise InputError(f"MLflow run {args.run_id}: no config.yaml artifact") from None
        data = yaml.safe_load(Path(local).read_text(encoding="utf-8"))
        logged = {name: _json_artifact(client, args.run_id, name, tmp)
                  for name in (SOURCES_ARTIFACT, "movies.json")}
    cfg = load_config(data)
    try:
        sources = logged_sources(params, logged)
    except InputError as exc:
        raise InputError(f"MLflow run {args.run_id}: {exc}") from None
    if kind == "unsupervised":
        _same_movies(sources, logged["movies.json"], args.run_id)
    source: str | list[Path] = sources[0] if len(sources) == 1 else [Path(s) for s in sources]
    out = Path(args.out) if args.out else Path(params["train.out"])
    _set_threads(args.threads)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri  # same store, same config hash (same campaign)
    manifest = params.get("train.manifest") or None
    init_from = params.get("train.init_from") or None
    task = prepare_task(kind, cfg, source, manifest, init_from)  # before the run starts
    try:
        with StageRun(cfg, STAGES[kind], params={"retrain_of": args.run_id},
                      tags={"etem.retrain_of": args.run_id}) as new:
            result = train_network(kind, cfg, source, out, tracker=new, manifest=manifest,
                                   resume=False, init_from=init_from, task=task)
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    old = {k.removeprefix("final_"): v for k, v in run.data.metrics.items()
           if k.startswith("final_")}
    diffs = {k: result.metrics[k] - old[k] for k in old if k in result.metrics}
    same = all(math.isclose(d, 0.0, abs_tol=0.0) for d in diffs.values())
    shown = ", ".join(f"{k} {result.metrics[k]:.6g} (was {old[k]:.6g})" for k in sorted(diffs))
    print(f"{out}: retrained {kind} from run {args.run_id}; "
          f"{'identical' if same else 'DIFFERENT'} validation metrics: {shown}")
    return 0
