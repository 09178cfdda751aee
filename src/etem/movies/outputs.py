"""Outputs of ``etem apply``: the ``results.h5`` contract, its writers and its one reader.

``results.h5`` (written through :func:`etem.io.atomic_path`, readable by h5py, napari, Fiji's
HDF5 plugin)::

    denoised              (T, H, W) float32   intensity, vacuum = 1
    class_map             (T, H, W) uint8     segmenter class (with a segmenter)
    cation_occupancy      (T, H, W) float16   expected atoms per cation column [atoms]
    anion_occupancy       (T, H, W) float16   expected atoms per anion column [atoms]
    columns/<field>       (N,)                per-column tables of all frames (COLUMN_TABLE)
    columns/frame_offsets (T + 1,) int64      rows offsets[t]:offsets[t+1] are frame t
    tracks/<field>        (K,)                one row per column track: track_id, first_frame,
                                              last_frame, n_frames, evidence, x_px, y_px,
                                              log_odds, confidence (etem.analysis.tracks)
    drift_px              (T, 2)  float64     drift (dy, dx) [px]
    frame_stats/<field>   (T,)                the frame statistics (frames.csv)
    event_scores/<field>  (T,)                per-frame event scores
    events/<field>        (E,)                events (events.csv); attrs threshold, calibration, ...
    attrs                 provenance, movie, pixel_size_A [Å], frame_time_s [s], dose, ...

Besides it: ``columns.parquet`` (all column tables, streamed in row groups), ``events.csv``,
``frames.csv``, ``denoised.tif`` (ImageJ float32 stack, pixel size in nm), a GIF preview.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tifffile

from etem.analysis.tracks import (
    LONG_TRACK,
    SHORT_TRACK,
    TRACK_FIELDS,
    PresenceRates,
    presence_rates_from_sums,
    track_confidence,
    track_log_odds,
)
from etem.errors import InputError
from etem.frames.geometry import FrameGeometry
from etem.io import atomic_path, write_table
from etem.movies.events import EventResult

#: Integer fields of the per-column tables (the rest are float64).
INT_FIELDS = ("frame", "track_id", "n_pixels", "class_index")
#: The outputs of one apply (key -> file), as listed in summary.json.
OUTPUT_FILES = {
    "results": "results.h5",
    "columns": "columns.parquet",
    "events": "events.csv",
    "frames": "frames.csv",
    "denoiser_scores": "denoiser_scores.csv (uPSNR of each denoiser on the movie)",
    "denoised_tiff": "denoised.tif",
    "figure_raw_vs_denoised": "raw_vs_denoised.png",
    "figure_confidence": "overlay_confidence.png",
    "figure_occupancy": "overlay_occupancy.png",
    "figure_events": "event_timeline.png",
    "preview": "preview.gif",
    "timing": "timing.json",
    "truth_columns": "truth_columns.csv (movies that carry true columns)",
    "truth_events": "truth_events.csv (movies that carry true events)",
    "finetuned_model": "finetuned_unsupervised.pt (when the blind-spot model was fine-tuned)",
}


#: Lock file of an output folder being written (see :func:`output_lock`).
LOCK_NAME = ".etem-apply.lock"


def output_names() -> list[str]:
    """File names an apply writes into its output folder (from :data:`OUTPUT_FILES`)."""
    return [v.split()[0] for v in OUTPUT_FILES.values()]


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold the output folder ``out`` for one writer; a second one gets an InputError."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"output folder {out}: another etem apply is writing into it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def clear_outputs(out: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove the outputs of an earlier apply from ``out`` (only etem's own file names), so
    a reused folder never mixes two runs (``summary.json`` first: never looks complete)."""
    for name in ["summary.json", *output_names()]:
        if name not in keep:
            (out / name).unlink(missing_ok=True)


