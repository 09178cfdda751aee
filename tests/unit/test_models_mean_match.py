"""The mean constraint at inference: each whole denoised frame takes its counts' mean / dose."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from etem.config import load_config
from etem.errors import InputError
from etem.models.inference import TiledRunner, denoise_images, denoise_movie, match_mean
from etem.models.io import LoadedModel
from etem.movies.shard import denoise_chunk

DOSE = 0.45


def _clean(n: int = 2, size: int = 48) -> np.ndarray:
    """Thick-crystal-like frames: mean about 0.85 (vacuum = 1), columns darker."""
    y, x = np.mgrid[:size, :size]
    lattice = 0.85 + 0.15 * np.cos(2 * np.pi * x / 8) * np.cos(2 * np.pi * y / 8)
    return np.stack([lattice * (1 - 0.05 * i) for i in range(n)]).astype(np.float32)


class TooBright(nn.Module):
    """A 'denoiser' that returns 1.1 x the clean frames it holds, whatever its input (one
    whole frame per batch item, in order)."""

    def __init__(self, clean: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("clean", torch.from_numpy(1.1 * clean))
        self.multiple = 1
        self.in_channels = 1
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        out = self.clean[self.calls : self.calls + b, None].to(x.dtype)
        self.calls += b
        return out


class Squared(nn.Module):
    """Pointwise 'denoiser' 1.1 x^2 (any tiling gives the same raw output)."""

    multiple = 4
    in_channels = 1
    n_frames = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.1 * x[:, :1] ** 2


def test_match_mean_takes_the_counts_mean_and_lowers_the_error() -> None:
    clean = _clean()
    counts = np.random.default_rng(0).poisson(clean * DOSE).astype(np.float32)
    raw = denoise_images(TooBright(clean), counts, DOSE, batch_size=1, amp=False, match=False)
    np.testing.assert_allclose(raw, 1.1 * clean, rtol=1e-6)
    out = denoise_images(TooBright(clean), counts, DOSE, batch_size=1, amp=False)
    assert out.dtype == np.float32 and out.shape == counts.shape
    for i in range(len(clean)):  # per frame: its own counts' mean / dose
        assert out[i].mean(dtype=np.float64) == pytest.approx(
            counts[i].mean(dtype=np.float64) / DOSE, rel=1e-6)
        assert np.mean((out[i] - clean[i]) ** 2) < 0.2 * np.mean((raw[i] - clean[i]) ** 2)
    np.testing.assert_allclose(out, match_mean(raw, counts, DOSE), rtol=1e-6)
    # one dose per frame; 2-D frames
    doses = np.array([DOSE, 2 * DOSE])
    two = match_mean(raw, counts, doses)
    assert two[1].mean() == pytest.approx(counts[1].mean() / (2 * DOSE), rel=1e-6)
    assert match_mean(raw[0], counts[0], DOSE).shape == raw[0].shape


def test_match_mean_leaves_frames_without_a_scale() -> None:
    counts = np.ones((4, 8, 8), np.float32)
    out = np.ones((4, 8, 8), np.float32) * 2.0
    out[0] = 0.0  # mean 0
    out[1] = -1.0  # negative mean
    out[2, :4] = -3.0  # mean -0.5 though some pixels are positive
    res = match_mean(out, counts, 1.0)
    np.testing.assert_array_equal(res[:3], out[:3])
    assert res[3].mean() == pytest.approx(1.0)
    # no counts at all: nothing to match to
    np.testing.assert_array_equal(match_mean(out[3:], np.zeros((1, 8, 8)), 1.0), out[3:])
    with pytest.raises(InputError, match="match_mean"):
        match_mean(out, counts[:2], 1.0)
    with pytest.raises(InputError, match="one dose per image"):
        match_mean(out, counts, np.array([1.0, 2.0]))


def test_blind_spot_output_takes_its_centre_frames_mean() -> None:
    torch.manual_seed(0)

    class Bright(nn.Module):  # window mean x 1.1 plus 0.05: too bright
        multiple = 1
        n_frames = 3
        in_channels = 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 1.1 * x.mean(dim=1, keepdim=True) + 0.05

    rng = np.random.default_rng(1)
    # the beam current changes from frame to frame: each frame keeps its own level
    level = np.array([1.0, 0.9, 1.2, 1.0, 0.8, 1.1])[:, None, None]
    frames = rng.poisson(0.85 * DOSE * level * np.ones((6, 32, 32))).astype(np.float32)
    out = denoise_movie(Bright(), frames, DOSE, amp=False)
    for t in range(len(frames)):
        assert out[t].mean() == pytest.approx(frames[t].mean() / DOSE, rel=1e-5)
    raw = denoise_movie(Bright(), frames, DOSE, amp=False, match=False)
    assert abs(raw.mean() - frames.mean() / DOSE) > 0.05


def test_apply_chunk_scales_whole_frames_and_the_switch_off_keeps_the_network_output() -> None:
    cfg = load_config(None, {"apply.inference.tile_px": 32, "apply.inference.overlap_px": 8})
    assert cfg.apply.inference.match_mean  # on by default
    i = cfg.apply.inference
    model = LoadedModel(Squared(), {"kind": "denoiser"})
    runner = TiledRunner(model, i.tile_px, i.overlap_px, i.batch_size, "fp32", "cpu")
    rng = np.random.default_rng(2)
    ramp = np.linspace(0.5, 1.5, 80)[None, :] * np.ones((80, 1))  # tiles differ in mean
    frames = {t: rng.poisson(ramp * 2.0).astype(np.float32) for t in range(3)}

    class Prep:
        mode = "supervised"
        dose_e_per_px = 2.0

    off = denoise_chunk(Prep(), model, runner, frames, range(3), match=False)  # type: ignore[arg-type]
    on = denoise_chunk(Prep(), model, runner, frames, range(3), match=True)  # type: ignore[arg-type]
    counts = np.stack([frames[t] for t in range(3)])
    np.testing.assert_allclose(off, 1.1 * (counts / 2.0) ** 2, rtol=1e-5)  # the network alone
    for t in range(3):
        lit = off[t] > 0
        assert np.ptp(on[t][lit] / off[t][lit]) < 1e-5  # one factor per whole frame
        assert on[t].mean() == pytest.approx(counts[t].mean() / 2.0, rel=1e-5)


def test_apply_scores_the_networks_as_its_shards_denoise() -> None:
    """The uPSNR scoring of ``etem apply`` (prepare.network_outputs) sees the matched output
    under the switch, the network's own output without it."""
    from etem.movies.prepare import network_outputs

    model = LoadedModel(Squared(), {"kind": "denoiser"})
    rng = np.random.default_rng(3)
    leading = rng.poisson(2.0 * np.ones((4, 40, 40))).astype(np.float32)
    outs = {}
    for match in (True, False):
        i = load_config(None, {"apply.inference.match_mean": match,
                               "apply.inference.precision": "fp32"}).apply.inference
        outs[match] = network_outputs(model, leading, 2.0, [], 4, [1, 3], i)
    for t in (1, 3):
        np.testing.assert_allclose(outs[False][t], 1.1 * (leading[t] / 2.0) ** 2, rtol=1e-5)
        assert outs[True][t].mean() == pytest.approx(leading[t].mean() / 2.0, rel=1e-5)
