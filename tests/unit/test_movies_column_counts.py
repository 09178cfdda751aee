"""The raw-count change statistic at persistent columns (``column_counts_z``)."""

from __future__ import annotations

import numpy as np
import pytest

from etem.movies.change_stats import ColumnCountsChange

PX_A = 0.2  # pixel size [Å]
DISK_A = 0.5  # column disk radius [Å] (the default columns.disk_radius_A)


def _series(
    gain: float, lost: int, step: int | None, seed: int, n_frames: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """max |z| and onset per frame of a Poisson movie of 25 columns on a 64² grid.

    Each column site gets a count rate (per pixel, within 0.5 Å = 2.5 px) of 1.5 e on a
    0.3 e/px background; from frame ``step`` on, ``lost`` columns fall to the background
    (atoms leaving). Counts are multiplied by ``gain`` (a non-counting camera).
    """
    rng = np.random.default_rng(seed)
    g = np.arange(8, 64, 12)
    xy = np.array([(x, y) for y in g for x in g], dtype=np.float64)  # (25, 2) x, y [px]
    yy, xx = np.mgrid[:64, :64]
    col_rate = np.zeros((len(xy), 64, 64))
    for i, (x, y) in enumerate(xy):
        col_rate[i] = 1.5 * ((xx - x) ** 2 + (yy - y) ** 2 <= 2.5**2)
    stat = ColumnCountsChange(6, 8, max(DISK_A / PX_A, 1.0))  # k = 6, m = 8 frames
    z, onset = [], []
    for t in range(n_frames):
        keep = np.ones(len(xy), bool)
        if step is not None and t >= step:
            keep[:lost] = False
        lam = 0.3 + col_rate[keep].sum(axis=0)
        counts = gain * rng.poisson(lam).astype(np.float32)
        found = keep | (rng.random(len(xy)) < 0.3)  # detection flicker does not matter
        ids = np.flatnonzero(found)
        zt, ot = stat.update(t, counts, ids, xy[found] + rng.normal(0, 0.2, (len(ids), 2)))
        z.append(zt)
        onset.append(ot)
    return np.array(z), np.array(onset)


@pytest.mark.parametrize("gain", [1.0, 3.0])
def test_stable_movie_stays_in_the_poisson_null(gain: float) -> None:
    z, _ = _series(gain, lost=0, step=None, seed=1)
    k_m = 6 + 8
    assert np.isnan(z[: k_m - 1]).all() and np.isfinite(z[k_m - 1 :]).all()
    # 25 sites: P(max |z| > 4.5) per frame ~ 25 x 7e-6; the Fano factor absorbs the gain
    assert z[k_m - 1 :].max() < 4.5


def test_columns_losing_atoms_raise_z_and_locate_the_change() -> None:
    z, onset = _series(1.0, lost=2, step=24, seed=2)
    assert z[18:24].max() < 4.5  # before the change
    assert z[29] > 6.0  # k = 6 frames after the change: full window
    assert abs(onset[29] - 24) <= 1
