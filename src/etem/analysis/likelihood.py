"""Likelihood maps of atomic columns (Mohan et al.) and their calibration into p-values.

Statistic
---------
For a column found in the denoised image, with disk D of n pixels,
``lambda_atom`` = mean denoised counts in D and ``lambda_vac`` = mean denoised counts of a
vacuum region, the Mohan statistic is the mean over D of the Poisson log-likelihood ratio of
the noisy counts y::

    llr = mean_D[log p(y|lambda_atom) - log p(y|lambda_vac)]
        = ybar * ln(lambda_atom / lambda_vac) - (lambda_atom - lambda_vac)

(``ln y!`` cancels). Positive: the counts prefer the atom; negative: they prefer vacuum.

Calibration
-----------
Given (n, lambda_atom, lambda_vac), llr is a monotone function of the disk total
K = n * ybar. Under the vacuum hypothesis with *independent* data K ~ Poisson(n lambda_vac),
giving an exact tail probability ``u`` (:func:`raw_p_value`). But columns are *selected* by
blob detection on an image denoised from the same counts, so spurious detections sit where
the noise fluctuated up and ``u`` is far from uniform for them (anti-conservative).
:class:`Calibration` therefore stores the distribution of ``u`` for spurious detections in
simulated vacuum, per vacuum-dose bin, and maps ``u`` through it (probability integral
transform): the calibrated p-value is uniform for spurious detections by construction, so
the false-alarm rate at level alpha is alpha (checked on held-out simulations). It also keeps
the distribution for true columns (detection power) and a logistic posterior
P(true column | u) for a reliability diagram.

Detector DQE
------------
Both the statistic and the tail probability assume Poisson counts. A counting detector with
DQE(0) = q < 1 records counts with the dose as mean but variance/mean 1/q (in the simulation
exactly Poisson(q x expected) / q, :func:`etem.simulation.noise.detector_counts`): the disk
total is overdispersed and ``u`` too small (spurious columns look significant). Given
``dqe``, :func:`likelihood_table` works on the *effective* Poisson counts: counts x q,
denoised counts x q and vacuum level x q (then K = q x disk total is Poisson with mean
n q lambda_vac under vacuum). The evaluation passes each simulated image's recorded ``dqe``;
``etem apply`` the configured ``apply.preprocess.detector_dqe`` (default 1: Poisson).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import gammainc, gammaincc

from etem.errors import InputError
from etem.io import write_json

log = logging.getLogger("etem.analysis.likelihood")

#: smallest intensity [counts/px] used inside logarithms
EPS = 1e-6

CALIBRATION_VERSION = 1


def _check_pair(
    noisy_counts: np.ndarray, denoised_counts: np.ndarray, float64: bool = True
) -> tuple[np.ndarray, ...]:
    """Both images checked (2D, same shape, finite); as float64 copies, or as given when
    ``float64`` is False (the caller converts what it reads: no full-frame copies)."""
    dt = np.float64 if float64 else None
    y = np.asarray(noisy_counts, dtype=dt)
    d = np.asarray(denoised_counts, dtype=dt)
    if y.ndim != 2 or y.shape != d.shape:
        raise InputError(
            f"noisy and denoised counts must be 2D of equal shape, got {y.shape}, {d.shape}"
        )
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(d))):
        raise InputError("noisy or denoised counts contain NaN/inf")
    return y, d


def _disk_offsets(radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    r = int(np.ceil(radius_px))
    dr, dc = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dr**2 + dc**2 <= radius_px**2
    return dr[keep], dc[keep]


def disk_pixels(
    shape: tuple[int, int], x_px: np.ndarray, y_px: np.ndarray,
    offsets: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of a disk around each column: ``(rows, cols, inside)`` arrays (N, P), the
    indices clipped into the image and ``inside`` False where the disk leaves it."""
    rr = np.round(np.asarray(y_px, dtype=np.float64)).astype(np.int64)[:, None] + offsets[0]
    cc = np.round(np.asarray(x_px, dtype=np.float64)).astype(np.int64)[:, None] + offsets[1]
    inside = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    return np.clip(rr, 0, shape[0] - 1), np.clip(cc, 0, shape[1] - 1), inside


