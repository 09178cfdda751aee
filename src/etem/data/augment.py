"""Training augmentations: the 8 dihedral transforms (rotations by 90° and flips) of
square-lattice images, and erased discs (columns removed from a region of the clean image)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

#: Width [Å] of the Gaussian that replaces the columns inside an erased disc (the columns'
#: spacing, 2-4 Å, is averaged away) and of the disc's soft edge.
ERASE_BLUR_A = 2.0


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


def erase_disc(
    clean: np.ndarray, centre_yx: tuple[float, float], radius_px: float, pixel_size_A: float
) -> np.ndarray:
    """``clean`` (H, W, vacuum = 1) with the columns inside a disc removed: there the image
    is blended into its Gaussian blur of :data:`ERASE_BLUR_A` (a smooth edge that wide), so
    the local mean stays and the lattice goes — a vacancy patch, an amorphous region or a
    hole, the non-periodic content that a filter keeping the lattice's Bragg reflections
    (the Wiener filter) paints over. Returns a float32 copy."""
    img = np.asarray(clean, dtype=np.float32)
    blur_px = ERASE_BLUR_A / pixel_size_A
    smooth = gaussian_filter(img, blur_px, mode="reflect")
    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
    dist = np.hypot(yy - centre_yx[0], xx - centre_yx[1])
    inside = np.clip((radius_px - dist) / blur_px + 0.5, 0.0, 1.0).astype(np.float32)
    return (img * (1 - inside) + smooth * inside).astype(np.float32)
