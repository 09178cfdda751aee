"""Column occupancy from integrated intensity: the baseline the occupancy segmenter must beat.

Each labelled column (a connected disc of one class in a class map) gets one number, the
mean intensity over its disc (its integrated intensity / disc area); a monotone curve fitted
on columns of known atom count (isotonic regression, increasing or decreasing, whichever
fits better: bright- and dark-atom contrast alike) maps it to an occupancy [atoms]. This is
the classical "count atoms by integrated column intensity" route (e.g. scattering
cross-sections in ADF-STEM); in HRTEM the intensity of a column is not monotone in its atom
count over all thicknesses and defoci, which is what the segmenter is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import isotonic_regression

from etem.errors import InputError


@dataclass
class DiscColumns:
    """The labelled columns of one site class in one image.

    ``labels``: (H, W) int, column number 1..n on its disc pixels, 0 elsewhere;
    ``intensity``: (n,) mean image intensity over each disc; ``occupancy``: (n,) true atoms
    in each column (the rounded median of the occupancy map over its disc; NaN without one).
    """

    labels: np.ndarray
    intensity: np.ndarray
    occupancy: np.ndarray


def disc_columns(
    image: np.ndarray, class_map: np.ndarray, site_class: int,
    occupancy_map: np.ndarray | None = None,
) -> DiscColumns:
    """Mean ``image`` intensity over each labelled disc of class ``site_class`` (one column =
    one connected region) and, with ``occupancy_map``, each column's true atom count."""
    img = np.asarray(image, dtype=np.float64)
    cls = np.asarray(class_map)
    if img.shape != cls.shape or img.ndim != 2:
        raise InputError(f"image {img.shape} and class map {cls.shape} must be the same 2D shape")
    labels, n = ndimage.label(cls == site_class)
    idx = np.arange(1, n + 1)
    if n == 0:
        return DiscColumns(labels, np.zeros(0), np.zeros(0))
    intensity = np.asarray(ndimage.mean(img, labels, idx), dtype=np.float64)
    occ = np.full(n, np.nan)
    if occupancy_map is not None:
        occ = np.rint(np.asarray(ndimage.median(np.asarray(occupancy_map, dtype=np.float64),
                                                labels, idx), dtype=np.float64))
    return DiscColumns(labels, intensity, occ)


def paint(columns: DiscColumns, values: np.ndarray) -> np.ndarray:
    """(H, W) map with ``values[i]`` on the disc of column i + 1, 0 elsewhere."""
    lut = np.concatenate([[0.0], np.asarray(values, dtype=np.float64)])
    return lut[columns.labels]


@dataclass
class IntensityCurve:
    """Monotone map from column intensity to occupancy [atoms] (fit with :meth:`fit`)."""

    x: np.ndarray  # sorted distinct intensities of the fit set
    y: np.ndarray  # fitted occupancy at each (monotone in x)
    increasing: bool

    @classmethod
    def fit(cls, intensity: np.ndarray, occupancy: np.ndarray) -> IntensityCurve:
        """Isotonic least-squares fit, increasing or decreasing, whichever has the smaller
        squared error; tied intensities are pooled (weighted by their count)."""
        x = np.asarray(intensity, dtype=np.float64)
        y = np.asarray(occupancy, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if not len(x):
            raise InputError("intensity calibration: no column with a finite intensity and "
                             "a known occupancy")
        ux, inv, w = np.unique(x, return_inverse=True, return_counts=True)
        ym = np.bincount(inv, weights=y) / w
        best: IntensityCurve | None = None
        best_err = np.inf
        for inc in (True, False):
            fy = np.asarray(isotonic_regression(ym, weights=w.astype(np.float64),
                                                increasing=inc).x)
            err = float(np.sum(w * (fy - ym) ** 2))
            if err < best_err:
                best, best_err = cls(ux, fy, inc), err
        assert best is not None
        return best

    def predict(self, intensity: np.ndarray) -> np.ndarray:
        """Occupancy [atoms] at ``intensity`` (linear between fitted points, constant beyond)."""
        return np.interp(np.asarray(intensity, dtype=np.float64), self.x, self.y)