def vacuum_level(
    denoised_counts: np.ndarray,
    vacuum_mask: np.ndarray | None = None,
    lambda_vac: float | None = None,
    columns_df: pd.DataFrame | None = None,
    disk_radius_px: float = 2.0,
) -> float:
    """Vacuum intensity ``lambda_vac`` [counts/px].

    Taken from ``lambda_vac`` if given, else the mean denoised counts over ``vacuum_mask``,
    else (fallback, no vacuum in view) the median denoised counts outside disks of twice
    ``disk_radius_px`` around all columns.
    """
    d = np.asarray(denoised_counts)  # selections converted to float64 below
    if lambda_vac is not None:
        lv = float(lambda_vac)
    elif vacuum_mask is not None:
        m = np.asarray(vacuum_mask, dtype=bool)
        if m.shape != d.shape or not m.any():
            raise InputError("vacuum_mask must have the image's shape and select >= 1 pixel")
        lv = float(d[m].astype(np.float64, copy=False).mean())
    else:
        outside = np.ones(d.shape, dtype=bool)
        if columns_df is not None and len(columns_df):
            off = _disk_offsets(2.0 * disk_radius_px)
            rr, cc, inside = disk_pixels(
                d.shape, columns_df["x_px"].to_numpy(), columns_df["y_px"].to_numpy(), off
            )
            outside[rr[inside], cc[inside]] = False
        sel = d[outside] if outside.any() else d
        lv = float(np.median(sel.astype(np.float64, copy=False)))
    if not np.isfinite(lv) or lv <= 0:
        raise InputError(f"vacuum level must be > 0 counts/px, got {lv}")
    return lv


def likelihood_table(
    noisy_counts: np.ndarray,
    denoised_counts: np.ndarray,
    columns_df: pd.DataFrame,
    disk_radius_px: float,
    vacuum_mask: np.ndarray | None = None,
    lambda_vac: float | None = None,
    calibration: Calibration | None = None,
    dqe: float = 1.0,
) -> pd.DataFrame:
    """Per-column Mohan likelihood statistic.

    Parameters
    ----------
    noisy_counts : ndarray (H, W)
        Raw counts [e/px] (the data).
    denoised_counts : ndarray (H, W)
        Denoised image in the same units [e/px] (intensity × dose per pixel).
    columns_df : DataFrame
        Columns with ``x_px``, ``y_px`` (e.g. from :func:`~etem.analysis.columns.find_columns`).
    disk_radius_px : float
        Radius of the column disk [px].
    vacuum_mask, lambda_vac :
        Vacuum region (bool mask) or vacuum level [counts/px]; see :func:`vacuum_level`.
    calibration : Calibration, optional
        Adds ``p_value`` and ``confidence`` columns.
    dqe : float
        Detector DQE(0) in (0, 1] of the counts (variance/mean 1/dqe; 1: Poisson): the
        statistic is computed on the effective Poisson counts (everything x dqe; see the
        module docstring).

    Returns
    -------
    DataFrame
        ``columns_df``'s columns plus ``n_pixels``, ``counts_sum`` [e], ``mean_counts``
        [e/px], ``lambda_atom``, ``lambda_vac`` [e/px] (effective counts: x ``dqe``),
        ``llr`` (mean log-likelihood ratio per pixel [nats]), ``p_raw`` (uncalibrated
        Poisson tail probability) and, with a calibration, ``p_value`` and ``confidence``
        (= 1 - p_value).
    """
    y, d = _check_pair(noisy_counts, denoised_counts, float64=False)
    if disk_radius_px <= 0:
        raise InputError(f"disk_radius_px must be > 0, got {disk_radius_px}")
    q = float(dqe)
    if not 0.0 < q <= 1.0:
        raise InputError(f"detector DQE {dqe}: must lie in (0, 1]")
    for col in ("x_px", "y_px"):
        if col not in columns_df.columns:
            raise InputError(f"columns table lacks column {col!r}")
    lv = vacuum_level(d, vacuum_mask, lambda_vac, columns_df, disk_radius_px) * q
    off = _disk_offsets(disk_radius_px)
    rr, cc, inside = disk_pixels(
        y.shape, columns_df["x_px"].to_numpy(), columns_df["y_px"].to_numpy(), off
    )
    out = columns_df.reset_index(drop=True).copy()
    n = inside.sum(axis=1).astype(np.int64)
    # pixel values read in float64 (the images may be float32: no full-frame copies)
    # (effective Poisson counts: x q, after the sums)
    k = np.where(inside, y[rr, cc].astype(np.float64), 0.0).sum(axis=1) * q
    lam = np.divide(np.where(inside, d[rr, cc].astype(np.float64), 0.0).sum(axis=1) * q, n,
                    out=np.full(len(n), lv), where=n > 0)
    la = np.maximum(lam, EPS)
    out["n_pixels"] = n
    out["counts_sum"] = k
    out["mean_counts"] = np.divide(k, n, out=np.zeros_like(k), where=n > 0)
    out["lambda_atom"] = la
    out["lambda_vac"] = lv
    out["llr"] = llr_statistic(out["mean_counts"].to_numpy(), la, lv)
    out["p_raw"] = raw_p_value(out["llr"].to_numpy(), n, la, lv)
    if calibration is not None:
        p = calibration.p_value(out["llr"].to_numpy(), n, la, lv)
        out["p_value"] = p
        out["confidence"] = 1.0 - p
    return out


