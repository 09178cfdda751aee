"""A supervised denoiser that refines the SURE-chosen Wiener estimate (``prefilter``).

The network's first input channel is the Wiener filter of the *whole* frame (its view of the
frame's periodogram is what the network's receptive field lacks), so training, evaluation and
``etem apply`` must all build it from the whole frame: noise drawn on the whole training
image before the crop, and the estimate computed before inference tiles the frame.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from etem.analysis import baselines
from etem.config import EtemConfig
from etem.config.apply import InferenceConfig
from etem.data.augment import ERASE_BLUR_A, dihedral, erase_disc
from etem.data.datasets import ImagePatchDataset, read_index
from etem.data.inputs import network_input, noisy_channel, prefilter_estimate
from etem.data.noise import log_uniform
from etem.errors import ConfigError, InputError
from etem.models.factory import architecture, build_model, flops_per_frame
from etem.models.inference import denoise_images
from etem.models.io import LoadedModel, load, save_model
from etem.models.unet import Denoiser
from etem.movies.prepare import network_outputs
from etem.seeding import rng as seeded_rng
from etem.simulation.noise import apply_dose, row_dqe
from tests.training_fixtures import PIXEL_A, lattice_image, write_campaign

pytestmark = pytest.mark.usefixtures("torch_single_thread")

DOSE_E_PER_PX = 0.45


def _counts(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    clean = lattice_image(np.random.default_rng(seed), size, 9.0, False)["clean"]
    counts = np.random.default_rng(seed + 1).poisson(np.clip(clean, 0, None) * DOSE_E_PER_PX)
    return clean.astype(np.float64), counts.astype(np.float32)


def _identity_refiner(dose_conditioned: bool = True) -> Denoiser:
    """A residual prefilter denoiser whose correction is zero: it returns its first channel."""
    net = Denoiser(depth=2, base_channels=4, dose_conditioned=dose_conditioned,
                   prefilter="wiener_sure")
    with torch.no_grad():
        net.unet.head.weight.zero_()
        assert net.unet.head.bias is not None
        net.unet.head.bias.zero_()
    return net.eval()


def test_input_channels_are_prefilter_counts_then_noise_level() -> None:
    _, counts = _counts()
    plain = network_input(counts, DOSE_E_PER_PX, True)
    assert plain.shape == (2, 96, 96) and noisy_channel("none") == 0
    assert np.allclose(plain[0], counts / DOSE_E_PER_PX)
    x = network_input(counts, DOSE_E_PER_PX, True, "wiener_sure", dqe=0.8)
    assert x.shape == (3, 96, 96) and x.dtype == np.float32 and noisy_channel("wiener_sure") == 1
    wiener = baselines.wiener_sure(counts, DOSE_E_PER_PX, 0.8)[0]
    assert np.allclose(x[0], wiener, atol=1e-6)
    assert np.allclose(x[1], counts / DOSE_E_PER_PX)
    assert np.allclose(x[2], 1 / np.sqrt(DOSE_E_PER_PX))
    stack = network_input(np.stack([counts, counts[::-1]]), DOSE_E_PER_PX, False, "wiener_sure")
    assert stack.shape == (2, 2, 96, 96)  # each frame filtered alone
    assert np.allclose(stack[1, 0], baselines.wiener_sure(counts[::-1], DOSE_E_PER_PX)[0],
                       atol=1e-6)
    with pytest.raises(InputError, match="prefilter 'median'"):
        prefilter_estimate(counts, DOSE_E_PER_PX, "median")


def test_prefilter_estimate_is_closer_to_the_clean_image_than_the_counts() -> None:
    clean, counts = _counts(128)
    est = prefilter_estimate(counts, DOSE_E_PER_PX, "wiener_sure")
    assert est is not None
    assert np.mean((est - clean) ** 2) < 0.2 * np.mean((counts / DOSE_E_PER_PX - clean) ** 2)


def test_training_noise_is_drawn_on_the_whole_image_then_cropped(tmp_path: Path) -> None:
    index = write_campaign(tmp_path / "res", n_structures=2, images_per_structure=1)
    df = read_index(index)
    ds = ImagePatchDataset(df, "denoiser", 32, (20.0, 80.0), seed=3, dose_conditioned=True,
                           prefilter="wiener_sure")
    s = ds[(4, 1)]
    assert s["input"].shape == (3, 32, 32) and s["target"].shape == (1, 32, 32)
    # replay the sample's draws: image, crop, transform, dose, then noise on the whole image
    r = seeded_rng(3, "train", 4, 1)
    row = ds.rows.iloc[int(r.integers(len(ds.rows)))]
    with h5py.File(row["shard_path"], "r") as f:
        whole = np.asarray(f["clean"][int(row["index_in_shard"])], dtype=np.float32)
    h, w = whole.shape
    y0, x0 = int(r.integers(h - 32 + 1)), int(r.integers(w - 32 + 1))
    k = int(r.integers(8))
    dose = log_uniform(r, 20.0, 80.0)
    dose_px = dose * PIXEL_A**2
    counts = apply_dose(whole, dose, PIXEL_A, r, dqe=row_dqe(row))
    est = baselines.wiener_sure(counts, dose_px, row_dqe(row))[0]
    crop = (slice(y0, y0 + 32), slice(x0, x0 + 32))
    assert np.allclose(s["input"][0], dihedral(est[crop], k), atol=1e-6)
    assert np.allclose(s["input"][1], dihedral(counts[crop] / dose_px, k), atol=1e-6)
    assert np.array_equal(s["target"][0], dihedral(whole[crop], k))
    # the whole image's filter, not the crop's: a 32 px periodogram resolves no lattice
    crop_est = baselines.wiener_sure(counts[crop], dose_px, row_dqe(row))[0]
    assert not np.allclose(s["input"][0], dihedral(crop_est, k), atol=1e-3)


def test_zero_correction_returns_the_whole_frame_wiener_estimate_at_evaluate_and_apply() -> None:
    _, counts = _counts(160, seed=4)
    net = _identity_refiner()
    expected = baselines.wiener_sure(counts, DOSE_E_PER_PX, 0.9)[0]
    out = denoise_images(net, counts, DOSE_E_PER_PX, match=False, dqe=0.9)
    assert np.allclose(out, expected, atol=1e-5)
    # etem apply's path tiles the frame (64 px tiles here): the estimate is the whole frame's
    inference = InferenceConfig(tile_px=64, overlap_px=16, precision="fp32", device="cpu",
                                match_mean=False)
    model = LoadedModel(net, {"kind": "denoiser"})
    got = network_outputs(model, counts[None], DOSE_E_PER_PX, [], 1, [0], inference, 0.9)[0]
    assert np.allclose(got, expected, atol=1e-5)


def test_model_files_record_the_prefilter(tmp_path: Path) -> None:
    cfg = EtemConfig.model_validate({"training": {"denoiser": {
        "prefilter": "wiener_sure", "model": {"depth": 2, "base_channels": 4,
                                              "dose_conditioned": True}}}})
    arch = architecture("denoiser", cfg.training.denoiser)
    assert arch["prefilter"] == "wiener_sure"
    net = build_model(arch)
    assert isinstance(net, Denoiser) and net.in_channels == 3
    save_model(tmp_path / "d.pt", net, {"kind": "denoiser", "arch": arch})
    loaded = load(tmp_path / "d.pt", kind="denoiser")
    assert loaded.prefilter == "wiener_sure" and loaded.dose_conditioned
    assert flops_per_frame(arch, 64) > flops_per_frame({**arch, "prefilter": "none"}, 64)
    # model files from before the prefilter carry no key: the counts only
    plain = architecture("denoiser", EtemConfig().training.denoiser)
    assert "prefilter" not in plain and build_model(plain).prefilter == "none"
    with pytest.raises(ConfigError, match="prefilter 'median'"):
        build_model({**arch, "prefilter": "median"})


def test_erased_disc_removes_the_columns_and_keeps_the_local_mean() -> None:
    clean = lattice_image(np.random.default_rng(2), 192, 9.0, False)["clean"]
    out = erase_disc(clean, (96.0, 96.0), 50.0, PIXEL_A)
    yy, xx = np.mgrid[:192, :192]
    r = np.hypot(yy - 96, xx - 96)
    inner, outer = r < 50 - ERASE_BLUR_A / PIXEL_A, r > 50 + ERASE_BLUR_A / PIXEL_A
    assert out.dtype == np.float32 and np.array_equal(out[outer], clean[outer])
    assert out[inner].std() < 0.2 * clean[inner].std()  # the lattice is gone
    assert out[inner].mean() == pytest.approx(clean[inner].mean(), abs=0.01)


def test_training_samples_erase_a_disc_in_the_crop_and_validation_none(tmp_path: Path) -> None:
    index = write_campaign(tmp_path / "res", n_structures=2, images_per_structure=1)
    df = read_index(index)
    kw = dict(task="denoiser", patch_px=32, dose_range_e_per_A2=(20.0, 80.0), seed=3,
              dose_conditioned=True, prefilter="wiener_sure")
    plain = ImagePatchDataset(df, **kw)  # type: ignore[arg-type]
    erased = ImagePatchDataset(df, erase_probability=0.5, erase_radius_A=(1.0, 2.0),
                               **kw)  # type: ignore[arg-type]
    changed = []
    for step in range(24):
        a, b = plain[(step, 0)], erased[(step, 0)]
        # the erasure draws from its own stream: crop, transform and noise stay the same
        assert np.array_equal(a["dose_e_per_px"], b["dose_e_per_px"])
        if not np.array_equal(a["target"], b["target"]):
            changed.append(step)
            # flatter where erased: the target lost lattice contrast
            assert b["target"].std() < a["target"].std()
    assert 4 <= len(changed) <= 20
    for k in range(4):  # validation images are scored as simulated
        assert np.array_equal(plain[(-1, k)]["target"], erased[(-1, k)]["target"])
