"""The plain abTEM recipe of one image: what a third party runs to recompute image i.

Given a row of the image index (or a shard's ``/params``) and the structure file, this uses
abTEM alone for the physics (new Potential + multislice + CTF for the one image) and then
etem's documented detector step (:func:`etem.simulation.imaging.detect`: Fourier resampling
to the output grid and the pixel MTF). It is also the *naive* path of the benchmark and the
reference the campaign path is tested against.
"""

from __future__ import annotations

from typing import cast

import abtem
import numpy as np
from ase import Atoms

from etem.config.simulation import SimulationConfig
from etem.simulation.grid import ImageGrid
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
    configure_abtem(1)
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