def llr_statistic(
    mean_counts: np.ndarray | float, lambda_atom: np.ndarray | float, lambda_vac: np.ndarray | float
) -> np.ndarray:
    """Mean per-pixel log p(y|lambda_atom) - log p(y|lambda_vac) [nats] from the disk mean."""
    la = np.maximum(np.asarray(lambda_atom, dtype=np.float64), EPS)
    lv = np.maximum(np.asarray(lambda_vac, dtype=np.float64), EPS)
    return np.asarray(mean_counts, dtype=np.float64) * np.log(la / lv) - (la - lv)


def likelihood_map(
    noisy_counts: np.ndarray,
    denoised_counts: np.ndarray,
    columns_df: pd.DataFrame,
    disk_radius_px: float,
    vacuum_mask: np.ndarray | None = None,
    lambda_vac: float | None = None,
    value: str = "llr",
    calibration: Calibration | None = None,
) -> np.ndarray:
    """Per-pixel likelihood map: each column's disk painted with its ``value`` (0 elsewhere).

    ``value`` is a column of :func:`likelihood_table` (``llr`` [nats], ``confidence``, ...).
    Where disks overlap, the later column in the table wins.
    """
    tab = likelihood_table(
        noisy_counts, denoised_counts, columns_df, disk_radius_px, vacuum_mask, lambda_vac,
        calibration,
    )
    if value not in tab.columns:
        raise InputError(f"unknown likelihood map value {value!r}")
    y = np.asarray(noisy_counts)
    out = np.zeros(y.shape, dtype=np.float64)
    rr, cc, inside = disk_pixels(
        y.shape, tab["x_px"].to_numpy(), tab["y_px"].to_numpy(), _disk_offsets(disk_radius_px)
    )
    values = np.broadcast_to(tab[value].to_numpy(dtype=np.float64)[:, None], rr.shape)
    out[rr[inside], cc[inside]] = values[inside]  # row-major: the later column wins
    return out


def pixel_llr(
    noisy_counts: np.ndarray, denoised_counts: np.ndarray, lambda_vac: float
) -> np.ndarray:
    """Per-pixel log p(y|denoised) - log p(y|lambda_vac) [nats] (no disk averaging)."""
    y, d = _check_pair(noisy_counts, denoised_counts)
    return llr_statistic(y, d, float(lambda_vac))


def _mean_counts_from_stat(
    stat: np.ndarray, lambda_atom: np.ndarray, lambda_vac: np.ndarray
) -> np.ndarray:
    ratio = np.log(lambda_atom / lambda_vac)
    safe = np.where(np.abs(ratio) > 1e-12, ratio, 1.0)
    return np.where(np.abs(ratio) > 1e-12, (stat + lambda_atom - lambda_vac) / safe, lambda_vac)


def raw_p_value(
    stat: np.ndarray | float,
    n_pixels: np.ndarray | int,
    lambda_atom: np.ndarray | float,
    lambda_vac: np.ndarray | float,
    tie: np.ndarray | float = 0.5,
) -> np.ndarray:
    """Poisson tail probability of ``stat`` under the vacuum hypothesis, ignoring selection.

    With K = n * mean counts ~ Poisson(n lambda_vac), the probability of a statistic at least
    as atom-like as observed: P(K' > K) + tie * P(K' = K) for bright columns
    (lambda_atom > lambda_vac), P(K' < K) + tie * P(K' = K) for dark ones. ``tie`` = 0.5 is
    the mid-p value; a uniform random ``tie`` gives an exactly uniform null distribution.
    """

    la = np.maximum(np.asarray(lambda_atom, dtype=np.float64), EPS)
    lv = np.maximum(np.asarray(lambda_vac, dtype=np.float64), EPS)
    n = np.asarray(n_pixels, dtype=np.float64)
    stat_a = np.asarray(stat, dtype=np.float64)
    la, lv, n, stat_a = np.broadcast_arrays(la, lv, n, stat_a)
    k = np.round(np.clip(_mean_counts_from_stat(stat_a, la, lv) * n, 0, None))
    mu = np.maximum(n * lv, EPS)
    # P(K' <= k) = gammaincc(k + 1, mu);  P(K' < k) = gammaincc(k, mu) (0 for k = 0)
    cdf_le = gammaincc(k + 1.0, mu)
    cdf_lt = np.where(k > 0, gammaincc(np.maximum(k, 1.0), mu), 0.0)
    p_eq = np.clip(cdf_le - cdf_lt, 0.0, 1.0)
    upper_gt = gammainc(k + 1.0, mu)  # P(K' > k)
    t = np.asarray(tie, dtype=np.float64)
    bright = la >= lv
    p = np.where(bright, upper_gt + t * p_eq, cdf_lt + t * p_eq)
    p = np.where(n > 0, p, 1.0)
    return np.clip(p, 0.0, 1.0)


