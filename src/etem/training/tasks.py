"""What differs between the three networks: data, loss, validation metrics, panels.

The single loop in :mod:`etem.training.loop` drives any :class:`Task`.

Long module (about 590 lines): the three tasks side by side (the same methods for each network,
so a change to the Task protocol is made in one file), plus the movie source of the blind-spot
task.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from etem.analysis.domain import column_fwhm_A, contrast_estimate, training_distribution
from etem.analysis.metrics import iou_per_class, occupancy_accuracy, psnr_peak
from etem.config import EtemConfig
from etem.config.training import (
    DenoiserConfig,
    LoopConfig,
    SegmenterConfig,
    UnsupervisedConfig,
)
from etem.data.datasets import (
    VAL_STEP,
    H5Frames,
    ImagePatchDataset,
    MovieGroupDataset,
    MoviePatchDataset,
    collate,
    read_index,
)
from etem.data.inputs import noisy_channel
from etem.data.splits import assign_splits
from etem.errors import InputError
from etem.frames.files import is_pattern, movie_files
from etem.frames.readers import open_movie
from etem.io import sampled_digest
from etem.models.factory import architecture
from etem.models.inference import autocast_predict, match_mean, movie_mean_counts
from etem.models.unet import Segmenter
from etem.plotting import plt
from etem.seeding import rng
from etem.simulation.contract import CLASSES
from etem.training.metrics import psnr, ssim

log = logging.getLogger("etem.training.tasks")


class Task:
    """Base class: a training set, a fixed validation set, a loss and metrics."""

    kind: str = ""
    primary: str = ""  # validation metric driving early stopping and the lr schedule
    mode: Literal["min", "max"] = "max"
    train_set: Any
    val_set: Any

    def __init__(self, cfg: LoopConfig, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed
        self.arch = architecture(self.kind, cfg)
        self._val: dict[str, torch.Tensor] | None = None

    # -- data ------------------------------------------------------------------------------
    def val_batch(self) -> dict[str, torch.Tensor]:
        """The fixed validation samples (computed once)."""
        if self._val is None:
            self._val = self.validation_samples(self.val_set)
        return self._val

    def validation_samples(self, dataset: Any) -> dict[str, torch.Tensor]:
        """``cfg.val_samples`` fixed validation samples of ``dataset``, collated."""
        n = self.cfg.val_samples
        dataset.n_val = n
        return collate([dataset[(VAL_STEP, k)] for k in range(n)])

    def fingerprint(self) -> str:
        """Identity of the data (a resumed checkpoint must match it)."""
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        """Task-specific model-file metadata."""
        return {}

    # -- model -------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def predict_val(self, model: nn.Module, amp: bool, device: torch.device) -> torch.Tensor:
        """Model output on the validation inputs (float32, CPU), in batches."""
        return autocast_predict(model, self.val_batch()["input"], self.cfg.batch_size, amp,
                                device)

    def validate(self, model: nn.Module, amp: bool, device: torch.device) -> dict[str, float]:
        raise NotImplementedError

    def panels(self, model: nn.Module, amp: bool, device: torch.device) -> Any:
        """A matplotlib figure of validation examples."""
        raise NotImplementedError


def _dose_range(cfg: LoopConfig, campaign: EtemConfig) -> tuple[float, float]:
    dose = cfg.dose_e_per_A2 or campaign.noise.train_dose_e_per_A2
    return float(dose[0]), float(dose[1])


def _distribution(train: Any, dose_range: tuple[float, float], seed: int,
                  n_images: int = 12) -> dict[str, Any]:
    """The training distribution recorded in the model file (etem.analysis.domain): pixel
    sizes and doses of the training images, column widths measured on up to ``n_images``
    clean training images (seeded choice), the contrast regimes of the training images
    (index column ``contrast_regime``; none recorded for campaigns without it)."""
    pick = np.sort(rng(seed, "training", "distribution").choice(
        len(train), min(n_images, len(train)), replace=False))
    widths = []
    for pos in pick:
        row = train.iloc[int(pos)]
        with h5py.File(row["shard_path"], "r") as f:
            clean = np.asarray(f["clean"][int(row["index_in_shard"])], dtype=np.float64)
        widths.append(column_fwhm_A(clean, float(row["pixel_size_A"])))
    detector = train["detector_pixel_A"] if "detector_pixel_A" in train.columns else ()
    regimes = train["contrast_regime"].fillna("") if "contrast_regime" in train.columns else ()
    return training_distribution(train["pixel_size_A"], dose_range, widths, detector, regimes)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _ImageTask(Task):
    """Shared by the denoiser and the segmenter: images from the shard index, split by structure."""

    def __init__(
        self, campaign: EtemConfig, cfg: DenoiserConfig | SegmenterConfig, index_path: str | Path,
        manifest_path: str | None = None,
    ) -> None:
        super().__init__(cfg, campaign.seed)
        df = read_index(index_path, manifest_path)
        df["split"] = assign_splits(df, campaign.training.split, campaign.seed).to_numpy()
        fam = df["family"].astype(str).isin(cfg.families)
        train, val = df[fam & (df["split"] == "train")], df[fam & (df["split"] == "val")]
        if len(train) == 0:
            raise InputError(
                f"index {index_path}: no training images of families {cfg.families} "
                "(check training.*.families and training.split)"
            )
        if len(val) == 0:
            log.warning("no validation structures: validating on training images")
            val = train
        self.index_path = Path(index_path)
        self.n_train, self.n_val_images = len(train), len(val)
        self.train_structures = sorted(set(train["structure_id"]))
        self.val_structures = sorted(set(val["structure_id"]))
        self.dose_range = _dose_range(cfg, campaign)
        self.pixel_size_A = float(np.median(train["pixel_size_A"]))
        self.distribution = _distribution(train, self.dose_range, campaign.seed)
        common: dict[str, Any] = dict(
            task=self.kind, patch_px=cfg.patch_px, dose_range_e_per_A2=self.dose_range,
            seed=campaign.seed, dose_conditioned=cfg.model.dose_conditioned,
            max_occupancy=getattr(cfg, "max_occupancy", 12), val_patch_px=cfg.val_patch_px,
            read_noise_e=campaign.noise.read_noise_e, gain=campaign.noise.gain,
        )
        if isinstance(cfg, DenoiserConfig):
            common.update(prefilter=cfg.prefilter, erase_probability=cfg.erase_probability,
                          erase_radius_A=cfg.erase_radius_A)
        self.train_set = ImagePatchDataset(train, purpose=f"{self.kind}-train", **common)
        self.val_set = ImagePatchDataset(val, purpose=f"{self.kind}-val", **common)
        self._val_rows, self._common = val, common
        self._ids = {"train": sorted(train["image_id"].astype(str)),
                     "val": sorted(val["image_id"].astype(str))}
        log.info("%s: %d training images (%d structures), %d validation images (%d structures)",
                 self.kind, len(train), len(self.train_structures), len(val),
                 len(self.val_structures))

    def fingerprint(self) -> str:
        return _hash({"kind": self.kind, "ids": self._ids, "dose": self.dose_range})

    def meta(self) -> dict[str, Any]:
        return {
            "pixel_size_A": self.pixel_size_A,
            "train_dose_e_per_A2": list(self.dose_range),
            "train_dose_e_per_px": [d * self.pixel_size_A**2 for d in self.dose_range],
            "train_structures": len(self.train_structures),
            "val_structures": len(self.val_structures),
            "families": list(self.cfg.families),
            "index": str(self.index_path),
            "training_distribution": self.distribution,
        }


class DenoiserTask(_ImageTask):
    """Supervised denoiser: MSE to the clean image (vacuum = 1)."""

    kind = "denoiser"
    primary = "val_psnr"
    mode = "max"
    cfg: DenoiserConfig

    def __init__(
        self, campaign: EtemConfig, cfg: DenoiserConfig, index_path: str | Path,
        manifest_path: str | None = None,
    ) -> None:
        super().__init__(campaign, cfg, index_path, manifest_path)
        #: the cross-condition table's dose [e/px in vacuum] (``evaluation.
        #: condition_dose_e_per_px``): a second validation at that one dose
        self.fixed_dose_e_per_px = float(campaign.evaluation.condition_dose_e_per_px)
        self._fixed: dict[str, torch.Tensor] | None = None

    def fixed_dose_batch(self) -> dict[str, torch.Tensor]:
        """The validation patches again, all at :attr:`fixed_dose_e_per_px` (own noise seed;
        computed once): ``val_psnr_mohan`` follows the learning curve at the dose of the
        cross-condition table, where the dose mix of ``val_psnr`` (the training range) does
        not say where a model stands."""
        if self._fixed is None:
            d = self.fixed_dose_e_per_px / self.pixel_size_A**2
            fixed = ImagePatchDataset(self._val_rows, purpose=f"{self.kind}-val-fixed-dose",
                                      **{**self._common, "dose_range_e_per_A2": (d, d)})
            self._fixed = self.validation_samples(fixed)
        return self._fixed

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.mse_loss(model(batch["input"]).float(), batch["target"])

    def validate(self, model: nn.Module, amp: bool, device: torch.device) -> dict[str, float]:
        """etem's metrics over the training dose range, and Mohan et al.'s PSNR (clean in
        e/px clamped to [0, 1], data range 1) at the cross-condition table's dose."""
        v = self.val_batch()
        pred = self.predict_val(model, amp, device).numpy()[:, 0]
        clean = v["target"].numpy()[:, 0]
        noisy = v["input"].numpy()[:, noisy_channel(self.cfg.prefilter)]
        fx = self.fixed_dose_batch()
        fpred = autocast_predict(model, fx["input"], self.cfg.batch_size, amp,
                                 device).numpy()[:, 0]
        fclean, fdose = fx["target"].numpy()[:, 0], fx["dose_e_per_px"].numpy()
        mohan = [psnr_peak(c * d, p * d, 1.0) for c, p, d in zip(fclean, fpred, fdose,
                                                                   strict=True)]
        return {
            "val_loss": float(np.mean((pred - clean) ** 2)),
            "val_psnr": _mean(psnr, pred, clean),
            "val_ssim": _mean(ssim, pred, clean),
            "val_psnr_noisy": _mean(psnr, noisy, clean),
            "val_psnr_mohan": float(np.mean(mohan)),
        }

    def panels(self, model: nn.Module, amp: bool, device: torch.device) -> Any:
        v = self.val_batch()
        pred = self.predict_val(model, amp, device).numpy()[:, 0]
        idx = _spread(len(pred), 3)
        x = v["input"].numpy()
        cols = [("noisy / dose", x[:, noisy_channel(self.cfg.prefilter)]), ("denoised", pred),
                ("clean", v["target"].numpy()[:, 0])]
        if self.cfg.prefilter != "none":
            cols.insert(1, (self.cfg.prefilter, x[:, 0]))
        doses = v["dose_e_per_px"].numpy()
        return _grid(cols, idx, [f"{doses[i]:.2f} e/px" for i in idx])


