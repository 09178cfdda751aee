"""The benchmark stage: denoising tables, column detection, likelihood calibration, uMSE.

Outputs (all under ``out_dir``; see ``docs/evaluation.md``)::

    per_image.parquet            one row per (image, dose, method): psnr [dB], ssim, params
    denoising_summary.csv        one row per (method, subset): mean/sem of psnr and ssim
    columns_per_image.parquet    one row per (image, dose, method): column detection counts
    columns_summary.csv          one row per (method, subset): precision, recall, rmse [pm]
    likelihood_columns.parquet   one row per found column (primary method): llr, p-values
    likelihood_calibration.json  Calibration (used by the movie stage)
    calibration_far.csv          held-out false-alarm rates per confidence level
    reliability.csv              reliability diagram data
    umse.csv                     uMSE vs true MSE per (method, dose)
    segmentation.csv             per-class IoU, occupancy accuracy (with a segmenter)
    mohan_per_image.csv          Mohan et al.'s protocol: one row per (image, method): clean
                                 scaled to a peak of 1 count, PSNR [dB]/SSIM with peak 1 count
    mohan_summary.csv            the same, one row per (method, subset): mean/sem
    movie.csv                    synthetic movie: true MSE and uMSE per method (with a movie)
    figures/*.png                metric vs dose, heat maps, examples, calibration
    summary.json                 headline numbers and the list of files
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from scipy.ndimage import convolve1d

from etem.analysis import baselines
from etem.analysis.calibration import (
    held_out_report,
    reliability_table,
    vacuum_detections,
    with_random_ties,
)
from etem.analysis.columns import columns_from_labels, find_columns, oriented
from etem.analysis.likelihood import Calibration, likelihood_table
from etem.analysis.matching import detection_metrics, match_columns
from etem.analysis.metrics import data_range, mse, psnr, psnr_peak, ssim, ssim_peak
from etem.analysis.umse import quartets, umse, umse_frames
from etem.config import EtemConfig
from etem.data.splits import assign_splits
from etem.errors import InputError
from etem.evaluation import figures as F
from etem.io import read_table, write_json, write_table
from etem.models.inference import denoise_images, denoise_movie, segment_images
from etem.progress import progress
from etem.provenance import provenance
from etem.seeding import rng
from etem.simulation.contract import CLASSES
from etem.simulation.noise import apply_dose

log = logging.getLogger("etem.evaluation.benchmark")

#: maps counts [e/px] and dose per pixel [e/px] to intensity (vacuum = 1)
Method = Callable[[np.ndarray, float], np.ndarray]

#: image parameters used to break the tables down (``tilt`` is derived from tilt_x/y)
BREAKDOWN_AXES = ("dose_e_per_A2", "thickness_nm", "defocus_nm", "tilt", "family", "split")


@dataclass
class TestImage:
    """A clean test image with its labels and parameters."""

    image_id: str
    clean: np.ndarray
    class_map: np.ndarray | None
    params: dict[str, Any]
    occupancy: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class BenchmarkResult:
    """Tables of one benchmark run (written by :func:`write_outputs`)."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    calibration: Calibration | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)


