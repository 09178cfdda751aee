"""``apply.inference.denoise_with: auto``: every denoiser scored by uPSNR on the movie, the best
used, a network that hurts never chosen and always named (etem.movies.selection)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn

from etem.config import load_config
from etem.config.base import StrictModel
from etem.frames.readers import Movie, open_movie
from etem.models.io import LoadedModel
from etem.movies.apply import ApplyModels, apply_movie
from etem.movies.selection import GAUSSIAN_SIGMAS_PX
from etem.testing import lattice_movie, write_h5
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


def _movie(tmp_path: Path) -> tuple[Movie, np.ndarray]:
    lm = lattice_movie(n_frames=32, size_px=96, event_frame=None, dose_e_per_px_per_frame=0.5,
                       seed=11)
    assert lm.counts is not None
    return open_movie(write_h5(lm, tmp_path / "m.h5")), lm.counts


def test_best_never_uses_a_network_that_hurts(tmp_path: Path) -> None:
    movie, _ = _movie(tmp_path)
    models = ApplyModels(denoiser=LoadedModel(Eraser(), {"kind": "denoiser",
                                                         "pixel_size_A": 0.2}),
                         unsupervised=window_model())
    s = apply_movie(movie, tmp_path / "auto", _cfg(**{"inference.denoise_with": "auto"}), models)
    scores = s["denoiser_upsnr_dB"]
    assert set(scores) == {"raw", "gaussian", "supervised", "unsupervised"}
    # the window mean + blur uses 5 frames: better than one frame's Gaussian filter, which is
    # better than the raw frame; the eraser is worst than the Gaussian filter
    assert scores["unsupervised"] > scores["gaussian"] > scores["raw"]
    assert scores["supervised"] < scores["gaussian"]
    assert s["denoiser_candidate"] == "unsupervised" and s["denoiser"] == "unsupervised"
    table = pd.read_csv(tmp_path / "auto" / "denoiser_scores.csv")
    assert table.loc[table.chosen, "candidate"].tolist() == ["unsupervised"]
    assert (tmp_path / "auto" / "denoiser_scores.csv.meta.json").is_file()
    # the explicit choice of the eraser is kept, but the summary says it hurts
    s2 = apply_movie(movie, tmp_path / "sup", _cfg(**{"inference.denoise_with": "supervised"}),
                     models)
    assert s2["denoiser_candidate"] == "supervised"
    assert any("scores below 'gaussian'" in w for w in s2["domain_warnings"])
    assert s2["denoiser_upsnr_dB"] == scores  # same frames, same scores


def test_classical_denoiser_without_network(tmp_path: Path) -> None:
    movie, counts = _movie(tmp_path)
    s = apply_movie(movie, tmp_path / "g", _cfg(**{"inference.denoise_with": "auto",
                                                "preprocess.drift_correction": False}),
                    ApplyModels(
        denoiser=LoadedModel(Eraser(), {"kind": "denoiser", "pixel_size_A": 0.2})))
    assert s["denoiser_candidate"] == "gaussian" and s["denoiser"] == "gaussian"
    sigma = s["gaussian_sigma_px"]
    assert sigma in GAUSSIAN_SIGMAS_PX
    assert s["calibration"] is None and s["domain_warnings"] == []
    with h5py.File(tmp_path / "g" / "results.h5") as h5:
        den = h5["denoised"][5]
    raw = counts[5].astype(np.float32) / 0.5
    np.testing.assert_allclose(den, ndimage.gaussian_filter(raw, sigma, mode="reflect"),
                               atol=1e-5)
