"""The structure library: build a shard (files, manifest, column tables) and gather shards.

``build_shard`` builds the recipes of one shard (``etem.cliutils.shard_slice`` over the
enumeration), validates each structure, writes ``<id>.extxyz``, ``columns.h5`` and
``manifest.csv`` into the shard folder, and checks reproducibility by rebuilding the shard's
first structure and comparing bytes. ``gather`` concatenates shard manifests into the
campaign manifest (paths relative to it).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from ase import Atoms

from etem.cliutils import shard_slice
from etem.config import EtemConfig
from etem.errors import InputError, ValidationError
from etem.io import atomic_path, h5_write_attrs, write_table
from etem.progress import progress
from etem.provenance import provenance
from etem.structures.build import build
from etem.structures.column_table import column_table
from etem.structures.contract import (
    COLUMN_TABLE_COLUMNS,
    COLUMN_UNITS,
    CONTRACT_VERSION,
    MANIFEST_COLUMNS,
)
from etem.structures.io import structure_bytes
from etem.structures.recipes import Recipe, enumerate_recipes
from etem.structures.validation import validate

log = logging.getLogger("etem.structures.library")

COLUMNS_FILE = "columns.h5"
MANIFEST_FILE = "manifest.csv"


def build_validated(
    recipe: Recipe, min_distance_factor: float = 0.7,
) -> tuple[Any, Any, bytes]:
    """Build, tabulate and validate one structure: (atoms, column table, extxyz bytes)."""

    atoms = build(recipe)
    table = column_table(atoms)
    p = recipe.params
    gap = tuple(p["interface_gap_range_A"]) if recipe.family == "pt_on_ceo2" else None
    validate(atoms, table, int(atoms.info["n_removed"]), min_distance_factor,
             p["vacuum_z_A"], gap)
    return atoms, table, structure_bytes(atoms)


def _work(args: tuple[Recipe, float, str]) -> tuple[dict[str, Any], Any]:
    """Build, validate and write one structure (in a worker); returns (manifest row, table)."""

    recipe, factor, out = args
    atoms, table, data = build_validated(recipe, factor)
    name = f"{recipe.structure_id}.extxyz"
    with atomic_path(Path(out) / name, suffix=".extxyz") as tmp:
        tmp.write_bytes(data)
    return manifest_row(atoms, recipe, name, COLUMNS_FILE), table


def manifest_row(atoms: Atoms, recipe: Recipe, path: str, columns_path: str) -> dict[str, Any]:
    """The manifest row of a built structure (MANIFEST_COLUMNS)."""
    info = atoms.info
    region = atoms.arrays["region"]
    lengths = atoms.cell.lengths()
    row = {
        "structure_id": recipe.structure_id, "family": recipe.family, "path": path,
        "columns_path": columns_path, "n_atoms": len(atoms), "material": recipe.material,
        "zone_axis": info["zone_axis"], "particle_shape": info["particle_shape"],
        "particle_size_nm": float(info["particle_size_nm"]),
        "particle_n_atoms": int((region >= 1).sum()),
        "support_facet": info["support_facet"], "surface_facet": info["surface_facet"],
        "thickness_nm": float(info["thickness_nm"]),
        "thickness_unit_cells": int(info["thickness_uc"]),
        "vacancy_mode": info["vacancy_mode"], "n_vacancies": int(info["n_removed"]),
        "n_reduced_ce": int(info["n_reduced_ce"]), "defects": info["defects"],
        "rotation_deg": float(info.get("rotation_deg", 0.0)),
        "tilt_deg": float(info.get("tilt_deg", 0.0)),
        "strain_percent": float(info.get("strain_percent", 0.0)),
        "interface_gap_A": float(info.get("interface_gap_A", np.nan)),
        "seed": int(recipe.seed),
        "cell_x_A": round(float(lengths[0]), 6), "cell_y_A": round(float(lengths[1]), 6),
        "cell_z_A": round(float(lengths[2]), 6),
    }
    assert list(row) == list(MANIFEST_COLUMNS)
    return row


def write_columns_h5(path: Path, tables: list[tuple[str, Any]], attrs: dict[str, Any]) -> None:
    """All column tables of a shard in one HDF5 file (flat, byte-reproducible).

    Layout: ``/columns/<name>`` (one dataset per COLUMN_TABLE_COLUMNS entry, all structures
    concatenated), ``/index/structure_id``, ``/index/start``, ``/index/count`` (rows of each
    structure). Read one table with :func:`read_columns`.
    """

    ids = [sid for sid, _ in tables]
    counts = np.array([len(t) for _, t in tables], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    full = pd.concat([t for _, t in tables], ignore_index=True) if tables else None
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w", track_order=False) as f:
        h5_write_attrs(f, {**attrs, "contract_version": CONTRACT_VERSION})
        g = f.create_group("columns")
        for name, doc in COLUMN_TABLE_COLUMNS.items():
            if full is None:
                data = np.zeros(0, dtype="S2" if doc.startswith("str") else float)
            elif doc.startswith("str"):
                data = full[name].astype(str).to_numpy().astype("S")
            else:
                data = full[name].to_numpy()
            ds = g.create_dataset(name, data=data, track_times=False)
            ds.attrs["description"] = doc
            ds.attrs["unit"] = COLUMN_UNITS.get(name, "")
        gi = f.create_group("index")
        gi.create_dataset("structure_id", data=np.array(ids, dtype="S"), track_times=False)
        gi.create_dataset("start", data=starts, track_times=False)
        gi.create_dataset("count", data=counts, track_times=False)


def read_columns(path: str | os.PathLike[str], structure_id: str) -> Any:
    """The stored (full-depth) column table of one structure from a shard's ``columns.h5``."""

    path = Path(path)
    if not path.exists():
        raise InputError(f"column table {path}: no such file")
    with h5py.File(path, "r") as f:
        ids = [s.decode() for s in f["index/structure_id"][()]]
        if structure_id not in ids:
            raise InputError(f"column table {path}: no structure {structure_id!r}")
        k = ids.index(structure_id)
        start, count = int(f["index/start"][k]), int(f["index/count"][k])
        data = {}
        for name, doc in COLUMN_TABLE_COLUMNS.items():
            arr = f["columns"][name][start:start + count]
            data[name] = arr.astype(str) if doc.startswith("str") else arr
    return pd.DataFrame(data)


