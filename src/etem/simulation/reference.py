"""The plain abTEM recipe of one image: what a third party runs to recompute image i.

Given a row of the image index (or a shard's ``/params``) and the structure file, this uses
abTEM alone for the physics (new Potential + multislice + CTF for the one image) and then
etem's documented detector step (:func:`etem.simulation.imaging.detect`: Fourier resampling
to the output grid and the pixel MTF). It is also the *naive* path of the benchmark and the
reference the campaign path is tested against.

It also holds the recipe of the *independent* test images (structures built with ASE alone,
not etem's structure builder, imaged by :func:`abtem_image` under a fixed corrected
microscope): :func:`bulk_crystal`, :func:`ceo2_crystal`, :func:`corrected_microscope`,
:func:`uncorrected_microscope` and :func:`independent_image`, shared by
``tests/integration/test_pretrained_unseen.py`` and ``benchmarks/independent_set.py``.
"""

from __future__ import annotations

from typing import cast

import abtem
import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.spacegroup import crystal

from etem.config.simulation import SimulationConfig
from etem.simulation.grid import ImageGrid, image_grid
from etem.simulation.imaging import ctf_parameters, detect
from etem.simulation.microscope import Microscope, fixed_microscope
from etem.simulation.multislice import configure_abtem, phonon_configurations


def abtem_image(
    atoms: Atoms,
    grid: ImageGrid,
    sim: SimulationConfig,
    *,
    exit_plane: int,
    tilt_mrad: tuple[float, float],
    defocus_nm: float,
    seed: int = 0,
    microscope: Microscope | None = None,
) -> np.ndarray:
    """One clean image (N, N), float32, (y, x) order, vacuum = 1, computed with abTEM only.

    Parameters
    ----------
    exit_plane : int
        Slice index of the exit plane (``round(thickness_nm * 10 / slice_thickness) - 1``
        clipped to the structure; the index column ``exit_plane`` records it).
    tilt_mrad : (float, float)
        Incident beam tilt [mrad].
    defocus_nm : float
        Defocus [nm] (abTEM: defocus = -C10).
    seed : int
        Frozen-phonon seed (ignored when ``sim.frozen_phonons == 0``).
    microscope : Microscope, optional
        The image's own microscope (a randomised campaign: the row's voltage, aberrations,
        coherence, detector pixel, blur); default the config's at ``defocus_nm``.
    """
    configure_abtem(1, sim.fft_backend)
    mic = microscope or fixed_microscope(sim, defocus_nm)
    ctf = abtem.CTF(energy=mic.energy_kv * 1e3, **ctf_parameters(mic))
    total = None
    configs = phonon_configurations(atoms, sim, seed)
    for config_atoms in configs:
        potential = abtem.Potential(
            config_atoms, gpts=grid.gpts, slice_thickness=sim.slice_thickness_A,
            parametrization=sim.parametrization, projection=sim.projection,
            exit_planes=(int(exit_plane),),
        )
        tilt = (float(tilt_mrad[0]), float(tilt_mrad[1]))
        wave = abtem.PlaneWave(energy=mic.energy_kv * 1e3, tilt=tilt)
        exit_wave = cast("abtem.Waves", wave.multislice(potential, lazy=False))
        intensity = exit_wave.apply_ctf(ctf).intensity().array
        intensity = np.asarray(intensity, dtype=np.float32).reshape(grid.gpts, grid.gpts)
        total = intensity if total is None else total + intensity
    assert total is not None
    return detect(total / len(configs), grid, mic.detector_mtf, 1, mic.detector_pixel_A,
                  mic.blur_fwhm_A)