# -- inputs -----------------------------------------------------------------------------
def load_test_images(index_path: str | Path, cfg: EtemConfig) -> list[TestImage]:
    """Test and held-out images of the campaign (split by structure), capped deterministically."""

    index_path = Path(index_path)
    idx = read_table(index_path)
    for col in ("image_id", "structure_id", "shard", "index_in_shard", "pixel_size_A"):
        if col not in idx.columns:
            raise InputError(f"image index {index_path}: missing column {col!r}")
    idx = _with_manifest_columns(idx, index_path, cfg)
    idx["split"] = _splits(idx, cfg)
    sel = idx[idx["split"].isin(["test", "held_out"])].sort_values("image_id")
    if sel.empty:
        raise InputError(f"image index {index_path}: no test or held-out images")
    cap = cfg.benchmark.max_test_images
    if len(sel) > cap:
        pick = np.sort(rng(cfg.seed, "benchmark", "select").choice(len(sel), cap, replace=False))
        sel = sel.iloc[pick]
    out: list[TestImage] = []
    handles: dict[str, Any] = {}
    try:
        row: Any
        for row in sel.itertuples(index=False):
            shard = str((index_path.parent / str(row.shard)).resolve())
            if shard not in handles:
                if not Path(shard).exists():
                    raise InputError(f"image shard {shard}: no such file")
                handles[shard] = h5py.File(shard, "r")
            fh = handles[shard]
            i = int(row.index_in_shard)
            clean = np.asarray(fh["clean"][i], dtype=np.float64)
            cls = np.asarray(fh["labels/class"][i]) if "labels/class" in fh else None
            params = row._asdict()
            occ = {k: np.asarray(fh[f"labels/{k}"][i], dtype=np.float64)
                   for k in ("cation_occupancy", "anion_occupancy") if f"labels/{k}" in fh}
            out.append(TestImage(str(row.image_id), clean, cls, params, occ))
    finally:
        for fh in handles.values():
            fh.close()
    return out


def _with_manifest_columns(idx: pd.DataFrame, index_path: Path, cfg: EtemConfig) -> pd.DataFrame:
    """Add held-out columns (e.g. ``particle_shape``) from the structures manifest if absent.

    The manifest is looked up where the results layout puts it
    (``<results>/structures/manifest.csv`` beside ``<results>/simulation/index.csv``).
    """

    idx = idx.copy()
    need = [c for c in cfg.training.split.held_out if c not in idx.columns]
    man_p = index_path.parent.parent / "structures" / "manifest.csv"
    if not need or not man_p.exists():
        return idx
    man = read_table(man_p)
    cols = [c for c in need if c in man.columns]
    if not cols or "structure_id" not in man.columns:
        return idx
    extra = man[["structure_id", *cols]].drop_duplicates("structure_id")
    extra["structure_id"] = extra["structure_id"].astype(str)
    idx["structure_id"] = idx["structure_id"].astype(str)
    return idx.merge(extra, on="structure_id", how="left")


def _splits(idx: pd.DataFrame, cfg: EtemConfig) -> pd.Series:
    return assign_splits(idx, cfg.training.split, cfg.seed)


def make_methods(cfg: EtemConfig, denoiser: Any | None = None) -> dict[str, Method]:
    """Methods compared: noisy input, Gaussian filters, NLM, and the supervised denoiser."""
    b = cfg.benchmark
    methods: dict[str, Method] = {"noisy": baselines.noisy_intensity}
    for s in b.gaussian_sigma_px:
        methods[f"gaussian_{s:g}px"] = functools.partial(baselines.gaussian, sigma_px=s)
    if b.nlm:
        methods["nlm"] = lambda c, d: baselines.nlm(
            c, d, b.nlm_patch_size_px, b.nlm_patch_distance_px, b.nlm_h
        )
    if denoiser is not None:
        methods["supervised"] = lambda c, d: np.asarray(
            denoise_images(denoiser, c.astype(np.float32), d), dtype=np.float64
        )
    return methods


