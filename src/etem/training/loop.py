"""The one training loop (denoiser, unsupervised blind-spot denoiser, segmenter).

* Adam, lr reduced on a validation plateau, early stopping (not before
  ``early_stopping_min_steps``), best-validation weights kept;
* bf16 autocast + channels_last when ``amp`` and the device supports it;
* checkpoint every ``checkpoint_every_steps`` with model, optimizer, scheduler, early-stopping
  state and RNG states: an interrupted run resumes and ends with the same weights as an
  uninterrupted one (bitwise on CPU with deterministic algorithms). The data need no state:
  every sample is keyed by ``(step, j)`` (see :mod:`etem.data.datasets`);
* MLflow (through :class:`etem.runs.StageRun`): per-step loss (batched), validation
  metrics, learning rate, throughput [samples/s].
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from etem.config.training import LoopConfig
from etem.data.datasets import StepBatches, collate
from etem.errors import ConfigError, ValidationError
from etem.io import atomic_path
from etem.models.factory import build_model, count_parameters
from etem.models.inference import bf16_supported, with_memory_format
from etem.runs import StageRun
from etem.seeding import derive_seed
from etem.training.tasks import Task

log = logging.getLogger("etem.training.loop")

CHECKPOINT_FORMAT = "etem-checkpoint-1"


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    model: torch.nn.Module
    metrics: dict[str, float]  # validation metrics of the returned (best) weights
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False
    interrupted: bool = False
    best_step: int = 0


def select_device(name: str) -> torch.device:
    """'auto' -> CUDA if available, else CPU."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("training device 'cuda' requested but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def _rng_state() -> dict[str, Any]:
    # numpy's global generator is never used (all data randomness is keyed by step)
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), None))


