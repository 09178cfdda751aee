"""``apply.inference.denoise_with: auto``: every denoiser scored by uPSNR on the movie, the best
used, a network that hurts never chosen and always named (etem.movies.selection)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from torch import nn

from etem.analysis.baselines import wiener_sure_choice
from etem.cli import main
from etem.config import load_config
from etem.config.base import StrictModel
from etem.frames.readers import Movie, open_movie
from etem.models.io import LoadedModel
from etem.movies.apply import ApplyModels, apply_movie
from etem.movies.selection import (
    GAUSSIAN_SIGMAS_PX,
    WIENER_ALPHAS,
    WIENER_CAVEAT,
    WIENER_SMOOTHS_PX,
    classical_filter,
)
from etem.testing import LatticeMovie, lattice_movie, write_h5
from tests.movies_fixtures import window_model


class Eraser(nn.Module):
    """A 'denoiser' out of its depth: it returns vacuum everywhere (the lattice erased)."""

    multiple = 4
    in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x[:, :1])


def _cfg(**apply: object) -> StrictModel:
    over: dict[str, object] = {
        "tracking.enabled": False, "apply.io.chunk_frames": 8, "apply.inference.tile_px": 64,
        "apply.inference.overlap_px": 16, "apply.inference.precision": "fp32",
        "apply.io.preview_max_frames": 0, "apply.io.write_tiff": False}
    over.update({f"apply.{k}": v for k, v in apply.items()})
    return load_config(None, over)


def _movie(tmp_path: Path) -> tuple[Movie, LatticeMovie]:
    lm = lattice_movie(n_frames=32, size_px=96, event_frame=None, dose_e_per_px_per_frame=0.5,
                       seed=11)
    assert lm.counts is not None
    return open_movie(write_h5(lm, tmp_path / "m.h5")), lm


def test_best_never_uses_a_network_that_hurts(tmp_path: Path) -> None:
    movie, _ = _movie(tmp_path)
    models = ApplyModels(denoiser=LoadedModel(Eraser(), {"kind": "denoiser",
                                                         "pixel_size_A": 0.2}),
                         unsupervised=window_model())
    s = apply_movie(movie, tmp_path / "auto", _cfg(**{"inference.denoise_with": "auto"}), models)
    scores = s["denoiser_upsnr_dB"]
    assert set(scores) == {"raw", "gaussian", "wiener", "supervised", "unsupervised"}
    # the window mean + blur uses 5 frames: better than one frame's Gaussian filter, which is
    # better than the raw frame; the eraser is worse than the Gaussian filter
    assert scores["unsupervised"] > scores["gaussian"] > scores["raw"]
    assert scores["supervised"] < scores["gaussian"]
    # the best of apply.inference.auto_candidates is used; the Wiener filter (best on this
    # perfect lattice, even over 5 frames' mean) is scored but not among them by default
    allowed = {k: v for k, v in scores.items() if k != "wiener"}
    best = max(allowed, key=allowed.__getitem__)
    assert scores["wiener"] > scores[best]
    assert best != "supervised" and s["denoiser_candidate"] == best
    table = pd.read_csv(tmp_path / "auto" / "denoiser_scores.csv")
    assert table.loc[table.chosen, "candidate"].tolist() == [best]
    # the eraser's flat image shows no columns: they disagree with the raw frames' mean
    by = table.set_index("candidate")
    assert not by.loc["supervised", "columns_agree"] and by.loc[best, "columns_agree"]
    assert by.loc["supervised", "column_f1"] < 0.1 < by.loc[best, "column_f1"]
    assert s["denoiser_column_f1"] == pytest.approx(by.column_f1.to_dict())
    assert (tmp_path / "auto" / "denoiser_scores.csv.meta.json").is_file()
    # the explicit choice of the eraser is kept, but the summary says it hurts, naming the
    # better candidate to use (wiener by name: auto would not take it)
    s2 = apply_movie(movie, tmp_path / "sup", _cfg(**{"inference.denoise_with": "supervised"}),
                     models)
    assert s2["denoiser_candidate"] == "supervised"
    assert any("scores below 'wiener'" in w and "denoise_with: wiener" in w
               for w in s2["domain_warnings"])
    assert any("columns disagree" in w for w in s2["domain_warnings"])
    assert s2["denoiser_upsnr_dB"] == scores  # same frames, same scores


def test_classical_denoiser_without_network(tmp_path: Path) -> None:
    movie, lm = _movie(tmp_path)
    models = ApplyModels(denoiser=LoadedModel(Eraser(), {"kind": "denoiser",
                                                         "pixel_size_A": 0.2}))
    still = {"preprocess.drift_correction": False}
    wiener_ok = {"inference.auto_candidates": ["supervised", "raw", "gaussian", "wiener"]}
    s = apply_movie(movie, tmp_path / "w", _cfg(**{"inference.denoise_with": "auto", **still,
                                                 **wiener_ok}), models)
    # a lattice's power is in its Bragg peaks: the Wiener filter beats every Gaussian width;
    # auto takes it once it is among the candidates, and the summary says what it does
    assert s["denoiser_candidate"] == "wiener" and s["denoiser"] == "wiener"
    assert s["denoiser_upsnr_dB"]["wiener"] > s["denoiser_upsnr_dB"]["gaussian"]
    alpha, smooth = s["wiener_alpha"], s["wiener_smooth_px"]
    assert alpha in WIENER_ALPHAS and smooth in WIENER_SMOOTHS_PX
    assert s["gaussian_sigma_px"] is None
    assert s["calibration"] is None and s["domain_warnings"] == [WIENER_CAVEAT]
    with h5py.File(tmp_path / "w" / "results.h5") as h5:
        den = h5["denoised"][5]
    raw = lm.counts[5].astype(np.float32) / 0.5
    np.testing.assert_allclose(den, classical_filter("wiener", 0.5, wiener_alpha=alpha,
                                                     wiener_smooth_px=smooth)(raw),
                               atol=1e-5)
    assert np.mean((den - lm.clean[5]) ** 2) < 0.1 * np.mean((raw - lm.clean[5]) ** 2)
    # named: the Gaussian of the width its uMSE chose
    s = apply_movie(movie, tmp_path / "g",
                    _cfg(**{"inference.denoise_with": "gaussian", **still}), models)
    assert s["denoiser_candidate"] == "gaussian" and s["wiener_alpha"] is None
    assert s["wiener_smooth_px"] is None
    sigma = s["gaussian_sigma_px"]
    assert sigma in GAUSSIAN_SIGMAS_PX
    with h5py.File(tmp_path / "g" / "results.h5") as h5:
        den = h5["denoised"][5]
    np.testing.assert_allclose(den, ndimage.gaussian_filter(raw, sigma, mode="reflect"),
                               atol=1e-5)


def test_cli_wiener_needs_no_network(tmp_path: Path) -> None:
    """``denoise_with: wiener``: ``etem apply`` end to end with no network given (none loaded,
    not even the packaged one), the filter recorded in the summary and the score table."""
    lm = lattice_movie(n_frames=16, size_px=64, event_frame=None, dose_e_per_px_per_frame=0.5,
                       seed=2)
    path = write_h5(lm, tmp_path / "m.h5")
    out = tmp_path / "out"
    assert main(["apply", "--movie", str(path), "--out", str(out),
                 "--set", "tracking.enabled=false", "--set", "apply.events.calibration_frames=4",
                 "--set", "apply.io.preview_max_frames=0",
                 "--set", "apply.inference.denoise_with=wiener"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["denoiser"] == "wiener" and s["models"] == {} and s["calibration"] is None
    assert s["wiener_alpha"] in WIENER_ALPHAS
    table = pd.read_csv(out / "denoiser_scores.csv")
    row = table[table.chosen]
    assert row.candidate.tolist() == ["wiener"] and row.wiener_alpha.iloc[0] == s["wiener_alpha"]
    assert row.wiener_smooth_px.iloc[0] == s["wiener_smooth_px"] in WIENER_SMOOTHS_PX
    with h5py.File(out / "results.h5") as h5:
        den = h5["denoised"][()]
    raw = lm.counts.astype(np.float32) / 0.5
    assert np.mean((den - lm.clean) ** 2) < 0.2 * np.mean((raw - lm.clean) ** 2)


def test_cli_wiener_on_a_single_image_takes_its_pair_by_sure(tmp_path: Path) -> None:
    """A single HRTEM image (a 1-frame movie: no uMSE score) named ``denoise_with: wiener``:
    the filter's pair is the least SURE of the image at the detector's DQE, recorded in the
    summary (no score table), and the frame denoised with it."""
    lm = lattice_movie(n_frames=1, size_px=128, spacing_px=9.0, sigma_px=1.6, event_frame=None,
                       dose_e_per_px_per_frame=0.45, seed=4)
    assert lm.counts is not None
    path = write_h5(lm, tmp_path / "m.h5")
    out = tmp_path / "out"
    assert main(["apply", "--movie", str(path), "--out", str(out),
                 "--set", "tracking.enabled=false", "--set", "apply.io.preview_max_frames=0",
                 "--set", "apply.preprocess.detector_dqe=0.9",
                 "--set", "apply.inference.denoise_with=wiener"]) == 0
    s = json.loads((out / "summary.json").read_text())
    pair = (s["wiener_alpha"], s["wiener_smooth_px"])
    assert s["denoiser"] == "wiener" and not s["denoiser_upsnr_dB"]
    assert pair == wiener_sure_choice(lm.counts.astype(np.float64), 0.9)
    with h5py.File(out / "results.h5") as h5:
        den = h5["denoised"][0]
    raw = lm.counts[0].astype(np.float32) / 0.45
    np.testing.assert_allclose(den, classical_filter("wiener", 0.45, None, pair[0], 0.9,
                                                     pair[1])(raw), atol=1e-5)


def test_cli_auto_among_classical_candidates_needs_no_network(tmp_path: Path) -> None:
    """``denoise_with: auto`` with no network among ``auto_candidates``: ``etem apply`` with
    no network given and the packaged one switched off (the workflow gives such a movie
    none) chooses among the classical filters; scored or not (``score_targets: 0``)."""
    lm = lattice_movie(n_frames=16, size_px=64, event_frame=None, dose_e_per_px_per_frame=0.5,
                       seed=2)
    path = write_h5(lm, tmp_path / "m.h5")
    for targets in (8, 0):
        out = tmp_path / f"out{targets}"
        assert main(["apply", "--movie", str(path), "--out", str(out),
                     "--set", "tracking.enabled=false",
                     "--set", "apply.events.calibration_frames=4",
                     "--set", "apply.io.preview_max_frames=0",
                     "--set", "apply.inference.pretrained=false",
                     "--set", "apply.inference.auto_candidates=[gaussian, raw]",
                     "--set", f"apply.inference.score_targets={targets}"]) == 0
        s = json.loads((out / "summary.json").read_text())
        assert s["models"] == {} and s["calibration"] is None
        assert s["denoiser"] in ("gaussian", "raw")
        if targets == 0:  # not scored: the first candidate listed
            assert s["denoiser"] == "gaussian" and s["gaussian_sigma_px"] == 1.0
