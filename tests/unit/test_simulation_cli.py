"""The simulation CLI: shards (contract, determinism), index, synthetic movie, errors."""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest
import yaml

from etem.cli import main
from etem.io import read_table
from etem.simulation.contract import (
    CLASSES,
    IMAGE_COLUMN_COLUMNS,
    MOVIE_ATTRS,
    PARAM_COLUMNS,
)
from etem.simulation.shard import read_columns, read_params
from etem.simulation.synthetic_movie import read_movie
from tests import simulation_fixtures as fx


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    manifest = fx.write_manifest(tmp / "structures", {
        "pt0001": ("pt_on_ceo2", fx.pt_on_ceo2()),
        "ox0001": ("oxide", fx.ceo2_slab()),
        "ox0002": ("oxide", fx.ceo2_slab(depth_cells=3)),
    })
    cfg = {
        "name": "t", "seed": 5, "results_dir": str(tmp / "results"),
        "tracking": {"enabled": False},
        "simulation": {"sampling_A": 0.2, "output_size_px": 40, "thickness_nm": [0.6, 1.6],
                       "tilts_mrad": [[0, 0], [2, 1], [-1, 2]], "tilts_per_structure": 2,
                       "defocus_nm": [-4.0, 0.0, 4.0], "images_per_structure": 5,
                       "n_shards": 2},
        "synthetic_movie": {"n_frames": 10, "size_px": 40, "event_frames": [4, 7],
                  "event_kinds": ["surface_loss", "vacancy"], "surface_atoms_lost": 2,
                  "vacancies_per_event": 3, "dose_e_per_px_per_frame": 0.5},
        "apply": {"events": {"calibration_frames": 3}},  # the events follow 3 stable frames
    }
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    shards = []
    for i in range(2):
        out = tmp / f"shard_{i}.h5"
        assert main(["simulate", "-c", str(path), "--manifest", str(manifest),
                     "--shard", f"{i}/2", "--out", str(out)]) == 0
        shards.append(out)
    return {"tmp": tmp, "config": path, "manifest": manifest, "shards": shards}


def test_shard_follows_the_contract(campaign):
    with h5py.File(campaign["shards"][1], "r") as f:
        clean = f["clean"][...]
        n = clean.shape[0]
        assert n == 10 and clean.shape[1:] == (40, 40) and clean.dtype == np.float32
        assert 0.7 < float(clean.mean()) < 1.1
        for name in ("class", "cation_occupancy", "anion_occupancy", "anion_fraction"):
            assert f["labels"][name].shape == clean.shape
        assert f["labels/class"][...].max() < len(CLASSES)
        assert set(f["params"]) == set(PARAM_COLUMNS)
        assert f.attrs["config_hash"] and f.attrs["stage"] == "simulation"
        assert "abtem" in f.attrs["package_versions"]
    params = read_params(campaign["shards"][1])
    assert set(params["structure_id"]) == {"ox0001", "ox0002"}
    assert params["defocus_nm"].isin([-4.0, 0.0, 4.0]).all()
    cols = read_columns(campaign["shards"][1])
    assert set(cols.columns) == set(IMAGE_COLUMN_COLUMNS)
    assert cols["image_index"].max() == n - 1


def test_same_seed_gives_identical_shard_bytes(campaign):
    """Byte-identical in a fresh process too (FFT plans are not timing-dependent)."""
    import subprocess

    again = campaign["tmp"] / "again.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "etem.cli", "simulate", "-c", str(campaign["config"]),
         "--manifest", str(campaign["manifest"]), "--shard", "0/2", "--out", str(again)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert again.read_bytes() == campaign["shards"][0].read_bytes()
    other = campaign["tmp"] / "other.h5"
    assert main(["simulate", "-c", str(campaign["config"]), "--set", "seed=6", "--manifest",
                 str(campaign["manifest"]), "--shard", "0/2", "--out", str(other)]) == 0
    assert other.read_bytes() != again.read_bytes()


def test_index_gathers_all_shards(campaign, capsys):
    out = campaign["tmp"] / "index.csv"
    assert main(["simulate-index", "--out", str(out), *map(str, campaign["shards"])]) == 0
    index = read_table(out)
    assert len(index) == 15 and index["image_id"].is_unique
    assert {"shard", "index_in_shard", *PARAM_COLUMNS} <= set(index.columns)
    row = index.iloc[-1]
    with h5py.File(out.parent / row["shard"], "r") as f:
        assert f["params/image_id"].asstr()[int(row["index_in_shard"])] == row["image_id"]


def test_synthetic_movie(campaign):
    out = campaign["tmp"] / "movie.h5"
    assert main(["simulate-movie", "-c", str(campaign["config"]), "--manifest",
                 str(campaign["manifest"]), "--out", str(out)]) == 0
    m = read_movie(out)
    assert m["frames"].shape == (10, 40, 40) and m["frames"].dtype == np.float32
    assert m["events"].tolist() == [4, 7]
    assert m["event_kinds"] == ["surface_loss", "vacancy"]
    assert set(MOVIE_ATTRS) <= set(m["attrs"])
    assert m["clean"].mean() == pytest.approx(0.5 * 1.0, rel=0.1)
    assert m["frames"].mean() == pytest.approx(m["clean"].mean(), rel=0.1)
    # stable between events, changed at the event
    assert np.array_equal(m["clean"][0], m["clean"][3])
    assert not np.array_equal(m["clean"][3], m["clean"][4])
    cols = m["columns"]
    metal = cols[cols["site"] == "metal"].groupby("frame")["n_atoms"].sum()
    assert metal[3] - metal[4] == 2  # two surface atoms lost
    anion = cols[cols["site"] == "anion"].groupby("frame")["n_atoms"].sum()
    assert anion[6] - anion[7] == 3  # three vacancies appear


def test_missing_manifest_is_a_one_line_error(tmp_path, capsys):
    code = main(["simulate", "--set", f"results_dir={tmp_path}", "--manifest",
                 str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x.h5")])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("etem: error:") and "nope.csv" in err[0]
    assert not (tmp_path / "x.h5").exists()
