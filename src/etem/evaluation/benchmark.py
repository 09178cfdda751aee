"""The benchmark stage: denoising tables, column detection, likelihood calibration, uMSE.

Outputs (all under ``out_dir``; see ``docs/evaluation.md``)::

    per_image.parquet            one row per (image, dose, method): psnr [dB], ssim, params
    denoising_summary.csv        one row per (method, subset): mean/sem of psnr and ssim
    columns_per_image.parquet    one row per (image, dose, method): column detection counts
    columns_summary.csv          one row per (method, subset): precision, recall, rmse [pm]
    likelihood_columns.parquet   one row per found column (primary method): llr, p-values
                                 (effective Poisson counts x the image's detector dqe)
    likelihood_calibration.json  Calibration (used by the movie stage)
    calibration_far.csv          held-out false-alarm rates per confidence level
    reliability.csv              reliability diagram data
    umse.csv                     uMSE vs true MSE per (method, dose)
    segmentation.csv             per-class IoU, occupancy accuracy (with a segmenter)
    mohan_per_image.csv          Mohan et al.'s protocol: one row per (image, method): clean
                                 scaled to a peak of 1 count, PSNR [dB]/SSIM with peak 1 count
    mohan_summary.csv            the same, one row per (method, subset): mean/sem
    movie.csv                    synthetic movie: true MSE and uMSE per method (with a movie)
    conditions_per_image.csv     cross-condition table: one row per (image, method): PSNR/SSIM
                                 (etem's metric and Mohan et al.'s) at benchmark.condition_dose
    conditions_summary.csv       the same per (method, split, condition): held-out structures,
                                 held-out microscope conditions, in-distribution test, and
                                 each code path (split=code_path|condition=<name>)
    segmentation_conditions.csv  the segmenter per (method, split, condition) beside an
                                 intensity-counting baseline: IoU per class, exact / ±1
                                 occupancy of cation and anion columns (per image:
                                 segmentation_conditions_per_image.csv)
    figures/*.png                metric vs dose, heat maps, examples, calibration
    summary.json                 headline numbers and the list of files
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from etem.analysis.calibration import with_random_ties
from etem.analysis.columns import columns_from_labels, find_columns
from etem.analysis.likelihood import Calibration, likelihood_table
from etem.analysis.matching import detection_metrics, match_columns
from etem.analysis.metrics import data_range, mse, psnr, ssim
from etem.analysis.umse import umse
from etem.evaluation.calibrate import calibrate, find_kwargs, quartet_truth, skew
from etem.evaluation.conditions import conditions_table, summarise_conditions
from etem.evaluation.inputs import TestImage, load_test_images, load_train_images, read_movie
from etem.evaluation.methods import (
    Method,
    make_methods,
    noisy_counts,
    primary_method,
    run_method,
)
from etem.evaluation.movie import movie_table, temporal_mean
from etem.evaluation.outputs import write_outputs
from etem.evaluation.protocols import mohan_protocol, segmentation_rows
from etem.evaluation.segmentation import (
    segmentation_conditions_table,
    summarise_segmentation_conditions,
)
from etem.evaluation.tables import (
    confidence_filtered,
    headline_summary,
    summarise,
    summarise_columns,
    summarise_segmentation,
)
from etem.progress import progress
from etem.seeding import rng
from etem.simulation.noise import row_dqe

log = logging.getLogger("etem.evaluation.benchmark")


@dataclass
class BenchmarkResult:
    """Tables of one benchmark run (written by :func:`write_outputs`)."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    calibration: Calibration | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)


# -- the benchmark ----------------------------------------------------------------------
@dataclass
class _Rows:
    """Rows accumulated over the images of one benchmark run."""

    denoise: list[dict[str, Any]] = field(default_factory=list)
    columns: list[dict[str, Any]] = field(default_factory=list)
    likelihood: list[pd.DataFrame] = field(default_factory=list)
    umse: list[dict[str, Any]] = field(default_factory=list)
    segmentation: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)


def image_base(im: TestImage) -> dict[str, Any]:
    """The breakdown columns of an image's rows."""
    base = {k: im.params.get(k) for k in ("image_id", "structure_id", "family", "split",
                                           "thickness_nm", "defocus_nm")}
    base["condition"] = str(im.params.get("condition", "") or "")
    base["tilt"] = f"({im.params.get('tilt_x_mrad', 0):g}, {im.params.get('tilt_y_mrad', 0):g})"
    return base


