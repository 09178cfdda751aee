"""Reading the ground truth a movie file carries (synthetic movies, test movies).

Kept apart from :mod:`etem.simulation.synthetic_movie` so that scoring a movie against its
truth (:mod:`etem.movies.truth`, on every apply job) does not import the simulator (abTEM and
its numba kernels, seconds per process).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from etem.simulation.contract import MOVIE_COLUMN_COLUMNS, MOVIE_COLUMN_STRINGS

__all__ = ["iter_truth_columns", "read_movie_truth"]


#: Rows of a frame-ordered ``/columns`` table read at a time by :func:`iter_truth_columns`.
TRUTH_BLOCK_ROWS = 65536


def _layout(f: h5py.File) -> tuple[bool, bool]:
    """(synthetic-movie column table, Gaussian-lattice per-frame datasets) of an open file."""
    g = f.get("columns")
    has_cols = isinstance(g, h5py.Group) and all(c in g for c in MOVIE_COLUMN_COLUMNS)
    lattice = isinstance(g, h5py.Group) and not has_cols and len(g) > 0 and all(
        isinstance(d, h5py.Dataset) and d.ndim == 2 and d.shape[1] == 2 for d in g.values()
    )
    return has_cols, lattice


def _table_rows(g: h5py.Group, a: int | None = None, b: int | None = None) -> pd.DataFrame:
    """Rows ``a:b`` (default all) of a synthetic movie's ``/columns`` table."""
    sl = slice(a, b)
    return pd.DataFrame({
        c: (g[c].asstr()[sl] if c in MOVIE_COLUMN_STRINGS else g[c][sl])
        for c in MOVIE_COLUMN_COLUMNS
    })


def _lattice_frame(t: int, xy_px: np.ndarray, px: float) -> pd.DataFrame:
    """The true columns of frame ``t`` of a Gaussian-lattice test movie (positions [Å])."""
    xy = np.asarray(xy_px, dtype=np.float64) * float(px)
    return pd.DataFrame({
        "frame": t, "column_id": np.arange(len(xy)), "x_A": xy[:, 0],
        "y_A": xy[:, 1], "element": "", "site": "column", "n_atoms": 1,
        "n_sites": 1, "occupancy": 1.0,
    })


def read_movie_truth(
    path: str | os.PathLike[str], columns: bool = True
) -> dict[str, Any] | None:
    """The ground truth a movie file carries, without its frames; None if it has none.

    Returns a dict with ``columns`` (the per-frame column table, ``MOVIE_COLUMN_COLUMNS``;
    None when absent or not asked for: ``columns=False``, see :func:`iter_truth_columns`),
    ``has_columns`` (whether the file carries true columns, at least one), ``events`` (event frames,
    raw frame index), ``event_kinds``, ``drift_px`` (true drift (x, y) [px] per frame; None
    when absent), ``pixel_size_A`` [Å] and ``n_frames``. Also reads the Gaussian-lattice
    test movies of :func:`etem.testing.write_h5` (``/columns/<frame>`` (N, 2) x, y [px],
    ``/events/frame``; their columns get ``element`` "" and count as visible). Files that
    are not HDF5, or HDF5 files without ``/columns`` and ``/events`` (e.g. experimental
    movies), give None.
    """

    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return None
    with h5py.File(path, "r") as f:
        px = f.attrs.get("pixel_size_A")
        g = f.get("columns")
        has_cols, lattice = _layout(f)
        ev = f.get("events")
        if not (has_cols or lattice) and ev is None:
            return None
        table = None
        if columns and has_cols:
            table = _table_rows(g)
        elif columns and lattice and px:
            table = pd.concat(
                [_lattice_frame(int(name), d[...], px) for name, d in g.items()], ignore_index=True
            )
        if isinstance(ev, h5py.Group):
            ev = ev.get("frame")
        events = np.asarray(ev[...], dtype=np.int64).ravel() if ev is not None else None
        kinds = f["event_kinds"].asstr()[...].tolist() if "event_kinds" in f else []
        return {
            "columns": table,
            "has_columns": bool(has_cols and len(g["frame"]))
            or bool(lattice and px and any(len(d) for d in g.values())),
            "events": events,
            "event_kinds": kinds,
            "drift_px": f["drift_px"][...] if "drift_px" in f else None,
            "pixel_size_A": float(px) if px is not None else None,
            "n_frames": int(f["frames"].shape[0]) if "frames" in f else None,
        }


def iter_truth_columns(
    path: str | os.PathLike[str], frame_ranges: Iterable[tuple[int, int]]
) -> Iterator[pd.DataFrame]:
    """For each raw frame range ``(lo, hi)`` (increasing, not overlapping) the true columns
    of the frames ``lo <= frame < hi``: the rows of :func:`read_movie_truth`'s ``columns``
    table for those frames, in the file's order within each frame.

    Memory is bounded by the ranges, not the movie: a column table in frame order (as
    ``etem simulate-movie`` writes it) is read in blocks of :data:`TRUTH_BLOCK_ROWS` rows,
    the lattice test movies' per-frame datasets frame by frame; a table not in frame order
    is read whole (stable-sorted by frame). A file without columns gives empty tables.
    """
    with h5py.File(path, "r") as f:
        px = f.attrs.get("pixel_size_A")
        g = f.get("columns")
        has_cols, lattice = _layout(f)
        if lattice and px:
            names = {int(name): name for name in g}
            order = np.array(sorted(names), dtype=np.int64)
            for lo, hi in frame_ranges:
                sel = order[np.searchsorted(order, lo) : np.searchsorted(order, hi)]
                parts = [_lattice_frame(int(t), g[names[int(t)]][...], px) for t in sel]
                yield (pd.concat(parts, ignore_index=True) if parts
                       else _lattice_frame(lo, np.zeros((0, 2)), px))
            return
        if not has_cols:
            for _ in frame_ranges:
                yield pd.DataFrame({c: [] for c in MOVIE_COLUMN_COLUMNS})
            return
        yield from _ordered_ranges(g, frame_ranges)


def _ordered_ranges(
    g: h5py.Group, frame_ranges: Iterable[tuple[int, int]]
) -> Iterator[pd.DataFrame]:
    """:func:`iter_truth_columns` of a synthetic movie's ``/columns`` table."""
    ds, n, step = g["frame"], len(g["frame"]), TRUTH_BLOCK_ROWS
    ordered, prev = True, None
    for a in range(0, n, step):  # is the table in frame order? (frame numbers only)
        fr = ds[a : a + step]
        if (prev is not None and fr[0] < prev) or bool(np.any(np.diff(fr) < 0)):
            ordered = False
            break
        prev = fr[-1]
    whole = None
    if not ordered:
        whole = _table_rows(g)
        whole = whole.iloc[np.argsort(whole["frame"].to_numpy(), kind="stable")]

    def rows(a: int, b: int) -> pd.DataFrame:
        return _table_rows(g, a, b) if whole is None else whole.iloc[a:b]

    pending, pos = rows(0, 0), 0
    for lo, hi in frame_ranges:
        while pos < n and (not len(pending) or pending["frame"].iloc[-1] < hi):
            block = rows(pos, pos + step)
            pending = pd.concat([pending, block], ignore_index=True) if len(pending) else block
            pos += step
        fr = pending["frame"].to_numpy()
        i0, i1 = int(np.searchsorted(fr, lo)), int(np.searchsorted(fr, hi))
        yield pending.iloc[i0:i1].reset_index(drop=True)
        pending = pending.iloc[i1:].reset_index(drop=True)
