"""The blind-spot network trained on a group of experiment movies (one condition): patches
streamed from every movie in proportion to its frames, each normalised by its own dose,
frames read per patch beyond the memory budget, the movies recorded by content digest."""

from __future__ import annotations

import glob
import json
import pickle
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from etem.cli import main
from etem.config import EtemConfig
from etem.data.datasets import collate
from etem.errors import InputError
from etem.io import sampled_digest
from etem.models.io import load_model
from etem.testing import lattice_image
from etem.training import tasks
from etem.training.metrics import psnr
from etem.training.run import train_network
from etem.training.tasks import UnsupervisedTask, open_training_movie
from tests.training_fixtures import write_movie

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _tiff_movie(path: Path, n_frames: int, dose: float, seed: int) -> Path:
    """A static lattice imaged at ``dose`` [e/px/frame] (Poisson), as a TIFF stack."""
    rng = np.random.default_rng(seed)
    clean, _, _ = lattice_image(48, 0.2)
    frames = rng.poisson(np.repeat(clean[None], n_frames, axis=0) * dose).astype(np.float32)
    tifffile.imwrite(path, frames)
    return path


@pytest.fixture
def group(tmp_path: Path) -> list[Path]:
    return [_tiff_movie(tmp_path / "a.tif", 20, 0.5, 1),
            _tiff_movie(tmp_path / "b.tif", 60, 2.0, 2)]


def test_group_samples_every_movie_by_frames_at_its_own_dose(
        group: list[Path], tiny_config: object, tmp_path: Path) -> None:
    cfg: EtemConfig = tiny_config(tmp_path / "results")  # type: ignore[operator]
    task = UnsupervisedTask(cfg, cfg.training.unsupervised, group)
    assert [m["digest"] for m in task.movies] == [sampled_digest(p) for p in group]
    scales = [m["dose_e_per_px"] for m in task.movies]
    assert scales[0] == pytest.approx(0.5 * scales[1] / 2.0, rel=0.15)  # each its own dose
    drawn = [float(task.train_set[(step, j)]["scale"].item()) for step in range(50)
             for j in range(8)]
    share_b = np.mean(np.isclose(drawn, scales[1]))
    assert share_b == pytest.approx(60 / 80, abs=0.07)  # in proportion to frames
    # the normalised inputs of both movies have mean ~1 (a dose-independent network input)
    for step in range(3):
        x = task.train_set[(step, 0)]["input"]
        assert 0.5 < float(x.mean()) < 1.6


def test_frames_stay_on_disk_beyond_the_budget(group: list[Path]) -> None:
    frames, _, _, _ = open_training_movie(group[1], load_below_bytes=1)
    assert not isinstance(frames, np.ndarray)  # read per patch
    assert np.asarray(frames[3])[:4, :4].shape == (4, 4)
    loaded, _, _, _ = open_training_movie(group[1])
    assert isinstance(loaded, np.ndarray)


def test_group_training_writes_a_model_naming_its_movies(
        group: list[Path], tiny_config: object, tmp_path: Path) -> None:
    cfg: EtemConfig = tiny_config(  # type: ignore[operator]
        tmp_path / "results", training={"unsupervised": {"steps": 4, "val_every_steps": 2,
                                                         "val_samples": 4, "patch_px": 32,
                                                         "val_patch_px": 32}})
    out = tmp_path / "group.pt"
    result = train_network("unsupervised", cfg, group, out, panels=False)
    assert result.steps == 4
    _, meta = load_model(out)
    assert [Path(m["path"]).name for m in meta["movies"]] == ["a.tif", "b.tif"]
    assert meta["movie_shape"][0] == 80


class _Recorder:
    """Stands in for the MLflow StageRun: records the texts and tags logged."""

    run_id = None

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.tags: dict[str, str] = {}

    def log_text(self, text: str, name: str) -> None:
        self.texts[name] = text

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def __getattr__(self, name: str) -> object:
        return lambda *a, **k: None


