"""Pt nanoparticles on the edge of a CeO2 support, seen in profile along a zone axis.

Geometry (lab frame = image frame, see :mod:`etem.structures.crystals`): the support is a
CeO2 crystal filling the bottom of the field of view (large y) between lateral margins, with
the recipe's facet (111), (110) or (100) edge-on at the top, ``support_depth_uc`` repeats
along the beam (z). The particle sits on that surface, cube-on-cube epitaxy (Pt{hkl} ∥
CeO2{hkl}, Pt<110> ∥ CeO2<110>, the relationship reported for Pt/CeO2), so the beam is along
the particle's zone axis too; decahedra are placed with their five-fold axis along the beam.

Variant parameters (all in the recipe): interface truncation (Winterbottom-like flat
interface), radial strain, rotation about the beam, tilt off the zone axis, lateral and depth
position, interface gap, and defects: ``twin`` (a {111} twin boundary edge-on), ``step`` (a
monatomic or double step of the support surface beside the particle), ``adatom`` (Pt on the
particle or the support), ``particle_vacancy`` (missing Pt surface atoms), ``support_vacancy``
(O vacancies of the support surface next to the particle, with Ce3+ labels).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from etem.errors import ValidationError
from etem.seeding import rng
from etem.structures import particles as pp
from etem.structures.assembly import make_atoms, reduce_nearest_ce
from etem.structures.crystals import (
    CEO2,
    PT_A,
    facet_normal,
    fill_box,
    parse_axis,
    rotation,
    valence_of,
)
from etem.structures.recipes import Recipe

TOP_MARGIN_A = 3.0  # vacuum above the particle top, room for adatoms [Å]
BOTTOM_MARGIN_A = 1.5  # vacuum below the support (periodic y: next to the top) [Å]
SLACK_A = 1.0  # room for the gap adjustment of the placement [Å]
MIN_SUPPORT_A = 8.0  # smallest visible support height [Å]
PT_CE_MIN_A = 2.9  # smallest Pt-Ce distance at the interface [Å]


def _edge_on_111(zone: tuple[int, int, int]) -> list[np.ndarray]:
    out = []
    for s in itertools.product((1, -1), repeat=3):
        if np.dot(s, zone) == 0 and s[0] > 0:
            out.append(np.array(s, float))
    return out


def _particle(
    recipe: Recipe, rot: np.ndarray, zone: tuple[int, int, int], size: float,
) -> np.ndarray:
    """Particle positions [Å] in the lab frame, centred, before placement."""
    p = recipe.params
    shape = p["shape"]
    pos = np.array(pp.template(shape, size))
    if shape == "decahedron":
        return pos @ pp.rot_z(pp.flat_bottom_angle(shape, size)).T
    if "twin" in p["defects"]:
        normals = _edge_on_111(zone)
        n = normals[p["twin_plane"] % len(normals)]
        pos = pp.twin(pos, n, p["twin_offset_layers"], PT_A / np.sqrt(3.0))
    return pos @ rot.T


def _place_vertical(
    part: np.ndarray, support: np.ndarray, is_o: np.ndarray, target: float,
) -> np.ndarray:
    """Shift the particle along y: closest Pt-O = ``target`` [Å], all Pt-Ce >= PT_CE_MIN_A."""

    tree_o, tree_ce = cKDTree(support[is_o]), cKDTree(support[~is_o])
    for _ in range(20):
        d_o = float(tree_o.query(part, k=1)[0].min())
        d_ce = float(tree_ce.query(part, k=1)[0].min())
        delta = min(d_o - target, d_ce - PT_CE_MIN_A)
        if abs(delta) < 0.005:
            break
        part = part + np.array([0.0, delta, 0.0])
    return part


# long (135 lines): the recipe's steps in order (support, particle, strain, defects,
# placement, checks), each a few lines that share the partly built structure.
def build_pt_on_ceo2(recipe: Recipe) -> Any:
    """Build a Pt-on-CeO2 structure from its recipe."""
    p = recipe.params
    sid = recipe.structure_id
    g = rng(recipe.seed, "build")
    zone = parse_axis(recipe.zone_axis)
    normal = facet_normal("CeO2", zone, p["support_facet"])
    rot = rotation(zone, normal)
    repeat = CEO2.repeat_along(zone)
    layer = CEO2.layer_spacing(normal)
    lx, ly = p["cell_xy_A"]
    vac, margin = p["vacuum_z_A"], p["lateral_margin_A"]

    # --- particle: shape, truncation, strain, rotation, tilt ---------------------------------
    # a particle too large for the field of view is replaced by the next smaller size (0.25 nm
    # steps); the size used is recorded as particle_size_nm
    gap = p["gap_target_A"]
    room = ly - TOP_MARGIN_A - SLACK_A - gap - MIN_SUPPORT_A - BOTTOM_MARGIN_A
    width_room = lx - 2 * margin - 4.0
    size = float(p["size_nm"])
    while True:
        part = _particle(recipe, rot, zone, size)
        height = np.ptp(part[:, 1])
        cut = max(p["truncation"] * height, height - room + 0.5)
        if cut <= 0.6 * height and np.ptp(part[:, 0]) * 1.1 <= width_room:
            break
        size = round(size - 0.25, 2)
        if size < 0.5:
            raise ValidationError(f"{sid}: no {p['shape']} particle fits the cell")
    part = part[part[:, 1] <= part[:, 1].max() - cut + 1e-6] if cut > 0 else part
    centre = part.mean(axis=0)
    part = centre + (part - centre) * (1.0 + p["strain_percent"] / 100.0)
    part = centre + (part - centre) @ (pp.rot_x(p["tilt_deg"]) @ pp.rot_z(p["rotation_deg"])).T
    part -= part.mean(axis=0)
    height = np.ptp(part[:, 1])

    # --- support -------------------------------------------------------------------------
    support_h = min(p["support_height_max_A"] + BOTTOM_MARGIN_A,
                    ly - TOP_MARGIN_A - SLACK_A - gap - height)
    if support_h < MIN_SUPPORT_A:
        raise ValidationError(f"{sid}: no room for the support under the particle")
    y_surf = ly - support_h
    motif = np.array([[m[1], m[2], m[3]] for m in CEO2.motif]) @ rot.T * CEO2.a
    pad = np.abs(motif).max(axis=0) + 0.05
    n_uc = int(p["support_depth_uc"])
    z0 = vac + pad[2]
    lo = np.array([margin + pad[0], y_surf - 1e-3, z0 - 1e-3])
    hi = np.array([lx - margin - pad[0], ly - pad[1] - BOTTOM_MARGIN_A,
                   z0 + n_uc * repeat - 1e-3])
    spos, ssym, sunit, units = fill_box(CEO2, rot, np.array([lx / 2, y_surf, z0]), lo, hi)

    # particle lateral position, kept inside the margins
    half_w = np.ptp(part[:, 0]) / 2
    part[:, 0] -= (part[:, 0].max() + part[:, 0].min()) / 2  # centre the x extent
    xc = np.clip(lx / 2 + p["x_offset_frac"] * lx, margin + half_w + 1.0,
                 lx - margin - half_w - 1.0)
    zc = z0 + n_uc * repeat / 2 + p["z_offset_A"]
    defects = list(p["defects"])
    if "step" in defects:  # remove top layers on the side away from the particle
        x_step = lo[0] + p["step_x_frac"] * (hi[0] - lo[0])
        left, right = xc - half_w - 3.0, xc + half_w + 3.0
        if left < x_step < right:  # never under the particle
            x_step = left if x_step - left < right - x_step else right
        side = units[:, 0] > x_step if xc < x_step else units[:, 0] < x_step
        drop_unit = side & (units[:, 1] < y_surf + p["step_layers"] * layer - 1e-3)
        keep = ~drop_unit[sunit]
        spos, ssym = spos[keep], [s for s, k in zip(ssym, keep, strict=True) if k]
    top_local = spos[np.abs(spos[:, 0] - xc) < half_w + 2.0, 1].min()
    part = part + np.array([xc, top_local - gap - part[:, 1].max(), zc])
    part = _place_vertical(part, spos, np.array(ssym) == "O", gap)
    if part[:, 1].min() < TOP_MARGIN_A - SLACK_A:
        raise ValidationError(f"{sid}: particle top at y = {part[:, 1].min():.2f} Å, outside the "
                              f"field of view (size {p['size_nm']} nm too large for the cell)")

    svalence = valence_of(CEO2, ssym)
    symbols = list(ssym) + ["Pt"] * len(part)
    pos = np.concatenate([spos, part])
    region = np.concatenate([np.zeros(len(spos), np.int64), np.ones(len(part), np.int64)])
    valence = np.concatenate([svalence, np.zeros(len(part), np.int64)])
    vac_pos: list[np.ndarray] = []
    vac_sym: list[str] = []
    removed = np.zeros(len(pos), bool)

    if "particle_vacancy" in defects:
        pidx = np.flatnonzero(region == 1)
        surf = pp.surface_mask(pos[pidx])
        low = pos[pidx, 1] > pos[pidx, 1].max() - 1.0  # keep the interface layer
        cand = pidx[surf & ~low]
        for j in g.choice(cand, size=min(p["n_particle_vacancies"], len(cand)), replace=False):
            removed[j] = True
            vac_pos.append(pos[j])
            vac_sym.append("Pt")
    n_red = 0
    if "support_vacancy" in defects:
        o_top = np.flatnonzero((region == 0) & (np.array(symbols) == "O")
                               & (pos[:, 1] < pos[region == 0, 1].min() + 1.0)
                               & (np.abs(pos[:, 0] - xc) < half_w + 8.0))
        pick = g.choice(o_top, size=min(p["n_support_vacancies"], len(o_top)), replace=False)
        for j in np.sort(pick):
            removed[j] = True
            vac_pos.append(pos[j])
            vac_sym.append("O")
    if "adatom" in defects:
        pos, symbols, region, valence, removed = _add_adatoms(
            g, pos, symbols, region, valence, removed, p["n_adatoms"], lx)

    keep = ~removed
    pos, region, valence = pos[keep], region[keep], valence[keep]
    symbols = [s for s, k in zip(symbols, keep, strict=True) if k]
    vp = np.array(vac_pos).reshape(-1, 3)
    o_vac = vp[np.array(vac_sym, dtype=object) == "O"] if len(vp) else vp
    n_red = reduce_nearest_ce(pos, symbols, valence, o_vac, p["reduced_ce_per_vacancy"])

    # cell along z: vacuum below and above everything
    shift = vac - min(pos[:, 2].min(), vp[:, 2].min() if len(vp) else np.inf)
    pos[:, 2] += shift
    if len(vp):
        vp[:, 2] += shift
    lz = float(max(pos[:, 2].max(), vp[:, 2].max() if len(vp) else -np.inf) + vac)

    sup = pos[region == 0]
    gap_final = float(cKDTree(sup).query(pos[region == 1], k=1)[0].min())
    info = {
        "particle_shape": p["shape"], "particle_size_nm": size,
        "particle_size_requested_nm": float(p["size_nm"]),
        "support_facet": f"({p['support_facet']})", "surface_facet": f"({p['support_facet']})",
        "thickness_uc": n_uc, "thickness_nm": round(n_uc * repeat / 10.0, 4),
        "vacancy_mode": "surface" if "support_vacancy" in defects else "none",
        "n_reduced_ce": n_red, "defects": "+".join(defects) if defects else "none",
        "rotation_deg": p["rotation_deg"], "tilt_deg": p["tilt_deg"],
        "strain_percent": p["strain_percent"], "interface_gap_A": round(gap_final, 4),
        "support_top_A": round(float(sup[:, 1].min()), 4),
        "n_removed": int(removed.sum()),
    }
    return make_atoms(recipe, symbols, pos, region, valence, (lx, ly, lz), vp, vac_sym, info)


def _add_adatoms(
    g: np.random.Generator, pos: np.ndarray, symbols: list[str], region: np.ndarray,
    valence: np.ndarray, removed: np.ndarray, n: int, lx: float,
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Add ``n`` Pt adatoms on bridge sites of the particle's upper surface [Å]."""

    pidx = np.flatnonzero((region == 1) & ~removed)
    ppos = pos[pidx]
    centre = ppos.mean(axis=0)
    surf = pidx[pp.surface_mask(ppos) & (ppos[:, 1] < centre[1])]  # upper half: away from support
    added: list[np.ndarray] = []
    live = pos[~removed]
    for _ in range(40 * n):
        if len(added) == n or len(surf) < 2:
            break
        a = pos[g.choice(surf)]
        nb = surf[np.linalg.norm(pos[surf] - a, axis=1) < 3.0]
        nb = nb[np.linalg.norm(pos[nb] - a, axis=1) > 0.1]
        if len(nb) == 0:
            continue
        b = pos[g.choice(nb)]
        mid = (a + b) / 2
        out = mid - centre
        out /= np.linalg.norm(out)
        site = mid + 1.9 * out
        if not (1.0 <= site[0] <= lx - 1.0 and site[1] >= 1.0):
            continue
        others = np.concatenate([live, np.array(added).reshape(-1, 3)])
        if cKDTree(others).query(site, k=1)[0] < 2.3:
            continue
        added.append(site)
    if not added:
        return pos, symbols, region, valence, removed
    k = len(added)
    return (np.concatenate([pos, np.array(added)]), symbols + ["Pt"] * k,
            np.concatenate([region, np.full(k, 2, np.int64)]),
            np.concatenate([valence, np.zeros(k, np.int64)]),
            np.concatenate([removed, np.zeros(k, bool)]))
