"""Shared helpers of the structures tests (tiny configs and recipes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


def tiny_config(tmp: Path | None = None, seed: int = 3, n_pt: int = 2, n_ox: int = 2,
                **structures: Any) -> Any:
    """A config with a tiny library, tracking off, results under ``tmp``."""
    from etem.config import load_config

    data: dict[str, Any] = {
        "name": "tiny", "seed": seed,
        "structures": {
            "n_shards": 2,
            "pt_on_ceo2": {"count": n_pt, "sizes_nm": [1.5]},
            "oxides": {"count": n_ox, "thickness_unit_cells": [3]},
        },
        "tracking": {"enabled": False},
    }
    for key, value in structures.items():
        data["structures"][key] = {**data["structures"].get(key, {}), **value}
    if tmp is not None:
        data["results_dir"] = str(tmp / "results")
    return load_config(data)


def recipe(family: str = "oxide", index: int = 0, config: Any = None, **params: Any) -> Any:
    """Recipe ``index`` of ``family`` from ``config`` (default: the tiny one), params overridden."""
    from etem.structures.recipes import oxide_recipes, pt_recipes

    cfg = config if config is not None else tiny_config()
    rs = pt_recipes(cfg) if family == "pt_on_ceo2" else oxide_recipes(cfg)
    r = rs[index]
    extra = {}
    if "material" in params:
        extra["material"] = params.pop("material")
        zones = {"CeO2": "110", "SrTiO3": "001"}
        extra["zone_axis"] = zones[extra["material"]]
        params.setdefault("surface_facet", "100")
        params.setdefault("reduced_ce_per_vacancy", 2 if extra["material"] == "CeO2" else 0)
    return dataclasses.replace(r, params={**r.params, **params}, **extra)


def ceo2_slab(n_uc: int = 4, mode: str = "none", fraction: float = 0.0, facet: str = "111",
              **params: Any) -> Any:
    """A CeO2 [110] slab of ``n_uc`` repeats along the beam."""
    from etem.structures.build import build

    return build(recipe("oxide", material="CeO2", thickness_uc=n_uc, vacancy_mode=mode,
                        vacancy_fraction=fraction, surface_facet=facet, **params))
