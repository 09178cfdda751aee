"""Ground-truth scoring of ``etem apply`` on movies that carry their truth.

Synthetic movies from ``etem simulate-movie`` record the true columns of every frame
(``/columns``, positions including the stage drift) and the event frames (``/events``). When
the movie given to ``etem apply`` has them, the found columns and the detected events are
scored against them:

* **Columns.** Per output frame, found columns are mapped back to the raw frame's coordinates
  (undoing the measured drift, binning and upsampling) and matched one-to-one to the true
  columns within ``apply.truth.match_radius_A`` (Hungarian assignment,
  :func:`etem.analysis.matching.match_columns`). Columns closer than
  ``apply.truth.border_A`` to the frame edge are left out (blob finding at the edge and the
  periodic wrap of the simulated image are not what is measured). A true column is *visible*
  when the sum of the atomic numbers of its atoms, n_atoms x Z (a proxy of its projected
  potential), is at least ``apply.truth.min_column_Z``: in a CeO2 [001] / Pt movie at 0.2 Å
  pixels the Ce (6 x 58) and Pt columns of >= 2 atoms are, the O columns (6 x 8 = 48) and
  single Pt atoms are not. **Recall** = matched visible / visible true columns; **precision**
  = found columns matched to any true column (visible or not) / found columns; **position
  RMSE** [Å] over the matched visible columns. Recall per site (cation, anion, metal) is
  reported too, so the weak columns are not hidden. The found columns are those apply keeps
  (tracks at or above ``apply.tracks.min_track_confidence``).
* **Tracks.** True columns get an identity over the movie (:func:`persistent_column_ids`);
  ``tracks`` in the columns block (:func:`etem.analysis.tracks.track_persistence`) gives the
  fraction of matched visible detections in a track spanning their column's lifetime (first
  to last frame it is visible inside the border) and the tracks per true column.
* **Events.** Each true event (raw frame f -> output frame f // sum_frames) is matched to the
  nearest detected onset within ``apply.truth.event_tolerance_frames``; unmatched detections
  are false alarms.

Outputs (written by :func:`etem.movies.apply.apply_movie`): ``truth_columns.csv`` (one
row per frame), ``truth_events.csv`` (one row per true event and per false alarm) and the
``truth`` block of ``summary.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase.data import atomic_numbers

from etem.analysis.matching import match_columns
from etem.analysis.tracks import frame_spans, track_persistence
from etem.config.apply import TruthConfig
from etem.frames.geometry import FrameGeometry
from etem.io import write_table
from etem.simulation.movie_truth import iter_truth_columns, read_movie_truth

log = logging.getLogger("etem.movies.truth")

#: Columns of the per-frame column-scoring table (``truth_columns.csv``).
COLUMN_SCORE_FIELDS = (
    "frame",
    "raw_frame",
    "n_true",
    "n_visible",
    "n_found",
    "n_matched",
    "n_matched_visible",
    "recall",
    "precision",
    "rmse_A",
)
#: Output frames scored at a time by :func:`score_apply` (bounds its memory).
SCORE_BLOCK_FRAMES = 64
#: Columns of the event-scoring table (``truth_events.csv``).
EVENT_SCORE_FIELDS = (
    "true_event",
    "kind",
    "true_frame",
    "onset_frame",
    "onset_error_frames",
    "hit",
    "false_alarm",
)


@dataclass
class MovieTruth:
    """Ground truth of a synthetic movie (raw frame indices, positions in raw pixels [Å])."""

    columns: pd.DataFrame | None
    events: np.ndarray
    event_kinds: list[str]
    pixel_size_A: float | None
    n_frames: int | None
    drift_px: np.ndarray | None = None
    has_columns: bool = False  # the file carries true columns (read or not)


def load_truth(path: str | Path, columns: bool = True) -> MovieTruth | None:
    """The truth a movie file carries (an etem simulate-movie HDF5), else None; without
    its column table with ``columns=False`` (read it with
    :func:`etem.simulation.movie_truth.iter_truth_columns`)."""

    t = read_movie_truth(path, columns=columns)
    if t is None:
        return None
    ev = t["events"] if t["events"] is not None else np.zeros(0, dtype=np.int64)
    return MovieTruth(
        t["columns"], ev, list(t["event_kinds"]), t["pixel_size_A"], t["n_frames"],
        t["drift_px"], t["has_columns"],
    )


def column_Z(columns: pd.DataFrame) -> np.ndarray:
    """Sum of the atomic numbers along each column, n_atoms x Z(element) (inf when the
    element is not recorded, e.g. Gaussian-lattice test movies: such columns are visible)."""

    z = np.array(
        [atomic_numbers.get(str(e), 0 if e else np.inf) for e in columns["element"]],
        dtype=np.float64,
    )
    return z * columns["n_atoms"].to_numpy(dtype=np.float64)


#: Largest distance [Å] between a true column's drift-corrected positions in consecutive
#: frames for it to be the same column (static columns coincide to rounding; a column that an
#: event moves, e.g. a rotation, starts a new identity).
SAME_COLUMN_A = 0.1


class ColumnIdentities:
    """A persistent identity of every true column over the movie (``column_id`` is only
    unique within one structure state), assigned block by block in frame order.

    Frame after frame, a column keeps its predecessor's identity when the previous frame
    has a column of the same element within :data:`SAME_COLUMN_A` of it after the true
    drift (``drift_px`` (x, y) [px] per frame) is taken off; other columns get new ones.
    """

    def __init__(self, drift_px: np.ndarray | None, pixel_size_A: float | None) -> None:
        self.drift_px, self.pixel_size_A = drift_px, pixel_size_A
        self.next_id = 0
        self.prev: pd.DataFrame | None = None

    def __call__(self, columns: pd.DataFrame) -> np.ndarray:
        """Identities of ``columns`` (frames after those of earlier calls), in row order."""
        columns = columns.reset_index(drop=True)
        out = np.empty(len(columns), dtype=np.int64)
        drift, px = self.drift_px, self.pixel_size_A
        for _, g in columns.groupby("frame", sort=True):
            t = int(g["frame"].iloc[0])
            cur = pd.DataFrame({"x_A": g["x_A"].to_numpy(float),
                                "y_A": g["y_A"].to_numpy(float),
                                "element": g["element"].astype(str).to_numpy()})
            if drift is not None and px and t < len(drift):
                cur["x_A"] -= drift[t, 0] * px
                cur["y_A"] -= drift[t, 1] * px
            ids = np.full(len(cur), -1, dtype=np.int64)
            prev = self.prev
            if prev is not None:
                i_c, i_p = match_columns(cur, prev, SAME_COLUMN_A)
                same = cur["element"].to_numpy()[i_c] == prev["element"].to_numpy()[i_p]
                ids[i_c[same]] = prev["id"].to_numpy()[i_p[same]]
            new = ids < 0
            ids[new] = np.arange(self.next_id, self.next_id + int(new.sum()))
            self.next_id += int(new.sum())
            cur["id"] = ids
            out[g.index.to_numpy()] = ids
            self.prev = cur
        return out


def persistent_column_ids(
    columns: pd.DataFrame, drift_px: np.ndarray | None, pixel_size_A: float | None
) -> np.ndarray:
    """:class:`ColumnIdentities` of a whole column table (frames in any order)."""
    order = np.argsort(columns["frame"].to_numpy(), kind="stable")
    ids = ColumnIdentities(drift_px, pixel_size_A)(columns.iloc[order])
    out = np.empty(len(columns), dtype=np.int64)
    out[order] = ids
    return out


class ColumnScorer:
    """Found columns scored against the true ones, frame by frame, a block of frames at a
    time (:meth:`add`; memory bounded by the block, not the movie); :meth:`result` gives the
    table and the pooled figures of :func:`score_columns`. Parameters as there."""

    def __init__(
        self,
        frame_shape_A: tuple[float, float],
        radius_A: float,
        min_column_Z: float,
        border_A: float,
    ) -> None:
        self.h_A, self.w_A = frame_shape_A
        self.radius_A, self.min_column_Z, self.border_A = radius_A, min_column_Z, border_A
        self.rows: list[dict[str, Any]] = []  # one per scored frame
        self.sites: set[str] = set()
        self.n_site: dict[str, int] = {}
        self.hit_site: dict[str, int] = {}
        self.sq_sum = 0.0
        # tracks (found with ``track_id``, truth with ``true_id``), aggregated per block so
        # memory grows with the number of tracks, not of detections
        self.with_tracks = False
        self.pairs = pd.DataFrame(columns=["true_id", "track_id", "n", "first", "last"])
        self.track_spans = pd.DataFrame(columns=["first_frame", "last_frame"])
        self.lifetimes = pd.DataFrame(columns=["first_frame", "last_frame"])

    @staticmethod
    def _spans(old: pd.DataFrame, rows: pd.DataFrame, key: str) -> pd.DataFrame:
        """``old`` spans (first/last frame per ``key``) extended by ``rows`` (frame, key)."""
        new = frame_spans(rows, key)
        both = pd.concat([old, new]) if len(old) else new
        g = both.groupby(level=0)
        return pd.DataFrame({"first_frame": g["first_frame"].min(),
                             "last_frame": g["last_frame"].max()})

    def _add_tracks(self, pairs: list[np.ndarray], alive: list[np.ndarray],
                    found: pd.DataFrame) -> None:
        p = pd.DataFrame(np.concatenate(pairs) if pairs else np.zeros((0, 3), np.int64),
                         columns=["true_id", "track_id", "frame"])
        agg = p.groupby(["true_id", "track_id"])["frame"].agg(["size", "min", "max"])
        agg = agg.rename(columns={"size": "n", "min": "first", "max": "last"}).reset_index()
        both = pd.concat([self.pairs, agg]) if len(self.pairs) else agg
        self.pairs = both.groupby(["true_id", "track_id"]).agg(
            n=("n", "sum"), first=("first", "min"), last=("last", "max")).reset_index()
        self.track_spans = self._spans(self.track_spans, found, "track_id")
        life = pd.DataFrame(np.concatenate(alive) if alive else np.zeros((0, 2), np.int64),
                            columns=["true_id", "frame"])
        self.lifetimes = self._spans(self.lifetimes, life, "true_id")

    def _inside(self, df: pd.DataFrame) -> np.ndarray:
        x, y = df["x_A"].to_numpy(), df["y_A"].to_numpy()
        b = self.border_A
        return (x >= b) & (x <= self.w_A - b) & (y >= b) & (y <= self.h_A - b)

    # long (52 lines): one row per frame and the pooled sums, from the same arrays.
    def add(self, found: pd.DataFrame, truth: pd.DataFrame, frames: list[tuple[int, int]]) -> None:
        """Score ``frames`` ((output frame, raw frame), in order) with ``found`` and
        ``truth`` holding (at least) all columns of those frames."""
        self.sites.update(str(v) for v in truth["site"].unique())
        truth = truth[self._inside(truth)].copy()
        truth["visible"] = column_Z(truth) >= self.min_column_Z
        found = found[self._inside(found)]
        by_frame = dict(tuple(truth.groupby("frame", sort=False)))
        found_by = dict(tuple(found.groupby("frame", sort=False)))
        empty = found.iloc[:0]
        with_tracks = "track_id" in found.columns and "true_id" in truth.columns
        self.with_tracks |= with_tracks
        pairs: list[np.ndarray] = []  # (true id, track id, output frame) of matched visible
        alive: list[np.ndarray] = []  # (true id, output frame) of visible true columns
        for frame, raw in frames:
            tr = by_frame.get(raw)
            if tr is None:
                continue
            tr = tr.reset_index(drop=True)
            f = found_by.get(frame, empty).reset_index(drop=True)
            i_f, i_t = match_columns(f, tr, self.radius_A)
            hit = np.zeros(len(tr), dtype=bool)
            hit[i_t] = True
            vis = tr["visible"].to_numpy()
            mv = vis[i_t]
            d = f[["x_A", "y_A"]].to_numpy()[i_f[mv]] - tr[["x_A", "y_A"]].to_numpy()[i_t[mv]]
            sq = float(np.sum(d**2))
            if with_tracks:
                tid = tr["true_id"].to_numpy()
                pairs.append(np.stack([tid[i_t[mv]], f["track_id"].to_numpy()[i_f[mv]],
                                       np.full(int(mv.sum()), frame)], axis=1))
                alive.append(np.stack([tid[vis], np.full(int(vis.sum()), frame)], axis=1))
            self.sq_sum += sq
            n_vis = int(vis.sum())
            row: dict[str, Any] = {
                "frame": int(frame),
                "raw_frame": int(raw),
                "n_true": len(tr),
                "n_visible": n_vis,
                "n_found": len(f),
                "n_matched": len(i_f),
                "n_matched_visible": int(mv.sum()),
                "recall": float(hit[vis].mean()) if n_vis else np.nan,
                "precision": len(i_f) / len(f) if len(f) else np.nan,
                "rmse_A": float(np.sqrt(sq / mv.sum())) if mv.any() else np.nan,
            }
            site = tr["site"].to_numpy()
            for s in sorted(self.sites):
                m = site == s
                row[f"recall_{s}"] = float(hit[m].mean()) if m.any() else np.nan
                self.n_site[s] = self.n_site.get(s, 0) + int(m.sum())
                self.hit_site[s] = self.hit_site.get(s, 0) + int(hit[m].sum())
            self.rows.append(row)
        if with_tracks:
            self._add_tracks(pairs, alive, found)

    def result(self) -> tuple[pd.DataFrame, dict[str, Any]]:
        """(per-frame table, pooled figures) of the frames added so far."""
        sites = sorted(self.sites)
        for row in self.rows:  # frames scored before a site's first appearance: none there
            for s in sites:
                row.setdefault(f"recall_{s}", np.nan)
        table = pd.DataFrame(
            self.rows, columns=[*COLUMN_SCORE_FIELDS, *(f"recall_{s}" for s in sites)]
        )
        n_vis = int(table["n_visible"].sum())
        n_mv = int(table["n_matched_visible"].sum())
        n_found = int(table["n_found"].sum())
        n_site = {s: self.n_site.get(s, 0) for s in sites}
        overall: dict[str, Any] = {
            "n_frames_scored": len(table),
            "n_visible": n_vis,
            "n_found": n_found,
            "recall": n_mv / n_vis if n_vis else None,
            "recall_min_frame": float(table["recall"].min()) if len(table) else None,
            "precision": int(table["n_matched"].sum()) / n_found if n_found else None,
            "rmse_A": float(np.sqrt(self.sq_sum / n_mv)) if n_mv else None,
            "recall_by_site": {s: self.hit_site[s] / n_site[s] for s in sites if n_site[s]},
            "match_radius_A": self.radius_A,
            "min_column_Z": self.min_column_Z,
            "border_A": self.border_A,
        }
        if self.with_tracks:
            overall["tracks"] = track_persistence(self.pairs, self.track_spans, self.lifetimes)
        return table, overall


def score_columns(
    found: pd.DataFrame,
    truth: pd.DataFrame,
    frames: list[tuple[int, int]],
    frame_shape_A: tuple[float, float],
    radius_A: float,
    min_column_Z: float,
    border_A: float,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score found columns against the true ones, frame by frame (all in memory; the apply
    scores a block of frames at a time with :class:`ColumnScorer`, the same figures).

    Parameters
    ----------
    found : DataFrame
        ``frame`` (output frame), ``x_A, y_A`` [Å] in the raw frame's coordinates; with
        ``track_id`` (and ``true_id`` in ``truth``) the tracks are scored too.
    truth : DataFrame
        The movie's column table (``frame`` = raw frame, ``x_A, y_A`` [Å], ``element``,
        ``site``, ``n_atoms``; ``true_id``: :func:`persistent_column_ids`).
    frames : list of (int, int)
        (output frame, raw frame it is compared with) for every frame to score; frames with
        no found column count with recall 0.
    frame_shape_A : (float, float)
        Height and width of the raw frame [Å].
    radius_A : float
        Matching radius [Å].
    min_column_Z : float
        Smallest n_atoms x Z of a visible column.
    border_A : float
        Columns (true and found) closer than this to the frame edge are ignored [Å].

    Returns
    -------
    (DataFrame, dict)
        Per-frame table (``COLUMN_SCORE_FIELDS`` plus ``recall_<site>``) and the overall
        figures (pooled over frames): recall, precision, rmse_A, recall per site, counts and,
        with track ids, ``tracks``: :func:`etem.analysis.tracks.track_persistence` of the
        matched visible columns (lifetime = first to last scored frame the column is
        visible).
    """
    scorer = ColumnScorer(frame_shape_A, radius_A, min_column_Z, border_A)
    scorer.add(found, truth, frames)
    return scorer.result()


