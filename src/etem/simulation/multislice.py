"""Multislice with a potential built once per structure and reused for every tilt.

abTEM builds the projected potential (:class:`abtem.Potential`); etem turns it into
band-limited transmission functions ONCE per structure (and frozen-phonon configuration) and
then runs a lean FFT loop per tilt: per slice ``psi *= t``; ``FFT``; ``*= P(tilt)``;
``IFFT`` -- exactly abTEM's ``conventional_multislice_step`` (transmit, then Fresnel-propagate
with the anti-aliasing aperture and the tilt phase in the propagator), without rebuilding the
potential, the transmission functions or the propagator. Exit waves of all requested exit
planes are kept **in Fourier space** (taken before the inverse FFT of the exit slice), which is
where the CTF is applied.

FFTs run on cached plans of :mod:`etem.simulation.fft` (``simulation.fft_backend``:
bit-reproducible pocketfft by default, or FFTW). Threads: one per process by default;
parallelism comes from Snakemake jobs. Dask runs with the synchronous scheduler inside abTEM
calls (no hidden worker pool).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import abtem
import dask
import numpy as np
from abtem.antialias import antialias_aperture
from abtem.core.complex import complex_exponential
from abtem.core.energy import energy2sigma, energy2wavelength
from abtem.integrals import sinc, superpose_deltas
from abtem.multislice import _apply_tilt_to_fresnel_propagator_array, _fresnel_propagator_array
from ase import Atoms
from ase.data import chemical_symbols

from etem.config.simulation import SimulationConfig
from etem.simulation.fft import Backend, complex_plan, real_plan
from etem.simulation.grid import ImageGrid

log = logging.getLogger("etem.simulation.multislice")

_ABTEM_CONFIGURED: dict[str, object] = {}
#: abTEM's FFT library for each ``simulation.fft_backend``: numpy's pocketfft is
#: bit-reproducible; abTEM's FFTW plans are made with FFTW_MEASURE (timed: results may differ
#: by ~1e-6 between processes, which also shifts the Poisson draws made from them)
ABTEM_FFT: dict[str, str] = {"deterministic": "numpy", "fftw": "fftw"}


def configure_abtem(fft_threads: int = 1, backend: Backend = "deterministic") -> None:
    """Set abTEM/dask for batch work: the FFT library of ``backend`` (:data:`ABTEM_FFT`; used
    by abTEM's own code paths: finite projection, the reference images of
    :mod:`etem.simulation.reference`), fftw threads, no progress bars, synchronous dask."""
    if _ABTEM_CONFIGURED == {"threads": fft_threads, "backend": backend}:
        return

    abtem.config.set(
        {"fftw.threads": int(fft_threads), "diagnostics.progress_bar": False,
         "device": "cpu", "precision": "float32", "fft": ABTEM_FFT[backend]}
    )
    dask.config.set(scheduler="synchronous")
    _ABTEM_CONFIGURED.update(threads=fft_threads, backend=backend)


def wavelength_A(energy_kv: float) -> float:
    """Relativistic electron wavelength [Å] at ``energy_kv`` [kV]."""

    return float(energy2wavelength(energy_kv * 1e3))


def abtem_potential(atoms: Atoms, grid: ImageGrid, sim: SimulationConfig) -> Any:
    """The :class:`abtem.Potential` of ``atoms`` on ``grid`` with the config's slicing."""

    return abtem.Potential(
        atoms, gpts=grid.gpts, slice_thickness=sim.slice_thickness_A,
        parametrization=sim.parametrization, projection=sim.projection,
    )


def phonon_configurations(atoms: Atoms, sim: SimulationConfig, seed: int) -> list[Any]:
    """Atom configurations to simulate: the static structure, or frozen-phonon displacements.

    With ``sim.frozen_phonons = n > 0`` these are abTEM's
    ``FrozenPhonons(atoms, n, sigmas=sim.frozen_phonon_sigma_A, seed=seed % 2**32)``.
    """
    if sim.frozen_phonons <= 0:
        return [atoms]

    fp = abtem.FrozenPhonons(
        atoms, num_configs=sim.frozen_phonons, sigmas=sim.frozen_phonon_sigma_A,
        seed=int(seed) % 2**32,
    )
    return list(fp)