def run_benchmark(
    cfg: Any,
    images: list[TestImage],
    denoiser: Any | None = None,
    segmenter: Any | None = None,
    movie: dict[str, Any] | None = None,
    unsupervised: Any | None = None,
    code_paths: dict[str, list[TestImage]] | None = None,
    train_images: list[TestImage] | None = None,
) -> BenchmarkResult:
    """Evaluate every method on ``images`` at every benchmark dose (see module docstring);
    the images of each code path (``code_paths``: name -> images) enter the cross-condition
    table only; ``train_images``: training-split images, the calibration set of the
    segmentation table's intensity baseline (:mod:`etem.evaluation.segmentation`)."""
    methods = make_methods(cfg, denoiser)
    primary = primary_method(methods)
    acc = _Rows()
    for n_img, im in enumerate(progress(images, "benchmark images")):
        _image_rows(cfg, im, n_img, methods, primary, segmenter, acc)
    res = BenchmarkResult(examples=acc.examples)
    _tables(cfg, res, acc, images, methods)
    _calibration(cfg, res, acc, images, methods, primary)
    if movie is not None:
        res.tables["movie"] = movie_table(cfg, movie, methods,
                                          getattr(unsupervised, "module", unsupervised))
    if cfg.evaluation.conditions and images:
        cond = pd.concat([conditions_table(cfg, ims, denoiser, unsupervised, finetune=k == 0)
                          for k, ims in enumerate((images, *(code_paths or {}).values()))],
                         ignore_index=True)
        res.tables["conditions_per_image"] = cond
        res.tables["conditions_summary"] = summarise_conditions(cond)
        seg = segmentation_conditions_table(cfg, images, train_images or [], segmenter)
        if len(seg):
            res.tables["segmentation_conditions_per_image"] = seg
            res.tables["segmentation_conditions"] = summarise_segmentation_conditions(seg)
    res.summary = headline_summary(res, primary, methods)
    return res


def _image_rows(
    cfg: Any, im: TestImage, n_img: int, methods: dict[str, Method], primary: str,
    segmenter: Any | None, acc: _Rows,
) -> None:
    """Every row of one test image at every benchmark dose."""
    b = cfg.evaluation
    doses = list(cfg.noise.benchmark_doses_e_per_A2)
    px = float(im.params["pixel_size_A"])
    rng_ = data_range(im.clean)
    truth = columns_from_labels(im.class_map, px) if im.class_map is not None else None
    find_kw = find_kwargs(cfg.columns, px, "bright" if skew(im.clean) >= 0 else "dark")
    base = image_base(im)
    for dose in doses:
        dose_px = dose * px * px
        counts = noisy_counts(im.clean, dose, px, cfg, im.image_id, row_dqe(im.params))
        outs = {}
        for name, fn in methods.items():
            est = run_method(name, fn, counts, dose_px, row_dqe(im.params))
            outs[name] = est
            acc.denoise.append({**base, "dose_e_per_A2": dose, "method": name,
                                "psnr_db": psnr(im.clean, est, rng_),
                                "ssim": ssim(im.clean, est, rng_), "mse": mse(im.clean, est)})
            if truth is not None and name != "noisy":
                _column_rows(cfg, im, counts, est, truth, find_kw, dose, dose_px, name,
                             name == primary, base, acc)
        if n_img < b.umse_images:
            _umse_rows(im, counts, dose, dose_px, methods, primary, acc)
        if segmenter is not None and im.class_map is not None:
            acc.segmentation += segmentation_rows(segmenter, im, counts, dose_px, dose, base)
        if n_img < b.example_images and dose in (doses[0], doses[-1]):
            acc.examples.append({"image_id": im.image_id, "dose": dose, "clean": im.clean,
                                 "outs": dict(outs)})


