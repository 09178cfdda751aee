"""Recipes: the cheap, deterministic enumeration of the structure library.

A :class:`Recipe` holds every parameter a builder needs (random draws included), derived
from the config grid and seed without building any atoms, so enumerating 900 recipes takes
milliseconds and a shard builds exactly its slice. Structure ``i`` of a family draws from
``etem.seeding.rng(seed, "structures", family, i)``; random choices made while building
(which atoms to remove, ...) use the recipe's own ``seed``.

Grid: structure ``i`` of ``pt_on_ceo2`` gets ``(shape, size, facet)`` number ``i mod G`` of
the product ``shapes x sizes_nm x support_facets`` (G combinations) in an order shuffled once
by the seed, so every combination appears ``count / G`` times (+-1) with different random
variants and a small library (demo, smoke) still covers every shape and material; oxides
likewise over ``materials x thickness_unit_cells x vacancy_modes``. The family balance is
set by the two ``count`` keys.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from etem.config import EtemConfig
from etem.seeding import derive_seed, rng
from etem.structures.crystals import CEO2, ORIENTATIONS, parse_axis


@dataclass(frozen=True)
class Recipe:
    """Everything needed to build one structure (JSON-able)."""

    structure_id: str
    family: str
    index: int
    seed: int
    material: str
    zone_axis: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "structure_id": self.structure_id, "family": self.family, "index": self.index,
            "seed": self.seed, "material": self.material, "zone_axis": self.zone_axis,
            "params": self.params,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _shuffled(grid: list[Any], seed: int, family: str) -> list[Any]:
    """The grid in a seeded random order, stratified by its first factor.

    After shuffling, the k-th combination of every first-factor value (shape, material) comes
    before any (k+1)-th one, so the first recipes already cover every shape / material.
    """
    order = rng(seed, "structures", family, "grid").permutation(len(grid))
    shuffled = [grid[k] for k in order]
    seen: Counter = Counter()
    ranks = []
    for combo in shuffled:
        ranks.append(seen[combo[0]])
        seen[combo[0]] += 1
    return [c for _, _, c in sorted(zip(ranks, range(len(shuffled)), shuffled,
                                        strict=True), key=lambda t: (t[0], t[1]))]


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def pt_recipes(config: EtemConfig) -> list[Recipe]:
    """Recipes of the Pt-on-CeO2 family."""
    c = config.structures.pt_on_ceo2
    grid = list(itertools.product(
        [str(s) for s in c.shapes], list(c.sizes_nm), [str(f) for f in c.support_facets]))
    grid = _shuffled(grid, config.seed, "pt_on_ceo2")
    zone = parse_axis(c.zone_axis)
    repeat = CEO2.repeat_along(zone)
    out = []
    for i in range(c.count):
        shape, size, facet = grid[i % len(grid)]
        g = rng(config.seed, "structures", "pt_on_ceo2", i)
        depth_A = 10.0 * g.uniform(*c.support_depth_nm)
        kinds = [str(k) for k in c.defect_kinds if not (shape == "decahedron" and k == "twin")]
        defects: list[str] = []
        if kinds and g.random() < c.defect_probability:
            k = int(g.integers(1, min(2, len(kinds)) + 1))
            defects = sorted(str(x) for x in g.choice(kinds, size=k, replace=False))
        gmin, gmax = c.interface_gap_A
        w = gmax - gmin
        params = {
            "shape": shape, "size_nm": float(size), "support_facet": facet,
            "cell_xy_A": [float(v) for v in c.cell_xy_A], "vacuum_z_A": c.vacuum_z_A,
            "lateral_margin_A": c.lateral_margin_A,
            "support_height_max_A": c.support_thickness_A,
            "support_depth_uc": max(1, round(depth_A / repeat)),
            "interface_gap_range_A": [gmin, gmax],
            "gap_target_A": _r(g.uniform(gmin + 0.2 * w, gmax - 0.2 * w)),
            "x_offset_frac": _r(g.uniform(-0.12, 0.12)),
            "z_offset_A": _r(g.uniform(-2.0, 2.0)),
            "rotation_deg": _r(g.uniform(-c.max_rotation_deg, c.max_rotation_deg)),
            "tilt_deg": _r(g.uniform(-c.max_tilt_deg, c.max_tilt_deg)),
            "strain_percent": _r(g.uniform(-c.max_strain_percent, c.max_strain_percent)),
            "truncation": _r(g.uniform(0.0, c.max_truncation)),
            "defects": defects,
            "twin_plane": int(g.integers(0, 2)),
            "twin_offset_layers": int(g.integers(-1, 2)),
            "n_adatoms": int(g.integers(1, 4)),
            "n_particle_vacancies": int(g.integers(1, 4)),
            "n_support_vacancies": int(g.integers(1, 5)),
            "step_x_frac": _r(g.uniform(0.1, 0.9)),
            "step_layers": int(g.integers(1, 3)),
            "reduced_ce_per_vacancy": config.structures.oxides.reduced_ce_per_vacancy,
        }
        out.append(Recipe(
            structure_id=f"pt{i:04d}", family="pt_on_ceo2", index=i,
            seed=derive_seed(config.seed, "structures", "pt_on_ceo2", i),
            material="Pt/CeO2", zone_axis=c.zone_axis, params=params,
        ))
    return out


def oxide_recipes(config: EtemConfig) -> list[Recipe]:
    """Recipes of the defect-oxide family."""
    c = config.structures.oxides
    grid = list(itertools.product(
        [str(m) for m in c.materials], list(c.thickness_unit_cells),
        [str(v) for v in c.vacancy_modes]))
    grid = _shuffled(grid, config.seed, "oxide")
    out = []
    for i in range(c.count):
        material, n_uc, mode = grid[i % len(grid)]
        g = rng(config.seed, "structures", "oxide", i)
        facets = sorted(k for k in ORIENTATIONS[material] if k != "zone")
        facet = str(g.choice(facets))
        frac = 0.0 if mode == "none" else _r(g.uniform(min(0.02, c.vacancy_fraction_max),
                                                       c.vacancy_fraction_max))
        zone = "".join(str(v) for v in ORIENTATIONS[material]["zone"])
        params = {
            "surface_facet": facet, "thickness_uc": int(n_uc), "vacancy_mode": mode,
            "vacancy_fraction": frac,
            "cell_xy_A": [float(v) for v in c.cell_xy_A], "vacuum_z_A": c.vacuum_z_A,
            "lateral_margin_A": c.lateral_margin_A,
            "height_fraction": _r(g.uniform(*c.crystal_height_fraction)),
            "n_clusters": int(g.integers(1, 4)),
            "reduced_ce_per_vacancy": c.reduced_ce_per_vacancy if material == "CeO2" else 0,
        }
        params["form"] = "particle" if g.random() < c.particle_fraction else "slab"
        params["particle_radius_frac"] = _r(g.uniform(0.7, 1.0))
        out.append(Recipe(
            structure_id=f"ox{i:04d}", family="oxide", index=i,
            seed=derive_seed(config.seed, "structures", "oxide", i),
            material=material, zone_axis=zone, params=params,
        ))
    return out


def enumerate_recipes(config: EtemConfig) -> list[Recipe]:
    """All recipes of the campaign, Pt/CeO2 first, then oxides (cheap: no atoms built)."""
    return pt_recipes(config) + oxide_recipes(config)


def plan_counts(recipes: list[Recipe]) -> dict[str, Counter]:
    """Counts per family, particle shape, support facet, material and vacancy mode."""
    out: dict[str, Counter] = {
        "family": Counter(), "particle_shape": Counter(), "support_facet": Counter(),
        "material": Counter(), "vacancy_mode": Counter(), "defects": Counter(),
    }
    for r in recipes:
        out["family"][r.family] += 1
        if r.family == "pt_on_ceo2":
            out["particle_shape"][r.params["shape"]] += 1
            out["support_facet"][r.params["support_facet"]] += 1
            for d in r.params["defects"] or ["none"]:
                out["defects"][d] += 1
        else:
            out["material"][r.material] += 1
            out["vacancy_mode"][r.params["vacancy_mode"]] += 1
    return out