@dataclass
class SlicedPotential:
    """Band-limited transmission functions of one atom configuration, in abTEM's (x, y) order.

    Attributes
    ----------
    transmission : ndarray
        complex64 (n_slices, gpts, gpts): ``exp(i sigma V)`` band-limited by abTEM's
        anti-aliasing aperture.
    slice_thickness_A : ndarray
        Thickness of every slice [Å].
    """

    transmission: np.ndarray
    slice_thickness_A: np.ndarray
    grid: ImageGrid
    energy_kv: float
    fft_backend: Backend = "deterministic"

    @property
    def n_slices(self) -> int:
        return int(self.transmission.shape[0])

    @property
    def exit_depths_A(self) -> np.ndarray:
        """Depth [Å] of the exit plane after each slice."""
        return np.cumsum(self.slice_thickness_A)


def infinite_projection_slices(
    potential: Any, grid: ImageGrid, threads: int = 1, backend: Backend = "deterministic"
) -> Any:
    """Projected potential slices [V Å] of abTEM's infinite projection, fused.

    Same algorithm and inputs as ``abtem.integrals.ProjectionIntegrator.integrate_on_grid``
    (atoms of each slice from ``potential.get_sliced_atoms()``, deltas superposed with
    ``superpose_deltas``, Fourier-space multiplication by the projected scattering factor over
    the pixel sinc), but with real FFTs and the elements summed in Fourier space: one real
    forward FFT per element plus ONE real inverse FFT per slice (abTEM: two complex FFTs per
    element), on cached FFTW plans. Yields float32 (gpts, gpts) arrays, abTEM's (x, y) order.
    """

    g = grid.gpts
    gpts, sampling = (g, g), (grid.sampling_A, grid.sampling_A)
    half = g // 2 + 1
    integrator = potential._integrator
    sliced = potential.get_sliced_atoms()
    inv_sinc = (1.0 / sinc(gpts, sampling, "cpu"))[:, :half]
    factors: dict[int, np.ndarray] = {}
    plans = real_plan(g, threads, backend)
    acc = np.empty((g, half), dtype=np.complex64)
    for i in range(potential.num_slices):
        atoms = sliced.get_atoms_in_slices(i)
        acc[...] = 0
        for number in np.unique(atoms.numbers):
            if number not in factors:
                f = integrator.get_scattering_factor(
                    chemical_symbols[number], gpts, sampling, "cpu"
                )
                factors[number] = (np.asarray(f)[:, :half] * inv_sinc).astype(np.float32)
            pos = (atoms.positions[atoms.numbers == number][:, :2] / sampling).astype(
                np.float32
            )
            plans.real[...] = 0
            superpose_deltas(pos, plans.real)
            plans.forward()
            plans.spec *= factors[number]
            acc += plans.spec
        plans.spec[...] = acc
        plans.backward()
        yield plans.real.copy()


