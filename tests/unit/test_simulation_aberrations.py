"""Residual aberrations, detector DQE and contrast regimes of the microscope randomisation.

Physics: two-fold astigmatism makes the Thon rings elliptical along the recorded axis; axial
coma makes a column image asymmetric along its angle; DQE(0) < 1 raises variance/mean of the
counts to 1/DQE at the same mean; the contrast index has the sign of the column contrast;
the regime draw is stratified and seeded; the new parameters round-trip through the index.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from etem.errors import InputError, ValidationError
from etem.simulation.grid import ImageGrid, image_grid
from etem.simulation.images import ImageSimulator, plan_images
from etem.simulation.imaging import Imager, ctf_kernel, ctf_parameters
from etem.simulation.microscope import (
    CTF_FIELDS,
    Microscope,
    contrast_index,
    draw_microscopes,
    fixed_microscope,
    microscope_regime,
    regime_quotas,
    transfer,
    wavelength_A,
)
from etem.simulation.noise import apply_dose, detector_counts, row_dqe
from etem.simulation.shard import build_index, write_shard
from tests import simulation_fixtures as fx
from tests.configs import make_tiny_config


def _mic(sim, **kw) -> Microscope:
    base = dict(energy_kv=sim.energy_kv, cs_um=0.0, c5_mm=0.0, focal_spread_nm=0.0,
                convergence_mrad=0.0, aperture_mrad=sim.aperture_mrad, defocus_nm=0.0,
                detector_mtf="none")
    base.update(kw)
    return Microscope(**base)


@pytest.fixture(scope="module")
def sim():
    return make_tiny_config(None).simulation


# -- CTF ----------------------------------------------------------------------------------
def test_transfer_formula_is_abtems_kernel_with_astigmatism_and_coma():
    """The grid-free transfer (used for the contrast index) equals abTEM's CTF kernel
    (ctf_kernel, through ctf_parameters) inside the aperture, astigmatism and coma included."""
    m = Microscope(energy_kv=300.0, cs_um=-9.0, c5_mm=5.0, focal_spread_nm=3.0,
                   convergence_mrad=0.2, aperture_mrad=40.0, defocus_nm=4.0, c12_nm=3.0,
                   phi12_deg=30.0, c21_nm=60.0, phi21_deg=100.0)
    assert {"C12", "phi12", "C21", "phi21"} <= set(ctf_parameters(m)["aberration_coefficients"])
    grid = image_grid((25.6, 25.6), 0.1, 64)
    f = np.fft.fftfreq(grid.gpts, grid.sampling_A)
    k = np.hypot(f[:, None], f[None, :])
    phi = np.arctan2(f[None, :], f[:, None])  # axis 0 = x
    inside = k * wavelength_A(300.0) < 0.035
    assert np.abs(transfer(m, k, phi) - ctf_kernel(grid, m))[inside].max() < 1e-5
    # without aberrations nothing new is passed to abTEM (the fixed microscope's CTF as before)
    plain = ctf_parameters(Microscope(300.0, -9.0, 5.0, 3.0, 0.2, 40.0, 4.0))
    assert set(plain["aberration_coefficients"]) == {"C10", "C30", "C50"}


def _first_zero(spec: np.ndarray, theta_deg: float, dk: float) -> float:
    """First zero crossing [1/Å] of a centred real spectrum (ky, kx) along the ray theta."""
    n = spec.shape[0]
    r = np.arange(0.1, 1.2, 0.002)
    th = math.radians(theta_deg)
    prof = ndimage.map_coordinates(spec, [r * math.sin(th) / dk + n // 2,
                                          r * math.cos(th) / dk + n // 2], order=1)
    i = np.flatnonzero(np.sign(prof[1:]) != np.sign(prof[:-1]))[0]
    return float(r[i] + 0.001)


@pytest.mark.parametrize("phi12", [30.0, 120.0])
def test_astigmatism_makes_thon_rings_elliptical_along_phi12(sim, phi12):
    """Image of a weak point phase object at 20 nm underfocus with C12 = 5 nm: its spectrum is
    2σ sin χ, χ = πλk²(-Δf + C12 cos 2(θ-φ12)), so the first zero sits at
    k = 1/sqrt(λ(Δf - C12 cos 2(θ-φ12))): farthest out along φ12 (measured in the image, from
    x toward +y), nearest along φ12 + 90°, and not mirrored (-φ12 differs)."""
    g, extent = 256, 51.2
    imager = Imager(sim, ImageGrid(extent_A=extent, gpts=g, output_px=g))
    psi = np.ones((g, g), complex)
    psi[0, 0] = np.exp(0.05j)
    img = imager.images(np.fft.fft2(psi), [_mic(sim, defocus_nm=20.0, c12_nm=5.0,
                                                phi12_deg=phi12)])[0]
    spec = np.fft.fftshift(np.fft.fft2(img - img.mean()).real)
    lam = wavelength_A(sim.energy_kv)
    angles = np.arange(0.0, 180.0, 5.0)
    zeros = np.array([_first_zero(spec, a, 1 / extent) for a in angles])
    for theta in (phi12, phi12 + 90.0, -phi12):
        pred = 1 / math.sqrt(lam * (200.0 - 50.0 * math.cos(2 * math.radians(theta - phi12))))
        assert _first_zero(spec, theta, 1 / extent) == pytest.approx(pred, abs=0.008), theta
    assert angles[np.argmax(zeros)] == pytest.approx(phi12 % 180, abs=5.1)
    assert zeros.max() / zeros.min() == pytest.approx(math.sqrt(250 / 150), rel=0.03)
    # no astigmatism: round rings
    iso = imager.images(np.fft.fft2(psi), [_mic(sim, defocus_nm=20.0)])[0]
    spec0 = np.fft.fftshift(np.fft.fft2(iso - iso.mean()).real)
    z0 = [_first_zero(spec0, a, 1 / extent) for a in angles]
    assert max(z0) - min(z0) < 0.006


def _column_images(sim, mics: list[Microscope]) -> tuple[np.ndarray, int]:
    """Images (y, x) of one Gaussian phase column (0.3 rad, σ 0.25 Å) at the grid centre."""
    g = 128
    grid = ImageGrid(extent_A=25.6, gpts=g, output_px=g)
    c = g // 2
    y, x = (np.mgrid[:g, :g] - c) * grid.sampling_A
    psi = np.exp(0.3j * np.exp(-(x**2 + y**2) / (2 * 0.25**2)))
    return Imager(sim, grid).images(np.fft.fft2(psi), mics), c


def _mirror(a: np.ndarray, c: int, axis: int) -> np.ndarray:
    idx = (2 * c - np.arange(a.shape[axis])) % a.shape[axis]
    return np.take(a, idx, axis=axis)


def _peak_offset(img: np.ndarray, c: int) -> tuple[float, float]:
    """Sub-pixel peak (y, x) of img - 1 relative to the centre (parabola through 3 points)."""
    d = img - 1.0
    iy, ix = np.unravel_index(np.argmax(d), d.shape)

    def vertex(a, b, cc):
        return 0.5 * (a - cc) / (a - 2 * b + cc)
    return (iy - c + vertex(d[iy - 1, ix], d[iy, ix], d[iy + 1, ix]),
            ix - c + vertex(d[iy, ix - 1], d[iy, ix], d[iy, ix + 1]))


def test_coma_asymmetrises_and_shifts_a_column_along_phi21(sim):
    """A bright column (overfocus, Cs -9 µm): without coma its image is mirror symmetric; coma
    C21 = 200 nm at φ21 = 0 breaks the x mirror only, at 90° the y mirror only, at 180° gives
    the x mirror image of 0° (χ_odd changes sign), and its peak moves toward +φ21 (the
    high frequencies of a column are shifted by λ²k²C21/3 along φ21)."""
    base = dict(cs_um=-9.0, c5_mm=5.0, focal_spread_nm=3.0, convergence_mrad=0.2,
                defocus_nm=-6.0)
    mics = [_mic(sim, **base), _mic(sim, **base, c21_nm=200.0, phi21_deg=0.0),
            _mic(sim, **base, c21_nm=200.0, phi21_deg=90.0),
            _mic(sim, **base, c21_nm=200.0, phi21_deg=180.0)]
    (none, c0, c90, c180), c = _column_images(sim, mics)
    assert none[c, c] > 1.15  # a bright column

    def asym(a, axis):
        return float(np.abs(a - _mirror(a, c, axis)).max())
    assert asym(none, 1) < 1e-4 and asym(none, 0) < 1e-4
    assert asym(c0, 1) > 0.05 and asym(c0, 0) < 1e-4
    assert asym(c90, 0) > 0.05 and asym(c90, 1) < 1e-4
    assert np.abs(c0 - _mirror(c180, c, 1)).max() < 1e-5
    dy0, dx0 = _peak_offset(c0, c)
    dy90, dx90 = _peak_offset(c90, c)
    assert dx0 > 0.3 and abs(dy0) < 0.05  # pixels of 0.2 Å
    assert dy90 > 0.3 and abs(dx90) < 0.05
    assert _peak_offset(none, c) == pytest.approx((0.0, 0.0), abs=1e-3)


# -- DQE ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dqe", [0.7, 0.9])
def test_dqe_raises_variance_over_mean_to_one_over_dqe_keeping_the_mean(dqe):
    lam = np.full((400, 400), 3.0)
    counts = detector_counts(lam, np.random.default_rng(1), dqe)
    assert counts.mean() == pytest.approx(3.0, rel=0.01)
    assert counts.var() / counts.mean() == pytest.approx(1 / dqe, rel=0.02)
    ideal = detector_counts(lam, np.random.default_rng(1), 1.0)
    assert ideal.var() / ideal.mean() == pytest.approx(1.0, rel=0.02)
    # DQE = SNR² out / SNR² in (Poisson in): mean² / var / mean
    assert counts.mean() ** 2 / counts.var() / 3.0 == pytest.approx(dqe, rel=0.03)


def test_dqe_one_is_the_poisson_draw_byte_for_byte():
    clean = np.random.default_rng(0).uniform(0.2, 1.5, (64, 64)).astype(np.float32)
    old = (np.random.default_rng(7).poisson(clean.astype(np.float64) * 50 * 0.2**2)
           .astype(np.float64).astype(np.float32))
    assert np.array_equal(apply_dose(clean, 50.0, 0.2, np.random.default_rng(7)), old)
    assert np.array_equal(apply_dose(clean, 50.0, 0.2, np.random.default_rng(7), dqe=1.0), old)
    low = apply_dose(clean, 50.0, 0.2, np.random.default_rng(7), dqe=0.8)
    assert not np.array_equal(low, old)


def test_row_dqe_reads_the_parameter_row():
    assert row_dqe({}) == 1.0 and row_dqe({"dqe": float("nan")}) == 1.0
    assert row_dqe({"dqe": 0.0}) == 1.0  # a row written before the column existed
    assert row_dqe(pd.Series({"dqe": 0.8})) == 0.8
    with pytest.raises(InputError, match=r"dqe = 1\.5"):
        row_dqe({"dqe": 1.5})


def test_training_patches_carry_the_images_dqe_noise(tmp_path):
    """The training dataset draws the noise of each image with its recorded DQE: the same
    keys give the same mean input, with variance/mean raised by 1/DQE (here 2x)."""
    from etem.data.datasets import ImagePatchDataset, read_index
    from tests.training_fixtures import write_campaign

    df = read_index(write_campaign(tmp_path / "res", n_structures=2, images_per_structure=2))
    half = df.assign(dqe=0.5)
    kw = dict(task="denoiser", patch_px=32, dose_range_e_per_A2=(100.0, 100.0), seed=3)
    a, b = ImagePatchDataset(df, **kw), ImagePatchDataset(half, **kw)
    res_a, res_b, means_a, means_b = [], [], [], []
    for s in range(40):
        sa, sb = a[(s, 0)], b[(s, 0)]
        assert np.array_equal(sa["target"], sb["target"])
        res_a.append(sa["input"][0] - sa["target"][0])
        res_b.append(sb["input"][0] - sb["target"][0])
        means_a.append(sa["input"][0].mean())
        means_b.append(sb["input"][0].mean())
    assert np.var(res_b) / np.var(res_a) == pytest.approx(2.0, rel=0.1)
    assert abs(float(np.mean(res_b))) < 0.02 and abs(float(np.mean(res_a))) < 0.02


# -- contrast regimes -----------------------------------------------------------------------
def test_contrast_index_has_the_sign_of_the_column_contrast(sim):
    """Bright-classified microscopes image a thin column bright, dark-classified dark."""
    mics = [fixed_microscope(sim, d) for d in (-8.0, 8.0)]
    mics += [_mic(sim, cs_um=1000.0, defocus_nm=55.0, focal_spread_nm=3.0,
                  convergence_mrad=0.2)]  # Scherzer of an uncorrected microscope
    imgs, c = _column_images(sim, [replace(m, detector_mtf="none") for m in mics])
    idx = [contrast_index(m) for m in mics]
    assert idx[0] > 0.25 and idx[1] < -0.25 and idx[2] < -0.25
    assert imgs[0][c, c] > 1.05 and imgs[1][c, c] < 0.95 and imgs[2][c, c] < 0.95
    # at Gaussian focus a corrected microscope transfers little phase contrast: intermediate
    assert abs(contrast_index(fixed_microscope(sim, 0.0))) < 0.25


def test_regime_agrees_with_the_simulated_column_contrast(tmp_path):
    """On thin CeO2 slabs (randomised microscopes, 80-300 kV, fine detector pixels, little
    blur) the mean clean intensity on the labelled columns minus elsewhere has the sign of the
    drawn regime for most bright and dark images (the regime is the microscope's; dynamical
    scattering and the particular lattice frequencies can still flip a few)."""
    cfg = make_tiny_config(tmp_path / "res", simulation={
        "images_per_structure": 8, "output_size_px": 96, "sampling_A": 0.1,
        "microscope": {"enabled": True, "energy_kv": [80.0, 200.0, 300.0],
                       "blur_fwhm_A": [0.0, 0.3], "detector_pixel_A": [0.03, 0.05]}})
    sim = ImageSimulator(cfg)
    agree, total, regimes = 0, 0, Counter()
    for s in range(6):
        out = sim.simulate(fx.ceo2_slab(), f"s{s}", "oxide")
        for i, row in enumerate(out.params):
            regimes[row["contrast_regime"]] += 1
            if row["contrast_regime"] == "intermediate":
                continue
            on = out.labels["class"][i] > 0
            c = float(out.clean[i][on].mean() - out.clean[i][~on].mean())
            total += 1
            agree += (c > 0) == (row["contrast_regime"] == "bright")
    assert set(regimes) == {"bright", "dark", "intermediate"}
    assert total >= 24 and agree / total >= 0.85, (agree, total)


def test_regime_quotas_are_exact_and_seeded():
    r = np.random.default_rng
    q = regime_quotas({"bright": 1.0, "dark": 1.0, "intermediate": 1.0}, 22, r(0))
    assert sorted(Counter(q).values()) == [7, 7, 8]
    # the odd slots go to each regime alike over many draws (no fixed order of preference)
    extra = Counter(k for i in range(300) for k, v in Counter(regime_quotas(
        {"bright": 1.0, "dark": 1.0, "intermediate": 1.0}, 8, r(i))).items() if v == 3)
    assert all(abs(v - 200) < 40 for v in extra.values()), extra
    assert q == regime_quotas({"bright": 1.0, "dark": 1.0, "intermediate": 1.0}, 22, r(0))
    assert q != regime_quotas({"bright": 1.0, "dark": 1.0, "intermediate": 1.0}, 22, r(1))
    assert Counter(regime_quotas({"bright": 2.0, "dark": 1.0}, 30, r(0))) == {
        "bright": 20, "dark": 10}


def _random_cfg(tmp_path, **ranges):
    mic = {"enabled": True, "energy_kv": [80.0, 300.0], **ranges}
    return make_tiny_config(tmp_path / "results",
                            simulation={"microscope": mic, "images_per_structure": 4})


def test_regime_draws_hit_the_proportions_and_are_seeded(tmp_path):
    cfg = _random_cfg(tmp_path)
    sim = cfg.simulation
    counts: Counter[str] = Counter()
    for s in range(6):
        mics = draw_microscopes(sim, cfg.seed, f"s{s}", 30, (20.0, 400.0))
        regimes = [microscope_regime(m, sim.microscope)[1] for m in mics]
        assert Counter(regimes) == {"bright": 10, "dark": 10, "intermediate": 10}
        counts.update(regimes)
        for m in mics:  # the new draws lie in their ranges
            assert 0 <= m.c12_nm <= 5 and 0 <= m.phi12_deg < 180
            assert 0 <= m.c21_nm <= 50 and 0 <= m.phi21_deg < 360
            assert 0.7 <= m.dqe <= 0.95
    assert draw_microscopes(sim, cfg.seed, "s0", 30, (20.0, 400.0)) == draw_microscopes(
        sim, cfg.seed, "s0", 30, (20.0, 400.0))
    assert draw_microscopes(sim, cfg.seed + 1, "s0", 30, (20.0, 400.0)) != draw_microscopes(
        sim, cfg.seed, "s0", 30, (20.0, 400.0))
    # kept subsets of many structures: the shares hold within sampling error (n = 160)
    depths = np.array([2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    kept = Counter(microscope_regime(s.microscope, sim.microscope)[1]
                   for i in range(40) for s in plan_images(sim, f"p{i}", cfg.seed, depths))
    assert sum(kept.values()) == 160
    assert all(abs(v / 160 - 1 / 3) < 0.11 for v in kept.values()), kept
    # without balance the ranges' own mix: far from equal at these ranges
    free = _random_cfg(tmp_path, contrast_balance=None).simulation
    own = Counter(microscope_regime(m, free.microscope)[1] for s in range(6)
                  for m in draw_microscopes(free, cfg.seed, f"s{s}", 30, (20.0, 400.0)))
    assert max(own.values()) - min(own.values()) > 20, own


def test_regime_balance_with_fewer_ctf_draws_and_weights(tmp_path):
    cfg = _random_cfg(tmp_path, ctf_draws_per_structure=6,
                      contrast_balance={"bright": 2.0, "dark": 1.0, "intermediate": 0.0})
    mics = draw_microscopes(cfg.simulation, cfg.seed, "s1", 18, (20.0, 400.0))
    assert len({m.ctf_key() for m in mics}) == 6
    assert all(mics[i].ctf_key() == mics[i % 6].ctf_key() for i in range(18))
    assert len({m.dqe for m in mics}) == 18  # detector per image
    reg = Counter(microscope_regime(m, cfg.simulation.microscope)[1] for m in mics)
    assert reg == {"bright": 12, "dark": 6}


def test_unreachable_regime_is_a_one_line_error(tmp_path):
    cfg = _random_cfg(tmp_path, cs_um=[0.0, 0.0], uncorrected_fraction=0.0, c5_mm=[0.0, 0.0],
                      defocus_nm=[0.0, 0.0], scherzer_fraction=0.0, c12_nm=[0.0, 0.0])
    with pytest.raises(ValidationError, match=r"no '(bright|dark)' microscope") as e:
        draw_microscopes(cfg.simulation, cfg.seed, "s1", 6, (20.0, 400.0))
    assert "\n" not in str(e.value)


def test_zero_new_ranges_reproduce_the_draws_without_them(tmp_path):
    """With no astigmatism, coma, DQE or balance the randomised draws are the earlier ones
    (the new draws come from generators of their own)."""
    cfg = _random_cfg(tmp_path, c12_nm=[0.0, 0.0], c21_nm=[0.0, 0.0], dqe=None,
                      contrast_balance=None)
    full = _random_cfg(tmp_path, contrast_balance=None)
    a = draw_microscopes(cfg.simulation, cfg.seed, "s1", 12, (20.0, 400.0))
    b = draw_microscopes(full.simulation, cfg.seed, "s1", 12, (20.0, 400.0))
    old_fields = [f for f in CTF_FIELDS if f not in ("c12_nm", "phi12_deg", "c21_nm",
                                                     "phi21_deg")]
    old_fields += ["detector_pixel_A", "blur_fwhm_A", "dose_e_per_A2"]
    assert [[getattr(m, f) for f in old_fields] for m in a] == [
        [getattr(m, f) for f in old_fields] for m in b]
    assert all(m.c12_nm == 0 and m.c21_nm == 0 and math.isnan(m.dqe) for m in a)


# -- the parameter table --------------------------------------------------------------------
def test_new_parameters_round_trip_through_shard_and_index(tmp_path):
    cfg = _random_cfg(tmp_path)
    atoms = fx.ceo2_slab()
    out = ImageSimulator(cfg).simulate(atoms, "s1", "oxide")
    cols = pd.concat(out.columns, ignore_index=True)
    shard = write_shard(tmp_path / "shard_000.h5", out.clean,
                        {k: np.stack(v) for k, v in out.labels.items()}, out.params, cols, {})
    index = build_index([shard], tmp_path / "index.csv")
    from etem.io import read_table

    back = read_table(tmp_path / "index.csv")
    assert len(back) == len(index) == 4
    for row, orig in zip(back.to_dict("records"), out.params, strict=True):
        for k in ("c12_nm", "phi12_deg", "c21_nm", "phi21_deg", "dqe", "contrast_index"):
            assert row[k] == pytest.approx(orig[k], rel=1e-12), k
        assert row["contrast_regime"] == orig["contrast_regime"]
        assert orig["contrast_regime"] == microscope_regime(
            Microscope.from_row(orig), cfg.simulation.microscope)[1]
        assert Microscope.from_row(row) == Microscope.from_row(orig)
        assert 0.7 <= row["dqe"] <= 0.95 and row["c12_nm"] > 0
    # the fixed microscope records zeros (its images are the earlier ones)
    fixed = make_tiny_config(tmp_path / "f", simulation={"images_per_structure": 2})
    rows = ImageSimulator(fixed).simulate(atoms, "s1", "oxide", with_labels=False).params
    for r in rows:
        assert r["c12_nm"] == r["c21_nm"] == 0.0 and math.isnan(r["dqe"])
        assert r["contrast_regime"] in ("bright", "dark", "intermediate")


def test_shards_written_before_the_new_columns_still_read_and_check(tmp_path):
    """An older shard without the new /params columns: read_params fills them in (0, NaN,
    ''), Microscope.from_row gives the fixed microscope, and `etem check` accepts it; a
    missing original column is still reported."""
    import h5py

    from etem.check import CHECKS
    from etem.paths import Layout
    from etem.simulation.contract import PARAM_DEFAULTS
    from etem.simulation.shard import read_params

    cfg = make_tiny_config(tmp_path / "res", simulation={"n_shards": 1})
    lay = Layout(cfg.results_path)
    path = lay.simulation_shard(0)
    fx.write_blank_shard(path, 2, cfg.simulation.output_size_px, "s")
    new = ("c12_nm", "phi12_deg", "c21_nm", "phi21_deg", "dqe", "contrast_index",
           "contrast_regime")
    with h5py.File(path, "a") as f:
        for c in new:
            del f["params"][c]
    build_index([path], lay.simulation_index)
    back = read_params(path)
    for c in new:
        d = PARAM_DEFAULTS[c]
        assert all((v == d) or (isinstance(d, float) and math.isnan(d) and math.isnan(v))
                   for v in back[c]), c
    m = Microscope.from_row(back.iloc[0])
    assert (m.c12_nm, m.c21_nm) == (0.0, 0.0) and math.isnan(m.dqe)
    assert row_dqe(back.iloc[0]) == 1.0
    assert "images in 1 shards" in CHECKS["images"](cfg, lay)
    with h5py.File(path, "a") as f:
        del f["params"]["cs_um"]
    with pytest.raises(InputError, match=r"params missing \['cs_um'\]"):
        CHECKS["images"](cfg, lay)
