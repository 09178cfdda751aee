"""Training distribution of a model and the warnings of etem apply outside it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from etem.analysis.domain import (
    BRIGHT_ABOVE,
    CONTRAST_REGIMES,
    DARK_BELOW,
    ContrastEstimate,
    column_fwhm_A,
    contrast_estimate,
    contrast_record,
    domain_warnings,
    trained_regimes,
    training_distribution,
    warning_line,
)
from etem.config import load_config
from etem.models.io import LoadedModel
from tests.movies_fixtures import BlurDenoiser, write_movie_file


def _lattice(n: int, px: float, fwhm: float, spacing: float = 4.0) -> np.ndarray:
    y, x = np.mgrid[:n, :n] * px
    s = fwhm / 2.3548
    img = np.ones((n, n))
    for cx in np.arange(spacing / 2, n * px, spacing):
        for cy in np.arange(spacing / 2, n * px, spacing):
            img += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    return img


def _supervised_apply_config(tmp_path: Path, px: float, dose_e_per_px: float,
                             chunk_frames: int) -> Any:
    """An apply config that denoises with the supervised network whatever its domain."""
    return load_config({"name": "t", "seed": 1, "results_dir": str(tmp_path / "res"),
                        "tracking": {"enabled": False},
                        "apply": {"events": {"calibration_frames": 3},
                                  "io": {"chunk_frames": chunk_frames, "preview_max_frames": 0,
                                         "write_tiff": False},
                                  "inference": {"precision": "fp32",
                                                "denoise_with": "supervised"},
                                  "preprocess": {"dose_e_per_px_per_frame": dose_e_per_px,
                                                 "pixel_size_A": px}}})


@pytest.mark.parametrize("px", [0.05, 0.1, 0.2])
def test_column_width_is_measured_through_shot_noise(px):
    r = np.random.default_rng(0)
    for w in (0.6, 1.0, 1.5):
        img = _lattice(int(24 / px), px, w)
        assert column_fwhm_A(img, px) == pytest.approx(w, rel=0.05)
        assert column_fwhm_A(r.poisson(img * 10.0), px) == pytest.approx(w, rel=0.1)
    assert np.isnan(column_fwhm_A(np.ones((64, 64)), px))


def test_warnings_name_what_is_outside():
    meta = {"training_distribution": training_distribution(
        [0.1, 0.12], (20.0, 400.0), [0.6, 0.7, 0.8])}
    d = meta["training_distribution"]
    assert d["pixel_size_A"] == [0.1, 0.12] and d["dose_e_per_px"][0] == pytest.approx(0.2)
    assert domain_warnings(meta, 0.11, 1.0, 0.7) == []
    w = domain_warnings(meta, 0.3, 0.05, 1.5)
    assert len(w) == 3
    assert "pixel size" in w[0] and "below the lowest training dose" in w[1]
    assert "column width" in w[2]
    line = warning_line("supervised", w)
    assert "\n" not in line and line.count(";") == 2
    # a model file without a distribution falls back to its pixel size and dose range
    old = {"pixel_size_A": 0.1, "train_dose_e_per_px": [0.2, 4.0]}
    assert domain_warnings(old, 0.1, 0.1, None) == [
        "dose 0.1 e/px below the lowest training dose 0.2 e/px"]
    # a scanned-probe (STEM) movie, as its file says, is outside every etem network's HRTEM
    # training; TEM or a file that does not say: nothing
    stem = domain_warnings(meta, 0.11, 1.0, 0.7, imaging_mode="STEM")
    assert len(stem) == 1 and "imaging mode STEM" in stem[0] and "HRTEM" in stem[0]
    assert domain_warnings(meta, 0.11, 1.0, 0.7, imaging_mode="TEM") == []
    assert domain_warnings(meta, 0.11, 1.0, 0.7, imaging_mode=None) == []


def test_apply_warns_once_and_records_in_summary(tmp_path, caplog):
    from etem.frames.readers import open_movie
    from etem.movies.apply import ApplyModels, apply_movie

    px = 0.2
    r = np.random.default_rng(1)
    clean = _lattice(64, px, 0.9)
    frames = r.poisson(clean[None] * 0.05, size=(10, 64, 64)).astype(np.uint16)
    path = write_movie_file("npy", tmp_path, frames, px)
    meta = {"kind": "denoiser", "pixel_size_A": px, "mlflow_run_id": "r",
            "training_distribution": training_distribution([px], (25.0, 500.0), [0.8, 1.0])}
    # the network out of its domain denoises (named)
    cfg = _supervised_apply_config(tmp_path, px, dose_e_per_px=0.05, chunk_frames=5)
    with caplog.at_level(logging.WARNING):
        s = apply_movie(open_movie(path), tmp_path / "out", cfg,
                        ApplyModels(denoiser=LoadedModel(BlurDenoiser(), meta)))
    assert any("below the lowest training dose" in w for w in s["domain_warnings"])
    lines = [rec.getMessage() for rec in caplog.records if "training distribution" in
             rec.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["domain_warnings"] == s["domain_warnings"]


def test_dose_checked_is_the_resampled_dose(tmp_path):
    """A movie resampled to the model's pixel (ratio 1.37, not an integer) is checked at the
    dose per *model* pixel, r² times the raw dose: given (config) or measured (mean counts)."""
    from etem.config import load_config
    from etem.frames.readers import open_movie
    from etem.movies.apply import ApplyModels, apply_movie

    px, model_px, raw_dose = 0.1, 0.137, 0.15
    r = np.random.default_rng(2)
    clean = _lattice(64, px, 0.9)
    frames = r.poisson(clean[None] / clean.mean() * raw_dose, size=(8, 64, 64))
    path = write_movie_file("npy", tmp_path, frames.astype(np.uint16), px)
    # trained at 0.25-5 e/px: the raw 0.15 e/px would be below, the resampled 0.28 is inside
    meta = {"kind": "denoiser", "pixel_size_A": model_px, "mlflow_run_id": "r",
            "training_distribution": training_distribution(
                [model_px], (0.25 / model_px**2, 5 / model_px**2), [0.8, 1.0])}
    for given in (raw_dose, None):
        pre = {"pixel_size_A": px} | ({"dose_e_per_px_per_frame": given} if given else {})
        cfg = load_config({"name": "t", "seed": 1, "results_dir": str(tmp_path / "res"),
                           "tracking": {"enabled": False},
                           "apply": {"events": {"calibration_frames": 3},
                                     "io": {"chunk_frames": 4, "preview_max_frames": 0,
                                            "write_tiff": False},
                                     "inference": {"precision": "fp32",
                                                   "denoise_with": "supervised"},
                                     "preprocess": pre}})
        s = apply_movie(open_movie(path), tmp_path / f"out{given}", cfg,
                        ApplyModels(denoiser=LoadedModel(BlurDenoiser(), meta)))
        assert any("resampled" in n for n in s["notes"])
        assert s["dose_e_per_px_per_frame"] == pytest.approx(raw_dose * 1.37**2, rel=0.1)
        assert not any("dose" in w or "pixel size" in w for w in s["domain_warnings"])


# -- contrast regime ------------------------------------------------------------------------
def _movie(clean: np.ndarray, dose: float, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).poisson(clean[None] * dose, size=(n, *clean.shape))


@pytest.mark.parametrize("spacing, fwhm", [(4.0, 0.9), (2.6, 1.0)])
def test_bright_atoms_and_their_inverse_give_opposite_regimes(spacing, fwhm):
    """Columns brighter than the background, and the same image inverted (2 - I: atoms
    darker than the background), through shot noise at 2 e/px/frame."""
    px = 0.2
    bright = _lattice(128, px, fwhm, spacing)
    bright = 1.0 + 0.3 * (bright - 1.0) / (bright.max() - 1.0)  # vacuum 1, columns 1.3
    dark = 2.0 - bright
    eb = contrast_estimate(_movie(bright, 2.0, 12, 0), px)
    ed = contrast_estimate(_movie(dark, 2.0, 12, 1), px)
    assert eb.regime == "bright" and ed.regime == "dark", (eb, ed)
    assert eb.skewness > BRIGHT_ABOVE > DARK_BELOW > ed.skewness
    # one summed image (no frames to split: 2x2 sub-lattices), and the clean images
    assert contrast_estimate(_movie(bright, 24.0, 1, 2)[0], px).regime == "bright"
    assert contrast_estimate(_movie(dark, 24.0, 1, 3)[0], px).regime == "dark"
    assert contrast_estimate(bright, px).regime == "bright"


def test_noise_alone_has_no_regime_and_no_bias():
    """Pure shot noise (positively skewed counts) is 'unknown', never 'bright': the
    estimate multiplies independent copies, whose noise does not add up."""
    r = np.random.default_rng(4)
    for dose in (0.2, 2.0):
        e = contrast_estimate(r.poisson(dose, size=(9, 128, 128)), 0.2)
        assert e.regime == "unknown"
    # weak bright columns under strong noise: the plain skewness of the sum would be
    # dominated by the noise; the estimate keeps the sign of the signal
    bright = 1.0 + 0.15 * (_lattice(128, 0.2, 0.9) - 1.0)
    e = contrast_estimate(_movie(2.0 - bright, 2.0, 48, 5), 0.2)
    assert e.regime == "dark"
    assert contrast_estimate(np.ones((4, 8, 8)), 0.2).regime == "unknown"
    assert contrast_estimate(np.ones((4, 64, 64)), float("nan")).regime == "unknown"


def test_the_ctf_of_a_bright_and_of_a_dark_microscope_are_told_apart():
    """A lattice of weak phase columns imaged through etem's CTF at -8 nm (bright atoms)
    and +8 nm defocus (dark atoms; etem.simulation.microscope.contrast_index)."""
    from etem.simulation.grid import ImageGrid
    from etem.simulation.imaging import Imager
    from etem.simulation.microscope import contrast_index, fixed_microscope
    from tests.configs import make_tiny_config

    sim = make_tiny_config(None).simulation
    g, px = 192, 0.15
    grid = ImageGrid(extent_A=g * px, gpts=g, output_px=g)
    phase = 0.3 * (_lattice(g, px, 0.6, 3.6) - 1.0)
    mics = [fixed_microscope(sim, -8.0), fixed_microscope(sim, 8.0)]
    assert contrast_index(mics[0]) > 0.25 > -0.25 > contrast_index(mics[1])
    imgs = Imager(sim, grid).images(np.fft.fft2(np.exp(1j * phase)), mics)
    regimes = [contrast_estimate(_movie(np.clip(im, 0, None), 4.0, 12, s), px).regime
               for s, im in enumerate(imgs)]
    assert regimes == ["bright", "dark"]


def test_a_model_trained_on_bright_atoms_says_dark_is_outside():
    meta = {"training_distribution": training_distribution(
        [0.2], (20.0, 400.0), [0.8], contrast_regimes=["bright"] * 9 + ["", "nan"])}
    assert meta["training_distribution"]["contrast_regimes"] == {"bright": 1.0}
    assert trained_regimes(meta) == ["bright"]
    dark = ContrastEstimate("dark", -1.1, 0.05)
    w = domain_warnings(meta, 0.2, 1.0, 0.8, dark)
    assert len(w) == 1 and "contrast regime 'dark'" in w[0] and "(bright)" in w[0]
    assert domain_warnings(meta, 0.2, 1.0, 0.8, ContrastEstimate("bright", 1.0, 0.05)) == []
    assert domain_warnings(meta, 0.2, 1.0, 0.8, ContrastEstimate("unknown", 0.0, 1.0)) == []
    rec = contrast_record(meta, dark)
    assert rec["regime"] == "dark" and rec["trained_regimes"] == ["bright"]
    # all three regimes (the balanced campaign): nothing outside; a regime under 2 % counts
    # as not trained on
    mixed = {"training_distribution": training_distribution(
        [0.2], (20.0, 400.0), [0.8], contrast_regimes=["bright", "dark", "intermediate"])}
    assert domain_warnings(mixed, 0.2, 1.0, 0.8, dark) == []
    rare = {"training_distribution": training_distribution(
        [0.2], (20.0, 400.0), [0.8], contrast_regimes=["bright"] * 99 + ["dark"])}
    assert trained_regimes(rare) == ["bright"]
    # older model files (no regimes recorded): 'unknown', no warning, no error
    old = {"training_distribution": training_distribution([0.2], (20.0, 400.0), [0.8])}
    assert "contrast_regimes" not in old["training_distribution"]
    assert trained_regimes(old) is None and domain_warnings(old, 0.2, 1.0, 0.8, dark) == []
    assert contrast_record(old, dark)["trained_regimes"] == "unknown"
    assert contrast_record(None, dark)["trained_regimes"] is None


def test_regime_names_match_the_simulation():
    from etem.simulation.microscope import CONTRAST_REGIMES as SIMULATED

    assert tuple(CONTRAST_REGIMES) == tuple(SIMULATED)


def test_apply_reports_a_dark_movie_outside_a_bright_model(tmp_path):
    """etem apply on a dark-atom movie with a model trained only on bright atoms: the
    summary records the estimated regime against the trained ones and warns; the report's
    movie section shows both."""
    from etem.frames.readers import open_movie
    from etem.movies.apply import ApplyModels, apply_movie
    from etem.paths import Layout
    from etem.report.build import section_movies

    px = 0.2
    bright = _lattice(96, px, 0.9, 3.0)
    dark = 2.0 - (1.0 + 0.3 * (bright - 1.0) / (bright.max() - 1.0))
    path = write_movie_file("npy", tmp_path, _movie(dark, 2.0, 12, 6).astype(np.uint16), px)
    dist = training_distribution([px], (10.0, 500.0), [0.8, 1.0],
                                 contrast_regimes=["bright"] * 4)
    cfg = _supervised_apply_config(tmp_path, px, dose_e_per_px=2.0, chunk_frames=12)
    for name, meta_dist in (("dark", dist), ("old", {})):
        meta = {"kind": "denoiser", "pixel_size_A": px, "mlflow_run_id": "r",
                "training_distribution": meta_dist}
        s = apply_movie(open_movie(path), tmp_path / "res" / "apply" / name, cfg,
                        ApplyModels(denoiser=LoadedModel(BlurDenoiser(), meta)))
        assert s["contrast"]["regime"] == "dark"
        warned = [w for w in s["domain_warnings"] if "contrast regime" in w]
        if name == "dark":
            assert s["contrast"]["trained_regimes"] == ["bright"] and len(warned) == 1
        else:  # a model file without its training regimes: unknown, no warning
            assert s["contrast"]["trained_regimes"] == "unknown" and not warned
    html = section_movies(Layout(tmp_path / "res"), cfg)
    assert "estimated on the raw frames): dark; the model was trained on bright" in html
    assert "does not record its training regimes" in html