def score_events(
    events: pd.DataFrame,
    true_frames: np.ndarray,
    kinds: list[str],
    tolerance: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Match detected onsets to true event frames (output frame indices).

    Each true event takes the nearest unclaimed detected onset within ``tolerance`` frames
    (true events in time order); detections left over are false alarms.

    Returns
    -------
    (DataFrame, dict)
        ``EVENT_SCORE_FIELDS`` rows (true events, then false alarms) and the summary:
        n_true, n_detected, n_hits, n_false_alarms, onset errors [frames].
    """
    onsets = events["onset_frame"].to_numpy(dtype=np.int64) if len(events) else np.zeros(0, int)
    claimed = np.zeros(len(onsets), dtype=bool)
    rows = []
    for i, f in enumerate(np.asarray(true_frames, dtype=np.int64)):
        err = onsets - f
        cand = np.flatnonzero((np.abs(err) <= tolerance) & ~claimed)
        row: dict[str, Any] = {
            "true_event": i,
            "kind": kinds[i] if i < len(kinds) else "",
            "true_frame": int(f),
            "onset_frame": np.nan,
            "onset_error_frames": np.nan,
            "hit": False,
            "false_alarm": False,
        }
        if len(cand):
            j = int(cand[np.argmin(np.abs(err[cand]))])
            claimed[j] = True
            row.update(onset_frame=int(onsets[j]), onset_error_frames=int(err[j]), hit=True)
        rows.append(row)
    for unclaimed in np.flatnonzero(~claimed):
        rows.append(
            {
                "true_event": -1,
                "kind": "",
                "true_frame": np.nan,
                "onset_frame": int(onsets[unclaimed]),
                "onset_error_frames": np.nan,
                "hit": False,
                "false_alarm": True,
            }
        )
    table = pd.DataFrame(rows, columns=list(EVENT_SCORE_FIELDS))
    table["hit"] = table["hit"].astype(bool)
    table["false_alarm"] = table["false_alarm"].astype(bool)
    hits = table.loc[table["hit"].to_numpy()]
    summary = {
        "n_true": len(true_frames),
        "n_detected": len(onsets),
        "n_hits": len(hits),
        "n_false_alarms": int(table["false_alarm"].sum()),
        "onset_errors_frames": [int(v) for v in hits["onset_error_frames"]],
        "tolerance_frames": tolerance,
        "by_kind": {
            str(r["kind"]): (int(r["onset_error_frames"]) if r["hit"] else None)
            for _, r in table.loc[~table["false_alarm"].to_numpy()].iterrows()
        },
    }
    return table, summary


def found_in_raw_frame(
    cols: pd.DataFrame,
    drift_px: np.ndarray,
    pixel_size_A: float,
    scale: float,
    n_sum: int,
) -> pd.DataFrame:
    """Found columns (``frame, x_px, y_px`` in frame-0 coordinates of the output grid; a
    ``track_id`` is kept) in the coordinates of the raw frame they are compared with.

    ``x_px + drift_x`` is the position in the output frame t; an output pixel i covers raw
    pixels around ``(i + 0.5) * scale - 0.5`` (``scale`` = raw pixels per output pixel:
    bin factor / upsampling). Output frame t is compared with raw frame ``t * n_sum``.
    """
    t = cols["frame"].to_numpy(dtype=np.int64)
    x = cols["x_px"].to_numpy(dtype=np.float64) + drift_px[t, 1]
    y = cols["y_px"].to_numpy(dtype=np.float64) + drift_px[t, 0]
    out = pd.DataFrame(
        {
            "frame": t,
            "raw_frame": t * n_sum,
            "x_A": ((x + 0.5) * scale - 0.5) * pixel_size_A,
            "y_A": ((y + 0.5) * scale - 0.5) * pixel_size_A,
        }
    )
    if "track_id" in cols.columns:
        out["track_id"] = cols["track_id"].to_numpy(dtype=np.int64)
    return out


def metrics(truth_summary: dict[str, Any]) -> dict[str, float]:
    """Flat ``truth_*`` metrics of the summary's ``truth`` block (for MLflow)."""
    out: dict[str, float] = {}
    c = truth_summary.get("columns") or {}
    for k in ("recall", "precision", "rmse_A", "recall_min_frame"):
        if c.get(k) is not None:
            out[f"truth_column_{k}"] = float(c[k])
    for s, v in (c.get("recall_by_site") or {}).items():
        out[f"truth_column_recall_{s}"] = float(v)
    for k, v in (c.get("tracks") or {}).items():
        if k != "n_columns" and v is not None and np.isfinite(v):
            out[f"truth_tracks_{k}"] = float(v)
    e = truth_summary.get("events") or {}
    for k in ("n_true", "n_hits", "n_false_alarms"):
        if k in e:
            out[f"truth_events_{k}"] = float(e[k])
    errs = e.get("onset_errors_frames") or []
    if errs:
        out["truth_events_max_abs_onset_error"] = float(max(abs(v) for v in errs))
    return out


# long (103 lines): reads an apply's outputs and the truth, scores columns and events,
# writes the truth tables: a sequence, each step a few lines.
def score_apply(
    movie_path: str | Path,
    column_frames: Callable[[int, int], pd.DataFrame],
    drift_px: np.ndarray,
    events: pd.DataFrame,
    geo: FrameGeometry,
    a: TruthConfig,
    out: Path,
    metadata: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Score one apply run against the truth its movie carries (None if it carries none).

    Parameters
    ----------
    movie_path : path
        The movie file given to ``etem apply``.
    column_frames : callable
        ``column_frames(a, b)``: the found columns (``frame, x_px, y_px``) of output frames
        ``a <= frame < b`` (e.g. :meth:`etem.movies.outputs.ColumnStore.frames`); called for
        blocks of :data:`SCORE_BLOCK_FRAMES` frames, so memory does not grow with the movie.
    drift_px : ndarray (T, 2)
        Measured drift (dy, dx) per output frame [output px].
    events : DataFrame
        Detected events (``onset_frame``).
    geo : pipeline geometry
        ``n_sum, scale, pixel_size_A, height, width, n_frames``.
    a : TruthConfig
        ``apply.truth``.
    out : Path
        Output folder: ``truth_columns.csv``, ``truth_events.csv`` are written there.
    metadata : dict
        Provenance for the table headers.

    Returns
    -------
    (dict or None, dict)
        The ``truth`` block of summary.json and the files written (name -> file name).
    """

    truth = load_truth(movie_path, columns=False)
    if truth is None:
        return None, {}
    files: dict[str, str] = {}
    block: dict[str, Any] = {"movie": str(movie_path)}
    scale = geo.scale
    px_raw = geo.pixel_size_A / scale
    if truth.pixel_size_A and abs(truth.pixel_size_A / px_raw - 1) > 1e-3:
        log.warning(
            "truth pixel size %.4g Å differs from the apply raw pixel size %.4g Å: "
            "column positions scored with the truth's",
            truth.pixel_size_A,
            px_raw,
        )
        px_raw = truth.pixel_size_A
    if truth.has_columns:
        shape_A = (geo.height * scale * px_raw, geo.width * scale * px_raw)
        scorer = ColumnScorer(shape_A, a.match_radius_A, a.min_column_Z, a.border_A)
        identities = ColumnIdentities(truth.drift_px, truth.pixel_size_A)
        blocks = [
            (t0, min(t0 + SCORE_BLOCK_FRAMES, geo.n_frames))
            for t0 in range(0, geo.n_frames, SCORE_BLOCK_FRAMES)
        ]
        # raw frames of each block (the last open-ended: every true column is read once)
        raw_ranges = [
            (t0 * geo.n_sum, t1 * geo.n_sum if t1 < geo.n_frames else np.iinfo(np.int64).max)
            for t0, t1 in blocks
        ]
        for (t0, t1), true_cols in zip(
            blocks, iter_truth_columns(movie_path, raw_ranges), strict=True
        ):
            cols = column_frames(t0, t1)
            found = found_in_raw_frame(
                cols[[c for c in ("frame", "x_px", "y_px", "track_id") if c in cols.columns]],
                drift_px, px_raw, scale, geo.n_sum,
            )
            true_cols = true_cols.assign(true_id=identities(true_cols))
            scorer.add(found, true_cols, [(t, t * geo.n_sum) for t in range(t0, t1)])
        table, overall = scorer.result()
        write_table(out / "truth_columns.csv", table, metadata=metadata)
        files["truth_columns"] = "truth_columns.csv"
        block["columns"] = overall
        log.info(
            "truth: column recall %.3f (visible: n_atoms x Z >= %g), precision %.3f, "
            "RMSE %.3f Å; %.3f of the matched visible detections in a track spanning their "
            "column's lifetime",
            overall["recall"] or float("nan"),
            a.min_column_Z,
            overall["precision"] or float("nan"),
            overall["rmse_A"] or float("nan"),
            (overall.get("tracks") or {}).get("spanning_fraction_lifetime", float("nan")),
        )
    if truth.events is not None:
        true_out = np.asarray(truth.events, dtype=np.int64) // geo.n_sum
        ok = true_out < geo.n_frames
        kinds = [k for k, keep in zip(truth.event_kinds, ok, strict=False) if keep]
        table_e, summ = score_events(
            events, true_out[ok], kinds, a.event_tolerance_frames
        )
        write_table(out / "truth_events.csv", table_e, metadata=metadata)
        files["truth_events"] = "truth_events.csv"
        block["events"] = summ
        log.info(
            "truth: %d/%d events found (onset errors %s frames), %d false alarms",
            summ["n_hits"],
            summ["n_true"],
            summ["onset_errors_frames"],
            summ["n_false_alarms"],
        )
    return block, files
