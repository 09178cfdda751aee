"""Assemble a structure as ``ase.Atoms`` with the contract's arrays and info; Ce3+ labelling."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from etem.structures.io import set_vacancy_sites
from etem.structures.recipes import Recipe


def make_atoms(
    recipe: Recipe,
    symbols: list[str],
    positions: np.ndarray,
    region: np.ndarray,
    valence: np.ndarray,
    cell: tuple[float, float, float],
    vacancy_positions: np.ndarray,
    vacancy_symbols: list[str],
    info: dict[str, Any],
) -> Any:
    """An ``ase.Atoms`` with the contract's arrays and info (see etem.structures.contract)."""
    atoms = Atoms(symbols=symbols, positions=np.round(positions, 8), cell=np.diag(cell),
                  pbc=(True, True, False))
    atoms.new_array("region", np.asarray(region, dtype=np.int64))
    atoms.new_array("valence", np.asarray(valence, dtype=np.int64))
    atoms.info.update({
        "structure_id": recipe.structure_id, "family": recipe.family,
        "material": recipe.material, "zone_axis": f"[{recipe.zone_axis}]", "seed": recipe.seed,
    })
    atoms.info.update(info)
    atoms.info["recipe"] = recipe.to_json()
    set_vacancy_sites(atoms, np.round(vacancy_positions, 8), list(vacancy_symbols))
    return atoms


def reduce_nearest_ce(
    positions: np.ndarray, symbols: list[str], valence: np.ndarray, sites: np.ndarray,
    per_site: int,
) -> int:
    """Label the ``per_site`` nearest not-yet-reduced Ce of each vacancy site as Ce3+.

    Modifies ``valence`` in place (4 -> 3); returns the number of Ce3+ added.
    """
    if per_site <= 0 or len(sites) == 0:
        return 0
    ce = np.flatnonzero(np.asarray(symbols) == "Ce")
    if len(ce) == 0:
        return 0
    n = 0
    for s in sites:
        d = np.linalg.norm(positions[ce] - s, axis=1)
        picked = 0
        for j in ce[np.argsort(d, kind="stable")]:
            if valence[j] == 4:
                valence[j] = 3
                n += 1
                picked += 1
                if picked == per_site:
                    break
    return n
