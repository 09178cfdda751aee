"""The training loop: overfitting, real denoising, resume equality, reproducibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from etem.data.datasets import collate, read_index
from etem.data.splits import assign_splits
from etem.models.factory import build_model
from etem.models.inference import denoise_images, normalize
from etem.models.io import load_model
from etem.training.loop import train
from etem.training.metrics import psnr
from etem.training.run import checkpoint_path, make_task, train_network
from etem.training.tasks import DenoiserTask
from tests.configs import TinyConfig
from tests.training_fixtures import (
    PIXEL_A,
    write_campaign,
    write_movie,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_campaign(tmp_path_factory.mktemp("camp") / "results", n_structures=10)


@pytest.mark.parametrize("kind", ["denoiser", "segmenter"])
def test_a_model_overfits_one_batch(
    kind: str, campaign: Path, tmp_path: Path, tiny_config: TinyConfig
) -> None:
    extra = {"residual": False} if kind == "denoiser" else {"dose_e_per_A2": [1e4, 1e4]}
    model = {"model": {"depth": 2, "base_channels": 16}, **extra}
    cfg = tiny_config(tmp_path / "results", training={kind: model})
    task = make_task(kind, cfg, campaign)
    batch = collate([task.train_set[(0, j)] for j in range(4)])
    torch.manual_seed(0)
    model = build_model(task.arch)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(150 if kind == "denoiser" else 450):
        loss = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-10:]) < losses[0] / 10


def test_trained_denoiser_improves_psnr_on_unseen_structures(
    campaign: Path, tmp_path: Path, tiny_config: TinyConfig
) -> None:
    loop = {
        "steps": 160, "val_every_steps": 80, "batch_size": 8,
        "model": {"depth": 2, "base_channels": 16},
    }
    cfg = tiny_config(tmp_path / "results", training={"denoiser": loop})
    out = tmp_path / "den.pt"
    result = train_network("denoiser", cfg, campaign, out)
    assert result.metrics["val_psnr"] > result.metrics["val_psnr_noisy"] + 3
    model, meta = load_model(out)
    assert meta["kind"] == "denoiser" and meta["pixel_size_A"] == pytest.approx(PIXEL_A)
    assert not checkpoint_path(out).exists()  # removed after success
    # the test split: structures never seen in training or validation
    df = read_index(campaign)
    split = assign_splits(df, cfg.training.split, cfg.seed)
    test = df[split.to_numpy() == "test"]
    assert len(test) and not set(test["structure_id"]) & set(make_task(
        "denoiser", cfg, campaign).train_structures)
    import h5py

    rng = np.random.default_rng(0)
    gains = []
    for _, row in test.iterrows():
        with h5py.File(row["shard_path"]) as f:
            clean = f["clean"][int(row["index_in_shard"])]
        dose_px = 50.0 * PIXEL_A**2  # 2 e/px
        counts = rng.poisson(clean * dose_px).astype(np.float32)
        den = denoise_images(model, counts, dose_px)
        gains.append(psnr(den, clean) - psnr(normalize(counts, dose_px), clean))
    assert np.mean(gains) > 3.0  # dB over the noisy input, on unseen structures


class MetricLog:
    """Records what training logs, as an MLflow run would."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int, str, float]] = []

    def log_params(self, params: dict[str, object]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics += [(int(step or 0), k, v) for k, v in metrics.items()]

    def curves(self) -> list[tuple[int, str, float]]:
        """Every logged value but the wall-clock throughput, in step order."""
        return sorted(m for m in self.metrics if m[1] != "throughput_samples_per_s")


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("amp", [False, True])
def test_resume_from_checkpoint_gives_identical_weights(
    amp: bool, campaign: Path, tmp_path: Path, tiny_config: TinyConfig
) -> None:
    loop = {
        "steps": 12, "val_every_steps": 3, "checkpoint_every_steps": 4, "amp": amp,
        "lr_plateau_patience": 0,
    }
    cfg = tiny_config(tmp_path / "results", training={"denoiser": loop})
    loop = cfg.training.denoiser
    task = make_task("denoiser", cfg, campaign)
    logs: dict[str, MetricLog] = {k: MetricLog() for k in ("full", "part", "resumed")}
    full = train(task, loop, cfg.seed, checkpoint=tmp_path / "a.ckpt", tracker=logs["full"])
    ckpt = tmp_path / "b.ckpt"
    part = train(make_task("denoiser", cfg, campaign), loop, cfg.seed, checkpoint=ckpt,
                 stop_after_step=7, tracker=logs["part"])
    assert part.interrupted and part.steps == 7 and ckpt.exists()
    resumed = train(make_task("denoiser", cfg, campaign), loop, cfg.seed, checkpoint=ckpt,
                    tracker=logs["resumed"])
    assert resumed.steps == 12 and not resumed.interrupted
    # the resumed run's metric history is the whole history (not only the steps after 7)
    assert logs["resumed"].curves() == logs["full"].curves()
    wa, wb = _weights(full.model), _weights(resumed.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # bitwise
    assert full.history == resumed.history
    # a changed config does not resume from a foreign checkpoint
    loop = {"steps": 12, "lr": 1e-4}
    other = tiny_config(tmp_path / "results", training={"denoiser": loop})
    fresh = train(make_task("denoiser", other, campaign), other.training.denoiser, other.seed,
                  checkpoint=ckpt)
    assert fresh.history[0]["step"] <= 12 and len(fresh.history) >= 1


def test_retraining_with_same_config_and_seed_is_identical(
    campaign: Path, tmp_path: Path, tiny_config: TinyConfig
) -> None:
    loop = {"steps": 10, "val_every_steps": 5}
    cfg = tiny_config(tmp_path / "results", training={"segmenter": loop})
    a = train_network("segmenter", cfg, campaign, tmp_path / "a.pt")
    b = train_network("segmenter", cfg, campaign, tmp_path / "b.pt")
    assert a.metrics == b.metrics and a.history == b.history
    assert {"val_miou", "val_iou_background", "val_loss"} <= set(a.metrics)
    assert a.metrics["val_cation_occ_acc1"] >= a.metrics["val_cation_occ_acc0"]
    (ma, meta_a), (mb, _) = load_model(tmp_path / "a.pt"), load_model(tmp_path / "b.pt")
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(),
                                                  mb.state_dict().values(), strict=True))
    assert meta_a["classes"][0] == "background" and meta_a["max_occupancy"] == 12
    # untracked runs write byte-identical model files (no times, run ids or temp names)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    loop = {"steps": 10, "val_every_steps": 5}
    seeded = tiny_config(tmp_path / "results", training={"segmenter": loop})
    seeded.seed = 4
    c = train_network("segmenter", seeded, campaign, tmp_path / "c.pt")
    assert c.metrics != a.metrics


