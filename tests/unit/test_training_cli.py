"""``etem train ...`` and ``etem retrain`` end to end, with MLflow tracking."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import yaml

from etem.cli import main
from etem.io import file_digest, sampled_digest
from etem.models.io import load_model
from tests.training_fixtures import write_campaign, write_movie

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TINY = {"steps": 8, "batch_size": 2, "patch_px": 32, "val_every_steps": 4, "val_samples": 3,
        "val_patch_px": 32, "checkpoint_every_steps": 4, "dose_e_per_A2": [25.0, 100.0],
        "model": {"depth": 2, "base_channels": 8}}


def _retrain_identical(run_id: str, cfg: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> Path:
    """``etem retrain`` of ``run_id`` into tmp_path/retrained.pt; asserts it succeeded and
    reproduced the run's validation metrics."""
    capsys.readouterr()
    new_out = tmp_path / "retrained.pt"
    assert main(["retrain", "--run-id", run_id, "--config", str(cfg), "--out", str(new_out),
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "identical validation metrics" in printed, printed
    return new_out


def _config(tmp_path: Path, tracking: bool) -> Path:
    cfg = {"name": "clitest", "seed": 1, "results_dir": str(tmp_path / "results"),
           "tracking": {"enabled": tracking},
           "training": {"split": {"val_fraction": 0.2, "test_fraction": 0.2},
                        "denoiser": TINY, "segmenter": TINY,
                        "unsupervised": {**TINY, "dose_e_per_A2": None}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_and_retrain_denoiser_tracked_in_mlflow(tmp_path: Path, capsys) -> None:
    import mlflow

    cfg = _config(tmp_path, tracking=True)
    index = write_campaign(tmp_path / "results", n_structures=6, images_per_structure=2)
    out = tmp_path / "results" / "models" / "denoiser.pt"
    assert main(["train", "denoiser", "--config", str(cfg), "--threads", "1"]) == 0  # defaults
    assert index.exists() and out.exists()
    _, meta = load_model(out)
    assert "mlflow_run_id" not in meta  # same config, same bytes: lineage lives in MLflow
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'results' / 'mlflow.db').resolve()}")
    (run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`etem.model.sha256` = '{file_digest(out)}'")
    run_id = run.info.run_id
    assert run.data.tags["etem.stage"] == "train-denoiser"
    assert run.data.params["train.kind"] == "denoiser"
    history = client.get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == list(range(1, 9))  # per-step loss
    assert {"val_psnr", "val_ssim", "lr", "throughput_samples_per_s", "final_val_psnr"} <= set(
        run.data.metrics)
    arts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "model", "figures", "model_meta.json"} <= arts
    assert [a.path for a in client.list_artifacts(run_id, "figures")] == [
        "figures/denoiser_samples.png"]
    new_out = _retrain_identical(run_id, cfg, tmp_path, capsys)
    _, meta2 = load_model(new_out)
    assert meta2["metrics"] == meta["metrics"]
    assert file_digest(new_out) == file_digest(out)  # the retrained model file is byte-identical


def test_train_segmenter_and_unsupervised_untracked(tmp_path: Path) -> None:
    cfg = _config(tmp_path, tracking=False)
    index = write_campaign(tmp_path / "results", n_structures=8, images_per_structure=2)
    seg = tmp_path / "seg.pt"
    assert main(["train", "segmenter", "-c", str(cfg), "--index", str(index), "--out", str(seg),
                 "--threads", "1"]) == 0
    _, meta = load_model(seg)
    assert meta["kind"] == "segmenter" and "mlflow_run_id" not in meta
    movie = write_movie(tmp_path / "m.h5", n_frames=6, size=32)
    uns = tmp_path / "uns.pt"
    assert main(["train", "unsupervised", "-c", str(cfg), "--movie", str(movie), "--out",
                 str(uns), "--threads", "1"]) == 0
    assert load_model(uns)[1]["n_frames"] == 5


def test_a_quoted_glob_pattern_trains_through_the_shell(tmp_path: Path, etem_bin: str) -> None:
    """The workflow's train_group command: a glob row's pattern passed as one quoted shell
    word (spaces, ';', '$(...)' are data) is expanded by etem, not by the shell; a group of
    the pattern's frames and a TIFF stack trains and logs the files in MLflow."""
    import mlflow

    cfg = _config(tmp_path, tracking=True)
    with h5py.File(write_movie(tmp_path / "m.h5", n_frames=8, size=32)) as f:
        frames = np.asarray(f["frames"])
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, frames)
    folder = tmp_path / "per frame;touch X $(touch Y)"
    folder.mkdir()
    for i, fr in enumerate(frames):
        tifffile.imwrite(folder / f"f_{i}.tif", fr)
    pattern = str(folder / "f_*.tif")
    out = tmp_path / "group.pt"
    command = (f"cd {shlex.quote(str(tmp_path))} && {shlex.quote(etem_bin)} train unsupervised"
               f" --config {shlex.quote(str(cfg))} --movie {shlex.quote(str(stack))}"
               f" {shlex.quote(pattern)} --out {shlex.quote(str(out))} --threads 1")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "X").exists() and not (tmp_path / "Y").exists()
    _, meta = load_model(out)
    assert meta["movie_shape"][0] == 16
    assert meta["movies"][1]["files"] == [str(folder / f"f_{i}.tif") for i in range(8)]
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'results' / 'mlflow.db').resolve()}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                filter_string=f"tags.`etem.model.sha256` = '{file_digest(out)}'")
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "movies.json",
                                                       str(tmp_path / "dl"))).read_text())
    assert logged[1]["path"] == pattern and len(logged[1]["files"]) == 8
    assert logged[1]["digest"] == sampled_digest(logged[1]["files"])


