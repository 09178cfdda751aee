"""Event detection on a movie from the real ``etem simulate-movie`` path (issue 7).

A Pt particle on a CeO2 slab is imaged by multislice for a 40-frame movie at 1.5 e/px/frame;
the particle turns by 12 degrees at frame 24 after a stable stretch longer than the
calibration. The apply pipeline (a Gaussian stand-in denoiser, no training) must find the
event within +-2 frames and report nothing in the stable stretch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from etem.config import load_config
from etem.frames.readers import open_movie
from etem.movies.apply import ApplyModels, apply_movie
from etem.simulation.synthetic_movie import read_movie
from tests import simulation_fixtures as fx
from tests.movies_fixtures import blur_model, simulate_movie_file

EVENT = 24


def _pt_particle_on_ceo2() -> object:
    """A 3 x 3 cell CeO2 slab with a 3 x 3 x 1 cell Pt block (36 atoms) centred above it."""
    import ase.build

    slab = fx.ceo2_slab(reps=3, extent_A=3 * 5.411)
    pt = ase.build.bulk("Pt", "fcc", a=3.92, cubic=True) * (3, 3, 1)
    depth = slab.cell[2, 2]
    ext = slab.cell[0, 0]
    pt.positions[:, :2] += ext / 2 - pt.positions[:, :2].mean(axis=0)
    pt.positions[:, 2] += depth + 1.0
    slab.set_cell([ext, ext, depth + 7.0])
    pt.arrays["region"] = np.ones(len(pt), dtype=int)
    pt.arrays["valence"] = np.zeros(len(pt), dtype=int)
    slab.extend(pt)
    return slab


@pytest.fixture(scope="module")
def simulated_movie(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("simmovie")
    manifest = fx.write_manifest(
        tmp / "structures", {"pt0001": ("pt_on_ceo2", _pt_particle_on_ceo2())}
    )
    cfg = {
        "name": "t",
        "seed": 11,
        "results_dir": str(tmp / "results"),
        "tracking": {"enabled": False},
        "simulation": {"sampling_A": 0.2, "thickness_nm": [1.0], "slice_thickness_A": 2.0},
        "synthetic_movie": {
            "n_frames": 40,
            "size_px": 96,
            "event_frames": [EVENT],
            "event_kinds": ["rotation"],
            "rotation_deg": 12.0,
            "dose_e_per_px_per_frame": 1.5,
            "structure_family": "pt_on_ceo2",
        },
        "apply": {
            "events": {"calibration_frames": 16},
            "io": {"chunk_frames": 8, "preview_max_frames": 0, "write_tiff": False},
            "inference": {"precision": "fp32"},
        },
    }
    path, out = simulate_movie_file(tmp, cfg, manifest)
    return {"tmp": tmp, "config": path, "movie": out}


def test_rotation_found_in_simulated_movie(simulated_movie: dict[str, Path]) -> None:
    m = read_movie(simulated_movie["movie"])
    assert m["events"].tolist() == [EVENT] and m["event_kinds"] == ["rotation"]
    clean = m["clean"]
    rel = np.sqrt(np.mean((clean[EVENT] - clean[EVENT - 1]) ** 2)) / clean[0].std()
    assert rel > 0.02  # the rotation really changes the image
    cfg = load_config(simulated_movie["config"], {})
    s = apply_movie(
        open_movie(simulated_movie["movie"]),
        simulated_movie["tmp"] / "apply",
        cfg,
        ApplyModels(denoiser=blur_model(pixel_size_A=None, sigma_px=1.5)),
    )
    onsets = [e["onset_frame"] for e in s["events"]]
    assert len(onsets) == 1, s["events"]
    assert abs(onsets[0] - EVENT) <= 2
    assert all(not (e["onset_frame"] <= EVENT - 3) for e in s["events"])  # stable stretch quiet
    # the apply run scored itself against the truth the movie carries
    truth = s["truth"]["events"]
    assert truth["n_hits"] == 1 and truth["n_false_alarms"] == 0
    assert truth["onset_errors_frames"] == [onsets[0] - EVENT]
    assert s["truth"]["columns"]["n_frames_scored"] == 40