class ColumnStore:
    """Per-frame column tables appended to resizable HDF5 datasets under ``/columns``.

    Rows are buffered and written once at least :attr:`BUFFER_ROWS` are pending (one
    resize and one write per field for several frames instead of per frame; the buffer
    holds at most a block of rows, whatever the movie length); every reader flushes first.
    """

    #: Rows buffered before they are written (one HDF5 chunk).
    BUFFER_ROWS = 65536

    def __init__(self, h5: h5py.File, n_frames: int, first_frame: int = 0) -> None:
        self.group = h5.create_group("columns")
        self.offsets = np.zeros(n_frames + 1, dtype=np.int64)
        self.first_frame = first_frame
        self.n = 0
        self.fields: list[str] | None = None
        self._pending: list[dict[str, np.ndarray]] = []
        self._pending_rows = 0

    def append(self, t: int, df: pd.DataFrame) -> None:
        """Append the columns of frame ``t`` (frames in order, from ``first_frame`` on)."""
        if self.fields is None and len(df):
            self.fields = list(df.columns)
            for name in self.fields:
                dt = np.int64 if name in INT_FIELDS else np.float64
                self.group.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(65536,), track_times=False
                )
        if len(df) and self.fields is not None:
            block = {}
            for name in self.fields:
                dt = self.group[name].dtype
                block[name] = (
                    df[name].to_numpy(dtype=dt) if name in df else np.full(len(df), np.nan, dt)
                )
            self._pending.append(block)
            self._pending_rows += len(df)
            self.n += len(df)
            if self._pending_rows >= self.BUFFER_ROWS:
                self._flush()
        self.offsets[t - self.first_frame + 1] = self.n

    def _flush(self) -> None:
        """Write the buffered rows to the datasets."""
        if not self._pending or self.fields is None:
            return
        start = self.n - self._pending_rows
        for name in self.fields:
            ds = self.group[name]
            ds.resize((self.n,))
            ds[start:] = np.concatenate([b[name] for b in self._pending])
        self._pending, self._pending_rows = [], 0

    def finish(self) -> None:
        """Write the frame offsets and the description (after the last frame)."""
        self._flush()
        self.group.create_dataset("frame_offsets", data=self.offsets, track_times=False)
        self.group.attrs["fields"] = self.fields or []
        self.group.attrs["description"] = (
            "rows frame_offsets[t]:frame_offsets[t+1] are the columns of frame t; x_px, y_px "
            "[px] in the frame of the first (drift-corrected) frame, x_A, y_A [Å]"
        )

    def filter_tracks(self, confidence: np.ndarray, min_confidence: float) -> int:
        """Add ``track_confidence`` (``confidence[track_id]``) to every row and remove the rows
        of tracks below ``min_confidence``, compacting the datasets in place block by block
        (bounded memory); returns the number of rows removed. Call before :meth:`finish`."""
        if self.fields is None:
            return 0
        self._flush()
        g = self.group
        if "track_confidence" not in self.fields:
            g.create_dataset(
                "track_confidence", shape=(self.n,), maxshape=(None,), dtype=np.float64,
                chunks=(65536,), track_times=False,
            )
            self.fields.append("track_confidence")
        n_frames = len(self.offsets) - 1
        per_frame = np.zeros(n_frames, dtype=np.int64)
        w, rows = 0, 200_000
        for a in range(0, self.n, rows):
            b = min(a + rows, self.n)
            block = {k: g[k][a:b] for k in self.fields if k != "track_confidence"}
            conf = np.asarray(confidence, dtype=np.float64)[block["track_id"]]
            keep = conf >= min_confidence
            k = int(keep.sum())
            for name, v in block.items():
                g[name][w : w + k] = v[keep]
            g["track_confidence"][w : w + k] = conf[keep]
            per_frame += np.bincount(
                block["frame"][keep] - self.first_frame, minlength=n_frames
            )[:n_frames]
            w += k
        for name in self.fields:
            g[name].resize((w,))
        removed, self.n = self.n - w, w
        self.offsets[1:] = np.cumsum(per_frame)
        return removed

    def frame(self, t: int) -> pd.DataFrame:
        """The column table of frame ``t`` (empty with aligned positions when none)."""
        self._flush()
        a, b = int(self.offsets[t]), int(self.offsets[t + 1])
        if self.fields is None or b <= a:
            return pd.DataFrame({"x_aligned_px": [], "y_aligned_px": []})
        return pd.DataFrame({k: self.group[k][a:b] for k in self.fields})

    def frames(self, a: int, b: int) -> pd.DataFrame:
        """The column tables of frames ``a <= t < b`` (one read per field; empty with
        ``frame, x_px, y_px`` when none)."""
        self._flush()
        lo, hi = int(self.offsets[a]), int(self.offsets[b])
        if self.fields is None or hi <= lo:
            return pd.DataFrame(
                {"frame": np.zeros(0, np.int64), "x_px": np.zeros(0), "y_px": np.zeros(0)}
            )
        return pd.DataFrame({k: self.group[k][lo:hi] for k in self.fields})

    def iter_tables(self, rows: int = 200_000) -> Iterator[pd.DataFrame]:
        """All column tables in blocks of ``rows`` rows (bounded memory)."""
        if self.fields is None:
            return
        self._flush()
        for a in range(0, self.n, rows):
            yield pd.DataFrame({k: self.group[k][a : a + rows] for k in self.fields})


