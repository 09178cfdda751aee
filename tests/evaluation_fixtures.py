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
    idx = pd.DataFrame(rows)
    idx["shard"] = "shard_000.h5"
    idx["index_in_shard"] = np.arange(n_images)
    for c in STRING_COLUMNS:
        idx[c] = idx[c].astype(str)
    index = sim / "index.csv"
    idx.to_csv(index, index=False)
    return {"index": index, "shard": shard}


#: Overrides of the tiny config for these campaigns: half the structures are test images.
BENCHMARK_SPLIT = {"training": {"split": {"val_fraction": 0.0, "test_fraction": 0.5}}}
