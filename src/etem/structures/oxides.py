"""Defect oxides: CeO2 and SrTiO3 crystals with oxygen vacancies, seen along a zone axis.

A *slab* fills the lower part of the field of view (large y) between lateral margins, with
its free surface (the recipe's ``surface_facet``, edge-on) facing the vacuum at the top; a
*particle* (form ``particle``, config ``particle_fraction``) is a faceted prism centred in the
field of view, bounded by every edge-on {111}/{100}/{110} (CeO2) or {100}/{110} (SrTiO3)
facet at Wulff-like distances (:data:`FACET_RATIOS`). Both have
``thickness_uc`` lattice repeats along the beam (CeO2 [110]: 3.826 Å, SrTiO3 [001]: 3.905 Å),
so every column holds exactly ``thickness_uc`` sites. Vacancy modes (fraction ``f`` of O):

* ``random``: uniform over all O sites;
* ``clustered``: sites drawn with weight exp(-d / 4 Å), d = distance to 1-3 random centres;
* ``surface``: weight exp(-d / 3 Å), d = distance to the nearest free surface (the top
  surface or the particle's side facets, and the beam entrance/exit faces);
* ``column``: whole O columns (along the beam) are depleted, 1..n sites each, until f is met;
* ``none``: defect-free (O:Ce = 2 exactly).

Each O vacancy labels its nearest Ce as Ce3+ (``valence`` 3), ``reduced_ce_per_vacancy`` each.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from etem.seeding import rng
from etem.structures.assembly import make_atoms, reduce_nearest_ce
from etem.structures.column_table import LINK_RADIUS_A, _components
from etem.structures.crystals import LATTICES, ORIENTATIONS, fill_box, rotation, valence_of
from etem.structures.recipes import Recipe

CLUSTER_LENGTH_A = 4.0
SURFACE_LENGTH_A = 3.0


def _weighted_choice(g: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    return g.choice(len(w), size=n, replace=False, p=w)


def choose_vacancies(
    mode: str, n_vac: int, o_pos: np.ndarray, surface_distance: np.ndarray,
    g: np.random.Generator, n_clusters: int = 1,
) -> np.ndarray:
    """Indices (into ``o_pos``) of the O sites to remove, sorted.

    ``surface_distance``: distance of each O site to the nearest free surface [Å].
    """
    n_o = len(o_pos)
    n_vac = min(n_vac, n_o)
    if n_vac <= 0 or mode == "none":
        return np.zeros(0, dtype=np.int64)
    if mode == "random":
        idx = g.choice(n_o, size=n_vac, replace=False)
    elif mode == "clustered":
        centres = o_pos[g.choice(n_o, size=min(n_clusters, n_o), replace=False)]
        d = np.min(np.linalg.norm(o_pos[:, None, :] - centres[None], axis=2), axis=1)
        idx = _weighted_choice(g, n_vac, np.exp(-d / CLUSTER_LENGTH_A) + 1e-12)
    elif mode == "surface":
        d = surface_distance
        idx = _weighted_choice(g, n_vac, np.exp(-np.clip(d, 0, None) / SURFACE_LENGTH_A) + 1e-12)
    elif mode == "column":
        labels = _components(o_pos[:, :2], LINK_RADIUS_A)
        chosen: list[int] = []
        for lab in g.permutation(labels.max() + 1):
            members = np.flatnonzero(labels == lab)
            k = int(g.integers(1, len(members) + 1))
            k = min(k, n_vac - len(chosen))
            chosen.extend(int(m) for m in g.choice(members, size=k, replace=False))
            if len(chosen) >= n_vac:
                break
        idx = np.asarray(chosen)
    else:
        raise ValueError(f"unknown vacancy mode {mode!r}")
    return np.sort(np.asarray(idx, dtype=np.int64))


#: Relative distance of each edge-on facet family from the particle centre (Wulff-like).
FACET_RATIOS: dict[str, dict[str, float]] = {
    "CeO2": {"111": 1.0, "100": 1.12, "110": 1.25},
    "SrTiO3": {"100": 1.0, "110": 1.2},
}


def _facets(
    material: str, zone: tuple[int, int, int], rot: np.ndarray, p: dict[str, Any],
    lx: float, ly: float, margin: float, pad: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """In-plane unit normals (k, 2) and distances (k,) [Å] of a faceted particle's sides."""

    normals, dists = [], []
    ratios = FACET_RATIOS[material]
    r0 = p["particle_radius_frac"] * (min(lx, ly) / 2.0 - margin - float(pad.max()) - 1.0)
    r0 /= max(ratios.values())
    for family, ratio in ratios.items():
        base = [int(c) for c in family]
        for perm in set(itertools.permutations(base)):
            for signs in itertools.product((1, -1), repeat=3):
                v = np.array([a * b for a, b in zip(perm, signs, strict=True)], float)
                if np.dot(v, zone) != 0:
                    continue
                lab = rot @ (v / np.linalg.norm(v))
                normals.append(np.round(lab[:2], 12))
                dists.append(ratio * r0)
    n, idx = np.unique(np.array(normals), axis=0, return_index=True)
    return n, np.array(dists)[idx]


