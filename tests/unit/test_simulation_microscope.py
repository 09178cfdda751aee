"""Microscope randomisation: CTF physics under Cs, detector blur, resampling, per-image draws."""

from __future__ import annotations

import numpy as np
import pytest

from etem.simulation.grid import image_grid
from etem.simulation.images import ImageSimulator, plan_images
from etem.simulation.imaging import (
    Imager,
    ctf_kernel,
    detector_transfer,
    resample_counts,
    wave_size,
)
from etem.simulation.microscope import (
    Microscope,
    draw_microscopes,
    fixed_microscope,
    scherzer_defocus_nm,
    wavelength_A,
)
from etem.simulation.multislice import Multislice, build_sliced_potential
from etem.simulation.reference import abtem_image
from tests import simulation_fixtures as fx
from tests.configs import make_tiny_config


def _mic(**kw) -> Microscope:
    base = dict(energy_kv=300.0, cs_um=0.0, c5_mm=0.0, focal_spread_nm=0.0,
                convergence_mrad=0.0, aperture_mrad=200.0, defocus_nm=0.0,
                detector_mtf="none")
    base.update(kw)
    return Microscope(**base)


def _first_zero_per_A(cs_um: float, defocus_nm: float) -> float:
    """Spatial frequency [1/Å] of the first zero of sin(chi) of abTEM's kernel (radial cut)."""
    grid = image_grid((100.0, 100.0), 0.05, 64)  # 2000 points, 0.01 / Å steps
    k = ctf_kernel(grid, _mic(cs_um=cs_um, defocus_nm=defocus_nm))
    f = np.fft.fftfreq(grid.gpts, d=grid.sampling_A)
    row = k[: grid.gpts // 2, 0]
    im = row.imag
    idx = np.flatnonzero((np.sign(im[1:]) != np.sign(im[:-1])) & (f[1:grid.gpts // 2] > 0.05))
    return float(f[idx[0] + 1])


def test_larger_cs_moves_the_first_ctf_zero_to_lower_frequency():
    """At 0 defocus chi = pi/2 Cs λ³ k⁴: the first zero sits at k = (2 / (Cs λ³))^(1/4),
    so a 4x larger Cs moves it down by 4^(1/4) = 1.41."""
    lam = wavelength_A(300.0)
    z1, z2 = _first_zero_per_A(250.0, 0.0), _first_zero_per_A(1000.0, 0.0)
    assert z2 < z1
    assert z1 / z2 == pytest.approx(4 ** 0.25, rel=0.05)
    assert z2 == pytest.approx((2.0 / (1000.0e4 * lam**3)) ** 0.25, rel=0.03)


def test_public_ctf_kernel_matches_the_config_microscope(tmp_path):
    """ctf_kernel (public abTEM API) is unit amplitude at the origin and obeys the envelope."""
    cfg = make_tiny_config(tmp_path / "results")
    grid = image_grid((12.0, 12.0), 0.1, 48)
    k = ctf_kernel(grid, fixed_microscope(cfg.simulation, 5.0))
    assert k.shape == (grid.gpts, grid.gpts) and k.dtype == np.complex64
    assert abs(k[0, 0] - 1.0) < 1e-5
    assert np.abs(k).max() <= 1.0 + 1e-5
    assert np.abs(k[grid.gpts // 2, grid.gpts // 2]) == 0  # outside the 40 mrad aperture
    # exact zeros outside the aperture: the campaign's cropped wave grid stays small
    big = image_grid((51.2, 51.2), 0.1, 512)
    assert wave_size(ctf_kernel(big, fixed_microscope(cfg.simulation, 5.0))) == 432


@pytest.mark.parametrize("energy_kv, aperture", [(300.0, 40.0), (80.0, 25.0), (300.0, 300.0)])
def test_ctf_kernel_on_the_aperture_grid_equals_the_full_grid(energy_kv, aperture):
    """The kernel evaluated on the small grid holding the aperture and zero-padded equals
    abTEM's CTF applied on the full simulation grid."""
    import abtem

    from etem.simulation.imaging import ctf_parameters

    grid = image_grid((25.6, 25.6), 0.1, 64)
    m = _mic(energy_kv=energy_kv, aperture_mrad=aperture, cs_um=-9.0, c5_mm=5.0,
             focal_spread_nm=3.0, convergence_mrad=0.2, defocus_nm=4.0)
    g = grid.gpts
    impulse = np.zeros((g, g), dtype=np.complex128)
    impulse[0, 0] = 1
    waves = abtem.Waves(impulse, sampling=(grid.sampling_A,) * 2, energy=energy_kv * 1e3)
    full = np.fft.fft2(abtem.CTF(energy=energy_kv * 1e3, **ctf_parameters(m)).apply(waves).array)
    assert np.abs(ctf_kernel(grid, m) - full).max() < 1e-6
    assert np.all(np.abs(ctf_kernel(grid, m)[np.abs(full) < 1e-12]) < 1e-9)


def test_scherzer_defocus_sign_and_size():
    assert scherzer_defocus_nm(1000.0, 300.0) == pytest.approx(
        np.sqrt(1.5 * 1e7 * wavelength_A(300.0)) / 10, rel=1e-9)
    assert scherzer_defocus_nm(1000.0, 300.0) > 50  # ~54 nm underfocus for 1 mm
    assert scherzer_defocus_nm(-9.0, 300.0) == pytest.approx(-5.155, abs=0.01)


def _fwhm_px(profile: np.ndarray) -> float:
    """FWHM [px] of a peak (linear interpolation of the half-maximum crossings)."""
    p = profile - profile.min()
    half = p.max() / 2
    i0 = int(np.argmax(p))
    left = i0
    while p[left] > half:
        left -= 1
    right = i0
    while p[right] > half:
        right += 1
    xl = left + (half - p[left]) / (p[left + 1] - p[left])
    xr = right - 1 + (p[right - 1] - half) / (p[right - 1] - p[right])
    return float(xr - xl)


def test_blur_widens_a_columns_fwhm():
    """A Gaussian column of FWHM 0.5 Å blurred by FWHM 1.2 Å: sqrt(0.5² + 1.2²) = 1.3 Å."""
    n, px = 128, 0.05
    y, x = np.mgrid[:n, :n] * px
    s0 = 0.5 / 2.3548
    img = 1.0 + np.exp(-((x - 3.2) ** 2 + (y - 3.2) ** 2) / (2 * s0**2))
    spec = np.fft.rfft2(img)
    sharp = np.fft.irfft2(spec * detector_transfer(n, px, "none"), s=(n, n))
    blurred = np.fft.irfft2(spec * detector_transfer(n, px, "none", blur_fwhm_A=1.2), s=(n, n))
    w0 = _fwhm_px(sharp[64]) * px
    w1 = _fwhm_px(blurred[64]) * px
    assert w0 == pytest.approx(0.5, abs=0.03)
    assert w1 == pytest.approx(np.hypot(0.5, 1.2), abs=0.05)
    assert blurred.mean() == pytest.approx(img.mean(), rel=1e-9)  # dose conserved


def test_coarse_detector_pixels_blur_and_keep_the_mean():
    """A detector pixel 6x the output pixel: its sinc MTF (a 0.3 Å box, variance p²/12) and
    band limit widen the column (FWHM 0.35 -> >= 0.40 Å); the mean (the dose) is kept."""
    n, px = 128, 0.05
    y, x = np.mgrid[:n, :n] * px
    img = 1.0 + np.exp(-((x - 3.2) ** 2 + (y - 3.2) ** 2) / (2 * 0.15**2))
    spec = np.fft.rfft2(img)
    fine = np.fft.irfft2(spec * detector_transfer(n, px, "counting"), s=(n, n))
    coarse = np.fft.irfft2(spec * detector_transfer(n, px, "counting", detector_pixel_A=0.3),
                           s=(n, n))
    sigma2 = 0.15**2 + 0.3**2 / 12
    assert _fwhm_px(fine[64]) * px == pytest.approx(0.353, abs=0.01)
    assert _fwhm_px(coarse[64]) * px >= 2.3548 * np.sqrt(sigma2) - 0.01
    assert coarse.max() < fine.max()
    assert coarse.mean() == pytest.approx(img.mean(), rel=1e-9)


@pytest.mark.parametrize("to_px", [0.1, 0.0733, 0.031])
def test_resample_counts_conserves_dose_per_A2(to_px):
    r = np.random.default_rng(0)
    from_px = 0.05
    counts = r.poisson(0.45, size=(120, 120)).astype(np.float32)
    out = resample_counts(counts, from_px, to_px)
    assert out.shape[0] == round(120 * from_px / to_px)
    area_in = (120 * from_px) ** 2
    area_out = out.shape[0] * out.shape[1] * to_px**2
    assert out.sum() / area_out == pytest.approx(counts.sum() / area_in, rel=0.02)
    assert out.sum() == pytest.approx(counts.sum(), rel=1e-4)


def test_integer_binning_is_exact_block_sum():
    counts = np.arange(36, dtype=np.float32).reshape(6, 6)
    out = resample_counts(counts, 0.05, 0.1)
    assert out.shape == (3, 3) and out[0, 0] == 0 + 1 + 6 + 7 and out.sum() == counts.sum()


def _random_cfg(tmp_path, **ranges):
    mic = {"enabled": True, "energy_kv": [200.0, 300.0], "detector_pixel_A": [0.05, 0.2],
           "blur_fwhm_A": [0.3, 1.5], **ranges}
    return make_tiny_config(tmp_path / "results",
                            simulation={"microscope": mic, "images_per_structure": 4})


def test_draws_are_seeded_in_range_and_layout_free(tmp_path):
    cfg = _random_cfg(tmp_path)
    sim = cfg.simulation
    a = draw_microscopes(sim, cfg.seed, "s1", 40, (20.0, 400.0))
    b = draw_microscopes(sim, cfg.seed, "s1", 40, (20.0, 400.0))
    c = draw_microscopes(sim, cfg.seed, "s2", 40, (20.0, 400.0))
    assert a == b and a != c
    assert len({m.energy_kv for m in a}) == 1  # voltage per structure
    for m in a:
        assert 0.05 <= m.detector_pixel_A <= 0.2 and 0.3 <= m.blur_fwhm_A <= 1.5
        assert 20.0 <= m.dose_e_per_A2 <= 400.0 and -40 <= m.cs_um <= 1300
    assert {m.cs_um > 100 for m in a} == {True, False}  # corrected and uncorrected drawn
    depths = np.array([2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    p4 = plan_images(sim, "s1", cfg.seed, depths)
    p_all = plan_images(sim.model_copy(update={"images_per_structure": None}), "s1",
                        cfg.seed, depths)
    assert {s.slot for s in p4} <= {s.slot for s in p_all}
    by_slot = {s.slot: s.microscope for s in p_all}
    assert all(by_slot[s.slot] == s.microscope for s in p4)


def test_fewer_ctf_draws_cycle_ctfs_but_keep_per_image_detector(tmp_path):
    cfg = _random_cfg(tmp_path, ctf_draws_per_structure=3)
    a = draw_microscopes(cfg.simulation, cfg.seed, "s1", 10, (20.0, 400.0))
    assert len({m.ctf_key() for m in a}) == 3
    assert a[0].ctf_key() == a[3].ctf_key() == a[9].ctf_key()
    assert len({m.blur_fwhm_A for m in a}) == 10


def test_randomised_campaign_records_each_images_microscope(tmp_path):
    cfg = _random_cfg(tmp_path)
    atoms = fx.ceo2_slab()
    out = ImageSimulator(cfg).simulate(atoms, "s1", "oxide", with_labels=False)
    assert out.clean.shape == (4, 48, 48) and np.isfinite(out.clean).all()
    rows = out.params
    assert len({r["image_id"] for r in rows}) == 4
    assert len({round(r["defocus_nm"], 6) for r in rows}) == 4
    assert all(0.05 <= r["detector_pixel_A"] <= 0.2 for r in rows)
    assert all(r["energy_kv"] in (200.0, 300.0) for r in rows)
    # vacuum-normalised intensities: the mean stays near 1 whatever was drawn
    assert np.all(np.abs(out.clean.mean(axis=(1, 2)) - 1.0) < 0.15)
    # the image of a row is the Imager's image of its recorded microscope
    grid = image_grid(tuple(atoms.cell.lengths()[:2]), cfg.simulation.sampling_A, 48)
    r0 = rows[0]
    sp = build_sliced_potential(atoms, grid, cfg.simulation, energy_kv=r0["energy_kv"])
    wave = Multislice(sp).exit_waves_fourier((r0["tilt_x_mrad"], r0["tilt_y_mrad"]),
                                             [int(r0["exit_plane"])])[0]
    mic = Microscope.from_row(r0)
    ref = Imager(cfg.simulation, grid, energy_kv=r0["energy_kv"]).images(wave, [mic])[0]
    assert np.abs(ref - out.clean[0]).max() < 1e-5
    # and what a third party computes with abTEM alone from the row
    for i, row in enumerate(rows[:2]):
        m = Microscope.from_row(row)
        plain = abtem_image(atoms, grid, cfg.simulation, exit_plane=int(row["exit_plane"]),
                            tilt_mrad=(row["tilt_x_mrad"], row["tilt_y_mrad"]),
                            defocus_nm=row["defocus_nm"], microscope=m)
        assert np.abs(plain - out.clean[i]).max() < 1e-4


def test_fixed_microscope_unchanged_by_default(tmp_path):
    cfg = make_tiny_config(tmp_path / "results", simulation={"images_per_structure": 2})
    assert not cfg.simulation.microscope.enabled
    out = ImageSimulator(cfg).simulate(fx.ceo2_slab(), "s1", "oxide", with_labels=False)
    for r in out.params:
        assert r["cs_um"] == cfg.simulation.cs_um and np.isnan(r["detector_pixel_A"])
        assert r["blur_fwhm_A"] == 0.0 and "_m" not in r["image_id"]
        assert Microscope.from_row(r) == fixed_microscope(cfg.simulation, r["defocus_nm"])