def _improved(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return bool(np.isfinite(value))
    return value > best if mode == "max" else value < best


# long (130 lines): one training loop whose state (model, optimizer, scheduler, RNG, early
# stopping, history) must be checkpointed and resumed together; split, the resume path would
# have to pass all of it around.
def train(
    task: Task,
    cfg: LoopConfig,
    seed: int,
    checkpoint: str | os.PathLike[str] | None = None,
    tracker: StageRun | None = None,
    resume: bool = True,
    stop_after_step: int | None = None,
) -> TrainResult:
    """Train ``task``'s network with the loop settings ``cfg`` (a LoopConfig).

    Parameters
    ----------
    checkpoint : path, optional
        Checkpoint file, written every ``cfg.checkpoint_every_steps`` and when stopped by
        ``stop_after_step``; resumed from when it exists, ``resume`` is true and it belongs to
        the same task, config and data.
    tracker : StageRun, optional
        Where metrics go (``log_metrics``).
    stop_after_step : int, optional
        Stop after this many steps in total, writing a checkpoint (simulated interruption).
    """
    device = select_device(cfg.device)
    torch.use_deterministic_algorithms(bool(cfg.deterministic), warn_only=device.type != "cpu")
    amp = bool(cfg.amp) and bf16_supported(device)
    torch.manual_seed(derive_seed(seed, "torch", task.kind))
    random.seed(derive_seed(seed, "python", task.kind))
    model = build_model(task.arch)
    init_state = getattr(task, "init_state", None)
    if init_state is not None:  # fine-tuning: start from given weights (same RNG use)
        model.load_state_dict(init_state)
    model = model.to(device)
    if amp:
        model = with_memory_format(model, torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=task.mode, factor=cfg.lr_plateau_factor, patience=cfg.lr_plateau_patience
    )
    fingerprint = _fingerprint(task, cfg, seed)
    state: dict[str, Any] = {"step": 0, "best": None, "best_step": 0, "bad": 0, "history": [],
                             "best_state": None, "stopped_early": False, "logged": []}
    ckpt_path = Path(checkpoint) if checkpoint else None
    if ckpt_path and resume and ckpt_path.exists():
        blob = _load_checkpoint(ckpt_path)
        if blob is not None and blob.get("fingerprint") == fingerprint:
            model.load_state_dict(blob["model"])
            opt.load_state_dict(blob["optimizer"])
            sched.load_state_dict(blob["scheduler"])
            _set_rng_state(blob["rng"])
            state = blob["state"]
            log.info("resumed %s from %s at step %d", task.kind, ckpt_path, state["step"])
        else:
            log.warning("checkpoint %s is of another config or data: starting afresh", ckpt_path)
    log.info("%s: %d parameters, device %s, bf16 %s, %d steps of %d x %d px", task.kind,
             count_parameters(model), device, amp, cfg.steps, cfg.batch_size, cfg.patch_px)
    if tracker is not None:
        tracker.log_params({"model.parameters": count_parameters(model), "device": str(device),
                            "bf16": amp, "resumed_from_step": state["step"]})
        # a resumed run carries the whole history: what the interrupted run logged up to the
        # checkpoint is logged again here (that run is marked KILLED)
        for logged_step, logged in state.get("logged", []):
            tracker.log_metrics(logged, step=logged_step)

    loader = torch.utils.data.DataLoader(
        task.train_set, batch_sampler=StepBatches(state["step"], cfg.steps, cfg.batch_size),
        num_workers=cfg.num_workers, collate_fn=collate,
    )
    model.train()
    interrupted = False
    t_last, n_last = time.perf_counter(), 0
    step = state["step"]
    for batch in loader if not state["stopped_early"] else ():
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if amp:
            batch["input"] = batch["input"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = task.loss(model, batch)
        if not torch.isfinite(loss):
            raise ValidationError(f"{task.kind}: training loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        n_last += cfg.batch_size
        state.setdefault("logged", []).append((step, {"train_loss": float(loss.detach())}))
        if tracker is not None:
            tracker.log_metrics(state["logged"][-1][1], step=step)
        if step % cfg.val_every_steps == 0 or step == cfg.steps:
            dt = time.perf_counter() - t_last
            metrics = task.validate(model, amp, device)
            value = metrics[task.primary]
            sched.step(value)
            if _improved(value, state["best"], task.mode):
                state.update(best=value, best_step=step, bad=0,
                             best_state=copy.deepcopy(model.state_dict()))
            else:
                state["bad"] += 1
            metrics_all = {**metrics, "lr": opt.param_groups[0]["lr"],
                           "throughput_samples_per_s": n_last / max(dt, 1e-9)}
            state["history"].append({"step": step, **metrics})
            log.info("%s step %d/%d: %s", task.kind, step, cfg.steps,
                     ", ".join(f"{k} {v:.4g}" for k, v in metrics_all.items()))
            state["logged"].append((step, metrics_all))
            if tracker is not None:
                tracker.log_metrics(metrics_all, step=step)
            # not before min_steps_before_stop: a plateau at the start (a segmenter still at
            # "all background": the same mIoU at every validation) is not the end
            stop_allowed = step >= cfg.min_steps_before_stop
            if state["bad"] >= cfg.early_stopping_patience and stop_allowed:
                log.info("%s: early stop at step %d (best %s %.4g at step %d)", task.kind, step,
                         task.primary, state["best"], state["best_step"])
                state["stopped_early"] = True
            t_last, n_last = time.perf_counter(), 0
        state["step"] = step
        stop_now = stop_after_step is not None and step >= stop_after_step
        if ckpt_path and (step % cfg.checkpoint_every_steps == 0 or stop_now) and step < cfg.steps:
            _save_checkpoint(ckpt_path, fingerprint, model, opt, sched, state)
        if stop_now and step < cfg.steps:
            interrupted = True
            break
        if state["stopped_early"]:
            break
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model = with_memory_format(model, torch.contiguous_format).eval()
    best: dict[str, Any] = next(
        (h for h in state["history"] if h["step"] == state["best_step"]), {}
    )
    return TrainResult(
        model=model, metrics={k: v for k, v in best.items() if k != "step"},
        history=state["history"], steps=step, stopped_early=state["stopped_early"],
        interrupted=interrupted, best_step=state["best_step"],
    )


def _fingerprint(task: Task, cfg: LoopConfig, seed: int) -> str:
    loop = cfg.model_dump(mode="json")
    for key in ("num_workers", "device"):  # do not change the result
        loop.pop(key, None)
    blob = json.dumps(
        {"task": task.fingerprint(), "cfg": loop, "seed": seed, "format": CHECKPOINT_FORMAT},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, fingerprint: str, model: Any, opt: Any, sched: Any,
                     state: dict[str, Any]) -> None:
    blob = {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(),
            "state": state}
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(blob, tmp)


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt checkpoint is not fatal: start afresh
        log.warning("checkpoint %s unreadable (%s): starting afresh", path, type(exc).__name__)
        return None
    return blob if isinstance(blob, dict) and blob.get("format") == CHECKPOINT_FORMAT else None