class SegmenterTask(_ImageTask):
    """Occupancy segmenter: cross-entropy on classes + ordinal (cumulative) BCE on occupancies."""

    kind = "segmenter"
    primary = "val_miou"
    mode = "max"
    cfg: SegmenterConfig

    def class_weights(self, n_samples: int = 32) -> torch.Tensor:
        """Class weights from ``n_samples`` keyed training patches (``class_weighting``).

        Column pixels are a minority; unweighted cross-entropy settles on 'all background'.
        'median_frequency' weighs class c by median(freq) / freq(c); 'sqrt_median_frequency'
        by its square root, which keeps a rare class (metal discs, ~1 % of the pixels) from
        dominating the loss; 'none' weighs present classes 1. Classes absent from the sample
        get weight 0 (they cannot be learned from it anyway).
        """
        if getattr(self, "_weights", None) is None:
            counts = np.zeros(len(CLASSES))
            for j in range(n_samples):
                lab = self.train_set[(-2, j)]["class"]
                counts += np.bincount(lab.ravel(), minlength=len(CLASSES))[: len(CLASSES)]
            freq = counts / counts.sum()
            present = freq > 0
            w = np.zeros_like(freq)
            w[present] = np.median(freq[present]) / freq[present]
            if self.cfg.class_weighting == "sqrt_median_frequency":
                w = np.sqrt(w)
            elif self.cfg.class_weighting == "none":
                w = present.astype(np.float64)
            self._weights = torch.tensor(w, dtype=torch.float32)
            log.info("segmenter class weights %s", dict(zip(CLASSES, np.round(w, 3), strict=True)))
        return self._weights

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._loss(cast(Segmenter, model).split(model(batch["input"]).float()), batch)

    def _loss(self, heads: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Weighted cross-entropy (+ soft Dice) on classes + ordinal BCE on occupancies."""

        w = self.class_weights().to(heads["class"].device)
        loss = F.cross_entropy(heads["class"], batch["class"], weight=w)
        if self.cfg.dice_weight > 0:
            loss = loss + self.cfg.dice_weight * soft_dice(heads["class"], batch["class"], w > 0)
        site = self.cfg.occupancy_loss_pixels == "site"
        for name in ("cation", "anion"):
            mask = batch["class"] == CLASSES.index(name) if site else None
            loss = loss + ordinal_bce(heads[name], batch[name], mask)
        return loss

    def validate(self, model: nn.Module, amp: bool, device: torch.device) -> dict[str, float]:
        v = self.val_batch()
        out = self.predict_val(model, amp, device)
        heads = cast(Segmenter, model).split(out)
        loss = self._loss(heads, v)
        pred = heads["class"].argmax(1).numpy()
        truth = v["class"].numpy()
        iou = iou_per_class(pred, truth, len(CLASSES))
        metrics = {"val_loss": float(loss), "val_miou": float(np.nanmean(iou))}
        for name, val in zip(CLASSES, iou, strict=True):
            if np.isfinite(val):
                metrics[f"val_iou_{name}"] = float(val)
        for name in ("cation", "anion"):
            occ = torch.sigmoid(heads[name]).sum(1).numpy()
            mask = truth == CLASSES.index(name)
            for tol in (0, 1):
                acc = occupancy_accuracy(occ, v[name].numpy(), mask, tol)
                if np.isfinite(acc):
                    metrics[f"val_{name}_occ_acc{tol}"] = acc
        return metrics

    def panels(self, model: nn.Module, amp: bool, device: torch.device) -> Any:
        v = self.val_batch()
        heads = cast(Segmenter, model).split(self.predict_val(model, amp, device))
        idx = _spread(len(v["input"]), 3)
        cols = [
            ("noisy / dose", v["input"].numpy()[:, 0]),
            ("class (pred)", heads["class"].argmax(1).numpy()),
            ("class (true)", v["class"].numpy()),
            ("cation occ. (pred)", torch.sigmoid(heads["cation"]).sum(1).numpy()),
            ("cation occ. (true)", v["cation"].numpy()),
        ]
        return _grid(cols, idx, [""] * len(idx))

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "classes": list(CLASSES), "max_occupancy": self.cfg.max_occupancy}


def ordinal_bce(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Ordinal loss: BCE of cumulative logits ``P(n > k)``, k = 0..K-1, vs ``target > k``.

    With ``mask`` (N, H, W) bool, the mean runs over the masked pixels only (0 when none):
    column pixels are a few per cent of an image, so an unmasked loss mostly teaches
    'occupancy 0 outside columns', which the class map already says.
    """
    k = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1, 1)
    bce = F.binary_cross_entropy_with_logits(
        logits, (target.unsqueeze(1) > k).float(), reduction="none"
    )
    if mask is None:
        return bce.mean()
    m = mask.unsqueeze(1).to(bce.dtype)
    return (bce * m).sum() / (m.sum() * logits.shape[1]).clamp_min(1.0)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice coefficient over the selected ``classes`` (bool per class).

    Dice is computed over the whole batch per class, so rare classes (column discs) weigh
    as much as the background and the loss follows the IoU the benchmark reports.
    """
    p = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    inter = (p * onehot).sum(dim=(0, 2, 3))
    denom = p.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    sel = classes.to(dice.device)
    return 1.0 - dice[sel].mean() if bool(sel.any()) else dice.sum() * 0.0


@dataclass
class MovieFrames:
    """A movie already in memory as a training source (e.g. the frames ``etem apply`` sees).

    ``frames`` (T, H, W) counts [e/px]; ``pixel_size_A`` [Å]; ``dose_e_per_px`` [e/px/frame]
    or None (then the mean count); ``name`` identifies it in the model metadata.
    """

    frames: np.ndarray
    pixel_size_A: float
    dose_e_per_px: float | None
    name: str
    clean: np.ndarray | None = None


@dataclass
class InitModel:
    """Weights a training starts from (fine-tuning): a model file's arch, weights and meta.

    ``sha256``: first 16 hex digits of the file (identifies the parent in checkpoints and
    in the fine-tuned model's metadata).
    """

    path: str
    arch: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    sha256: str


class UnsupervisedTask(Task):
    """Blind-spot multi-frame denoiser trained on one noisy movie (no clean data used).

    With ``init`` the network starts from those weights (fine-tuning) and takes its
    architecture, including the window ``n_frames``, from the init model.

    Validation metrics: ``val_loss`` (MSE of the predictions to the noisy middle frames) and
    ``val_loss_mean_matched`` (the same with each prediction first scaled to its target's
    mean, as ``apply.inference.match_mean`` scales the output); with ``split_pixels`` also
    each on the two checkerboard halves of the pixels (suffixes ``_even``, ``_odd``: (row +
    column) even or odd; the halves' target noise is independent, though each half's
    predictions see the other's pixels as input). ``primary`` (the metric that
    picks the best step) is ``val_loss``; the fine-tuning picks the step on one half and
    judges it on the other (:func:`etem.training.finetune.finetune_unsupervised`).

    The validation samples' target pixels (the centre ``val_patch_px`` crop of their middle
    frames, ``validation_frames``) are never training targets
    (:meth:`MoviePatchDataset.hold_out`: a training patch centred on such a frame lies
    beside the crop, or the frame is not drawn when none fits): the loss is measured against
    those noisy pixels, and a network that had learned their noise would see its loss fall
    while its true error rose (4,000 steps on the demo movie, validating on trained frames,
    3 seeds: its loss there was 0.0008-0.0030 [intensity²] lower, relative to its other
    frames, than a network's that had not trained on them, beside true MSEs of 0.0042-0.0050:
    ``benchmarks/validation_holdout.py``).
    ``training.unsupervised.val_samples`` of them, at most a quarter of each movie's frames
    (of a group: the same number from each movie). ``hold_out_whole_frames``: the validation
    frames are not drawn at all (the fine-tuning on a few frames, whose validation frame is
    the one it denoises: :func:`etem.training.finetune.finetune_unsupervised`).
    """

    kind = "unsupervised"
    primary = "val_loss"
    mode = "min"
    split_pixels = False
    cfg: UnsupervisedConfig

    def __init__(self, campaign: EtemConfig, cfg: UnsupervisedConfig,
                 movie_path: str | Path | MovieFrames | Sequence[str | Path],
                 init: InitModel | None = None, hold_out_whole_frames: bool = False) -> None:
        super().__init__(cfg, campaign.seed)
        self.hold_out_whole_frames = hold_out_whole_frames
        group: list[Path] = []
        if not isinstance(movie_path, str | Path | MovieFrames):
            group = [Path(p) for p in movie_path]
            movie_path = group[0]

        self.init = init
        self.n_frames = int(cfg.n_frames)
        if init is not None:
            if init.arch.get("kind") != self.kind:
                raise InputError(f"init model {init.path}: a {init.arch.get('kind')} model, "
                                 f"not an {self.kind} (blind-spot multi-frame) model")
            self.arch = dict(init.arch)
            self.n_frames = int(init.arch["n_frames"])
        if isinstance(movie_path, MovieFrames):
            self.movie_path = Path(movie_path.name)
            frames, clean = movie_path.frames, movie_path.clean
            px, dose = movie_path.pixel_size_A, movie_path.dose_e_per_px
        else:
            self.movie_path = Path(movie_path)
            # a group's first movie within its share of the memory budget, like the others
            budget = GROUP_MEMORY_BYTES // len(group) if group else 2**31
            frames, clean, px, dose = open_training_movie(self.movie_path,
                                                          load_below_bytes=budget)
        self.pixel_size_A = px
        init_px = (init.meta.get("pixel_size_A") if init is not None else None) or np.nan
        if np.isfinite(init_px) and np.isfinite(px) and abs(px / float(init_px) - 1) > 0.1:
            log.warning("movie %s: pixel %.4g Å, the init model was trained at %.4g Å",
                        self.movie_path, px, float(init_px))
        # normalisation [e/px]: the config's dose, else the movie's recorded dose, else its mean
        self.scale = float(cfg.dose_e_per_px or dose or movie_mean_counts(frames))
        if not self.scale > 0:
            raise InputError(f"movie {movie_path}: mean count is {self.scale}; cannot normalise")
        self.shape = tuple(int(s) for s in frames.shape)
        self.train_set: MoviePatchDataset | MovieGroupDataset
        self.val_set: MoviePatchDataset | MovieGroupDataset
        self.movies: list[dict[str, Any]] = []
        if len(group) > 1:  # the first movie as opened above (opened once, held once)
            self._open_group(campaign, cfg, group, (frames, clean, px, dose))
        else:
            common: dict[str, Any] = dict(
                n_frames=self.n_frames, patch_px=cfg.patch_px, scale_e_per_px=self.scale,
                seed=campaign.seed, clean=clean, val_patch_px=cfg.val_patch_px,
            )
            self.train_set = MoviePatchDataset(frames, purpose="unsupervised-train", **common)
            self.val_set = MoviePatchDataset(frames, purpose="unsupervised-val", **common)
            self.has_clean = clean is not None
        #: per movie, the frames held out of the training targets (the validation frames)
        self.validation_frames = self._hold_out_validation()
        summed = np.asarray(frames[: min(16, frames.shape[0])], dtype=np.float64).mean(axis=0)
        width = column_fwhm_A(summed, px) if np.isfinite(px) else float("nan")
        regime = contrast_estimate(frames[: min(16, frames.shape[0])], px).regime
        doses = [m["dose_e_per_px"] for m in self.movies] or [self.scale]
        self.distribution = training_distribution(
            [px], (min(doses) / px**2, max(doses) / px**2) if np.isfinite(px) and px > 0
            else (np.nan, np.nan), [width], contrast_regimes=[regime])
        self.distribution["dose_e_per_px"] = [float(min(doses)), float(max(doses))]

    def _hold_out_validation(self) -> list[list[int]]:
        """Hold the validation samples' crops out of every movie's training targets:
        ``val_samples`` in all, spread over the movies (a group's sample ``j`` comes from
        movie ``j % n``) and at most a quarter of each movie's frames (``val_samples`` is
        lowered to fit; ``self.cfg`` is the task's copy). Returns each movie's held-out
        frames."""
        parts = (self.train_set.parts if isinstance(self.train_set, MovieGroupDataset)
                 else [self.train_set])
        per_movie = min(max(1, int(p.frames.shape[0]) // 4) for p in parts)
        n = max(1, min(int(self.cfg.val_samples), per_movie * len(parts)))
        if n != self.cfg.val_samples:
            log.log(logging.WARNING if len(parts) > 1 else logging.INFO,
                    "movie %s: %d validation samples, not %d (a quarter of the frames at "
                    "most%s)", self.movie_path, n, self.cfg.val_samples,
                    ", the same number from each movie of the group" if len(parts) > 1 else "")
            self.cfg = self.cfg.model_copy(update={"val_samples": n})
        held = []
        for m, p in enumerate(parts):  # movie m validates samples m, m + len(parts), ...
            frames = p.val_frames(-(-n // len(parts)), used=len(range(m, n, len(parts))))
            if frames and p.hold_out(frames, self.hold_out_whole_frames) \
                    and not self.hold_out_whole_frames:
                log.info("movie %s: no %d px training patch fits beside the %d px validation "
                         "crop: its %d validation frames are held out of training whole",
                         self.movie_path, self.cfg.patch_px, self.cfg.val_patch_px,
                         len(frames))
            held.append(frames)
        return held

    def _open_group(self, campaign: EtemConfig, cfg: UnsupervisedConfig,
                    paths: list[Path], first: tuple[Any, Any, float, float | None]) -> None:
        """Train on several movies of one condition: patches streamed from all of them,
        each movie normalised by its own dose; frames stay on disk beyond GROUP_MEMORY_BYTES.
        ``first``: the first movie, already opened (:func:`open_training_movie`).

        Patches are cut at the configured sizes from every movie (a batch stacks them), so a
        movie smaller than ``patch_px`` or ``val_patch_px`` is refused (one error naming it).
        """
        budget = GROUP_MEMORY_BYTES // len(paths)
        train, val = [], []
        for i, path in enumerate(paths):
            frames, clean, px, dose = first if i == 0 else open_training_movie(
                path, load_below_bytes=budget)
            check_patch_fits(path, frames.shape, cfg)
            if np.isfinite(px) and np.isfinite(self.pixel_size_A) and \
                    abs(px / self.pixel_size_A - 1) > 0.05:
                raise InputError(f"movie {path}: pixel size {px:.4g} Å, the group's first movie "
                                 f"{paths[0]} has {self.pixel_size_A:.4g} Å (one group, one "
                                 "magnification)")
            scale = float(cfg.dose_e_per_px or dose or movie_mean_counts(frames))
            if not scale > 0:
                raise InputError(f"movie {path}: mean count is {scale}; cannot normalise")
            common: dict[str, Any] = dict(
                n_frames=self.n_frames, patch_px=cfg.patch_px, scale_e_per_px=scale,
                seed=campaign.seed, clean=clean, val_patch_px=cfg.val_patch_px,
            )
            train.append(MoviePatchDataset(frames, purpose=f"unsupervised-train-{i}", **common))
            val.append(MoviePatchDataset(frames, purpose=f"unsupervised-val-{i}", **common))
            self.movies.append({**movie_record(path), "shape": [int(s) for s in frames.shape],
                                "dose_e_per_px": scale, "pixel_size_A": px})
        self.train_set = MovieGroupDataset(train, campaign.seed, "unsupervised-train")
        self.val_set = MovieGroupDataset(val, campaign.seed, "unsupervised-val")
        # clean frames (etem's HDF5 movies) give a validation PSNR on the movies that have them
        self.has_clean = any(p.clean is not None for p in train)
        self.scale = float(np.median([m["dose_e_per_px"] for m in self.movies]))
        self.shape = (sum(m["shape"][0] for m in self.movies), *self.shape[1:])

    @property
    def init_state(self) -> dict[str, torch.Tensor] | None:
        """Initial weights for the loop (None: fresh initialisation)."""
        return None if self.init is None else self.init.state_dict

    def fingerprint(self) -> str:
        ident: dict[str, Any] = {"kind": self.kind, "movie": str(self.movie_path.resolve()),
                                 "shape": self.shape, "scale": self.scale,
                                 "init": None if self.init is None else self.init.sha256,
                                 "validation_frames": self.validation_frames,
                                 "hold_out_whole_frames": self.hold_out_whole_frames}
        if self.movies:  # a group: its movies, by content
            ident["movies"] = [(m["digest"], m["shape"]) for m in self.movies]
        return _hash(ident)

    def meta(self) -> dict[str, Any]:
        meta = {"pixel_size_A": self.pixel_size_A, "n_frames": self.n_frames,
                "dose_e_per_px": self.scale, "movie": str(self.movie_path),
                "movie_shape": list(self.shape), "training_distribution": self.distribution}
        meta["validation"] = {"samples": int(self.cfg.val_samples),
                              "frames_held_out": self.validation_frames,
                              "whole_frames": self.hold_out_whole_frames}
        if self.movies:
            meta["movies"] = self.movies
        if self.init is not None:
            meta["init_from"] = {"path": self.init.path, "sha256": self.init.sha256,
                                 "parent_metrics": self.init.meta.get("metrics", {})}
        return meta

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pred = model(batch["input"]).float()
        if self.cfg.loss == "poisson":  # counts of each sample's own movie [e/px]
            scale = batch["scale"] if "scale" in batch else self.scale
            rate = pred.clamp_min(1e-4) * scale
            return F.poisson_nll_loss(rate, batch["target"] * scale, log_input=False)
        return F.mse_loss(pred, batch["target"])

    def validation_errors(self, model: nn.Module, amp: bool, device: torch.device,
                          matched: bool, pred: torch.Tensor | None = None) -> np.ndarray:
        """Squared errors (N, H, W) [intensity², float64] of the predictions (``pred``, else
        the model's) to the noisy middle frames of the validation samples; with ``matched``
        each prediction first scaled to its target's mean, as ``apply.inference.match_mean``
        scales the output frames (targets are normalised counts: dose 1)."""
        target = self.val_batch()["target"].numpy()[:, 0]
        p = (self.predict_val(model, amp, device) if pred is None else pred).numpy()[:, 0]
        if matched:
            p = match_mean(p, target, 1.0)
        return np.asarray((p.astype(np.float64) - target) ** 2)

    def validate(self, model: nn.Module, amp: bool, device: torch.device) -> dict[str, float]:
        v = self.val_batch()
        pred = self.predict_val(model, amp, device)
        sq_matched = self.validation_errors(model, amp, device, True, pred)
        metrics = {"val_loss": float(F.mse_loss(pred, v["target"])),
                   "val_loss_mean_matched": float(np.mean(sq_matched))}
        if self.split_pixels:
            even = checkerboard(sq_matched.shape[-2:])
            sq_raw = self.validation_errors(model, amp, device, False, pred)
            for name, sq in (("val_loss", sq_raw), ("val_loss_mean_matched", sq_matched)):
                metrics[f"{name}_even"] = float(sq[:, even].mean())
                metrics[f"{name}_odd"] = float(sq[:, ~even].mean())
        keep = self._with_clean(v)
        if keep.any():  # a group's samples of the movies with clean frames only
            clean = v["clean"].numpy()[keep, 0]
            p = pred.numpy()[keep, 0]
            avg = v["input"].numpy()[keep].mean(axis=1)
            metrics["val_psnr"] = _mean(psnr, p, clean)
            metrics["val_ssim"] = _mean(ssim, p, clean)
            metrics["val_psnr_temporal_mean"] = _mean(psnr, avg, clean)
            metrics["val_psnr_noisy"] = _mean(psnr, v["target"].numpy()[keep, 0], clean)
        return metrics

    def _with_clean(self, v: dict[str, torch.Tensor]) -> np.ndarray:
        """Which validation samples have clean frames (a group may mix movies with and
        without them: ``has_clean`` per sample)."""
        n = len(v["input"])
        if not self.has_clean:
            return np.zeros(n, dtype=bool)
        if "has_clean" in v:
            return v["has_clean"].numpy().astype(bool)
        return np.ones(n, dtype=bool)

    def panels(self, model: nn.Module, amp: bool, device: torch.device) -> Any:
        v = self.val_batch()
        pred = self.predict_val(model, amp, device).numpy()[:, 0]
        idx = _spread(len(pred), 3)
        cols = [("noisy (middle)", v["target"].numpy()[:, 0]), ("denoised", pred),
                (f"mean of {self.n_frames}", v["input"].numpy().mean(axis=1))]
        if self._with_clean(v)[idx].all():
            cols.append(("clean", v["clean"].numpy()[:, 0]))
        return _grid(cols, idx, [""] * len(idx))


def checkerboard(shape: Sequence[int]) -> np.ndarray:
    """The even checkerboard half of an (H, W) image: True where row + column is even (the
    unsupervised task's ``_even`` validation metrics; ``~`` it for ``_odd``)."""
    rows, cols = np.indices(tuple(int(n) for n in shape))
    return np.asarray((rows + cols) % 2 == 0)


#: Frames of a movie group held in memory at most [bytes]; larger groups are read per patch.
GROUP_MEMORY_BYTES = 2**31


def check_patch_fits(path: str | Path, shape: Sequence[int], cfg: UnsupervisedConfig) -> None:
    """Refuse a movie of a group whose frames are smaller than the training or validation
    patch (:class:`InputError` naming the movie and the sizes): a group's patches, cut at one
    size from every movie, stack into one batch. A movie trained alone cuts smaller patches."""
    h, w = int(shape[-2]), int(shape[-1])
    for name, size in (("patch_px", cfg.patch_px), ("val_patch_px", cfg.val_patch_px)):
        if min(h, w) < size:
            raise InputError(f"movie {path}: frames of {h}x{w} px, smaller than the patch "
                             f"training.unsupervised.{name} = {size} px that every movie of a "
                             f"group is cut into; lower {name} or train this movie apart")


def movie_record(path: str | Path) -> dict[str, Any]:
    """How a training logs a movie: ``path`` as given and a content digest (``sampled_digest``);
    a glob pattern also lists the ``files`` it matched (the digest is theirs)."""
    if Path(path).exists():
        return {"path": str(path), "digest": sampled_digest(path)}
    files = movie_files(path)
    return {"path": str(path), "files": list(files), "digest": sampled_digest(files)}


def open_training_movie(path: Path, load_below_bytes: int = 2**31
                        ) -> tuple[Any, Any, float, float | None]:
    """(frames (T, H, W) counts, clean or None, pixel size [Å], dose [e/px/frame] or None).

    etem's synthetic HDF5 movies (``/frames``, optional ``/clean``) are read directly (so the
    clean frames serve validation); any other format goes through
    ``etem.frames.readers.open_movie``. Frames are loaded into memory when under
    ``load_below_bytes`` (as float32; an etem movie's frames and clean frames together), else
    read lazily per patch (an etem movie's datasets as :class:`etem.data.datasets.H5Frames`).
    ``path`` may be a glob pattern of per-frame files (opened like a folder,
    :func:`etem.frames.files.movie_files`).
    """

    if not movie_files(path):
        what = "no file matches the pattern" if is_pattern(path) else "no such file or folder"
        raise InputError(f"movie {path}: {what}")
    if path.is_file() and h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            etem_movie = "frames" in f
            if etem_movie:
                frames = f["frames"]
                if frames.ndim != 3:
                    raise InputError(f"movie {path}: /frames must be (T, H, W), got {frames.shape}")
                px = float(f.attrs.get("pixel_size_A", frames.attrs.get("pixel_size_A", np.nan)))
                has_clean = "clean" in f and f["clean"].shape == frames.shape
                dose = f.attrs.get("dose_e_per_px_per_frame")
                dose = float(dose) if dose is not None and dose > 0 else None
                # the budget holds the frames and the clean frames (float32), read once each
                if int(frames.size) * 4 * (1 + has_clean) < load_below_bytes:
                    clean = np.asarray(f["clean"], dtype=np.float32) if has_clean else None
                    return np.asarray(frames, dtype=np.float32), clean, px, dose
        if etem_movie:  # beyond the budget: crops read per patch, the file opened per process
            lazy_clean = H5Frames(path, "clean") if has_clean else None
            return H5Frames(path, "frames"), lazy_clean, px, dose

    movie = open_movie(path)
    frames = movie.frames
    nbytes = int(np.prod(frames.shape)) * 4
    # the readers' lazy stacks index along T only (slices give arrays)
    arr = np.asarray(frames[:], dtype=np.float32) if nbytes < load_below_bytes else frames
    px = float(getattr(movie, "pixel_size_A", None) or np.nan)
    dose = getattr(movie, "dose_e_per_px_per_frame", None)
    return arr, None, px, (float(dose) if dose else None)


def _mean(fn: Any, preds: np.ndarray, cleans: np.ndarray) -> float:
    return float(np.mean([fn(p, c) for p, c in zip(preds, cleans, strict=True)]))


def _spread(n: int, k: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, n - 1, min(n, k))})


def _grid(cols: list[tuple[str, np.ndarray]], rows: list[int], row_labels: list[str]) -> Any:
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.4 * len(cols), 2.4 * len(rows)),
                             squeeze=False)
    for r, i in enumerate(rows):
        ref = cols[-1][1][i] if cols[-1][1].dtype.kind == "f" else None
        for c, (title, arr) in enumerate(cols):
            ax = axes[r][c]
            kw: dict[str, Any] = {"cmap": "gray"}
            if arr.dtype.kind == "f" and ref is not None and "occ" not in title:
                kw.update(vmin=float(ref.min()), vmax=float(ref.max()))
            ax.imshow(arr[i], **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0 and row_labels[r]:
                ax.set_ylabel(row_labels[r], fontsize=8)
    fig.tight_layout()
    return fig
