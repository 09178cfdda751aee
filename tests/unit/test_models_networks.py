"""Networks: the blind spot is blind, bias-free scaling, shapes, factory, model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from etem.config import load_config
from etem.errors import ConfigError, InputError
from etem.models.blindspot import BlindSpotDenoiser
from etem.models.factory import architecture, build_model, count_parameters, flops_per_frame
from etem.models.inference import denoise_images, denoise_movie, normalize, segment_images
from etem.models.io import load_model, save_model
from etem.models.unet import Denoiser


@pytest.mark.parametrize("depth", [1, 3])
def test_blind_spot_hides_only_the_centre_pixel_of_the_middle_frame(depth: int) -> None:
    torch.manual_seed(0)
    net = BlindSpotDenoiser(n_frames=5, depth=depth, base_channels=8)
    x = torch.randn(1, 5, 24, 24, requires_grad=True)
    net(x)[0, 0, 12, 12].backward()
    g = x.grad[0].abs()
    assert g[2, 12, 12].item() == 0.0  # exactly zero: cannot copy its own noisy pixel
    for dy, dx in [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1)]:
        assert g[2, 12 + dy, 12 + dx] > 0  # neighbours of the middle frame are seen
    for f in (0, 1, 3, 4):
        assert g[f, 12, 12] > 0  # the same pixel in the other frames is seen


def test_blind_spot_holds_for_every_pixel_and_rectangular_inputs() -> None:
    torch.manual_seed(1)
    net = BlindSpotDenoiser(n_frames=3, depth=2, base_channels=8)
    h, w = 8, 12
    # one batch element per output pixel: d out[k, i_k, j_k] / d x[k] is row k of the Jacobian
    x = torch.randn(1, 3, h, w).repeat(h * w, 1, 1, 1).requires_grad_(True)
    out = net(x)[:, 0]
    ii, jj = np.divmod(np.arange(h * w), w)
    out[np.arange(h * w), ii, jj].sum().backward()
    g = x.grad
    own = g[np.arange(h * w), 1, ii, jj]  # middle frame, same pixel
    assert torch.all(own == 0)
    assert torch.all(g[np.arange(h * w), 0, ii, jj] != 0)  # other frames, same pixel
    g[np.arange(h * w), 1, ii, jj] = 1.0
    assert (g[:, 1] != 0).double().mean() > 0.9  # the rest of the middle frame is seen


def test_bias_free_denoiser_is_scale_equivariant() -> None:
    torch.manual_seed(2)
    net = Denoiser(depth=3, base_channels=8, bias_free=True, residual=True).double().eval()
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64) + 0.5
    assert torch.allclose(net(3.0 * x), 3.0 * net(x), atol=1e-10)
    biased = Denoiser(depth=3, base_channels=8, bias_free=False).double().eval()
    torch.nn.init.constant_(biased.unet.head.bias, 0.1)
    assert not torch.allclose(biased(3.0 * x), 3.0 * biased(x), atol=1e-6)


def test_factory_builds_each_network_from_config() -> None:
    cfg = load_config({"training": {"segmenter": {"max_occupancy": 5,
                                                  "model": {"dose_conditioned": True}}}})
    seg = build_model(architecture("segmenter", cfg.training.segmenter))
    assert seg(torch.zeros(1, 2, 16, 16)).shape == (1, 4 + 2 * 5, 16, 16)
    den = build_model(architecture("denoiser", cfg.training.denoiser))
    assert den(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 16, 16)
    uns = build_model(architecture("unsupervised", cfg.training.unsupervised))
    assert uns(torch.zeros(2, 5, 16, 16)).shape == (2, 1, 16, 16)
    # the default denoiser: 4 scales, 32 -> 256 channels (Mohan et al.: 4 scales, 5.6 M)
    assert 1e6 < count_parameters(den) < 1e7


def test_flops_per_frame_counts_every_convolution_once() -> None:
    # one scale, 4 channels: 3x3 conv 1->4, 3x3 conv 4->4, 1x1 head 4->1 (2 FLOP per MAC)
    arch = {"kind": "denoiser", "depth": 1, "base_channels": 4}
    assert flops_per_frame(arch, 16) == 2 * 16 * 16 * (1 * 4 * 9 + 4 * 4 * 9 + 4 * 1)
    assert flops_per_frame(arch, 32) == 4 * flops_per_frame(arch, 16)
    # the blind-spot network: one output frame from its window of n_frames frames, the four
    # rotations of the blind branch and the other-frames U-Net all counted; as a real forward
    bs = {"kind": "unsupervised", "n_frames": 3, "depth": 2, "base_channels": 4}
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        build_model(bs)(torch.zeros(1, 3, 16, 16))
    assert flops_per_frame(bs, 16) == counter.get_total_flops() > 0
    wider = flops_per_frame({**bs, "n_frames": 5}, 16)
    assert wider > flops_per_frame(bs, 16)  # more frames in, more first-layer work
    with pytest.raises(ConfigError, match="multiple of 2"):
        flops_per_frame(bs, 15)


def test_model_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    torch.manual_seed(3)
    arch = {"kind": "denoiser", "depth": 2, "base_channels": 4, "residual": True}
    net = build_model(arch).eval()
    path = save_model(tmp_path / "m.pt", net, {"kind": "denoiser", "arch": arch,
                                               "pixel_size_A": 0.2})
    loaded, meta = load_model(path)
    assert meta["pixel_size_A"] == 0.2 and meta["kind"] == "denoiser"
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(loaded(x), net(x))
    assert not list(tmp_path.glob(".m.pt*"))  # atomic: no temporary left behind
    with pytest.raises(InputError, match="no such file"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a readable model file"):
        load_model(tmp_path / "junk.pt")
    torch.save({"format": "etem-model", "version": 1, "meta": {"arch": {**arch, "depth": 3}},
                "state_dict": net.state_dict()}, tmp_path / "wrong.pt")
    with pytest.raises(InputError, match="weights do not fit"):
        load_model(tmp_path / "wrong.pt")


def test_inference_helpers_pad_batch_and_normalise() -> None:
    torch.manual_seed(4)
    ident = Denoiser(depth=3, base_channels=4, residual=True)
    torch.nn.init.zeros_(ident.unet.head.weight)
    torch.nn.init.zeros_(ident.unet.head.bias)  # residual with zero correction = identity
    counts = np.random.default_rng(0).poisson(3.0, (3, 30, 37)).astype(np.float32)
    out = denoise_images(ident, counts, np.array([3.0, 1.5, 6.0]), batch_size=2, amp=False)
    assert out.shape == counts.shape  # odd sizes padded and cropped back
    assert np.allclose(out, normalize(counts, np.array([3.0, 1.5, 6.0])), atol=1e-6)
    assert denoise_images(ident, counts[0], 3.0, amp=False).shape == (30, 37)
    with pytest.raises(InputError, match="one dose per image"):
        denoise_images(ident, counts, np.array([1.0, 2.0]))
    with pytest.raises(InputError, match="> 0"):
        normalize(counts, 0.0)
    seg = build_model({"kind": "segmenter", "depth": 2, "base_channels": 4,
                       "classes": ["background", "cation", "anion", "metal"], "max_occupancy": 3})
    res = segment_images(seg, counts, 3.0, amp=False)
    assert res["class_map"].dtype == np.uint8 and res["class_map"].shape == counts.shape
    assert res["cation_occupancy"].dtype == np.float32
    assert np.all((res["anion_occupancy"] >= 0) & (res["anion_occupancy"] <= 3))
    movie = BlindSpotDenoiser(5, 2, 4)
    frames = np.random.default_rng(1).poisson(2.0, (7, 20, 20)).astype(np.float32)
    den = denoise_movie(movie, frames, batch_size=3, amp=False)
    assert den.shape == frames.shape and np.isfinite(den).all()
    with pytest.raises(InputError, match="needs 5"):
        denoise_movie(movie, frames[:4])
