"""The fast inference path (bf16 weights, channels-last, tiles) matches the float32 network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from etem.models.factory import build_model
from etem.models.inference import TiledRunner, denoise_images, low_precision_module
from etem.models.io import LoadedModel


def _denoiser(residual: bool = True) -> torch.nn.Module:
    torch.manual_seed(3)
    net = build_model({"kind": "denoiser", "depth": 2, "base_channels": 8, "residual": residual})
    with torch.no_grad():  # larger weights than the default init: a non-trivial correction
        for p in net.parameters():
            p.mul_(1.5)
    return net.eval()


def _counts(n: int = 2, size: int = 64, dose: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    clean = 1.0 + np.cos(2 * np.pi * xx / 9.0) ** 2 * np.cos(2 * np.pi * yy / 9.0) ** 2
    return rng.poisson(clean * dose, (n, size, size)).astype(np.float32) / dose


def _fp32(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("tile", [64, 32])
def test_bf16_tiled_runner_matches_float32(tile: int) -> None:
    net = _denoiser()
    x = _counts()[:, None]
    ref = _fp32(net, x)
    runner = TiledRunner(
        LoadedModel(net, {"kind": "denoiser"}), tile_px=tile, overlap_px=16, precision="bf16"
    )
    out = runner.run(x)
    corr = np.abs(ref - x).max()  # size of the network's correction to its input
    assert corr > 0.1
    err = np.abs(out - ref)
    # bf16 carries ~3 significant digits through ~10 layers: about 1 % of the correction
    assert err.max() < 0.03 * corr
    assert err.mean() < 0.005 * corr
    # the caller's network is untouched (still float32, same outputs)
    assert next(net.parameters()).dtype == torch.float32
    assert np.array_equal(_fp32(net, x), ref)


def test_residual_skip_is_added_in_float32() -> None:
    """Inputs far from bf16-representable values keep float32 resolution in the output."""
    net = _denoiser()
    x = (_counts(1)[:, None] + 100.3).astype(np.float32)  # bf16 spacing at 100 is 0.5
    ref = _fp32(net, x)
    out = TiledRunner(LoadedModel(net, {"kind": "denoiser"}), 64, 0, precision="bf16").run(x)
    corr = np.abs(ref - x).max()
    assert np.abs(out - ref).max() < 0.05 * max(corr, 1.0)
    assert np.abs(out - ref).max() < 0.1  # a bf16 skip would round 100.3 by up to 0.25


def test_non_residual_network_and_predict_helpers_match_float32() -> None:
    net = _denoiser(residual=False)
    x = _counts()[:, None]
    ref = _fp32(net, x)
    fast = low_precision_module(net, torch.bfloat16, "cpu")
    with torch.inference_mode():
        out = fast(torch.from_numpy(x)).numpy()
    assert out.dtype == np.float32
    scale = np.abs(ref).max()
    assert np.abs(out - ref).max() < 0.03 * scale
    # denoise_images: bf16 (amp=True) vs float32 (amp=False) on counts [e/px]
    counts = _counts() * 2.0
    a = denoise_images(net, counts, 2.0, amp=True, match=False)
    b = denoise_images(net, counts, 2.0, amp=False, match=False)
    assert np.abs(a - b).max() < 0.03 * np.abs(b).max()
    # float32 path equals the module itself
    assert np.allclose(b[:, None], _fp32(net, x), atol=1e-5)


def test_batches_respect_the_pixel_budget_and_do_not_change_the_result() -> None:
    net = _denoiser()
    x = _counts(3)[:, None]
    lm = LoadedModel(net, {"kind": "denoiser"})
    free = TiledRunner(lm, 64, 0, batch_size=4, precision="fp32")
    capped = TiledRunner(lm, 64, 0, batch_size=4, precision="fp32", max_batch_px=2 * 64 * 64)
    sizes: list[int] = []
    fwd = capped.forward

    def record(batch: np.ndarray, post: object = None) -> np.ndarray:
        sizes.append(len(batch))
        return fwd(batch, post)  # type: ignore[arg-type]

    capped.forward = record  # type: ignore[method-assign]
    assert np.allclose(capped.run(x), free.run(x), atol=1e-5)
    assert sizes == [2, 1]
