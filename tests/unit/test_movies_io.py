"""Movie readers: every format written here opens lazily with the right frames and axes;
the real microscope files in ../shared/data/real open with their known shape and pixel size;
bad input raises one clear InputError."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from etem.errors import InputError
from etem.frames.readers import imaging_mode, open_movie
from tests.movies_fixtures import write_movie_file

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
T, H, W = 7, 24, 20
PX_A = 0.25  # [Å]
DT_S = 0.025  # [s]


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return np.random.default_rng(1).poisson(3.0, (T, H, W)).astype(np.uint16)


def _write(fmt: str, folder: Path, data: np.ndarray) -> Path:
    return write_movie_file(fmt, folder, data, PX_A, DT_S)


#: format -> (pixel size known, frame time known)
FORMATS = {
    "npy": (False, False),
    "mrc": (True, False),
    "tiff": (True, True),
    "bigtiff": (False, False),
    "hyperstack": (True, False),
    "tiff-folder": (True, False),
    "hdf5": (True, True),
    "emd": (True, True),
    "emd-yxt": (True, True),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_written_formats_open_lazily_with_axes(fmt: str, tmp_path: Path, stack: np.ndarray) -> None:
    p = _write(fmt, tmp_path, stack)
    with open_movie(p) as movie:
        assert movie.shape == (T, H, W)
        assert not isinstance(movie.frames, np.ndarray) or isinstance(movie.frames, np.memmap)
        np.testing.assert_array_equal(movie.read(0, T), stack.astype(np.float32))
        chunks = list(movie.iter_chunks(3))
        assert [s for s, _ in chunks] == [0, 3, 6]
        assert [len(c) for _, c in chunks] == [3, 3, 1]
        has_px, has_dt = FORMATS[fmt]
        if has_px:
            assert movie.pixel_size_A == pytest.approx(PX_A, rel=1e-5)
        else:
            assert movie.pixel_size_A is None
        if has_dt:
            assert movie.frame_time_s == pytest.approx(DT_S, rel=1e-6)
    if fmt == "hdf5":
        assert open_movie(p).dose == 3.0


def test_list_of_frame_files(tmp_path: Path, stack: np.ndarray) -> None:
    folder = _write("tiff-folder", tmp_path, stack)
    files = sorted(folder.rglob("*.tif"), key=lambda f: int(f.stem.split("_")[1]))
    movie = open_movie([str(f) for f in files[2:5]])
    np.testing.assert_array_equal(movie.read(0, 3), stack[2:5].astype(np.float32))


# -- real microscope files (skipped when the shared folder is absent) -----------------------
REAL_FILES = {
    # name: (shape (T, H, W), pixel size [Å] or None, format, imaging mode the file records)
    "ncem_16_STOimage_1.ser": ((1, 1024, 1024), 0.10013, "tia", "STEM"),  # from its .emi
    "ncem_16_STOimage.emi": ((1, 1024, 1024), 0.10013, "tia", "STEM"),
    "ncem_Acquisition_18.emd": ((1, 1024, 1024), 0.12247, "emd-ncem", None),
    "rsciio_fei_example_tem_stack.emd": ((2, 3, 3), None, "emd-velox", "TEM"),
    "rsciio_test_stackbuilder_imagestack.dm3": ((3, 2, 16), None, "dm", None),
    "gold_growth_movie": ((4, 1917, 1851), 1.6349, "tiff-folder", None),
}


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_files_open(name: str) -> None:
    p = REAL / name
    if not p.exists():
        pytest.skip(f"{p} not present")
    shape, px, fmt, mode = REAL_FILES[name]
    with open_movie(p) as movie:
        assert movie.shape == shape
        assert movie.source_format == fmt
        assert movie.metadata.get("imaging_mode") == mode
        if px is not None:
            assert movie.pixel_size_A == pytest.approx(px, rel=1e-3)
        first = movie.read(0, 1)
        assert first.shape == (1, *shape[1:]) and np.isfinite(first).all()


def test_real_velox_axis_order_matches_ncempy() -> None:
    """rosettasciio gives the Velox stack as (t, y, x), ncempy as (y, x, t): same frames."""
    p = REAL / "rsciio_fei_example_tem_stack.emd"
    if not p.exists():
        pytest.skip("real Velox file not present")
    ncempy = pytest.importorskip("ncempy.io.emdVelox")
    with ncempy.fileEMDVelox(str(p)) as emd:
        yxt, _ = emd.get_dataset(0)
    movie = open_movie(p)
    assert movie.frame_time_s == pytest.approx(0.8)
    assert movie.pixel_size_A == pytest.approx(0.0817, rel=1e-3)  # 8.17 pm
    np.testing.assert_array_equal(movie.read(0, 2), np.moveaxis(np.asarray(yxt), -1, 0))


def test_real_gold_movie_frames_in_order() -> None:
    p = REAL / "gold_growth_movie"
    if not p.exists():
        pytest.skip("gold movie not present")
    import tifffile

    files = sorted(p.glob("*.tif"))
    movie = open_movie(p)
    np.testing.assert_array_equal(movie.read(3, 4)[0], tifffile.imread(files[-1]))


# -- bad input ------------------------------------------------------------------------------
def test_missing_and_unsupported(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_movie(tmp_path / "nope.mrc")
    (tmp_path / "x.avi").write_bytes(b"RIFF")
    with pytest.raises(InputError, match="unsupported format"):
        open_movie(tmp_path / "x.avi")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.dm4"):
        open_movie(tmp_path / "empty")
    (tmp_path / "zero.h5").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        open_movie(tmp_path / "zero.h5")


@pytest.mark.parametrize("fmt", ["mrc", "tiff", "hdf5", "npy", "emd"])
def test_truncated_files(fmt: str, tmp_path: Path, stack: np.ndarray) -> None:
    p = _write(fmt, tmp_path, stack)
    blob = p.read_bytes()
    p.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(InputError, match=str(p.name)):
        movie = open_movie(p)
        movie.read(0, len(movie))  # payload errors surface when the frames are read


def test_corrupt_bytes(tmp_path: Path) -> None:
    p = tmp_path / "noise.dm4"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="cannot read as dm"):
        open_movie(p)


def test_2d_image_is_one_frame_movie(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "img.npy"
    np.save(p, np.ones((16, 16), np.uint8))
    with caplog.at_level(logging.WARNING):
        movie = open_movie(p)
    assert movie.shape == (1, 16, 16)
    assert "1-frame movie" in caplog.text
    with pytest.raises(InputError, match="not a movie"):
        open_movie(p, allow_2d=False)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((0, 8, 8), np.uint16), "empty movie"),
        (np.zeros((2, 8, 8), np.complex64), "unsupported pixel type"),
        (np.zeros((2, 2, 8, 8), np.uint16), "expected a 2D image"),
        (np.zeros((3, 8, 8), bool), "unsupported pixel type"),
    ],
)
def test_bad_arrays(array: np.ndarray, match: str, tmp_path: Path) -> None:
    p = tmp_path / "bad.npy"
    np.save(p, array)
    with pytest.raises(InputError, match=match):
        open_movie(p)


def test_nan_frame_named(tmp_path: Path) -> None:
    a = np.ones((5, 8, 8), np.float32)
    a[3, 2, 2] = np.inf
    p = tmp_path / "nan.npy"
    np.save(p, a)
    movie = open_movie(p)
    movie.read(0, 3)
    with pytest.raises(InputError, match="frame 3 contains NaN or inf"):
        list(movie.iter_chunks(2))


def test_frame_folder_shape_mismatch(tmp_path: Path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "f_0.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "f_1.tif", np.zeros((8, 9), np.uint8))
    # refused at open (before any chunk is processed), naming the odd frame
    with pytest.raises(InputError, match=r"f_1\.tif: shape \(8, 9\) differs from the first"):
        open_movie(tmp_path)


def test_hdf5_without_frames(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as fh:
        fh["images"] = np.zeros((2, 8, 8))
    with pytest.raises(InputError, match="without a /frames dataset"):
        open_movie(tmp_path / "x.h5")


@pytest.mark.parametrize(("om", "mode"), [
    ({"BinaryResult": {"AcquisitionUnit": "CameraImage"}, "Optics": {"OperatingMode": "2"}},
     "TEM"),  # Velox: the acquisition unit says what made this image
    ({"BinaryResult": {"AcquisitionUnit": "ScanImage"}}, "STEM"),
    ({"Optics": {"OperatingMode": "2"}}, "STEM"),
    ({"ImageList": {"TagGroup0": {"ImageTags": {"Microscope Info": {
        "Illumination Mode": "STEM", "Operation Mode": "SCANNING"}}}}}, "STEM"),
    ({"ImageList": {"TagGroup0": {"ImageTags": {"Microscope Info": {
        "Illumination Mode": "TEM", "Operation Mode": "IMAGING"}}}}}, "TEM"),
    ({"ObjectInfo": {"ExperimentalDescription": {"Mode": " STEM nP Mh Zoom Diffraction"}}},
     "STEM"),
    ({"ObjectInfo": {"ExperimentalDescription": {"Mode": "TEM HM Imaging"}}}, "TEM"),
    ({"ImageList": {"TagGroup0": {"ImageTags": {"DataBar": {}}}}}, None),
    ({}, None),
])
def test_imaging_mode_from_vendor_metadata(om: dict, mode: str | None) -> None:
    assert imaging_mode(om) == mode
