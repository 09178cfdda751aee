"""Reading the ground truth a movie file carries (synthetic movies, test movies).

Kept apart from :mod:`etem.simulation.synthetic_movie` so that scoring a movie against its
truth (:mod:`etem.movies.truth`, on every apply job) does not import the simulator (abTEM and
its numba kernels, seconds per process).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from etem.simulation.contract import MOVIE_COLUMN_COLUMNS, MOVIE_COLUMN_STRINGS

__all__ = ["read_movie_truth"]


def read_movie_truth(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ground truth a movie file carries, without its frames; None if it has none.

    Returns a dict with ``columns`` (the per-frame column table, ``MOVIE_COLUMN_COLUMNS``;
    None when absent), ``events`` (event frames, raw frame index), ``event_kinds``,
    ``drift_px`` (true drift (x, y) [px] per frame; None when absent), ``pixel_size_A`` [Å]
    and ``n_frames``. Also reads the Gaussian-lattice test movies of
    :func:`etem.testing.write_h5` (``/columns/<frame>`` (N, 2) x, y [px],
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
        has_cols = isinstance(g, h5py.Group) and all(c in g for c in MOVIE_COLUMN_COLUMNS)
        lattice = isinstance(g, h5py.Group) and not has_cols and len(g) > 0 and all(
            isinstance(d, h5py.Dataset) and d.ndim == 2 and d.shape[1] == 2 for d in g.values()
        )
        ev = f.get("events")
        if not (has_cols or lattice) and ev is None:
            return None
        columns = None
        if has_cols:
            columns = pd.DataFrame({
                c: (g[c].asstr()[...] if c in MOVIE_COLUMN_STRINGS else g[c][...])
                for c in MOVIE_COLUMN_COLUMNS
            })
        elif lattice and px:
            parts = []
            for name, d in g.items():
                xy = np.asarray(d[...], dtype=np.float64) * float(px)
                parts.append(pd.DataFrame({
                    "frame": int(name), "column_id": np.arange(len(xy)), "x_A": xy[:, 0],
                    "y_A": xy[:, 1], "element": "", "site": "column", "n_atoms": 1,
                    "n_sites": 1, "occupancy": 1.0,
                }))
            columns = pd.concat(parts, ignore_index=True)
        if isinstance(ev, h5py.Group):
            ev = ev.get("frame")
        events = np.asarray(ev[...], dtype=np.int64).ravel() if ev is not None else None
        kinds = f["event_kinds"].asstr()[...].tolist() if "event_kinds" in f else []
        return {
            "columns": columns,
            "events": events,
            "event_kinds": kinds,
            "drift_px": f["drift_px"][...] if "drift_px" in f else None,
            "pixel_size_A": float(px) if px is not None else None,
            "n_frames": int(f["frames"].shape[0]) if "frames" in f else None,
        }
