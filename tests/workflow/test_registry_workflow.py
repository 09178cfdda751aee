"""Registry models (``models:/NAME/VERSION``) in the workflow: named by the config
(``apply.models``) or a sheet row (``<kind>_model``), checked when the workflow plans,
passed to the apply jobs as their argument and never demanded as an input file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from etem.config import load_config
from etem.models.pretrained import pretrained_path
from etem.runs import StageRun, registered_name

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SMOKE = ROOT / "config" / "smoke.yaml"
pytestmark = pytest.mark.workflow


def snakemake(*args: str, configs: tuple[Path, ...], results: Path
              ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the campaign's
    env["PATH"] = f"{BIN}:{os.environ['PATH']}"
    return subprocess.run(
        [str(BIN / "snakemake"), *args, "--configfile", *map(str, configs),
         "--config", f"results_dir={results}"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300, check=False,
    )


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The smoke campaign's results folder with a tracking store that holds one registered
    denoiser (version 1), a 20-frame movie and a model file beside it."""
    tmp = tmp_path_factory.mktemp("regwf")
    res = tmp / "res"
    cfg = load_config(SMOKE, {"results_dir": str(res), "tracking.enabled": True})
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        with StageRun(cfg, "train-denoiser") as run:
            uri = run.register_model(pretrained_path(), "denoiser")
    finally:
        mp.undo()
    with mrcfile.new(tmp / "stack.mrc") as m:
        m.set_data(np.random.default_rng(1).poisson(1.0, (20, 32, 32)).astype(np.uint16))
        m.voxel_size = 0.5
    shutil.copyfile(pretrained_path(), tmp / "mine.pt")
    return {"tmp": tmp, "res": res, "name": registered_name(cfg, "denoiser"), "uri": uri}


def _job(text: str, rule: str, movie: str) -> str:
    """The dry run's block of one job (``rule`` of movie ``movie``)."""
    blocks = [b for b in text.split("\nrule ")[1:] if b.startswith(f"{rule}:")
              and f"wildcards: movie={movie}" in b]
    assert len(blocks) == 1, (rule, movie, len(blocks))
    return blocks[0]


def _input(block: str) -> str:
    return re.search(r"^\s+input: (.*)$", block, re.MULTILINE).group(1)  # type: ignore[union-attr]


def test_registry_models_are_arguments_not_input_files(campaign, tmp_path: Path) -> None:
    tmp, res, name = campaign["tmp"], campaign["res"], campaign["name"]
    assert campaign["uri"] == f"models:/{name}/1"
    sheet = tmp / "movies.tsv"
    sheet.write_text("name\tpath\tdenoiser_model\tsegmenter_model\n"
                     f"run1\tstack.mrc\tmine.pt\tmodels:/{name}/1\n")
    ov = tmp_path / "ov.yaml"
    ov.write_text(f"movies:\n  sheet: {sheet}\n"
                  f"apply:\n  models:\n    denoiser: models:/{name}/latest\n")
    before = sorted(p.name for p in Path(str(res)).rglob("*"))
    out = snakemake("-n", "-p", configs=(SMOKE, ov), results=Path(str(res)))
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "models:/" not in "".join(_input(b) for b in text.split("\nrule ")[1:]
                                     if "input:" in b)
    for rule, command in (("apply_prepare", "apply-prepare"), ("apply_shard", "apply-shard"),
                          ("apply_gather", "apply-gather")):
        # the synthetic movie: the config's registry denoiser, latest pinned to version 1
        synthetic = _job(text, rule, "synthetic")
        assert f"--denoiser models:/{name}/1 " in synthetic and f" {command} " in synthetic
        assert f"--segmenter {res}/models/segmenter.pt" in synthetic
        assert f"{res}/models/denoiser.pt" not in synthetic  # not an input, not an argument
        assert f"{res}/models/segmenter.pt" in _input(synthetic)
        # the sheet's row: its own file (an input) and its own registry segmenter
        row = _job(text, rule, "run1")
        assert f"--denoiser {tmp}/mine.pt " in row and f"{tmp}/mine.pt" in _input(row)
        assert f"--segmenter models:/{name}/1 " in row
        assert f"{res}/models/segmenter.pt" not in row
    assert sorted(p.name for p in Path(str(res)).rglob("*")) == before  # the dry run wrote nothing


def test_unknown_registry_version_fails_before_any_job(campaign, tmp_path: Path) -> None:
    tmp, res, name = campaign["tmp"], campaign["res"], campaign["name"]
    sheet = tmp / "bad.tsv"
    sheet.write_text(f"name\tpath\tunsupervised_model\nrun1\tstack.mrc\tmodels:/{name}/5\n")
    ov = tmp_path / "ov.yaml"
    ov.write_text(f"movies:\n  sheet: {sheet}\n")
    out = snakemake("--cores", "1", configs=(SMOKE, ov), results=Path(str(res)))
    assert out.returncode != 0
    text = out.stdout + out.stderr
    lines = [ln for ln in text.splitlines() if f"models:/{name}/5" in ln]
    assert len(lines) == 1, text[-3000:]
    assert (f"movie sheet {sheet}: line 2, column unsupervised_model: models:/{name}/5: the "
            "model registry of") in lines[0] and f"no model '{name}' version 5" in lines[0]
    assert "Traceback" not in text and not (Path(str(res)) / "config").exists()  # nothing ran
    ov.write_text("apply:\n  models:\n    segmenter: models:/nope/latest\n")
    out = snakemake("-n", configs=(SMOKE, ov), results=Path(str(res)))
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "apply.models.segmenter: models:/nope/latest: the model registry of" in text
    assert "Traceback" not in text
