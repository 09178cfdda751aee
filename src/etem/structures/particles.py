"""Pt nanoparticles from ``ase.cluster``: shapes, sizes, twins, strain, rotation, surface defects.

Particle size is the diameter of the sphere of equal volume [nm]: the shape parameters whose
atom count is closest to ``rho * pi * d**3 / 6`` (rho = 4 / a_Pt**3) are chosen. Templates are
cached per process, so a library with many variants of a few (shape, size) pairs is cheap.
"""

from __future__ import annotations

import functools

import numpy as np
from ase.cluster import Decahedron, Octahedron, wulff_construction
from scipy.spatial import cKDTree

from etem.errors import ConfigError
from etem.structures.crystals import PT_A

SHAPES = ("octahedron", "truncated_octahedron", "cuboctahedron", "wulff", "decahedron")
#: Relative surface energies of Pt (111), (100), (110) for the Wulff construction.
WULFF_ENERGIES = ((1, 1, 1), 1.0), ((1, 0, 0), 1.14), ((1, 1, 0), 1.22)


def target_atoms(size_nm: float) -> int:
    """Atoms of an fcc Pt sphere of diameter ``size_nm`` [nm]."""
    rho = 4.0 / PT_A**3  # atoms per Å^3
    return max(4, round(rho * np.pi * (10.0 * size_nm) ** 3 / 6.0))


def _octahedral_count(length: int, cutoff: int) -> int:
    """Atoms of ``ase.cluster.Octahedron(length, cutoff)`` (closed form)."""
    n = (2 * length**3 + length) // 3  # regular octahedron
    # each of the 6 vertices loses a square pyramid of `cutoff` layers: sum_{k=1..c} k^2
    return n - 6 * (cutoff * (cutoff + 1) * (2 * cutoff + 1) // 6)


def _cutoff(shape: str, length: int) -> int | None:
    if shape == "octahedron":
        return 0
    if shape == "truncated_octahedron":
        return (length - 1) // 3
    if length % 2 == 0:  # cuboctahedron: odd length
        return None
    return (length - 1) // 2


def _octahedral(shape: str, n_target: int) -> np.ndarray:
    best = None
    for length in range(2, 60):
        cutoff = _cutoff(shape, length)
        if cutoff is None or cutoff * 2 >= length:
            continue
        n = _octahedral_count(length, cutoff)
        if best is None or abs(n - n_target) < abs(best[2] - n_target):
            best = (length, cutoff, n)
        if n > 2 * n_target:
            break
    assert best is not None
    atoms = Octahedron("Pt", best[0], best[1], latticeconstant=PT_A)
    return atoms.get_positions()


def _decahedron(n_target: int) -> np.ndarray:
    best = None
    for r in (0, 1):
        for p in range(2 + r, 14):
            over = False
            for q in (p - 1, p):
                if q < 1:
                    continue
                atoms = Decahedron("Pt", p, q, r, latticeconstant=PT_A)
                err = abs(len(atoms) - n_target)
                if best is None or err < best[0]:
                    best = (err, atoms.get_positions())
                over = over or len(atoms) > n_target
            if over:
                break
    assert best is not None
    return best[1]


@functools.lru_cache(maxsize=128)
def template(shape: str, size_nm: float) -> np.ndarray:
    """Centred atom positions [Å] of a Pt particle in its cubic crystal frame (read-only).

    For the decahedron the five-fold axis is along z (a <110> of every twin unit).
    """
    n_target = target_atoms(size_nm)
    if shape in ("octahedron", "truncated_octahedron", "cuboctahedron"):
        pos = _octahedral(shape, n_target)
    elif shape == "decahedron":
        pos = _decahedron(n_target)
    elif shape == "wulff":
        surfaces = [s for s, _ in WULFF_ENERGIES]
        energies = [e for _, e in WULFF_ENERGIES]
        atoms = wulff_construction("Pt", surfaces, energies, n_target, "fcc",
                                   rounding="closest", latticeconstant=PT_A)
        pos = atoms.get_positions()
    else:
        raise ConfigError(f"unknown particle shape {shape!r}; choose from {', '.join(SHAPES)}")
    # centre on an atom near the centroid so lattice planes stay on the support's lattice
    c = pos.mean(axis=0)
    centre = pos[np.argmin(np.linalg.norm(pos - c, axis=1))]
    out = np.ascontiguousarray(pos - centre)
    out.setflags(write=False)
    return out


def rot_z(deg: float) -> np.ndarray:
    """Rotation matrix about z by ``deg`` [deg]."""
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def rot_x(deg: float) -> np.ndarray:
    """Rotation matrix about x by ``deg`` [deg]."""
    t = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


@functools.lru_cache(maxsize=128)
def flat_bottom_angle(shape: str, size_nm: float) -> float:
    """Rotation about z [deg] that gives a decahedron the flattest bottom (most atoms low)."""
    pos = template(shape, size_nm)
    best = (-1, 0.0)
    for deg in np.arange(0.0, 72.0, 3.0):
        y = pos @ rot_z(float(deg)).T
        n_low = int(np.sum(y[:, 1] > y[:, 1].max() - 0.5))
        if n_low > best[0]:
            best = (n_low, float(deg))
    return best[1]


def twin(pos: np.ndarray, normal: np.ndarray, offset_layers: int, layer: float) -> np.ndarray:
    """Insert a twin boundary: mirror one side of the particle across a lattice plane.

    The plane has unit ``normal`` and passes ``offset_layers`` atomic layers (spacing
    ``layer`` [Å]) from the atom at the origin. Atoms on the far side are replaced by the
    mirror image of the near side, which is the twinned lattice, cut to the original extent.
    """
    n = normal / np.linalg.norm(normal)
    p = offset_layers * layer
    s = pos @ n - p
    keep = pos[s <= 1e-6]
    far_extent = s.max()
    src = keep[(keep @ n - p) < -1e-6]
    mirrored = src - 2.0 * ((src @ n - p)[:, None]) * n[None]
    ms = mirrored @ n - p
    return np.concatenate([keep, mirrored[ms <= far_extent + 1e-6]])


def surface_mask(pos: np.ndarray, cutoff: float = 3.0, max_neighbours: int = 9) -> np.ndarray:
    """Atoms with at most ``max_neighbours`` neighbours within ``cutoff`` [Å] (surface)."""

    counts = cKDTree(pos).query_ball_point(pos, cutoff, return_length=True) - 1
    return counts <= max_neighbours
