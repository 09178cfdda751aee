"""The library: cheap enumeration, shards, byte-identical rebuilds, gather, CLI, I/O errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from etem.cli import main
from etem.errors import InputError
from etem.structures.contract import MANIFEST_COLUMNS
from etem.structures.io import read_structure, write_structure
from etem.structures.library import build_shard, gather, read_columns, read_manifest
from etem.structures.recipes import enumerate_recipes
from tests.structures_fixtures import ceo2_slab


def test_full_config_enumerates_900_recipes_without_building(monkeypatch):
    from etem.config import load_config
    from etem.structures import build as build_mod

    def boom(*a, **k):
        raise AssertionError("enumeration must not build atoms")

    monkeypatch.setattr(build_mod, "build", boom)
    cfg = load_config(Path(__file__).resolve().parents[2] / "config" / "config.yaml")
    recipes = enumerate_recipes(cfg)
    assert len(recipes) == 900
    fam = [r.family for r in recipes]
    assert fam.count("pt_on_ceo2") == 540 and fam.count("oxide") == 360
    assert len({r.structure_id for r in recipes}) == 900
    assert [r.to_json() for r in recipes] == [r.to_json() for r in enumerate_recipes(cfg)]
    shapes = {r.params["shape"] for r in recipes if r.family == "pt_on_ceo2"}
    assert len(shapes) == 5
    assert {r.material for r in recipes if r.family == "oxide"} == {"CeO2", "SrTiO3"}


def test_balance_knob_and_seed_change_the_recipes(tiny_config):
    counts = {"pt_on_ceo2": {"count": 5}, "oxides": {"count": 1}}
    a = enumerate_recipes(tiny_config(structures=counts))
    assert [r.family for r in a].count("oxide") == 1
    b = enumerate_recipes(tiny_config(structures=counts, seed=4))
    assert [r.to_json() for r in a] != [r.to_json() for r in b]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_config):
    tmp = tmp_path_factory.mktemp("lib")
    cfg = tiny_config(tmp / "results")
    d0, d1 = tmp / "s0", tmp / "s1"
    build_shard(cfg, (0, 2), d0)
    build_shard(cfg, (1, 2), d1)
    return cfg, tmp, d0, d1


def test_shards_write_files_manifest_and_columns(built):
    _cfg, _tmp, d0, d1 = built
    m0, m1 = read_manifest(d0 / "manifest.csv"), read_manifest(d1 / "manifest.csv")
    assert list(m0.columns) == list(MANIFEST_COLUMNS)
    assert len(m0) + len(m1) == 4
    for d, m in ((d0, m0), (d1, m1)):
        for _, row in m.iterrows():
            atoms = read_structure(d / row["path"])
            assert len(atoms) == row["n_atoms"]
            assert atoms.info["structure_id"] == row["structure_id"]
            assert atoms.info["recipe"]["structure_id"] == row["structure_id"]
            table = read_columns(d / row["columns_path"], row["structure_id"])
            assert table["n_vacancies"].sum() == row["n_vacancies"]
            assert table["n_atoms"].sum() == row["n_atoms"]
            assert row["zone_axis"].startswith("[")
            assert np.isclose(row["cell_x_A"], 51.2)


def test_rebuild_is_byte_identical_and_another_seed_differs(built, tmp_path, tiny_config):
    cfg, tmp, d0, _ = built
    again = tmp_path / "again"
    build_shard(cfg, (0, 2), again, workers=2)
    files = sorted(p.name for p in d0.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (d0 / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    build_shard(tiny_config(tmp / "results", seed=11), (0, 2), other)
    differ = [n for n in files if n.endswith(".extxyz")
              and (d0 / n).read_bytes() != (other / n).read_bytes()]
    assert differ


def test_gather_makes_paths_relative_and_rejects_missing_shards(built):
    cfg, tmp, d0, d1 = built
    out = tmp / "structures" / "manifest.csv"
    m = gather(cfg, out, [d0, d1])
    assert list(m["structure_id"]) == sorted(m["structure_id"])
    back = read_manifest(out)
    for _, row in back.iterrows():
        assert (out.parent / row["path"]).exists()
        assert (out.parent / row["columns_path"]).exists()
    with pytest.raises(InputError, match=r"no manifest.csv"):
        gather(cfg, tmp / "x.csv", [tmp / "nope"])
    with pytest.raises(InputError, match="duplicate structure ids"):
        gather(cfg, tmp / "x.csv", [d0, d0])


def test_read_structure_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_structure(tmp_path / "missing.extxyz")
    bad = tmp_path / "bad.extxyz"
    bad.write_text("3\nnot an extxyz header\nPt 0 0\n")
    with pytest.raises(InputError, match="not a readable extxyz"):
        read_structure(bad)


def test_write_read_roundtrip_keeps_vacancies_and_labels(tmp_path):
    from etem.structures.column_table import column_table

    atoms = ceo2_slab(3, "clustered", 0.05)
    path = write_structure(tmp_path / "a.extxyz", atoms)
    back = read_structure(path)
    assert np.array_equal(back.positions, atoms.positions)
    assert np.array_equal(back.arrays["valence"], atoms.arrays["valence"])
    assert np.array_equal(back.info["vacancy_positions"], atoms.info["vacancy_positions"])
    assert back.info["zone_axis"] == "[110]" and isinstance(back.info["recipe"], dict)
    assert column_table(back).equals(column_table(atoms))
    import ase.io

    assert len(ase.io.read(path)) == len(atoms)  # plain ASE reads it too


def test_cli_plan_build_gather(tmp_path, capsys, tiny_config):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_config(tmp_path / "results").model_dump(mode="json")))
    assert main(["structures", "plan", "--config", str(cfg_file)]) == 0
    assert "4 structures" in capsys.readouterr().out
    shard = tmp_path / "results" / "structures" / "shard_000"
    assert main(["structures", "build", "--config", str(cfg_file), "--shard", "0/1",
                 "--out", str(shard)]) == 0
    out = tmp_path / "results" / "structures" / "manifest.csv"
    assert main(["structures", "gather", "--config", str(cfg_file), "--out", str(out),
                 str(shard), "--gallery-size", "4"]) == 0
    assert out.exists() and (out.parent / "gallery.png").stat().st_size > 10_000
    code = main(["structures", "gather", "--config", str(cfg_file), "--out", str(out),
                 str(tmp_path / "none")])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("etem: error:") and "none" in err[-1]
