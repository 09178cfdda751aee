"""Linking atomic columns across frames into tracks.

Each frame's columns are matched one-to-one to the tracks alive in the previous frames by
nearest neighbour within ``radius_px`` (greedy in increasing distance, which equals the
optimal assignment when columns are farther apart than twice the radius). Unmatched columns
start new tracks; a track not seen for more than ``max_gap`` frames ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree


@dataclass
class ColumnTracker:
    """Stateful nearest-neighbour linker.

    Parameters
    ----------
    radius_px : float
        Largest displacement between frames of one column [px].
    max_gap : int
        Frames a track may be missing before it ends.
    """

    radius_px: float
    max_gap: int = 2
    _pos: dict[int, np.ndarray] = field(default_factory=dict)
    _last_seen: dict[int, int] = field(default_factory=dict)
    _next_id: int = 0

    @property
    def n_tracks(self) -> int:
        """Tracks started so far."""
        return self._next_id

    def update(self, frame: int, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Assign track ids to the (n, 2) positions (x, y) [px] of ``frame``.

        Returns
        -------
        ids : ndarray (n,) int
            Track id of each column.
        displacement : ndarray (n,)
            Distance [px] to the track's previous position (NaN for new tracks).
        """

        for tid in [t for t, f in self._last_seen.items() if frame - f > self.max_gap + 1]:
            del self._pos[tid], self._last_seen[tid]
        n = len(xy)
        ids = np.full(n, -1, dtype=np.int64)
        disp = np.full(n, np.nan)
        alive = list(self._pos)
        if n and alive:
            prev = np.stack([self._pos[t] for t in alive])
            tree = cKDTree(prev)
            pairs = tree.query_ball_point(xy, r=self.radius_px)
            cand = [
                (float(np.hypot(*(xy[i] - prev[j]))), i, j)
                for i, js in enumerate(pairs)
                for j in js
            ]
            cand.sort()
            used_tracks: set[int] = set()
            for d, i, j in cand:
                if ids[i] >= 0 or j in used_tracks:
                    continue
                ids[i] = alive[j]
                disp[i] = d
                used_tracks.add(j)
        for i in range(n):
            if ids[i] < 0:
                ids[i] = self._next_id
                self._next_id += 1
            self._pos[int(ids[i])] = np.asarray(xy[i], dtype=np.float64)
            self._last_seen[int(ids[i])] = frame
        return ids, disp
