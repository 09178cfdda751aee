"""Fine-tune the unsupervised blind-spot denoiser on the movie being applied (``etem apply``).

The blind-spot network needs no clean data, so it can keep learning on the very movie it is
about to denoise: ``apply.finetune.steps`` steps of the one training loop
(:func:`etem.training.loop.train`, task :class:`etem.training.tasks.UnsupervisedTask`
started from the given model's weights) on the leading ``apply.finetune.max_frames``
frames after the same summing, binning, resampling and drift correction as the denoising
pass, normalised by the same dose [e/px/frame].

The validation loss (MSE of the blind-spot prediction to the noisy middle frame on fixed
centre crops) decides. Because the prediction never sees the pixel it predicts, that loss is
the true MSE plus the (constant) noise variance, so its fall estimates the fall of the true
MSE without clean data, provided (1) the fine-tuning never trained on those noisy pixels as
targets: the validation frames (``min(training.unsupervised.val_samples, T // 4)`` of the T
frames, at least one; the middle one of a 5-frame window) are held out of the training
targets, whole (a full blind-spot training holds out only their validation crops:
:class:`etem.training.tasks.UnsupervisedTask`; here the validation frame of a short static
stack is the frame denoised, whose noise a network trained on it keeps); and (2) with
``apply.inference.match_mean`` each prediction is first scaled to its target's mean, as the
output will be (:meth:`UnsupervisedTask.validation_errors`): the mean count is known without
the network. The loop picks its best step by that loss on the even checkerboard half of the
validation pixels among up to :data:`VALIDATIONS` validations; the keep decision takes the
odd half (the least of several noisy losses is biased low on the pixels that chose it; the
halves' target noise is independent, their inputs are not, so the split lessens that bias
without removing every coupling) and keeps the fine-tuned weights only when the loss falls
by more than ``apply.finetune.keep_se`` standard errors of its paired fall
(:func:`loss_change`); otherwise the parent model denoises (``kept: false`` in the summary).
The loop's other settings are the training's: the lr halves on plateaus and the tuning stops
early after ``training.unsupervised.early_stopping_patience`` validations without gain (not
before half its steps; the record's ``steps`` are the steps done).

Measured on the demo campaign's static 5-frame images (0.09 e/px per frame, lr 1e-3; PSNR
over the parent): without (1) and (2), four validations and the step picked by the raw loss,
every 100-step fine-tuning was kept and the PSNR fell by 7.9 dB (the network learned the
validation frame's noise, and the parent's output, 30 % too bright there, gained from any
brightness correction); with (1) alone by 1.7 dB; with both 1 of 16 was kept, +0.19 dB; with
the step picked by the matched loss among 16 validations on one half, 16 of 16, +3.79 dB.

The fine-tuned model is written atomically as ``<out>/finetuned_unsupervised.pt`` (an etem
model file with provenance, the parent's path, sha256 and MLflow run id). Everything is
seeded from the config seed: same config and movie give the same weights with the same
number of torch threads (another thread count sums in another order: on the demo movie a
100-step keep decision at 1e-4 of the loss went either way).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from etem.analysis.umse import block_se
from etem.config import EtemConfig
from etem.config.apply import FinetuneConfig
from etem.config.training import UnsupervisedConfig
from etem.data.datasets import MoviePatchDataset
from etem.errors import InputError
from etem.models.factory import build_model
from etem.models.inference import bf16_supported
from etem.models.io import LoadedModel, save_model
from etem.provenance import provenance
from etem.training.loop import select_device, train
from etem.training.run import SIGNATURES
from etem.training.tasks import InitModel, MovieFrames, UnsupervisedTask, checkerboard

log = logging.getLogger("etem.training.finetune")

#: Validations of a fine-tuning at most (every ceil(steps / VALIDATIONS) steps and at the last
#: step: 15 for 100 steps; the best step's weights are kept). A tuning on
#: a few frames learns their noise within tens of steps: on the demo campaign's static 5-frame
#: images at lr 1e-3 the loss (mean-matched) was least at the first of four validations of 25
#: steps (step 7) and of 100 steps (step 25), where it was already above the parent's on 15 of
#: 16 test images; with 16, 100 steps gain as much as 25 (+3.79 dB over the parent on the 16,
#: +3.38 on the 6 code-path images, which kept none with four; the step picked and judged on
#: the two checkerboard halves of the pixels). Each costs about a training step or two (a
#: forward pass over the validation crops). On the demo movie (48 frames) 100 steps give
#: -0.01 dB (kept: the loss fell by 1e-4 of itself), +0.07 with four validations.
VALIDATIONS = 16

#: File name of the fine-tuned model in the apply output folder.
FINETUNED_NAME = "finetuned_unsupervised.pt"


def finetune_config(
    base: UnsupervisedConfig, ft: FinetuneConfig, device: str, arch: dict[str, Any]
) -> UnsupervisedConfig:
    """The loop config of the fine-tuning: ``base`` (``training.unsupervised``) with the
    ``apply.finetune`` settings, the inference ``device``, the parent's architecture and
    :data:`VALIDATIONS` validations (the best is kept)."""
    steps = int(ft.steps)
    data = base.model_dump()
    data.update(
        steps=steps,
        lr=ft.lr,
        batch_size=ft.batch_size,
        patch_px=ft.patch_px,
        val_every_steps=max(1, -(-steps // VALIDATIONS)),
        checkpoint_every_steps=max(1, steps),
        early_stopping_patience=max(base.early_stopping_patience, 4),
        n_frames=int(arch["n_frames"]),
        dose_e_per_px=None,  # the apply's dose is passed with the frames
        device=device,
    )
    data["model"].update(depth=int(arch["depth"]), base_channels=int(arch["base_channels"]))
    return type(base).model_validate(data)


def _init_from_loaded(model: LoadedModel) -> InitModel:
    if model.kind != "unsupervised" or "arch" not in model.meta or model.n_frames < 3:
        raise InputError(
            f"model {model.path}: fine-tuning needs an unsupervised (blind-spot) model file "
            "of `etem train unsupervised`"
        )
    if model.path and Path(model.path).is_file():
        digest = hashlib.sha256(Path(model.path).read_bytes()).hexdigest()[:16]
    else:
        h = hashlib.sha256()
        for k, v in model.module.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
        digest = h.hexdigest()[:16]
    state = {k: v.detach().to("cpu", torch.float32).clone()
             for k, v in model.module.state_dict().items()}
    return InitModel(str(model.path or ""), dict(model.meta["arch"]), state, dict(model.meta),
                     digest)


#: Block size [px] of the standard error of the loss's fall (:func:`loss_change`): the
#: predictions' errors are correlated over a few pixels; blocks of 16 px hold that within.
CHANGE_BLOCK_PX = 16


def loss_change(err_before: np.ndarray, err_after: np.ndarray) -> dict[str, float]:
    """The keep decision's numbers from the squared errors (N, H, W) of the parent and of the
    fine-tuned network on the validation samples (:meth:`UnsupervisedTask.validation_errors`),
    on the odd checkerboard half (the even one picked the step): the losses ``before`` and
    ``after`` [intensity²] and the standard error ``se`` of their paired difference, from the
    means of :data:`CHANGE_BLOCK_PX`-wide blocks of every sample (the per-pixel differences
    are correlated over the predictions' smoothing)."""
    odd = ~checkerboard(err_before.shape[-2:])
    diff = (err_after - err_before) * odd * 2.0  # block means = the odd pixels' means
    se = block_se(np.concatenate(list(diff), axis=-1), CHANGE_BLOCK_PX) if len(diff) else 0.0
    return {"before": float(err_before[:, odd].mean()), "after": float(err_after[:, odd].mean()),
            "se": float(se)}


# long (123 lines): one sequence (window, task, loss before, train, loss after, keep or
# not, record); about half is the record written into summary.json.
def finetune_unsupervised(
    cfg: EtemConfig,
    model: LoadedModel,
    frames: np.ndarray,
    dose_e_per_px: float,
    pixel_size_A: float,
    out_path: str | Path | None = None,
    name: str = "movie",
) -> tuple[LoadedModel, dict[str, Any]]:
    """Fine-tune ``model`` on ``frames`` for ``cfg.apply.finetune.steps`` steps.

    Parameters
    ----------
    cfg : EtemConfig
        ``apply.finetune``, ``apply.inference.device``, ``training.unsupervised`` (loop
        settings) and ``seed``.
    model : LoadedModel
        The unsupervised model to start from (not modified).
    frames : ndarray (T, H, W)
        Counts [e/px] of the movie, T >= the model's window.
    dose_e_per_px : float
        Dose per frame [e/px] that normalises the frames (vacuum = 1).
    pixel_size_A : float
        Pixel size of the frames [Å].
    out_path : path, optional
        Where to write the fine-tuned model file (atomically; only when kept).
    name : str
        The movie's name in the model metadata.

    Returns
    -------
    (LoadedModel, dict)
        The model to denoise with (fine-tuned, or the parent when fine-tuning did not lower
        the validation loss) and a deterministic record for the summary.
    """
    init = _init_from_loaded(model)
    ft_cfg = finetune_config(cfg.training.unsupervised, cfg.apply.finetune,
                             cfg.apply.inference.device, init.arch)
    n_win = int(init.arch["n_frames"])
    if frames.shape[0] < n_win:
        raise InputError(f"movie {name}: {frames.shape[0]} frames; fine-tuning the {n_win}-frame "
                         "model needs at least as many (set apply.finetune.steps=0)")
    if not dose_e_per_px > 0:
        raise InputError(f"movie {name}: dose {dose_e_per_px} e/px <= 0; cannot fine-tune")
    t0 = time.perf_counter()
    source = MovieFrames(np.asarray(frames, dtype=np.float32), float(pixel_size_A),
                         float(dose_e_per_px), name)
    # the validation frames held out whole: on a static stack of a few frames the validation
    # frame is the frame the tuned network denoises, and its learned noise stays in the
    # output (the demo's 16 static 5-frame images, 100 steps: +3.79 dB over the parent with
    # the frame held out, +3.11 with only its validation crop)
    task = UnsupervisedTask(cfg, ft_cfg, source, init=init, hold_out_whole_frames=True)
    ft_cfg = task.cfg  # its val_samples fitted to the frames
    if not isinstance(task.train_set, MoviePatchDataset):  # frames in memory: one dataset
        raise TypeError(f"fine-tuning on {name}: one movie's frames give one dataset, got "
                        f"{type(task.train_set).__name__}")
    held_out = task.validation_frames[0]  # out of the training targets (the task's rule)
    device = select_device(ft_cfg.device)
    amp = bool(ft_cfg.amp) and bf16_supported(device)
    parent = build_model(init.arch)
    parent.load_state_dict(init.state_dict)
    parent.to(device).train()
    matched = bool(cfg.apply.inference.match_mean)
    # the loop picks its best step by the keep decision's loss on the even checkerboard half
    # of the validation pixels; the decision takes the odd half
    task.split_pixels = True
    task.primary = ("val_loss_mean_matched" if matched else "val_loss") + "_even"
    err_before = task.validation_errors(parent, amp, device, matched)
    result = train(task, ft_cfg, int(cfg.seed), checkpoint=None, tracker=None)
    err_after = task.validation_errors(result.model.to(device), amp, device, matched)
    change = loss_change(err_before, err_after)
    before, after = change["before"], change["after"]
    margin = float(cfg.apply.finetune.keep_se) * change["se"]
    kept = bool(after - before < -margin)
    seconds = time.perf_counter() - t0
    log.info("fine-tuned %s on %s for %d steps: val loss %.5g -> %.5g (fall %.3g, %.3g s.e.; "
             "%s), %.1f s", model.path, name, result.steps, before, after, before - after,
             (before - after) / change["se"] if change["se"] > 0 else float("inf"),
             "kept" if kept else "not lower by the margin: parent kept", seconds)
    record: dict[str, Any] = {
        "steps": int(result.steps),
        "lr": float(ft_cfg.lr),
        "batch_size": int(ft_cfg.batch_size),
        "patch_px": int(ft_cfg.patch_px),
        "frames_used": int(frames.shape[0]),
        "loss_mean_matched": matched,
        "loss_pixels": "odd",  # the step was picked on the even checkerboard half
        "validation_frames": len(held_out),
        "dose_e_per_px": float(dose_e_per_px),
        "loss_change_se": float(change["se"]),
        "keep_se": float(cfg.apply.finetune.keep_se),
        "loss_before": float(before),
        "loss_after": float(after),
        "best_step": int(result.best_step),
        "kept": kept,
        "parent": {"path": init.path, "sha256": init.sha256},
        "model": None,
    }
    if not kept:
        log.warning("fine-tuning did not lower the validation loss by %g standard errors "
                    "(%.5g -> %.5g, s.e. %.3g): denoising with the parent model",
                    cfg.apply.finetune.keep_se, before, after, change["se"])
    meta = {
        "kind": "unsupervised",
        "arch": init.arch,
        "config": ft_cfg.model_dump(mode="json"),
        **task.meta(),
        "metrics": result.metrics,
        "best_step": result.best_step,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "finetune": {k: v for k, v in record.items() if k != "model"},
        "signature": SIGNATURES["unsupervised"],
        "provenance": provenance(cfg, "apply"),
    }
    path = None
    if out_path is not None and kept:
        path = save_model(out_path, result.model, meta)
        record["model"] = Path(out_path).name
    record["seconds"] = seconds  # not deterministic: the caller keeps it out of summary.json
    if not kept:
        return model, record
    module = result.model.to(torch.device("cpu")).eval()
    return LoadedModel(module, meta, str(path) if path else None), record
