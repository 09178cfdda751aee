"""Train/val/test split by structure, held-out family, and the index reader."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etem.config.training import SplitConfig
from etem.data.datasets import read_index
from etem.data.splits import assign_splits
from etem.errors import InputError
from tests.training_fixtures import write_campaign

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _table(n_structures: int = 40, per: int = 5) -> pd.DataFrame:
    rows = []
    for s in range(n_structures):
        for k in range(per):
            rows.append({"structure_id": f"s{s}", "image_id": f"s{s}_{k}",
                         "particle_shape": "decahedron" if s % 7 == 3 else "octahedron"})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # images interleaved


def test_no_structure_straddles_splits_and_held_out_family_is_unseen() -> None:
    df = _table()
    cfg = SplitConfig(val_fraction=0.1, test_fraction=0.2)
    split = assign_splits(df, cfg, seed=11)
    assert split.index.equals(df.index)
    per_structure = split.groupby(df["structure_id"]).nunique()
    assert (per_structure == 1).all()  # leakage check: one split per structure
    held = split == "held_out"
    assert (df.loc[held, "particle_shape"] == "decahedron").all()
    assert (df.loc[df["particle_shape"] == "decahedron"].index.isin(split[held].index)).all()
    n = df["structure_id"].nunique()  # counts are taken over all structures
    counts = df.groupby(split)["structure_id"].nunique()
    assert counts.sum() == n
    n_test = round(0.2 * n)
    assert counts["test"] + counts["val"] + counts["train"] + counts["held_out"] == n
    assert 0 < counts["test"] <= n_test and 0 < counts["val"] <= round(0.1 * n)
    # knowing the held-out column or not changes no other structure's split
    blind = assign_splits(df.drop(columns=["particle_shape"]), cfg, seed=11)
    assert (blind[~held] == split[~held]).all()
    assert set(blind[held]) <= {"train", "val", "test"}


def test_split_is_deterministic_and_seed_dependent() -> None:
    df = _table()
    cfg = SplitConfig()
    a = assign_splits(df, cfg, seed=1)
    assert a.equals(assign_splits(df.copy(), cfg, seed=1))
    assert not a.equals(assign_splits(df, cfg, seed=2))
    # the manifest (one row per structure) and the index give the same split per structure
    man = df.drop_duplicates("structure_id")
    m = assign_splits(man, cfg, seed=1)
    by_sid = dict(zip(man["structure_id"], m, strict=True))
    assert all(by_sid[s] == v for s, v in zip(df["structure_id"], a, strict=True))


def test_small_campaigns_keep_a_training_structure() -> None:
    df = pd.DataFrame({"structure_id": ["a", "b", "c"]})
    split = assign_splits(df, SplitConfig(val_fraction=0.3, test_fraction=0.3, held_out={}), 0)
    assert sorted(split) == ["test", "train", "val"]
    one = assign_splits(pd.DataFrame({"structure_id": ["a"]}), SplitConfig(held_out={}), 0)
    assert list(one) == ["train"]


def test_split_needs_structure_ids() -> None:
    with pytest.raises(InputError, match="structure_id"):
        assign_splits(pd.DataFrame({"image_id": ["x"]}), SplitConfig(), 0)


def test_read_index_resolves_shards_and_merges_the_manifest(tmp_path: Path) -> None:
    index = write_campaign(tmp_path / "res", n_structures=4, images_per_structure=2)
    df = read_index(index)
    assert len(df) == 8
    assert all(Path(p).is_file() for p in df["shard_path"])
    assert "particle_shape" in df.columns  # from ../structures/manifest.csv
    bad = tmp_path / "bad.csv"
    df.drop(columns=["shard"]).to_csv(bad, index=False)
    with pytest.raises(InputError, match="missing columns"):
        read_index(bad)
    with pytest.raises(InputError, match="no such file"):
        read_index(tmp_path / "nope.csv")
