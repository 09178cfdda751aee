"""Ground-truth scoring of apply runs (etem.movies.truth): exact figures on small tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest

from etem.config.apply import TruthConfig
from etem.movies import truth as truth_mod
from etem.movies.truth import (
    ColumnScorer,
    column_Z,
    found_in_raw_frame,
    metrics,
    persistent_column_ids,
    score_apply,
    score_columns,
    score_events,
)
from etem.simulation import movie_truth
from etem.simulation.contract import MOVIE_COLUMN_COLUMNS, MOVIE_COLUMN_STRINGS
from etem.simulation.movie_truth import iter_truth_columns, read_movie_truth


def _truth() -> pd.DataFrame:
    """Two frames, four columns each: Ce (6 atoms), O (6), Pt (1) and Pt (3) [Å]."""
    rows = []
    for t in (0, 1):
        for cid, (x, y, el, site, n) in enumerate(
            [
                (5.0, 5.0, "Ce", "cation", 6),
                (7.0, 5.0, "O", "anion", 6),
                (5.0, 8.0, "Pt", "metal", 1),
                (8.0, 8.0, "Pt", "metal", 3),
            ]
        ):
            rows.append(
                {"frame": t, "column_id": cid, "x_A": x, "y_A": y, "element": el, "site": site,
                 "n_atoms": n, "n_sites": n, "occupancy": 1.0}
            )
    return pd.DataFrame(rows)


def test_column_Z_and_visibility() -> None:
    z = column_Z(_truth().iloc[:4])
    assert z.tolist() == [6 * 58, 6 * 8, 78, 3 * 78]
    assert np.isinf(column_Z(pd.DataFrame({"element": [""], "n_atoms": [1]})))[0]


def test_score_columns_exact() -> None:
    truth = _truth()
    found = pd.DataFrame(
        {
            "frame": [0, 0, 0, 0, 1],
            # frame 0: Ce off by 0.3 Å, O found, Pt(3) found exactly, one false column
            "x_A": [5.3, 7.0, 8.0, 2.0, 5.0],
            "y_A": [5.0, 5.0, 8.0, 2.0, 5.0],
        }
    )
    table, overall = score_columns(
        found, truth, [(0, 0), (1, 1)], (12.0, 12.0), 0.5, 150.0, 1.0
    )
    # visible: Ce and Pt(3) (n_atoms x Z >= 150); O and the single Pt are not
    assert table["n_visible"].tolist() == [2, 2]
    assert table["recall"].tolist() == [1.0, 0.5]
    assert table["precision"].tolist() == [0.75, 1.0]  # the O match counts as correct
    assert overall["recall"] == pytest.approx(3 / 4)
    assert overall["precision"] == pytest.approx(4 / 5)
    assert overall["rmse_A"] == pytest.approx(np.sqrt(0.3**2 / 3))
    assert overall["recall_by_site"]["anion"] == pytest.approx(0.5)
    # a frame without detections counts with recall 0
    t2, o2 = score_columns(found[found["frame"] == 0], truth, [(0, 0), (1, 1)], (12.0, 12.0),
                           0.5, 150.0, 1.0)
    assert t2["recall"].tolist() == [1.0, 0.0] and o2["recall"] == pytest.approx(0.5)
    # the border band removes columns near the edge (the false one at 2 Å)
    _, o3 = score_columns(found, truth, [(0, 0), (1, 1)], (12.0, 12.0), 0.5, 150.0, 2.5)
    assert o3["precision"] == pytest.approx(1.0)


def _moving_truth() -> pd.DataFrame:
    """Four frames: Ce (visible) and O (not) stay; a Pt(3) column moves 0.5 Å after frame 1
    (a new column for the tracks); the stage drifts 2 px = 0.2 Å per frame along x."""
    rows = []
    for t in range(4):
        pt_x = 8.0 if t < 2 else 8.5
        for cid, (x, y, el, site, n) in enumerate(
            [(5.0, 5.0, "Ce", "cation", 6), (7.0, 5.0, "O", "anion", 6),
             (pt_x, 8.0, "Pt", "metal", 3)]
        ):
            rows.append({"frame": t, "column_id": cid, "x_A": x + 0.2 * t, "y_A": y,
                         "element": el, "site": site, "n_atoms": n, "n_sites": n,
                         "occupancy": 1.0})
    return pd.DataFrame(rows)


def test_persistent_column_ids_follow_static_columns_through_drift() -> None:
    truth = _moving_truth()
    drift = np.array([[2.0 * t, 0.0] for t in range(4)])  # (x, y) [px]
    ids = persistent_column_ids(truth, drift, 0.1)
    by = truth.assign(true_id=ids).groupby("element")["true_id"].nunique()
    assert by.to_dict() == {"Ce": 1, "O": 1, "Pt": 2}  # the moved Pt column is a new one
    # without taking the drift off, nothing is the same column from frame to frame
    assert len(set(persistent_column_ids(truth, None, None))) == 12


def test_score_columns_tracks_span_lifetimes() -> None:
    truth = _moving_truth()
    truth["true_id"] = persistent_column_ids(truth, np.array([[2.0 * t, 0] for t in range(4)]),
                                             0.1)
    ce = [(t, 5.0 + 0.2 * t, 5.0, 11 if t == 2 else 10) for t in range(4)]
    o = [(t, 7.0 + 0.2 * t, 5.0, 30) for t in range(4)]
    pt = [(0, 8.0, 8.0, 20), (1, 8.2, 8.0, 20), (2, 8.9, 8.0, 21)]  # Pt missed in frame 3
    found = pd.DataFrame(ce + o + pt, columns=["frame", "x_A", "y_A", "track_id"])
    _, overall = score_columns(found, truth, [(t, t) for t in range(4)], (12.0, 12.0), 0.3,
                               150.0, 1.0)
    tr = overall["tracks"]
    # visible matched detections: Ce 4 (own track 10 spans 0-3: 3 of them), first Pt 2 (track
    # 20 spans its frames 0-1), moved Pt 1 (track 21 spans its matched frame 2, not its
    # lifetime 2-3); the O column is not visible and not counted
    assert tr["n_columns"] == 3
    assert tr["spanning_fraction"] == pytest.approx(6 / 7)
    assert tr["spanning_fraction_lifetime"] == pytest.approx(5 / 7)
    assert tr["tracks_per_column"] == pytest.approx(4 / 3)
    assert overall["precision"] == 1.0  # the O detections match a true (invisible) column
    m = metrics({"columns": overall})
    assert m["truth_tracks_spanning_fraction_lifetime"] == pytest.approx(5 / 7)
    assert "truth_tracks_n_columns" not in m
    # without track ids there is no track block
    _, o2 = score_columns(found.drop(columns="track_id"), truth, [(t, t) for t in range(4)],
                          (12.0, 12.0), 0.3, 150.0, 1.0)
    assert "tracks" not in o2


def test_found_positions_back_in_raw_frame() -> None:
    cols = pd.DataFrame({"frame": [0, 1], "x_px": [10.0, 10.0], "y_px": [4.0, 4.0]})
    drift = np.array([[0.0, 0.0], [1.0, 2.0]])  # (dy, dx) [output px]
    # 2x2 binning: output pixel i covers raw pixels 2i, 2i + 1 (centre 2i + 0.5)
    f = found_in_raw_frame(cols, drift, 0.1, 2.0, 3)
    assert f["raw_frame"].tolist() == [0, 3]
    assert f["x_A"].tolist() == pytest.approx([20.5 * 0.1, 24.5 * 0.1])
    assert f["y_A"].tolist() == pytest.approx([8.5 * 0.1, 10.5 * 0.1])
    assert "track_id" not in f
    f2 = found_in_raw_frame(cols.assign(track_id=[4, 4]), drift, 0.1, 2.0, 3)
    assert f2["track_id"].tolist() == [4, 4]


def test_score_events_hits_misses_false_alarms() -> None:
    ev = pd.DataFrame({"onset_frame": [3, 25, 41]})
    table, s = score_events(ev, np.array([24, 40, 60]), ["surface_loss", "rotation", "x"], 2)
    assert s["n_hits"] == 2 and s["n_false_alarms"] == 1 and s["n_true"] == 3
    assert s["by_kind"] == {"surface_loss": 1, "rotation": 1, "x": None}
    assert table["false_alarm"].sum() == 1
    _, s0 = score_events(ev.iloc[:0], np.array([24]), ["surface_loss"], 2)
    assert s0["n_hits"] == 0 and s0["n_false_alarms"] == 0
    # outside the tolerance is a miss plus a false alarm
    _, s1 = score_events(pd.DataFrame({"onset_frame": [28]}), np.array([24]), ["a"], 2)
    assert s1["n_hits"] == 0 and s1["n_false_alarms"] == 1


def test_apply_commands_do_not_import_the_simulator() -> None:
    """Every apply job imports etem.movies.commands: the truth reader keeps abTEM (and its
    numba kernels, compiled at import: seconds per job) out of it."""
    code = "import sys, etem.movies.commands; print(sorted(m for m in sys.modules if 'abtem' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "[]"


def _truth_frames(n_frames: int) -> pd.DataFrame:
    """``n_frames`` frames of :func:`_truth`'s columns, jittered; the anion site only from
    frame 3 on (a site the first blocks do not see)."""
    rng = np.random.default_rng(3)
    parts = []
    for t in range(n_frames):
        df = _truth()
        df = df[df["frame"] == 0].assign(frame=t)
        if t < 3:
            df = df[df["site"] != "anion"]
        df = df.assign(x_A=df["x_A"] + rng.normal(0, 0.1, len(df)))
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def test_column_scorer_in_blocks_equals_one_pass() -> None:
    """Scoring a block of frames at a time (the apply's bounded-memory path) gives exactly
    the table and figures of scoring everything at once, also for a site first seen in a
    later block."""
    truth = _truth_frames(10)
    rng = np.random.default_rng(4)
    found = truth[["frame", "x_A", "y_A"]].sample(frac=0.8, random_state=1).sort_values(
        "frame", kind="stable")
    found = found.assign(x_A=found["x_A"] + rng.normal(0, 0.2, len(found)))
    frames = [(t, t) for t in range(11)]  # frame 10: no truth, not scored
    table, overall = score_columns(found, truth, frames, (12.0, 12.0), 0.5, 150.0, 1.0)
    scorer = ColumnScorer((12.0, 12.0), 0.5, 150.0, 1.0)
    for a in range(0, 11, 2):
        sel = frames[a : a + 2]
        lo, hi = sel[0][0], sel[-1][0] + 1
        scorer.add(found[found["frame"].between(lo, hi - 1)],
                   truth[truth["frame"].between(lo, hi - 1)], sel)
    t2, o2 = scorer.result()
    pd.testing.assert_frame_equal(table, t2)
    assert overall == o2
    assert "recall_anion" in table and table["recall_anion"].isna().sum() == 3


def test_column_scorer_tracks_in_blocks_equal_one_pass() -> None:
    """The track figures and the true columns' identities, accumulated block by block
    (identities carried across block edges), equal the one-pass figures; a block edge
    inside a column's life and a track does not split either."""
    truth = _truth_frames(12)
    drift = np.zeros((12, 2))
    truth["true_id"] = persistent_column_ids(truth, drift, 0.1)
    rng = np.random.default_rng(5)
    found = truth[["frame", "x_A", "y_A", "true_id"]].sample(frac=0.85, random_state=2)
    found = found.sort_values("frame", kind="stable").rename(columns={"true_id": "track_id"})
    # every third detection of a column from frame 6 on starts a second track
    found.loc[(found["frame"] >= 6) & (found.index % 3 == 0), "track_id"] += 100
    found = found.assign(x_A=found["x_A"] + rng.normal(0, 0.1, len(found)))
    frames = [(t, t) for t in range(12)]
    _, overall = score_columns(found, truth, frames, (12.0, 12.0), 0.5, 150.0, 1.0)
    assert 0 < overall["tracks"]["spanning_fraction_lifetime"] < 1
    scorer = ColumnScorer((12.0, 12.0), 0.5, 150.0, 1.0)
    ids = truth_mod.ColumnIdentities(drift, 0.1)
    for a in range(0, 12, 5):
        sel = frames[a : a + 5]
        lo, hi = sel[0][0], sel[-1][0]
        block = truth[truth["frame"].between(lo, hi)].drop(columns="true_id")
        block = block.assign(true_id=ids(block))
        scorer.add(found[found["frame"].between(lo, hi)], block, sel)
    _, o2 = scorer.result()
    assert o2 == overall


def _write_truth(path: Path, cols: pd.DataFrame) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["pixel_size_A"] = 0.1
        g = f.create_group("columns")
        for c in MOVIE_COLUMN_COLUMNS:
            if c in MOVIE_COLUMN_STRINGS:
                g.create_dataset(c, data=np.array(cols[c].astype(str).tolist(), dtype=object),
                                 dtype=h5py.string_dtype())
            else:
                g.create_dataset(c, data=cols[c].to_numpy())
        f.create_dataset("events", data=np.array([5]))
    return path


@pytest.mark.parametrize("ordered", [True, False])
def test_truth_columns_read_in_frame_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ordered: bool
) -> None:
    """iter_truth_columns gives, range by range, the rows of the whole table for those
    frames in file order, with blocks that cut frames apart (and for a table not in frame
    order)."""
    cols = _truth_frames(9)
    if not ordered:
        cols = cols.sample(frac=1.0, random_state=2).reset_index(drop=True)
    path = _write_truth(tmp_path / "m.h5", cols)
    monkeypatch.setattr(movie_truth, "TRUTH_BLOCK_ROWS", 5)
    whole = read_movie_truth(path)["columns"]
    meta = read_movie_truth(path, columns=False)
    assert meta["columns"] is None and meta["has_columns"]
    ranges = [(0, 2), (2, 3), (4, 8), (8, 100)]  # frame 3 skipped
    got = list(iter_truth_columns(path, ranges))
    for (lo, hi), df in zip(ranges, got, strict=True):
        want = whole[(whole["frame"] >= lo) & (whole["frame"] < hi)]
        want = want.iloc[np.argsort(want["frame"].to_numpy(), kind="stable")]
        pd.testing.assert_frame_equal(df, want.reset_index(drop=True))


