"""Code paths of the cross-condition benchmark: the evaluated structures simulated through
another abTEM code path (Kirkland, finite projection, frozen phonons, slice thickness)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from etem.cli import main
from etem.config import load_config, stage_hash, stage_yaml
from etem.data.splits import assign_splits
from etem.errors import ConfigError
from etem.evaluation.codepaths import evaluated_structures
from etem.evaluation.inputs import split_index
from etem.io import read_table
from etem.paths import Layout
from etem.simulation.images import ImageSimulator
from etem.structures.library import read_manifest
from tests import simulation_fixtures as fx
from tests.configs import make_tiny_config

SETS = [
    {"name": "kirkland", "parametrization": "kirkland"},
    {"name": "finite", "projection": "finite"},
    {"name": "phonons", "frozen_phonons": 2, "frozen_phonon_sigma_A": 0.1},
    {"name": "thin_slices", "slice_thickness_A": 1.0},
]
SIM = {"thickness_nm": [1.2], "tilts_mrad": [[0.0, 0.0]], "defocus_nm": [-5.0, 5.0],
       "images_per_structure": 2, "output_size_px": 48, "n_shards": 1}
CP = {"name": "kirk_fp", "parametrization": "kirkland", "frozen_phonons": 2,
      "images_per_structure": 1}


def _same_lattice_other_image(a: np.ndarray, b: np.ndarray) -> None:
    """Same structure and lattice (correlated), yet not the same image (beyond float noise)."""
    assert a.shape == b.shape
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert np.abs(a - b).mean() > 1e-3  # float32 noise of one path is ~1e-6


@pytest.mark.parametrize("code_path", SETS, ids=[s["name"] for s in SETS])
def test_each_override_reaches_abtem_and_changes_the_image(tmp_path, code_path):
    cfg = make_tiny_config(tmp_path, simulation={**SIM, "defocus_nm": [4.0]},
                           evaluation={"code_paths": [code_path]})
    other = cfg.with_code_path(code_path["name"])
    for key, value in code_path.items():
        if key != "name":
            assert getattr(other.simulation, key) == value
    atoms = fx.ceo2_slab()
    base = ImageSimulator(cfg).simulate(atoms, "o1", with_labels=False)
    new = ImageSimulator(other).simulate(atoms, "o1", with_labels=False)
    _same_lattice_other_image(base.clean[0], new.clean[0])
    for key, value in code_path.items():
        if key != "name":
            assert new.params[0][key] == value  # recorded per image in the index
    again = ImageSimulator(other).simulate(atoms, "o1", with_labels=False)
    assert np.array_equal(new.clean, again.clean)  # deterministic from the seed


def test_code_path_config_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="set at least one of parametrization"):
        make_tiny_config(tmp_path, evaluation={"code_paths": [{"name": "x",
                                                               "images_per_structure": 2}]})
    with pytest.raises(ConfigError, match="names must be unique"):
        make_tiny_config(tmp_path, evaluation={"code_paths": [SETS[0], SETS[0]]})
    with pytest.raises(ConfigError, match=r"code_paths\.0\.name"):
        make_tiny_config(tmp_path, evaluation={"code_paths": [{**SETS[0], "name": "a b"}]})
    with pytest.raises(ConfigError, match=r"code_paths\.0\.projection"):
        make_tiny_config(tmp_path, evaluation={"code_paths": [{"name": "p",
                                                               "projection": "slanted"}]})
    cfg = make_tiny_config(tmp_path, evaluation={"code_paths": SETS})
    with pytest.raises(ConfigError, match=r"code path 'nope': not in evaluation.code_paths "
                       r"\(kirkland, finite, phonons, thin_slices\)"):
        cfg.with_code_path("nope")
    assert cfg.with_code_path("thin_slices").simulation.parametrization == "lobato"


def test_code_path_stage_reads_only_its_keys(tmp_path):
    base = make_tiny_config(tmp_path, evaluation={"code_paths": [CP]})
    data = yaml.safe_load(stage_yaml(base, "simulate-code-path"))
    assert set(data["training"]) == {"split"} and set(data["evaluation"]) == {"code_paths"}
    assert load_config(data).evaluation.code_paths == base.evaluation.code_paths
    tweak = make_tiny_config(tmp_path, evaluation={"code_paths": [CP], "nlm_h": 0.5},
                             training={"denoiser": {"steps": 7}})
    assert stage_hash(tweak, "simulate-code-path") == stage_hash(base, "simulate-code-path")
    assert stage_hash(tweak, "evaluation") != stage_hash(base, "evaluation")
    more = make_tiny_config(tmp_path, evaluation={"code_paths": [CP, SETS[0]]})
    assert stage_hash(more, "simulate-code-path") != stage_hash(base, "simulate-code-path")
    assert stage_hash(more, "simulation") == stage_hash(base, "simulation")


# -- through the CLI: simulate, index, evaluate ---------------------------------------------
@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("codepath")
    results = tmp / "results"
    layout = Layout(results)
    manifest = fx.write_manifest(results / "structures", {
        "ox0001": ("oxide", fx.ceo2_slab(depth_cells=1)),
        "ox0002": ("oxide", fx.ceo2_slab(depth_cells=2)),
        "ox0003": ("oxide", fx.ceo2_slab(depth_cells=3)),
        "pt0001": ("pt_on_ceo2", fx.pt_on_ceo2()),
        "pt0002": ("pt_on_ceo2", fx.pt_on_ceo2()),
    })
    man = pd.read_csv(manifest)
    man["particle_shape"] = ["", "", "", "cubo", "decahedron"]  # pt0002: the held-out split
    man.to_csv(manifest, index=False)
    cfg = make_tiny_config(results, simulation=SIM, training={"split": {"test_fraction": 0.4}},
                           evaluation={
        "code_paths": [CP], "max_test_images": 8, "condition_max_images": 8,
        "calibration_vacuum_images": 2, "umse_images": 0, "mohan_protocol": False},
        noise={"benchmark_doses_e_per_A2": [100.0]})
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    c = str(path)
    assert main(["simulate", "-c", c]) == 0
    assert main(["simulate-index", "--out", str(layout.simulation_index),
                 str(layout.simulation_shard(0))]) == 0
    assert main(["simulate-code-path", "-c", c, "--code-path", "kirk_fp"]) == 0
    cp_index = layout.code_path_index("kirk_fp")
    assert main(["simulate-index", "--out", str(cp_index),
                 str(layout.code_path_shard("kirk_fp", 0))]) == 0
    return {"tmp": tmp, "config": c, "cfg": cfg, "layout": layout, "manifest": manifest,
            "cp_index": cp_index}


def test_code_path_shard_holds_the_evaluated_structures_with_overrides(campaign):
    cfg, layout = campaign["cfg"], campaign["layout"]
    with h5py.File(layout.code_path_shard("kirk_fp", 0), "r") as f:
        assert f.attrs["code_path"] == "kirk_fp"
        assert json.loads(f.attrs["code_path_overrides"]) == {
            k: v for k, v in CP.items() if k != "name"}
    idx = read_table(campaign["cp_index"])
    assert set(idx["parametrization"]) == {"kirkland"} and set(idx["frozen_phonons"]) == {2}
    man = read_manifest(campaign["manifest"], ["structure_id", "family", "particle_shape"])
    want = set(evaluated_structures(man, cfg)["structure_id"])
    split = assign_splits(man, cfg.training.split, cfg.seed)
    assert want == set(man.loc[split.isin(["test", "held_out"]).to_numpy(), "structure_id"])
    assert "pt0002" in want and len(want) >= 2  # held-out and test structures
    assert set(idx["structure_id"].astype(str)) == want
    assert (idx.groupby("structure_id").size() == 1).all()  # images_per_structure: 1
    # never trained on: no train or validation image of these structures in the campaign
    main_idx = split_index(layout.simulation_index, cfg)
    trained = main_idx[main_idx["split"].isin(["train", "val"])]
    assert not set(trained["structure_id"].astype(str)) & want
    # the same (tilt, plane, defocus) image through the campaign's path: another image
    ref = read_table(layout.simulation_index).set_index("image_id")
    with h5py.File(layout.code_path_shard("kirk_fp", 0), "r") as f, \
            h5py.File(layout.simulation_shard(0), "r") as g:
        for row in idx.itertuples():
            a = g["clean"][int(ref.loc[row.image_id, "index_in_shard"])]
            _same_lattice_other_image(a, f["clean"][int(row.index_in_shard)])


def test_code_path_is_its_own_group_of_the_conditions_table(campaign):
    layout, out = campaign["layout"], campaign["tmp"] / "evaluation"
    assert main(["evaluate", "-c", campaign["config"], "--index", str(layout.simulation_index),
                 "--code-path", f"kirk_fp={campaign['cp_index']}", "--out", str(out)]) == 0
    per = pd.read_csv(out / "conditions_per_image.csv")
    s = pd.read_csv(out / "conditions_summary.csv")
    group = "split=code_path|condition=kirk_fp"
    assert group in set(s["group"])
    mine = per[per["split"] == "code_path"]
    assert set(mine["condition"]) == {"kirk_fp"}
    assert set(mine["image_id"]) == set(read_table(campaign["cp_index"])["image_id"])
    methods = set(per.loc[per["split"] != "code_path", "method"])
    assert set(s.loc[s["group"] == group, "method"]) == methods  # same methods, both metrics
    assert np.isfinite(mine[["psnr_db", "ssim", "psnr_mohan_db", "ssim_mohan"]]).all().all()
    summary = json.loads((out / "summary.json").read_text())
    assert group in summary["conditions"]
    # the campaign's own tables hold no code-path image
    assert "code_path" not in set(pd.read_parquet(out / "per_image.parquet")["split"])


def _one_line_error(capsys, code, expect_code, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == expect_code, err
    assert len(err) == 1 and err[0].startswith("etem: error:"), err
    for f in fragments:
        assert f in err[0], err


def test_bad_code_path_is_a_one_line_error(campaign, capsys):
    c, layout, out = campaign["config"], campaign["layout"], str(campaign["tmp"] / "bad")
    index = str(layout.simulation_index)
    ev = ["evaluate", "-c", c, "--index", index, "--out", out]
    _one_line_error(capsys, main([*ev, "--code-path", f"nope={campaign['cp_index']}"]), 2,
                    "code path 'nope': not in evaluation.code_paths (kirk_fp)")
    _one_line_error(capsys, main([*ev, "--code-path", "kirk_fp=/no/such/index.csv"]), 3,
                    "code path kirk_fp: image index /no/such/index.csv: no such file")
    _one_line_error(capsys, main([*ev, "--code-path", "kirk_fp"]), 2, "expected NAME=INDEX")
    # the campaign's own index as a code path: it holds structures trained on
    _one_line_error(capsys, main([*ev, "--code-path", f"kirk_fp={index}"]), 3,
                    "holds structures trained on")
    _one_line_error(capsys, main(["simulate-code-path", "-c", c, "--code-path", "nope",
                                  "--out", out + ".h5"]), 2, "code path 'nope'")
