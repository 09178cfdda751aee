"""Physics of the simulation stage: CTF, vacuum, exit planes, tilt, labels, abTEM equivalence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etem.errors import ValidationError
from etem.simulation.grid import fft_size, image_grid, is_fft_friendly
from etem.simulation.images import ImageSimulator, plan_images
from etem.simulation.imaging import Imager
from etem.simulation.labels import image_columns, label_maps
from etem.simulation.multislice import Multislice, build_sliced_potential
from etem.simulation.reference import abtem_image
from tests import simulation_fixtures as fx
from tests.configs import make_tiny_config


def _sim(tmp_path: Path, **kw):
    return make_tiny_config(tmp_path / "results", simulation=kw)


def _image(atoms, sim, plane=None, tilt=(0.0, 0.0), defocus=0.0, output_px=None):
    cell = atoms.cell.lengths()
    grid = image_grid((cell[0], cell[1]), sim.sampling_A, output_px or sim.output_size_px)
    sp = build_sliced_potential(atoms, grid, sim)
    plane = sp.n_slices - 1 if plane is None else plane
    wave = Multislice(sp).exit_waves_fourier(tilt, [plane])[0]
    return Imager(sim, grid).images(wave, [defocus])[0], grid, sp


def test_fft_sizes_are_friendly():
    assert fft_size(1061) == 1080 and is_fft_friendly(1080)
    assert fft_size(512) == 512
    assert not is_fft_friendly(1061)
    g = image_grid((51.2, 51.2), 0.1, 512)
    assert g.gpts == 512 and g.pixel_size_A == pytest.approx(0.1)
    assert image_grid((50.0, 50.0), 0.1, 256).gpts == 500
    with pytest.raises(ValidationError):
        image_grid((50.0, 40.0), 0.1, 256)


def test_campaign_path_equals_plain_abtem(tmp_path):
    """Exit planes, tilt and CTF of the fast path reproduce abTEM's own pipeline."""
    cfg = _sim(tmp_path)
    sim = cfg.simulation
    atoms = fx.ceo2_slab()
    cell = atoms.cell.lengths()
    grid = image_grid((cell[0], cell[1]), sim.sampling_A, sim.output_size_px)
    sp = build_sliced_potential(atoms, grid, sim)
    waves = Multislice(sp).exit_waves_fourier((3.0, 1.0), [2, sp.n_slices - 1])
    imgs = Imager(sim, grid).images(waves[0], [-5.0, 5.0])
    for j, d in enumerate([-5.0, 5.0]):
        ref = abtem_image(atoms, grid, sim, exit_plane=2, tilt_mrad=(3.0, 1.0), defocus_nm=d)
        assert np.abs(imgs[j] - ref).max() < 1e-4
        assert imgs[j].std() > 0.01  # a real image, not a flat one


def test_ctf_contrast_flips_with_defocus_sign(tmp_path):
    """A single atom: peak contrast has opposite signs at defocus +3 nm and -3 nm (Cs = 0)."""
    cfg = _sim(tmp_path, sampling_A=0.1, output_size_px=120, cs_um=0.0, c5_mm=0.0,
               focal_spread_nm=0.0, convergence_mrad=0.0, aperture_mrad=25.0,
               detector_mtf="none")
    atoms = fx.single_atom("Pt")
    under, grid, _ = _image(atoms, cfg.simulation, defocus=3.0)
    over, _, _ = _image(atoms, cfg.simulation, defocus=-3.0)
    j = i = round(6.0 / grid.pixel_size_A)
    c_under, c_over = under[i, j] - 1.0, over[i, j] - 1.0
    assert abs(c_under) > 0.05 and abs(c_over) > 0.05
    assert np.sign(c_under) == -np.sign(c_over)
    # abTEM convention defocus = -C10: positive = underfocus, where (as at Scherzer
    # defocus) atoms are dark on a bright background
    assert c_under < 0 < c_over
    # at zero defocus and no aberrations a phase object has (almost) no contrast
    focus, _, _ = _image(atoms, cfg.simulation, defocus=0.0)
    assert abs(focus[i, j] - 1.0) < 0.5 * min(abs(c_under), abs(c_over))


def test_vacuum_intensity_is_one(tmp_path):
    cfg = _sim(tmp_path, sampling_A=0.1, output_size_px=60, aperture_mrad=200.0)
    img, grid, _ = _image(fx.single_atom("O", xy=(3.0, 3.0)), cfg.simulation, defocus=5.0)
    far = img[int(9 / grid.pixel_size_A) - 3:, int(9 / grid.pixel_size_A) - 3:]
    assert np.allclose(far, 1.0, atol=0.02)
    assert img.mean() == pytest.approx(1.0, abs=2e-3)  # flux conserved (wide aperture)


