"""Scene breaks of a movie, found on the raw frames: time gaps and sudden changes.

A multi-frame denoiser must not mix frames across a break: the first frame after a sudden
change would otherwise be averaged with the frames before it and lose what changed. Breaks
split the movie into segments; the denoising window of a frame stays inside its segment
(:func:`segment_window`, reflected at the segment's ends as at the movie's).

Two kinds of break:

* **time gap**: the frame numbers (per-frame files numbered in their names) or frame times
  jump by more than :data:`GAP_FACTOR` times their median step;
* **sudden change**: the processed, aligned raw counts, summed in blocks of about
  :data:`BLOCK_COUNTS` counts, differ between the :data:`CHANGE_WINDOW_FRAMES` frames before
  and after a frame far more than counting noise and the movie's usual changes allow
  (:class:`ChangeStatistic`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence

import numpy as np

#: A time step this many times the median step is a gap.
GAP_FACTOR = 1.5
#: Expected counts per block of the change statistic.
BLOCK_COUNTS = 64.0
#: Frames on each side of a candidate change point.
CHANGE_WINDOW_FRAMES = 4
#: Robust z of the change statistic above which a frame starts a new segment.
BREAK_ROBUST_Z = 6.0
#: ... and the statistic must be at least this multiple of its median.
BREAK_MIN_RATIO = 1.5


def frame_numbers(names: Sequence[str]) -> np.ndarray | None:
    """The trailing integer of each file name (stem), or None when some have none."""
    nums = []
    for n in names:
        m = re.search(r"(\d+)\D*$", n)
        if m is None:
            return None
        nums.append(int(m.group(1)))
    return np.asarray(nums, dtype=np.int64)


def time_gaps(steps: np.ndarray) -> list[int]:
    """Indices i (1-based positions) where ``steps[i-1]`` (time or number between frame i-1
    and i) exceeds :data:`GAP_FACTOR` times the median step."""
    steps = np.asarray(steps, dtype=np.float64)
    if len(steps) == 0:
        return []
    med = float(np.median(steps))
    if not med > 0:
        return []
    return [int(i) + 1 for i in np.flatnonzero(steps > GAP_FACTOR * med)]


def block_sums(counts: np.ndarray, block_px: int) -> np.ndarray:
    """Sums of ``block_px`` x ``block_px`` blocks of a frame of counts (edges cropped)."""
    h, w = counts.shape
    hb, wb = max(h // block_px, 1), max(w // block_px, 1)
    b = min(block_px, h, w)
    cut = counts[: hb * b, : wb * b].astype(np.float64)
    return cut.reshape(hb, b, wb, b).sum(axis=(1, 3))


def block_size(mean_counts: float) -> int:
    """Block side [px] giving about :data:`BLOCK_COUNTS` counts per block."""
    if not mean_counts > 0:
        return 16
    return max(2, math.ceil(math.sqrt(BLOCK_COUNTS / mean_counts)))


class ChangeStatistic:
    """Sudden changes of the aligned raw counts, located frame by frame (see the module).

    For each candidate frame t the block sums of the k frames before t and the k frames
    from t on are compared: z_b = (mean_after - mean_before) / sqrt((mean_after +
    mean_before) / k) for every block b, and S_t = max_b |z_b|. Under static content and
    Poisson noise z_b is standard normal, so S_t stays near the maximum of a few hundred
    |N(0, 1)| (3-4); a change of a few columns gives z of ten or more in its blocks. A frame
    starts a new segment where S_t is the largest within +-k frames and exceeds the movie's
    median by more than :data:`BREAK_ROBUST_Z` robust standard deviations (1.4826 MAD) and is
    at least :data:`BREAK_MIN_RATIO` times the median. Memory: 2k frames of block sums.
    """

    def __init__(self, k: int = CHANGE_WINDOW_FRAMES) -> None:
        self.k = k
        self.block_px: int | None = None
        self.buffer: list[np.ndarray] = []
        self.values: list[float] = []
        self.n = 0

    def add(self, counts: np.ndarray) -> None:
        """Add the next processed, aligned frame of counts."""
        if self.block_px is None:
            self.block_px = block_size(float(np.mean(counts)))
        self.buffer = [*self.buffer, block_sums(counts, self.block_px)][-2 * self.k :]
        self.n += 1
        if len(self.buffer) == 2 * self.k:  # candidate t = n - k
            before = np.mean(self.buffer[: self.k], axis=0)
            after = np.mean(self.buffer[self.k :], axis=0)
            var = (before + after) / self.k
            ok = var > 0
            z = np.abs(after - before)[ok] / np.sqrt(var[ok])
            self.values.append(float(z.max()) if z.size else float("nan"))

    def statistic(self) -> np.ndarray:
        """S_t for every frame (NaN where the windows do not fit)."""
        out = np.full(self.n, np.nan)
        out[self.k : self.k + len(self.values)] = self.values
        return out

    def breaks(self) -> list[int]:
        """Frames that start a new segment after a sudden change."""
        d = self.statistic()
        fin = d[np.isfinite(d)]
        if len(fin) < 5:
            return []
        med = float(np.median(fin))
        mad = 1.4826 * float(np.median(np.abs(fin - med)))
        scale = max(mad, 0.05 * med, 1e-12)
        out = []
        for t in np.flatnonzero(np.isfinite(d)):
            if (d[t] - med) / scale <= BREAK_ROBUST_Z or d[t] <= BREAK_MIN_RATIO * med:
                continue
            lo, hi = max(0, t - self.k), min(len(d), t + self.k + 1)
            if d[t] >= np.nanmax(d[lo:hi]):
                out.append(int(t))
        return out


def segments(breaks: Sequence[int], n_frames: int) -> list[tuple[int, int]]:
    """Segments [start, stop) of ``n_frames`` frames split at the ``breaks``."""
    cuts = sorted({b for b in breaks if 0 < b < n_frames})
    edges = [0, *cuts, n_frames]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def segment_window(t: int, n_window: int, breaks: Sequence[int], n_frames: int) -> list[int]:
    """``n_window`` frame indices centred on ``t`` inside t's segment, reflected (not
    repeated) at the segment's ends; without breaks, the reflected window of the movie."""
    start, stop = next((a, b) for a, b in segments(breaks, n_frames) if a <= t < b)
    length = stop - start
    half = n_window // 2
    out = []
    for i in range(t - start - half, t - start + half + 1):
        if length == 1:
            out.append(start)
            continue
        period = 2 * (length - 1)
        i = i % period
        out.append(start + (i if i < length else period - i))
    return out
