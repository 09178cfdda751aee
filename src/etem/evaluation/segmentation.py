"""The occupancy segmenter per held-out condition, beside an intensity-counting baseline.

The images and groups of the denoisers' cross-condition table (:mod:`etem.evaluation.conditions`:
splits ``test`` / ``held_out`` / ``held_out_condition`` and each held-out condition band), the
same noisy frame per image (:func:`~etem.evaluation.conditions.condition_counts`, Poisson at
``evaluation.condition_dose_e_per_px``), and the quantities of ``segmentation.csv``
(:func:`~etem.evaluation.protocols.segmentation_counts`: IoU per class, exact and ±1-atom
occupancy of cation and anion column pixels). Methods:

* ``segmenter``: the segmenter on the noisy counts (with a segmenter model);
* ``intensity``: each *labelled* column's mean intensity over its label disc in the same
  noisy frame (counts / dose: what the segmenter sees), mapped to atoms by a monotone curve
  (:class:`etem.analysis.occupancy.IntensityCurve`) fitted on the columns of the training
  images nearest in microscope parameters (``evaluation.occupancy_baseline_neighbours``,
  same family; each drawn noisy at the same dose): a per-condition calibration from the
  nearest condition seen in training. It is given the true column positions and classes
  (no IoU), which the segmenter must find itself;
* ``intensity_clean``: the same on the noise-free images (an oracle: what intensity counting
  could do without noise);
* ``majority``: the most frequent atom count of those training columns (the chance level).

Outputs: ``segmentation_conditions_per_image.csv`` (one row per image, method, quantity:
``num`` / ``den`` counts) and ``segmentation_conditions.csv`` (one row per method and group:
pooled values sum(num) / sum(den), and the column pixels behind each occupancy figure).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from etem.analysis.occupancy import DiscColumns, IntensityCurve, disc_columns, paint
from etem.evaluation.conditions import condition_counts, condition_groups, select_images
from etem.evaluation.inputs import TestImage
from etem.evaluation.protocols import segmentation_counts
from etem.models.inference import segment_images
from etem.progress import progress
from etem.simulation.contract import CLASSES

#: occupancy maps scored and the class of their columns
SITES = {"cation_occupancy": CLASSES.index("cation"), "anion_occupancy": CLASSES.index("anion")}

#: image parameters that make a microscope condition (those present in the index are used)
MICROSCOPE_COLUMNS = ("energy_kv", "cs_um", "c5_mm", "focal_spread_nm", "convergence_mrad",
                      "defocus_nm", "c12_nm", "c21_nm", "contrast_index", "pixel_size_A",
                      "detector_pixel_A", "blur_fwhm_A", "dqe")

#: the quantities of the summary, in column order
QUANTITIES = tuple(f"iou_{c}" for c in CLASSES) + tuple(
    f"{s}_occupancy_{t}" for s in ("cation", "anion") for t in ("exact", "within1"))

#: the baselines' views of an image: the segmenter's noisy input, or the clean image
VIEWS = {"intensity": "noisy", "intensity_clean": "clean"}


@dataclass
class _Calibration:
    """Columns of the training images, per view and site, and their microscope parameters."""

    images: list[TestImage]
    vectors: np.ndarray  # (n_images, n_params), standardised
    columns: dict[tuple[str, str], list[DiscColumns]]  # (view, site) -> per image


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _raw_vectors(images: list[TestImage], cols: list[str]) -> np.ndarray:
    m = np.array([[_num(im.params.get(c)) for c in cols] for im in images],
                 dtype=np.float64).reshape(len(images), len(cols))
    if "detector_pixel_A" in cols and "pixel_size_A" in cols:  # NaN: the pixel size itself
        d, p = cols.index("detector_pixel_A"), cols.index("pixel_size_A")
        m[:, d] = np.where(np.isfinite(m[:, d]), m[:, d], m[:, p])
    return m


def _columns(cfg: Any, images: list[TestImage]) -> list[str]:
    bands = [b.column for b in cfg.training.split.held_out_conditions]
    return [c for c in dict.fromkeys([*MICROSCOPE_COLUMNS, *bands])
            if any(c in im.params for im in images)]


def _views(im: TestImage, counts: np.ndarray, dose_px: float) -> dict[str, np.ndarray]:
    """The images the baselines integrate: the noisy frame (intensity, vacuum = 1) and the
    clean one."""
    return {"noisy": counts / dose_px, "clean": np.asarray(im.clean, dtype=np.float64)}


def _calibration(cfg: Any, train: list[TestImage], cols: list[str], dose_px: float
                 ) -> tuple[_Calibration, np.ndarray, np.ndarray]:
    """The training images' columns, their standardised parameter vectors, and the mean and
    scale used to standardise (so that test images are placed in the same space)."""
    train = [im for im in train if im.class_map is not None and im.occupancy]
    raw = _raw_vectors(train, cols)
    with warnings.catch_warnings():  # an all-NaN parameter column: no distance (below)
        warnings.simplefilter("ignore", RuntimeWarning)
        mu = np.nanmean(raw, axis=0) if len(raw) else np.zeros(len(cols))
        sd = np.nanstd(raw, axis=0) if len(raw) else np.ones(len(cols))
    mu = np.nan_to_num(mu)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, np.inf)  # constant column: no distance
    columns: dict[tuple[str, str], list[DiscColumns]] = {
        (v, s): [] for v in VIEWS.values() for s in SITES}
    for im in progress(train, "occupancy calibration images"):
        assert im.class_map is not None
        for view, img in _views(im, condition_counts(cfg, im, dose_px), dose_px).items():
            for site, k in SITES.items():
                columns[(view, site)].append(disc_columns(img, im.class_map, k,
                                                          im.occupancy.get(site)))
    vec = np.nan_to_num((raw - mu) / sd)
    return _Calibration(train, vec, columns), mu, sd


def _neighbours(cal: _Calibration, im: TestImage, vec: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` training images nearest to ``vec`` (same family if any)."""
    fam = [i for i, t in enumerate(cal.images) if t.params.get("family") == im.params.get("family")]
    pool = np.asarray(fam if fam else range(len(cal.images)), dtype=np.int64)
    d = np.sum((cal.vectors[pool] - vec[None, :]) ** 2, axis=1)
    return pool[np.argsort(d, kind="stable")[:k]]


