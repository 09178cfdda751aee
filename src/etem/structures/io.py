"""Reading and writing structure files (extended XYZ) with their vacancy sites.

In memory, the vacant lattice sites of a structure live in ``atoms.info``:
``"vacancy_positions"`` (float array (N, 3) [Å]) and ``"vacancy_symbols"`` (list of N element
symbols). On disk they are flattened to the extxyz info keys ``vacancy_xyz`` and
``vacancy_symbols`` (see :mod:`etem.structures.contract`).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read

from etem.errors import InputError
from etem.io import atomic_path

ATOM_LINE = "%-2s %16.8f %16.8f %16.8f %3d %3d\n"
VACANCY_POSITIONS = "vacancy_positions"
VACANCY_SYMBOLS = "vacancy_symbols"
#: info keys that are always strings (extxyz would parse '110' or '111' as numbers).
STRING_KEYS = ("structure_id", "family", "material", "zone_axis", "particle_shape",
               "support_facet", "surface_facet", "vacancy_mode", "defects")


def vacancy_sites(atoms: Atoms) -> tuple[np.ndarray, list[str]]:
    """Vacant lattice sites of ``atoms``: positions (N, 3) [Å] and element symbols."""
    pos = atoms.info.get(VACANCY_POSITIONS)
    sym = atoms.info.get(VACANCY_SYMBOLS)
    if pos is None or sym is None or len(sym) == 0:
        return np.zeros((0, 3)), []
    return np.asarray(pos, dtype=float).reshape(-1, 3), list(sym)


def set_vacancy_sites(atoms: Atoms, positions: np.ndarray, symbols: list[str]) -> None:
    """Record vacant lattice sites in ``atoms.info`` (replacing any recorded before)."""
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    if len(positions) != len(symbols):
        raise ValueError("one symbol per vacancy position expected")
    atoms.info[VACANCY_POSITIONS] = positions
    atoms.info[VACANCY_SYMBOLS] = list(symbols)


def _format_value(value: Any) -> str:
    """One extxyz info value (ASE's key=value syntax)."""
    if isinstance(value, bool | np.bool_):
        return "T" if value else "F"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, np.ndarray | list | tuple):
        return '"' + " ".join(repr(float(v)) for v in np.ravel(value)) + '"'
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def structure_bytes(atoms: Atoms) -> bytes:
    """The extxyz serialisation of ``atoms`` (deterministic: same structure, same bytes).

    Written directly (about 10x faster than ``ase.io.write``) in the extxyz format that
    ``ase.io.read`` parses: positions with 8 decimals [Å], per-atom ``region`` and ``valence``.
    """
    info: dict[str, Any] = {}
    for key, value in atoms.info.items():
        if key not in (VACANCY_POSITIONS, VACANCY_SYMBOLS):
            info[key] = value
    pos, sym = vacancy_sites(atoms)
    if sym:
        info["vacancy_xyz"] = np.round(pos, 8).ravel()
        info["vacancy_symbols"] = " ".join(sym)
    cell = atoms.cell.array
    lattice = " ".join(repr(float(v)) for v in cell.ravel())
    pbc = " ".join("T" if b else "F" for b in atoms.pbc)
    fields = [f'Lattice="{lattice}"',
              "Properties=species:S:1:pos:R:3:region:I:1:valence:I:1"]
    fields += [f"{k}={_format_value(v)}" for k, v in info.items()]
    fields.append(f'pbc="{pbc}"')
    p = atoms.get_positions()
    region = atoms.arrays["region"]
    valence = atoms.arrays["valence"]
    head = f"{len(atoms)}\n{' '.join(fields)}\n"
    rows = zip(atoms.get_chemical_symbols(), p[:, 0].tolist(), p[:, 1].tolist(),
               p[:, 2].tolist(), region.tolist(), valence.tolist(), strict=True)
    body = (ATOM_LINE * len(atoms)) % tuple(itertools.chain.from_iterable(rows))
    return (head + body).encode("utf-8")


def write_structure(path: str | os.PathLike[str], atoms: Atoms) -> Path:
    """Write ``atoms`` (with its vacancies) atomically as extxyz; returns the path."""

    path = Path(path)
    data = structure_bytes(atoms)
    with atomic_path(path, suffix=".extxyz") as tmp:
        tmp.write_bytes(data)
    return path


def read_structure(path: str | os.PathLike[str]) -> Any:
    """Read one structure file written by the structures stage.

    Returns an ``ase.Atoms`` with the per-atom arrays ``region`` and ``valence``, the recipe
    in ``atoms.info`` (``info["recipe"]`` decoded to a dict) and the vacant lattice sites as
    ``info["vacancy_positions"]`` (float (N, 3) [Å]) and ``info["vacancy_symbols"]`` (list).

    Raises
    ------
    InputError
        If the file is missing or not a readable extxyz structure.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"structure {path}: no such file")
    try:
        atoms = read(path, format="extxyz")
    except Exception as exc:
        raise InputError(f"structure {path}: not a readable extxyz file ({exc})") from None
    assert isinstance(atoms, Atoms)  # one frame: read() returns the last image
    info = atoms.info
    flat = info.pop("vacancy_xyz", None)
    symbols = info.pop("vacancy_symbols", "")
    if isinstance(symbols, str):
        symbols = symbols.split()
    elif isinstance(symbols, np.ndarray | list | tuple):  # pragma: no cover - defensive
        symbols = [str(s) for s in np.ravel(symbols)]
    else:
        symbols = [str(symbols)]
    positions = np.zeros((0, 3)) if flat is None else np.asarray(flat, dtype=float).reshape(-1, 3)
    if len(positions) != len(symbols):
        raise InputError(
            f"structure {path}: {len(positions)} vacancy positions but {len(symbols)} symbols"
        )
    set_vacancy_sites(atoms, positions, symbols)
    for key in STRING_KEYS:  # extxyz turns '110' into an int: restore strings
        if key in info and not isinstance(info[key], str):
            info[key] = str(info[key])
    if isinstance(info.get("recipe"), str):
        try:
            info["recipe"] = json.loads(info["recipe"])
        except json.JSONDecodeError:
            raise InputError(f"structure {path}: info 'recipe' is not valid JSON") from None
    for name in ("region", "valence"):
        if name not in atoms.arrays:
            raise InputError(f"structure {path}: per-atom array {name!r} missing")
    return atoms