def test_retrain_of_a_group_training_reopens_its_movies(tmp_path: Path, capsys) -> None:
    """`etem retrain` of a multi-movie group training: the logged sources (a TIFF stack and a
    glob row, in folders named with a comma and a space) are reopened one by one, the same
    movies by content, and the retrained model is byte-identical; a movie changed since the
    training is refused, named."""
    import mlflow

    cfg = _config(tmp_path, tracking=True)
    with h5py.File(write_movie(tmp_path / "m.h5", n_frames=8, size=32)) as f:
        frames = np.asarray(f["frames"])
    data = tmp_path / "run 1, 600C"
    data.mkdir()
    stack = data / "stack, a.tif"
    tifffile.imwrite(stack, frames)
    folder = data / "per frame, b"
    folder.mkdir()
    for i, fr in enumerate(frames[::-1]):
        tifffile.imwrite(folder / f"f_{i}.tif", fr)
    pattern = str(folder / "f_*.tif")
    out = tmp_path / "results" / "models" / "groups" / "600C.pt"
    assert main(["train", "unsupervised", "--config", str(cfg), "--movie", str(stack), pattern,
                 "--out", str(out), "--threads", "1"]) == 0
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'results' / 'mlflow.db').resolve()}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                filter_string=f"tags.`etem.model.sha256` = '{file_digest(out)}'")
    run_id = run.info.run_id
    assert json.loads(run.data.params["train.source"]) == [str(stack), pattern]
    new_out = _retrain_identical(run_id, cfg, tmp_path, capsys)
    movies = [(m["path"], m["digest"], m.get("files")) for m in load_model(out)[1]["movies"]]
    assert movies[1][2] == [str(folder / f"f_{i}.tif") for i in range(8)]
    assert [(m["path"], m["digest"], m.get("files"))
            for m in load_model(new_out)[1]["movies"]] == movies
    assert file_digest(new_out) == file_digest(out)
    # the glob matches another frame since the training: not a reproduction, refused
    tifffile.imwrite(folder / "f_8.tif", frames[0])
    assert main(["retrain", "--run-id", run_id, "--config", str(cfg), "--out",
                 str(tmp_path / "again.pt"), "--threads", "1"]) == 3
    err = capsys.readouterr().err
    assert f"movie {pattern}: changed since run {run_id}" in err, err
    assert not (tmp_path / "again.pt").exists()


def test_bad_inputs_give_one_line_errors(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path, tracking=False)
    assert main(["train", "denoiser", "-c", str(cfg), "--index", str(tmp_path / "no.csv")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("etem: error:") and "no.csv" in err and "Traceback" not in err
    movie = write_movie(tmp_path / "short.h5", n_frames=3, size=32)
    assert main(["train", "unsupervised", "-c", str(cfg), "--movie", str(movie)]) == 3
    assert "needs 5" in capsys.readouterr().err
    nothing = str(tmp_path / "none_*.tif")
    assert main(["train", "unsupervised", "-c", str(cfg), "--movie", str(movie), nothing]) == 3
    assert capsys.readouterr().err.strip().endswith(f"{nothing}: no file matches the pattern")
    assert main(["retrain", "--run-id", "abc"]) == 2  # no store named
    assert "tracking-uri" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["training.unsupervised.n_frames=4",
                                 "training.split.val_fraction=0.9",
                                 "training.segmenter.class_weighting=inverse",
                                 "training.segmenter.dice_weight=-1"])
def test_bad_training_config_is_rejected(bad: str, tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path, tracking=False)
    assert main(["train", "denoiser", "-c", str(cfg), "--set", bad]) == 2
    assert "etem: error:" in capsys.readouterr().err
