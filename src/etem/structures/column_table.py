"""Projected atomic columns along the beam: the ground truth of occupancy labels.

Conventions
-----------
The beam enters the cell at z = 0 and propagates to +z (abTEM). An exit plane at depth t [Å]
sees the atoms with z < t (relative to the cell origin), so ``column_table(atoms, z_max_A=t)``
gives the columns as imaged at that thickness. Positions are in the cell frame, which is the
image frame: x to the right (image column index = x / pixel size [Å]) and y *down the image*
(image row index = y / pixel size [Å]).

A column is a set of lattice sites of one element (atoms and vacant sites) whose projections on
the (x, y) plane are chained within :data:`LINK_RADIUS_A` (single linkage), so slightly tilted or
strained columns stay one column. Cations, anions and metal atoms are grouped separately, so a
mixed column (e.g. Ti-O in SrTiO3 [001]) gives one cation row and one anion row at the same
(x, y). Column ids are assigned on all sites of the structure (full depth) and stay the same for
any ``z_max_A``; columns with no site in the range are dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from etem.structures.contract import COLUMN_TABLE_COLUMNS, SITE_OF_ELEMENT
from etem.structures.io import vacancy_sites

#: Projected distance [Å] below which two sites of one element belong to the same column.
LINK_RADIUS_A = 0.6


def _components(xy: np.ndarray, radius: float) -> np.ndarray:
    """Single-linkage cluster label of each 2D point."""

    n = len(xy)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(xy).query_pairs(radius, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def column_table(atoms: Atoms, z_max_A: float | None = None) -> Any:
    """Projected column table of a structure along z.

    Parameters
    ----------
    atoms : ase.Atoms
        A structure of this stage (vacancies in ``atoms.info``, Ce3+ as ``valence`` 3).
    z_max_A : float, optional
        Count only sites with z < z_max_A [Å] (exit plane at that depth); all when None.

    Returns
    -------
    pandas.DataFrame
        One row per column, :data:`~etem.structures.contract.COLUMN_TABLE_COLUMNS`, sorted by
        ``column_id``: ``x_A``, ``y_A`` [Å] (mean projected position of all the column's
        sites, image frame: row index = y / pixel size), ``element``, ``site`` ('cation',
        'anion', 'metal'), ``n_sites``, ``n_atoms``, ``n_vacancies``, ``occupancy`` =
        n_atoms / n_sites, ``n_reduced`` (Ce3+), ``z_min_A``/``z_max_A`` [Å].
    """

    symbols = np.array(atoms.get_chemical_symbols(), dtype=object)
    pos = atoms.get_positions()
    vpos, vsym = vacancy_sites(atoms)
    valence = atoms.arrays.get("valence")
    reduced = (
        (symbols == "Ce") & (np.asarray(valence) == 3)
        if valence is not None else np.zeros(len(atoms), dtype=bool)
    )
    all_sym = np.concatenate([symbols, np.array(vsym, dtype=object)])
    all_pos = np.concatenate([pos, vpos]) if len(vpos) else pos
    occupied = np.concatenate([np.ones(len(pos), bool), np.zeros(len(vpos), bool)])
    all_red = np.concatenate([reduced, np.zeros(len(vpos), bool)])

    parts: list[dict[str, Any]] = []
    for element in sorted(set(all_sym.tolist())):
        if element not in SITE_OF_ELEMENT:
            raise ValueError(f"element {element!r} has no label class")
        idx = np.flatnonzero(all_sym == element)
        labels = _components(all_pos[idx, :2], LINK_RADIUS_A)
        k = int(labels.max()) + 1
        z = all_pos[idx, 2]
        inside = z < z_max_A if z_max_A is not None else np.ones(len(idx), bool)
        n_all = np.bincount(labels, minlength=k)
        x = np.bincount(labels, weights=all_pos[idx, 0], minlength=k) / n_all
        y = np.bincount(labels, weights=all_pos[idx, 1], minlength=k) / n_all
        zmin = np.full(k, np.inf)
        zmax = np.full(k, -np.inf)
        np.minimum.at(zmin, labels[inside], z[inside])
        np.maximum.at(zmax, labels[inside], z[inside])
        parts.append({
            "element": np.full(k, element, dtype=object), "x_A": x, "y_A": y,
            "site": np.full(k, SITE_OF_ELEMENT[element], dtype=object),
            "n_sites": np.bincount(labels, weights=inside, minlength=k).astype(np.int64),
            "n_atoms": np.bincount(labels, weights=inside & occupied[idx],
                                   minlength=k).astype(np.int64),
            "n_reduced": np.bincount(labels, weights=inside & all_red[idx],
                                     minlength=k).astype(np.int64),
            "z_min_A": np.where(np.isfinite(zmin), zmin, np.nan),
            "z_max_A": np.where(np.isfinite(zmax), zmax, np.nan),
        })
    cols = {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)
            for name in ("element", "x_A", "y_A", "site", "n_sites", "n_atoms", "n_reduced",
                         "z_min_A", "z_max_A")}
    # stable ids: sorted by element, then row (y), then x, on the full-depth columns
    order = np.lexsort((np.round(cols["x_A"], 3), np.round(cols["y_A"], 3),
                        cols["element"].astype(str)))
    cols = {k: v[order] for k, v in cols.items()}
    cols["column_id"] = np.arange(len(order), dtype=np.int64)
    cols["n_vacancies"] = cols["n_sites"] - cols["n_atoms"]
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["occupancy"] = np.where(cols["n_sites"] > 0, cols["n_atoms"] / cols["n_sites"],
                                     np.nan)
    df = pd.DataFrame({name: cols[name] for name in COLUMN_TABLE_COLUMNS})
    df = df[df["n_sites"] > 0].reset_index(drop=True)
    return df.astype({
        "column_id": "int64", "n_sites": "int64", "n_atoms": "int64", "n_vacancies": "int64",
        "n_reduced": "int64", "x_A": "float64", "y_A": "float64", "occupancy": "float64",
    })
