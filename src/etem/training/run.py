"""Train one network end to end: task + loop + model file + MLflow artifacts.

Used by ``etem train ...`` and ``etem retrain``; importable for scripts and tests.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from etem.errors import ConfigError
from etem.models.io import save_model
from etem.provenance import provenance
from etem.training.loop import TrainResult, train
from etem.training.tasks import DenoiserTask, SegmenterTask, Task, UnsupervisedTask

log = logging.getLogger("etem.training.run")

STAGES = {"denoiser": "train-denoiser", "unsupervised": "train-unsupervised",
          "segmenter": "train-segmenter"}

#: The input contract of each network's model file ("signature").
SIGNATURES = {
    "denoiser": {
        "input": "(N, C, H, W) float32: counts / dose [e/px] (vacuum = 1); C = 2 adds 1/sqrt(dose)",
        "output": "(N, 1, H, W) float32: clean intensity, vacuum = 1",
        "helper": "etem.models.predict.denoise_images",
    },
    "segmenter": {
        "input": "(N, C, H, W) float32: counts / dose [e/px] (vacuum = 1); C = 2 adds 1/sqrt(dose)",
        "output": "(N, n_classes + 2*max_occupancy, H, W) logits: classes, then P(n>k) "
        "of cation and anion occupancy",
        "helper": "etem.models.predict.segment_images",
    },
    "unsupervised": {
        "input": "(N, n_frames, H, W) float32: consecutive frames / dose [e/px]",
        "output": "(N, 1, H, W) float32: middle frame, denoised (centre pixel blind)",
        "helper": "etem.models.predict.denoise_movie",
    },
}


def make_task(kind: str, campaign: Any, source: str | os.PathLike[str],
              manifest: str | None = None) -> Task:
    """The :class:`Task` of ``kind`` on an image index (denoiser/segmenter) or a movie."""
    cfg = getattr(campaign.training, kind)
    if kind == "denoiser":
        return DenoiserTask(campaign, cfg, source, manifest)
    if kind == "segmenter":
        return SegmenterTask(campaign, cfg, source, manifest)
    if kind == "unsupervised":
        return UnsupervisedTask(campaign, cfg, source)
    raise ConfigError(f"unknown network {kind!r}; expected one of {sorted(STAGES)}")


def checkpoint_path(out: str | os.PathLike[str]) -> Path:
    """Resumable checkpoint beside the model file: ``<out>.ckpt``."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def train_network(
    kind: str, campaign: Any, source: str | os.PathLike[str], out: str | os.PathLike[str],
    tracker: Any = None, manifest: str | None = None, resume: bool = True,
    stop_after_step: int | None = None, panels: bool = True,
) -> TrainResult:
    """Train network ``kind`` and write its model file ``out`` (atomically).

    The checkpoint ``<out>.ckpt`` is resumed from when present and removed on success.
    With a tracker: params, metrics, the sample-panel figure, the model file and its meta
    are logged to the MLflow run.
    """
    cfg = getattr(campaign.training, kind)
    task = make_task(kind, campaign, source, manifest)
    ckpt = checkpoint_path(out)
    if tracker is not None:
        tracker.log_params({"train": {"kind": kind, "source": str(Path(source).resolve()),
                                      "out": str(Path(out).resolve()),
                                      "manifest": str(manifest or "")},
                            "loop": cfg.model_dump(mode="json")})
    result = train(task, cfg, campaign.seed, checkpoint=ckpt, tracker=tracker, resume=resume,
                   stop_after_step=stop_after_step)
    if result.interrupted:
        return result
    meta = {
        "kind": kind,
        "arch": task.arch,
        "config": cfg.model_dump(mode="json"),
        **task.meta(),
        "metrics": result.metrics,
        "best_step": result.best_step,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "signature": SIGNATURES[kind],
        "provenance": provenance(campaign, STAGES[kind]),
        "mlflow_run_id": getattr(tracker, "run_id", None),
    }
    save_model(out, result.model, meta)
    if tracker is not None and getattr(tracker, "run_id", None):
        from etem.models.factory import count_parameters

        device = next(result.model.parameters()).device
        amp = bool(cfg.amp)
        tracker.log_metrics({f"final_{k}": v for k, v in result.metrics.items()}, step=result.steps)
        tracker.set_tags({"etem.model.kind": kind,
                          "etem.model.parameters": count_parameters(result.model)})
        if panels:
            import matplotlib.pyplot as plt

            from etem.models.predict import bf16_supported

            fig = task.panels(result.model, amp and bf16_supported(device), device)
            tracker.log_figure(fig, f"{kind}_samples.png")
            plt.close(fig)
        tracker.log_artifact(out, "model")
        import json

        tracker.log_text(json.dumps(meta, indent=2, sort_keys=True, default=str), "model_meta.json")
        tracker.flush()
    if ckpt.exists():
        ckpt.unlink()
    return result