def build_sliced_potential(
    atoms: Atoms, grid: ImageGrid, sim: SimulationConfig, fft_threads: int = 1,
    energy_kv: float | None = None,
) -> SlicedPotential:
    """Build the potential of ``atoms`` once and convert it to transmission functions at
    ``energy_kv`` [kV] (None: ``sim.energy_kv``).

    Infinite projection uses the fused evaluation of :func:`infinite_projection_slices`
    (abTEM's algorithm, fewer FFTs); finite projection uses ``abtem.Potential.build``.
    """

    configure_abtem(fft_threads, sim.fft_backend)
    potential = abtem_potential(atoms, grid, sim)
    plans = complex_plan(grid.gpts, fft_threads, sim.fft_backend)
    if sim.projection == "infinite":
        slices: Any = infinite_projection_slices(potential, grid, fft_threads, sim.fft_backend)
    else:
        slices = np.asarray(potential.build(lazy=False).array, dtype=np.float32)
    energy_kv = float(sim.energy_kv if energy_kv is None else energy_kv)
    sigma = np.float32(energy2sigma(energy_kv * 1e3))
    aperture = antialias_aperture((grid.gpts, grid.gpts), (grid.sampling_A,) * 2, np).astype(
        np.float32
    )
    buf = plans.buffer
    trans = np.empty((potential.num_slices, grid.gpts, grid.gpts), dtype=np.complex64)
    for i, v in enumerate(slices):
        buf[...] = complex_exponential(sigma * v)
        plans.forward()
        buf *= aperture
        plans.backward()
        trans[i] = buf
    return SlicedPotential(
        transmission=trans,
        slice_thickness_A=np.asarray(potential.slice_thickness, dtype=np.float64),
        grid=grid,
        energy_kv=energy_kv,
        fft_backend=sim.fft_backend,
    )


def exit_plane_indices(depths_A: np.ndarray, thickness_nm: list[float]) -> list[int]:
    """Slice index of the exit plane nearest each requested depth (clipped to the last slice).

    Returns the sorted unique indices; ``depths_A[k]`` is the real depth of plane ``k``.
    """
    out = set()
    for t in thickness_nm:
        k = int(np.argmin(np.abs(depths_A - 10.0 * t)))
        out.add(k)
    return sorted(out)


def propagator(
    grid: ImageGrid, thickness_A: float, energy_kv: float, tilt_mrad: tuple[float, float]
) -> np.ndarray:
    """abTEM's Fresnel propagator (anti-aliased, with the tilt phase ramp), complex64 (x, y)."""

    gpts, sampling = (grid.gpts, grid.gpts), (grid.sampling_A, grid.sampling_A)
    p = _fresnel_propagator_array(thickness_A, gpts, sampling, energy_kv * 1e3, "cpu")
    p = p * antialias_aperture(gpts, sampling, np)
    if tuple(tilt_mrad) != (0.0, 0.0):
        tilt = (float(tilt_mrad[0]), float(tilt_mrad[1]))
        p = _apply_tilt_to_fresnel_propagator_array(p, sampling, thickness_A, tilt)
    return np.ascontiguousarray(p, dtype=np.complex64)


@dataclass
class Multislice:
    """The per-tilt multislice loop over a :class:`SlicedPotential`."""

    potential: SlicedPotential
    fft_threads: int = 1
    _propagators: dict[tuple[float, float, float], np.ndarray] = field(default_factory=dict)

    def _propagator(self, thickness_A: float, tilt: tuple[float, float]) -> np.ndarray:
        key = (round(float(thickness_A), 9), float(tilt[0]), float(tilt[1]))
        if key not in self._propagators:
            self._propagators[key] = propagator(
                self.potential.grid, thickness_A, self.potential.energy_kv, tilt
            )
        return self._propagators[key]

    def exit_waves_fourier(
        self, tilt_mrad: tuple[float, float], exit_planes: list[int]
    ) -> np.ndarray:
        """Fourier-space exit waves at ``exit_planes`` (slice indices), complex64 (n, G, G).

        The incident wave is abTEM's ``PlaneWave(normalize=False)``: amplitude 1, so vacuum
        intensity is 1.
        """
        pot = self.potential
        plans = complex_plan(pot.grid.gpts, self.fft_threads, pot.fft_backend)
        buf = plans.buffer
        buf[...] = 1.0
        wanted = {k: i for i, k in enumerate(exit_planes)}
        out = np.empty((len(exit_planes), pot.grid.gpts, pot.grid.gpts), dtype=np.complex64)
        last = max(exit_planes)
        for k in range(last + 1):
            buf *= pot.transmission[k]
            plans.forward()
            buf *= self._propagator(pot.slice_thickness_A[k], tilt_mrad)
            if k in wanted:
                out[wanted[k]] = buf
            if k < last:
                plans.backward()
        return out