def test_a_glob_of_frames_joins_the_group_and_is_logged_by_its_files(
        group: list[Path], tiny_config: object, tmp_path: Path) -> None:
    """A sheet's glob row trains like a folder: the pattern (in a folder whose name has a
    space, ';' and a glob character) is expanded by the training, frames in natural order,
    and the log lists the files it matched with their digest."""
    folder = tmp_path / "glob frames;touch X [1]"
    folder.mkdir()
    frames = tifffile.imread(_tiff_movie(tmp_path / "src.tif", 12, 1.0, 3))
    for i, fr in enumerate(frames):
        tifffile.imwrite(folder / f"frame_{i}.tif", fr)
    tifffile.imwrite(folder / "other_0.tif", frames[0])  # not matched
    pattern = Path(glob.escape(str(folder))) / "frame_*.tif"
    cfg: EtemConfig = tiny_config(  # type: ignore[operator]
        tmp_path / "results", training={"unsupervised": {"steps": 2, "val_every_steps": 2,
                                                         "val_samples": 4, "patch_px": 32,
                                                         "val_patch_px": 32}})
    tracker = _Recorder()
    out = tmp_path / "group.pt"
    train_network("unsupervised", cfg, [group[0], pattern], out, tracker=tracker,  # type: ignore[arg-type]
                  panels=False)
    logged = json.loads(tracker.texts["movies.json"])
    files = [str(folder / f"frame_{i}.tif") for i in range(12)]  # frame_2 before frame_10
    assert logged[1]["path"] == str(pattern)
    assert logged[1]["files"] == files
    assert logged[1]["digest"] == sampled_digest(files)
    assert logged[1]["shape"] == [12, 48, 48]
    assert "files" not in logged[0] and logged[0]["digest"] == sampled_digest(group[0])
    assert "frame_*.tif:" in tracker.tags["etem.movies"]
    _, meta = load_model(out)
    assert meta["movie_shape"][0] == 20 + 12
    # the frames in the order apply reads them (the same files, natural order)
    task = UnsupervisedTask(cfg, cfg.training.unsupervised, [group[0], pattern])
    part = task.train_set.parts[1]  # type: ignore[union-attr]
    assert np.array_equal(np.asarray(part.frames[10]), frames[10])
    assert not (tmp_path / "X").exists()
    # a group of one glob row (a single movie) logs its files alike
    alone = _Recorder()
    train_network("unsupervised", cfg, pattern, tmp_path / "alone.pt", tracker=alone,
                  panels=False, stop_after_step=1)
    (record,) = json.loads(alone.texts["movies.json"])
    assert record == {"path": str(pattern), "files": files, "digest": sampled_digest(files)}


def test_a_pattern_that_matches_nothing_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no file matches the pattern$"):
        open_training_movie(tmp_path / "none_*.tif")


@pytest.mark.parametrize("clean_first", [True, False], ids=["clean-first", "clean-second"])
def test_a_group_mixing_movies_with_and_without_clean_trains(
        clean_first: bool, group: list[Path], tiny_config: object, tmp_path: Path) -> None:
    """etem's HDF5 movie with /clean and an experiment movie without it train as one group:
    training batches carry no clean frames (training never uses them); the validation PSNR
    is computed on the samples of the movies that have clean frames, and only on those."""
    synthetic = write_movie(tmp_path / "synthetic.h5", n_frames=12, size=48)
    movies = [synthetic, group[0]] if clean_first else [group[0], synthetic]
    cfg: EtemConfig = tiny_config(  # type: ignore[operator]
        tmp_path / "results", training={"unsupervised": {"steps": 2, "val_every_steps": 2,
                                                         "val_samples": 4, "patch_px": 32,
                                                         "val_patch_px": 32, "batch_size": 4}})
    task = UnsupervisedTask(cfg, cfg.training.unsupervised, movies)
    batch = collate([task.train_set[(step, j)] for step in range(3) for j in range(4)])
    assert "clean" not in batch and len(set(batch["scale"].flatten().tolist())) == 2
    v = task.val_batch()  # validation samples cycle over the movies
    assert v["has_clean"].tolist() == [clean_first, not clean_first] * 2
    keep = v["has_clean"].numpy()
    assert np.isfinite(v["clean"].numpy()[keep]).all()
    noisy = v["target"].numpy()[:, 0]
    task.predict_val = lambda *a: v["target"]  # type: ignore[method-assign]
    metrics = task.validate(None, False, torch.device("cpu"))  # type: ignore[arg-type]
    expected = np.mean([psnr(n, c) for n, c in zip(noisy[keep], v["clean"].numpy()[keep, 0],
                                                   strict=True)])
    assert metrics["val_psnr"] == pytest.approx(expected)
    assert np.isfinite(list(metrics.values())).all()
    task.panels(None, False, torch.device("cpu"))  # type: ignore[arg-type]
    result = train_network("unsupervised", cfg, movies, tmp_path / "mixed.pt", panels=False)
    assert {"val_loss", "val_psnr"} <= set(result.metrics)