def _column_rows(
    cfg: Any, im: TestImage, counts: np.ndarray, est: np.ndarray, truth: pd.DataFrame,
    find_kw: dict[str, Any], dose: float, dose_px: float, name: str, is_primary: bool,
    base: dict[str, Any], acc: _Rows,
) -> None:
    """Column detection counts of one method's output; likelihood rows for the primary."""
    px = float(im.params["pixel_size_A"])
    found = find_columns(est, **find_kw)
    m = detection_metrics(found, truth, cfg.columns.match_radius_A)
    i_f, i_t = match_columns(found, truth, cfg.columns.match_radius_A)
    d2 = 0.0
    if len(i_f):
        dd = found[["x_A", "y_A"]].to_numpy()[i_f] - truth[["x_A", "y_A"]].to_numpy()[i_t]
        d2 = float(np.sum(dd**2))
    acc.columns.append({**base, "dose_e_per_A2": dose, "method": name,
                        "n_found": m["n_found"], "n_true": m["n_true"],
                        "n_matched": m["n_matched"], "sum_sq_err_A2": d2})
    if not is_primary:
        return
    # the counts of a detector with DQE(0) < 1 are not Poisson: effective counts (x dqe)
    q = row_dqe(im.params)
    tab = likelihood_table(counts, est * dose_px, found, cfg.columns.disk_radius_A / px,
                           lambda_vac=dose_px, dqe=q)
    matched = np.zeros(len(tab), dtype=bool)
    matched[i_f] = True
    tab["is_true"] = matched
    tab["image_id"] = im.image_id
    tab["dose_e_per_A2"] = dose
    tab["dose_e_per_px"] = dose_px
    tab["dqe"] = q
    g = rng(cfg.seed, "benchmark", "ties", im.image_id, f"{dose:g}")
    acc.likelihood.append(with_random_ties(tab, g))


def _umse_rows(
    im: TestImage, counts: np.ndarray, dose: float, dose_px: float,
    methods: dict[str, Method], primary: str, acc: _Rows,
) -> None:
    """uMSE vs the true MSE of the noisy input and the primary method."""
    for name in ("noisy", primary):
        fn = methods[name]

        def f_counts(z: np.ndarray, fn: Method = fn, d: float = dose_px,
                     name: str = name) -> np.ndarray:
            return run_method(name, fn, z, d, row_dqe(im.params)) * d

        r = umse(f_counts, counts)
        qs = quartet_truth(im.clean * dose_px, counts, f_counts)
        acc.umse.append({"image_id": im.image_id, "dose_e_per_A2": dose, "method": name,
                         "umse_counts2": r.umse, "se_counts2": r.se, "true_mse_counts2": qs,
                         "z": (r.umse - qs) / r.se if r.se > 0 else float("nan")})


def _tables(
    cfg: Any, res: BenchmarkResult, acc: _Rows, images: list[TestImage],
    methods: dict[str, Method],
) -> None:
    """Per-image tables and their summaries."""
    per_image = pd.DataFrame(acc.denoise)
    res.tables["per_image"] = per_image
    res.tables["denoising_summary"] = summarise(per_image, ["psnr_db", "ssim"])
    if acc.columns:
        cpi = pd.DataFrame(acc.columns)
        res.tables["columns_per_image"] = cpi
        res.tables["columns_summary"] = summarise_columns(cpi)
    if acc.umse:
        res.tables["umse"] = pd.DataFrame(acc.umse)
    if acc.segmentation:
        res.tables["segmentation"] = summarise_segmentation(pd.DataFrame(acc.segmentation))
    if cfg.evaluation.mohan_protocol and images:
        mp = mohan_protocol(cfg, images, methods)
        res.tables["mohan_per_image"] = mp
        res.tables["mohan_summary"] = summarise(mp, ["psnr_db", "ssim", "mean_counts_per_px"])


def _calibration(
    cfg: Any, res: BenchmarkResult, acc: _Rows, images: list[TestImage],
    methods: dict[str, Method], primary: str,
) -> None:
    """Calibration on simulated vacuum (fit half, held-out half) + true columns."""
    b = cfg.evaluation
    lik = pd.concat(acc.likelihood, ignore_index=True) if acc.likelihood else pd.DataFrame()
    shape = images[0].clean.shape if images else (128, 128)
    px0 = float(images[0].params["pixel_size_A"]) if images else 0.2
    cal, far, rel, null_fit = calibrate(cfg, methods[primary], shape, px0, lik)
    if len(lik):
        lik["p_value"] = cal.p_value(lik["llr"].to_numpy(), lik["n_pixels"].to_numpy(),
                                     lik["lambda_atom"].to_numpy(), lik["lambda_vac"].to_numpy())
        lik["confidence"] = 1.0 - lik["p_value"]
        res.tables["likelihood_columns"] = lik
        if "columns_per_image" in res.tables:
            res.tables["columns_by_confidence"] = confidence_filtered(
                lik, res.tables["columns_per_image"], primary, list(b.confidence_levels)
            )
    res.calibration = cal
    res.tables["calibration_far"] = far
    res.tables["calibration_null"] = null_fit
    if len(rel):
        res.tables["reliability"] = rel


__all__ = [
    "BenchmarkResult", "Method", "TestImage", "load_test_images", "load_train_images",
    "make_methods",
    "mohan_protocol", "read_movie", "run_benchmark", "temporal_mean", "write_outputs",
]
