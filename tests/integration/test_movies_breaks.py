"""Denoising does not erase a sudden change; columns are only looked for where they can be seen."""

from __future__ import annotations

from pathlib import Path

import h5py
import pandas as pd
import pytest
import tifffile

from etem.config import load_config
from etem.frames.readers import open_movie
from etem.movies.apply import ApplyModels, apply_movie
from etem.testing import lattice_movie, write_h5
from tests.movies_fixtures import window_model

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "gold_growth_movie"


def _cfg(apply: dict[str, object] | None = None) -> object:
    """The test config; ``apply``: keys under ``apply.`` (e.g. ``events.calibration_frames``)."""
    over = {"tracking.enabled": False, "apply.io.chunk_frames": 16,
            "apply.inference.tile_px": 128, "apply.inference.overlap_px": 16,
            "apply.events.calibration_frames": 10, "apply.io.write_tiff": False,
            "apply.io.preview_max_frames": 0}
    over.update({f"apply.{k}": v for k, v in (apply or {}).items()})
    return load_config(None, over)


def test_sudden_change_survives_the_multi_frame_window(tmp_path: Path) -> None:
    lm = lattice_movie(n_frames=60, size_px=96, event_frame=30, dose_e_per_px_per_frame=2.0,
                       seed=4)
    with open_movie(write_h5(lm, tmp_path / "m.h5")) as movie:
        # the window network, not auto's choice (on this perfect lattice: the Wiener filter)
        s = apply_movie(movie, tmp_path / "out", _cfg({"inference.denoise_with": "unsupervised"}),
                        ApplyModels(unsupervised=window_model()))
    assert s["scene_breaks"] == [{"frame": 30, "kind": "sudden change"}]
    with h5py.File(tmp_path / "out" / "results.h5", "r") as h5:
        den = h5["denoised"][()]
    # where the clean intensity dropped at frame 30 (the columns that vanished or moved)
    centre = lm.clean[29] - lm.clean[30] > 0.5
    before, after = lm.clean[29][centre].mean(), lm.clean[30][centre].mean()
    assert centre.sum() > 20 and before - after > 0.5  # a clear change
    # the first frame after the change shows the new state like the later frames do, not a
    # mix with the old one (a 5-frame window across the change would keep 2/5 of it)
    old, new = den[25:28][:, centre].mean(), den[32:35][:, centre].mean()
    assert old - new > 0.3
    assert abs(float(den[30][centre].mean()) - new) / (old - new) < 0.15
    assert abs(float(den[29][centre].mean()) - old) / (old - new) < 0.15


def test_time_gap_in_frame_numbers_is_a_break(tmp_path: Path) -> None:
    lm = lattice_movie(n_frames=12, size_px=64, event_frame=None, seed=1)
    folder = tmp_path / "frames"
    folder.mkdir()
    numbers = [*range(8), 20, 21, 22, 23]  # frames 8-19 were not saved
    for i, n in enumerate(numbers):
        tifffile.imwrite(folder / f"frame_{n:04d}.tif", lm.counts[i])
    with open_movie(folder) as movie:
        assert movie.time_gaps() == [8]
        s = apply_movie(movie, tmp_path / "out", _cfg({"preprocess.pixel_size_A": 0.2}),
                        ApplyModels(unsupervised=window_model()))
    assert {"frame": 8, "kind": "time gap"} in s["scene_breaks"]


def test_coarse_pixels_get_frame_statistics_only(tmp_path: Path) -> None:
    lm = lattice_movie(n_frames=10, size_px=64, event_frame=None, seed=2)
    with open_movie(write_h5(lm, tmp_path / "m.h5")) as movie:
        s = apply_movie(movie, tmp_path / "out", _cfg({"preprocess.pixel_size_A": 1.6}),
                        ApplyModels(unsupervised=window_model(pixel_size_A=None)))
    assert s["columns_analysed"] is False and "1.6 Å is coarser" in s["columns_reason"]
    assert s["n_columns"] == 0 and len(pd.read_parquet(tmp_path / "out" / "columns.parquet")) == 0
    frames = pd.read_csv(tmp_path / "out" / "frames.csv")
    for col in ("contrast", "matter_area_nm2", "drift_step_A", "mean_counts"):
        assert frames[col].notna().sum() >= len(frames) - 1, col


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} absent (real data beside the project)")
def test_real_gold_movie_gap_and_no_columns_at_1_6_A(tmp_path: Path) -> None:
    with open_movie(REAL) as movie:
        s = apply_movie(movie, tmp_path / "out",
                        _cfg({"io.chunk_frames": 4, "inference.tile_px": 512}),
                        ApplyModels(unsupervised=window_model(pixel_size_A=None)))
    assert {"frame": 3, "kind": "time gap"} in s["scene_breaks"]
    assert s["columns_analysed"] is False
