"""Count-conserving resampling of frames by any pixel-size ratio (apply's non-integer path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from etem.config import load_config
from etem.errors import InputError
from etem.frames import preprocess
from etem.frames.geometry import aligned_frames, frame_stream, reprocess_frame, resolve_geometry
from etem.frames.preprocess import bin_frames, resample_by_overlap, resampled_size
from etem.frames.readers import open_movie
from tests.movies_fixtures import write_movie_file

#: SCATTER_PER_DRAW values forcing each of resample_by_overlap' two (equally distributed) ways
WAYS = {"split": 0.0, "scatter": float("inf")}


@pytest.fixture(params=list(WAYS))
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with counts split row/column by binomials, and placed one by one."""
    monkeypatch.setattr(preprocess, "SCATTER_PER_DRAW", WAYS[request.param])
    return str(request.param)


def _overlap(n_in: int, ratio: float) -> np.ndarray:
    """(n_out, n_in) length of input pixel [i, i+1) inside output pixel [a r, (a+1) r)."""
    a = np.arange(resampled_size(n_in, ratio))[:, None]
    i = np.arange(n_in)[None, :]
    return np.clip(np.minimum(i + 1, (a + 1) * ratio) - np.maximum(i, a * ratio), 0, None)


def _box_mean(lam: np.ndarray, ratio: float) -> np.ndarray:
    """The pixel-wise constant image ``lam`` integrated over the output pixels."""
    return _overlap(lam.shape[0], ratio) @ lam @ _overlap(lam.shape[1], ratio).T


@pytest.mark.parametrize(("ratio", "n_in", "n_out"), [(1.375, 110, 80), (0.8, 80, 100),
                                                      (2.5, 100, 40), (0.3125, 25, 80)])
@pytest.mark.parametrize("dose", [0.7, 30.0])
def test_counts_conserved_exactly(way: str, ratio: float, n_in: int, n_out: int,
                                  dose: float) -> None:
    a = np.random.default_rng(0).poisson(dose, (n_in, n_in + 11)).astype(np.float32)
    b = resample_by_overlap(a, ratio, seed=3, t=5)
    n_x = resampled_size(n_in + 11, ratio)
    assert b.shape == (n_out, n_x) and b.dtype == np.float32
    assert np.all(b == np.rint(b)) and np.all(b >= 0)
    # rows tile exactly; along x the partial last output pixel is cropped, and its counts
    edge = n_x * ratio
    assert a[:, : int(np.floor(edge + 1e-9))].sum() <= b.sum() <= a[:, : int(np.ceil(edge))].sum()
    square = resample_by_overlap(a[:, :n_in], ratio, seed=3, t=5)
    assert square.shape == (n_out, n_out) and square.sum() == a[:, :n_in].sum()


def test_integer_ratio_is_binning(way: str) -> None:
    """At an integer ratio the overlaps are whole pixels: exactly bin_frames."""
    a = np.random.default_rng(1).poisson(3.0, (60, 45)).astype(np.float32)
    np.testing.assert_array_equal(resample_by_overlap(a, 3.0, seed=0, t=0),
                                  bin_frames(a[None], 3)[0])


@pytest.mark.parametrize("ratio", [1.37, 0.73])
def test_mean_is_the_box_integrated_mean(way: str, ratio: float) -> None:
    n, reps = 48, 200
    y, x = np.mgrid[:n, :n] + 0.5
    lam = 2.0 + 1.5 * np.sin(2 * np.pi * x / 9.3) * np.cos(2 * np.pi * y / 7.1)
    g = np.random.default_rng(4)
    mean = np.mean([resample_by_overlap(g.poisson(lam).astype(np.float32), ratio, 9, t)
                    for t in range(reps)], axis=0)
    want = _box_mean(lam, ratio)
    z = (mean - want) / np.sqrt(want / reps)
    assert abs(z.mean()) < 0.1 and z.std() == pytest.approx(1.0, abs=0.1)
    assert np.abs(z).max() < 5
    # gain-normalised (non-integer) frames: spread by the same fractions, no noise
    np.testing.assert_allclose(resample_by_overlap(lam, ratio, 9, 0), want, rtol=1e-5)


@pytest.mark.parametrize("ratio", [1.37, 0.73])
@pytest.mark.parametrize("dose", [0.5, 20.0])
def test_poisson_statistics_kept(way: str, ratio: float, dose: float) -> None:
    """Poisson input gives independent Poisson pixels of mean dose r²: variance = mean, and
    neighbours uncorrelated (unlike interpolation)."""
    a = np.random.default_rng(5).poisson(dose, (300, 300)).astype(np.float32)
    b = resample_by_overlap(a, ratio, seed=1, t=2).astype(np.float64)
    assert b.mean() == pytest.approx(dose * ratio**2, rel=0.01)
    assert b.var() / b.mean() == pytest.approx(1.0, abs=0.04)
    for nb in (b[:, 1:], b[1:, :]):
        c = np.corrcoef(nb.ravel(), b[: nb.shape[0], : nb.shape[1]].ravel())[0, 1]
        assert abs(c) < 0.03


