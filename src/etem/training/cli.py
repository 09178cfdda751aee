"""``etem train {denoiser,segmenter,unsupervised}`` and ``etem retrain``."""

from __future__ import annotations

import argparse
from typing import Any

from etem.cliutils import add_config_args, model_arg

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
        q.set_defaults(handler="etem.training.commands:train", passive_openmp=True, kind=kind)
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
    q.add_argument("--movie", nargs="+", metavar="MOVIE",
                   help="noisy movie(s): a file, a folder of per-frame files or a quoted glob "
                   "pattern of per-frame files, e.g. 'raw/run03_*.tif' (default "
                   "<results>/movies/synthetic.h5); several movies of one condition train one "
                   "network on all of them, patches streamed from each without loading them "
                   "whole")
    q.add_argument("--init-from", metavar="MODEL", type=model_arg,
                   help="fine-tune: start from this unsupervised model file or registered model "
                   "models:/NAME/VERSION (its architecture "
                   "and window n_frames are kept) instead of random weights; the new model "
                   "records the parent's path, sha256 and MLflow run id")
    q.add_argument("--steps", type=int, default=None, metavar="N",
                   help="optimizer steps (overrides training.unsupervised.steps)")
    _add_run_args(q, "unsupervised")
    q.set_defaults(
        handler="etem.training.commands:train", passive_openmp=True, kind="unsupervised"
    )

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
    r.set_defaults(handler="etem.training.commands:retrain", passive_openmp=True)


def _add_run_args(q: argparse.ArgumentParser, kind: str) -> None:
    q.add_argument("--out", help=f"model file to write (default <results>/models/{kind}.pt)")
    q.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    q.add_argument("--no-resume", action="store_true",
                   help="ignore an existing checkpoint <out>.ckpt")