def primary_method(methods: dict[str, Method]) -> str:
    """Method whose columns are calibrated: supervised denoiser, else NLM, else a Gaussian."""
    if "supervised" in methods:
        return "supervised"
    if "nlm" in methods:
        return "nlm"
    gauss = [m for m in methods if m.startswith("gaussian_")]
    return gauss[len(gauss) // 2] if gauss else "noisy"


def _noisy(clean: np.ndarray, dose_A2: float, px: float, cfg: EtemConfig, key: str) -> np.ndarray:
    g = rng(cfg.seed, "benchmark", "noise", key, f"{dose_A2:g}")

    return np.asarray(
        apply_dose(clean, dose_A2, px, g, cfg.noise.read_noise_e, cfg.noise.gain), dtype=np.float64
    )


# -- the benchmark ----------------------------------------------------------------------
def run_benchmark(
    cfg: EtemConfig,
    images: list[TestImage],
    denoiser: Any | None = None,
    segmenter: Any | None = None,
    movie: dict[str, Any] | None = None,
    unsupervised: Any | None = None,
) -> BenchmarkResult:
    """Evaluate every method on ``images`` at every benchmark dose (see module docstring)."""

    b = cfg.benchmark
    methods = make_methods(cfg, denoiser)
    primary = primary_method(methods)
    doses = list(cfg.noise.benchmark_doses_e_per_A2)
    rows, col_rows, lik_tabs, umse_rows, seg_rows = [], [], [], [], []
    examples: list[dict[str, Any]] = []
    for n_img, im in enumerate(progress(images, "benchmark images")):
        px = float(im.params["pixel_size_A"])
        rng_ = data_range(im.clean)
        truth = columns_from_labels(im.class_map, px) if im.class_map is not None else None
        polarity = "bright" if _skew(im.clean) >= 0 else "dark"
        find_kw = _find_kwargs(b, px, polarity)
        disk_px = b.column_disk_radius_A / px
        base = {k: im.params.get(k) for k in ("image_id", "structure_id", "family", "split",
                                               "thickness_nm", "defocus_nm")}
        base["tilt"] = f"({im.params.get('tilt_x_mrad', 0):g}, {im.params.get('tilt_y_mrad', 0):g})"
        for dose in doses:
            dose_px = dose * px * px
            counts = _noisy(im.clean, dose, px, cfg, im.image_id)
            outs = {}
            for name, fn in methods.items():
                est = fn(counts, dose_px)
                outs[name] = est
                rows.append({**base, "dose_e_per_A2": dose, "method": name,
                             "psnr_db": psnr(im.clean, est, rng_),
                             "ssim": ssim(im.clean, est, rng_), "mse": mse(im.clean, est)})
                if truth is not None and name != "noisy":
                    found = find_columns(est, **find_kw)
                    m = detection_metrics(found, truth, b.match_radius_A)
                    i_f, i_t = match_columns(found, truth, b.match_radius_A)
                    d2 = 0.0
                    if len(i_f):
                        dd = (found[["x_A", "y_A"]].to_numpy()[i_f]
                              - truth[["x_A", "y_A"]].to_numpy()[i_t])
                        d2 = float(np.sum(dd**2))
                    col_rows.append({**base, "dose_e_per_A2": dose, "method": name,
                                     "n_found": m["n_found"], "n_true": m["n_true"],
                                     "n_matched": m["n_matched"], "sum_sq_err_A2": d2})
                    if name == primary:
                        tab = likelihood_table(counts, est * dose_px, found, disk_px,
                                               lambda_vac=dose_px)
                        matched = np.zeros(len(tab), dtype=bool)
                        matched[i_f] = True
                        tab["is_true"] = matched
                        tab["image_id"] = im.image_id
                        tab["dose_e_per_A2"] = dose
                        tab["dose_e_per_px"] = dose_px
                        g = rng(cfg.seed, "benchmark", "ties", im.image_id, f"{dose:g}")
                        lik_tabs.append(with_random_ties(tab, g))
            if n_img < b.umse_images:
                for name in ("noisy", primary):
                    fn = methods[name]
                    def f_counts(z: np.ndarray, fn: Method = fn, d: float = dose_px) -> np.ndarray:
                        return fn(z, d) * d

                    r = umse(f_counts, counts)
                    qs = _quartet_truth(im.clean * dose_px, counts, f_counts)
                    umse_rows.append({"image_id": im.image_id, "dose_e_per_A2": dose,
                                      "method": name, "umse_counts2": r.umse, "se_counts2": r.se,
                                      "true_mse_counts2": qs,
                                      "z": (r.umse - qs) / r.se if r.se > 0 else float("nan")})
            if segmenter is not None and im.class_map is not None:
                seg_rows += _segmentation_rows(segmenter, im, counts, dose_px, dose, base)
            if n_img < b.example_images and dose in (doses[0], doses[-1]):
                examples.append({"image_id": im.image_id, "dose": dose, "clean": im.clean,
                                 "outs": {k: v for k, v in outs.items()}})
    res = BenchmarkResult(examples=examples)
    per_image = pd.DataFrame(rows)
    res.tables["per_image"] = per_image
    res.tables["denoising_summary"] = summarise(per_image, ["psnr_db", "ssim"])
    if col_rows:
        cpi = pd.DataFrame(col_rows)
        res.tables["columns_per_image"] = cpi
        res.tables["columns_summary"] = summarise_columns(cpi)
    if umse_rows:
        res.tables["umse"] = pd.DataFrame(umse_rows)
    if seg_rows:
        res.tables["segmentation"] = summarise_segmentation(pd.DataFrame(seg_rows))
    if b.mohan_protocol and images:
        mp = mohan_protocol(cfg, images, methods)
        res.tables["mohan_per_image"] = mp
        res.tables["mohan_summary"] = summarise(mp, ["psnr_db", "ssim", "mean_counts_per_px"])
    # calibration on simulated vacuum (fit half, held-out half) + true columns
    lik = pd.concat(lik_tabs, ignore_index=True) if lik_tabs else pd.DataFrame()
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
    if movie is not None:
        res.tables["movie"] = movie_table(cfg, movie, methods, unsupervised)
    res.summary = _summary(res, primary, methods)
    return res


def _skew(img: np.ndarray) -> float:
    d = img - img.mean()
    return float(np.mean(d**3))


def _find_kwargs(b: Any, px: float, polarity: str) -> dict[str, Any]:
    return {"pixel_size_A": px, "min_sigma_A": b.blob_min_sigma_A,
            "max_sigma_A": b.blob_max_sigma_A, "threshold": b.blob_threshold,
            "refine": b.column_refine, "polarity": polarity}


def _quartet_truth(clean_counts: np.ndarray, counts: np.ndarray, fn: Callable) -> float:
    """True MSE matching :func:`umse` (rotations of the quartet, vs the clean sub-image)."""

    qc, qn = quartets(clean_counts), quartets(counts)
    return float(np.mean([np.mean((qc[(i + 1) % 4] - fn(qn[i])) ** 2) for i in range(4)]))


def calibrate(
    cfg: EtemConfig, method: Method, shape: tuple[int, int], px: float, lik: pd.DataFrame
) -> tuple[Calibration, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Fit the likelihood calibration on simulated vacuum at every benchmark dose and at the
    movie's dose per frame.

    Half of ``cfg.benchmark.calibration_vacuum_images`` per dose fit the null, the other
    half is held out for the false-alarm table. Returns (calibration, FAR table, reliability
    table, fitted null sample).
    """
    b = cfg.benchmark
    n_fit = max(b.calibration_vacuum_images // 2, 1)
    fits: list[pd.DataFrame] = []
    held: list[pd.DataFrame] = []
    # the benchmark doses, plus the movie's dose per frame (what the apply stage sees)
    doses = sorted({*cfg.noise.benchmark_doses_e_per_A2,
                    round(cfg.movie.dose_e_per_px_per_frame / (px * px), 6)})
    for dose in doses:
        dose_px = dose * px * px
        find_kw = _find_kwargs(b, px, "bright")
        for part, n, store in (("fit", n_fit, fits), ("held_out", n_fit, held)):
            g = rng(cfg.seed, "benchmark", "vacuum", part, f"{dose:g}")
            d = vacuum_detections(
                method, dose_px, shape, n, g, find_kw, b.column_disk_radius_A / px
            )
            d["dose_e_per_A2"] = dose
            store.append(d)
    null_fit = pd.concat(fits, ignore_index=True)
    null_held = pd.concat(held, ignore_index=True)
    true_df = lik[lik["is_true"]] if len(lik) else None
    if len(null_fit) == 0:
        raise InputError("calibration: no spurious detections in simulated vacuum (threshold?)")
    cal = Calibration.fit(null_fit, true_df, meta={
        "doses_e_per_A2": doses, "pixel_size_A": px,
        "disk_radius_A": b.column_disk_radius_A, "n_null": len(null_fit),
        "n_true": 0 if true_df is None else len(true_df),
        "find_columns": _find_kwargs(b, px, "bright"),
    })
    far = held_out_report(cal, null_held, list(b.confidence_levels))
    rel = pd.DataFrame()
    if true_df is not None and len(true_df):
        rel = reliability_table(cal, null_held, true_df)
    keep = ["dose_e_per_A2", "lambda_vac", "n_pixels", "llr", "u"]
    return cal, far, rel, null_fit[keep]


def mohan_protocol(
    cfg: EtemConfig, images: list[TestImage], methods: dict[str, Method]
) -> pd.DataFrame:
    """Mohan et al.'s evaluation protocol on ``images``: one row per (image, method).

    The clean image (intensity, vacuum = 1) is scaled so that its maximum is
    ``benchmark.mohan_peak_counts`` [e/px] (Mohan et al.: 1 count, mean ~0.45 e/px); the
    noisy frame is Poisson(scaled clean) drawn from the config seed. Every method gets the
    counts and, as its dose, the mean count per pixel of the noisy frame (what an
    experimenter can measure); its output intensity times that dose is its estimate of the
    scaled clean image [e/px]. PSNR and SSIM use the peak as data range after clamping both
    images to [0, peak] (``psnr_peak``, ``ssim_peak``), so the figures are comparable with
    their 35-38 dB, not with the range-normalised PSNR of ``per_image.parquet``.
    """

    peak = float(cfg.benchmark.mohan_peak_counts)
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
        for name, fn in methods.items():
            est = counts if name == "noisy" else np.asarray(fn(counts, dose)) * dose
            rows.append({**base, "method": name, "psnr_db": psnr_peak(clean, est, peak),
                         "ssim": ssim_peak(clean, est, peak)})
    return pd.DataFrame(rows)


def _segmentation_rows(
    model: Any, im: TestImage, counts: np.ndarray, dose_px: float, dose: float,
    base: dict[str, Any],
) -> list[dict[str, Any]]:
    out = segment_images(model, counts.astype(np.float32), dose_px)
    pred, true = out["class_map"], im.class_map
    rows = []
    for k, name in enumerate(CLASSES):
        inter = float(np.sum((pred == k) & (true == k)))
        union = float(np.sum((pred == k) | (true == k)))
        rows.append({**base, "dose_e_per_A2": dose, "quantity": f"iou_{name}",
                     "num": inter, "den": union})
    for key, true_occ in im.occupancy.items():
        if key not in out:
            continue
        sel = true_occ > 0.5
        if not sel.any():
            continue
        err = np.abs(np.round(out[key][sel]) - np.round(true_occ[sel]))
        site = key.removesuffix("_occupancy")
        rows.append({**base, "dose_e_per_A2": dose, "quantity": f"{site}_occupancy_exact",
                     "num": float(np.sum(err == 0)), "den": float(sel.sum())})
        rows.append({**base, "dose_e_per_A2": dose, "quantity": f"{site}_occupancy_within1",
                     "num": float(np.sum(err <= 1)), "den": float(sel.sum())})
    return rows


def summarise_segmentation(seg: pd.DataFrame) -> pd.DataFrame:
    """Pooled IoU per class and occupancy accuracy (exact, ±1 atom) on column pixels.

    One row per (quantity, subset); ``value`` = sum(num) / sum(den) over the images.
    """
    rows = []
    for subset, sel in _subsets(seg):
        for q, g in sel.groupby("quantity"):
            den = g["den"].sum()
            rows.append({"quantity": q, "subset": subset, "n": len(g),
                         "value": float(g["num"].sum() / den) if den else float("nan")})
    return pd.DataFrame(rows)


def temporal_mean(frames: np.ndarray, n_frames: int) -> np.ndarray:
    """Sliding mean over ``n_frames`` consecutive frames (reflected at the ends).

    The classical baseline of the multi-frame denoiser: same input window, no network.
    """
    half = n_frames // 2
    padded = np.pad(frames, ((half, half), (0, 0), (0, 0)), mode="reflect")
    kernel = np.ones(n_frames) / n_frames

    return convolve1d(padded, kernel, axis=0, mode="constant")[half : half + frames.shape[0]]


def movie_table(
    cfg: EtemConfig, movie: dict[str, Any], methods: dict[str, Method], unsupervised: Any | None
) -> pd.DataFrame:
    """Synthetic movie: true MSE/PSNR (vs the clean frames) and uMSE from frame quartets."""

    frames = np.asarray(movie["frames"], dtype=np.float64)
    clean = movie.get("clean")
    dose_px = float(movie["dose_e_per_px"])
    n = frames.shape[0]
    n_static = (int(movie["static_frames"] if "static_frames" in movie else n) // 4) * 4
    outs: dict[str, np.ndarray] = {}
    for name, fn in methods.items():
        outs[name] = np.stack([fn(f, dose_px) for f in frames])
    if unsupervised is not None:
        n_win = int(getattr(unsupervised, "n_frames", 5) or 5)
        outs[f"temporal_mean_{n_win}"] = temporal_mean(frames, n_win) / dose_px
        outs["unsupervised"] = np.asarray(denoise_movie(unsupervised, frames, dose_px))
    rows = []
    for name, est in outs.items():
        row: dict[str, Any] = {"method": name, "n_frames": n, "n_static_frames": n_static}
        if clean is not None:
            c = np.asarray(clean, dtype=np.float64)[:n]
            row["mse"] = float(np.mean((est - c) ** 2))
            row["psnr_db"] = float(np.mean([psnr(c[i], est[i]) for i in range(n)]))
            if n_static:
                row["mse_static"] = float(np.mean((est[:n_static] - c[:n_static]) ** 2))
        if name in methods and n_static >= 4:
            def f_int(z: np.ndarray, fn: Method = methods[name]) -> np.ndarray:
                return fn(z * dose_px, dose_px)

            r = umse_frames(f_int, frames[:n_static] / dose_px)
            row["umse"] = r.umse
            row["umse_se"] = float(r.se)
        rows.append(row)
    return pd.DataFrame(rows)


# -- tables -----------------------------------------------------------------------------
def _subsets(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Subsets: all, each value of each breakdown axis, and dose x each other axis."""
    out: list[tuple[str, pd.DataFrame]] = [("all", df)]
    axes = [a for a in BREAKDOWN_AXES if a in df.columns]
    for a in axes:
        for v, g in df.groupby(a, sort=True):
            out.append((f"{a}={v:g}" if isinstance(v, float) else f"{a}={v!s}", g))
    if "dose_e_per_A2" in df.columns:
        for a in axes:
            if a == "dose_e_per_A2":
                continue
            for (d, w), g in df.groupby(["dose_e_per_A2", a], sort=True):
                vs = f"{w:g}" if isinstance(w, float) else str(w)
                out.append((f"dose_e_per_A2={d:g}|{a}={vs}", g))
    return out


def summarise(per_image: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (method, subset): n, mean and standard error of each metric."""
    rows = []
    for method, g_m in per_image.groupby("method", sort=False):
        for subset, g in _subsets(g_m):
            row: dict[str, Any] = {"method": method, "subset": subset, "n": len(g)}
            for m in metrics:
                v = g[m].to_numpy(dtype=np.float64)
                row[f"{m}_mean"] = float(v.mean())
                row[f"{m}_sem"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
            rows.append(row)
    return pd.DataFrame(rows)


def summarise_columns(cpi: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, subset): pooled precision, recall, F1 and position RMSE [pm]."""
    rows = []
    for method, g_m in cpi.groupby("method", sort=False):
        for subset, g in _subsets(g_m):
            nf, nt, nm = g["n_found"].sum(), g["n_true"].sum(), g["n_matched"].sum()
            p = nm / nf if nf else float("nan")
            r = nm / nt if nt else float("nan")
            rows.append({"method": method, "subset": subset, "n": len(g), "precision": p,
                         "recall": r, "f1": 2 * p * r / (p + r) if nm else 0.0,
                         "rmse_pm": float(np.sqrt(g["sum_sq_err_A2"].sum() / nm)) * 100
                         if nm else float("nan")})
    return pd.DataFrame(rows)


def confidence_filtered(
    lik: pd.DataFrame, cpi: pd.DataFrame, method: str, levels: list[float]
) -> pd.DataFrame:
    """Precision and recall of the primary method's columns kept at each confidence level.

    One row per (confidence level, subset) with subsets ``all`` and each dose; level 0 keeps
    every detection (the plain blob detector).
    """
    rows = []
    c = cpi[cpi["method"] == method]
    for lev in [0.0, *levels]:
        for subset, sel_l, sel_c in [("all", lik.index == lik.index, c.index == c.index)] + [
            (f"dose_e_per_A2={d:g}", lik["dose_e_per_A2"] == d, c["dose_e_per_A2"] == d)
            for d in sorted(lik["dose_e_per_A2"].unique())
        ]:
            kept = lik[sel_l & (lik["confidence"] >= lev)]
            n_true = float(c.loc[sel_c, "n_true"].sum())
            tp = float(kept["is_true"].sum())
            rows.append({"method": method, "confidence_level": lev, "subset": subset,
                         "n_kept": len(kept), "precision": tp / len(kept) if len(kept) else
                         float("nan"), "recall": tp / n_true if n_true else float("nan")})
    return pd.DataFrame(rows)


def _summary(res: BenchmarkResult, primary: str, methods: dict[str, Method]) -> dict[str, Any]:
    s = res.tables["denoising_summary"]
    out: dict[str, Any] = {"methods": list(methods), "primary_method": primary}
    allrows = s[s["subset"] == "all"]
    out["psnr_db"] = {r.method: r.psnr_db_mean for r in allrows.itertuples()}
    out["ssim"] = {r.method: r.ssim_mean for r in allrows.itertuples()}
    far = res.tables.get("calibration_far")
    if far is not None and len(far):
        a = far[far["dose_e_per_px"] == "all"]
        out["false_alarm"] = {
            f"{r.kind}@{r.confidence_level:g}": {"alpha": r.alpha, "observed": r.observed,
                                                 "se": r.se}
            for r in a.itertuples()
        }
    if "columns_summary" in res.tables:
        c = res.tables["columns_summary"]
        c = c[c["subset"] == "all"]
        out["columns"] = {r.method: {"precision": r.precision, "recall": r.recall,
                                     "rmse_pm": r.rmse_pm} for r in c.itertuples()}
    if "mohan_summary" in res.tables:
        m = res.tables["mohan_summary"]
        m = m[m["subset"] == "all"]
        out["mohan_protocol"] = {
            "peak_counts": float(res.tables["mohan_per_image"]["peak_counts"].iloc[0]),
            "mean_counts_per_px": float(m["mean_counts_per_px_mean"].iloc[0]),
            "psnr_db": {r.method: r.psnr_db_mean for r in m.itertuples()},
            "ssim": {r.method: r.ssim_mean for r in m.itertuples()},
        }
    if "umse" in res.tables:
        u = res.tables["umse"]
        z = np.abs(u["z"].to_numpy(dtype=np.float64))
        z = z[np.isfinite(z)]
        out["umse_mean_abs_z"] = float(z.mean()) if len(z) else float("nan")
    return out


# -- helpers for the CLI ----------------------------------------------------------------
def read_movie(path: str | Path) -> dict[str, Any]:
    """Synthetic movie HDF5 (``etem.simulation.contract.MOVIE_LAYOUT``).

    Returns ``frames`` (counts), ``clean`` (intensity, vacuum = 1, or None),
    ``dose_e_per_px`` (per frame) and ``static_frames``: frames before the first event
    (the static stretch used for uMSE).
    """

    p = Path(path)
    if not p.exists():
        raise InputError(f"movie {p}: no such file")
    with h5py.File(p, "r") as fh:
        if "frames" not in fh:
            raise InputError(f"movie {p}: no /frames dataset")
        frames = np.asarray(fh["frames"][:], dtype=np.float64)
        clean = np.asarray(fh["clean"][:], dtype=np.float64) if "clean" in fh else None
        events = np.asarray(fh["events"][:], dtype=np.int64) if "events" in fh else np.zeros(0)
        dose = None
        for obj in (fh, fh["frames"]):
            if dose is None and "dose_e_per_px_per_frame" in obj.attrs:
                dose = float(np.asarray(obj.attrs["dose_e_per_px_per_frame"]))
    if dose is None or not dose > 0:
        raise InputError(f"movie {p}: no positive dose_e_per_px_per_frame attribute")
    if clean is not None:
        clean = clean / dose  # the contract stores expected counts
    static = int(events.min()) if len(events) else frames.shape[0]
    return {"frames": frames, "clean": clean, "dose_e_per_px": dose,
            "static_frames": max(min(static, frames.shape[0]), 0)}


def oriented_example(img: np.ndarray) -> np.ndarray:
    """Image with bright columns, for display."""
    return oriented(img, "auto")


# -- outputs ----------------------------------------------------------------------------
#: tables written as Parquet (large, per image/column); the rest are CSV
PARQUET_TABLES = ("per_image", "columns_per_image", "likelihood_columns", "calibration_null")


def write_outputs(cfg: EtemConfig, res: BenchmarkResult, out_dir: Path) -> list[Path]:
    """Write tables, calibration, figures and summary.json under ``out_dir``; return the files."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prov = provenance(cfg, "benchmark")
    files: list[Path] = []
    for name, df in res.tables.items():
        if df is None or len(df) == 0:
            continue
        p = out_dir / (f"{name}.parquet" if name in PARQUET_TABLES else f"{name}.csv")
        write_table(p, df, metadata=prov)
        files.append(p)
    if res.calibration is not None:
        res.calibration.meta["provenance"] = prov
        p = out_dir / "likelihood_calibration.json"
        res.calibration.save(p)
        files.append(p)
    fig_dir = out_dir / "figures"
    t = res.tables
    s = t["denoising_summary"]
    files.append(F.save(F.metric_vs_dose(s, "psnr_db", "PSNR [dB]"), fig_dir / "psnr_vs_dose.png"))
    files.append(F.save(F.metric_vs_dose(s, "ssim", "SSIM"), fig_dir / "ssim_vs_dose.png"))
    primary = res.summary["primary_method"]
    for axis in ("thickness_nm", "defocus_nm", "tilt", "family", "split"):
        if axis in t["per_image"].columns and t["per_image"][axis].nunique() > 0:
            fig = F.heatmap(t["per_image"], primary, axis)
            files.append(F.save(fig, fig_dir / f"heatmap_psnr_{axis}.png"))
    fig = F.examples(res.examples)
    if fig is not None:
        files.append(F.save(fig, fig_dir / "examples.png"))
    if res.calibration is not None:
        fig = F.calibration(t.get("calibration_far", pd.DataFrame()),
                            t.get("calibration_null", pd.DataFrame()),
                            t.get("likelihood_columns"), t.get("reliability"), res.calibration)
        files.append(F.save(fig, fig_dir / "calibration.png"))
    summary = dict(res.summary)
    summary["files"] = sorted(str(f.relative_to(out_dir)) for f in files)
    summary["provenance"] = prov
    write_json(out_dir / "summary.json", summary)
    files.append(out_dir / "summary.json")
    return files