def test_early_stopping_when_validation_stops_improving(
    campaign: Path, tmp_path: Path, tiny_config: TinyConfig
) -> None:
    loop = {"steps": 40, "val_every_steps": 2, "lr": 1e-12, "early_stopping_patience": 2}
    cfg = tiny_config(tmp_path / "results", training={"denoiser": loop})
    res = train(make_task("denoiser", cfg, campaign), cfg.training.denoiser, cfg.seed)
    assert res.stopped_early and res.steps < 40


@pytest.mark.parametrize(("min_steps", "stop_step"), [(0, 6), (None, 20), (13, 14), (100, 40)])
def test_early_stopping_waits_for_min_steps(
    min_steps: int | None, stop_step: int, campaign: Path, tmp_path: Path,
    tiny_config: TinyConfig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A validation metric that never improves (a segmenter still at 'all background' has
    the same mIoU at every validation) ends the training after ``early_stopping_patience``
    validations, but never before ``early_stopping_min_steps`` (null: half of ``steps``)."""
    loop = {"steps": 40, "val_every_steps": 2, "checkpoint_every_steps": 4,
            "early_stopping_patience": 2, "early_stopping_min_steps": min_steps}
    cfg = tiny_config(tmp_path / "results", training={"denoiser": loop})
    flat = {"val_psnr": 10.0, "val_loss": 1.0}
    monkeypatch.setattr(DenoiserTask, "validate", lambda self, *a: dict(flat))
    res = train(make_task("denoiser", cfg, campaign), cfg.training.denoiser, cfg.seed)
    # first validation (step 2) is the best; 2 without gain by step 6
    assert res.steps == stop_step and res.best_step == 2
    assert res.stopped_early == (stop_step < 40)
    assert [h["step"] for h in res.history] == list(range(2, stop_step + 1, 2))
    if min_steps is None:  # an interruption before the stop: the resumed run stops alike
        ckpt = tmp_path / "a.ckpt"
        part = train(make_task("denoiser", cfg, campaign), cfg.training.denoiser, cfg.seed,
                     checkpoint=ckpt, stop_after_step=9)
        assert part.interrupted and part.steps == 9
        resumed = train(make_task("denoiser", cfg, campaign), cfg.training.denoiser, cfg.seed,
                        checkpoint=ckpt)
        assert (resumed.steps, resumed.stopped_early) == (20, True)
        assert resumed.history == res.history


def test_min_steps_before_stop_defaults_to_half_the_budget(tiny_config: TinyConfig) -> None:
    cfg = tiny_config(None, training={"segmenter": {"steps": 1201}})
    assert cfg.training.segmenter.min_steps_before_stop == 601
    cfg = tiny_config(None, training={"segmenter": {"early_stopping_min_steps": 5000}})
    assert cfg.training.segmenter.min_steps_before_stop == 5000  # may exceed steps: no stop


def test_unsupervised_blind_spot_training_denoises_a_movie(
    tmp_path: Path, tiny_config: TinyConfig
) -> None:
    movie = write_movie(tmp_path / "movie.h5", n_frames=10, size=64, dose_e_per_px=1.0)
    loop = {
        "steps": 120, "val_every_steps": 40, "batch_size": 8,
        "model": {"depth": 2, "base_channels": 16},
    }
    cfg = tiny_config(tmp_path / "results", training={"unsupervised": loop})
    res = train_network("unsupervised", cfg, movie, tmp_path / "u.pt")
    # trained on noisy frames only, judged against the clean frames it never saw
    assert res.metrics["val_psnr"] > res.metrics["val_psnr_noisy"] + 3
    _, meta = load_model(tmp_path / "u.pt")
    assert meta["n_frames"] == 5 and meta["kind"] == "unsupervised"


def test_training_records_the_contrast_regimes_of_its_images(
    tmp_path: Path, tiny_config: TinyConfig
) -> None:
    """The model file's training distribution carries the regimes of the training images
    (index column ``contrast_regime``, etem.analysis.domain); an index without them records
    none (the domain check then says 'unknown')."""
    from etem.io import read_table, write_table

    index = write_campaign(tmp_path / "results", n_structures=6, images_per_structure=2)
    cfg = tiny_config(tmp_path / "results")
    assert "contrast_regimes" not in make_task("denoiser", cfg, index).meta()[
        "training_distribution"]
    df = read_table(index)
    df["contrast_regime"] = ["bright" if i % 4 else "dark" for i in range(len(df))]
    write_table(index, df)
    task = make_task("denoiser", cfg, index)
    got = task.meta()["training_distribution"]["contrast_regimes"]
    train = df[df["structure_id"].astype(str).isin(task.train_structures)
               & df["family"].isin(cfg.training.denoiser.families)]
    want = train["contrast_regime"].value_counts(normalize=True)
    assert got == pytest.approx({k: float(v) for k, v in want.items()})


class _Noisy(torch.nn.Module):
    """The normalised counts as the estimate (no denoising)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


class _Flat(torch.nn.Module):
    """Each patch's mean as the estimate (no structure)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].mean(dim=(2, 3), keepdim=True).expand_as(x[:, :1])


def test_denoiser_validation_at_the_cross_condition_dose(
    campaign: Path, tmp_path: Path, tiny_config: TinyConfig
) -> None:
    """``val_psnr_mohan``: the validation patches at ``evaluation.condition_dose_e_per_px``
    in Mohan et al.'s metric; at ~0.5 e/px the raw counts are far below a flat image there
    (the noise exceeds the contrast)."""
    cfg = tiny_config(tmp_path / "results")
    task = make_task("denoiser", cfg, campaign)
    assert isinstance(task, DenoiserTask)
    doses = task.fixed_dose_batch()["dose_e_per_px"].numpy()
    assert doses == pytest.approx(cfg.evaluation.condition_dose_e_per_px, rel=1e-5)
    cpu = torch.device("cpu")
    noisy, flat = (task.validate(m, False, cpu) for m in (_Noisy(), _Flat()))
    assert np.isfinite(noisy["val_psnr_mohan"]) and np.isfinite(flat["val_psnr_mohan"])
    assert flat["val_psnr_mohan"] > noisy["val_psnr_mohan"] + 10