def test_seeded_per_frame() -> None:
    for dose in (0.5, 20.0):  # both ways resample_by_overlap picks
        a = np.random.default_rng(6).poisson(dose, (64, 64)).astype(np.float32)
        b = resample_by_overlap(a, 1.37, seed=2, t=7)
        np.testing.assert_array_equal(b, resample_by_overlap(a, 1.37, seed=2, t=7))
        assert not np.array_equal(b, resample_by_overlap(a, 1.37, seed=2, t=8))
        assert not np.array_equal(b, resample_by_overlap(a, 1.37, seed=3, t=7))


@pytest.mark.parametrize(("ratio", "n_in", "cycles"), [(1.37, 411, 30), (0.73, 219, 25)])
def test_lattice_period_scales_by_the_ratio(way: str, ratio: float, n_in: int,
                                            cycles: int) -> None:
    """A lattice of period P raw pixels has period P / r output pixels (FFT peak)."""
    period = n_in / cycles  # raw px: 13.7 and 8.76; output: 10 and 12 px
    y, x = np.mgrid[:n_in, :n_in] + 0.5
    lam = 3.0 * (1 + 0.8 * np.cos(2 * np.pi * x / period) * np.cos(2 * np.pi * y / period))
    b = resample_by_overlap(np.random.default_rng(7).poisson(lam).astype(np.float32), ratio, 0, 0)
    assert b.shape == (300, 300)
    spec = np.abs(np.fft.rfft2(b - b.mean()))
    ky, kx = np.unravel_index(int(np.argmax(spec[: 150])), spec[:150].shape)
    assert (ky, kx) == (cycles, cycles)
    assert 300 / kx == pytest.approx(period / ratio)


def _settings(**over: object) -> object:
    return load_config(None, {f"apply.preprocess.{k}": v for k, v in over.items()}).apply.preprocess


def test_geometry_resamples_a_non_integer_ratio(tmp_path: Path) -> None:
    g = np.random.default_rng(8)
    movie = open_movie(write_movie_file("hdf5", tmp_path, g.poisson(
        1.0, (6, 100, 90)).astype(np.uint16), 0.1))
    geo = resolve_geometry(movie, _settings(), [0.137], seed=4)
    assert geo.resample == pytest.approx(1.37) and geo.pixel_size_A == pytest.approx(0.137)
    assert (geo.height, geo.width) == (resampled_size(100, 1.37), resampled_size(90, 1.37))
    assert geo.raw_pixel_size_A == pytest.approx(0.1)
    assert geo.processed_dose(1.0) == pytest.approx(1.37**2)
    assert geo.scale == pytest.approx(1.37)
    assert any("resampled" in n and "Poisson statistics kept" in n for n in geo.notes)
    # the stream, a shard's frame range and a single reprocessed frame give the same counts
    plain = _settings(drift_correction=False)
    streamed = [fr for _, fr, _ in frame_stream(movie, geo, plain, chunk_frames=4)]
    frames = movie.read(0, 6)
    for t in range(6):
        np.testing.assert_array_equal(
            streamed[t], resample_by_overlap(frames[t], geo.resample, geo.seed, t))
    zero = np.zeros((geo.n_frames, 2))
    for t, fr in aligned_frames(movie, geo, 2, zero, 3, 6):
        np.testing.assert_array_equal(fr, streamed[t])
        np.testing.assert_array_equal(fr, reprocess_frame(movie, t, geo, zero))
    # with binning as well: 2x2 then 1.37
    geo2 = resolve_geometry(movie, _settings(bin_factor=2), [0.274], seed=4)
    assert geo2.bin_total == 2 and geo2.resample == pytest.approx(1.37)
    assert geo2.raw_pixel_size_A == pytest.approx(0.1)
    assert geo2.processed_dose(1.0) == pytest.approx(4 * 1.37**2)


def test_geometry_notes_non_integer_frames_and_refuses_too_coarse(tmp_path: Path) -> None:
    frames = np.random.default_rng(9).gamma(2.0, 0.5, (4, 64, 64)).astype(np.float32)
    movie = open_movie(write_movie_file("hdf5", tmp_path, frames, 0.1))
    geo = resolve_geometry(movie, _settings(), [0.073], seed=0)
    assert geo.resample == pytest.approx(0.73)
    assert any("not integer counts" in n and "not kept" in n for n in geo.notes)
    with pytest.raises(InputError, match="more than 4x coarser"):
        resolve_geometry(movie, _settings(), [0.021], seed=0)
    with pytest.raises(InputError, match="refuse"):
        resolve_geometry(movie, _settings(pixel_size_mismatch="refuse"), [0.137], seed=0)
    # integer ratios keep their paths (binning, split_counts)
    geo = resolve_geometry(movie, _settings(), [0.2], seed=0)
    assert (geo.bin_total, geo.upsample, geo.resample) == (2, 1, 1.0)
    geo = resolve_geometry(movie, _settings(), [0.05], seed=0)
    assert (geo.bin_total, geo.upsample, geo.resample) == (1, 2, 1.0)
