"""Persistent column tracks: streaming linking (trackpy) and a track-level confidence.

Linking
-------
:class:`TrackLinker` feeds each frame's drift-corrected column positions to trackpy's
Crocker-Grier linker (:class:`trackpy.linking.Linker`, optimal assignment within each
subnetwork of competing columns, ``memory`` frames a column may be missed and still
continue its track). A column's next position is predicted by the exponentially weighted
mean of its past positions (weight :data:`POSITION_EWMA` of the newest): columns stand still
in drift-corrected coordinates, so the mean is closer to the next position than the last
(noisy) one, and a column that moves is followed within a few frames. It is streamed frame
by frame (memory bounded by the tracks alive in the last ``memory`` + 1 frames); a track
that can no longer be continued is summarised (first and last frame, frames present, summed
per-frame evidence, mean position) and handed out by :meth:`TrackLinker.pop_finished`.

Track confidence
----------------
A real column is seen frame after frame; a noise blob is not. For a track present in n of
the frames of its span, the two hypotheses are

* *real*: a column there from ``first - g`` to ``last + g`` (g = memory + 1 frames,
  clipped to the movie), found in each frame with probability ``q_real``;
* *noise*: spurious detections that the linker chained, each frame continued with
  probability ``q_noise`` (the chance that an unrelated blob lies within the link radius).

With m = frames of the extended span without a detection, the log Bayes factor is
``n log(q_real / q_noise) + m log((1 - q_real) / (1 - q_noise))`` plus, with calibrated
per-frame p-values, the sum over the detections of the Sellke-Bayarri-Berger bound
``-log(-e p ln p)`` (p < 1/e; the largest Bayes factor a p-value can carry, a
conservative way to add per-frame likelihood evidence). The confidence is the posterior
probability of *real* at even prior odds. Both rates are estimated from the movie itself
(:func:`presence_rates`): ``q_real`` = detections / span of the long tracks, ``q_noise`` =
1 - exp(-rho pi r^2) with rho the density of detections in short tracks per frame.

Temporal denoising windows
--------------------------
A denoiser that sees a window of w frames (the blind-spot model: w = 5) makes consecutive
denoised frames share w - 1 of their raw frames, so its noise blobs persist for about w
frames: detections of one track within w frames are not independent looks. The presence
model then counts in independent looks of w frames (``window_frames``): the presence terms
are divided by w, and the short and long tracks that estimate the rates are
:data:`SHORT_TRACK` and :data:`LONG_TRACK` looks (x w detections). Single-frame denoisers
(w = 1) are unchanged. On the demo movie (blind-spot model) the per-frame counting took
w-frame noise blobs for columns: q_noise 0.06 from tracks of <= 2 detections, q_real 0.86
diluted by noise tracks of 5-10 detections (benchmarks/tracks.md).
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import trackpy
from trackpy.linking import Linker
from trackpy.linking.utils import Point

from etem.analysis.matching import match_columns

#: Smallest search radius [fraction of the link radius] trackpy may shrink to for a dense
#: subnetwork before it gives up (SubnetOversizeException).
ADAPTIVE_STOP = 0.02

#: Fields of the track summaries (:meth:`TrackLinker.pop_finished`).
TRACK_FIELDS = (
    "track_id", "first_frame", "last_frame", "n_frames", "evidence", "x_px", "y_px",
)
#: Tracks of at least this many independent looks estimate q_real (almost surely real
#: columns); a look is one frame, or the denoiser's window of frames (module doc).
LONG_TRACK = 5
#: Tracks of at most this many independent looks estimate the noise density.
SHORT_TRACK = 2
#: EWMA weight of the newest position in a track's predicted position.
POSITION_EWMA = 0.15
#: Detections whose mean position is a track's reference (motion statistics).
REFERENCE_FRAMES = 5
#: Largest log Bayes factor [nats] one frame's p-value may add.
MAX_FRAME_EVIDENCE = 5.0

trackpy.quiet()


def _point_hash(point: Any) -> int:
    """A trackpy point's hash: the number trackpy gives it (``uuid``, counted from 0 by
    each :class:`~trackpy.linking.Linker` in order of the points' creation)."""
    return int(point.uuid)


