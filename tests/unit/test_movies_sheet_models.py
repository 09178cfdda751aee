"""Models named by the movie sheet (``<kind>_model`` columns) and the config
(``apply.models``): files, or model registry URIs ``models:/NAME/VERSION|latest`` checked in
the campaign's tracking store when the campaign is planned, one error line when they are not
there."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import yaml

from etem.cli import main
from etem.config import load_config
from etem.errors import ConfigError
from etem.models.pretrained import pretrained_path
from etem.movies.sheet import campaign_models, campaign_movies, read_sheet
from etem.runs import StageRun

HEADER = "name\tpath\tdenoiser_model\tunsupervised_model\tsegmenter_model\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A campaign's results folder whose tracking store holds one registered denoiser
    (``sheetreg-denoiser`` version 1; the packaged pretrained file), a movie and a model file."""
    tmp = tmp_path_factory.mktemp("sheetreg")
    overrides = {"name": "sheetreg", "results_dir": str(tmp / "res"), "tracking.enabled": True,
                 "movies.synthetic": False}
    cfg = load_config(None, overrides)
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        with StageRun(cfg, "train-denoiser") as run:
            assert run.register_model(pretrained_path(), "denoiser") == \
                "models:/sheetreg-denoiser/1"
    finally:
        mp.undo()
    (tmp / "data").mkdir()
    with mrcfile.new(tmp / "data" / "stack.mrc") as m:
        m.set_data(np.random.default_rng(0).poisson(2.0, (6, 16, 16)).astype(np.uint16))
        m.voxel_size = 0.5
    shutil.copyfile(pretrained_path(), tmp / "data" / "mine.pt")
    return {"tmp": tmp, "overrides": overrides}


@pytest.fixture(autouse=True)
def _campaign_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the config's store


def _sheet(tmp: Path, body: str, name: str = "movies.tsv") -> Path:
    p = tmp / name
    p.write_text(HEADER + body)
    return p


def _config(store: dict[str, object], **more: object):
    return load_config(None, {**store["overrides"], **more})  # type: ignore[dict-item]


def test_sheet_models_files_and_registry_uris_pinned(store) -> None:
    tmp = store["tmp"]
    sheet = _sheet(tmp, "a\tdata/stack.mrc\tmodels:/sheetreg-denoiser/latest\tdata/mine.pt\t\n"
                        "b\tdata/stack.mrc\t\t\tmodels:/sheetreg-denoiser/1\n"
                        "c\tdata/stack.mrc\t\t\t\n")
    rows = read_sheet(sheet)  # the registry is not asked here: the URI as written
    assert rows[0].models == {"denoiser": "models:/sheetreg-denoiser/latest",
                              "unsupervised": str(tmp / "data" / "mine.pt")}  # sheet-relative
    a, b, c = campaign_movies(_config(store, **{"movies.sheet": str(sheet)}), "s.h5", cache=None)
    assert a.models["denoiser"] == "models:/sheetreg-denoiser/1"  # latest pinned
    assert a.denoiser_model == "models:/sheetreg-denoiser/latest"  # the cell as written
    assert b.models == {"segmenter": "models:/sheetreg-denoiser/1"} and c.models == {}


@pytest.mark.parametrize(("cell", "words"), [
    ("models:/sheetreg-denoiser/7", "no model 'sheetreg-denoiser' version 7"),
    ("models:/nope/latest", "no model 'nope'"),
    ("models:/sheetreg-denoiser", "expected models:/NAME/VERSION"),
])
def test_bad_registry_uri_in_the_sheet_is_one_line(store, cell: str, words: str) -> None:
    tmp = store["tmp"]
    sheet = _sheet(tmp, f"a\tdata/stack.mrc\t\t\t\nb\tdata/stack.mrc\t\t\t{cell}\n", "bad.tsv")
    with pytest.raises(ConfigError) as err:
        campaign_movies(_config(store, **{"movies.sheet": str(sheet)}), "s.h5", cache=None)
    msg = str(err.value)
    assert msg.startswith(f"movie sheet {sheet}: line 3, column segmenter_model: {cell}: ")
    assert words in msg and "\n" not in msg


def test_missing_store_or_file_is_one_line(store, tmp_path: Path) -> None:
    tmp = store["tmp"]
    sheet = _sheet(tmp, "a\tdata/stack.mrc\tmodels:/sheetreg-denoiser/1\t\t\n", "nostore.tsv")
    elsewhere = _config(store, **{"movies.sheet": str(sheet), "results_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"line 2, column denoiser_model: .*no MLflow "
                       "tracking store"):
        campaign_movies(elsewhere, "s.h5", cache=None)
    assert not (tmp_path / "mlflow.db").exists()  # checking creates no store
    lost = _sheet(tmp, "a\tdata/stack.mrc\t\tdata/lost.pt\t\n", "lost.tsv")
    with pytest.raises(ConfigError, match=r"line 2, column unsupervised_model: no such model "
                       "file 'data/lost.pt'"):
        read_sheet(lost)


def test_config_models_checked_and_pinned(store) -> None:
    mine = str(store["tmp"] / "data" / "mine.pt")
    cfg = _config(store, **{"apply.models.denoiser": "models:/sheetreg-denoiser/latest",
                            "apply.models.unsupervised": mine})
    assert campaign_models(cfg) == {"denoiser": "models:/sheetreg-denoiser/1",
                                    "unsupervised": mine}
    assert campaign_models(_config(store)) == {}  # the campaign's own networks
    bad = _config(store, **{"apply.models.segmenter": "models:/sheetreg-segmenter/1"})
    with pytest.raises(ConfigError, match=r"^apply.models.segmenter: models:/sheetreg-"
                       "segmenter/1: the model registry of .* has no model"):
        campaign_models(bad)
    with pytest.raises(ConfigError, match=r"apply\.models\.denoiser: no such model file"):
        campaign_models(_config(store, **{"apply.models.denoiser": "/no/such.pt"}))


def test_cli_sheet_validate_and_apply_check_the_registry(store, capsys) -> None:
    tmp = store["tmp"]
    config = tmp / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "sheetreg", "results_dir": str(tmp / "res")}))
    good = _sheet(tmp, "a\tdata/stack.mrc\tmodels:/sheetreg-denoiser/latest\t\t\n", "good.tsv")
    etem = [sys.executable, "-m", "etem.cli"]
    out = subprocess.run([*etem, "sheet", "validate", str(good), "--config", str(config)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "denoiser=models:/sheetreg-denoiser/1" in out.stdout
    bad = _sheet(tmp, "a\tdata/stack.mrc\tmodels:/sheetreg-denoiser/3\t\t\n", "bad3.tsv")
    out = subprocess.run([*etem, "sheet", "validate", str(bad), "--config", str(config)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "line 2, column denoiser_model: models:/sheetreg-denoiser/3" in line
    assert "version 3" in line
    # etem apply takes a network it is not given from apply.models: checked before any work
    movie, res = str(tmp / "data" / "stack.mrc"), tmp / "applied"
    assert main(["apply", "--config", str(config), "--movie", movie, "--out", str(res),
                 "--set", "apply.models.denoiser=models:/sheetreg-denoiser/9"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no model 'sheetreg-denoiser' version 9" in err[0], err
    assert not res.exists()
