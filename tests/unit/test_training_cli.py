"""``etem train ...`` and ``etem retrain`` end to end, with MLflow tracking."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from etem.cli import main
from etem.io import file_digest
from etem.models.io import load_model
from tests.training_fixtures import write_campaign, write_movie

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TINY = {"steps": 8, "batch_size": 2, "patch_px": 32, "val_every_steps": 4, "val_samples": 3,
        "val_patch_px": 32, "checkpoint_every_steps": 4, "dose_e_per_A2": [25.0, 100.0],
        "model": {"depth": 2, "base_channels": 8}}


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
    capsys.readouterr()
    new_out = tmp_path / "retrained.pt"
    assert main(["retrain", "--run-id", run_id, "--config", str(cfg), "--out", str(new_out),
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "identical validation metrics" in printed, printed
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


def test_bad_inputs_give_one_line_errors(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path, tracking=False)
    assert main(["train", "denoiser", "-c", str(cfg), "--index", str(tmp_path / "no.csv")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("etem: error:") and "no.csv" in err and "Traceback" not in err
    movie = write_movie(tmp_path / "short.h5", n_frames=3, size=32)
    assert main(["train", "unsupervised", "-c", str(cfg), "--movie", str(movie)]) == 3
    assert "needs 5" in capsys.readouterr().err
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