def test_thickness_series_equals_separate_runs(tmp_path):
    """Exit plane at 6 Å of one pass == a separate run of the structure cut at 6 Å."""
    cfg = _sim(tmp_path, sampling_A=0.2)
    sim = cfg.simulation
    atoms = fx.ceo2_slab(depth_cells=2)
    atoms.set_cell([atoms.cell[0, 0], atoms.cell[1, 1], 12.0])  # 6 slices of 2 Å
    full, _grid, sp = _image(atoms, sim, plane=2, defocus=4.0)
    assert sp.n_slices == 6 and sp.exit_depths_A[2] == pytest.approx(6.0)
    cut = atoms[atoms.positions[:, 2] < 6.0]
    cut.set_cell([atoms.cell[0, 0], atoms.cell[1, 1], 6.0])
    alone, _, sp_cut = _image(cut, sim, defocus=4.0)
    assert sp_cut.n_slices == 3
    assert np.abs(full - alone).max() < 1e-4
    thick, _, _ = _image(atoms, sim, defocus=4.0)
    assert np.abs(thick - full).max() > 0.05  # deeper planes do differ


def test_tilt_changes_the_image(tmp_path):
    cfg = _sim(tmp_path)
    atoms = fx.ceo2_slab(depth_cells=3)
    flat, _, _ = _image(atoms, cfg.simulation, defocus=4.0)
    tilted, _, _ = _image(atoms, cfg.simulation, tilt=(15.0, 5.0), defocus=4.0)
    assert np.abs(flat - tilted).max() > 0.05


@pytest.mark.parametrize("tilt", [(0.0, 0.0), (40.0, -25.0)])
def test_label_disc_sits_on_the_image_peak(tmp_path, tilt):
    """The class disc of a single atom covers its image peak, also when the tilt shifts it."""
    cfg = _sim(tmp_path, sampling_A=0.1, output_size_px=120, label_disc_radius_A=0.5,
               focal_spread_nm=0.0, convergence_mrad=0.0, cs_um=0.0, c5_mm=0.0)
    atoms = fx.single_atom("Pt", depth_A=44.0, z_A=2.0, xy=(5.3, 6.6))
    img, grid, sp = _image(atoms, cfg.simulation, tilt=tilt, defocus=-4.0)
    from etem.structures.column_table import column_table

    depth = float(sp.exit_depths_A[-1])
    cols = image_columns(column_table(atoms, z_max_A=depth), depth, tilt, grid.extent_A)
    maps = label_maps(cols, grid.output_px, grid.pixel_size_A, 0.5)
    peak = np.unravel_index(np.argmax(np.abs(img - 1.0)), img.shape)
    assert maps["class"][peak] == 3  # metal
    disc = np.argwhere(maps["class"] == 3).mean(axis=0)
    assert np.hypot(*(disc - np.array(peak))) <= 1.5
    if tilt != (0.0, 0.0):  # the shift is real (~1.7 Å), not swallowed by the disc radius
        assert np.hypot(*(disc - np.array([6.6, 5.3]) / grid.pixel_size_A)) > 10


def test_label_maps_classes_and_occupancy():
    cols = pd.DataFrame({
        "x_A": [1.0, 3.0, 5.0], "y_A": [1.0, 1.0, 1.0], "site": ["cation", "anion", "metal"],
        "n_atoms": [4, 3, 2], "occupancy": [1.0, 0.75, 1.0], "element": ["Ce", "O", "Pt"],
    })
    m = label_maps(cols, 40, 0.2, 0.5)
    assert m["class"][5, 5] == 1 and m["cation_occupancy"][5, 5] == 4
    assert m["class"][5, 15] == 2 and m["anion_occupancy"][5, 15] == 3
    assert m["anion_fraction"][5, 15] == pytest.approx(0.75)
    assert m["class"][5, 25] == 3 and m["class"][20, 20] == 0


