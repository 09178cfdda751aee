"""MLflow model registry (``models:/NAME/VERSION``) and the packaged pretrained denoiser."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from etem.cli import main
from etem.io import file_digest
from etem.models.pretrained import SOURCE, model_card, pretrained_path
from etem.testing import lattice_movie, write_h5
from tests.training_fixtures import write_campaign

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TINY = {"steps": 4, "batch_size": 2, "patch_px": 32, "val_every_steps": 4, "val_samples": 3,
        "val_patch_px": 32, "checkpoint_every_steps": 4, "dose_e_per_A2": [25.0, 100.0],
        "model": {"depth": 2, "base_channels": 8}}

#: apply settings of a small, fast run (8 frames of 64², the supervised network given)
APPLY = ["--set", "apply.events.calibration_frames=4", "--set", "apply.inference.tile_px=32",
         "--set", "apply.inference.overlap_px=8", "--set", "apply.inference.precision=fp32",
         "--set", "apply.inference.denoise_with=supervised"]


def _config(tmp_path: Path) -> Path:
    cfg = {"name": "regtest", "seed": 1, "results_dir": str(tmp_path / "results"),
           "tracking": {"enabled": True},
           "training": {"split": {"val_fraction": 0.2, "test_fraction": 0.2}, "denoiser": TINY}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _movie(tmp_path: Path) -> Path:
    return write_h5(lattice_movie(n_frames=8, size_px=64, event_frame=None, seed=5),
                    tmp_path / "m.h5")


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset)
                     else None)
    return out


def test_registered_model_applies_like_its_file(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path)
    write_campaign(tmp_path / "results", n_structures=6, images_per_structure=2)
    model = tmp_path / "results" / "models" / "denoiser.pt"
    assert main(["train", "denoiser", "--config", str(cfg), "--threads", "1"]) == 0
    # the training run registered its model file as version 1 of <campaign>-denoiser
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'results' / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("regtest-denoiser", "1")
    assert version.tags["etem.model.sha256"] == file_digest(model)
    logged = client.get_logged_model(version.source.rstrip("/").split("/")[-2])
    assert logged.source_run_id == version.run_id  # an MLflow 3 logged model of the run
    run = client.get_run(version.run_id)
    assert run.data.tags["etem.registered_model"] == "models:/regtest-denoiser/1"

    movie = _movie(tmp_path)
    outs = {}
    for name, spec in (("file", str(model)), ("registry", "models:/regtest-denoiser/1"),
                       ("latest", "models:/regtest-denoiser/latest")):
        outs[name] = tmp_path / name
        assert main(["apply", "--config", str(cfg), "--movie", str(movie), "--out",
                     str(outs[name]), "--denoiser", spec, *APPLY]) == 0, capsys.readouterr().err
    summaries = {k: json.loads((p / "summary.json").read_text()) for k, p in outs.items()}
    for name in ("registry", "latest"):
        got = summaries[name]["models"]["denoiser"]
        assert got["sha256"] == file_digest(model)  # the same bytes as the file
        assert got["source"].startswith("models:/regtest-denoiser/")
        a, b = _datasets(outs["file"] / "results.h5"), _datasets(outs[name] / "results.h5")
        assert a.keys() == b.keys() and a
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert "source" not in summaries["file"]["models"]["denoiser"]


def test_missing_registered_model_is_one_line_and_starts_nothing(tmp_path: Path,
                                                                 capsys) -> None:
    cfg = _config(tmp_path)
    movie = _movie(tmp_path)
    out = tmp_path / "out"
    # no store in the campaign's results folder yet
    assert main(["apply", "--config", str(cfg), "--movie", str(movie), "--out", str(out),
                 "--denoiser", "models:/regtest-denoiser/1", *APPLY]) == 3
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("etem: error:")]
    assert len(lines) == 1 and "no MLflow tracking store" in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "results" / "mlflow.db").exists()
    # a store without that name or version
    write_campaign(tmp_path / "results", n_structures=6, images_per_structure=2)
    assert main(["train", "denoiser", "--config", str(cfg), "--threads", "1"]) == 0
    capsys.readouterr()
    for spec, words in (("models:/nope/1", "no model 'nope' version 1"),
                        ("models:/regtest-denoiser/7", "no model 'regtest-denoiser' version 7"),
                        ("models:/nope/latest", "no model 'nope'"),
                        ("models:/regtest-denoiser", "expected models:/NAME/VERSION")):
        assert main(["apply", "--config", str(cfg), "--movie", str(movie), "--out", str(out),
                     "--denoiser", spec, *APPLY]) == 3
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("etem: error:")]
        assert len(lines) == 1 and words in lines[0], err
        assert "Traceback" not in err
        assert not out.exists()  # no apply run (its store would be in --out), no output


def test_apply_without_a_denoiser_uses_the_packaged_model(tmp_path: Path, capsys,
                                                          caplog) -> None:
    path = pretrained_path()
    assert path is not None  # the package ships it (package data)
    card = model_card()
    assert card["model_file"]["sha256"] == file_digest(path)
    assert card["training"]["steps"] > 0 and "val_psnr" in card["metrics"]
    movie = _movie(tmp_path)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="etem.movies.commands"):
        assert main(["apply", "--movie", str(movie), "--out", str(out),
                     "--set", "tracking.enabled=false", *APPLY]) == 0
    assert any("pretrained general denoiser" in r.getMessage() for r in caplog.records)
    s = json.loads((out / "summary.json").read_text())
    assert s["denoiser"] == "supervised"
    assert s["models"]["denoiser"] == {"path": str(path), "sha256": file_digest(path),
                                       "source": SOURCE}
    # switched off: no model given is the one-line error it was
    capsys.readouterr()
    assert main(["apply", "--movie", str(movie), "--out", str(tmp_path / "off"),
                 "--set", "tracking.enabled=false", "--set", "apply.inference.pretrained=false",
                 *APPLY]) == 3
    err = capsys.readouterr().err
    assert "needs --denoiser and/or --unsupervised" in err and "Traceback" not in err


def test_auto_scores_the_packaged_model_beside_the_given_one(tmp_path: Path) -> None:
    """``denoise_with: auto`` with only --unsupervised given: the packaged denoiser is one more
    candidate scored by uPSNR on the movie (and recorded as the summary's denoiser model)."""
    import torch

    from etem.models.factory import build_model
    from etem.models.io import save_model

    arch = {"kind": "unsupervised", "depth": 2, "base_channels": 4, "n_frames": 5}
    torch.manual_seed(0)
    unsup = save_model(tmp_path / "u.pt", build_model(arch),
                       {"kind": "unsupervised", "arch": arch, "pixel_size_A": 0.2})
    lm = lattice_movie(n_frames=32, size_px=96, event_frame=None, dose_e_per_px_per_frame=0.5,
                       seed=11)
    movie = write_h5(lm, tmp_path / "m.h5")
    out = tmp_path / "out"
    assert main(["apply", "--movie", str(movie), "--out", str(out), "--unsupervised", str(unsup),
                 "--set", "tracking.enabled=false", "--set", "apply.inference.tile_px=96",
                 "--set", "apply.inference.precision=fp32",
                 "--set", "apply.events.calibration_frames=8"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert {"supervised", "unsupervised", "raw", "gaussian"} <= set(s["denoiser_upsnr_dB"])
    assert s["models"]["denoiser"]["source"] == SOURCE
