"""The whole movie stage on synthetic movies with known columns and a known event."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etem.config import load_config
from etem.errors import InputError
from etem.frames.readers import open_movie
from etem.io import file_digest
from etem.movies.apply import ApplyModels, apply_movie
from etem.testing import lattice_movie, write_h5
from tests.movies_fixtures import blur_model, segmenter_model, window_model, write_movie_file

PX_A = 0.2


def _cfg(apply: dict[str, object] | None = None) -> object:
    """The test config; ``apply``: keys under ``apply.`` (e.g. ``events.calibration_frames``)."""
    over = {
        "tracking.enabled": False,
        "apply.io.chunk_frames": 8,
        "apply.inference.tile_px": 64,
        "apply.inference.overlap_px": 16,
        "apply.inference.precision": "fp32",
        "apply.io.preview_max_frames": 20,
        # the denoiser given denoises (auto without scoring: the choice among denoisers is
        # tested in test_movies_selection.py)
        "apply.inference.score_targets": 0,
    }
    over.update({f"apply.{k}": v for k, v in (apply or {}).items()})
    return load_config(None, over)


def test_event_found_and_stable_stretch_quiet(tmp_path: Path) -> None:
    lm = lattice_movie(
        n_frames=40,
        size_px=96,
        event_frame=26,
        drift_px_per_frame=0.2,
        dose_e_per_px_per_frame=2.0,
        seed=0,
    )
    movie = open_movie(write_h5(lm, tmp_path / "m.h5"))
    s = apply_movie(
        movie,
        tmp_path / "out",
        _cfg({"events.calibration_frames": 16}),
        ApplyModels(denoiser=blur_model(sigma_px=2.0), segmenter=segmenter_model()),
    )
    assert s["n_events"] == 1, s["events"]
    assert abs(s["events"][0]["onset_frame"] - 26) <= 2
    assert s["events"][0]["onset_time_s"] == pytest.approx(s["events"][0]["onset_frame"] * 0.025)
    # the summary says how the threshold detector was calibrated (the default: over the whole
    # movie; calibration_frames is then unused)
    ewma = s["event_ewma"]
    assert ewma["calibration"] == "whole-movie robust" and ewma["calibration_frames"] is None
    assert ewma["null"] == "Gaussian"  # 40 frames: too short for the noise-model fit
    assert ewma["threshold"] == s["event_threshold"] and "n_columns_ewma" in ewma["noise_scales"]
    # drift 0.2 px/frame recovered (content moved by +drift)
    assert s["drift_total_px"] == pytest.approx([39 * 0.2, 39 * 0.2], abs=0.6)
    # outputs: every listed file exists; summary written last
    out = tmp_path / "out"
    for f in s["files"].values():
        assert (out / f).stat().st_size > 0
    assert (out / "summary.json").stat().st_mtime_ns >= max(
        (out / f).stat().st_mtime_ns for f in s["files"].values()
    )
    # in-memory models have no file digest; summaries carry no run id
    assert s["models"] == {k: {"path": None, "sha256": None} for k in ("denoiser", "segmenter")}
    cols = pd.read_parquet(out / "columns.parquet")
    assert {"frame", "track_id", "x_A", "y_A", "llr", "cation_occupancy"} <= set(cols.columns)
    # the columns vanished at the event: fewer columns in the centre after it
    c = 48
    centre = np.hypot(cols["x_px"] - c, cols["y_px"] - c) < 10
    before = centre[cols["frame"] < 24].sum() / 24
    after = centre[cols["frame"] >= 28].sum() / 12
    assert before >= 3 and after <= 0.5
    # HDF5 contract and the TIFF stack
    import h5py
    import tifffile

    with h5py.File(out / "results.h5") as fh:
        assert fh["denoised"].shape == (40, 96, 96)
        assert fh["class_map"].dtype == np.uint8
        off = fh["columns/frame_offsets"][()]
        assert off[-1] == len(cols) and len(off) == 41
        assert fh["events/onset_frame"][0] == s["events"][0]["onset_frame"]
        assert fh["events"].attrs["calibration"] == "whole-movie robust"
    with tifffile.TiffFile(out / "denoised.tif") as tif:
        assert tif.series[0].shape == (40, 96, 96)
        assert tif.imagej_metadata["unit"] == "nm"


def _recall(lm, cols: pd.DataFrame, radius_px: float, margin_px: float) -> float:  # type: ignore[no-untyped-def]
    from scipy.spatial import cKDTree

    rec = []
    for t, truth in enumerate(lm.columns):
        size = lm.clean.shape[-1]
        keep = ((truth > margin_px) & (truth < size - margin_px)).all(axis=1)
        found = cols.loc[cols["frame"] == t, ["x_px", "y_px"]].to_numpy()
        if not len(found):
            rec.append(0.0)
            continue
        d, _ = cKDTree(found).query(truth[keep])
        rec.append(float((d <= radius_px).mean()))
    return float(np.mean(rec))


def test_column_recall_at_demo_dose(tmp_path: Path) -> None:
    """0.5 e/px/frame (the demo movie dose): recall >= 0.9 after (5-frame) denoising."""
    lm = lattice_movie(
        n_frames=12, size_px=96, event_frame=None, dose_e_per_px_per_frame=0.5, seed=4
    )
    movie = open_movie(write_h5(lm, tmp_path / "m.h5"))
    s = apply_movie(
        movie,
        tmp_path / "out",
        _cfg({"preprocess.drift_correction": False, "events.calibration_frames": 6,
              "io.write_tiff": False}),
        ApplyModels(unsupervised=window_model()),
    )
    # the 5-frame window: track presence counted in independent looks of 5 frames
    assert s["tracks"]["window_frames"] == 5
    cols = pd.read_parquet(tmp_path / "out" / "columns.parquet")
    radius = 0.5 / PX_A  # columns.match_radius_A default [Å] -> px
    assert _recall(lm, cols, radius, margin_px=4) >= 0.9
    # raw single frames at this dose do not reach it (the denoising matters)
    from etem.analysis.columns import find_columns

    raw = find_columns(lm.counts[0].astype(float), PX_A, 0.3, 1.2, 0.05)
    raw["frame"] = 0
    assert _recall(lm, raw, radius, margin_px=4) < 0.9 or len(raw) > 2 * len(lm.columns[0])


@pytest.mark.parametrize("fmt", ["npy", "mrc", "tiff", "tiff-folder", "emd"])
def test_pipeline_runs_on_every_format(fmt: str, tmp_path: Path) -> None:
    lm = lattice_movie(
        n_frames=8, size_px=64, event_frame=None, dose_e_per_px_per_frame=2.0, seed=1
    )
    p = write_movie_file(fmt, tmp_path, lm.counts, PX_A)
    cfg = _cfg({"events.calibration_frames": 4,
                "preprocess.pixel_size_A": PX_A if fmt == "npy" else None})
    s = apply_movie(
        open_movie(p), tmp_path / "out", cfg, ApplyModels(denoiser=blur_model(sigma_px=2.0))
    )
    assert s["n_frames"] == 8 and s["pixel_size_A"] == pytest.approx(PX_A, rel=1e-5)
    assert s["dose_source"] == "estimated"
    assert abs(s["n_columns"] - 25) <= 3  # 5 x 5 lattice


def test_outputs_are_deterministic(tmp_path: Path) -> None:
    lm = lattice_movie(n_frames=10, size_px=64, event_frame=6, dose_e_per_px_per_frame=2.0, seed=2)
    p = write_h5(lm, tmp_path / "m.h5")
    for run in ("a", "b"):
        apply_movie(
            open_movie(p),
            tmp_path / run,
            _cfg({"events.calibration_frames": 4}),
            ApplyModels(denoiser=blur_model()),
        )
    for f in (
        "results.h5",
        "columns.parquet",
        "events.csv",
        "frames.csv",
        "denoised.tif",
        "summary.json",
    ):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_pixel_size_mismatch(tmp_path: Path) -> None:
    lm = lattice_movie(n_frames=6, size_px=96, event_frame=None, pixel_size_A=0.1, seed=0)
    movie = open_movie(write_h5(lm, tmp_path / "m.h5"))
    # 2x finer than the model: binned 2x2 with a note
    s = apply_movie(
        movie,
        tmp_path / "binned",
        _cfg({"events.calibration_frames": 4}),
        ApplyModels(denoiser=blur_model(pixel_size_A=0.2)),
    )
    assert s["bin_factor"] == 2 and s["frame_shape_px"] == [48, 48]
    assert s["pixel_size_A"] == pytest.approx(0.2) and s["notes"]
    # 2x coarser than the model: counts split over 2x2 pixels, dose per pixel / 4
    s = apply_movie(
        movie,
        tmp_path / "split",
        _cfg({"events.calibration_frames": 4}),
        ApplyModels(denoiser=blur_model(pixel_size_A=0.05)),
    )
    assert s["frame_shape_px"] == [192, 192] and s["pixel_size_A"] == pytest.approx(0.05)
    assert s["dose_e_per_px_per_frame"] == pytest.approx(lm.dose_e_per_px_per_frame / 4)
    # not an integer ratio: resampled by pixel overlap (counts conserved), said in the notes
    s = apply_movie(
        movie,
        tmp_path / "resampled",
        _cfg({"events.calibration_frames": 4}),
        ApplyModels(denoiser=blur_model(pixel_size_A=0.13)),
    )
    assert s["frame_shape_px"] == [73, 73] and s["pixel_size_A"] == pytest.approx(0.13)
    assert s["bin_factor"] == 1 and any("resampled" in n for n in s["notes"])
    assert s["dose_e_per_px_per_frame"] == pytest.approx(lm.dose_e_per_px_per_frame * 1.69)
    # columns found on the resampled grid map back onto the movie's true columns
    truth = s["truth"]["columns"]
    assert truth["recall"] > 0.95 and truth["precision"] > 0.95 and truth["rmse_A"] < 0.15
    # more than 4x coarser than the model: refused, and no summary that looks complete
    with pytest.raises(InputError, match="does not match the model"):
        apply_movie(
            movie, tmp_path / "refused", _cfg(), ApplyModels(denoiser=blur_model(pixel_size_A=0.02))
        )
    assert not (tmp_path / "refused" / "summary.json").exists()
    # refuse instead of binning when asked
    with pytest.raises(InputError):
        apply_movie(
            movie,
            tmp_path / "r2",
            _cfg({"preprocess.pixel_size_mismatch": "refuse"}),
            ApplyModels(denoiser=blur_model(pixel_size_A=0.2)),
        )


def test_single_image_runs_as_one_frame(tmp_path: Path) -> None:
    lm = lattice_movie(n_frames=1, size_px=64, event_frame=None, dose_e_per_px_per_frame=4.0)
    np.save(tmp_path / "img.npy", lm.counts[0])
    s = apply_movie(
        open_movie(tmp_path / "img.npy"),
        tmp_path / "out",
        _cfg({"preprocess.pixel_size_A": PX_A, "events.calibration_frames": 3}),
        ApplyModels(denoiser=blur_model()),
    )
    assert s["n_frames"] == 1 and s["n_events"] == 0 and s["n_columns"] > 10


def _save_models(folder: Path) -> dict[str, Path]:
    import torch

    from etem.models.factory import build_model
    from etem.models.io import save_model

    archs = {
        "denoiser": dict(kind="denoiser", depth=2, base_channels=4),
        "unsupervised": dict(kind="unsupervised", depth=2, base_channels=4, n_frames=5),
        "segmenter": dict(
            kind="segmenter", depth=2, base_channels=4, classes=["v", "a", "b"], max_occupancy=3
        ),
    }
    out = {}
    for kind, arch in archs.items():
        torch.manual_seed(0)
        out[kind] = save_model(
            folder / f"{kind}.pt",
            build_model(arch),
            {"kind": kind, "arch": arch, "pixel_size_A": PX_A},
        )
    return out


def test_cli_apply_tracks_models_in_mlflow(tmp_path: Path, etem_bin: str) -> None:
    from etem.analysis.likelihood import Calibration

    lm = lattice_movie(n_frames=8, size_px=64, event_frame=None, seed=5)
    movie = write_h5(lm, tmp_path / "m.h5")
    models = _save_models(tmp_path)
    rng = np.random.default_rng(0)
    cal = tmp_path / "cal.json"
    Calibration.fit(
        pd.DataFrame({"lambda_vac": np.full(200, 2.0), "u": rng.uniform(size=200)})
    ).save(cal)
    res = tmp_path / "res"
    cmd = [
        etem_bin,
        "--tag",
        "rule=apply_movie",
        "apply",
        "--movie",
        str(movie),
        "--out",
        str(tmp_path / "out"),
        "--set",
        f"results_dir={res}",
        "--set",
        "apply.events.calibration_frames=4",
        "--set",
        "apply.inference.tile_px=32",
        "--set",
        "apply.inference.overlap_px=8",
        "--set",  # the calibrated network (auto may choose a classical filter: no calibration)
        "apply.inference.denoise_with=supervised",
    ]
    for kind, p in models.items():
        cmd += [f"--{kind}", str(p)]
    r = subprocess.run(
        [*cmd, "--calibration", str(cal)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["denoiser"] == "supervised" and s["segmenter"] is True
    assert {k: m["sha256"] for k, m in s["models"].items()} == {
        k: file_digest(p) for k, p in models.items()}
    assert s["mean_confidence"] is not None and 0 <= s["mean_confidence"] <= 1
    from mlflow.tracking import MlflowClient

    # a standalone apply tracks into its --out, never the campaign folder of the config
    assert not res.exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`etem.stage` = 'apply'",
    )
    assert len(runs) == 1
    tags = runs[0].data.tags
    assert tags["etem.model.denoiser.sha256"] == file_digest(models["denoiser"])
    assert "etem.model_run_ids" not in tags  # their training runs are not in this store
    assert runs[0].data.metrics["n_frames"] == 8


def test_cli_bad_input_one_line_error(tmp_path: Path, etem_bin: str) -> None:
    models = _save_models(tmp_path)
    bad = tmp_path / "broken.mrc"
    bad.write_bytes(b"\x00" * 100)
    out = tmp_path / "out"
    r = subprocess.run(
        [
            etem_bin,
            "apply",
            "--movie",
            str(bad),
            "--out",
            str(out),
            "--denoiser",
            str(models["denoiser"]),
            "--set",
            "tracking.enabled=false",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 3
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("etem: error:")]
    assert len(lines) == 1 and "broken.mrc" in lines[0] and "Traceback" not in r.stderr
    assert not (out / "summary.json").exists()
    r = subprocess.run(
        [etem_bin, "movie-info", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 3 and r.stderr.startswith("etem: error:")


def test_cli_apply_of_a_quoted_glob_pattern(tmp_path: Path, etem_bin: str) -> None:
    """A glob row's one argument, as the workflow passes it: `etem apply` and its three passes
    (apply-prepare, apply-shard, apply-gather) given the quoted pattern (expanded by etem, not
    the shell: a space, ',' and ';' in the folder are data) open the pattern's frames in
    natural order; the results are named after the pattern's folder, not 'f_*'."""
    import shlex

    import tifffile

    lm = lattice_movie(n_frames=8, size_px=64, event_frame=None, seed=5)
    assert lm.counts is not None
    folder = tmp_path / "run 03, 600C;touch X"
    folder.mkdir()
    for i, frame in enumerate(lm.counts):
        tifffile.imwrite(folder / f"f_{i}.tif", frame.astype(np.uint16))
    tifffile.imwrite(folder / "dark.tif", np.zeros((64, 64), np.uint16))  # not matched
    pattern = str(folder / "f_*.tif")
    models = _save_models(tmp_path)
    common = (f" --denoiser {shlex.quote(str(models['denoiser']))} --set tracking.enabled=false"
              f" --set apply.preprocess.pixel_size_A={PX_A} --set apply.events.calibration_frames=4"
              " --set apply.inference.tile_px=32 --set apply.inference.overlap_px=8")
    etem = f"cd {shlex.quote(str(tmp_path))} && {shlex.quote(etem_bin)}"
    q = shlex.quote

    def run(command: str) -> None:
        done = subprocess.run(["bash", "-c", f"{etem} {command} {common}"], capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]

    one = tmp_path / "one"
    run(f"apply --movie {q(pattern)} --out {q(str(one))}")
    s = json.loads((one / "summary.json").read_text())
    assert s["movie"] == folder.name and s["n_frames"] == 8
    prepared, shard, passes = tmp_path / "prepare.h5", tmp_path / "shard.h5", tmp_path / "passes"
    run(f"apply-prepare --movie {q(pattern)} --out {q(str(prepared))}")
    run(f"apply-shard --movie {q(pattern)} --prepared {q(str(prepared))} --frames 0:8"
        f" --out {q(str(shard))}")
    run(f"apply-gather --movie {q(pattern)} --prepared {q(str(prepared))}"
        f" --shards {q(str(shard))} --out {q(str(passes))}")
    s2 = json.loads((passes / "summary.json").read_text())
    assert s2["movie"] == folder.name
    assert {k: s2[k] for k in ("n_frames", "n_columns", "n_events")} == {
        k: s[k] for k in ("n_frames", "n_columns", "n_events")}
    assert not (tmp_path / "X").exists()
