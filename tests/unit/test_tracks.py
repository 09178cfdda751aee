"""Persistent column tracks: streaming trackpy linking and the track-level confidence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etem.analysis.tracks import (
    PresenceRates,
    TrackLinker,
    p_value_evidence,
    presence_rates,
    track_confidence,
    track_log_odds,
)


def test_linker_links_remembers_and_starts_tracks() -> None:
    tr = TrackLinker(radius_px=2.0, memory=1)
    ids0, d0 = tr.update(0, np.array([[0.0, 0.0], [10.0, 0.0]]))
    assert sorted(ids0) == [0, 1] and np.isnan(d0).all()
    ids1, d1 = tr.update(1, np.array([[10.5, 0.2], [0.3, 0.0], [30.0, 30.0]]))
    assert ids1[0] == ids0[1] and ids1[1] == ids0[0] and ids1[2] not in ids0
    assert d1[0] == pytest.approx(np.hypot(0.5, 0.2)) and np.isnan(d1[2])
    # missed for one frame (memory 1): the same track continues
    tr.update(2, np.array([[30.0, 30.0], [10.5, 0.2]]))
    ids3, _ = tr.update(3, np.array([[0.3, 0.1], [30.0, 30.0]]))
    assert ids3[0] == ids0[0]
    # missed for more than memory frames: a new track, the old one is summarised
    tr.update(4, np.array([[30.0, 30.0]]))
    tr.update(5, np.array([[30.0, 30.0]]))
    ids6, _ = tr.update(6, np.array([[0.3, 0.0], [30.0, 30.0]]))
    assert ids6[0] not in (ids0[0], ids0[1], ids1[2]) and ids6[1] == ids1[2]
    done = tr.pop_finished()
    first = done.set_index("track_id").loc[ids0[0]]
    assert (first["first_frame"], first["last_frame"], first["n_frames"]) == (0, 3, 3)
    rest = tr.finish()
    assert len(done) + len(rest) == tr.n_tracks == 4
    assert tr.pop_finished().empty


def test_linker_handles_empty_frames() -> None:
    tr = TrackLinker(radius_px=2.0, memory=2)
    ids, disp = tr.update(0, np.zeros((0, 2)))
    assert len(ids) == 0 and len(disp) == 0
    tr.update(1, np.array([[5.0, 5.0]]))
    tr.update(2, np.zeros((0, 2)))
    ids3, d3 = tr.update(3, np.array([[5.2, 5.0]]))
    assert ids3[0] == 0 and d3[0] == pytest.approx(0.2)


def test_confidence_separates_persistent_columns_from_flicker() -> None:
    tracks = pd.DataFrame(
        {
            "track_id": [0, 1, 2, 3, 4],
            "first_frame": [0, 20, 10, 30, 0],
            "last_frame": [47, 20, 12, 47, 23],
            "n_frames": [46, 1, 2, 17, 24],
            "evidence": [0.0] * 5,
        }
    )
    rates = PresenceRates(q_real=0.95, q_noise=0.1, noise_density_per_px2=0.0)
    conf = track_confidence(track_log_odds(tracks, 48, 2, rates))
    # whole-movie column, appearing column, vanishing column: real; 1-2 frame blobs: noise
    assert conf[0] > 0.999 and conf[3] > 0.99 and conf[4] > 0.99
    assert conf[1] < 0.01 and conf[2] < 0.05
    # calibrated per-frame p-values add evidence: a 2-frame track of very small p-values
    strong = tracks.assign(evidence=[0.0, 0.0, 2 * float(p_value_evidence(np.array([1e-6]))[0]),
                                     0.0, 0.0])
    assert track_log_odds(strong, 48, 2, rates)[2] > track_log_odds(tracks, 48, 2, rates)[2] + 9.9


def test_p_value_evidence_bound() -> None:
    ev = p_value_evidence(np.array([0.5, 1 / np.e, 0.05, 1e-3, 1e-30]))
    assert ev[0] == 0 and ev[1] == pytest.approx(0, abs=1e-9)
    assert ev[2] == pytest.approx(-np.log(-np.e * 0.05 * np.log(0.05)))  # Bayes factor <= 2.46
    assert np.all(np.diff(ev) >= 0) and ev[-1] == 5.0


def test_presence_rates_from_tracks() -> None:
    n = np.array([40, 40, 40] + [1] * 300)
    span = np.array([40, 44, 44] + [1] * 300)
    r = presence_rates(n, span, movie_frames=48, area_px2=96 * 96, radius_px=5.0)
    assert r.q_real == pytest.approx(120 / 128)
    assert r.noise_density_per_px2 == pytest.approx(300 / (48 * 96 * 96))
    assert r.q_noise == pytest.approx(1 - np.exp(-r.noise_density_per_px2 * np.pi * 25))


def test_dense_noisy_frames_link_without_oversize_subnets() -> None:
    """Hundreds of noise blobs per frame within the link radius of each other (a smoke-size
    movie at low dose) used to stop the gather with trackpy's SubnetOversizeException."""
    from etem.analysis.tracks import TrackLinker

    rng = np.random.default_rng(0)
    linker = TrackLinker(radius_px=8.0, memory=2)
    for t in range(10):
        ids, _ = linker.update(t, rng.uniform(0, 128, (800, 2)))
        assert len(ids) == 800 and len(set(ids.tolist())) == 800


