"""Tiny fake campaigns for the evaluation and report tests (no abTEM, no training).

Images are square lattices of Gaussian columns on a vacuum = 1 background, written in the
HDF5 shard contract with class labels (discs around the columns) and an index CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from etem.simulation.contract import PARAM_COLUMNS, STRING_COLUMNS
from etem.testing import lattice_image


def make_campaign(root: Path, n_images: int = 6, size_px: int = 64, pixel_size_A: float = 0.2,
                  seed: int = 0) -> dict[str, Any]:
    """Write a fake shard + index under ``root/simulation``; return their paths."""
    g = np.random.default_rng(seed)
    sim = root / "simulation"
    sim.mkdir(parents=True, exist_ok=True)
    shard = sim / "shard_000.h5"
    rows = []
    cleans, classes = [], []
    for i in range(n_images):
        clean, cls, _ = lattice_image(size_px, pixel_size_A, offset_px=float(g.uniform(0, 3)),
                                      amplitude=float(g.uniform(0.6, 1.2)))
        cleans.append(clean.astype(np.float32))
        classes.append(cls)
        fam = "oxide" if i % 2 else "pt_on_ceo2"
        row = {k: 0.0 for k in PARAM_COLUMNS}
        row.update({
            "image_id": f"s{i:02d}_t0_z{i % 2}_f{i % 3}", "structure_id": f"s{i:02d}",
            "family": fam, "structure_path": f"s{i:02d}.extxyz",
            "thickness_nm": 2.0 + 1.5 * (i % 2), "defocus_nm": float(-4 + 4 * (i % 3)),
            "tilt_x_mrad": 0.0, "tilt_y_mrad": 0.0, "pixel_size_A": pixel_size_A,
            "parametrization": "lobato", "detector_mtf": "none", "gpts": size_px,
            "seed": i, "energy_kv": 300.0, "particle_shape": "decahedron" if i == 5 else "cubo",
        })
        rows.append(row)
    with h5py.File(shard, "w") as fh:
        fh.create_dataset("clean", data=np.stack(cleans), track_times=False)
        fh.create_dataset("labels/class", data=np.stack(classes), track_times=False)
    return {"index": _write_index(sim, rows), "shard": shard}


#: Overrides of the tiny config for these campaigns: half the structures are test images.
BENCHMARK_SPLIT = {"training": {"split": {"val_fraction": 0.0, "test_fraction": 0.5}}}


def occupancy_image(
    g: np.random.Generator, size_px: int = 64, pixel_size_A: float = 0.2,
    spacing_A: float = 2.8, per_atom: tuple[float, float] = (0.12, 0.07),
    max_atoms: int = 6, label_radius_A: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(clean, class map, occupancy maps) of a checkerboard of cation / anion columns whose
    brightness grows linearly with their atom count (1..max_atoms, drawn from ``g``):
    intensity counting works here by construction."""
    rr, cc = np.mgrid[:size_px, :size_px].astype(np.float64)
    sp, s, rl = spacing_A / pixel_size_A, 0.4 / pixel_size_A, label_radius_A / pixel_size_A
    clean = np.ones((size_px, size_px))
    cls = np.zeros((size_px, size_px), dtype=np.uint8)
    occ = {k: np.zeros((size_px, size_px)) for k in ("cation_occupancy", "anion_occupancy")}
    for i, y in enumerate(np.arange(sp / 2, size_px - sp / 4, sp)):
        for j, x in enumerate(np.arange(sp / 2, size_px - sp / 4, sp)):
            site = (i + j) % 2  # 0 cation, 1 anion
            n = int(g.integers(1, max_atoms + 1))
            d2 = (rr - y) ** 2 + (cc - x) ** 2
            clean += per_atom[site] * n * np.exp(-d2 / (2 * s * s))
            disc = d2 <= rl * rl
            cls[disc] = 1 + site
            occ[("cation_occupancy", "anion_occupancy")[site]][disc] = n
    return clean, cls, occ


def make_occupancy_campaign(root: Path, n_images: int = 16, seed: int = 0,
                            blur_images: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    """A fake campaign of :func:`occupancy_image` images (class and occupancy labels), one
    structure each; the images in ``blur_images`` get ``blur_fwhm_A`` 1.4 (else 0.5), one
    (index 5) is a decahedron (the held-out structure)."""
    g = np.random.default_rng(seed)
    sim = root / "simulation"
    sim.mkdir(parents=True, exist_ok=True)
    rows, data = [], []
    for i in range(n_images):
        data.append(occupancy_image(g))
        row = {k: 0.0 for k in PARAM_COLUMNS}
        row.update({
            "image_id": f"o{i:02d}", "structure_id": f"o{i:02d}", "family": "oxide",
            "structure_path": f"o{i:02d}.extxyz", "thickness_nm": 2.0, "defocus_nm": 0.0,
            "pixel_size_A": 0.2, "parametrization": "lobato", "detector_mtf": "none",
            "gpts": 64, "seed": i, "energy_kv": 300.0,
            "blur_fwhm_A": 1.4 if i in blur_images else 0.5,
            "particle_shape": "decahedron" if i == 5 else "cubo",
        })
        rows.append(row)
    shard = sim / "shard_000.h5"
    with h5py.File(shard, "w") as fh:
        fh.create_dataset("clean", data=np.stack([d[0] for d in data]).astype(np.float32))
        fh.create_dataset("labels/class", data=np.stack([d[1] for d in data]))
        for k in ("cation_occupancy", "anion_occupancy"):
            fh.create_dataset(f"labels/{k}",
                              data=np.stack([d[2][k] for d in data]).astype(np.float32))
    return {"index": _write_index(sim, rows), "shard": shard}


def _write_index(sim: Path, rows: list[dict[str, Any]]) -> Path:
    """The image index of one shard (``shard_000.h5``, rows in shard order)."""
    idx = pd.DataFrame(rows)
    idx["shard"] = "shard_000.h5"
    idx["index_in_shard"] = np.arange(len(rows))
    for c in STRING_COLUMNS:
        idx[c] = idx[c].astype(str)
    index = sim / "index.csv"
    idx.to_csv(index, index=False)
    return index