def _fit_set(cal: _Calibration, view: str, site: str, near: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    cs = [cal.columns[(view, site)][i] for i in near]
    if not cs:
        return np.zeros(0), np.zeros(0)
    return (np.concatenate([c.intensity for c in cs]), np.concatenate([c.occupancy for c in cs]))


def _baseline_maps(cal: _Calibration, near: np.ndarray, im: TestImage,
                   views: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Predicted occupancy maps of each baseline method (see module docstring). A site with no
    training column to fit on is predicted 0 atoms (all misses)."""
    assert im.class_map is not None
    out: dict[str, dict[str, np.ndarray]] = {m: {} for m in (*VIEWS, "majority")}
    for site, k in SITES.items():
        if site not in im.occupancy:
            continue
        for method, view in VIEWS.items():
            cols = disc_columns(views[view], im.class_map, k)
            x, y = _fit_set(cal, view, site, near)
            ok = np.isfinite(x) & np.isfinite(y)
            pred = (IntensityCurve.fit(x[ok], y[ok]).predict(cols.intensity) if ok.any()
                    else np.zeros(len(cols.intensity)))
            out[method][site] = paint(cols, pred)
        _, y = _fit_set(cal, "clean", site, near)
        y = y[np.isfinite(y)]
        vals, n = np.unique(y, return_counts=True)
        mode = float(vals[np.argmax(n)]) if len(vals) else 0.0
        out["majority"][site] = np.where(im.class_map == k, mode, 0.0)
    return out


def segmentation_conditions_table(
    cfg: Any, images: list[TestImage], train: list[TestImage], segmenter: Any | None = None,
) -> pd.DataFrame:
    """One row per (image, method, quantity) with ``num`` / ``den`` (see module docstring);
    empty if no image carries occupancy labels."""
    dose_px = float(cfg.evaluation.condition_dose_e_per_px)
    sel = [im for im in select_images(cfg, images) if im.class_map is not None and im.occupancy]
    if not sel:
        return pd.DataFrame()
    cols = _columns(cfg, [*sel, *train])
    cal, mu, sd = _calibration(cfg, train, cols, dose_px)
    k = int(cfg.evaluation.occupancy_baseline_neighbours)
    rows: list[dict[str, Any]] = []
    for im in progress(sel, "segmentation per condition"):
        assert im.class_map is not None
        base = {"image_id": im.image_id, "split": im.params.get("split"),
                "condition": str(im.params.get("condition", "") or ""),
                "family": im.params.get("family"), "dose_e_per_px": dose_px,
                "pixel_size_A": im.params.get("pixel_size_A")}
        counts = condition_counts(cfg, im, dose_px)
        views = _views(im, counts, dose_px)
        if segmenter is not None:
            out = segment_images(segmenter, counts.astype(np.float32), dose_px)
            rows += [{**base, "method": "segmenter", **r} for r in segmentation_counts(
                im.class_map, im.occupancy, out["class_map"], out)]
        if cal.images:
            vec = np.nan_to_num((_raw_vectors([im], cols)[0] - mu) / sd)
            near = _neighbours(cal, im, vec, k)
            for method, occ in _baseline_maps(cal, near, im, views).items():
                rows += [{**base, "method": method, **r} for r in segmentation_counts(
                    im.class_map, im.occupancy, None, occ)]
    return pd.DataFrame(rows)


def summarise_segmentation_conditions(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, group) (groups of
    :func:`~etem.evaluation.conditions.condition_groups`): ``n_images``, each quantity of
    :data:`QUANTITIES` pooled (sum(num) / sum(den); NaN where the method has none, e.g. the
    baselines' IoU), and ``<site>_pixels``: the column pixels behind the occupancy figures."""
    rows: list[dict[str, Any]] = []
    if per_image.empty:
        return pd.DataFrame(rows)
    for method, g_m in per_image.groupby("method", sort=False):
        for name, g in condition_groups(g_m):
            sums = g.groupby("quantity")[["num", "den"]].sum()
            num = {str(q): float(v) for q, v in sums["num"].items()}
            den = {str(q): float(v) for q, v in sums["den"].items()}
            row: dict[str, Any] = {"method": method, "group": name,
                                   "n_images": int(g["image_id"].nunique())}
            for q in QUANTITIES:
                row[q] = num[q] / den[q] if den.get(q) else float("nan")
            for s in ("cation", "anion"):
                row[f"{s}_pixels"] = int(den.get(f"{s}_occupancy_exact", 0.0))
            rows.append(row)
    return pd.DataFrame(rows)