class TrackStore:
    """Track summaries (:data:`etem.analysis.tracks.TRACK_FIELDS`) appended to resizable
    HDF5 datasets under ``/tracks`` as tracks end; :meth:`confidence` adds their evidence."""

    def __init__(self, h5: h5py.File) -> None:
        self.group = h5.create_group("tracks")
        self.n = 0
        for name in TRACK_FIELDS:
            dt = np.float64 if name in ("evidence", "x_px", "y_px") else np.int64
            self.group.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(65536,), track_times=False
            )

    def append(self, df: pd.DataFrame) -> None:
        """Append track summaries."""
        if not len(df):
            return
        for name in TRACK_FIELDS:
            ds = self.group[name]
            ds.resize((self.n + len(df),))
            ds[self.n :] = df[name].to_numpy(dtype=ds.dtype)
        self.n += len(df)

    def confidence(
        self, n_tracks: int, movie_frames: int, memory: int, area_px2: float, radius_px: float,
        window_frames: int = 1,
        rows: int = 200_000,
    ) -> tuple[np.ndarray, PresenceRates]:
        """Track log odds and confidence (module :mod:`etem.analysis.tracks`; ``window_frames``
        = the denoiser's temporal window) written to ``/tracks``; returns the confidence
        indexed by track id (8 bytes per track) and the presence rates. The track table is
        read in blocks of ``rows`` tracks (two passes: the presence rates' integer sums, then
        each block's log odds)."""
        g = self.group
        k_n = self.n
        w = max(int(window_frames), 1)
        sums = np.zeros(3, dtype=np.int64)  # detections and span of long tracks, short dets
        size = n_tracks  # of the array indexed by track id
        for a in range(0, k_n, rows):
            n = g["n_frames"][a : a + rows]
            span = g["last_frame"][a : a + rows] - g["first_frame"][a : a + rows] + 1
            long_ = n >= LONG_TRACK * w
            sums += (n[long_].sum(), span[long_].sum(), n[n <= SHORT_TRACK * w].sum())
            size = max(size, int(g["track_id"][a : a + rows].max()) + 1)
        rates = presence_rates_from_sums(
            int(sums[0]), int(sums[1]), int(sums[2]), movie_frames, area_px2, radius_px
        )
        lo_ds = g.create_dataset("log_odds", shape=(k_n,), dtype=np.float64, track_times=False)
        conf_ds = g.create_dataset(
            "confidence", shape=(k_n,), dtype=np.float64, track_times=False
        )
        by_id = np.zeros(size)
        for a in range(0, k_n, rows):
            tracks = pd.DataFrame({k: g[k][a : a + rows] for k in TRACK_FIELDS})
            lo = track_log_odds(tracks, movie_frames, memory, rates, window_frames)
            conf = track_confidence(lo)
            lo_ds[a : a + len(lo)] = lo
            conf_ds[a : a + len(lo)] = conf
            by_id[tracks["track_id"].to_numpy()] = conf
        g.attrs["q_real"] = rates.q_real
        g.attrs["q_noise"] = rates.q_noise
        g.attrs["window_frames"] = window_frames
        g.attrs["description"] = (
            "one row per column track; confidence = posterior probability of a real column "
            "(etem.analysis.tracks)"
        )
        return by_id, rates


def read_columns(path: str | Path, frame: int | None = None) -> pd.DataFrame:
    """Column tables of a ``results.h5`` (all frames, or one ``frame``)."""
    with h5py.File(path, "r") as h5:
        g = h5["columns"]
        fields = [k for k in g if k != "frame_offsets"]
        off = g["frame_offsets"][()]
        a, b = (0, int(off[-1])) if frame is None else (int(off[frame]), int(off[frame + 1]))
        return pd.DataFrame({k: g[k][a:b] for k in fields})


def create_frame_datasets(
    h5: h5py.File, geo: FrameGeometry, segmenter: bool, n_frames: int | None = None
) -> tuple[h5py.Dataset, dict[str, h5py.Dataset]]:
    """The ``denoised`` dataset and, with a segmenter, the occupancy datasets, of
    ``n_frames`` frames (default: the movie's), one chunk per frame.

    The denoised frames are stored uncompressed: lzf does not shrink float32 frames (the
    low mantissa bits are noise; 4.00 of 4.00 MiB per 1024² frame) and cost ~0.1 s per
    frame to try; the segmenter maps (class indices, float16) keep lzf.
    """
    shape = (geo.n_frames if n_frames is None else n_frames, geo.height, geo.width)
    chunks = (1, geo.height, geo.width)
    den = h5.create_dataset(
        "denoised", shape=shape, dtype=np.float32, chunks=chunks, track_times=False
    )
    den.attrs["units"] = "intensity, vacuum = 1 (counts / dose per pixel)"
    seg: dict[str, h5py.Dataset] = {}
    if segmenter:
        for key, dt in (
            ("class_map", np.uint8),
            ("cation_occupancy", np.float16),
            ("anion_occupancy", np.float16),
        ):
            seg[key] = h5.create_dataset(
                key, shape=shape, dtype=dt, chunks=chunks, compression="lzf", track_times=False
            )
    return den, seg


