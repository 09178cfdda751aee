"""Per-frame analysis of a denoised movie: columns, likelihood, occupancy, tracks, statistics.

Two steps, so that the first runs in parallel frame-range shards and the second once over the
whole series:

* :func:`frame_columns` (in each shard): the atomic columns of one denoised frame
  (:func:`etem.analysis.columns.find_columns`), each scored with the Poisson log-likelihood
  ratio of the raw counts (effective Poisson counts with ``apply.preprocess.detector_dqe``)
  and, given a calibration, a confidence
  (:func:`etem.analysis.likelihood.likelihood_table`), with the segmenter's occupancy at
  each column;
* :class:`FrameStatistics` (in the gather, frames in order): links the columns into
  persistent tracks (:class:`etem.analysis.tracks.TrackLinker`, trackpy) and appends one
  row of frame statistics (the columns of ``frames.csv``), computed on the
  centre region away from the edges that drift correction fills by reflection, including the
  windowed change statistics of :mod:`etem.movies.change_stats`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.filters import threshold_otsu

from etem.analysis.columns import find_columns
from etem.analysis.lattice import LatticeOrientation
from etem.analysis.likelihood import Calibration, likelihood_table
from etem.analysis.tracks import REFERENCE_FRAMES, TrackLinker, p_value_evidence
from etem.config import EtemConfig
from etem.frames.geometry import FrameGeometry
from etem.movies.change_stats import ColumnCountsChange, ImageChange, LocalChange


def frame_columns(
    cfg: EtemConfig,
    t: int,
    intensity: np.ndarray,
    counts: np.ndarray,
    dose_e_per_px: float,
    drift: np.ndarray,
    seg: np.ndarray | None,
    pixel_size_A: float,
    polarity: str,
    calibration: Calibration | None = None,
) -> pd.DataFrame:
    """Columns of processed frame ``t`` (one row per column; no track ids yet).

    ``intensity`` is the denoised frame (vacuum = 1) and ``counts`` the processed raw counts
    [e/px] of the same frame, aligned by the integer part of ``drift`` (dy, dx) [px]; each
    column's log-likelihood ratio compares the raw counts with the denoised counts
    (``intensity`` x ``dose_e_per_px``). Columns in the strips that the integer shift filled
    by reflection are dropped. Positions: ``x_px, y_px`` [px] and ``x_A, y_A`` [Å] in the
    frame of the first frame (sub-pixel drift remainder removed), ``x_aligned_px,
    y_aligned_px`` as found in the aligned frame. With a segmenter output ``seg`` (3, H, W):
    ``class_index``, ``cation_occupancy``, ``anion_occupancy`` at each column.
    """
    b = cfg.columns
    px = pixel_size_A
    cols = find_columns(
        intensity, px, b.blob_min_sigma_A, b.blob_max_sigma_A, b.blob_threshold,
        refine=b.refine,
        polarity=polarity,  # type: ignore[arg-type]
    )
    if len(cols):
        den_counts = intensity * dose_e_per_px
        cols = likelihood_table(
            counts, np.maximum(den_counts, 1e-6), cols,
            max(b.disk_radius_A / px, 1.0), calibration=calibration,
            dqe=cfg.apply.preprocess.detector_dqe,
        )
    frac = drift - np.round(drift)
    iy, ix = (int(v) for v in np.round(drift))
    h, w = intensity.shape
    if len(cols):  # drop columns in the strips that the integer shift filled by reflection
        ok = (
            (cols["y_px"] >= -iy)
            & (cols["y_px"] < h - iy)
            & (cols["x_px"] >= -ix)
            & (cols["x_px"] < w - ix)
        )
        cols = cols[ok.to_numpy()].reset_index(drop=True)
    cols.insert(0, "frame", np.full(len(cols), t, dtype=np.int64))
    cols["x_aligned_px"] = cols["x_px"].to_numpy()
    cols["y_aligned_px"] = cols["y_px"].to_numpy()
    cols["x_px"] = cols["x_aligned_px"] - frac[1]
    cols["y_px"] = cols["y_aligned_px"] - frac[0]
    cols["x_A"] = cols["x_px"] * px
    cols["y_A"] = cols["y_px"] * px
    if seg is not None and len(cols):
        r = np.clip(np.round(cols["y_aligned_px"]).astype(int), 0, seg.shape[1] - 1)
        c = np.clip(np.round(cols["x_aligned_px"]).astype(int), 0, seg.shape[2] - 1)
        cols["class_index"] = seg[0, r, c].astype(np.int64)
        cols["cation_occupancy"] = seg[1, r, c]
        cols["anion_occupancy"] = seg[2, r, c]
    return cols


def matter_fraction(image: np.ndarray, smooth_px: float = 2.0) -> float:
    """Fraction of the image that is not vacuum: Otsu's split of the smoothed intensity
    (vacuum = 1) into two classes, the one whose mean lies farther from 1 being matter;
    1.0 when no split exists (a uniform field of view)."""
    sm = ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), smooth_px)
    if not float(sm.max()) > float(sm.min()):
        return 1.0
    cut = threshold_otsu(sm)
    low = sm <= cut
    if low.all() or not low.any():
        return 1.0
    matter = low if abs(float(sm[low].mean()) - 1) > abs(float(sm[~low].mean()) - 1) else ~low
    return float(matter.mean())


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images (1 when either is constant)."""
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.ravel() - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else 1.0


