"""``etem train {denoiser,segmenter,unsupervised}`` and ``etem retrain``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from etem.cliutils import add_config_args, config_from_args, stage_run
from etem.errors import ConfigError, InputError

log = logging.getLogger("etem.training.cli")

_COMMON_EPILOG = (
    "Doses: training doses are drawn log-uniformly from training.<net>.dose_e_per_A2 "
    "(default noise.train_dose_e_per_A2) [e/Å²] and converted to counts with the image pixel "
    "size [Å]. A checkpoint <out>.ckpt is written every checkpoint_every_steps; rerunning the "
    "same command resumes from it (same final weights). Tracked in MLflow as stage "
    "train-<net>."
)


def register(sub: Any) -> None:
    """Add the training subcommands to the ``etem`` parser."""
    p = sub.add_parser("train", help="train a network (denoiser, segmenter, unsupervised)")
    tsub = p.add_subparsers(dest="network", metavar="<network>", required=True)
    for kind, what in (
        ("denoiser", "supervised denoiser on simulated images (MSE to the clean image)"),
        ("segmenter", "occupancy segmenter on simulated (oxide) images: class map + occupancies"),
    ):
        q = tsub.add_parser(
            kind, help=what,
            description=f"Train the {what}.\n\nInput: the image index CSV of `etem simulate` "
            "(HDF5 shards, etem.simulation.contract), split by structure_id "
            "(training.split). Output: a model file (etem.models.io; load with load_model).",
            epilog=_COMMON_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_config_args(q)
        q.add_argument("--index", help="image index CSV (default <results>/simulation/index.csv)")
        q.add_argument("--manifest", help="structures manifest CSV (default: found beside the "
                       "index as ../structures/manifest.csv; gives held-out columns)")
        _add_run_args(q, kind)
        q.set_defaults(func=_train_command, kind=kind)
    q = tsub.add_parser(
        "unsupervised", help="blind-spot multi-frame denoiser trained on a noisy movie",
        description="Train the UDVD-like blind-spot denoiser directly on a noisy movie "
        "(no clean data): windows of training.unsupervised.n_frames frames predict the "
        "middle one, whose own pixel is hidden; loss to the noisy middle frame.\n\n"
        "Input: any movie the movie readers open (etem.frames.readers.open_movie), or etem's "
        "synthetic HDF5 movie (/frames counts (T, H, W); /clean, when present, is used only "
        "for validation PSNR). Output: a model file (etem.models.io).",
        epilog=_COMMON_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(q)
    q.add_argument("--movie", help="noisy movie (default <results>/movies/synthetic.h5)")
    q.add_argument("--init-from", metavar="MODEL",
                   help="fine-tune: start from this unsupervised model file (its architecture "
                   "and window n_frames are kept) instead of random weights; the new model "
                   "records the parent's path, sha256 and MLflow run id")
    q.add_argument("--steps", type=int, default=None, metavar="N",
                   help="optimizer steps (overrides training.unsupervised.steps)")
    _add_run_args(q, "unsupervised")
    q.set_defaults(func=_train_command, kind="unsupervised")

    r = sub.add_parser(
        "retrain", help="re-run a logged training from its MLflow run",
        description="Re-run the training logged as MLflow run RUN_ID with its logged config "
        "(config.yaml artifact) and inputs, then compare the validation metrics with the "
        "original run's. The tracking store is MLFLOW_TRACKING_URI, --tracking-uri, or the "
        "default store of --config's results folder.",
    )
    r.add_argument("--run-id", required=True, help="MLflow run id of a train-* stage run")
    r.add_argument("--out", help="model file to write (default: the original --out)")
    r.add_argument("--tracking-uri", help="MLflow tracking URI of the run")
    r.add_argument("--config", "-c", help="campaign config whose results hold the store")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    r.set_defaults(func=_retrain_command)


def _add_run_args(q: argparse.ArgumentParser, kind: str) -> None:
    q.add_argument("--out", help=f"model file to write (default <results>/models/{kind}.pt)")
    q.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    q.add_argument("--no-resume", action="store_true",
                   help="ignore an existing checkpoint <out>.ckpt")


def _passive_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spinning (set before torch is imported).

    On a machine shared with other jobs, spinning threads of a 2-thread torch process were
    measured 20-40x slower per step than passive ones (benchmarks/training.md).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(max(1, n))


def _train_command(args: argparse.Namespace) -> int:
    _passive_openmp()
    from etem.paths import Layout
    from etem.training.run import STAGES, train_network

    kind = args.kind
    if getattr(args, "steps", None) is not None:
        if args.steps < 1:
            raise InputError(f"--steps {args.steps}: must be >= 1")
        args.overrides = [*(args.overrides or []), f"training.{kind}.steps={args.steps}"]
    cfg = config_from_args(args)
    layout = Layout(cfg.results_path)
    if kind == "unsupervised":
        source = Path(args.movie) if args.movie else layout.synthetic_movie
    else:
        source = Path(args.index) if args.index else layout.simulation_index
    if not source.exists():
        raise InputError(f"{'movie' if kind == 'unsupervised' else 'index'} {source}: no such file")
    out = Path(args.out) if args.out else layout.model(kind)
    _set_threads(args.threads)
    with stage_run(args, cfg, STAGES[kind]) as run:
        result = train_network(kind, cfg, source, out, tracker=run,
                               manifest=getattr(args, "manifest", None),
                               resume=not args.no_resume,
                               init_from=getattr(args, "init_from", None))
    shown = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    print(f"{out}: {kind} trained for {result.steps} steps (best step {result.best_step}); {shown}")
    return 0


def _retrain_command(args: argparse.Namespace) -> int:
    _passive_openmp()
    import math
    import tempfile

    import yaml
    from mlflow.tracking import MlflowClient

    from etem.config import load_config
    from etem.runs import StageRun, tracking_uri
    from etem.training.run import STAGES, train_network

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
    cfg = load_config(data)
    out = Path(args.out) if args.out else Path(params["train.out"])
    _set_threads(args.threads)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri  # same store, same config hash (same campaign)
    try:
        with StageRun(cfg, STAGES[kind], params={"retrain_of": args.run_id},
                      tags={"etem.retrain_of": args.run_id}) as new:
            result = train_network(kind, cfg, params["train.source"], out, tracker=new,
                                   manifest=params.get("train.manifest") or None, resume=False,
                                   init_from=params.get("train.init_from") or None)
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