def _table_group(h5: h5py.File, name: str, df: pd.DataFrame) -> h5py.Group:
    g = h5.create_group(name)
    for k in df.columns:
        v = df[k].to_numpy()
        g.create_dataset(k, data=v.astype("S") if v.dtype == object else v, track_times=False)
    return g


def write_tables_h5(
    h5: h5py.File, stats: pd.DataFrame, events: EventResult, drift: np.ndarray
) -> None:
    """Drift, frame statistics, event scores and events into ``results.h5``."""
    h5.create_dataset("drift_px", data=drift, track_times=False).attrs["columns"] = "dy, dx [px]"
    _table_group(h5, "frame_stats", stats)
    _table_group(h5, "event_scores", events.scores)
    g = _table_group(h5, "events", events.events)
    g.attrs["threshold"] = events.threshold
    g.attrs["calibration_frames"] = events.calibration_frames
    g.attrs["calibration"] = events.calibration


class Preview:
    """Small 8-bit frames kept for the GIF preview (bounded number and size)."""

    def __init__(self, n_frames: int, max_frames: int, size_px: int) -> None:
        self.step = max(1, math.ceil(n_frames / max_frames)) if max_frames else 0
        self.size = size_px
        self.frames: list[np.ndarray] = []
        self.lohi: tuple[float, float] | None = None

    def add(self, t: int, img: np.ndarray) -> None:
        """Keep frame ``t`` (every ``step``-th frame, block-averaged to <= ``size`` px)."""
        if not self.step or t % self.step:
            return
        f = max(1, math.ceil(max(img.shape) / self.size))
        small = img[: img.shape[0] // f * f, : img.shape[1] // f * f]
        small = small.reshape(small.shape[0] // f, f, small.shape[1] // f, f).mean(axis=(1, 3))
        if self.lohi is None:
            lo, hi = np.percentile(small, [0.5, 99.5])
            self.lohi = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
        lo, hi = self.lohi
        self.frames.append((np.clip((small - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8))


def write_columns_parquet(path: Path, store: ColumnStore, prov: dict[str, Any]) -> None:
    """All column tables as one parquet file, streamed in row groups (provenance metadata)."""
    meta = {b"etem": json.dumps(prov, sort_keys=True, default=str).encode()}
    with atomic_path(path, suffix=".parquet") as tmp:
        writer = None
        for df in store.iter_tables():
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema.with_metadata(meta))
            writer.write_table(table.replace_schema_metadata(meta))
        if writer is None:
            pq.write_table(
                pa.table({"frame": pa.array([], pa.int64())}).replace_schema_metadata(meta), tmp
            )
        else:
            writer.close()


def write_tiff(path: Path, ds: h5py.Dataset, geo: FrameGeometry) -> None:
    """Denoised frames as a float32 TIFF stack (ImageJ hyperstack, BigTIFF when > 3.5 GB)."""
    n, h, w = ds.shape
    big = n * h * w * 4 > 3.5e9
    res = 1.0 / (geo.pixel_size_A / 10.0)  # px per nm

    def frames() -> Iterator[np.ndarray]:
        for i in range(n):
            yield np.asarray(ds[i], dtype=np.float32)

    with atomic_path(path, suffix=".tif") as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=big, imagej=not big) as tif:
            meta: dict[str, Any] = {"axes": "TYX", "unit": "nm"}
            if geo.frame_time_s:
                meta["finterval"] = geo.frame_time_s
            tif.write(
                frames(),
                shape=(n, h, w),
                dtype=np.float32,
                resolution=(res, res),
                metadata=meta if not big else None,
                contiguous=True,
            )


def write_tables(
    out: Path,
    store: ColumnStore,
    stats: pd.DataFrame,
    events: EventResult,
    prov: dict[str, Any],
) -> dict[str, str]:
    """columns.parquet, events.csv and frames.csv; returns {key: file name}."""
    write_columns_parquet(out / "columns.parquet", store, prov)
    write_table(out / "events.csv", events.events, metadata=prov)  # plain CSV + sidecar
    write_table(out / "frames.csv", stats.merge(events.scores, on="frame"), metadata=prov)
    return {"columns": "columns.parquet", "events": "events.csv", "frames": "frames.csv"}
