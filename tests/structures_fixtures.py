"""Shared helpers of the structures tests (tiny configs and recipes)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.configs import make_tiny_config


def recipe(family: str = "oxide", index: int = 0, config: Any = None, **params: Any) -> Any:
    """Recipe ``index`` of ``family`` from ``config`` (default: the tiny one), params overridden."""
    from etem.structures.recipes import oxide_recipes, pt_recipes

    cfg = config if config is not None else make_tiny_config()
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