def read_manifest(
    path: str | os.PathLike[str], required: Iterable[str] | None = None
) -> Any:
    """Read a structures manifest with the contract's dtypes (ids and Miller indices as str).

    ``required``: the columns the caller needs (default: every column of the contract).
    """

    path = Path(path)
    if not path.exists():
        raise InputError(f"structures manifest {path}: no such file")
    dtypes = {k: str for k, v in MANIFEST_COLUMNS.items() if v.startswith("str")}
    df = pd.read_csv(path, dtype=dtypes, keep_default_na=False,
                     na_values={"interface_gap_A": ["", "NaN", "nan"]})
    missing = set(MANIFEST_COLUMNS if required is None else required) - set(df.columns)
    if missing:
        raise InputError(f"structures manifest {path}: missing columns {sorted(missing)}")
    if df["structure_id"].duplicated().any():
        raise InputError(f"structures manifest {path}: duplicate structure_id")
    return df


def select(recipes: list[Recipe], shard: tuple[int, int]) -> list[Recipe]:
    """The recipes of shard ``(i, n)``: a contiguous, balanced slice."""

    return [recipes[k] for k in shard_slice(len(recipes), shard)]


def check_reproducible(recipe: Recipe, data: bytes, min_distance_factor: float) -> None:
    """Rebuild ``recipe`` and require byte-identical extxyz output."""
    _, _, again = build_validated(recipe, min_distance_factor)
    if again != data:
        raise ValidationError(f"{recipe.structure_id}: rebuilding gave different bytes")


def build_shard(
    config: EtemConfig, shard: tuple[int, int], out_dir: str | os.PathLike[str], workers: int = 1,
) -> Any:
    """Build, validate and write the structures of one shard; returns its manifest."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipes = select(enumerate_recipes(config), shard)
    factor = config.structures.min_distance_factor
    jobs = [(r, factor, str(out)) for r in recipes]
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            results = list(progress(pool.imap(_work, jobs, chunksize=2), "structures",
                                    total=len(jobs)))
    else:
        results = list(progress(map(_work, jobs), "structures", total=len(jobs)))
    rows = [row for row, _ in results]
    tables = [(r.structure_id, table) for r, (_, table) in zip(recipes, results, strict=True)]
    if recipes:  # reproducibility rule, on the first structure of the shard
        check_reproducible(recipes[0], (out / f"{recipes[0].structure_id}.extxyz").read_bytes(),
                           factor)
    prov = provenance(config, "structures")
    prov["shard"] = f"{shard[0]}/{shard[1]}"
    write_columns_h5(out / COLUMNS_FILE, tables, prov)
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    write_table(out / MANIFEST_FILE, manifest, metadata=prov)
    return manifest


def gather(
    config: EtemConfig,
    manifest_path: str | os.PathLike[str],
    shard_dirs: list[str | os.PathLike[str]],
) -> Any:
    """Concatenate shard manifests into ``manifest_path`` (paths made relative to it)."""

    manifest_path = Path(manifest_path)
    frames = []
    for d in shard_dirs:
        d = Path(d)
        m = d / MANIFEST_FILE
        if not m.exists():
            raise InputError(f"shard {d}: no {MANIFEST_FILE} (run 'etem structures build' first)")
        df = read_manifest(m)
        rel = Path(os.path.relpath(d.resolve(), manifest_path.parent.resolve()))
        df["path"] = [str(rel / p) for p in df["path"]]
        df["columns_path"] = [str(rel / p) for p in df["columns_path"]]
        frames.append(df)
    manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=list(MANIFEST_COLUMNS))
    dup = manifest["structure_id"][manifest["structure_id"].duplicated()]
    if len(dup):
        raise InputError(f"duplicate structure ids across shards, e.g. {dup.iloc[0]!r}")
    manifest = manifest.sort_values("structure_id", kind="stable").reset_index(drop=True)
    write_table(manifest_path, manifest[list(MANIFEST_COLUMNS)],
                metadata=provenance(config, "structures"))
    return manifest