@dataclass
class Calibration:
    """Simulation-based calibration of the Mohan statistic into p-values / confidence.

    ``null_u[i]`` is the sorted sample of raw tail probabilities (:func:`raw_p_value`, random
    ties) of spurious detections in simulated vacuum for vacuum-dose bin ``i``, whose centre
    is ``lambda_vac_bins[i]`` [counts/px]. ``true_u[i]`` is the same for true columns.
    """

    lambda_vac_bins: list[float]
    null_u: list[list[float]]
    true_u: list[list[float]] = field(default_factory=list)
    posterior: list[float] = field(default_factory=lambda: [0.0, 0.0])
    meta: dict[str, Any] = field(default_factory=dict)

    # -- fitting ----------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        null_df: pd.DataFrame,
        true_df: pd.DataFrame | None = None,
        max_samples: int = 4000,
        min_per_bin: int = 50,
        meta: dict[str, Any] | None = None,
    ) -> Calibration:
        """Fit from tables of detections (columns ``lambda_vac`` and ``u``).

        Detections are grouped by vacuum level (levels within 15 % of each other form one
        bin); bins with fewer than ``min_per_bin`` spurious detections are merged into the
        next one.
        """
        if null_df is None or len(null_df) == 0:
            raise InputError("calibration needs at least one spurious detection")
        levels = np.asarray(null_df["lambda_vac"], dtype=np.float64)
        u = np.asarray(null_df["u"], dtype=np.float64)
        # cluster vacuum levels: a new bin starts where consecutive levels differ by > 15 %
        order = np.sort(np.unique(levels))
        starts = np.concatenate([[True], order[1:] / order[:-1] > 1.15])
        cluster_of_level = np.cumsum(starts) - 1
        keys = cluster_of_level[np.searchsorted(order, levels)]
        merged: list[list[int]] = []
        pending: list[int] = []
        for g in range(int(cluster_of_level.max()) + 1):
            pending.append(g)
            if np.isin(keys, pending).sum() >= min_per_bin:
                merged.append(pending)
                pending = []
        if pending:
            if merged:
                merged[-1] += pending
            else:
                merged.append(pending)
        bins, nulls = [], []
        for grp in merged:
            sel = np.isin(keys, grp)
            bins.append(float(np.exp(np.mean(np.log(levels[sel])))))
            nulls.append(_thin(np.sort(u[sel]), max_samples))
        trues: list[list[float]] = []
        posterior = [0.0, 0.0]
        if true_df is not None and len(true_df):
            tl = np.asarray(true_df["lambda_vac"], dtype=np.float64)
            tu = np.asarray(true_df["u"], dtype=np.float64)
            idx = _nearest(np.asarray(bins), tl)
            trues = [_thin(np.sort(tu[idx == i]), max_samples) for i in range(len(bins))]
            posterior = _fit_logistic(u, tu)
        return cls(bins, nulls, trues, posterior, dict(meta or {}))

    # -- use ----------------------------------------------------------------------------
    def calibrate_u(self, u: np.ndarray | float, lambda_vac: np.ndarray | float) -> np.ndarray:
        """Calibrated p-value of raw tail probabilities ``u`` (empirical null CDF)."""
        u_a, lv = np.broadcast_arrays(
            np.asarray(u, dtype=np.float64), np.asarray(lambda_vac, dtype=np.float64)
        )
        out = np.empty(u_a.shape, dtype=np.float64)
        idx = _nearest(np.asarray(self.lambda_vac_bins), lv)
        for i, sample in enumerate(self.null_u):
            sel = idx == i
            if not sel.any():
                continue
            s = np.asarray(sample)
            n = len(s)
            lo = np.searchsorted(s, u_a[sel], side="left")
            hi = np.searchsorted(s, u_a[sel], side="right")
            # conformal p-value with ties split in the middle
            out[sel] = (0.5 * (lo + hi) + 1.0) / (n + 1.0)
        return np.clip(out, 0.0, 1.0)

    def p_value(
        self,
        stat: np.ndarray | float,
        n_pixels: np.ndarray | int,
        lambda_atom: np.ndarray | float,
        lambda_vac: np.ndarray | float,
        tie: np.ndarray | float = 0.5,
    ) -> np.ndarray:
        """Calibrated p-value that a detection with this statistic is spurious (vacuum)."""
        u = raw_p_value(stat, n_pixels, lambda_atom, lambda_vac, tie)
        return self.calibrate_u(u, lambda_vac)

    def confidence(
        self,
        stat: np.ndarray | float,
        n_pixels: np.ndarray | int,
        lambda_atom: np.ndarray | float,
        lambda_vac: np.ndarray | float,
    ) -> np.ndarray:
        """Confidence level that the column is real: 1 - calibrated p-value."""
        return 1.0 - self.p_value(stat, n_pixels, lambda_atom, lambda_vac)

    def probability_true(self, u: np.ndarray | float) -> np.ndarray:
        """Posterior P(true column | raw tail probability u) from the logistic fit."""
        a, b = self.posterior
        z = a + b * _logit_feature(np.asarray(u, dtype=np.float64))
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    # -- I/O ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CALIBRATION_VERSION,
            "lambda_vac_bins": [float(v) for v in self.lambda_vac_bins],
            "null_u": [[float(v) for v in s] for s in self.null_u],
            "true_u": [[float(v) for v in s] for s in self.true_u],
            "posterior": [float(v) for v in self.posterior],
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON (atomic)."""

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read a calibration JSON written by :meth:`save`."""
        p = Path(path)
        if not p.exists():
            raise InputError(f"likelihood calibration {p}: no such file")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            if d.get("version") != CALIBRATION_VERSION:
                raise InputError(f"likelihood calibration {p}: unsupported version")
            return cls(
                list(d["lambda_vac_bins"]), list(d["null_u"]), list(d.get("true_u", [])),
                list(d.get("posterior", [0.0, 0.0])), dict(d.get("meta", {})),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"likelihood calibration {p}: corrupt ({exc})") from None


