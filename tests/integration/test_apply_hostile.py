"""Hostile inputs to `etem apply`: each is one `etem: error:` line naming the file or folder,
exit code != 0, no traceback, nothing written (docs/reliability.md lists them)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from etem.models.factory import build_model
from etem.models.io import save_model
from etem.movies.outputs import LOCK_NAME
from etem.testing import lattice_movie, write_h5

ETEM = str(Path(sys.executable).parent / "etem")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hostile")
    archs = {
        "denoiser": dict(kind="denoiser", depth=2, base_channels=4),
        "segmenter": dict(kind="segmenter", depth=2, base_channels=4, classes=["v", "a", "b"],
                          max_occupancy=3),
    }
    out = {}
    for kind, arch in archs.items():
        torch.manual_seed(0)
        out[kind] = save_model(d / f"{kind}.pt", build_model(arch),
                               {"kind": kind, "arch": arch, "pixel_size_A": 0.2})
    out["movie"] = write_h5(lattice_movie(n_frames=6, size_px=32, event_frame=None, seed=1),
                            d / "movie.h5")
    return out


def _apply(inputs: dict[str, Path], out: Path | str, *extra: str,
           denoiser: str = "denoiser") -> subprocess.CompletedProcess[str]:
    cmd = [ETEM, "apply", "--movie", str(inputs["movie"]), "--out", str(out),
           "--denoiser", str(inputs[denoiser]), "--set", "tracking.enabled=false", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def _one_line(r: subprocess.CompletedProcess[str], *names: str) -> str:
    assert r.returncode != 0, r.stderr[-1500:]
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("etem")]
    assert len(lines) == 1, r.stderr[-1500:]
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def test_missing_movie_is_named_at_once(inputs: dict[str, Path], tmp_path: Path) -> None:
    t0 = time.perf_counter()
    r = subprocess.run([ETEM, "apply", "--movie", str(tmp_path / "nope.h5"), "--out",
                        str(tmp_path / "o"), "--denoiser", str(inputs["denoiser"])],
                       capture_output=True, text=True, timeout=120, check=False)
    seconds = time.perf_counter() - t0
    _one_line(r, "nope.h5", "no such file")
    assert not (tmp_path / "o").exists()
    print(f"missing movie reported in {seconds:.2f} s")  # before torch or MLflow load


def test_out_that_is_a_file_or_lies_under_one(inputs: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("keep me")
    _one_line(_apply(inputs, f), "afile", "not a folder")
    _one_line(_apply(inputs, f / "sub"), "lies under", "which is a file")
    assert f.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_not_writable(inputs: dict[str, Path], tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _one_line(_apply(inputs, ro / "out"), "not writable")
    finally:
        ro.chmod(0o700)


def test_model_of_another_kind_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    r = _apply(inputs, tmp_path / "o", denoiser="segmenter")
    _one_line(r, "segmenter.pt", "an occupancy segmenter, not a supervised denoiser")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_second_writer_into_one_folder_is_refused(inputs: dict[str, Path],
                                                  tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    with open(out / LOCK_NAME, "a+") as held:  # a first apply is writing here
        fcntl.flock(held, fcntl.LOCK_EX)
        _one_line(_apply(inputs, out), "another etem apply is writing into it")
    assert not (out / "summary.json").exists()


def test_folder_of_frames_with_mixed_sizes(inputs: dict[str, Path], tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, size in enumerate((32, 32, 48)):
        tifffile.imwrite(frames / f"f{i:03d}.tif", np.ones((size, size), np.float32))
    r = subprocess.run([ETEM, "apply", "--movie", str(frames), "--out", str(tmp_path / "o"),
                        "--denoiser", str(inputs["denoiser"]),
                        "--set", "apply.preprocess.pixel_size_A=0.2",
                        "--set", "tracking.enabled=false"],
                       capture_output=True, text=True, timeout=300, check=False)
    _one_line(r, "f002.tif")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_movie_the_model_cannot_take_starts_no_run_and_keeps_the_earlier_outputs(
        inputs: dict[str, Path], tmp_path: Path) -> None:
    """A movie 10x coarser than the model's pixels (more than it may be upsampled): refused
    before the MLflow run (tracking on: the store would be in the output folder) and before
    the folder is locked or cleared, so an earlier apply's outputs stay."""
    coarse = write_h5(lattice_movie(n_frames=6, size_px=32, event_frame=None, seed=2,
                                    pixel_size_A=2.0), tmp_path / "coarse.h5")
    out = tmp_path / "o"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    r = subprocess.run([ETEM, "apply", "--movie", str(coarse), "--out", str(out),
                        "--denoiser", str(inputs["denoiser"])],
                       capture_output=True, text=True, timeout=300, check=False)
    _one_line(r, "coarse.h5", "pixel size", "denoise_with=wiener")
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    assert (out / "summary.json").read_text() == "{}"


def test_reused_out_keeps_nothing_of_the_earlier_movie(inputs: dict[str, Path],
                                                       tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    earlier = out / "overlay_occupancy.png"  # written only with a segmenter, by an earlier run
    earlier.write_bytes(b"earlier movie")
    mine = out / "notes.txt"  # not an etem output: left alone
    mine.write_text("keep")
    r = _apply(inputs, out)
    assert r.returncode == 0, r.stderr[-1500:]
    assert not earlier.exists() and mine.read_text() == "keep"
    assert (out / "summary.json").exists()
