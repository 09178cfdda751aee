"""Crystal lattices (fluorite CeO2, perovskite SrTiO3, fcc Pt) and their orientation.

A crystal is filled into a box of the lab frame *unit by unit*: a unit is a lattice point with
its motif (CeO2: Ce + 2 O, SrTiO3: Sr + Ti + 3 O), selected when its origin lies inside the box.
Whole units keep every block exactly stoichiometric (O:Ce = 2), and a box face placed on a
layer of unit origins gives a clean, stoichiometric termination (CeO2(111): O-Ce-O trilayers).

Lab frame: z = beam (zone axis), y = *down* the image, so a surface with outward normal n
(Miller indices) seen edge-on faces up: n -> -y; x = y × z completes a right-handed frame.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from etem.errors import ConfigError


@dataclass(frozen=True)
class Lattice:
    """A cubic crystal: lattice constant [Å], lattice points and motif in units of ``a``."""

    name: str
    a: float
    points: tuple[tuple[float, float, float], ...]
    motif: tuple[tuple[str, float, float, float], ...]
    valence: tuple[tuple[str, int], ...]

    @property
    def fcc(self) -> bool:
        return len(self.points) == 4

    def repeat_along(self, axis: tuple[int, int, int]) -> float:
        """Shortest lattice period along ``axis`` (Miller indices) [Å]."""
        u = np.asarray(axis, dtype=float)
        k = 1.0 if (not self.fcc or int(sum(axis)) % 2 == 0) else 2.0
        return float(self.a * np.linalg.norm(u) * (k / 2.0 if self.fcc else 1.0))

    def layer_spacing(self, normal: tuple[int, int, int]) -> float:
        """Spacing of stoichiometric layers of lattice points with normal ``normal`` [Å]."""
        h = np.asarray(normal, dtype=float)
        d = self.a / np.linalg.norm(h)
        if self.fcc and len({abs(int(x)) % 2 for x in normal}) > 1:  # mixed parity: halve
            d /= 2.0
        return float(d)


_FCC = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))

CEO2 = Lattice(
    "CeO2", 5.411, _FCC,
    (("Ce", 0.0, 0.0, 0.0), ("O", 0.25, 0.25, 0.25), ("O", -0.25, -0.25, -0.25)),
    (("Ce", 4), ("O", -2)),
)
SRTIO3 = Lattice(
    "SrTiO3", 3.905, ((0.0, 0.0, 0.0),),
    (("Sr", 0.0, 0.0, 0.0), ("Ti", 0.5, 0.5, 0.5), ("O", 0.5, 0.5, 0.0), ("O", 0.5, 0.0, 0.5),
     ("O", 0.0, 0.5, 0.5)),
    (("Sr", 2), ("Ti", 4), ("O", -2)),
)
PT_A = 3.924  # Pt lattice constant [Å]

LATTICES: dict[str, Lattice] = {"CeO2": CEO2, "SrTiO3": SRTIO3}

#: Zone axis (beam) and facets seen edge-on, per oxide material.
ORIENTATIONS: dict[str, dict[str, tuple[int, int, int]]] = {
    "CeO2": {"zone": (1, 1, 0), "111": (1, -1, 1), "100": (0, 0, 1), "110": (1, -1, 0)},
    "SrTiO3": {"zone": (0, 0, 1), "100": (0, 1, 0), "110": (1, -1, 0)},
}


def parse_axis(text: str) -> tuple[int, int, int]:
    """Miller indices from ``'110'``, ``'1-10'`` or ``'1,-1,0'``."""
    s = text.replace(" ", "")
    try:
        if "," in s:
            vals = [int(v) for v in s.split(",")]
        else:
            vals, sign = [], 1
            for ch in s:
                if ch == "-":
                    sign = -1
                    continue
                vals.append(sign * int(ch))
                sign = 1
    except ValueError:
        raise ConfigError(f"zone axis {text!r}: expected Miller indices like '110'") from None
    if len(vals) != 3 or not any(vals):
        raise ConfigError(f"zone axis {text!r}: expected three indices, not all zero")
    return (vals[0], vals[1], vals[2])


def facet_normal(material: str, zone: tuple[int, int, int], facet: str) -> tuple[int, int, int]:
    """A normal of the ``facet`` family that is perpendicular to ``zone`` (seen edge-on)."""

    base = parse_axis(facet)
    cands = set()
    for perm in itertools.permutations(base):
        for signs in itertools.product((1, -1), repeat=3):
            v = tuple(int(p * s) for p, s in zip(perm, signs, strict=True))
            if np.dot(v, zone) == 0:
                cands.add(v)
    if not cands:
        raise ConfigError(f"{material}: no {{{facet}}} facet is edge-on along [{zone}]")
    best = sorted(cands, reverse=True)[0]
    return best[0], best[1], best[2]


@functools.lru_cache(maxsize=64)
def rotation(zone: tuple[int, int, int], normal: tuple[int, int, int]) -> np.ndarray:
    """Rotation R (lab = R @ crystal) with zone -> +z and surface normal -> -y."""
    z = np.asarray(zone, float) / np.linalg.norm(zone)
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    if abs(np.dot(z, n)) > 1e-9:
        raise ValueError("surface normal must be perpendicular to the zone axis")
    y = -n
    x = np.cross(y, z)
    return np.array([x, y, z])


def fill_box(
    lattice: Lattice, rot: np.ndarray, origin: np.ndarray, lo: np.ndarray, hi: np.ndarray,
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Atoms of all units whose origin lies in the lab box ``lo <= r < hi`` [Å].

    ``origin`` [Å] is the lab position of a lattice point. Returns positions (N, 3) [Å],
    symbols, unit index per atom and the lab positions of the selected unit origins.
    """
    a = lattice.a
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])]) - origin
    cryst = corners @ rot / a  # lab -> crystal (rows)
    nmin = np.floor(cryst.min(axis=0)) - 1
    nmax = np.ceil(cryst.max(axis=0)) + 1
    grid = np.stack(np.meshgrid(*(np.arange(lo_, hi_ + 1) for lo_, hi_ in zip(nmin, nmax,
                                strict=True)), indexing="ij"), -1).reshape(-1, 3)
    pts = (grid[:, None, :] + np.asarray(lattice.points)[None]).reshape(-1, 3)
    lab = pts @ rot.T * a + origin
    keep = np.all((lab >= lo) & (lab < hi), axis=1)
    units = lab[keep]
    # deterministic order: by z, then y, then x (rounded to avoid float jitter)
    order = np.lexsort(np.round(units, 6).T)
    units = units[order]
    motif = np.array([[m[1], m[2], m[3]] for m in lattice.motif]) @ rot.T * a
    pos = (units[:, None, :] + motif[None]).reshape(-1, 3)
    symbols = [m[0] for m in lattice.motif] * len(units)
    unit_id = np.repeat(np.arange(len(units)), len(lattice.motif))
    return pos, symbols, unit_id, units


def valence_of(lattice: Lattice, symbols: list[str]) -> np.ndarray:
    """Nominal valence of each atom of the lattice's elements."""
    table = dict(lattice.valence)
    return np.array([table.get(s, 0) for s in symbols], dtype=np.int64)
