"""Tiny structures and manifests for the simulation tests (ASE-built, no structures stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etem.simulation.contract import PARAM_COLUMNS, STRING_COLUMNS
from etem.simulation.labels import LABEL_MAPS
from etem.simulation.shard import write_shard


def ceo2_slab(reps: int = 2, extent_A: float = 10.82, depth_cells: int = 2) -> Any:
    """A CeO2 [001] slab: ``reps`` x ``reps`` cubic cells laterally, vacuum along z."""
    import ase.build

    a = 5.411
    atoms = ase.build.bulk("CeO2", "fluorite", a=a, cubic=True) * (reps, reps, depth_cells)
    atoms.set_cell([extent_A, extent_A, depth_cells * a + 4.0])
    atoms.positions[:, 2] += 2.0
    atoms.pbc = (True, True, False)
    atoms.arrays["region"] = np.zeros(len(atoms), dtype=int)
    symbols = atoms.get_chemical_symbols()
    atoms.arrays["valence"] = np.array([4 if s == "Ce" else -2 for s in symbols])
    return atoms


def pt_on_ceo2(extent_A: float = 10.82) -> Any:
    """A CeO2 slab with a small Pt cluster (5 atoms) above it along z."""
    from ase import Atoms

    slab = ceo2_slab(extent_A=extent_A)
    pt = Atoms("Pt5", positions=[[2.7, 2.7, 0], [5.4, 2.7, 0], [2.7, 5.4, 0], [5.4, 5.4, 0],
                                 [4.05, 4.05, 2.0]])
    depth = slab.cell[2, 2]
    slab.set_cell([extent_A, extent_A, depth + 6.0])
    pt.positions[:, 2] += depth + 1.0
    pt.arrays["region"] = np.ones(5, dtype=int)
    pt.arrays["valence"] = np.zeros(5, dtype=int)
    slab.extend(pt)
    return slab


def single_atom(element: str = "Pt", extent_A: float = 12.0, depth_A: float = 6.0,
                xy: tuple[float, float] = (6.0, 6.0), z_A: float = 3.0) -> Any:
    """One atom in a vacuum box."""
    from ase import Atoms

    atoms = Atoms(element, positions=[[xy[0], xy[1], z_A]], cell=[extent_A, extent_A, depth_A],
                  pbc=(True, True, False))
    atoms.arrays["region"] = np.ones(1, dtype=int)
    atoms.arrays["valence"] = np.zeros(1, dtype=int)
    return atoms


def write_manifest(folder: Path, structures: dict[str, tuple[str, Any]]) -> Path:
    """Write structures (id -> (family, atoms)) and a manifest.csv; returns its path."""
    import pandas as pd

    from etem.io import write_table
    from etem.structures.io import write_structure

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for sid, (family, atoms) in structures.items():
        atoms.info["structure_id"] = sid
        atoms.info["family"] = family
        write_structure(folder / "files" / f"{sid}.extxyz", atoms)
        rows.append({"structure_id": sid, "family": family, "path": f"files/{sid}.extxyz",
                     "n_atoms": len(atoms)})
    path = folder / "manifest.csv"
    write_table(path, pd.DataFrame(rows))
    return path


def write_blank_shard(path: Path, n: int, px: int, prefix: str) -> None:
    """A shard of ``n`` uniform (vacuum) ``px`` x ``px`` images with every /params column at
    a neutral value (ids ``<prefix>_<i>``), empty label maps and no columns: the contract's
    layout without a simulation."""
    rows = []
    for i in range(n):
        row = {c: ("x" if c in STRING_COLUMNS else 0.0) for c in PARAM_COLUMNS}
        row.update(image_id=f"{prefix}_{i}", detector_mtf="none", energy_kv=300.0)
        rows.append(row)
    cols = pd.DataFrame({c: [] for c in ("image_index", "column_id", "x_A", "y_A", "element",
                                         "site", "n_atoms", "n_sites", "occupancy")})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_shard(path, np.ones((n, px, px), np.float32),
                {k: np.zeros((n, px, px), dt) for k, dt in LABEL_MAPS.items()}, rows, cols, {})
