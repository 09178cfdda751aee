"""Train one network end to end: task + loop + model file + MLflow artifacts.

Used by ``etem train ...`` and ``etem retrain``; importable for scripts and tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from etem.config import EtemConfig
from etem.errors import ConfigError, InputError
from etem.frames.files import is_pattern, movie_path
from etem.io import file_digest
from etem.models.factory import count_parameters
from etem.models.inference import bf16_supported
from etem.models.io import load_model, save_model
from etem.plotting import plt
from etem.provenance import provenance
from etem.runs import StageRun
from etem.training.loop import TrainResult, train
from etem.training.tasks import (
    DenoiserTask,
    InitModel,
    SegmenterTask,
    Task,
    UnsupervisedTask,
    movie_record,
)

log = logging.getLogger("etem.training.run")

STAGES = {"denoiser": "train-denoiser", "unsupervised": "train-unsupervised",
          "segmenter": "train-segmenter"}

#: The input contract of each network's model file ("signature").
SIGNATURES = {
    "denoiser": {
        "input": "(N, C, H, W) float32: [arch prefilter wiener_sure: the SURE-chosen Wiener "
        "filter of the whole frame (vacuum = 1)], counts / dose [e/px] (vacuum = 1), "
        "[dose_conditioned: 1/sqrt(dose)]; built by etem.data.inputs.network_input",
        "output": "(N, 1, H, W) float32: clean intensity, vacuum = 1",
        "helper": "etem.models.inference.denoise_images",
    },
    "segmenter": {
        "input": "(N, C, H, W) float32: counts / dose [e/px] (vacuum = 1); C = 2 adds 1/sqrt(dose)",
        "output": "(N, n_classes + 2*max_occupancy, H, W) logits: classes, then P(n>k) "
        "of cation and anion occupancy",
        "helper": "etem.models.inference.segment_images",
    },
    "unsupervised": {
        "input": "(N, n_frames, H, W) float32: consecutive frames / dose [e/px]",
        "output": "(N, 1, H, W) float32: middle frame, denoised (centre pixel blind)",
        "helper": "etem.models.inference.denoise_movie",
    },
}


#: Networks whose training can start from a model file (``--init-from``: fine-tuning).
INIT_KINDS = ("unsupervised",)


def load_init_model(path: str | os.PathLike[str], kind: str) -> InitModel:
    """Read a model file to start training ``kind`` from (fine-tuning).

    Raises :class:`InputError` when the file is missing, unreadable, or holds another kind of
    network (e.g. a supervised single-frame denoiser given for the blind-spot network).
    """

    if kind not in INIT_KINDS:
        raise ConfigError(f"--init-from is supported for the {', '.join(INIT_KINDS)} network "
                          f"only, not {kind!r}")
    module, meta = load_model(path)
    got = meta.get("kind")
    if got != kind or int(meta.get("arch", {}).get("n_frames", 0) or 0) < 3:
        raise InputError(f"init model {path}: a {got} model, not an {kind} (blind-spot "
                         "multi-frame) model; give a model file of `etem train unsupervised`")
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return InitModel(str(path), dict(meta["arch"]), module.state_dict(), dict(meta), digest)


def make_task(kind: str, campaign: EtemConfig, source: Any, manifest: str | None = None,
              init: InitModel | None = None) -> Task:
    """The :class:`Task` of ``kind`` on an image index (denoiser/segmenter) or a movie.

    ``init`` (unsupervised only) starts the network from a model file's weights.
    """
    cfg = getattr(campaign.training, kind)
    if init is not None and kind not in INIT_KINDS:
        raise ConfigError(f"starting from a model file is supported for {INIT_KINDS} only")
    if kind == "denoiser":
        return DenoiserTask(campaign, cfg, source, manifest)
    if kind == "segmenter":
        return SegmenterTask(campaign, cfg, source, manifest)
    if kind == "unsupervised":
        return UnsupervisedTask(campaign, cfg, source, init=init)
    raise ConfigError(f"unknown network {kind!r}; expected one of {sorted(STAGES)}")


def prepare_task(kind: str, campaign: EtemConfig, source: Any, manifest: str | None = None,
                 init_from: str | os.PathLike[str] | None = None) -> Task:
    """The :class:`Task` :func:`train_network` trains: its init model read (``init_from``),
    its inputs opened and checked (one :class:`InputError` for a bad one)."""
    init = load_init_model(init_from, kind) if init_from else None
    return make_task(kind, campaign, source, manifest, init=init)


#: The run artifact listing a training's inputs (JSON list of absolute paths; a parameter is
#: cut at 6000 characters, a group of many movies is not).
SOURCES_ARTIFACT = "sources.json"


def absolute_source(path: str | os.PathLike[str]) -> str:
    """A training input as an absolute path that opens the same from any folder: an existing
    file or folder resolved; a relative glob pattern joined to the current folder, whose own
    glob characters are escaped (:func:`etem.frames.files.movie_path`)."""
    if Path(path).exists() or not is_pattern(path):
        return str(Path(path).resolve())
    return movie_path(path, Path.cwd())


def logged_sources(params: dict[str, str], artifacts: dict[str, Any]) -> list[str]:
    """The inputs of a logged training: its ``sources.json`` artifact (``artifacts`` holds the
    run's JSON artifacts that could be read, by name), else the ``train.source`` parameter
    (a JSON list, or one path in runs of older versions); an older group run without the
    list: the paths of its ``movies.json``."""
    listed = artifacts.get(SOURCES_ARTIFACT)
    if isinstance(listed, list) and listed:
        return [str(s) for s in listed]
    value = params.get("train.source", "")
    if value.startswith("["):
        try:
            return [str(s) for s in json.loads(value)]
        except json.JSONDecodeError:
            pass  # cut at the parameter's length limit
    movies = artifacts.get("movies.json")
    if isinstance(movies, list) and len(movies) > 1:
        return [str(m["path"]) for m in movies]
    if not value:
        raise InputError("the run logs no training input (train.source)")
    return [value]


def checkpoint_path(out: str | os.PathLike[str]) -> Path:
    """Resumable checkpoint beside the model file: ``<out>.ckpt``."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def train_network(
    kind: str, campaign: EtemConfig, source: str | os.PathLike[str] | list[Path],
    out: str | os.PathLike[str],
    tracker: StageRun | None = None, manifest: str | None = None, resume: bool = True,
    stop_after_step: int | None = None, panels: bool = True,
    init_from: str | os.PathLike[str] | None = None, task: Task | None = None,
) -> TrainResult:
    """Train network ``kind`` and write its model file ``out`` (atomically).

    The checkpoint ``<out>.ckpt`` is resumed from when present and removed on success.
    With a tracker: params, metrics, the sample-panel figure, the model file and its meta
    are logged to the MLflow run. ``init_from``: a model file whose weights (and
    architecture) the training starts from (fine-tuning; unsupervised only). ``task``: the
    task :func:`prepare_task` made of the same arguments (the commands make it before the
    MLflow run starts, so bad inputs start nothing); made here when None.
    """
    cfg = getattr(campaign.training, kind)
    if task is None:
        task = prepare_task(kind, campaign, source, manifest, init_from)
    init: InitModel | None = getattr(task, "init", None)
    ckpt = checkpoint_path(out)
    if tracker is not None:
        sources = source if isinstance(source, list) else [Path(source)]
        # the inputs as a list (JSON), each path absolute: `etem retrain` reopens each one
        # (a comma, a space or a glob pattern in a path is data)
        absolute = [absolute_source(s) for s in sources]
        train_params = {"kind": kind, "source": json.dumps(absolute),
                        "out": str(Path(out).resolve()), "manifest": str(manifest or "")}
        tracker.log_text(json.dumps(absolute, indent=2), SOURCES_ARTIFACT)  # never truncated
        if init is not None:
            train_params["init_from"] = str(Path(init.path).resolve())
            tracker.set_tags({"etem.init_from.sha256": init.sha256})
        tracker.log_params({"train": train_params, "loop": cfg.model_dump(mode="json")})
        movies = getattr(task, "movies", [])
        if kind == "unsupervised" and not movies:  # one movie (a group of one): logged alike
            movies = [movie_record(s) for s in sources]
        if movies:  # which movie files (by content digest) the network learned from
            tracker.log_text(json.dumps(movies, indent=2), "movies.json")
            tracker.set_tags({"etem.movies": ",".join(f"{Path(m['path']).name}:{m['digest']}"
                                                      for m in movies)[:5000]})
    result = train(task, cfg, campaign.seed, checkpoint=ckpt, tracker=tracker, resume=resume,
                   stop_after_step=stop_after_step)
    if result.interrupted:
        return result
    config = cfg.model_dump(mode="json")
    if init is not None:  # the architecture came from the init model
        config["n_frames"] = task.arch["n_frames"]
        config["model"].update(depth=task.arch["depth"], base_channels=task.arch["base_channels"])
    meta = {
        "kind": kind,
        "arch": task.arch,
        "config": config,
        **task.meta(),
        "metrics": result.metrics,
        "best_step": result.best_step,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "signature": SIGNATURES[kind],
        "provenance": provenance(campaign, STAGES[kind]),
    }
    save_model(out, result.model, meta)
    if tracker is not None and getattr(tracker, "run_id", None):
        device = next(result.model.parameters()).device
        amp = bool(cfg.amp)
        tracker.log_metrics({f"final_{k}": v for k, v in result.metrics.items()}, step=result.steps)
        tracker.set_tags({"etem.model.kind": kind, "etem.model.sha256": file_digest(out),
                          "etem.model.parameters": count_parameters(result.model)})
        if panels:
            fig = task.panels(result.model, amp and bf16_supported(device), device)
            tracker.log_figure(fig, f"{kind}_samples.png")
            plt.close(fig)
        tracker.log_artifact(out, "model")
        tracker.register_model(out, kind)  # models:/<campaign>-<kind>/<version>

        tracker.log_text(json.dumps(meta, indent=2, sort_keys=True, default=str), "model_meta.json")
        tracker.flush()
    if ckpt.exists():
        ckpt.unlink()
    return result
