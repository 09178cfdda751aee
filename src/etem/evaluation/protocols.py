"""Mohan et al.'s evaluation protocol and the per-image segmentation rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etem.analysis.baselines import oracle_gaussian
from etem.analysis.metrics import class_overlap, occupancy_hits, psnr_peak, ssim_peak
from etem.errors import InputError
from etem.evaluation.inputs import TestImage
from etem.evaluation.methods import Method
from etem.models.inference import segment_images
from etem.progress import progress
from etem.seeding import rng
from etem.simulation.contract import CLASSES


def mohan_protocol(cfg: Any, images: list[TestImage], methods: dict[str, Method]) -> pd.DataFrame:
    """Mohan et al.'s evaluation protocol on ``images``: one row per (image, method).

    The clean image (intensity, vacuum = 1) is scaled so that its maximum is
    ``evaluation.mohan_peak_counts`` [e/px] (Mohan et al.: 1 count, mean ~0.45 e/px); the
    noisy frame is Poisson(scaled clean) drawn from the config seed. Every method gets the
    counts and, as its dose, the mean count per pixel of the noisy frame (what an
    experimenter can measure); its output intensity times that dose is its estimate of the
    scaled clean image [e/px]. PSNR and SSIM use the peak as data range after clamping both
    images to [0, peak] (``psnr_peak``, ``ssim_peak``), so the figures are comparable with
    their 35-38 dB, not with the range-normalised PSNR of ``per_image.parquet``. Beside
    ``methods``, ``gaussian_oracle``: the Gaussian filter whose width (among
    ``evaluation.oracle_sigmas_px``) is closest to the scaled clean image (the bar to clear).
    """
    peak = float(cfg.evaluation.mohan_peak_counts)
    rows = []
    for im in progress(images, "mohan protocol"):
        top = float(np.max(im.clean))
        if not top > 0:
            raise InputError(f"image {im.image_id}: clean image has no positive pixel")
        clean = im.clean * (peak / top)
        counts = rng(cfg.seed, "benchmark", "mohan", im.image_id).poisson(clean).astype(np.float64)
        dose = max(float(counts.mean()), 1e-6)
        base = {k: im.params.get(k) for k in ("image_id", "structure_id", "family", "split",
                                               "thickness_nm", "defocus_nm")}
        base["tilt"] = f"({im.params.get('tilt_x_mrad', 0):g}, {im.params.get('tilt_y_mrad', 0):g})"
        base.update(mean_counts_per_px=float(clean.mean()), dose_e_per_px=dose,
                    peak_counts=peak)
        ests = {name: counts if name == "noisy" else np.asarray(fn(counts, dose)) * dose
                for name, fn in methods.items()}
        oracle, _ = oracle_gaussian(counts, dose, clean / dose,
                                    list(cfg.evaluation.oracle_sigmas_px))
        ests["gaussian_oracle"] = oracle * dose
        for name, est in ests.items():
            rows.append({**base, "method": name, "psnr_db": psnr_peak(clean, est, peak),
                         "ssim": ssim_peak(clean, est, peak)})
    return pd.DataFrame(rows)


def segmentation_counts(
    true_class: np.ndarray, true_occ: dict[str, np.ndarray], pred_class: np.ndarray | None,
    pred_occ: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """The segmentation quantities of one image as pooled counts: ``quantity``, ``num``, ``den``.

    ``iou_<class>``: intersection / union [px] of each class of
    :data:`~etem.simulation.contract.CLASSES` (without ``pred_class``: none);
    ``<site>_occupancy_exact`` / ``_within1``: column pixels (true occupancy > 0.5 atoms)
    whose rounded predicted occupancy equals the rounded true one / is within ±1 atom, out of
    the column pixels. A summary's value is sum(num) / sum(den) over images.
    """
    rows: list[dict[str, Any]] = []
    if pred_class is not None:
        for k, name in enumerate(CLASSES):
            inter, union = class_overlap(pred_class, true_class, k)
            rows.append({"quantity": f"iou_{name}", "num": float(inter), "den": float(union)})
    for key, occ in true_occ.items():
        if key not in pred_occ:
            continue
        sel = occ > 0.5
        if not sel.any():
            continue
        site = key.removesuffix("_occupancy")
        for tol, suffix in ((0, "exact"), (1, "within1")):
            hits, n = occupancy_hits(pred_occ[key], occ, sel, tol)
            rows.append({"quantity": f"{site}_occupancy_{suffix}", "num": float(hits),
                         "den": float(n)})
    return rows


def segmentation_rows(
    model: Any, im: TestImage, counts: np.ndarray, dose_px: float, dose: float,
    base: dict[str, Any],
) -> list[dict[str, Any]]:
    """The segmenter's :func:`segmentation_counts` on one noisy image (counts at ``dose``)."""
    assert im.class_map is not None
    out = segment_images(model, counts.astype(np.float32), dose_px)
    return [{**base, "dose_e_per_A2": dose, **r} for r in segmentation_counts(
        im.class_map, im.occupancy, out["class_map"], out)]