def build_oxide(recipe: Recipe) -> Any:
    """Build a defect-oxide structure from its recipe."""
    p = recipe.params
    lat = LATTICES[recipe.material]
    orient = ORIENTATIONS[recipe.material]
    zone, normal = orient["zone"], orient[p["surface_facet"]]
    rot = rotation(zone, normal)
    repeat = lat.repeat_along(zone)
    lx, ly = p["cell_xy_A"]
    vac, margin = p["vacuum_z_A"], p["lateral_margin_A"]
    motif = np.array([[m[1], m[2], m[3]] for m in lat.motif]) @ rot.T * lat.a
    pad = np.abs(motif).max(axis=0) + 0.05  # keep every motif atom inside the box
    n_uc = int(p["thickness_uc"])
    y_surf = ly * (1.0 - p["height_fraction"])
    z0 = vac + pad[2]
    origin = np.array([lx / 2.0, y_surf, z0])
    lo = np.array([margin + pad[0], y_surf - 1e-3, z0 - 1e-3])
    hi = np.array([lx - margin - pad[0], ly - pad[1], z0 + n_uc * repeat - 1e-3])
    if p.get("form", "slab") == "particle":
        centre = np.array([lx / 2.0, ly / 2.0])
        origin = np.array([centre[0], centre[1], z0])
        lo[1] = pad[1] + 1.0
    pos, symbols, unit_id, units = fill_box(lat, rot, origin, lo, hi)
    size_nm = 0.0
    if p.get("form", "slab") == "particle":
        normals, dists = _facets(recipe.material, zone, rot, p, lx, ly, margin, pad)
        inside = np.all((units[:, :2] - centre) @ normals.T <= dists + 1e-6, axis=1)
        keep = inside[unit_id]
        pos, unit_id = pos[keep], unit_id[keep]
        symbols = [s for s, k in zip(symbols, keep, strict=True) if k]
        size_nm = round(2.0 * float(dists.min()) / 10.0, 4)
        surface_distance = np.min(dists - (pos[:, :2] - centre) @ normals.T, axis=1)
    else:
        surface_distance = pos[:, 1] - pos[:, 1].min()
    surface_distance = np.minimum.reduce([
        surface_distance, pos[:, 2] - pos[:, 2].min(), pos[:, 2].max() - pos[:, 2]])
    valence = valence_of(lat, symbols)
    sym = np.array(symbols)
    o_idx = np.flatnonzero(sym == "O")
    n_vac = round(p["vacancy_fraction"] * len(o_idx))
    g = rng(recipe.seed, "vacancies")
    pick = choose_vacancies(p["vacancy_mode"], n_vac, pos[o_idx], surface_distance[o_idx], g,
                            p["n_clusters"])
    removed = o_idx[pick]
    vac_pos = pos[removed]
    keep = np.ones(len(pos), bool)
    keep[removed] = False
    pos, valence = pos[keep], valence[keep]
    symbols = [s for s, k in zip(symbols, keep, strict=True) if k]
    n_red = reduce_nearest_ce(pos, symbols, valence, vac_pos, p["reduced_ce_per_vacancy"])
    lz = float(pos[:, 2].max() + vac)
    info = {
        "particle_shape": "faceted_prism" if size_nm else "none",
        "particle_size_nm": size_nm, "support_facet": "none",
        "surface_facet": f"({p['surface_facet']})", "thickness_uc": n_uc,
        "thickness_nm": round(n_uc * repeat / 10.0, 4), "vacancy_mode": p["vacancy_mode"],
        "n_reduced_ce": n_red, "defects": "vacancies" if len(removed) else "none",
        "n_removed": int(len(keep) - keep.sum()),
    }
    return make_atoms(recipe, symbols, pos, np.zeros(len(pos), np.int64), valence,
                      (lx, ly, lz), vac_pos, ["O"] * len(vac_pos), info)
