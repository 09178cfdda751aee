"""Tiny synthetic data following the etem contracts, for the training/model/data tests.

A pytest plugin (``pytest_plugins`` of ``tests/conftest.py``): its ``torch_single_thread``
fixture is requested with ``pytestmark = pytest.mark.usefixtures("torch_single_thread")``.

* image shards + index + structures manifest exactly as ``etem.simulation.contract`` says
  (``/clean`` vacuum = 1, labels, ``/params/<col>``), with Gaussian columns as atoms;
* a synthetic movie (``/frames`` counts (T, H, W), ``/clean``, attrs pixel_size_A, frame_time_s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest

from etem.io import write_table
from etem.simulation.contract import CLASSES, PARAM_COLUMNS, STRING_COLUMNS

PIXEL_A = 0.2


def lattice_image(
    rng: np.random.Generator, size: int, spacing: float, metal: bool
) -> dict[str, np.ndarray]:
    """Clean image (vacuum = 1) of Gaussian columns plus labels (class, occupancies)."""
    clean = np.ones((size, size))
    cls = np.zeros((size, size), np.uint8)
    cat = np.zeros((size, size), np.float32)
    an = np.zeros((size, size), np.float32)
    off = rng.uniform(0, spacing, 2)
    sign = rng.choice([-1.0, 1.0])  # dark or bright atom contrast
    half = 6  # Gaussian window half-width [px]
    for iy, y0 in enumerate(np.arange(off[0] - spacing, size + spacing, spacing / 2)):
        for x0 in np.arange(off[1] - spacing, size + spacing, spacing):
            x0s = x0 + (spacing / 2 if iy % 2 else 0.0)
            anion = iy % 2 == 1
            n_atoms = int(rng.integers(1, 7))
            amp = sign * 0.06 * n_atoms * (0.6 if anion else 1.0)
            ys = slice(max(0, int(y0) - half), min(size, int(y0) + half + 1))
            xs = slice(max(0, int(x0s) - half), min(size, int(x0s) + half + 1))
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            yy, xx = np.mgrid[ys, xs].astype(np.float64)
            r2 = (yy - y0) ** 2 + (xx - x0s) ** 2
            clean[ys, xs] += amp * np.exp(-r2 / (2 * 1.4**2))
            disc = r2 <= 2.0**2
            kind = "anion" if anion else ("metal" if metal else "cation")
            cls[ys, xs][disc] = CLASSES.index(kind)
            (an if anion else cat)[ys, xs][disc] = n_atoms
    return {"clean": np.clip(clean, 0.05, None).astype(np.float32), "class": cls,
            "cation": cat, "anion": an}


def write_campaign(root: Path, n_structures: int = 10, images_per_structure: int = 3,
                   size: int = 64, seed: int = 0) -> Path:
    """Write shards, index and manifest under ``root`` (results layout); return the index path."""
    rng = np.random.default_rng(seed)
    sim, struct = root / "simulation", root / "structures"
    sim.mkdir(parents=True, exist_ok=True)
    struct.mkdir(parents=True, exist_ok=True)
    shapes = ["octahedron", "decahedron", "cuboctahedron", "wulff"]
    structures = []
    for s in range(n_structures):
        fam = "oxide" if s % 2 == 1 else "pt_on_ceo2"
        structures.append({
            "structure_id": f"s{s:03d}", "family": fam,
            "particle_shape": shapes[(s // 2) % 4] if fam == "pt_on_ceo2" else "",
            "path": f"s{s:03d}.extxyz",
        })
    man = pd.DataFrame(structures)
    write_table(struct / "manifest.csv", man)
    rows, n_shards = [], 2
    per_shard: list[list[dict[str, Any]]] = [[] for _ in range(n_shards)]
    for s, st in enumerate(structures):
        spacing = rng.uniform(7.0, 10.0)
        for k in range(images_per_structure):
            img = lattice_image(rng, size, spacing, metal=st["family"] == "pt_on_ceo2")
            params = {c: 0.0 for c in PARAM_COLUMNS}
            params.update(
                image_id=f"{st['structure_id']}_t0_z{k}_f0", structure_id=st["structure_id"],
                family=st["family"], structure_path=st["path"], thickness_nm=2.0 + k,
                pixel_size_A=PIXEL_A, parametrization="lobato", detector_mtf="none",
                gpts=size, seed=s * 100 + k, frozen_phonons=0, energy_kv=300.0,
            )
            per_shard[s % n_shards].append({"img": img, "params": params})
    for i, items in enumerate(per_shard):
        name = f"shard_{i:03d}.h5"
        with h5py.File(sim / name, "w") as f:
            f.create_dataset("clean", data=np.stack([it["img"]["clean"] for it in items]))
            lab = f.create_group("labels")
            lab.create_dataset("class", data=np.stack([it["img"]["class"] for it in items]))
            for key in ("cation", "anion"):
                lab.create_dataset(f"{key}_occupancy",
                                   data=np.stack([it["img"][key] for it in items]))
            lab.create_dataset("anion_fraction", data=np.ones((len(items), size, size),
                                                              np.float32))
            par = f.create_group("params")
            for col in PARAM_COLUMNS:
                vals = [it["params"][col] for it in items]
                par.create_dataset(col, data=np.array(vals, dtype="S" if col in STRING_COLUMNS
                                                      else None))
            f.attrs["contract_version"] = 1
        for j, it in enumerate(items):
            rows.append({**it["params"], "shard": name, "index_in_shard": j})
    index = sim / "index.csv"
    write_table(index, pd.DataFrame(rows))
    return index


def write_movie(path: Path, n_frames: int = 12, size: int = 64, dose_e_per_px: float = 2.0,
                seed: int = 1) -> Path:
    """Synthetic movie: static lattice, Poisson counts at ``dose_e_per_px`` [e/px/frame]."""
    rng = np.random.default_rng(seed)
    img = lattice_image(rng, size, 8.0, metal=True)["clean"]
    clean = np.repeat(img[None], n_frames, axis=0)
    frames = rng.poisson(clean * dose_e_per_px).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=frames)
        f.create_dataset("clean", data=clean)
        f.attrs["pixel_size_A"] = PIXEL_A
        f.attrs["frame_time_s"] = 0.025
    return path


@pytest.fixture
def torch_single_thread() -> Any:
    """Tiny networks run fastest on one thread (and are not slowed by a busy second core)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
