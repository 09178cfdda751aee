"""Training distribution of a model and the warnings of etem apply outside it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from etem.analysis.domain import (
    column_fwhm_A,
    domain_warnings,
    training_distribution,
    warning_line,
)
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


def test_apply_warns_once_and_records_in_summary(tmp_path, caplog):
    from etem.config import load_config
    from etem.frames.readers import open_movie
    from etem.movies.apply import ApplyModels, apply_movie

    px = 0.2
    r = np.random.default_rng(1)
    clean = _lattice(64, px, 0.9)
    frames = r.poisson(clean[None] * 0.05, size=(10, 64, 64)).astype(np.uint16)
    path = write_movie_file("npy", tmp_path, frames, px)
    meta = {"kind": "denoiser", "pixel_size_A": px, "mlflow_run_id": "r",
            "training_distribution": training_distribution([px], (25.0, 500.0), [0.8, 1.0])}
    cfg = load_config({"name": "t", "seed": 1, "results_dir": str(tmp_path / "res"),
                       "tracking": {"enabled": False},
                       "apply": {"events": {"calibration_frames": 3},
                                 "io": {"chunk_frames": 5, "preview_max_frames": 0,
                                        "write_tiff": False},
                                 # the network out of its domain denoises (named)
                                 "inference": {"precision": "fp32",
                                               "denoise_with": "supervised"},
                                 "preprocess": {"dose_e_per_px_per_frame": 0.05,
                                                "pixel_size_A": px}}})
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