def test_plan_is_seeded_and_sized(tmp_path):
    cfg = _sim(tmp_path, tilts_mrad=[[0, 0], [1, 1], [2, 0]], tilts_per_structure=2,
               thickness_nm=[0.4, 0.8, 5.0], defocus_nm=[-4, 0, 4], images_per_structure=7)
    depths = np.arange(1, 6) * 2.0
    a = plan_images(cfg.simulation, "s1", 3, depths)
    assert a == plan_images(cfg.simulation, "s1", 3, depths)
    assert len(a) == 7 and len({s.tilt_index for s in a}) <= 2
    assert plan_images(cfg.simulation, "s2", 3, depths) != a
    assert {s.exit_plane for s in a} <= {1, 3, 4}  # 5 nm clipped to the last slice


def test_structure_images_and_labels(tmp_path):
    cfg = _sim(tmp_path, thickness_nm=[0.6, 2.0])
    res = ImageSimulator(cfg).simulate(fx.pt_on_ceo2(), "a1", "pt_on_ceo2", "x.extxyz")
    n = len(res.params)
    assert res.clean.shape == (n, 48, 48) and n == 2 * 2 * 2
    assert res.clean.dtype == np.float32 and np.isfinite(res.clean).all()
    classes = np.stack(res.labels["class"])
    assert classes.shape == res.clean.shape
    assert set(np.unique(classes)) <= {0, 1, 2, 3}
    assert (classes == 1).any() and (classes == 2).any()
    # the Pt cluster lies below the slab along the beam (z 15.8-17.8 Å): metal columns are
    # labelled at the 2 nm exit plane only
    deep = [i for i, r in enumerate(res.params) if r["thickness_nm"] > 1.8]
    shallow = [i for i, r in enumerate(res.params) if r["thickness_nm"] < 1.0]
    assert deep and all((classes[i] == 3).any() for i in deep)
    assert shallow and not any((classes[i] == 3).any() for i in shallow)
    assert len({r["image_id"] for r in res.params}) == n


@pytest.mark.parametrize("parametrization", ["lobato", "kirkland"])
def test_fused_potential_equals_abtem_build(tmp_path, parametrization):
    from etem.simulation.multislice import abtem_potential, infinite_projection_slices

    cfg = _sim(tmp_path, parametrization=parametrization)
    atoms = fx.pt_on_ceo2()
    cell = atoms.cell.lengths()
    grid = image_grid((cell[0], cell[1]), 0.2, 48)
    pot = abtem_potential(atoms, grid, cfg.simulation)
    ref = np.asarray(pot.build(lazy=False).array)
    ours = np.stack(list(infinite_projection_slices(pot, grid)))
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()


def test_frozen_phonons_match_abtem_and_blur(tmp_path):
    cfg = _sim(tmp_path, frozen_phonons=2, frozen_phonon_sigma_A=0.1, thickness_nm=[1.0],
               tilts_mrad=[[0.0, 0.0]], defocus_nm=[4.0])
    atoms = fx.ceo2_slab()
    res = ImageSimulator(cfg).simulate(atoms, "o1", with_labels=False)
    row = res.params[0]
    grid = image_grid(tuple(atoms.cell.lengths()[:2]), cfg.simulation.sampling_A, 48)
    ref = abtem_image(atoms, grid, cfg.simulation, exit_plane=row["exit_plane"],
                      tilt_mrad=(0.0, 0.0), defocus_nm=4.0, seed=row["seed"])
    assert np.abs(res.clean[0] - ref).max() < 1e-4
    static = _sim(tmp_path, thickness_nm=[1.0], tilts_mrad=[[0.0, 0.0]], defocus_nm=[4.0])
    still = ImageSimulator(static).simulate(atoms, "o1", with_labels=False).clean[0]
    assert np.abs(res.clean[0] - still).max() > 1e-3


def test_non_square_cell_is_a_validation_error(tmp_path):
    atoms = fx.single_atom()
    atoms.set_cell([12.0, 9.0, 6.0])
    with pytest.raises(ValidationError, match=r"structure s9.*square"):
        ImageSimulator(_sim(tmp_path)).simulate(atoms, "s9")


def test_abtem_paths_are_bit_reproducible_across_processes():
    """abTEM's own FFTs follow simulation.fft_backend: with the default (deterministic) the
    reference image is byte-identical in every process (abTEM's FFTW_MEASURE plans, timed,
    gave ~1e-6 differences between processes, which shifted the noise drawn from it)."""
    code = (
        "import hashlib, numpy as np\n"
        "from etem.simulation.reference import bulk_crystal, corrected_microscope, "
        "independent_image\n"
        "img = independent_image(bulk_crystal('Pt', 3), corrected_microscope('in-range', 0.0), "
        "0.2)\n"
        "print(hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest())\n")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, timeout=300).stdout.strip() for _ in range(3)}
    assert len(digests) == 1
