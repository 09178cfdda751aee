"""The 8 dihedral transforms (rotations by 90° and flips) of square-lattice images."""

from __future__ import annotations

import numpy as np


def dihedral(arr: np.ndarray, k: int) -> np.ndarray:
    """Transform ``k`` in 0..7 of the last two axes: rotate by k*90°, transposed for k >= 4.

    Returns a contiguous copy.
    """
    if not 0 <= k < 8:
        raise ValueError(f"dihedral index {k} not in 0..7")
    out = np.rot90(arr, k % 4, axes=(-2, -1))
    if k >= 4:
        out = np.swapaxes(out, -2, -1)
    return np.ascontiguousarray(out)
