"""The faster analysis after the network gives the results of the previous code.

References: the previous implementations (``np.stack`` of the window in float64, cumulative
sums, ``scipy.ndimage.shift``), kept here verbatim in their arithmetic.
"""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
from scipy import ndimage

from etem.analysis.tracks import TrackLinker
from etem.movies.change_stats import ImageChange, LocalChange, bilinear_shift


def _old_shift(x: np.ndarray, frac: np.ndarray) -> np.ndarray:
    if np.any(frac != 0):
        return np.asarray(ndimage.shift(x, -np.asarray(frac, float), order=1, mode="nearest"))
    return x


def _old_local(recent: list[np.ndarray], k: int, m: int, noise_sigma: float, t: int):
    buf = np.stack(recent).astype(np.float64)
    n = len(buf)
    cs = np.cumsum(buf, axis=0)
    n1 = n - k
    m1, m2 = cs[n1 - 1] / n1, (cs[-1] - cs[n1 - 1]) / k
    ss = ((buf[:n1] - m1) ** 2).sum(axis=0) + ((buf[n1:] - m2) ** 2).sum(axis=0)
    var = ndimage.gaussian_filter(ss / (n - 2), noise_sigma)
    inv_sd = 1.0 / np.sqrt(np.maximum(var, 1e-30))
    stat = float((np.abs(m2 - m1) * inv_sd).max()) / math.sqrt(1 / n1 + 1 / k)
    cs2, inv2 = cs[:, ::2, ::2], inv_sd[::2, ::2]

    def zmax(n2: int) -> float:
        j = n - n2
        d = (cs2[-1] - cs2[j - 1]) / n2 - cs2[j - 1] / j
        return float((np.abs(d) * inv2).max()) / math.sqrt(1 / j + 1 / n2)

    splits = {n2: zmax(n2) for n2 in range(2, n - 1)}
    best = max(splits, key=splits.__getitem__)
    return stat, float(t - best + 1)


