"""``etem apply`` with the mean constraint (``apply.inference.match_mean``) on and off."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from etem.config import load_config
from etem.data.inputs import image_input, normalize
from etem.frames.readers import open_movie
from etem.movies.apply import ApplyModels, apply_movie
from etem.movies.shard import runner_for
from etem.testing import lattice_movie, write_h5
from tests.movies_fixtures import blur_model

DOSE = 2.0


def _denoised(movie: Path, out: Path, match: bool) -> np.ndarray:
    cfg = load_config(None, {
        "tracking.enabled": False,
        "apply.io.chunk_frames": 4,
        "apply.io.write_tiff": False,
        "apply.inference.tile_px": 32,  # 64² frames in tiles: the scale is per whole frame
        "apply.inference.overlap_px": 8,
        "apply.inference.precision": "fp32",
        "apply.inference.score_targets": 0,
        "apply.inference.match_mean": match,
        "apply.preprocess.drift_correction": False,
        "apply.events.calibration_frames": 4,
    })
    apply_movie(open_movie(movie), out, cfg, ApplyModels(denoiser=blur_model()))
    with h5py.File(out / "results.h5", "r") as h5:
        return np.asarray(h5["denoised"][()])


def test_apply_matches_the_mean_and_the_switch_off_keeps_the_network_output(
    tmp_path: Path,
) -> None:
    lm = lattice_movie(n_frames=6, size_px=64, event_frame=None, dose_e_per_px_per_frame=DOSE,
                       seed=1)
    movie = write_h5(lm, tmp_path / "m.h5")
    counts = np.asarray(lm.counts, dtype=np.float32)
    off = _denoised(movie, tmp_path / "off", False)
    on = _denoised(movie, tmp_path / "on", True)
    # off: the network's output as before the constraint (the zero-padded blur darkens the
    # border, so its mean is below the counts')
    model = blur_model()
    i = load_config(None, {"apply.inference.tile_px": 32, "apply.inference.overlap_px": 8,
                           "apply.inference.precision": "fp32"}).apply.inference
    x = image_input(normalize(counts, DOSE), DOSE, model.dose_conditioned)
    np.testing.assert_allclose(off, runner_for(model, i).run(x)[:, 0], rtol=0, atol=1e-6)
    assert np.all(off.mean(axis=(1, 2)) < counts.mean(axis=(1, 2)) / DOSE - 0.02)
    # on: each frame's mean is its counts' mean / dose, one factor per whole frame
    for t in range(len(counts)):
        assert on[t].mean(dtype=np.float64) == pytest.approx(
            counts[t].mean(dtype=np.float64) / DOSE, rel=1e-5)
        ratio = on[t] / off[t]
        assert np.ptp(ratio) < 1e-4 * ratio.mean()
