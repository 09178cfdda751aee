"""The fast column finder equals scikit-image's blob_log and a per-column refinement loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from etem.analysis.columns import blob_log_fft, find_columns, log_stack, refine_columns
from tests.evaluation_fixtures import lattice_image

PX = 0.2


def _noisy(size: int = 96, noise: float = 0.2, seed: int = 0) -> np.ndarray:
    clean, _, _ = lattice_image(size, PX, offset_px=0.3)
    img = clean + np.random.default_rng(seed).normal(0, noise, clean.shape)
    return (img - img.min()) / np.ptp(img)


def test_log_stack_equals_ndimage_gaussian_laplace() -> None:
    img = _noisy(70)
    sig = np.linspace(1.5, 6.0, 4)
    cube = log_stack(img, sig)
    ref = np.stack([-ndimage.gaussian_laplace(img, s) * s**2 for s in sig])
    assert cube.dtype == np.float32
    assert np.abs(cube - ref).max() < 1e-6 * np.abs(ref).max()


@pytest.mark.parametrize(("smin", "smax", "num", "border"), [(1.5, 6.0, 5, 0), (1.5, 3.0, 3, 4)])
def test_blob_log_fft_equals_skimage(smin: float, smax: float, num: int, border: int) -> None:
    from skimage.feature import blob_log

    for seed, noise in ((0, 0.2), (1, 0.5)):
        img = _noisy(96, noise, seed)
        ref = blob_log(img, smin, smax, num, 0.05, exclude_border=border or False)
        got = blob_log_fft(img, smin, smax, num, 0.05, border)
        assert len(ref) > 20
        assert got.shape == ref.shape and np.array_equal(got, ref)  # same blobs, same order


def _centroid_reference(img: np.ndarray, r: float, c: float, s: float) -> tuple[float, float]:
    """Straightforward per-column loop (the documented centroid algorithm)."""
    half = max(int(np.ceil(3 * s)), 2)
    r0, c0 = round(r), round(c)
    h, w = img.shape
    sl = (slice(max(r0 - half, 0), min(r0 + half + 1, h)),
          slice(max(c0 - half, 0), min(c0 + half + 1, w)))
    win = img[sl]
    rr, cc = np.mgrid[sl[0], sl[1]].astype(float)
    d2 = (rr - r) ** 2 + (cc - c) ** 2
    ring = (d2 >= (2 * s) ** 2) & (d2 <= (3 * s) ** 2)
    bg = np.median(win[ring]) if ring.sum() >= 4 else np.percentile(win, 10)
    for _ in range(10):
        w = np.clip(win - bg, 0, None) * (((rr - r) ** 2 + (cc - c) ** 2) <= (2 * s) ** 2)
        rn, cn = (w * rr).sum() / w.sum(), (w * cc).sum() / w.sum()
        if abs(rn - r) > s or abs(cn - c) > s:
            break
        done = abs(rn - r) < 1e-3 and abs(cn - c) < 1e-3
        r, c = rn, cn
        if done:
            break
    return r, c


def test_vectorised_centroid_equals_per_column_loop() -> None:
    img = _noisy(96, 0.3, 2)
    blobs = blob_log_fft(img, 1.5, 3.0, 3, 0.05)
    got = refine_columns(img, blobs, "centroid")
    ref = np.array([_centroid_reference(img, r, c, s) for r, c, s in blobs])
    assert np.abs(got[:, :2] - ref).max() < 1e-9
    assert np.array_equal(got[:, 2], blobs[:, 2])
    # columns at the image edge (clipped windows) are refined too
    assert (blobs[:, 0] < 3).any() or (blobs[:, 1] < 3).any()


def test_gaussian_fit_on_noisy_lattice_is_accurate_and_falls_back() -> None:
    clean, _, pos = lattice_image(96, PX, offset_px=0.3, sigma_A=0.4, amplitude=2.0)
    img = clean + np.random.default_rng(4).normal(0, 0.05, clean.shape)
    found = find_columns(img, PX, 0.3, 0.6, 0.05, refine="gaussian")
    inner = found[(found["x_px"] > 8) & (found["x_px"] < 88) & (found["y_px"] > 8)
                  & (found["y_px"] < 88)]
    assert len(inner) >= 16
    d = np.hypot(inner["x_px"].to_numpy()[:, None] - pos[:, 0],
                 inner["y_px"].to_numpy()[:, None] - pos[:, 1]).min(axis=1)
    assert d.max() < 0.1  # px
    assert np.allclose(inner["sigma_A"], 0.4, atol=0.02)
    # a blob whose window has no positive amplitude cannot be fitted: centroid fallback
    flat = np.ones((32, 32))
    out = refine_columns(flat, np.array([[16.0, 16.0, 2.0]]), "gaussian")
    assert np.allclose(out[0, :3], [16.0, 16.0, 2.0])
