"""Held-out microscope conditions: per-image bands that never reach training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etem.config.training import ConditionBand, SplitConfig
from etem.data.splits import assign_splits, condition_label
from etem.io import read_table, write_table
from etem.training.tasks import DenoiserTask
from tests.configs import make_tiny_config
from tests.training_fixtures import write_campaign

pytestmark = pytest.mark.usefixtures("torch_single_thread")

BANDS = [ConditionBand(column="energy_kv", low=79.0, high=81.0),
         ConditionBand(column="detector_pixel_A", low=0.16, high=1.0)]


def _table(n_structures: int = 30, per: int = 6) -> pd.DataFrame:
    r = np.random.default_rng(0)
    rows = []
    for s in range(n_structures):
        kv = [80.0, 200.0, 300.0][s % 3]
        for k in range(per):
            rows.append({"structure_id": f"s{s}", "image_id": f"s{s}_{k}",
                         "particle_shape": "decahedron" if s % 7 == 3 else "octahedron",
                         "energy_kv": kv, "detector_pixel_A": float(r.uniform(0.03, 0.2))})
    return pd.DataFrame(rows)


def test_no_held_out_condition_in_train_or_val() -> None:
    df = _table()
    cfg = SplitConfig(val_fraction=0.1, test_fraction=0.2, held_out_conditions=BANDS)
    split = assign_splits(df, cfg, seed=11)
    in_band = (df["energy_kv"] == 80.0) | (df["detector_pixel_A"] >= 0.16)
    assert in_band.any() and (~in_band).any()
    assert (split[in_band] == "held_out_condition").all()
    assert not split[~in_band].eq("held_out_condition").any()
    trained = split.isin(["train", "val"])
    assert not (trained & in_band).any()
    # held-out structures keep only seen conditions
    held = split == "held_out"
    assert held.any() and not in_band[held].any()
    # the structure split of the other images does not depend on the bands
    plain = assign_splits(df, SplitConfig(val_fraction=0.1, test_fraction=0.2,
                                          held_out_conditions=[]), seed=11)
    assert split[~in_band].equals(plain[~in_band])
    # a table without the band columns (the manifest) gets no held-out-condition rows
    man = df[["structure_id", "particle_shape"]].drop_duplicates()
    assert "held_out_condition" not in set(assign_splits(man, cfg, seed=11))
    assert condition_label(df.iloc[0].to_dict(), BANDS) == "energy_kv=[79,81]"


def test_default_bands_leave_a_fixed_microscope_campaign_alone() -> None:
    df = _table()
    df["blur_fwhm_A"] = 0.0
    df["detector_pixel_A"] = np.nan
    split = assign_splits(df, SplitConfig(), seed=3)
    assert "held_out_condition" not in set(split)


def test_training_task_never_sees_a_held_out_condition(tmp_path) -> None:
    index = write_campaign(tmp_path / "results", n_structures=10, images_per_structure=3)
    idx = read_table(index)
    idx["blur_fwhm_A"] = np.where(np.arange(len(idx)) % 3 == 1, 1.4, 0.5)
    write_table(index, idx)
    cfg = make_tiny_config(tmp_path / "results", training={"split": {"held_out_conditions": [
        {"column": "blur_fwhm_A", "low": 1.3, "high": 1.5}]}})
    task = DenoiserTask(cfg, cfg.training.denoiser, index)
    held = set(idx.loc[idx["blur_fwhm_A"] > 1.3, "image_id"].astype(str))
    assert held
    train = set(task.train_set.rows["image_id"].astype(str))
    val = set(task.val_set.rows["image_id"].astype(str))
    assert train and not held & train and not held & val
