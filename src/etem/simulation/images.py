"""The campaign path: every image of a structure from one potential, one pass per tilt.

Per structure (and frozen-phonon configuration):

1. build the abTEM potential once and turn it into band-limited transmission functions;
2. for each of its tilts, ONE multislice pass that keeps every needed exit plane (thickness
   series) in Fourier space;
3. for each exit wave, every defocus: multiply by the cached CTF kernel, inverse FFT,
   intensity; then the detector (resampling + MTF) -- all images of a structure in batches.

Which (tilt, thickness, defocus) images a structure gets is drawn from the config seed
(:func:`plan_images`), so any shard layout gives the same images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from ase import Atoms

from etem.config import EtemConfig
from etem.config.simulation import SimulationConfig
from etem.errors import ValidationError
from etem.seeding import derive_seed, rng
from etem.simulation.grid import ImageGrid, image_grid
from etem.simulation.imaging import Imager
from etem.simulation.labels import LABEL_MAPS, image_columns, label_maps
from etem.simulation.microscope import (
    Microscope,
    draw_microscopes,
    fixed_microscope,
    microscope_regimes,
    structure_energy_kv,
)
from etem.simulation.multislice import (
    Multislice,
    build_sliced_potential,
    exit_plane_indices,
    phonon_configurations,
)
from etem.structures.column_table import column_table

log = logging.getLogger("etem.simulation.images")


@dataclass(frozen=True)
class ImageSpec:
    """One image of a structure: tilt, exit plane and defocus."""

    tilt_index: int
    tilt_mrad: tuple[float, float]
    exit_plane: int
    depth_A: float
    defocus_nm: float
    microscope: Microscope | None = None  # drawn (randomised campaign); None = the config's
    slot: int = -1  # index of the draw within the structure (randomised campaign)


def plan_images(
    sim: SimulationConfig, structure_id: str, seed: int, depths_A: np.ndarray,
    dose_range: tuple[float, float] = (20.0, 400.0),
) -> list[ImageSpec]:
    """The images of one structure, a deterministic function of (config, seed, structure).

    ``depths_A`` are the exit-plane depths after each slice of the structure. With
    ``sim.microscope.enabled`` every (tilt, plane, defocus slot) gets its own drawn
    :class:`Microscope` (defocus included; ``dose_range`` [e/Å²] is the dose range when the
    ranges give none), drawn before the subset is taken so any subset size gives the same
    microscopes.
    """
    r = rng(seed, "simulation", "plan", structure_id)
    n_tilts = len(sim.tilts_mrad)
    k = min(sim.tilts_per_structure or n_tilts, n_tilts)
    tilt_ids = sorted(r.choice(n_tilts, size=k, replace=False).tolist()) if k < n_tilts else list(
        range(n_tilts)
    )
    planes = exit_plane_indices(depths_A, sim.thickness_nm)
    grid = [
        ImageSpec(t, (float(sim.tilts_mrad[t][0]), float(sim.tilts_mrad[t][1])), p,
                  float(depths_A[p]), float(d))
        for t in tilt_ids for p in planes for d in sim.defocus_nm
    ]
    if sim.microscope.enabled:
        mics = draw_microscopes(sim, seed, structure_id, len(grid), dose_range)
        grid = [replace(g, defocus_nm=m.defocus_nm, microscope=m, slot=i)
                for i, (g, m) in enumerate(zip(grid, mics, strict=True))]
    n = sim.images_per_structure
    if n is not None and n < len(grid):
        keep = sorted(r.choice(len(grid), size=n, replace=False).tolist())
        grid = [grid[i] for i in keep]
    return grid


def image_id(structure_id: str, spec: ImageSpec) -> str:
    """Unique image id ``<structure>_t<tilt index>_z<depth Å>_f<defocus nm>`` (plus
    ``_m<draw>`` in a randomised campaign)."""
    base = f"{structure_id}_t{spec.tilt_index}_z{spec.depth_A:.1f}_f{spec.defocus_nm:+.2f}"
    return base if spec.slot < 0 else f"{base}_m{spec.slot}"


@dataclass
class StructureImages:
    """All images of one structure: clean images, label maps, parameter rows, column rows.

    ``labels[name][i]`` is the (H, W) map of image i; images of the same exit plane and tilt
    share one (read-only) array.
    """

    clean: np.ndarray
    labels: dict[str, list[np.ndarray]]
    params: list[dict[str, Any]]
    columns: list[Any]


class ImageSimulator:
    """Simulates structures with cached FFT plans and CTF kernels (one per process)."""

    def __init__(self, config: EtemConfig) -> None:
        self.config = config
        self.sim = config.simulation
        self._imagers: dict[tuple[float, int, int, float], Imager] = {}

    def grid_of(self, atoms: Atoms) -> ImageGrid:
        """Simulation/output grid of a structure."""
        cell = atoms.cell.lengths()
        return image_grid((cell[0], cell[1]), self.sim.sampling_A, self.sim.output_size_px)

    def imager(self, grid: ImageGrid, energy_kv: float | None = None) -> Imager:
        energy = float(self.sim.energy_kv if energy_kv is None else energy_kv)
        key = (round(grid.extent_A, 6), grid.gpts, grid.output_px, energy)
        if key not in self._imagers:
            self._imagers[key] = Imager(self.sim, grid, self.sim.fft_threads, energy)
        return self._imagers[key]

    def simulate(
        self, atoms: Atoms, structure_id: str, family: str = "", structure_path: str = "",
        with_labels: bool = True,
    ) -> StructureImages:
        """Every planned image of one structure (see module docstring)."""
        sim = self.sim
        try:
            grid = self.grid_of(atoms)
        except ValidationError as exc:
            raise ValidationError(f"structure {structure_id}: {exc}") from None
        seed = derive_seed(self.config.seed, "simulation", structure_id)
        configs = phonon_configurations(atoms, sim, seed)
        energy = structure_energy_kv(sim, self.config.seed, structure_id)
        imager = self.imager(grid, energy)
        specs: list[ImageSpec] | None = None
        acc: np.ndarray | None = None
        n_slices = 0
        for k_config, config_atoms in enumerate(configs):
            sp = build_sliced_potential(config_atoms, grid, sim, sim.fft_threads, energy)
            n_slices = sp.n_slices
            if specs is None:
                specs = plan_images(sim, structure_id, self.config.seed, sp.exit_depths_A,
                                    self.config.noise.train_dose_e_per_A2)
                acc = np.zeros((len(specs), grid.output_px, grid.output_px), dtype=np.float32)
            assert acc is not None
            ms = Multislice(sp, sim.fft_threads)
            for tilt_index in sorted({s.tilt_index for s in specs}):
                mine = [i for i, s in enumerate(specs) if s.tilt_index == tilt_index]
                planes = sorted({specs[i].exit_plane for i in mine})
                waves = ms.exit_waves_fourier(specs[mine[0]].tilt_mrad, planes)
                for w, plane in zip(waves, planes, strict=True):
                    idx = [i for i in mine if specs[i].exit_plane == plane]
                    imgs = imager.images(w, [specs[i].microscope or specs[i].defocus_nm
                                             for i in idx])
                    if k_config == 0:  # every image belongs to one (tilt, plane): first write
                        acc[idx] = imgs
                    else:
                        acc[idx] += imgs
        assert specs is not None and acc is not None
        if len(configs) > 1:
            acc /= len(configs)
        regimes = microscope_regimes(
            [s.microscope or fixed_microscope(sim, s.defocus_nm) for s in specs], sim.microscope)
        params = [
            self._row(structure_id, family, structure_path, s, grid, seed, n_slices, regime)
            for s, regime in zip(specs, regimes, strict=True)
        ]
        labels: dict[str, list[np.ndarray]] = {}
        col_rows: list[Any] = []
        if with_labels:
            labels, col_rows = self._labels(atoms, specs, grid)
        return StructureImages(clean=acc, labels=labels, params=params, columns=col_rows)

    def _labels(
        self, atoms: Atoms, specs: list[ImageSpec], grid: ImageGrid
    ) -> tuple[dict[str, list[np.ndarray]], list[Any]]:
        n, px = grid.output_px, grid.pixel_size_A
        out: dict[str, list[np.ndarray]] = {k: [] for k in LABEL_MAPS}
        tables: dict[int, Any] = {}
        drawn: dict[tuple[int, int], tuple[dict[str, np.ndarray], Any]] = {}
        rows = []
        for i, s in enumerate(specs):
            key = (s.exit_plane, s.tilt_index)  # labels do not depend on defocus
            if key not in drawn:
                if s.exit_plane not in tables:
                    tables[s.exit_plane] = column_table(atoms, z_max_A=s.depth_A)
                cols = image_columns(tables[s.exit_plane], s.depth_A, s.tilt_mrad,
                                     grid.extent_A)
                drawn[key] = (label_maps(cols, n, px, self.sim.label_disc_radius_A), cols)
            maps, cols = drawn[key]
            for k, m in maps.items():
                out[k].append(m)  # shared, read-only: images of one (plane, tilt)
            rows.append(cols.assign(image_index=i))
        return out, rows

    def _row(
        self, structure_id: str, family: str, structure_path: str, s: ImageSpec,
        grid: ImageGrid, seed: int, n_slices: int, regime: tuple[float, str],
    ) -> dict[str, Any]:
        sim = self.sim
        mic = s.microscope or fixed_microscope(sim, s.defocus_nm)
        index, regime_name = regime
        return {
            **mic.as_row(),
            "contrast_index": index,
            "contrast_regime": regime_name,
            "image_id": image_id(structure_id, s),
            "structure_id": structure_id,
            "family": family,
            "structure_path": structure_path,
            "thickness_nm": s.depth_A / 10.0,
            "defocus_nm": s.defocus_nm,
            "tilt_x_mrad": s.tilt_mrad[0],
            "tilt_y_mrad": s.tilt_mrad[1],
            "pixel_size_A": grid.pixel_size_A,
            "slice_thickness_A": sim.slice_thickness_A,
            "sampling_A": grid.sampling_A,
            "gpts": grid.gpts,
            "exit_plane": s.exit_plane,
            "n_slices": n_slices,
            "parametrization": sim.parametrization,
            "projection": sim.projection,
            "frozen_phonons": sim.frozen_phonons,
            "frozen_phonon_sigma_A": sim.frozen_phonon_sigma_A,
            "seed": seed,
        }