def _thin(sorted_values: np.ndarray, max_samples: int) -> list[float]:
    if len(sorted_values) <= max_samples:
        return [float(v) for v in sorted_values]
    q = (np.arange(max_samples) + 0.5) / max_samples
    return [float(v) for v in np.quantile(sorted_values, q)]


def _nearest(bins: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the bin nearest in log(lambda_vac)."""
    lb = np.log(np.maximum(bins, EPS))
    lv = np.log(np.maximum(np.asarray(values, dtype=np.float64), EPS))
    return np.argmin(np.abs(lv[..., None] - lb), axis=-1)


def _logit_feature(u: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(u, 1e-12, 1.0))


def _fit_logistic(null_u: np.ndarray, true_u: np.ndarray) -> list[float]:
    """Logistic regression of 'true' on -log10(u) (two parameters, Newton iterations)."""
    x = np.concatenate([_logit_feature(null_u), _logit_feature(true_u)])
    t = np.concatenate([np.zeros(len(null_u)), np.ones(len(true_u))])
    w = np.zeros(2)
    xm = np.stack([np.ones_like(x), x], axis=1)
    for _ in range(50):
        z = np.clip(xm @ w, -50, 50)
        p = 1.0 / (1.0 + np.exp(-z))
        g = xm.T @ (t - p)
        h = xm.T @ (xm * (p * (1 - p))[:, None]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(h, g)
        w = w + step
        if np.max(np.abs(step)) < 1e-8:
            break
    return [float(w[0]), float(w[1])]


def false_alarm_rates(p_values: np.ndarray, levels: list[float]) -> pd.DataFrame:
    """Observed false-alarm rate P(p <= 1 - level) of spurious detections per confidence level.

    Columns: ``confidence_level``, ``alpha`` (nominal rate), ``observed``, ``se`` (binomial
    standard error at the nominal rate), ``n``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    rows = []
    for lev in levels:
        alpha = 1.0 - float(lev)
        n = len(p)
        obs = float(np.mean(p <= alpha)) if n else float("nan")
        se = float(np.sqrt(alpha * (1 - alpha) / n)) if n else float("nan")
        rows.append({"confidence_level": float(lev), "alpha": alpha, "observed": obs, "se": se,
                     "n": n})
    return pd.DataFrame(rows)
