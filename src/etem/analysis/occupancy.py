"""Column occupancy from integrated intensity: the baseline the occupancy segmenter must beat.

Each labelled column (a connected disc of one class in a class map) gets one number, the
mean intensity over its disc (its integrated intensity / disc area); a monotone curve fitted
on columns of known atom count (isotonic regressions, increasing or decreasing, whichever
fits better: bright- and dark-atom contrast alike; :class:`IntensityCurve`) maps it to an
occupancy [atoms]. This is
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
    """Monotone map from column intensity to occupancy [atoms] (fit with :meth:`fit`).

    The conditional *median* atom count: for each count level v_j of the fit set, an
    isotonic fit of P(n > v_j | intensity) (the ordinal form of the segmenter's occupancy
    heads); the prediction is the lowest level whose exceedance probability is below one
    half. Every fit runs in the same direction, so the map is monotone. The median, not the
    mean: where intensity says little (noise, thickness-dependent contrast), it stays near
    the most common count instead of spreading rounded means over its neighbours.
    """

    x: np.ndarray  # sorted distinct intensities of the fit set
    exceed: np.ndarray  # (len(levels) - 1, len(x)): fitted P(n > levels[j]) at each x
    levels: np.ndarray  # sorted distinct atom counts of the fit set
    increasing: bool

    @classmethod
    def fit(cls, intensity: np.ndarray, occupancy: np.ndarray) -> IntensityCurve:
        """Fit on columns of known atom count. Direction: increasing or decreasing, whichever
        isotonic least-squares fit of the count itself has the smaller squared error; tied
        intensities are pooled (weighted by their count)."""
        x = np.asarray(intensity, dtype=np.float64)
        y = np.asarray(occupancy, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if not len(x):
            raise InputError("intensity calibration: no column with a finite intensity and "
                             "a known occupancy")
        ux, inv, w = np.unique(x, return_inverse=True, return_counts=True)
        wf = w.astype(np.float64)

        def pooled(v: np.ndarray) -> np.ndarray:
            return np.bincount(inv, weights=v, minlength=len(ux)) / wf

        ym = pooled(y)
        err = {}
        for inc in (True, False):
            fy = np.asarray(isotonic_regression(ym, weights=wf, increasing=inc).x)
            err[inc] = float(np.sum(wf * (fy - ym) ** 2))
        increasing = err[True] <= err[False]
        levels = np.unique(y)
        exceed = np.array([isotonic_regression(pooled((y > v).astype(np.float64)), weights=wf,
                                               increasing=increasing).x for v in levels[:-1]],
                          dtype=np.float64).reshape(len(levels) - 1, len(ux))
        return cls(ux, exceed, levels, increasing)

    def predict(self, intensity: np.ndarray) -> np.ndarray:
        """Occupancy [atoms] at ``intensity`` (the exceedance probabilities linear between
        fitted points, constant beyond)."""
        xi = np.asarray(intensity, dtype=np.float64)
        above = np.zeros(xi.shape, dtype=np.int64)
        for p in self.exceed:
            above += np.interp(xi, self.x, p) > 0.5
        return self.levels[above]
