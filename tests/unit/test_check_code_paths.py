"""``etem check`` knows the code-path test set: its shards, its index and the evaluation's
code-path groups (evaluation.code_paths)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from etem.check import CHECKS
from etem.cli import main
from etem.errors import InputError
from etem.paths import Layout
from etem.simulation.shard import build_index
from tests.configs import make_tiny_config
from tests.simulation_fixtures import write_blank_shard

CODE_PATHS = [{"name": "kirk", "parametrization": "kirkland", "n_shards": 2},
              {"name": "thin", "slice_thickness_A": 1.0}]


@pytest.fixture
def campaign(tmp_path: Path):
    cfg = make_tiny_config(tmp_path / "res", simulation={"n_shards": 1},
                           evaluation={"code_paths": CODE_PATHS})
    lay = Layout(cfg.results_path)
    px = cfg.simulation.output_size_px
    for cp in CODE_PATHS:
        name = str(cp["name"])
        shards = [lay.code_path_shard(name, i) for i in range(int(cp.get("n_shards", 1)))]
        for i, path in enumerate(shards):
            write_blank_shard(path, 2, px, f"{name}{i}")
        build_index(shards, lay.code_path_index(name))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return cfg, lay, path


def test_check_finds_a_missing_or_damaged_code_path_shard(campaign, capsys) -> None:
    cfg, lay, path = campaign
    assert CHECKS["code_paths"](cfg, lay) == "6 code-path images (kirk, thin)"
    gone = lay.code_path_shard("kirk", 1)
    gone.unlink()
    with pytest.raises(InputError, match=r"code path kirk: .*shard_001\.h5: missing"):
        CHECKS["code_paths"](cfg, lay)
    lay.code_path_shard("thin", 0).write_bytes(b"not hdf5")  # a truncated/damaged file
    with pytest.raises(InputError) as err:
        CHECKS["code_paths"](cfg, lay)
    assert "shard_001.h5: missing" in str(err.value)  # every problem, not only the first
    assert f"{lay.code_path_shard('thin', 0)}: unreadable" in str(err.value)
    # through the CLI: the check's one line names the shard, the exit code is non-zero
    assert main(["check", "--config", str(path)]) != 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "code_paths" in ln]
    assert len(lines) == 1 and lines[0].startswith("FAIL"), lines
    assert str(gone) in lines[0]


def test_check_finds_a_missing_code_path_index(campaign) -> None:
    cfg, lay, _ = campaign
    lay.code_path_index("thin").unlink()
    with pytest.raises(InputError, match=r"code path thin: .*index.csv: missing"):
        CHECKS["code_paths"](cfg, lay)
    # no code paths configured: nothing to check
    plain = make_tiny_config(cfg.results_path)
    assert CHECKS["code_paths"](plain, lay) == "no code paths configured"


def test_check_wants_each_code_path_group_in_the_evaluation(campaign) -> None:
    cfg, lay, _ = campaign
    ev = lay.evaluation_dir
    ev.mkdir(parents=True)
    pd.DataFrame({"image_id": ["a"], "split": ["test"]}).to_parquet(ev / "per_image.parquet")
    pd.DataFrame({"method": ["noisy"]}).to_csv(ev / "denoising_summary.csv", index=False)
    (ev / "likelihood_calibration.json").write_text("{}")
    (ev / "summary.json").write_text(json.dumps({"files": ["conditions_summary.csv"]}))
    groups = ["split=test", "split=code_path", "split=code_path|condition=kirk"]
    pd.DataFrame({"method": "noisy", "group": groups, "n": 2}).to_csv(
        ev / "conditions_summary.csv", index=False)
    with pytest.raises(InputError, match=r"no group split=code_path\|condition=thin"):
        CHECKS["evaluation"](cfg, lay)
    groups.append("split=code_path|condition=thin")
    pd.DataFrame({"method": "noisy", "group": groups, "n": 2}).to_csv(
        ev / "conditions_summary.csv", index=False)
    assert "2 code-path group(s)" in CHECKS["evaluation"](cfg, lay)