def _frames(n: int = 20, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A lattice whose columns fade from frame 12 on, plus noise; sub-pixel drift remainders."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    lattice = np.cos(2 * np.pi * xx / 8.0) * np.cos(2 * np.pi * yy / 8.0)
    out = []
    for t in range(n):
        amp = np.where((t >= 12) & (xx > size // 2), 0.5, 1.0)
        out.append(1.0 + 0.3 * amp * lattice + rng.normal(0, 0.05, (size, size)))
    frac = rng.uniform(-0.5, 0.5, (n, 2))
    frac[3] = 0.0  # a frame without remainder
    frac[5, 1] = 0.0  # one axis only
    return np.asarray(out, dtype=np.float32), frac


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bilinear_shift_equals_ndimage_shift(dtype: type) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((57, 64)).astype(dtype)
    tol = 1e-12 if dtype is np.float64 else 2e-7
    for s in [(0.3, -0.2), (-0.5, 0.5), (0.0, 0.49), (0.17, 0.0), (-0.01, -0.44), (1.7, -2.2)]:
        ref = ndimage.shift(x, s, order=1, mode="nearest")
        got = bilinear_shift(x, np.array(s))
        assert got.dtype == ref.dtype
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol)


def test_local_change_equals_the_stacked_computation() -> None:
    frames, frac = _frames()
    k, m, sigma, noise = 3, 5, 1.5, 4.0
    lc = LocalChange(k, m, sigma, noise, len(frames))
    recent: list[np.ndarray] = []
    n_defined = 0
    for t, (fr, f) in enumerate(zip(frames, frac, strict=True)):
        got = lc.update(t, fr, f)
        x = _old_shift(ndimage.gaussian_filter(fr.astype(np.float32), sigma), f)
        recent = [*recent, x][-(k + m) :]
        if len(recent) < k + m:
            assert np.isnan(got[0]) and np.isnan(got[1])
            continue
        ref = _old_local(recent, k, m, noise, t)
        assert got[0] == pytest.approx(ref[0], rel=1e-9)
        assert got[1] == ref[1]
        n_defined += 1
    assert n_defined == len(frames) - (k + m) + 1


def test_image_change_equals_the_stacked_computation() -> None:
    frames, frac = _frames(seed=2)
    k, m, smooth = 3, 5, 1.0
    ic = ImageChange(k, m, smooth, len(frames))
    recent: list[np.ndarray] = []
    for t, (fr, f) in enumerate(zip(frames, frac, strict=True)):
        got = ic.update(t, fr, f)
        x = _old_shift(ndimage.gaussian_filter(fr.astype(np.float64), smooth), f)
        recent = [*recent, x][-(k + m) :]
        if len(recent) < k + m:
            assert np.isnan(got)
            continue
        old = np.mean(recent[:m], axis=0)
        new = np.mean(recent[m:], axis=0)
        diff = new - old
        ref = math.sqrt(
            float(np.mean((diff - diff.mean()) ** 2)) / float(np.mean((old - old.mean()) ** 2))
        )
        assert got == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("enabled", [True, False])
def test_linking_restores_the_garbage_collector_state(enabled: bool) -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (50, 2))
    linker = TrackLinker(radius_px=2.0, memory=1)
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        for t in range(3):
            ids, _ = linker.update(t, xy + rng.normal(0, 0.1, xy.shape))
            assert gc.isenabled() is enabled
        assert np.array_equal(ids, np.arange(50))  # every column continued its own track
    finally:
        if was:
            gc.enable()


def test_column_store_buffers_rows_and_reads_them_back(tmp_path, monkeypatch) -> None:
    """Buffered appends give the datasets, offsets and tables of per-frame writes."""
    import h5py
    import pandas as pd

    from etem.movies.outputs import ColumnStore

    monkeypatch.setattr(ColumnStore, "BUFFER_ROWS", 7)
    rng = np.random.default_rng(4)
    frames = [
        pd.DataFrame({"frame": np.full(k, t), "track_id": np.arange(k), "x_px": rng.random(k)})
        for t, k in enumerate([3, 0, 5, 4, 9, 0, 2])
    ]
    with h5py.File(tmp_path / "c.h5", "w") as h5:
        store = ColumnStore(h5, len(frames))
        for t, df in enumerate(frames):
            store.append(t, df)
            if t == 3:  # a read while rows are buffered sees every row appended so far
                assert h5["columns/x_px"].shape[0] == 8 < store.n == 12  # 4 rows buffered
                pd.testing.assert_frame_equal(store.frame(3), frames[3], check_dtype=False)
        store.finish()
        allrows = pd.concat([f for f in frames if len(f)], ignore_index=True)
        got = pd.DataFrame({k: h5["columns"][k][()] for k in ("frame", "track_id", "x_px")})
        pd.testing.assert_frame_equal(got, allrows, check_dtype=False)
        assert h5["columns/frame_offsets"][()].tolist() == [0, 3, 3, 8, 12, 21, 21, 23]
        pd.testing.assert_frame_equal(store.frame(4), frames[4], check_dtype=False)


def test_column_store_frames_reads_a_frame_range(tmp_path) -> None:
    """ColumnStore.frames(a, b): the rows of frames a..b-1 (the truth scoring's blocks)."""
    import h5py
    import pandas as pd

    from etem.movies.outputs import ColumnStore

    frames = [pd.DataFrame({"frame": np.full(k, t), "x_px": np.arange(k) + 0.5 * t,
                            "y_px": np.zeros(k)}) for t, k in enumerate([2, 0, 3, 1])]
    with h5py.File(tmp_path / "c.h5", "w") as h5:
        store = ColumnStore(h5, len(frames))
        for t, df in enumerate(frames):
            store.append(t, df)
        want = pd.concat(frames[1:3], ignore_index=True)
        pd.testing.assert_frame_equal(store.frames(1, 3), want, check_dtype=False)
        assert len(store.frames(1, 2)) == 0 and list(store.frames(1, 2)) == ["frame", "x_px",
                                                                              "y_px"]


def test_track_confidence_in_blocks_equals_one_block(tmp_path) -> None:
    """TrackStore.confidence reading the track table in small blocks (bounded memory)
    writes and returns exactly what one block gives, and the presence rates of the whole
    table."""
    import h5py
    import pandas as pd

    from etem.analysis.tracks import TRACK_FIELDS, presence_rates
    from etem.movies.outputs import TrackStore

    rng = np.random.default_rng(5)
    k = 257
    first = rng.integers(0, 90, k)
    n = np.where(rng.random(k) < 0.3, rng.integers(5, 40, k), rng.integers(1, 3, k))
    tracks = pd.DataFrame({
        "track_id": rng.permutation(k + 3)[:k], "first_frame": first,
        "last_frame": first + n + rng.integers(0, 3, k), "n_frames": n,
        "evidence": rng.random(k), "x_px": rng.random(k), "y_px": rng.random(k),
    })[list(TRACK_FIELDS)]
    out = {}
    for rows in (10, 10_000):
        with h5py.File(tmp_path / f"t{rows}.h5", "w") as h5:
            store = TrackStore(h5)
            store.append(tracks.iloc[:100])
            store.append(tracks.iloc[100:])
            by_id, rates = store.confidence(k + 3, 100, 2, 64 * 64, 3.0, rows=rows)
            out[rows] = (by_id, rates, h5["tracks/log_odds"][()], h5["tracks/confidence"][()])
    (b1, r1, lo1, c1), (b2, r2, lo2, c2) = out[10], out[10_000]
    assert r1 == r2 and np.array_equal(b1, b2) and np.array_equal(lo1, lo2)
    assert np.array_equal(c1, c2) and len(b1) == k + 3
    span = tracks["last_frame"] - tracks["first_frame"] + 1
    assert r1 == presence_rates(tracks["n_frames"], span, 100, 64 * 64, 3.0)
