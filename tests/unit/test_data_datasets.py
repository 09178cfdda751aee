"""Datasets: keyed determinism, dose -> counts physics, dihedral transforms, movie windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from etem.data.augment import dihedral
from etem.data.datasets import (
    VAL_STEP,
    ImagePatchDataset,
    MoviePatchDataset,
    read_index,
)
from etem.errors import InputError
from etem.frames.breaks import segment_window
from etem.simulation.noise import apply_dose
from tests.training_fixtures import PIXEL_A, write_campaign, write_movie

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_campaign(tmp_path_factory.mktemp("ds") / "res", n_structures=4,
                          images_per_structure=2)


def test_dihedral_group_has_8_distinct_invertible_elements() -> None:
    a = np.arange(12.0).reshape(3, 4)
    outs = [dihedral(a, k) for k in range(8)]
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
    for k, o in enumerate(outs):  # each is a rotation/reflection: some element undoes it
        assert any(np.array_equal(dihedral(o, m), a) for m in range(8)), k
    stack = np.stack([a, a + 1])  # applied to the last two axes only
    assert np.array_equal(dihedral(stack, 5)[1], dihedral(a + 1, 5))


def test_counts_follow_the_dose_contract() -> None:
    rng = np.random.default_rng(0)
    clean = np.full((256, 256), 0.8, np.float32)
    dose = 50.0  # e/Å² -> 0.8 * 50 * 0.04 = 1.6 counts per pixel
    counts = apply_dose(clean, dose, PIXEL_A, rng)
    expected = 0.8 * dose * PIXEL_A**2
    assert counts.mean() == pytest.approx(expected, rel=0.03)
    assert counts.var() == pytest.approx(expected, rel=0.06)  # Poisson: variance = mean
    assert np.all(counts == np.rint(counts)) and counts.min() >= 0


def test_samples_are_keyed_deterministic_and_normalised(index: Path) -> None:
    df = read_index(index)
    ds = ImagePatchDataset(df, "denoiser", 32, (400.0, 400.0), seed=5, dose_conditioned=True)
    a, b = ds[(3, 1)], ImagePatchDataset(df, "denoiser", 32, (400.0, 400.0), seed=5,
                                          dose_conditioned=True)[(3, 1)]
    assert all(np.array_equal(a[k], b[k]) for k in a)  # same key -> same sample, any process
    c = ds[(3, 2)]
    assert not np.array_equal(a["input"], c["input"])
    assert a["input"].shape == (2, 32, 32) and a["target"].shape == (1, 32, 32)
    dose_px = 400.0 * PIXEL_A**2
    assert float(a["dose_e_per_px"]) == pytest.approx(dose_px)
    assert np.allclose(a["input"][1], 1 / np.sqrt(dose_px))  # noise-level channel
    # input = counts / dose: unbiased estimate of the clean intensity (vacuum = 1)
    diffs = [ds[(s, 0)]["input"][0] - ds[(s, 0)]["target"][0] for s in range(30)]
    assert abs(float(np.mean(diffs))) < 0.02


def test_segmenter_labels_transform_with_the_image(index: Path) -> None:
    df = read_index(index)
    ds = ImagePatchDataset(df, "segmenter", 64, (1e6, 1e6), seed=0, max_occupancy=4)
    for step in range(6):
        s = ds[(step, 0)]
        assert s["class"].dtype == np.int64 and s["cation"].max() <= 4
        # at a huge dose the input is the clean image: labelled columns sit on atom contrast
        contrast = np.abs(s["input"][0] - 1.0)
        on = s["class"] > 0
        assert contrast[on].mean() > 2 * contrast[~on].mean()


def test_validation_samples_are_fixed_and_span_the_dose_range(index: Path) -> None:
    df = read_index(index)
    ds = ImagePatchDataset(df, "denoiser", 32, (10.0, 1000.0), seed=0, val_patch_px=48)
    ds.n_val = 4
    doses = [float(ds[(VAL_STEP, k)]["dose_e_per_px"]) for k in range(4)]
    assert doses == sorted(doses) and doses[0] < 10 * PIXEL_A**2 * 3 < doses[-1]
    assert ds[(VAL_STEP, 2)]["input"].shape == (1, 48, 48)
    assert np.array_equal(ds[(VAL_STEP, 2)]["input"], ds[(VAL_STEP, 2)]["input"])


def test_movie_windows_reflect_at_the_ends(tmp_path: Path) -> None:
    assert segment_window(0, 5, (), 10) == [2, 1, 0, 1, 2]
    assert segment_window(9, 5, (), 10) == [7, 8, 9, 8, 7]
    assert segment_window(4, 5, (), 10) == [2, 3, 4, 5, 6]
    # a break at frame 5: windows stay in their segment, reflected at its ends
    assert segment_window(4, 5, (5,), 10) == [2, 3, 4, 3, 2]
    assert segment_window(5, 5, (5,), 10) == [7, 6, 5, 6, 7]
    import h5py

    path = write_movie(tmp_path / "m.h5", n_frames=6, size=32)
    with h5py.File(path) as f:
        frames, clean = f["frames"][()], f["clean"][()]
    ds = MoviePatchDataset(frames, 5, 16, scale_e_per_px=2.0, seed=0, clean=clean)
    s = ds[(0, 0)]
    assert s["input"].shape == (5, 16, 16)
    assert np.array_equal(s["target"][0], s["input"][2])  # target = noisy middle frame
    assert abs(float(s["clean"].mean()) - float(s["input"].mean())) < 0.2
    with pytest.raises(InputError, match="needs 7"):
        MoviePatchDataset(frames, 7, 16, 2.0, 0)
