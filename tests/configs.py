"""The one tiny campaign config of the tests (the ``tiny_config`` fixture of ``conftest.py``).

Every stage is small (a two-shard library, a 48 px simulation grid, tiny networks trained for
a few steps, a 4-image benchmark) and tracking is off. Tests change what they
need with section overrides, merged key by key into the defaults::

    cfg = tiny_config(tmp_path / "results", training={"denoiser": {"steps": 12}})
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etem.config import EtemConfig, load_config

_LOOP: dict[str, Any] = {
    "steps": 40, "batch_size": 4, "patch_px": 32, "val_every_steps": 20, "val_samples": 6,
    "val_patch_px": 48, "checkpoint_every_steps": 20, "lr": 2e-3,
    "dose_e_per_A2": [25.0, 100.0], "model": {"depth": 2, "base_channels": 8},
}

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "structures": {
        "n_shards": 2,
        "pt_on_ceo2": {"count": 2, "sizes_nm": [1.5]},
        "oxides": {"count": 2, "thickness_unit_cells": [3]},
    },
    "simulation": {
        "sampling_A": 0.2, "output_size_px": 48, "thickness_nm": [0.6, 1.2],
        "tilts_mrad": [[0.0, 0.0], [3.0, 1.0]], "defocus_nm": [-5.0, 5.0],
        "slice_thickness_A": 2.0, "n_shards": 2,
    },
    "noise": {"benchmark_doses_e_per_A2": [50.0, 400.0]},
    "training": {
        "split": {"val_fraction": 0.2, "test_fraction": 0.2,
                  "held_out": {"particle_shape": "decahedron"}},
        "denoiser": dict(_LOOP),
        "segmenter": dict(_LOOP),
        "unsupervised": {**_LOOP, "dose_e_per_A2": None},
    },
    "benchmark": {
        "max_test_images": 4, "gaussian_sigma_px": [1.0], "nlm": False,
        "calibration_vacuum_images": 6, "umse_images": 2, "example_images": 1,
    },
    "columns": {"blob_min_sigma_A": 0.3, "blob_max_sigma_A": 0.6},
    "tracking": {"enabled": False},
}

#: Type of the ``tiny_config`` fixture.
TinyConfig = Callable[..., EtemConfig]


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: dicts key by key, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_tiny_config(results_dir: Path | None = None, **overrides: Any) -> EtemConfig:
    """The validated tiny config, results under ``results_dir`` (none: the default folder)."""
    data = merged(TINY, overrides)
    if results_dir is not None:
        data["results_dir"] = str(results_dir)
    return load_config(data)