# trackpy 0.7's points hash by memory address (its uuid-based __hash__ is commented out), so
# the sets of competing points its subnetwork linker walks come in an address order that
# changes from run to run: the same detections gave 2-4 other track ids of 16,665 in a
# 300-frame movie run twice in one process (tests/integration/test_movies_shards.py failed
# now and then). Hashed by their uuid, the order is that of the detections: deterministic.
# Upstream: soft-matter/trackpy issue #776; PR #802 (merged 2026-06-29, after 0.7, the latest
# release on the package index here) sorts the subnet linkers' candidates by uuid instead:
# with a release that holds it, this patch and its test can go (test_movies_shards.py's
# test_the_same_movie_applied_twice_in_one_process_gives_the_same_tracks must stay green).
Point.__hash__ = _point_hash


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside the block (restored after).

    trackpy allocates several small objects per column and frame (points, candidate lists,
    subnets); each allocation burst triggers collections that traverse every live object of
    the process (models, tables, the linker's own state), which took half of the linking
    time of a 1024² frame. The objects are freed by reference counting as before; cycles,
    if any, are collected once the collector runs again.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def p_value_evidence(p: np.ndarray) -> np.ndarray:
    """Per-detection log Bayes factor bound [nats] of a p-value (Sellke, Bayarri & Berger
    2001): ``-log(-e p ln p)`` for p < 1/e, else 0, capped at :data:`MAX_FRAME_EVIDENCE`."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ev = -np.log(-math.e * p * np.log(p))
    return np.clip(np.where(p < 1 / math.e, ev, 0.0), 0.0, MAX_FRAME_EVIDENCE)


@dataclass
class TrackLinker:
    """Streaming trackpy linking of per-frame column positions.

    Parameters
    ----------
    radius_px : float
        Largest displacement of a column between the frames it is seen in [px].
    memory : int
        Frames a column may be missed and still continue its track.
    """

    radius_px: float
    memory: int = 2
    _linker: Linker | None = None
    _active: dict[int, list[float]] = field(default_factory=dict)
    _finished: list[list[float]] = field(default_factory=list)
    _n_tracks: int = 0
    # trackpy's id -> ours: ours are numbered in order of first detection (frame, then the
    # finder's order), so track ids do not depend on trackpy's internal set order
    _ours: dict[int, int] = field(default_factory=dict)
    _theirs: dict[int, int] = field(default_factory=dict)
    _last_frame: int = -1

    @property
    def n_tracks(self) -> int:
        """Tracks started so far."""
        return self._n_tracks

    def update(
        self, frame: int, xy: np.ndarray, evidence: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Link the (n, 2) drift-corrected positions (x, y) [px] of ``frame`` (frames in
        increasing order); ``evidence`` = per-detection log Bayes factors (default 0).

        Returns
        -------
        ids : ndarray (n,) int64
            Track id of each column.
        displacement : ndarray (n,)
            Distance [px] to the track's previous position (NaN for new tracks).
        """
        with gc_paused():
            return self._update(frame, xy, evidence)

    def _update(
        self, frame: int, xy: np.ndarray, evidence: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        ev = np.zeros(len(xy)) if evidence is None else np.asarray(evidence, dtype=np.float64)
        if self._linker is None:
            # dense noisy frames form large subnetworks of competing columns: trackpy then
            # shrinks the search radius for that subnetwork (step 0.9) instead of failing
            self._linker = Linker(self.radius_px, memory=self.memory, predictor=self._predict,
                                  adaptive_stop=ADAPTIVE_STOP * self.radius_px,
                                  adaptive_step=0.9)
            self._linker.init_level(xy, frame)
        else:
            self._linker.next_level(xy, frame)
        ids = np.empty(len(xy), dtype=np.int64)
        for i, theirs in enumerate(self._linker.particle_ids):
            ours = self._ours.get(int(theirs))
            if ours is None:
                ours = self._ours[int(theirs)] = self._n_tracks
                self._theirs[ours] = int(theirs)
                self._n_tracks += 1
            ids[i] = ours
        disp = np.full(len(xy), np.nan)
        for i, tid in enumerate(ids.tolist()):
            x, y = float(xy[i, 0]), float(xy[i, 1])
            s = self._active.get(tid)
            if s is None:
                # first, last, n, evidence, sum x, sum y, last x, last y, EWMA x, EWMA y,
                # reference x, y (mean of the first REFERENCE_FRAMES positions)
                self._active[tid] = [frame, frame, 1, ev[i], x, y, x, y, x, y, x, y]
                continue
            disp[i] = math.hypot(x - s[6], y - s[7])
            s[1] = frame
            s[2] += 1
            s[3] += ev[i]
            s[4] += x
            s[5] += y
            s[6], s[7] = x, y
            s[8] += POSITION_EWMA * (x - s[8])
            s[9] += POSITION_EWMA * (y - s[9])
            if s[2] <= REFERENCE_FRAMES:  # reference: mean of the first detections
                s[10] += (x - s[10]) / s[2]
                s[11] += (y - s[11]) / s[2]
        self._last_frame = frame
        ended = [t for t, s in self._active.items() if frame - s[1] > self.memory]
        for t in ended:
            self._close(t)
        return ids, disp

    def reference(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference positions (n, 2) [px] (mean of each track's first
        :data:`REFERENCE_FRAMES` positions) and detections so far (n,) of the tracks ``ids``."""
        ref = np.full((len(ids), 2), np.nan)
        n = np.zeros(len(ids), dtype=np.int64)
        for i, tid in enumerate(np.asarray(ids).tolist()):
            s = self._active.get(tid)
            if s is not None:
                ref[i] = s[10], s[11]
                n[i] = s[2]
        return ref, n

    def _predict(self, t: int, points: list[Any]) -> list[Any]:
        """trackpy predictor: each track's EWMA position (its last position if unknown)."""
        ours, active = self._ours, self._active
        out: list[Any] = []
        for p in points:
            s = active.get(ours.get(p.track.id, -1))
            out.append((s[8], s[9]) if s is not None else p.pos)
        return out

    def _close(self, tid: int) -> None:
        s = self._active.pop(tid)
        self._ours.pop(self._theirs.pop(tid, -1), None)
        self._finished.append([tid, s[0], s[1], s[2], s[3], s[4] / s[2], s[5] / s[2]])

    def pop_finished(self) -> pd.DataFrame:
        """Summaries (:data:`TRACK_FIELDS`) of the tracks ended since the last call."""
        rows, self._finished = self._finished, []
        return _track_frame(rows)

    def finish(self) -> pd.DataFrame:
        """End all tracks; the summaries of those not yet handed out."""
        for t in list(self._active):
            self._close(t)
        return self.pop_finished()


def _track_frame(rows: list[list[float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(TRACK_FIELDS))
    for k in ("track_id", "first_frame", "last_frame", "n_frames"):
        df[k] = df[k].astype(np.int64)
    return df


@dataclass
class PresenceRates:
    """Per-frame detection probabilities of a real column and of a chained noise blob."""

    q_real: float
    q_noise: float
    noise_density_per_px2: float


def presence_rates(
    n_frames: np.ndarray,
    span: np.ndarray,
    movie_frames: int,
    area_px2: float,
    radius_px: float,
    window_frames: int = 1,
) -> PresenceRates:
    """Estimate :class:`PresenceRates` from the tracks' detections ``n_frames`` and spans
    (last - first + 1) over a movie of ``movie_frames`` frames of ``area_px2`` [px^2];
    ``window_frames``: frames per independent look (the denoiser's temporal window)."""
    n = np.asarray(n_frames, dtype=np.int64)
    sp = np.asarray(span, dtype=np.int64)
    w = max(int(window_frames), 1)
    long_ = n >= LONG_TRACK * w
    return presence_rates_from_sums(
        int(n[long_].sum()), int(sp[long_].sum()), int(n[n <= SHORT_TRACK * w].sum()),
        movie_frames, area_px2, radius_px,
    )


def presence_rates_from_sums(
    long_detections: int,
    long_span: int,
    short_detections: int,
    movie_frames: int,
    area_px2: float,
    radius_px: float,
) -> PresenceRates:
    """:func:`presence_rates` from the sums it needs (accumulated over a track table read in
    blocks): detections and summed spans of the long tracks (at least :data:`LONG_TRACK`
    looks), detections of the short ones (at most :data:`SHORT_TRACK` looks)."""
    q_real = long_detections / long_span if long_detections else 0.9
    rho = float(short_detections) / max(movie_frames * area_px2, 1e-9)
    q_noise = 1.0 - math.exp(-rho * math.pi * radius_px**2)
    q_real = min(max(q_real, 0.5), 0.99)
    q_noise = min(max(q_noise, 1e-3), 0.5 * q_real)
    return PresenceRates(q_real, q_noise, rho)


def track_log_odds(
    tracks: pd.DataFrame,
    movie_frames: int,
    memory: int,
    rates: PresenceRates,
    window_frames: int = 1,
) -> np.ndarray:
    """Log Bayes factor [nats] real column vs chained noise of each track (module doc);
    the presence terms count independent looks of ``window_frames`` frames."""
    g = memory + 1
    first = tracks["first_frame"].to_numpy(dtype=np.int64)
    last = tracks["last_frame"].to_numpy(dtype=np.int64)
    n = tracks["n_frames"].to_numpy(dtype=np.float64)
    lo = np.maximum(first - g, 0)
    hi = np.minimum(last + g, movie_frames - 1)
    missed = (hi - lo + 1) - n
    qr, qn = rates.q_real, rates.q_noise
    presence = n * math.log(qr / qn) + missed * math.log((1 - qr) / (1 - qn))
    return presence / max(int(window_frames), 1) + tracks["evidence"].to_numpy(dtype=np.float64)


def track_confidence(log_odds: np.ndarray) -> np.ndarray:
    """Posterior probability of a real column at even prior odds."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(log_odds, -700, 700))))


def frame_spans(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """``first_frame`` and ``last_frame`` of each ``key`` (e.g. ``track_id``) among ``rows``
    (``frame``, ``key``), indexed by ``key``."""
    if not len(rows):
        return pd.DataFrame({"first_frame": [], "last_frame": []})
    g = rows.groupby(key)["frame"]
    return pd.DataFrame({"first_frame": g.min(), "last_frame": g.max()})


def track_persistence(
    pairs: pd.DataFrame,
    track_spans: pd.DataFrame,
    lifetimes: pd.DataFrame | None = None,
) -> dict[str, float]:
    """How persistently the tracks follow the true columns they were matched to.

    ``pairs``: one row per matched detection, ``true_id`` (persistent identity of the true
    column), ``track_id`` (of the detection), ``frame``; or aggregated, one row per (true_id,
    track_id) with ``n`` detections from frame ``first`` to ``last``. ``track_spans``: indexed by
    ``track_id``, ``first_frame`` and ``last_frame`` of every track (all its detections).
    ``lifetimes`` (optional): indexed by ``true_id``, ``first_frame`` and ``last_frame`` of
    each true column's presence in the scored area.

    A true column's *own* track is the one holding most of its matched detections. Returns
    ``spanning_fraction`` (matched detections in their column's own track when that track
    spans the column's first to last *matched* frame), ``spanning_fraction_lifetime`` (the
    same with the column's true lifetime, when ``lifetimes`` is given: the issue's "tracks
    spanning their column's lifetime"), ``tracks_per_column`` (distinct tracks among a true
    column's matched detections, mean) and ``n_columns``.
    """
    if "n" not in pairs.columns:
        pairs = pairs.groupby(["true_id", "track_id"])["frame"].agg(
            n="size", first="min", last="max").reset_index()
    n = int(pairs["n"].sum()) if len(pairs) else 0
    out: dict[str, float] = {
        "spanning_fraction": float("nan"),
        "tracks_per_column": float("nan"),
        "n_columns": 0,
    }
    if lifetimes is not None:
        out["spanning_fraction_lifetime"] = float("nan")
    if not n:
        return out
    counts = pairs[["true_id", "track_id", "n"]]
    # own track: most detections, ties to the smallest track id (deterministic)
    counts = counts.sort_values(["true_id", "n", "track_id"], ascending=[True, False, True])
    own = counts.drop_duplicates("true_id").set_index("true_id")
    matched = pairs.groupby("true_id").agg(min=("first", "min"), max=("last", "max"))
    lo = track_spans["first_frame"].reindex(own["track_id"]).to_numpy()
    hi = track_spans["last_frame"].reindex(own["track_id"]).to_numpy()
    n_own = own["n"].to_numpy()
    span_m = (lo <= matched.loc[own.index, "min"].to_numpy()) & (
        hi >= matched.loc[own.index, "max"].to_numpy()
    )
    out["spanning_fraction"] = float(n_own[span_m].sum() / n)
    if lifetimes is not None:
        life = lifetimes.reindex(own.index)
        span_l = (lo <= life["first_frame"].to_numpy()) & (hi >= life["last_frame"].to_numpy())
        out["spanning_fraction_lifetime"] = float(n_own[span_l].sum() / n)
    out["tracks_per_column"] = float(counts.groupby("true_id").size().mean())
    out["n_columns"] = len(own)
    return out


def score_tracks(
    columns: pd.DataFrame,
    truth_xy: list[np.ndarray],
    truth_ids: list[np.ndarray],
    match_radius_px: float,
    border_px: float,
    size_px: tuple[int, int],
) -> dict[str, float]:
    """Tracked columns against true columns with identities (generated movies).

    ``columns``: frame, track_id, x_px, y_px (drift-corrected); ``truth_xy[t]`` (n, 2) and
    ``truth_ids[t]`` (n,) per frame. True and found columns within ``border_px`` of the frame
    edge are ignored. Per frame, found and true columns are matched one to one within
    ``match_radius_px`` (:func:`etem.analysis.matching.match_columns`). Returns pooled
    ``precision``, ``recall``, the :func:`track_persistence` figures (``spanning_fraction``:
    first to last matched frame; ``spanning_fraction_lifetime``: the true column's first to
    last frame inside the border) and counts.
    """
    h, w = size_px

    def inside(xy: np.ndarray) -> np.ndarray:
        return (
            (xy[:, 0] >= border_px) & (xy[:, 0] < w - border_px)
            & (xy[:, 1] >= border_px) & (xy[:, 1] < h - border_px)
        )

    n_found = n_true = n_match = 0
    pairs: list[tuple[int, int, int]] = []  # (true id, track id, frame)
    present: list[tuple[int, int]] = []  # (true id, frame) of the true columns scored
    by_frame = dict(tuple(columns.groupby("frame"))) if len(columns) else {}
    for t, (txy, tid) in enumerate(zip(truth_xy, truth_ids, strict=True)):
        txy = np.asarray(txy, dtype=np.float64).reshape(-1, 2)
        keep = inside(txy)
        txy, tid = txy[keep], np.asarray(tid)[keep]
        present.extend((int(i), t) for i in tid)
        f = by_frame.get(t)
        fxy = f[["x_px", "y_px"]].to_numpy() if f is not None else np.zeros((0, 2))
        ftr = f["track_id"].to_numpy() if f is not None else np.zeros(0, np.int64)
        fk = inside(fxy)
        fxy, ftr = fxy[fk], ftr[fk]
        n_found += len(fxy)
        n_true += len(txy)
        i_f, i_t = match_columns(
            pd.DataFrame({"x_A": fxy[:, 0], "y_A": fxy[:, 1]}),
            pd.DataFrame({"x_A": txy[:, 0], "y_A": txy[:, 1]}),
            match_radius_px,
        )
        n_match += len(i_f)
        pairs.extend((int(tid[j]), int(ftr[i]), t) for i, j in zip(i_f, i_t, strict=True))
    p = pd.DataFrame(pairs, columns=["true_id", "track_id", "frame"])
    life = frame_spans(pd.DataFrame(present, columns=["true_id", "frame"]), "true_id")
    persist = track_persistence(p, frame_spans(columns, "track_id"), life)
    persist.pop("n_columns")
    return {
        "precision": n_match / n_found if n_found else float("nan"),
        "recall": n_match / n_true if n_true else float("nan"),
        **persist,
        "n_found": n_found,
        "n_true": n_true,
        "n_matched": n_match,
        "n_tracks": int(columns["track_id"].nunique()) if len(columns) else 0,
    }
