"""The cross-condition table: denoisers on held-out structures vs held-out microscope conditions.

Every test image (splits ``test``, ``held_out`` = unseen structures under seen conditions,
``held_out_condition`` = images whose microscope parameters lie in a band of
``training.split.held_out_conditions``, never trained on; ``code_path`` = the evaluated
structures simulated through another abTEM code path, ``evaluation.code_paths``, the
condition being its name) is made noisy at
``evaluation.condition_dose_e_per_px`` [e/px in vacuum] and denoised by:

* ``noisy``: the counts / dose;
* ``flat``: the image's mean count everywhere (no structure: the bar below which a method
  recovered nothing; hard to beat on low-contrast images);
* ``gaussian_oracle``: the Gaussian filter whose width is best on the clean image (an
  oracle baseline, the bar to clear);
* ``nlm``: non-local means with the noise level estimated from the image
  (:func:`etem.analysis.baselines.nlm_estimated`);
* ``wiener``: the empirical Wiener filter of HRTEM (Kilaas 1998,
  :func:`etem.analysis.baselines.wiener`; ``evaluation.wiener``, ``wiener_alpha``,
  ``wiener_smooth_px``): no training and no clean image, Poisson noise power (``dqe`` 1:
  like the networks it sees only the counts and the dose);
* ``wiener_sure``: the same filter with its (alpha, smoothing) chosen per image by Stein's
  unbiased risk estimate (:func:`etem.analysis.baselines.wiener_sure`; ``evaluation.
  wiener_sure``), no clean image but the image's detector DQE as the noise level SURE needs;
  the pair chosen in the columns ``wiener_alpha``, ``wiener_smooth_px``;
* ``supervised``: the supervised denoiser (with a model);
* ``blind_spot``: the blind-spot multi-frame network (with a model) on ``n_frames``
  independent frames of the static scene, each with 1/n of the dose (same electrons in all);
* ``blind_spot_finetuned``: the same network fine-tuned first on those very frames (no
  clean image: :func:`etem.training.finetune.finetune_unsupervised`, as ``etem apply`` does
  with ``apply.finetune``; ``evaluation.finetune_steps`` steps, the other settings that
  section's defaults, the fine-tuned weights kept
  only when they lower the blind-spot validation loss, column ``finetune_kept``), on the
  first ``evaluation.finetune_images`` images of the table, held-out conditions first.

Two metrics per (image, method): etem's (intensity, vacuum = 1, data range of the clean
image: ``psnr_db``, ``ssim``) and Mohan et al.'s (clean in e/px, both images clamped to
[0, 1], data range 1: ``psnr_mohan_db``, ``ssim_mohan``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etem.analysis import baselines
from etem.analysis.metrics import data_range, psnr, psnr_peak, ssim, ssim_peak
from etem.config.apply import FinetuneConfig
from etem.errors import InputError
from etem.evaluation.inputs import TestImage
from etem.evaluation.tables import mean_sem
from etem.models.inference import denoise_images, denoise_movie
from etem.models.io import LoadedModel
from etem.progress import progress
from etem.seeding import rng
from etem.simulation.noise import detector_counts, row_dqe
from etem.training.finetune import finetune_unsupervised

METRICS = ("psnr_db", "ssim", "psnr_mohan_db", "ssim_mohan")
#: Splits whose conditions (held-out bands, code-path names) are groups of their own.
CONDITION_SPLITS = ("held_out_condition", "code_path")


def select_images(cfg: Any, images: list[TestImage]) -> list[TestImage]:
    """The images of the cross-condition tables: at most ``condition_max_images``, drawn
    from the seed."""
    cap = cfg.evaluation.condition_max_images
    if len(images) <= cap:
        return images
    pick = np.sort(rng(cfg.seed, "benchmark", "conditions", "select").choice(
        len(images), cap, replace=False))
    return [images[i] for i in pick]


def condition_counts(cfg: Any, im: TestImage, dose_px: float) -> np.ndarray:
    """The noisy frame [e/px] of ``im`` at ``dose_px`` that every method of the cross-condition
    tables sees (drawn from the seed and the image id, with the image's detector DQE)."""
    return np.asarray(detector_counts(
        np.clip(np.asarray(im.clean, dtype=np.float64), 0, None) * dose_px,
        rng(cfg.seed, "benchmark", "conditions", im.image_id), row_dqe(im.params)),
        dtype=np.float64)


def static_frames(clean: np.ndarray, dose_px: float, n: int, key: str, seed: int,
                   dqe: float = 1.0) -> np.ndarray:
    """``n`` independent noisy frames [e/px] (n, H, W) of the static scene ``clean``, each
    with 1/n of the dose ``dose_px`` (drawn from the seed and ``key``)."""
    g = rng(seed, "benchmark", "conditions", "frames", key)
    lam = np.broadcast_to(np.clip(clean, 0, None) * (dose_px / n), (n, *clean.shape))
    return np.asarray(detector_counts(lam, g, dqe), dtype=np.float32)


def _blind_spot(
    cfg: Any, model: Any, im: TestImage, dose_px: float, finetune: bool, match: bool = True,
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """``blind_spot`` (and, with ``finetune``, ``blind_spot_finetuned``) on the image's static
    frames: the middle frame's estimate [intensity, vacuum = 1]."""
    module = getattr(model, "module", model)  # a LoadedModel or its network
    n = int(getattr(module, "n_frames", 5) or 5)
    frames = static_frames(im.clean, dose_px, n, im.image_id, cfg.seed, row_dqe(im.params))

    def run(m: Any) -> np.ndarray:
        return np.asarray(denoise_movie(getattr(m, "module", m), frames, dose_px / n,
                                        match=match)[n // 2], dtype=np.float64)

    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {"blind_spot": (run(module), {})}
    if finetune:
        if not isinstance(model, LoadedModel):
            raise InputError("evaluation.finetune_images: fine-tuning needs the unsupervised "
                             "model file (etem evaluate --unsupervised), not a bare network")
        # apply.finetune's defaults but the steps: the evaluation stage does not read apply:
        ft = cfg.apply.model_copy(update={"finetune": FinetuneConfig(
            steps=int(cfg.evaluation.finetune_steps))})
        tuned, record = finetune_unsupervised(
            cfg.model_copy(update={"apply": ft}), model, frames, dose_px / n,
            float(im.params["pixel_size_A"]), name=im.image_id)
        out["blind_spot_finetuned"] = (run(tuned), {"finetune_kept": bool(record["kept"])})
    return out


def _estimates(
    cfg: Any, im: TestImage, counts: np.ndarray, dose_px: float, denoiser: Any | None,
    unsupervised: Any | None, finetune: bool = False,
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    b = cfg.evaluation
    match = cfg.apply.inference.match_mean  # the same mean constraint as etem apply
    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
        "noisy": (baselines.noisy_intensity(counts, dose_px), {}),
        "flat": (baselines.flat(counts, dose_px), {}),
    }
    est, sigma = baselines.oracle_gaussian(counts, dose_px, im.clean, list(b.oracle_sigmas_px))
    out["gaussian_oracle"] = (est, {"oracle_sigma_px": sigma})
    out["nlm"] = (baselines.nlm_estimated(counts, dose_px, b.nlm_patch_size_px,
                                          b.nlm_patch_distance_px), {})
    if b.wiener:
        out["wiener"] = (baselines.wiener(counts, dose_px, b.wiener_alpha,
                                          b.wiener_smooth_px), {})
    if b.wiener_sure:
        est, alpha, smooth = baselines.wiener_sure(counts, dose_px, row_dqe(im.params))
        out["wiener_sure"] = (est, {"wiener_alpha": alpha, "wiener_smooth_px": smooth})
    if denoiser is not None:
        out["supervised"] = (np.asarray(denoise_images(
            denoiser, counts.astype(np.float32), dose_px, match=match,
            dqe=row_dqe(im.params)), dtype=np.float64), {})
    if unsupervised is not None:
        out.update(_blind_spot(cfg, unsupervised, im, dose_px, finetune, match))
    return out


def conditions_table(
    cfg: Any, images: list[TestImage], denoiser: Any | None = None,
    unsupervised: Any | None = None, finetune: bool = True,
) -> pd.DataFrame:
    """One row per (image, method) with both metrics (see module docstring); ``finetune``:
    whether ``blind_spot_finetuned`` runs (on the evaluated images, not on a code path's)."""
    dose_px = float(cfg.evaluation.condition_dose_e_per_px)
    selected = select_images(cfg, images)
    tuned = finetuned_images(selected, cfg.evaluation.finetune_images if finetune else 0)
    rows = []
    for im in progress(selected, "cross-condition table"):
        clean = np.asarray(im.clean, dtype=np.float64)
        counts = condition_counts(cfg, im, dose_px)
        rng_ = data_range(clean)
        base = {"image_id": im.image_id, "split": im.params.get("split"),
                "condition": str(im.params.get("condition", "") or ""),
                "dose_e_per_px": dose_px}
        base.update({k: im.params.get(k) for k in (
            "structure_id", "family", "energy_kv", "cs_um", "defocus_nm", "detector_pixel_A",
            "blur_fwhm_A", "pixel_size_A", "dqe", "contrast_regime")})
        for name, (est, extra) in _estimates(cfg, im, counts, dose_px, denoiser, unsupervised,
                                             im.image_id in tuned).items():
            rows.append({**base, **extra, "method": name,
                         "psnr_db": psnr(clean, est, rng_), "ssim": ssim(clean, est, rng_),
                         "psnr_mohan_db": psnr_peak(clean * dose_px, est * dose_px, 1.0),
                         "ssim_mohan": ssim_peak(clean * dose_px, est * dose_px, 1.0)})
    return pd.DataFrame(rows)


def finetuned_images(images: list[TestImage], n: int) -> set[str]:
    """Ids of the images ``blind_spot_finetuned`` runs on: the first ``n`` of ``images``,
    those of held-out conditions first (table order otherwise)."""
    order = sorted(images, key=lambda im: im.params.get("split") != "held_out_condition")
    return {im.image_id for im in order[:n]}


def summarise_conditions(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, group): group = each split, and each condition of a split.

    Groups: ``split=test`` (in distribution), ``split=held_out`` (held-out structures),
    ``split=held_out_condition`` (all held-out conditions),
    ``split=held_out_condition|condition=<band>`` (each band), ``split=code_path`` (all code
    paths) and ``split=code_path|condition=<name>`` (each code path); n, mean and sem of
    :data:`METRICS`.
    """
    rows: list[dict[str, Any]] = []
    if per_image.empty:
        return pd.DataFrame(rows)
    for method, g_m in per_image.groupby("method", sort=False):
        for name, g in condition_groups(g_m):
            rows.append({"method": method, "group": name, "n": len(g), **mean_sem(g, METRICS)})
    return pd.DataFrame(rows)


def condition_groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The groups of the cross-condition tables: ``split=<s>`` for each split, then
    ``split=<s>|condition=<c>`` for each condition of a split of :data:`CONDITION_SPLITS`
    (held-out bands, code paths)."""
    groups = [(f"split={s}", g) for s, g in df.groupby("split", sort=True)]
    for split in CONDITION_SPLITS:
        hc = df[df["split"] == split]
        groups += [(f"split={split}|condition={c!s}", g)
                   for c, g in hc.groupby("condition", sort=True) if c]
    return groups


def binned_groups(df: pd.DataFrame, by: str, edges: list[float]
                  ) -> list[tuple[str, pd.DataFrame]]:
    """Each split's rows binned by the numeric image parameter column ``by``
    (``blur_fwhm_A``, ...): ``split=<s>|<by> in (a, b]`` for each bin of ``edges`` (finite,
    ascending, at least two) holding rows; rows without the parameter, or outside the edges
    (the first edge itself too: bins are open on the left), in none. Whether a held-out
    band's margin is the band's being unseen or its images' being hard shows in the same bins
    of the test split."""
    if by not in df:
        raise InputError(f"bin by {by!r}: no such column (columns: {', '.join(map(str, df))})")
    if len(edges) < 2 or not np.all(np.isfinite(edges)) or any(np.diff(edges) <= 0):
        raise InputError(f"bin edges {list(edges)}: give at least two, finite and ascending")
    values = pd.to_numeric(df[by], errors="coerce")
    if not values.notna().any():
        raise InputError(f"bin by {by!r}: no row has a number there")
    groups = []
    for split, g in df.groupby("split", sort=True):
        cut = pd.cut(values.loc[g.index], list(edges))
        groups += [(f"split={split}|{by} in {interval}", gb)
                   for interval, gb in g.groupby(cut, observed=True, sort=True)]
    return groups