class FrameStatistics:
    """Tracks and frame statistics, frame by frame (frames in order).

    Parameters
    ----------
    cfg : EtemConfig
        ``columns``/``benchmark`` (column disk radius), ``apply.tracks`` and ``apply.events``.
    geo : FrameGeometry
        Processed frame geometry (pixel size [Å], frames).
    edge_frames : int
        Frames at each end whose denoising window was reflected (skipped by image statistics).
    """

    def __init__(self, cfg: EtemConfig, geo: FrameGeometry, edge_frames: int = 0) -> None:
        tr, ev = cfg.apply.tracks, cfg.apply.events
        self.cfg = cfg
        self.geo = geo
        px = geo.pixel_size_A
        self.tracker = TrackLinker(tr.link_radius_A / px, tr.max_gap_frames)
        self.image_change = ImageChange(
            ev.window_frames, ev.reference_frames, ev.smooth_px,
            geo.n_frames, edge_frames,
        )
        self.local_change = LocalChange(
            ev.local_window_frames, ev.local_reference_frames,
            ev.local_sigma_A / px, ev.local_noise_sigma_A / px,
            geo.n_frames, edge_frames,
        )
        self.counts_change = (
            ColumnCountsChange(
                ev.local_window_frames, ev.local_reference_frames,
                max(cfg.columns.disk_radius_A / px, 1.0),
            )
            if "column_counts_z" in ev.statistics
            else None
        )
        self.background: np.ndarray | None = None
        self.prev_ids: set[int] = set()
        self.rows: list[dict[str, float]] = []
        self.prev_drift: np.ndarray | None = None
        self.conf_sum = 0.0
        self.conf_n = 0
        self.track_summary: dict[str, Any] = {}  # set by the gather once the tracks are scored
        self.region_grid = ev.region_grid
        self.region_rows: list[np.ndarray] = []
        self.orientation = LatticeOrientation(px)

    def add(
        self,
        t: int,
        cols: pd.DataFrame,
        counts: np.ndarray,
        intensity: np.ndarray,
        drift: np.ndarray,
    ) -> pd.DataFrame:
        """Link frame ``t``'s columns (from :func:`frame_columns`) into tracks and add its row
        of statistics; returns the columns with ``track_id`` and ``displacement_A``.

        ``counts`` are the processed raw counts [e/px], ``intensity`` the denoised frame
        (vacuum = 1) and ``drift`` (dy, dx) [px] of the frame.
        """
        h, w = intensity.shape
        mg = round(self.cfg.apply.events.stats_margin_frac * min(h, w))
        roi = (
            (cols["x_aligned_px"] >= mg)
            & (cols["x_aligned_px"] < w - mg)
            & (cols["y_aligned_px"] >= mg)
            & (cols["y_aligned_px"] < h - mg)
        ).to_numpy()
        xy = cols[["x_px", "y_px"]].to_numpy() if len(cols) else np.zeros((0, 2))
        evidence = p_value_evidence(cols["p_value"].to_numpy()) if "p_value" in cols else None
        ids, disp = self.tracker.update(t, xy, evidence)
        cols.insert(1, "track_id", ids)
        cols["displacement_A"] = disp * self.geo.pixel_size_A
        row = self._statistics(t, cols, roi, ids, disp, counts, intensity, drift, mg)
        row.update(self._track_motion(cols, roi, ids))
        self.rows.append(row)
        self.region_rows.append(self._region_counts(counts, mg))
        self.orientation.add(intensity[mg : h - mg, mg : w - mg])
        if "confidence" in cols and len(cols):
            self.conf_sum += float(cols["confidence"].sum())
            self.conf_n += len(cols)
        return cols

    # long (84 lines): one row of frames.csv, every statistic from the same frame arrays.
    def _statistics(
        self,
        t: int,
        cols: pd.DataFrame,
        roi: np.ndarray,
        ids: np.ndarray,
        disp: np.ndarray,
        counts: np.ndarray,
        intensity: np.ndarray,
        drift: np.ndarray,
        mg: int,
    ) -> dict[str, float]:
        """One row of frame statistics, from the centre region (roi) only."""
        px = self.geo.pixel_size_A
        h, w = intensity.shape
        n_all = len(cols)
        n = int(roi.sum())
        d_roi = disp[roi] if n_all else disp
        ids_set = {int(i) for i in ids[roi]} if n_all else set()
        appeared = float(np.isnan(d_roi).sum()) / n if (n and t > 0) else (0.0 if t > 0 else np.nan)
        if t <= self.cfg.apply.tracks.max_gap_frames:
            # undefined until the linker's memory is filled: a column missed in the first
            # frames starts a new track where later it would continue its own
            appeared = np.nan
        vanished = (
            (len(self.prev_ids - ids_set) / len(self.prev_ids))
            if (self.prev_ids and t > 0)
            else (0.0 if t > 0 else np.nan)
        )
        self.prev_ids = ids_set
        alpha = self.cfg.apply.events.ewma_alpha
        centre = intensity[mg : h - mg, mg : w - mg]
        if self.background is None:
            dissim = np.nan
            self.background = centre.astype(np.float64)
        else:
            dissim = 1.0 - _corr(centre, self.background)
            self.background = (1 - alpha) * self.background + alpha * centre
        frac = drift - np.round(drift)
        change = self.image_change.update(t, centre, frac)
        local_change, local_onset = self.local_change.update(t, centre, frac)
        counts_z, counts_onset = np.nan, np.nan
        if self.counts_change is not None:
            xy = (
                cols[["x_aligned_px", "y_aligned_px"]].to_numpy()[roi]
                if n_all
                else np.zeros((0, 2))
            )
            counts_z, counts_onset = self.counts_change.update(
                t, counts, ids[roi] if n_all else ids, xy
            )
        step = (
            float(np.hypot(*(drift - self.prev_drift)) * px)
            if self.prev_drift is not None
            else np.nan
        )
        self.prev_drift = np.asarray(drift, dtype=np.float64)
        area_nm2 = h * w * px * px / 100.0
        mean_c = float(centre.mean())
        return {
            "frame": t,
            "n_columns": n,
            "n_columns_all": n_all,
            "mean_intensity": float(cols["intensity"][roi].mean()) if n else np.nan,
            "mean_displacement_A": float(np.nanmean(d_roi * px))
            if n and np.isfinite(d_roi).any()
            else np.nan,
            "appeared_frac": appeared,
            "vanished_frac": vanished,
            "dissimilarity": dissim,
            "change": change,
            "local_change": local_change,
            "local_change_onset": local_onset,
            "column_counts_z": counts_z,
            "column_counts_z_onset": counts_onset,
            "mean_counts": float(counts.mean()),
            "mean_llr": float(cols["llr"].mean()) if n_all and "llr" in cols else np.nan,
            "mean_confidence": float(cols["confidence"].mean())
            if n_all and "confidence" in cols
            else np.nan,
            "contrast": float(centre.std()) / mean_c if mean_c > 0 else np.nan,
            "matter_area_nm2": matter_fraction(intensity) * area_nm2,
            "drift_step_A": step,
        }

    def _track_motion(
        self, cols: pd.DataFrame, roi: np.ndarray, ids: np.ndarray
    ) -> dict[str, float]:
        """Rotation [deg] and shift (x, y) [Å] of the persistent tracks (seen in more than
        REFERENCE_FRAMES frames) of the centre region from their reference positions (mean of
        their first REFERENCE_FRAMES positions, drift-corrected): the Procrustes
        angle atan2(sum r0 x r, sum r0 . r) about the centroids, and the median shift."""
        nan = {"rotation_deg": np.nan, "shift_x_A": np.nan, "shift_y_A": np.nan}
        if not len(cols):
            return nan
        xy = cols[["x_px", "y_px"]].to_numpy()[roi]
        ref, n = self.tracker.reference(ids[roi])
        ok = n > REFERENCE_FRAMES
        if ok.sum() < 3:
            return nan
        p, p0 = xy[ok], ref[ok]
        r, r0 = p - p.mean(axis=0), p0 - p0.mean(axis=0)
        cross = float((r0[:, 0] * r[:, 1] - r0[:, 1] * r[:, 0]).sum())
        dot = float((r0 * r).sum())
        d = np.median(p - p0, axis=0) * self.geo.pixel_size_A
        return {
            "rotation_deg": math.degrees(math.atan2(cross, dot)),
            "shift_x_A": float(d[0]),
            "shift_y_A": float(d[1]),
        }

    def _region_counts(self, counts: np.ndarray, mg: int) -> np.ndarray:
        """Raw counts summed in each block of a g x g grid of the centre region [e]."""
        g = self.region_grid
        h, w = counts.shape
        c = counts[mg : h - mg, mg : w - mg].astype(np.float64)
        ys = np.linspace(0, c.shape[0], g + 1).astype(int)
        xs = np.linspace(0, c.shape[1], g + 1).astype(int)
        return np.array(
            [c[ys[i] : ys[i + 1], xs[j] : xs[j + 1]].sum() for i in range(g) for j in range(g)]
        )

    def regions(self) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
        """(T, g^2) region counts and each region's box (x0, x1, y0, y1) [px] in the
        processed frame."""
        g = self.region_grid
        h, w = self.geo.height, self.geo.width
        mg = round(self.cfg.apply.events.stats_margin_frac * min(h, w))
        ys = mg + np.linspace(0, h - 2 * mg, g + 1).astype(int)
        xs = mg + np.linspace(0, w - 2 * mg, g + 1).astype(int)
        boxes = [
            (int(xs[j]), int(xs[j + 1]), int(ys[i]), int(ys[i + 1]))
            for i in range(g) for j in range(g)
        ]
        arr = np.stack(self.region_rows) if self.region_rows else np.zeros((0, g * g))
        return arr, boxes

    def frame_table(self, drift: np.ndarray) -> pd.DataFrame:
        """The frame statistics (``frames.csv`` without the event scores)."""
        df = pd.DataFrame(self.rows)
        # lattice orientation of the centre region from its power spectrum (needs the whole
        # movie to choose the ring of lattice spots)
        df["lattice_angle_deg"] = self.orientation.angles()
        df["drift_y_px"] = drift[:, 0]
        df["drift_x_px"] = drift[:, 1]
        if self.geo.frame_time_s:
            df["time_s"] = df["frame"] * self.geo.frame_time_s
        return df

    def mean_confidence(self) -> float | None:
        """Mean per-column confidence over the movie (None without a calibration)."""
        return self.conf_sum / self.conf_n if self.conf_n else None