def test_lattice_truth_read_in_frame_ranges(tmp_path: Path) -> None:
    from etem.testing import lattice_movie, write_h5

    path = write_h5(lattice_movie(n_frames=6, size_px=48, event_frame=None), tmp_path / "l.h5")
    whole = read_movie_truth(path)["columns"]
    got = pd.concat(list(iter_truth_columns(path, [(0, 4), (4, 2**62)])), ignore_index=True)
    want = whole.iloc[np.argsort(whole["frame"].to_numpy(), kind="stable")]
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))


def test_score_apply_reads_found_columns_in_bounded_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply's truth scoring asks for the found columns a block of frames at a time
    (never the whole movie) and scores as the one-pass score_columns does."""
    n = 10
    truth = _truth_frames(n)
    path = _write_truth(tmp_path / "m.h5", truth)
    found = truth[["frame", "x_A", "y_A"]].rename(columns={"x_A": "x_px", "y_A": "y_px"})
    found = found.assign(x_px=found["x_px"] / 0.1 - 0.5 + 0.7, y_px=found["y_px"] / 0.1)
    asked = []

    def column_frames(a: int, b: int) -> pd.DataFrame:
        asked.append((a, b))
        return found[(found["frame"] >= a) & (found["frame"] < b)]

    monkeypatch.setattr(truth_mod, "SCORE_BLOCK_FRAMES", 3)
    geo = SimpleNamespace(bin_total=1, upsample=1, scale=1.0, pixel_size_A=0.1, height=120,
                          width=120, n_frames=n, n_sum=1)
    cfg = TruthConfig()
    block, files = score_apply(path, column_frames, np.zeros((n, 2)), pd.DataFrame(
        {"onset_frame": [5]}), geo, cfg, tmp_path, {})  # type: ignore[arg-type]
    assert asked == [(0, 3), (3, 6), (6, 9), (9, 10)]
    raw = found_in_raw_frame(found, np.zeros((n, 2)), 0.1, 1.0, 1)
    _, overall = score_columns(raw, truth, [(t, t) for t in range(n)], (12.0, 12.0),
                               cfg.match_radius_A, cfg.min_column_Z, cfg.border_A)
    assert block is not None and block["columns"] == overall
    assert set(files) == {"truth_columns", "truth_events"}
