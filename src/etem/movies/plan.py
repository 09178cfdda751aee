"""Frame ranges of a movie's shard jobs (light: the workflow plans with it at parse time)."""

from __future__ import annotations

import math


def shard_ranges(n_frames: int, shard_frames: int, chunk_frames: int) -> list[tuple[int, int]]:
    """Frame ranges [start, stop) of the shards of a movie: ``shard_frames`` rounded up to a
    multiple of ``chunk_frames`` (chunk boundaries are shared by all shardings)."""
    step = max(1, math.ceil(shard_frames / chunk_frames)) * chunk_frames
    return [(a, min(a + step, n_frames)) for a in range(0, n_frames, step)] or [(0, 0)]
