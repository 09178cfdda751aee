"""Synthetic experimental movies: a structure that is stable, then changes at event frames.

The structure is imaged by the campaign machinery (potential once per structure state, one
multislice pass, CTF, detector) at the movie's frame size; every frame is the clean image of
the current state, shifted by the stage drift, scaled to the per-frame dose [e/px/frame]
(typical K3 movies at 40-100 fps: 0.1-1 e/px/frame) and drawn with Poisson noise
(:func:`etem.simulation.noise.apply_dose`). Events, applied cumulatively:

* ``surface_loss``: the ``surface_atoms_lost`` metal atoms farthest from the particle
  centroid (random among the outermost shell) leave;
* ``rotation``: the metal particle turns by ``rotation_deg`` about the beam axis (z) around
  its centroid;
* ``vacancy``: ``vacancies_per_event`` anion (O) atoms leave; their sites become recorded
  vacancies, so the column tables count them.

Structures without metal atoms get a ``vacancy`` event instead of the metal events.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from ase import Atoms

from etem.config import EtemConfig
from etem.config.simulation import SyntheticMovieConfig
from etem.errors import InputError
from etem.io import atomic_path, h5_write_attrs
from etem.seeding import rng
from etem.simulation.contract import (
    MOVIE_COLUMN_COLUMNS,
    MOVIE_COLUMN_STRINGS,
    MOVIE_CONTRACT_VERSION,
)
from etem.simulation.grid import image_grid
from etem.simulation.imaging import Imager
from etem.simulation.labels import image_columns
from etem.simulation.multislice import Multislice, build_sliced_potential, exit_plane_indices
from etem.simulation.noise import apply_dose, dose_per_A2
from etem.structures.column_table import column_table
from etem.structures.io import set_vacancy_sites, vacancy_sites

log = logging.getLogger("etem.simulation.synthetic_movie")

METAL_SYMBOLS = frozenset({"Pt", "Au", "Pd", "Ag", "Cu", "Ni", "Rh", "Ir"})
ANION_SYMBOLS = frozenset({"O"})


def _metal_mask(atoms: Atoms) -> np.ndarray:
    return np.array([s in METAL_SYMBOLS for s in atoms.get_chemical_symbols()], dtype=bool)


def apply_event(
    atoms: Atoms, kind: str, movie: SyntheticMovieConfig, r: np.random.Generator
) -> tuple[Any, str]:
    """A new state of ``atoms`` after one event; returns (atoms, the kind actually applied)."""

    atoms = atoms.copy()
    metal = _metal_mask(atoms)
    if kind in ("surface_loss", "rotation") and metal.sum() < max(4, movie.surface_atoms_lost + 1):
        kind = "vacancy"
    if kind == "surface_loss":
        idx = np.flatnonzero(metal)
        pos = atoms.positions[idx]
        dist = np.linalg.norm(pos - pos.mean(axis=0), axis=1)
        n = movie.surface_atoms_lost
        shell = idx[np.argsort(-dist, kind="stable")[: min(len(idx) - 1, 3 * n)]]
        gone = r.choice(shell, size=min(n, len(shell)), replace=False)
        del atoms[sorted(gone.tolist())]
    elif kind == "rotation":
        idx = np.flatnonzero(metal)
        pos = atoms.positions[idx]
        centre = pos.mean(axis=0)
        a = np.deg2rad(movie.rotation_deg)
        rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0, 0, 1]])
        atoms.positions[idx] = (pos - centre) @ rot.T + centre
    else:
        kind = "vacancy"
        anion = np.flatnonzero([s in ANION_SYMBOLS for s in atoms.get_chemical_symbols()])
        if len(anion) == 0:
            raise InputError("simulate-movie: a 'vacancy' event needs O atoms in the structure")
        gone = r.choice(anion, size=min(movie.vacancies_per_event, len(anion)), replace=False)
        old_pos, old_sym = vacancy_sites(atoms)
        new_pos = np.concatenate([old_pos, atoms.positions[np.sort(gone)]], axis=0)
        new_sym = old_sym + [atoms.get_chemical_symbols()[i] for i in np.sort(gone)]
        del atoms[sorted(gone.tolist())]
        set_vacancy_sites(atoms, new_pos, new_sym)
    return atoms, kind


def _fourier_shift(image: np.ndarray, dx_px: float, dy_px: float) -> np.ndarray:
    """Periodic sub-pixel shift of an image (rows = y) by (dx, dy) [px]."""
    if dx_px == 0 and dy_px == 0:
        return image
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.fftfreq(image.shape[1])[None, :]
    phase = np.exp(-2j * np.pi * (kx * dx_px + ky * dy_px))
    return np.fft.ifft2(np.fft.fft2(image) * phase).real.astype(np.float32)


def simulate_movie(config: EtemConfig, atoms: Atoms, structure_id: str) -> dict[str, Any]:
    """Frames, clean frames, events and per-frame column tables of a synthetic movie."""

    movie, sim, noise = config.synthetic_movie, config.simulation, config.noise
    sim_m = sim.model_copy(update={"output_size_px": movie.size_px})
    cell = atoms.cell.lengths()
    grid = image_grid((cell[0], cell[1]), sim.sampling_A, movie.size_px)
    imager = Imager(sim_m, grid, sim.fft_threads)
    r = rng(config.seed, "movie", structure_id)
    events = sorted(set(movie.event_frames))
    states, kinds = [atoms], []
    for i, _frame in enumerate(events):
        new, kind = apply_event(states[-1], movie.event_kinds[i % len(movie.event_kinds)], movie, r)
        states.append(new)
        kinds.append(kind)
    images, tables = [], []
    depth_A = None
    for state in states:
        sp = build_sliced_potential(state, grid, sim, sim.fft_threads)
        want = [movie.thickness_nm] if movie.thickness_nm else [sp.exit_depths_A[-1] / 10.0]
        plane = exit_plane_indices(sp.exit_depths_A, want)[0]
        depth_A = float(sp.exit_depths_A[plane])
        wave = Multislice(sp, sim.fft_threads).exit_waves_fourier((0.0, 0.0), [plane])[0]
        images.append(imager.images(wave, [movie.defocus_nm])[0])
        tables.append(image_columns(column_table(state, z_max_A=depth_A), depth_A, (0, 0),
                                    grid.extent_A))
    n, px = movie.n_frames, grid.pixel_size_A
    angle = r.uniform(0, 2 * np.pi)
    step = movie.drift_px_per_frame * np.array([np.cos(angle), np.sin(angle)])
    drift = np.arange(n)[:, None] * step[None, :]
    state_of = np.searchsorted(np.array(events), np.arange(n), side="right")
    dose_px = movie.dose_e_per_px_per_frame
    clean = np.empty((n, movie.size_px, movie.size_px), dtype=np.float32)
    frames = np.empty_like(clean)
    col_rows = []
    noise_rng = rng(config.seed, "movie", structure_id, "noise")
    for t in range(n):
        img = _fourier_shift(images[state_of[t]], drift[t, 0], drift[t, 1])
        img = np.clip(img, 0.0, None)
        clean[t] = img * np.float32(dose_px)
        frames[t] = apply_dose(img, dose_per_A2(dose_px, px), px, noise_rng,
                               noise.read_noise_e, noise.gain)
        cols = tables[state_of[t]].copy()
        cols["x_A"] = np.mod(cols["x_A"] + drift[t, 0] * px, grid.extent_A)
        cols["y_A"] = np.mod(cols["y_A"] + drift[t, 1] * px, grid.extent_A)
        col_rows.append(cols.assign(frame=t))

    columns = pd.concat(col_rows, ignore_index=True)
    return {
        "frames": frames, "clean": clean, "events": np.asarray(events, dtype=np.int64),
        "event_kinds": kinds, "drift_px": drift, "columns": columns,
        "pixel_size_A": px, "depth_A": depth_A,
    }


def write_movie(
    path: str | os.PathLike[str], result: dict[str, Any], config: EtemConfig, structure_id: str,
    attrs: dict[str, Any],
) -> Path:
    """Write a synthetic movie atomically (layout: ``contract.MOVIE_LAYOUT``)."""

    movie = config.synthetic_movie
    px = float(result["pixel_size_A"])
    path = Path(path)
    _, h, w = result["frames"].shape
    comp = {"compression": "lzf", "shuffle": True}
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("frames", data=result["frames"], chunks=(1, h, w), track_times=False,
                         **comp)
        f.create_dataset("clean", data=result["clean"], chunks=(1, h, w), track_times=False,
                         **comp)
        f.create_dataset("events", data=result["events"], track_times=False)
        f.create_dataset("event_kinds", data=np.array(result["event_kinds"], dtype=object),
                         dtype=h5py.string_dtype(), track_times=False)
        f.create_dataset("drift_px", data=result["drift_px"], track_times=False)
        g = f.create_group("columns")
        cols = result["columns"]
        for c in MOVIE_COLUMN_COLUMNS:
            if c in MOVIE_COLUMN_STRINGS:
                g.create_dataset(c, data=np.array(cols[c].astype(str).tolist(), dtype=object),
                                 dtype=h5py.string_dtype(), track_times=False)
            else:
                g.create_dataset(c, data=cols[c].to_numpy(), track_times=False)
        h5_write_attrs(f, {
            **attrs,
            "contract_version": MOVIE_CONTRACT_VERSION,
            "pixel_size_A": px,
            "frame_time_s": 1.0 / movie.frame_rate_hz,
            "dose_e_per_px_per_frame": movie.dose_e_per_px_per_frame,
            "dose_e_per_A2_per_frame": dose_per_A2(movie.dose_e_per_px_per_frame, px),
            "structure_id": structure_id,
            "defocus_nm": movie.defocus_nm,
            "thickness_nm": float(result["depth_A"]) / 10.0,
        })
    return path


def read_movie(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a synthetic movie: arrays, attrs and the per-frame column table."""

    path = Path(path)
    if not path.exists():
        raise InputError(f"movie {path}: no such file")
    with h5py.File(path, "r") as f:
        out: dict[str, Any] = {k: f[k][...] for k in ("frames", "clean", "events", "drift_px")}
        out["event_kinds"] = f["event_kinds"].asstr()[...].tolist()
        out["attrs"] = dict(f.attrs)
        out["columns"] = pd.DataFrame({
            c: (f["columns"][c].asstr()[...] if c in MOVIE_COLUMN_STRINGS else f["columns"][c][...])
            for c in MOVIE_COLUMN_COLUMNS
        })
    return out
