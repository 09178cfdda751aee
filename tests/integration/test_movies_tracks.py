"""Persistent column tracks in ``etem apply`` (issue 15): a static lattice gives one track per
column; the track-confidence filter removes noise tracks and counts what it removed."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from etem.analysis.tracks import score_tracks
from etem.config import load_config
from etem.frames.readers import open_movie
from etem.movies.apply import ApplyModels, apply_movie
from etem.testing import lattice_movie, write_h5
from tests.movies_fixtures import blur_model


def _cfg(apply: dict[str, object] | None = None) -> object:
    """The test config; ``apply``: keys under ``apply.`` (e.g. ``events.calibration_frames``)."""
    over = {
        "tracking.enabled": False,
        "apply.io.chunk_frames": 8,
        "apply.inference.precision": "fp32",
        "apply.io.write_tiff": False,
        "apply.io.preview_max_frames": 0,
        "apply.events.calibration_frames": 8,
        # the denoiser given denoises (auto without scoring: the choice among denoisers is
        # tested in test_movies_selection.py)
        "apply.inference.score_targets": 0,
    }
    over.update({f"apply.{k}": v for k, v in (apply or {}).items()})
    return load_config(None, over)


def test_static_lattice_gives_one_track_per_column(tmp_path: Path) -> None:
    drift = 0.2
    lm = lattice_movie(
        n_frames=24, size_px=96, event_frame=None, drift_px_per_frame=drift,
        dose_e_per_px_per_frame=1.0, seed=3,
    )
    movie = open_movie(write_h5(lm, tmp_path / "m.h5"))
    s = apply_movie(movie, tmp_path / "out", _cfg(), ApplyModels(denoiser=blur_model(sigma_px=2.0)))
    cols = pd.read_parquet(tmp_path / "out" / "columns.parquet")
    txy = [c - drift * t for t, c in enumerate(lm.columns)]
    sc = score_tracks(cols, txy, lm.ids or [], 5.0, 8.0, (96, 96))
    assert sc["recall"] > 0.97 and sc["precision"] > 0.97, sc
    # every true column is one track over the whole movie
    assert sc["tracks_per_column"] == 1.0 and sc["spanning_fraction"] > 0.99, sc
    xy = cols[["x_px", "y_px"]]
    inner = cols[((xy > 8) & (xy < 88)).all(axis=1)]
    n_true = int(((txy[0] > 8) & (txy[0] < 88)).all(axis=1).sum())
    long_tracks = inner.groupby("track_id")["frame"].nunique()
    assert (long_tracks >= 20).sum() == n_true
    # the filter's counts add up: rows in the table + rows removed = rows found
    t = s["tracks"]
    assert t["n_columns_before_filter"] - t["n_columns_removed"] == len(cols)
    assert t["evidence"] == "presence" and 0.9 < t["q_real"] <= 0.99
    assert t["window_frames"] == 1  # a single-frame denoiser: presence counted per frame
    assert (cols["track_confidence"] >= t["min_track_confidence"]).all()
    # events.csv: plain CSV (no comment lines) with the per-event fields
    head = (tmp_path / "out" / "events.csv").read_text().splitlines()[0]
    assert head.startswith("event,onset_frame,onset_lo_frame,onset_hi_frame,peak_frame")
    assert "kind" in head and "significance" in head and "region" in head
    glr = s["event_glr"]
    assert glr["noise_model"]["region_counts"].startswith("poisson")
    # every scored series says which noise estimate it used and its threshold
    assert set(glr["thresholds"]) == set(glr["noise_model"])
    assert "lattice_angle_deg" in glr["noise_model"]
    with h5py.File(tmp_path / "out" / "results.h5") as fh:
        assert len(fh["tracks/track_id"]) == t["n_tracks"] == s["n_tracks"]
        assert fh["columns/frame_offsets"][-1] == len(cols)
        conf = fh["tracks/confidence"][()]
        assert int((conf >= t["min_track_confidence"]).sum()) == t["n_tracks_kept"]


def test_track_filter_removes_flicker_and_counts_it(tmp_path: Path) -> None:
    """At a low dose noise blobs flicker: the default filter removes them (and says how many),
    min_track_confidence 0 keeps every column."""
    lm = lattice_movie(
        n_frames=24, size_px=96, event_frame=None, dose_e_per_px_per_frame=0.4, seed=5
    )
    movie = open_movie(write_h5(lm, tmp_path / "m.h5"))
    models = ApplyModels(denoiser=blur_model(sigma_px=1.5))
    s_all = apply_movie(movie, tmp_path / "all", _cfg({"tracks.min_track_confidence": 0.0}), models)
    s_flt = apply_movie(movie, tmp_path / "flt", _cfg(), models)
    all_cols = pd.read_parquet(tmp_path / "all" / "columns.parquet")
    flt_cols = pd.read_parquet(tmp_path / "flt" / "columns.parquet")
    assert s_all["tracks"]["n_columns_removed"] == 0
    removed = s_flt["tracks"]["n_columns_removed"]
    assert removed > 0 and len(flt_cols) == len(all_cols) - removed
    txy, ids = lm.columns, lm.ids or []
    before = score_tracks(all_cols, txy, ids, 5.0, 8.0, (96, 96))
    after = score_tracks(flt_cols, txy, ids, 5.0, 8.0, (96, 96))
    assert after["precision"] > before["precision"] + 0.05, (before, after)
    assert after["recall"] > before["recall"] - 0.05, (before, after)
    assert np.isfinite(flt_cols["track_confidence"]).all()