#: lattice constants [Å] of the independent test crystals
A_PT = 3.924
A_CEO2 = 5.411
#: the corrected microscope of the independent test images: voltage [kV], Cs [µm]
ENERGY_KV = 300.0
CS_UM = -15.0
#: its imaging conditions: ``blur`` (FWHM 1.4 Å), ``pixel`` (0.18 Å detector pixels, blur
#: 0.6 Å) — both outside the pretrained campaigns' ranges — and ``in-range`` (blur 0.6 Å)
CONDITIONS = ("blur", "pixel", "in-range")
#: an uncorrected 200 kV microscope (FEG): voltage [kV], Cs [µm], focal spread [nm] (1/e)
UNCORRECTED_KV = 200.0
UNCORRECTED_CS_UM = 1200.0
UNCORRECTED_FOCAL_SPREAD_NM = 4.0


def ceo2_crystal(nx: int, nz: int) -> Atoms:
    """Fluorite CeO2 (ASE alone), cubic cell, ``nx`` x ``nx`` x ``nz`` unit cells, [001]
    along z."""
    return crystal(["Ce", "O"], basis=[(0, 0, 0), (0.25, 0.25, 0.25)], spacegroup=225,
                   cellpar=[A_CEO2, A_CEO2, A_CEO2, 90, 90, 90]) * (nx, nx, nz)


def bulk_crystal(material: str, cells: int, lateral: int | None = None) -> Atoms:
    """Bulk Pt fcc (7 x 7 cells) or CeO2 (5 x 5 cells) along [001], ``cells`` unit cells
    thick, built with ASE alone; ``lateral`` cells along x and y instead of 7 / 5 (a smaller
    field for fine pixels)."""
    if material == "Pt":
        n = lateral or 7
        return bulk("Pt", "fcc", a=A_PT, cubic=True) * (n, n, cells)
    if material == "CeO2":
        return ceo2_crystal(lateral or 5, cells)
    raise ValueError(f"unknown material {material!r}")


def corrected_microscope(condition: str, defocus_nm: float) -> Microscope:
    """The corrected 300 kV microscope (Cs -15 µm, C5 2 mm) at ``defocus_nm`` [nm] under
    ``condition`` (one of :data:`CONDITIONS`)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}")
    return Microscope(
        energy_kv=ENERGY_KV, cs_um=CS_UM, c5_mm=2.0, focal_spread_nm=3.0, convergence_mrad=0.2,
        aperture_mrad=SimulationConfig().aperture_mrad, defocus_nm=defocus_nm,
        detector_pixel_A=0.18 if condition == "pixel" else None,
        blur_fwhm_A=1.4 if condition == "blur" else 0.6,
    )


def uncorrected_microscope(defocus_nm: float) -> Microscope:
    """An uncorrected 200 kV FEG microscope (Cs 1.2 mm, no C5, focal spread 4 nm,
    convergence 0.2 mrad, blur 0.6 Å) at ``defocus_nm`` [nm] (its Scherzer defocus:
    ``scherzer_defocus_nm(UNCORRECTED_CS_UM, UNCORRECTED_KV)``, 67 nm)."""
    return Microscope(
        energy_kv=UNCORRECTED_KV, cs_um=UNCORRECTED_CS_UM, c5_mm=0.0,
        focal_spread_nm=UNCORRECTED_FOCAL_SPREAD_NM, convergence_mrad=0.2,
        aperture_mrad=SimulationConfig().aperture_mrad, defocus_nm=defocus_nm,
        blur_fwhm_A=0.6,
    )


def independent_image(atoms: Atoms, mic: Microscope, pixel_A: float) -> np.ndarray:
    """Clean image (vacuum = 1, float64) at ``pixel_A`` [Å] of the whole cell of ``atoms``,
    exit plane at the bottom, made by :func:`abtem_image` with the default simulation
    settings and ``mic``; simulated at 0.1 Å or, for finer pixels, at ``pixel_A``."""
    sim = SimulationConfig()
    cell = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    grid = image_grid(cell, min(0.1, float(pixel_A)), round(cell[0] / pixel_A))
    last = round(float(atoms.cell[2, 2]) / sim.slice_thickness_A) - 1
    img = abtem_image(atoms, grid, sim, exit_plane=last, tilt_mrad=(0.0, 0.0),
                      defocus_nm=mic.defocus_nm, microscope=mic)
    return np.asarray(img, dtype=np.float64)
