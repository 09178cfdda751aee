"""Lazy readers of microscope movies: one :class:`Movie` for every format a Titan/K3 user has.

Supported inputs (``open_movie(path)``):

* Gatan ``.dm3``/``.dm4``: single images and 3D stacks (rosettasciio);
* a **folder** (or list, or glob pattern) of per-frame files, e.g. the
  ``Hour_00/Minute_00/Second_00/*.dm4`` tree written by GMS in-situ recording or a folder of
  per-frame TIFFs; frames are ordered by natural sort of their paths (:mod:`etem.frames.files`;
  a list: as given) and read one at a time;
* MRC ``.mrc``/``.mrcs`` (mrcfile, memory-mapped; voxel size [Å]);
* TIFF ``.tif``/``.tiff`` (tifffile: ImageJ hyperstacks, BigTIFF, OME; pixel size from
  XResolution and the ImageJ ``unit``, frame interval from ImageJ ``finterval``);
* EMD ``.emd`` (Thermo Velox and Berkeley/NCEM, rosettasciio), TIA ``.ser``/``.emi``;
* ``.npy`` (memory-mapped) and etem's own HDF5 (``/frames`` (T, H, W) counts with attributes
  ``pixel_size_A``, ``frame_time_s``, ``dose_e_per_px_per_frame``).

Frames are never loaded as a whole: ``movie.frames`` is a lazy (T, H, W) array (dask, memmap,
h5py dataset or a per-file sequence) and ``movie.iter_chunks(n)`` yields float32 blocks.
Axis order is taken from the reader's axis metadata (signal axes y, x last), not assumed: a
Velox stack is (t, y, x) in rosettasciio but (y, x, t) in ncempy.

Long module (about 700 lines), on purpose: every format's reader beside the one
:class:`Movie` contract and the one metadata mapping (pixel size, frame time, dose), so a
format is added in one place; each reader is a short function.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import h5py
import mrcfile
import numpy as np
import rsciio.digitalmicrograph as rsciio_dm
import rsciio.emd as rsciio_emd
import rsciio.tia as rsciio_tia
import tifffile

from etem.errors import InputError
from etem.frames.breaks import frame_numbers, time_gaps
from etem.frames.files import is_pattern, movie_files, natural_key
from etem.progress import progress

log = logging.getLogger("etem.frames.readers")

#: Length units of reader metadata -> Å.
_UNIT_TO_A = {
    "m": 1e10,
    "mm": 1e7,
    "um": 1e4,
    "µm": 1e4,
    "μm": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "nm": 10.0,
    "n_m": 10.0,
    "nanometer": 10.0,
    "nanometers": 10.0,
    "a": 1.0,
    "å": 1.0,
    "Å": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "pm": 0.01,
    "p_m": 0.01,
}
#: Time units -> s.
_TIME_TO_S = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0, "h": 3600.0}

#: File suffix -> format name.
_SUFFIX_FORMAT = {
    ".dm3": "dm",
    ".dm4": "dm",
    ".mrc": "mrc",
    ".mrcs": "mrc",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".emd": "emd",
    ".ser": "tia",
    ".emi": "tia",
    ".npy": "npy",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
}
#: What ``open_movie`` accepts (for messages and ``etem movie-info --help``).
SUPPORTED = "dm3, dm4, mrc, mrcs, tif, tiff, emd (Velox, NCEM), ser/emi (TIA), npy, h5 (etem)"


@dataclass
class Movie:
    """A lazily read movie of shape (T, H, W).

    Attributes
    ----------
    frames : array-like
        Lazy (T, H, W) array: slicing along T returns numpy (or dask) arrays.
    pixel_size_A : float or None
        Pixel size [Å] (None when the file does not say).
    frame_time_s : float or None
        Time between frames [s].
    dose_e_per_px_per_frame : float or None
        Mean dose [e/px/frame] when the file records it.
    source_format : str
        ``dm``, ``dm-folder``, ``mrc``, ``tiff``, ``tiff-folder``, ``emd``, ``tia``, ``npy``,
        ``hdf5``.
    path : Path
        The file or folder read.
    metadata : dict
        What else the file says: ``title``; ``imaging_mode`` (``TEM``, ``STEM`` or None: not
        recorded; :func:`imaging_mode`) for vendor files read through rosettasciio.
    """

    frames: Any
    pixel_size_A: float | None
    frame_time_s: float | None
    dose_e_per_px_per_frame: float | None
    source_format: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, H, W) [frames, px, px]."""
        return tuple(int(s) for s in self.frames.shape)  # type: ignore[return-value]

    @property
    def dose(self) -> float | None:
        """Alias of :attr:`dose_e_per_px_per_frame` [e/px/frame]."""
        return self.dose_e_per_px_per_frame

    @property
    def fps(self) -> float | None:
        """Frame rate [1/s] when the frame time is known."""
        return 1.0 / self.frame_time_s if self.frame_time_s else None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` as float32 (n, H, W); InputError on NaN/inf or I/O errors."""
        try:
            block = self.frames[start:stop]
            if hasattr(block, "compute"):
                block = block.compute()
            block = np.asarray(block, dtype=np.float32)
        except InputError:
            raise
        except Exception as exc:  # truncated payloads only fail when the data are read
            raise InputError(
                f"{self.path}: cannot read frames {start}-{stop - 1} "
                f"(truncated or corrupt {self.source_format} file?): {exc}"
            ) from None
        if block.ndim == 2:
            block = block[None]
        bad = ~np.isfinite(block)
        if bad.any():
            t = start + int(np.argwhere(bad.any(axis=(1, 2)))[0, 0])
            raise InputError(f"{self.path}: frame {t} contains NaN or inf values")
        return block

    def iter_chunks(self, n: int, first: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, frames)`` blocks of at most ``n`` frames as float32 [counts],
        from frame ``first`` on."""
        if n < 1:
            raise ValueError("chunk size must be >= 1")
        for start in range(first, len(self), n):
            yield start, self.read(start, min(start + n, len(self)))

    def close(self) -> None:
        """Close open file handles."""
        for c in self._closers:
            try:
                c.close()
            except Exception:  # pragma: no cover - best effort
                pass
        self._closers.clear()

    def __enter__(self) -> Movie:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def time_gaps(self) -> list[int]:
        """Raw frames that follow a gap in time (frame numbers of per-frame files, or frame
        times, stepping by more than :data:`etem.frames.breaks.GAP_FACTOR` x the median)."""
        nums = self.metadata.get("frame_numbers")
        if nums is not None and len(nums) == len(self):
            return time_gaps(np.diff(np.asarray(nums, dtype=np.float64)))
        times = self.metadata.get("frame_times_s")
        if times is not None and len(times) == len(self):
            return time_gaps(np.diff(np.asarray(times, dtype=np.float64)))
        return []

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (what ``etem movie-info`` prints)."""
        t, h, w = self.shape
        return {
            "path": str(self.path),
            "format": self.source_format,
            "n_frames": t,
            "height_px": h,
            "width_px": w,
            "dtype": str(self.frames.dtype),
            "pixel_size_A": self.pixel_size_A,
            "frame_time_s": self.frame_time_s,
            "fps": self.fps,
            "dose_e_per_px_per_frame": self.dose_e_per_px_per_frame,
        }


class FileSequence:
    """A lazy (T, H, W) stack of per-frame files (GMS in-situ folders, TIFF sequences)."""

    def __init__(self, files: Sequence[Path], reader: Any, first: np.ndarray) -> None:
        self.files = list(files)
        self._reader = reader
        self._frame_shape = tuple(first.shape[-2:])
        self.dtype = first.dtype
        self.shape = (len(self.files), *self._frame_shape)
        self.ndim = 3

    def _load(self, i: int) -> np.ndarray:
        img = np.asarray(self._reader(self.files[i]))
        img = np.squeeze(img)
        if img.shape != self._frame_shape:
            raise InputError(
                f"{self.files[i]}: frame shape {img.shape} differs from the first frame's "
                f"{self._frame_shape}"
            )
        return img

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return self._load(int(key) % len(self.files))
        if isinstance(key, slice):
            idx = range(*key.indices(len(self.files)))
            if not idx:
                return np.empty((0, *self._frame_shape), self.dtype)
            return np.stack([self._load(i) for i in idx])
        raise TypeError("FileSequence supports integer or slice indexing along T")


# -- entry point -----------------------------------------------------------------------------
def open_movie(path: str | Path | Sequence[str | Path], allow_2d: bool = True) -> Movie:
    """Open a movie lazily.

    Parameters
    ----------
    path : str, Path or list of paths
        A movie file, a folder of per-frame files, a glob pattern of per-frame files
        (:func:`etem.frames.files.movie_files`: natural order), or a list of per-frame files.
    allow_2d : bool
        Treat a single 2D image as a 1-frame movie (with a warning) instead of refusing it.

    Returns
    -------
    Movie
        Lazy (T, H, W) frames with pixel size [Å], frame time [s] and dose when known.

    Raises
    ------
    InputError
        Missing, empty, truncated or corrupt input; unsupported format; wrong dtype; more than
        3 dimensions.
    """
    if isinstance(path, str | Path) and not Path(path).exists() and is_pattern(path):
        matched = movie_files(path)
        if not matched:
            raise InputError(f"movie {path}: no file matches the pattern")
        path = matched[0] if len(matched) == 1 else list(matched)
    if isinstance(path, list | tuple):
        files = [Path(p) for p in path]
        for f in files:
            if not f.is_file():
                raise InputError(f"movie frame {f}: no such file")
        movie = _open_sequence(files, Path(files[0]).parent if files else Path("."))
    else:
        p = Path(cast("str | Path", path))
        if not p.exists():
            raise InputError(f"movie {p}: no such file or folder")
        if p.is_dir():
            movie = _open_folder(p)
        else:
            fmt = _SUFFIX_FORMAT.get(p.suffix.lower())
            if fmt is None:
                raise InputError(
                    f"movie {p}: unsupported format {p.suffix!r} (supported: {SUPPORTED})"
                )
            if p.stat().st_size == 0:
                raise InputError(f"movie {p}: empty file")
            opener = {
                "dm": _open_rsciio,
                "emd": _open_rsciio,
                "tia": _open_rsciio,
                "mrc": _open_mrc,
                "tiff": _open_tiff,
                "npy": _open_npy,
                "hdf5": _open_hdf5,
            }[fmt]
            try:
                movie = opener(p, fmt)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(
                    f"movie {p}: cannot read as {fmt} (truncated or corrupt?): "
                    f"{type(exc).__name__}: {exc}"
                ) from None
    return _validate(movie, allow_2d)


def _validate(movie: Movie, allow_2d: bool) -> Movie:
    frames = movie.frames
    dtype = np.dtype(frames.dtype)
    if dtype.kind not in "uif":
        movie.close()
        raise InputError(
            f"movie {movie.path}: unsupported pixel type {dtype} (need integer or real counts)"
        )
    if frames.ndim == 2:
        if not allow_2d:
            movie.close()
            raise InputError(f"movie {movie.path}: a single 2D image, not a movie")
        log.warning("%s: a single 2D image; treated as a 1-frame movie", movie.path)
        movie.frames = _Expand(frames)
    elif frames.ndim != 3:
        movie.close()
        raise InputError(
            f"movie {movie.path}: expected a 2D image or a (T, H, W) stack, got shape "
            f"{tuple(frames.shape)}"
        )
    t, h, w = movie.shape
    if t == 0 or h == 0 or w == 0:
        movie.close()
        raise InputError(f"movie {movie.path}: empty movie (shape {(t, h, w)})")
    if movie.pixel_size_A is not None and not (
        movie.pixel_size_A > 0 and np.isfinite(movie.pixel_size_A)
    ):
        movie.pixel_size_A = None
    return movie


class _Expand:
    """A 2D lazy image seen as a (1, H, W) stack."""

    def __init__(self, img: Any) -> None:
        self._img = img
        self.dtype = img.dtype
        self.shape = (1, *img.shape)
        self.ndim = 3

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return np.asarray(self._img)[None][key]
        if key in (0, -1):
            return np.asarray(self._img)
        raise IndexError(key)


# -- rosettasciio formats ------------------------------------------------------------------
#: rosettasciio readers by format
RSCIIO_READERS: dict[str, Any] = {
    "dm": rsciio_dm.file_reader,
    "emd": rsciio_emd.file_reader,
    "tia": rsciio_tia.file_reader,
}


def _rsciio_reader(fmt: str) -> Any:
    return RSCIIO_READERS[fmt]


def _open_rsciio(p: Path, fmt: str) -> Movie:
    signals = _rsciio_reader(fmt)(str(p), lazy=True)
    for s_ in signals:
        _mark_time_axis(s_)
    images = [s for s in signals if sum(not a.get("navigate", False) for a in s["axes"]) == 2]
    if not images:
        dims = [tuple(s["data"].shape) for s in signals]
        raise InputError(f"movie {p}: no image signal found (signals of shapes {dims})")
    if len(images) > 1:
        log.info(
            "%s: %d image signals; using the first (%s)",
            p,
            len(images),
            images[0].get("metadata", {}).get("General", {}).get("title", "?"),
        )
    sig = images[0]
    data, axes = sig["data"], sorted(sig["axes"], key=lambda a: int(a.get("index_in_array", 0)))
    # move the two signal axes (y, x) last, whatever order the reader uses
    nav = [i for i, a in enumerate(axes) if a.get("navigate", False)]
    sg = [i for i, a in enumerate(axes) if not a.get("navigate", False)]
    if len(axes) != data.ndim:
        nav, sg = list(range(data.ndim - 2)), [data.ndim - 2, data.ndim - 1]
    if nav + sg != list(range(data.ndim)):
        data = data.transpose(nav + sg)
    if len(nav) > 1:
        keep = [i for i in nav if data.shape[nav.index(i)] > 1]
        if len(keep) > 1:
            raise InputError(
                f"movie {p}: more than one navigation axis ({data.shape}); not a movie"
            )
        data = data.reshape((-1, *data.shape[-2:]))
    pixel = _length_A(axes[sg[-1]]) if sg else None
    frame_time = _time_s(axes[nav[0]]) if nav else None
    if fmt == "dm" and frame_time is None:
        frame_time = _dm_frame_time(sig.get("original_metadata", {}))
    source = "dm" if fmt == "dm" else fmt
    if fmt == "emd":
        source = "emd-velox" if "Core" in sig.get("original_metadata", {}) else "emd-ncem"
    return Movie(
        data,
        pixel,
        frame_time,
        None,
        source,
        p,
        metadata={"title": sig.get("metadata", {}).get("General", {}).get("title"),
                  "imaging_mode": imaging_mode(sig.get("original_metadata", {}))
                  or _ser_imaging_mode(p, fmt)},
    )


def _ser_imaging_mode(p: Path, fmt: str) -> str | None:
    """The imaging mode of a TIA ``NAME_N.ser`` from its ``NAME.emi`` (which holds the
    microscope's description) when that file lies beside it."""
    if fmt != "tia" or p.suffix.lower() != ".ser":
        return None
    emi = p.with_name(re.sub(r"_\d+$", "", p.stem) + ".emi")
    if not emi.is_file():
        return None
    try:
        signals = _rsciio_reader(fmt)(str(emi), lazy=True)
    except Exception as exc:  # an unreadable .emi only loses the mode
        log.info("%s: imaging mode not read (%s)", emi, exc)
        return None
    return next((m for s in signals if (m := imaging_mode(s.get("original_metadata", {})))),
                None)


def imaging_mode(om: dict[str, Any]) -> str | None:
    """``TEM`` (a camera image of the transmitted beam: HRTEM) or ``STEM`` (a scanned
    probe) as a vendor file records it in its original metadata, None when it does not say:
    Thermo Velox EMD ``BinaryResult.AcquisitionUnit`` (``CameraImage``/``ScanImage``, else
    ``Optics.OperatingMode`` 1 / 2), Gatan DM ``ImageTags.Microscope Info`` (``Illumination
    Mode``, ``Operation Mode``), FEI TIA ``ObjectInfo.ExperimentalDescription.Mode``."""
    unit = str(_get(om, "BinaryResult", "AcquisitionUnit") or "").lower()
    if "camera" in unit:
        return "TEM"
    if "scan" in unit:
        return "STEM"
    op = str(_get(om, "Optics", "OperatingMode") or "").strip()
    if op in ("1", "2"):
        return "TEM" if op == "1" else "STEM"
    tags = _get(om, "ImageList", "TagGroup0", "ImageTags")
    info = _get(tags, "Microscope Info") or _get(tags, "Microscope_Info")
    words = [_get(info, k) for k in ("Illumination Mode", "Illumination_Mode", "Operation Mode",
                                     "Operation_Mode")]
    words.append(_get(om, "ObjectInfo", "ExperimentalDescription", "Mode"))
    for w in (str(v).upper() for v in words if v is not None):
        if "STEM" in w or "SCANNING" in w:
            return "STEM"
        if "TEM" in w.split() or w.strip() in ("TEM", "IMAGING"):
            return "TEM"
    return None


def _get(d: Any, *keys: str) -> Any:
    """``d[k1][k2]...`` or None when a level is missing or not a mapping."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _mark_time_axis(sig: dict[str, Any]) -> None:
    """Berkeley EMD marks every axis as a signal axis: call the time-like one navigation.

    The time axis is the one with time units or a time-like name, else the first axis.
    """
    axes = sig["axes"]
    if len(axes) != 3 or any(a.get("navigate", False) for a in axes):
        return
    timey = [
        a
        for a in axes
        if str(a.get("units") or "").strip().lower() in _TIME_TO_S
        or str(a.get("name", "")).strip().lower() in ("t", "time", "frame", "frames")
    ]
    (timey[0] if timey else min(axes, key=lambda a: int(a.get("index_in_array", 0))))[
        "navigate"
    ] = True


def _length_A(axis: dict[str, Any]) -> float | None:
    units = axis.get("units")
    scale = float(axis.get("scale", 1.0) or 1.0)
    if units is None or str(units).strip() in ("", "<undefined>", "px", "pixel", "pixels"):
        return None
    factor = _UNIT_TO_A.get(str(units).strip()) or _UNIT_TO_A.get(str(units).strip().lower())
    return scale * factor if factor else None


def _time_s(axis: dict[str, Any]) -> float | None:
    units = str(axis.get("units") or "").strip().lower()
    factor = _TIME_TO_S.get(units)
    return float(axis.get("scale", 0.0)) * factor if factor else None


def _dm_frame_time(om: dict[str, Any]) -> float | None:
    """Exposure time [s] of a DM frame (``ImageTags.DataBar.Exposure Time (s)``) if recorded."""
    try:
        tags = om["ImageList"]["TagGroup0"]["ImageTags"]
        value = tags["DataBar"]["Exposure Time (s)"]
        return float(value) if float(value) > 0 else None
    except (KeyError, TypeError, ValueError):
        return None


def _read_single_dm(path: Path) -> np.ndarray:
    return np.asarray(rsciio_dm.file_reader(str(path), lazy=False)[0]["data"])


# -- folders / sequences of per-frame files ------------------------------------------------
def _open_folder(folder: Path) -> Movie:
    files = [
        f
        for f in folder.rglob("*")
        if f.is_file() and f.suffix.lower() in (".dm4", ".dm3", ".tif", ".tiff")
    ]
    if not files:
        raise InputError(f"movie folder {folder}: no .dm4/.dm3/.tif frames found")
    suffixes = {f.suffix.lower().replace("tiff", "tif") for f in files}
    if len(suffixes) > 1:
        raise InputError(f"movie folder {folder}: mixed frame formats {sorted(suffixes)}")
    files.sort(key=lambda f: natural_key(f.relative_to(folder)))
    return _open_sequence(files, folder)


def _open_sequence(files: list[Path], where: Path) -> Movie:
    if not files:
        raise InputError(f"movie {where}: empty list of frames")
    fmt = _SUFFIX_FORMAT.get(files[0].suffix.lower())
    if fmt not in ("dm", "tiff"):
        raise InputError(
            f"movie {where}: per-frame files must be .dm3/.dm4/.tif, got {files[0].name}"
        )
    try:
        first = (_open_rsciio if fmt == "dm" else _open_tiff)(files[0], fmt)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"movie frame {files[0]}: cannot read as {fmt}: {exc}") from None
    img = first.read(0, 1)[0] if len(first) == 1 else None
    if img is None:
        raise InputError(f"movie frame {files[0]}: a stack, expected one frame per file")
    reader = _read_single_dm if fmt == "dm" else _read_single_tiff
    raw_first = np.asarray(first.frames[0])
    first.close()
    _check_frame_shapes(files, fmt, tuple(np.squeeze(raw_first).shape))
    seq = FileSequence(files, reader, raw_first)
    return Movie(
        seq,
        first.pixel_size_A,
        first.frame_time_s,
        None,
        f"{fmt}-folder",
        where,
        metadata={"n_files": len(files), "frame_numbers": frame_numbers([f.stem for f in files])},
    )


def _header_shape(path: Path, fmt: str) -> tuple[int, ...]:
    """Frame shape of a per-frame file from its header (no pixel data read)."""
    if fmt == "tiff":
        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    else:
        shape = _rsciio_reader("dm")(str(path), lazy=True)[0]["data"].shape
    return tuple(int(n) for n in shape if n != 1)


def _check_frame_shapes(files: list[Path], fmt: str, first: tuple[int, ...]) -> None:
    """Every per-frame file has the first frame's shape (checked at open, from headers)."""
    for f in progress(files[1:], "check frame shapes", total=len(files) - 1):
        try:
            shape = _header_shape(f, fmt)
        except Exception as exc:
            raise InputError(f"movie frame {f}: cannot read as {fmt}: {exc}") from None
        if shape != first:
            raise InputError(
                f"movie frame {f}: shape {shape} differs from the first frame's {first}"
            )


def _read_single_tiff(path: Path) -> np.ndarray:
    try:
        return tifffile.imread(path)
    except Exception as exc:
        raise InputError(f"movie frame {path}: cannot read as tiff: {exc}") from None


# -- TIFF -----------------------------------------------------------------------------------
class _LogCapture(logging.Handler):
    """Collect WARNING+ records of a library logger while active (tifffile warns, not raises)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.logger = logging.getLogger(name)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> _LogCapture:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self)


class _TiffPages:
    """Lazy (T, H, W) view of a TIFF series, read page range by page range."""

    def __init__(self, tif: Any, series: Any, n: int, frame_shape: tuple[int, int]) -> None:
        self._tif = tif
        self._series = series
        self.shape = (n, *frame_shape)
        self.dtype = np.dtype(series.dtype)
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return self[int(key) : int(key) + 1][0]
        idx = range(*key.indices(self.shape[0]))
        if not idx:
            return np.empty((0, *self.shape[1:]), self.dtype)
        arr = self._series.asarray(key=slice(idx.start, idx.stop, idx.step))
        return np.asarray(arr).reshape((len(idx), *self.shape[1:]))


def _open_tiff(p: Path, fmt: str) -> Movie:
    problems = _LogCapture("tifffile")
    with problems:
        tif = tifffile.TiffFile(p)
        try:
            series = tif.series[0]
            _ = len(tif.pages)
        except Exception:
            tif.close()
            raise
    if problems.messages:
        tif.close()
        raise InputError(f"movie {p}: truncated or corrupt TIFF ({problems.messages[0]})")
    try:
        axes = series.axes
        shape = series.shape
        yx = [i for i, a in enumerate(axes) if a in "YX"]
        if "S" in axes and shape[axes.index("S")] > 1:
            raise InputError(f"movie {p}: RGB TIFF ({axes} {shape}); need a grayscale stack")
        if len(yx) != 2 or yx != [len(axes) - 2, len(axes) - 1]:
            raise InputError(f"movie {p}: unexpected TIFF axes {axes!r} {shape}")
        nav = [(a, s) for a, s in zip(axes[:-2], shape[:-2], strict=True) if s > 1]
        if len(nav) > 1:
            raise InputError(
                f"movie {p}: hyperstack with several non-trivial axes {nav}; need one time axis"
            )
        n = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        frames = _TiffPages(tif, series, n, (shape[-2], shape[-1]))
        page = tif.pages[0]
        pixel = _tiff_pixel_A(tif, page)
        ij = tif.imagej_metadata or {}
        frame_time = None
        if ij.get("finterval"):
            frame_time = float(ij["finterval"]) * _TIME_TO_S.get(
                str(ij.get("tunit", "s")).lower(), 1.0
            )
    except Exception:
        tif.close()
        raise
    movie = Movie(
        frames,
        pixel,
        frame_time,
        None,
        "tiff",
        p,
        metadata={"axes": axes, "bigtiff": tif.is_bigtiff, "imagej": tif.is_imagej},
    )
    movie._closers.append(tif)
    return movie


def _tiff_pixel_A(tif: Any, page: Any) -> float | None:
    ij = tif.imagej_metadata or {}
    unit = ij.get("unit")
    if isinstance(unit, str):
        unit = unit.replace("\\u00B5", "µ").strip()
    tag = page.tags.get("XResolution")
    if unit and tag is not None:
        num, den = tag.value
        factor = _UNIT_TO_A.get(unit) or _UNIT_TO_A.get(unit.lower())
        if factor and num > 0:
            return den / num * factor
    return None


# -- MRC, npy, HDF5 -------------------------------------------------------------------------
def _open_mrc(p: Path, fmt: str) -> Movie:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            mrc = mrcfile.mmap(p, mode="r", permissive=False)
        except RuntimeWarning as exc:
            raise InputError(f"movie {p}: invalid MRC file: {exc}") from None
    data = mrc.data
    if data is None:
        mrc.close()
        raise InputError(f"movie {p}: MRC file without data (truncated?)")
    vx = float(mrc.voxel_size.x)
    pixel = vx if vx > 0 else None
    movie = Movie(data, pixel, None, None, "mrc", p)
    movie._closers.append(mrc)
    return movie


def _open_npy(p: Path, fmt: str) -> Movie:
    data = np.load(p, mmap_mode="r", allow_pickle=False)
    return Movie(data, None, None, None, "npy", p)


def _open_hdf5(p: Path, fmt: str) -> Movie:
    fh = h5py.File(p, "r")
    if "frames" not in fh:
        keys = list(fh.keys())
        fh.close()
        raise InputError(f"movie {p}: HDF5 without a /frames dataset (keys: {keys})")
    ds = fh["frames"]

    def attr(name: str) -> float | None:
        for obj in (ds, fh):
            if name in obj.attrs:
                v = float(np.asarray(obj.attrs[name]))
                return v if np.isfinite(v) and v > 0 else None
        return None

    movie = Movie(
        ds,
        attr("pixel_size_A"),
        attr("frame_time_s"),
        attr("dose_e_per_px_per_frame"),
        "hdf5",
        p,
        metadata={"datasets": sorted(fh.keys())},
    )
    movie._closers.append(fh)
    return movie
