"""uMSE (Morales et al.) agrees with the true MSE on simulated data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from etem.analysis.umse import quartets, umse, umse_frames, upsnr
from etem.errors import InputError


def _clean(size: int = 192, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    rr, cc = np.mgrid[:size, :size]
    img = np.full((size, size), 4.0)
    for _ in range(30):
        x, y = g.uniform(0, size, 2)
        img += 6 * np.exp(-((rr - y) ** 2 + (cc - x) ** 2) / (2 * 5.0**2))
    return img


@pytest.mark.parametrize("sigma", [0.8, 2.0])
def test_umse_from_one_frame_matches_true_mse(sigma):
    g = np.random.default_rng(3)
    clean = _clean()
    frame = g.poisson(clean).astype(float)

    def f(z):
        return gaussian_filter(z, sigma)

    r = umse(f, frame)
    qc, qn = quartets(clean), quartets(frame)
    true = np.mean([np.mean((qc[(i + 1) % 4] - f(qn[i])) ** 2) for i in range(4)])
    assert abs(r.umse - true) <= 3 * r.se
    assert r.se < 0.5 * true or r.se < 0.1


def test_umse_from_static_frames_matches_true_mse_and_ranks_denoisers():
    g = np.random.default_rng(4)
    clean = _clean(128)
    frames = g.poisson(clean, size=(8, 128, 128)).astype(float)
    res = {}
    for s in (0.5, 1.5, 4.0):
        def f(z, s=s):
            return gaussian_filter(z, s)

        r = umse_frames(f, frames)
        true = np.mean([np.mean((clean - f(fr)) ** 2) for fr in frames])
        assert abs(r.umse - true) <= 3 * r.se + 1e-9
        res[s] = (r.umse, true)
    # identity "denoiser": uMSE = noise variance = mean intensity (Poisson)
    r0 = umse_frames(lambda z: z, frames)
    assert r0.umse == pytest.approx(clean.mean(), rel=0.05)
    assert np.argmin([v[0] for v in res.values()]) == np.argmin([v[1] for v in res.values()])
    assert upsnr(r0.umse, 10.0) == pytest.approx(10 * np.log10(100 / r0.umse))
    assert np.isnan(upsnr(-1.0, 1.0))


def test_umse_bad_input():
    with pytest.raises(InputError):
        umse(lambda z: z, np.ones((2, 2)))
    with pytest.raises(InputError):
        umse_frames(lambda z: z, np.ones((3, 8, 8)))
    with pytest.raises(InputError):
        umse(lambda z: z[:-1], np.ones((8, 8)))