def _draw(task: UnsupervisedTask) -> dict[str, torch.Tensor]:
    """A training batch of each of 3 steps and the validation batch, stacked."""
    train = collate([task.train_set[(step, j)] for step in range(3) for j in range(4)])
    return {**train, **{f"val_{k}": v for k, v in task.val_batch().items()}}


def test_an_etem_movie_beyond_the_budget_is_read_per_patch(
        group: list[Path], tiny_config: object, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """etem's HDF5 movie (/frames, /clean) in a group over the memory budget is not read whole:
    the memory allocated while opening the group and drawing batches stays well below the
    movie's size, and the patches are those of the movie loaded whole (under the budget)."""
    synthetic = write_movie(tmp_path / "synthetic.h5", n_frames=480, size=64)
    size = 2 * 480 * 64 * 64 * 4  # frames and clean, float32 (15.7 MB; ~1 MB drawn)
    cfg: EtemConfig = tiny_config(tmp_path / "results")  # type: ignore[operator]
    loaded = _draw(UnsupervisedTask(cfg, cfg.training.unsupervised, [synthetic, group[0]]))
    monkeypatch.setattr(tasks, "GROUP_MEMORY_BYTES", 1)
    tracemalloc.start()
    try:
        task = UnsupervisedTask(cfg, cfg.training.unsupervised, [synthetic, group[0]])
        streamed = _draw(task)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size / 4, (peak, size)
    assert streamed.keys() == loaded.keys()
    for key, value in loaded.items():  # bitwise (NaN: the clean of a movie without)
        torch.testing.assert_close(streamed[key], value, rtol=0, atol=0, equal_nan=True)
    # the movie's lazy frames pickle without their file (spawned DataLoader workers reopen it)
    part = task.train_set.parts[0]  # type: ignore[union-attr]
    again = pickle.loads(pickle.dumps(part))
    assert np.array_equal(again[(5, 1)]["input"], part[(5, 1)]["input"])


def test_streamed_etem_movies_train_alike_in_dataloader_workers(
        tiny_config: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The h5py file of a movie read per patch is opened in each worker process: training
    with 2 DataLoader workers gives the model of training without workers."""
    movies = [write_movie(tmp_path / f"synthetic{i}.h5", n_frames=12, size=48, seed=i)
              for i in range(2)]
    monkeypatch.setattr(tasks, "GROUP_MEMORY_BYTES", 1)
    models = []
    for workers in (0, 2):
        cfg: EtemConfig = tiny_config(  # type: ignore[operator]
            tmp_path / f"results{workers}", training={"unsupervised": {
                "steps": 3, "val_every_steps": 3, "val_samples": 2, "num_workers": workers}})
        out = tmp_path / f"w{workers}.pt"
        train_network("unsupervised", cfg, movies, out, panels=False)
        models.append(load_model(out)[0].state_dict())
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])


def test_each_movie_of_a_group_is_opened_once(
        group: list[Path], tiny_config: object, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first movie of a group is opened once (was twice: held twice in memory while the
    task was set up)."""
    opened: Counter[Path] = Counter()
    real = tasks.open_training_movie

    def counting(path: Path, load_below_bytes: int = 2**31) -> object:
        opened[Path(path)] += 1
        return real(path, load_below_bytes=load_below_bytes)

    monkeypatch.setattr(tasks, "open_training_movie", counting)
    cfg: EtemConfig = tiny_config(tmp_path / "results")  # type: ignore[operator]
    task = UnsupervisedTask(cfg, cfg.training.unsupervised, group)
    assert opened == Counter(group)
    assert len(task.train_set.parts) == 2  # type: ignore[union-attr]


def _sized_movie(path: Path, n_frames: int, h: int, w: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    tifffile.imwrite(path, rng.poisson(1.0, (n_frames, h, w)).astype(np.float32))
    return path


def test_a_group_of_movies_of_different_frame_sizes_trains(
        group: list[Path], tiny_config: object, tmp_path: Path) -> None:
    """Movies of one group with different frame sizes, all at least the patch: patches of
    the configured sizes from each, batches stack."""
    wide = _sized_movie(tmp_path / "wide.tif", 16, 40, 72, 5)
    cfg: EtemConfig = tiny_config(  # type: ignore[operator]
        tmp_path / "results", training={"unsupervised": {
            "steps": 2, "val_every_steps": 2, "val_samples": 4, "patch_px": 32,
            "val_patch_px": 40}})
    task = UnsupervisedTask(cfg, cfg.training.unsupervised, [group[0], wide])
    batch = _draw(task)
    assert batch["input"].shape[-2:] == (32, 32) and batch["val_input"].shape[-2:] == (40, 40)
    result = train_network("unsupervised", cfg, [group[0], wide], tmp_path / "m.pt",
                           panels=False)
    assert result.steps == 2


@pytest.mark.parametrize("patch", ["patch_px", "val_patch_px"])
def test_a_movie_smaller_than_the_patch_is_one_error_before_any_run(
        patch: str, group: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A group's movie smaller than the training or validation patch: one error line naming
    the movie and the sizes, exit 3, no MLflow run started, no model written."""
    import yaml

    small = _sized_movie(tmp_path / "small.tif", 16, 40, 72, 6)
    loop = {"steps": 2, "batch_size": 2, "patch_px": 32, "val_patch_px": 32, "val_samples": 2,
            "val_every_steps": 2, "model": {"depth": 2, "base_channels": 8}, patch: 44}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "sizes", "seed": 1,
                                   "results_dir": str(tmp_path / "results"),
                                   "tracking": {"enabled": True},
                                   "training": {"unsupervised": loop}}))
    out = tmp_path / "m.pt"
    rc = main(["train", "unsupervised", "-c", str(cfg), "--movie", str(group[0]), str(small),
               "--out", str(out), "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"movie {small}: frames of 40x72 px" in err
    assert f"training.unsupervised.{patch} = 44 px" in err
    assert not out.exists()
    db = tmp_path / "results" / "mlflow.db"
    if db.exists():
        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{db.resolve()}")
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def _marked_movie(n_frames: int, size: int = 48) -> np.ndarray:
    """Frame t, pixel (y, x) holds the count (t + 1) 10⁴ + 100 y + x: a sample's target names
    its frame and the pixels it covers (whatever its flip or rotation)."""
    t, y, x = np.mgrid[:n_frames, :size, :size]
    return ((t + 1) * 10_000 + 100 * y + x).astype(np.float32)


def _target_pixels(sample: dict[str, np.ndarray]) -> tuple[int, set[tuple[int, int]]]:
    """(frame, pixels (y, x)) of a sample's target."""
    v = np.rint(sample["target"] * sample["scale"].mean()).astype(np.int64).ravel()
    t = set((v // 10_000 - 1).tolist())
    assert len(t) == 1
    return t.pop(), set(zip(((v % 10_000) // 100).tolist(), (v % 100).tolist(), strict=True))


def _target_frame(sample: dict[str, np.ndarray]) -> int:
    return _target_pixels(sample)[0]


@pytest.mark.parametrize("n_frames, size, val_samples, expected, whole", [
    (48, 96, 8, 8, False),  # a patch fits beside the validation crop
    (20, 96, 16, 5, False),  # at most a quarter of the frames
    (20, 48, 4, 4, True),  # no patch fits beside it: the frames are held out whole
])
def test_a_blind_spot_training_never_trains_on_its_validation_pixels(
        n_frames: int, size: int, val_samples: int, expected: int, whole: bool,
        tiny_config: object, tmp_path: Path) -> None:
    """The validation loss is measured against the noisy pixels of the validation crops (the
    centre square of the validation frames); a network that had trained on them as targets
    could learn their noise (measured: benchmarks/training.md). No training target covers
    them."""
    cfg: EtemConfig = tiny_config(  # type: ignore[operator]
        tmp_path / "results", training={"unsupervised": {"val_samples": val_samples,
                                                         "patch_px": 32, "val_patch_px": 32}})
    source = tasks.MovieFrames(_marked_movie(n_frames, size), 0.2, None, "marked")
    task = UnsupervisedTask(cfg, cfg.training.unsupervised, source)
    (held,) = task.validation_frames
    assert task.cfg.val_samples == expected == len(held)
    val = [_target_pixels({k: v[i].numpy() for k, v in task.val_batch().items()})
           for i in range(expected)]
    assert {t for t, _ in val} == set(held)
    crop = val[0][1]  # the same centre square in every frame
    assert len(crop) == 32 * 32
    drawn = [_target_pixels(task.train_set[(step, j)]) for step in range(150) for j in range(4)]
    assert not [t for t, px in drawn if t in held and px & crop]
    frames = {t for t, _ in drawn}
    assert frames == (set(range(n_frames)) - set(held) if whole else set(range(n_frames)))


def test_a_group_holds_out_validation_crops_of_every_movie(
        tiny_config: object, tmp_path: Path) -> None:
    """A group's validation sample j comes from movie j % n: each movie holds out the crops
    of exactly the frames it validates on."""
    paths = [tmp_path / "a.tif", tmp_path / "b.tif"]
    for path, n in zip(paths, (20, 60), strict=True):
        tifffile.imwrite(path, _marked_movie(n, 96))
    cfg: EtemConfig = tiny_config(  # type: ignore[operator]
        tmp_path / "results", training={"unsupervised": {"val_samples": 5, "patch_px": 32,
                                                         "val_patch_px": 32}})
    task = UnsupervisedTask(cfg, cfg.training.unsupervised, paths)
    # samples 0, 2, 4 from movie a, 1 and 3 from movie b
    assert task.cfg.val_samples == 5
    assert [len(h) for h in task.validation_frames] == [3, 2]
    scales = [m["dose_e_per_px"] for m in task.movies]  # each movie's mean count

    def movie_pixels(sample: dict[str, np.ndarray]) -> tuple[int, int, set[tuple[int, int]]]:
        m = int(np.argmin([abs(sample["scale"].mean() - s) for s in scales]))
        return (m, *_target_pixels(sample))

    val = [movie_pixels({k: v[i].numpy() for k, v in task.val_batch().items()})
           for i in range(5)]
    assert sorted((m, t) for m, t, _ in val) == sorted(
        (m, t) for m, held in enumerate(task.validation_frames) for t in held)
    crop = val[0][2]
    drawn = [movie_pixels(task.train_set[(step, j)]) for step in range(200) for j in range(4)]
    held = {(m, t) for m, t, _ in val}
    assert not [1 for m, t, px in drawn if (m, t) in held and px & crop]
    assert held & {(m, t) for m, t, _ in drawn}  # beside their crops, the frames are used
    assert {m for m, _, _ in drawn} == {0, 1}
