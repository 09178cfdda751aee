"""Per-pixel segmentation targets drawn from a structure's projected column table.

For an image at exit-plane depth ``z_exit`` [Å] and beam tilt (tx, ty) [mrad], each column of
``etem.structures.column_table.column_table(atoms, z_max_A=z_exit)`` is drawn as a disc of radius
``label_disc_radius_A`` at its image position: the projected position shifted by the tilt,
``x + (z_exit - z_c) * tan(tx)`` with ``z_c`` the column's mid depth (abTEM applies the tilt
as a phase ramp in the Fresnel propagator, which shifts the wave by ``dz * tan(t)`` per
slice). Positions wrap around the periodic cell. Maps are in image order (row = y,
column = x; pixel [i, j] samples x = j * p, y = i * p).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from etem.simulation.contract import CLASSES

#: Class index of each column site.
SITE_CLASS: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

#: Label maps of one image: name -> dtype.
LABEL_MAPS: dict[str, Any] = {
    "class": np.uint8,
    "cation_occupancy": np.float32,
    "anion_occupancy": np.float32,
    "anion_fraction": np.float32,
}


def image_columns(
    columns: Any, z_exit_A: float, tilt_mrad: tuple[float, float], extent_A: float
) -> Any:
    """The column table with image positions ``x_A``, ``y_A`` after the tilt shift (wrapped).

    Columns without atoms above the exit plane are dropped.
    """
    df = columns[columns["n_atoms"] > 0].copy() if len(columns) else columns.copy()
    if not len(df):
        return df
    zc = 0.5 * (df["z_min_A"].to_numpy(float) + df["z_max_A"].to_numpy(float))
    lever = z_exit_A - zc
    df["x_A"] = np.mod(df["x_A"].to_numpy(float) + lever * np.tan(tilt_mrad[0] * 1e-3), extent_A)
    df["y_A"] = np.mod(df["y_A"].to_numpy(float) + lever * np.tan(tilt_mrad[1] * 1e-3), extent_A)
    return df


def label_maps(
    columns: Any, output_px: int, pixel_size_A: float, radius_A: float
) -> dict[str, np.ndarray]:
    """Draw the discs of ``columns`` (image positions [Å]) into label maps (output_px square).

    Classes are drawn in CLASSES order, so metal discs lie on top of support discs.
    """
    n = int(output_px)
    maps = {name: np.zeros((n, n), dtype=dt) for name, dt in LABEL_MAPS.items()}
    if not len(columns):
        return maps
    r_px = radius_A / pixel_size_A
    half = int(np.ceil(r_px)) + 1
    offs = np.arange(-half, half + 1)
    xs = columns["x_A"].to_numpy(float) / pixel_size_A
    ys = columns["y_A"].to_numpy(float) / pixel_size_A
    site_class = np.array([SITE_CLASS.get(str(s), 0) for s in columns["site"]], dtype=np.uint8)
    n_atoms = columns["n_atoms"].to_numpy(np.float32)
    occ = columns["occupancy"].to_numpy(np.float32)
    # candidate pixels of every column: (M, K, K) around the nearest pixel
    ii = np.round(ys).astype(int)[:, None, None] + offs[None, :, None]
    jj = np.round(xs).astype(int)[:, None, None] + offs[None, None, :]
    inside = (ii - ys[:, None, None]) ** 2 + (jj - xs[:, None, None]) ** 2 <= r_px**2
    shape = (len(xs), len(offs), len(offs))
    ii, jj = np.broadcast_to(ii, shape), np.broadcast_to(jj, shape)
    for cls in sorted(set(site_class.tolist())):  # metal (highest class) drawn last
        sel = inside & (site_class == cls)[:, None, None]
        col = np.broadcast_to(np.arange(len(xs))[:, None, None], shape)[sel]
        rr, cc = np.mod(ii[sel], n), np.mod(jj[sel], n)
        maps["class"][rr, cc] = cls
        if CLASSES[cls] == "cation":
            maps["cation_occupancy"][rr, cc] = n_atoms[col]
        elif CLASSES[cls] == "anion":
            maps["anion_occupancy"][rr, cc] = n_atoms[col]
            maps["anion_fraction"][rr, cc] = occ[col]
    return maps