_LINK_SCRIPT = """
import numpy as np
from etem.analysis.tracks import TrackLinker
rng = np.random.default_rng(1)
base = rng.uniform(0, 96, (300, 2))
linker = TrackLinker(radius_px=6.0, memory=2)
out = []
for t in range(8):
    keep = rng.random(len(base)) < 0.8
    xy = np.vstack([base[keep] + rng.normal(0, 0.5, (keep.sum(), 2)),
                    rng.uniform(0, 96, (60, 2))])
    out += linker.update(t, xy)[0].tolist()
print(",".join(map(str, out)))
"""


def test_track_ids_are_the_same_in_every_process() -> None:
    """Track ids are numbered in order of first detection, not by trackpy's set order
    (which follows object addresses and differed between two runs of one campaign)."""
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", _LINK_SCRIPT], capture_output=True,
                           text=True, check=True).stdout for _ in range(3)]
    assert runs[0] == runs[1] == runs[2] and runs[0].strip()


def test_windowed_denoiser_noise_counts_in_independent_looks() -> None:
    """A 5-frame denoising window makes its noise blobs persist ~5 frames: counted frame by
    frame they look like columns (the demo movie's false columns); counted in looks of the
    window they are noise, and real columns stay real."""
    real_n, real_span = [46] * 40 + [12] * 10, [48] * 40 + [12] * 10
    noise_n, noise_span = [5] * 300 + [4] * 200 + [2] * 30, [5] * 300 + [5] * 200 + [2] * 30
    n, span = np.array(real_n + noise_n), np.array(real_span + noise_span)
    first = np.array([0] * 40 + [36] * 10 + [20] * 530)
    tracks = pd.DataFrame({"n_frames": n, "first_frame": first, "last_frame": first + span - 1,
                           "evidence": 0.0})
    real = np.arange(len(n)) < 50
    args = (span, 48, 256 * 256, 5.0)
    per_frame = presence_rates(n, *args)
    conf1 = track_confidence(track_log_odds(tracks, 48, 2, per_frame))
    assert (conf1[~real & (n == 5)] > 0.5).all()  # the failure: 5-frame blobs kept
    looks = presence_rates(n, *args, window_frames=5)
    assert looks.q_real == pytest.approx(46 / 48)  # long = >= 5 looks = 25 detections
    assert looks.noise_density_per_px2 > 10 * per_frame.noise_density_per_px2
    conf5 = track_confidence(track_log_odds(tracks, 48, 2, looks, window_frames=5))
    assert (conf5[real] > 0.9).all() and (conf5[~real] < 0.5).all()
    # a single-frame denoiser (window 1) is the per-frame model
    same = track_log_odds(tracks, 48, 2, per_frame, window_frames=1)
    assert np.array_equal(same, track_log_odds(tracks, 48, 2, per_frame))
