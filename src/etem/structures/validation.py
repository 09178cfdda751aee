"""Physical validation of a structure before it is written.

Each rule raises :class:`etem.errors.ValidationError` with ``"<structure_id>: <reason>"``:

* :func:`check_min_distance`: no two atoms closer than ``factor`` x the sum of their covalent
  radii (periodic along x and y);
* :func:`check_inside_cell`: every atom (and vacancy site) inside the cell, with at least the
  configured vacuum above and below along the beam;
* :func:`check_on_support`: a Pt particle sits on, not inside, the support: its smallest
  distance to the support lies in the configured gap range and no particle atom lies below
  the support surface beneath it;
* :func:`check_vacancies`: the vacancies of the column table equal the recorded removed
  atoms, and no vacancy site is occupied;
* :func:`check_stoichiometry`: the oxide crystal (with its vacancies refilled) is exactly
  stoichiometric, so defect-free CeO2 has O:Ce = 2 and SrTiO3 Sr:Ti:O = 1:1:3.

Reproducibility (same config and seed give byte-identical files) is checked by the library
builder, which rebuilds a structure of every shard and compares bytes
(:func:`etem.structures.library.check_reproducible`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from scipy.spatial import cKDTree

from etem.errors import ValidationError
from etem.structures.io import vacancy_sites


def _sid(atoms: Atoms) -> str:
    return str(atoms.info.get("structure_id", "<structure>"))


def check_min_distance(atoms: Atoms, factor: float) -> None:
    """No pair closer than ``factor * (r_cov_i + r_cov_j)`` [Å] (x, y periodic)."""

    pos = atoms.get_positions()
    if len(pos) < 2:
        return
    radii = covalent_radii[atoms.numbers]
    cell = atoms.cell.lengths()
    span_z = np.ptp(pos[:, 2]) + 10.0
    box = np.array([cell[0], cell[1], 2 * span_z + 10.0])
    wrapped = pos.copy()
    wrapped[:, :2] = np.mod(wrapped[:, :2], cell[:2])
    wrapped[:, 2] = wrapped[:, 2] - wrapped[:, 2].min()
    r_max = 2.0 * factor * radii.max()
    tree = cKDTree(wrapped, boxsize=box)
    pairs = tree.query_pairs(r_max, output_type="ndarray")
    if len(pairs) == 0:
        return
    d = wrapped[pairs[:, 0]] - wrapped[pairs[:, 1]]
    d -= box * np.round(d / box)
    dist = np.linalg.norm(d, axis=1)
    limit = factor * (radii[pairs[:, 0]] + radii[pairs[:, 1]])
    bad = np.flatnonzero(dist < limit)
    if len(bad):
        k = bad[np.argmin(dist[bad] / limit[bad])]
        i, j = pairs[k]
        sym = atoms.get_chemical_symbols()
        raise ValidationError(
            f"{_sid(atoms)}: atoms {i} ({sym[i]}) and {j} ({sym[j]}) are {dist[k]:.2f} Å apart, "
            f"closer than {limit[k]:.2f} Å ({factor} x covalent radii); {len(bad)} such pairs"
        )


def check_inside_cell(atoms: Atoms, vacuum_z_A: float) -> None:
    """All atoms and vacancy sites in [0, L) along x and y, >= ``vacuum_z_A`` from z faces."""
    cell = atoms.cell
    if not np.allclose(cell.array, np.diag(cell.lengths())):
        raise ValidationError(f"{_sid(atoms)}: cell is not rectangular")
    lengths = cell.lengths()
    vpos, _ = vacancy_sites(atoms)
    pos = np.concatenate([atoms.get_positions(), vpos])
    for axis, name in ((0, "x"), (1, "y")):
        out = (pos[:, axis] < 0) | (pos[:, axis] >= lengths[axis])
        if out.any():
            v = pos[np.argmax(out), axis]
            raise ValidationError(
                f"{_sid(atoms)}: {int(out.sum())} sites outside the cell along {name} "
                f"(e.g. {name} = {v:.2f} Å, cell {lengths[axis]:.2f} Å)"
            )
    tol = 1e-6
    if pos[:, 2].min() < vacuum_z_A - tol or pos[:, 2].max() > lengths[2] - vacuum_z_A + tol:
        raise ValidationError(
            f"{_sid(atoms)}: atoms span z = {pos[:, 2].min():.2f}..{pos[:, 2].max():.2f} Å in a "
            f"{lengths[2]:.2f} Å cell: less than {vacuum_z_A} Å vacuum above/below along z"
        )


def check_on_support(atoms: Atoms, gap_range_A: tuple[float, float]) -> None:
    """The particle (region 1) sits on the support (region 0) with a gap in ``gap_range_A``."""

    region = atoms.arrays["region"]
    pos = atoms.get_positions()
    part, sup = pos[region == 1], pos[region == 0]
    if len(part) == 0 or len(sup) == 0:
        raise ValidationError(f"{_sid(atoms)}: particle or support missing")
    gap = float(cKDTree(sup).query(part, k=1)[0].min())
    lo, hi = gap_range_A
    if not lo <= gap <= hi:
        raise ValidationError(
            f"{_sid(atoms)}: particle-support gap {gap:.2f} Å outside [{lo}, {hi}] Å"
        )
    # no particle atom below a support atom that lies under it (y grows downwards)
    tree = cKDTree(sup[:, [0, 2]])
    d, j = tree.query(part[:, [0, 2]], k=16, distance_upper_bound=2.0)
    sup_y = np.append(sup[:, 1], np.inf)  # index len(sup) = no neighbour
    top = np.where(np.isfinite(d), sup_y[np.minimum(j, len(sup))], np.inf).min(axis=1)
    bad = np.flatnonzero(part[:, 1] > top)
    if len(bad):
        i = bad[0]
        raise ValidationError(
            f"{_sid(atoms)}: particle inside the support (Pt atom at y = {part[i, 1]:.2f} "
            f"Å below the support surface at {top[i]:.2f} Å)"
        )


def check_vacancies(atoms: Atoms, table: Any, n_removed: int) -> None:
    """Column-table vacancies == recorded vacancy sites == ``n_removed``; sites are empty."""

    vpos, vsym = vacancy_sites(atoms)
    n_table = int(table["n_vacancies"].sum())
    if not n_table == len(vsym) == n_removed:
        raise ValidationError(
            f"{_sid(atoms)}: vacancy counts disagree: column table {n_table}, recorded sites "
            f"{len(vsym)}, removed atoms {n_removed}"
        )
    if len(vpos) and len(atoms):
        d = cKDTree(atoms.get_positions()).query(vpos, k=1)[0]
        if d.min() < 0.5:
            raise ValidationError(
                f"{_sid(atoms)}: vacancy site {int(np.argmin(d))} is occupied by an atom "
                f"({d.min():.2f} Å away)"
            )


def check_stoichiometry(atoms: Atoms) -> None:
    """The oxide crystal (region 0), vacancies refilled, is exactly stoichiometric."""
    region = atoms.arrays["region"]
    sym = np.array(atoms.get_chemical_symbols())[region == 0]
    counts = Counter(sym.tolist())
    _, vsym = vacancy_sites(atoms)
    vac = Counter(vsym)
    n_o = counts["O"] + vac["O"]
    if counts["Ce"]:
        if n_o != 2 * counts["Ce"] or vac["Ce"]:
            raise ValidationError(
                f"{_sid(atoms)}: CeO2 not stoichiometric: {counts['O']} O + {vac['O']} O "
                f"vacancies for {counts['Ce']} Ce (O:Ce must be 2 with vacancies refilled)"
            )
    if counts["Sr"] or counts["Ti"]:
        if counts["Sr"] != counts["Ti"] or n_o != 3 * counts["Sr"]:
            raise ValidationError(
                f"{_sid(atoms)}: SrTiO3 not stoichiometric: Sr {counts['Sr']}, Ti "
                f"{counts['Ti']}, O {counts['O']} + {vac['O']} vacancies"
            )


def validate(
    atoms: Atoms, table: Any, n_removed: int, min_distance_factor: float, vacuum_z_A: float,
    gap_range_A: tuple[float, float] | None,
) -> None:
    """Apply every rule; raise :class:`ValidationError` on the first failure."""
    check_inside_cell(atoms, vacuum_z_A)
    check_min_distance(atoms, min_distance_factor)
    if atoms.info.get("family") == "pt_on_ceo2":
        if gap_range_A is None:
            raise ValueError("gap range needed for pt_on_ceo2 structures")
        check_on_support(atoms, gap_range_A)
    check_vacancies(atoms, table, n_removed)
    check_stoichiometry(atoms)
