"""Second pass of ``etem apply``: denoise, segment and find columns in a range of frames.

:func:`run_shard` processes the processed frames ``start <= t < stop`` of a prepared movie
(:mod:`etem.movies.prepare`), reading the 2-frame halo the blind-spot window needs around the
range. Chunks of ``apply.io.chunk_frames`` frames are aligned to multiples of ``chunk_frames``
from frame 0, so every frame sees the same batches whatever the shards are: an N-shard run
gives the same denoised frames and columns as a 1-shard run.

Shard file (``shard_NNN.h5``, contract version :data:`SHARD_VERSION`)::

    denoised           (n, H, W) float32   frames start..stop-1, intensity (vacuum = 1)
    class_map, cation_occupancy, anion_occupancy   (n, H, W)   with a segmenter
    columns/<field>    (N,)                column tables (no track ids), frame = movie frame
    columns/frame_offsets (n + 1,)         rows offsets[i]:offsets[i+1] are frame start + i
    attrs              start, stop, contract_version, processing_s [s]
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from etem.config import EtemConfig
from etem.config.apply import InferenceConfig
from etem.data.inputs import network_input
from etem.errors import InputError
from etem.frames.breaks import segment_window
from etem.frames.geometry import aligned_frames
from etem.frames.readers import Movie
from etem.io import atomic_path
from etem.models.inference import (
    TiledRunner,
    decode_segmentation,
    match_mean,
    window_inputs,
)
from etem.models.io import LoadedModel
from etem.movies.frame_analysis import frame_columns
from etem.movies.outputs import ColumnStore, create_frame_datasets
from etem.movies.prepare import ApplyModels, PreparedMovie, calibration_of, denoiser_of
from etem.movies.selection import classical_filter
from etem.progress import progress

#: Version of the shard file layout.
SHARD_VERSION = 1
#: Fields of an empty column table when no shard found any column.
EMPTY_FIELDS = ("frame", "x_px", "y_px", "x_A", "y_A", "intensity", "x_aligned_px",
                "y_aligned_px")
#: Segmenter outputs stored per frame, in the order of :func:`decode_segmentation`.
SEGMENTATION_MAPS = ("class_map", "cation_occupancy", "anion_occupancy")


def _chunks(
    movie: Movie, prep: PreparedMovie, chunk_frames: int, start: int, stop: int
) -> Iterator[tuple[range, dict[int, np.ndarray]]]:
    """(centre frames, processed frames by index incl. the window halo) per chunk."""
    geo, half = prep.geometry, prep.half_window
    cache: dict[int, np.ndarray] = {}
    for c0 in range(start, stop, chunk_frames):
        c1 = min(c0 + chunk_frames, stop)
        lo, hi = max(0, c0 - half), min(geo.n_frames, c1 + half)
        for t in [t for t in cache if t < lo]:
            del cache[t]
        first_missing = max([lo, *[t + 1 for t in cache]])
        for t, fr in aligned_frames(movie, geo, chunk_frames, prep.drift_px, first_missing, hi):
            cache[t] = fr
        yield range(c0, c1), dict(cache)


def denoise_chunk(
    prep: PreparedMovie,
    model: LoadedModel | None,
    runner: TiledRunner | None,
    frames: dict[int, np.ndarray],
    centre: range,
    dqe: float = 1.0,
    match: bool = True,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """Denoised intensity (vacuum = 1) of the ``centre`` frames (N, H, W) float32; ``dqe``:
    the detector's DQE (the Wiener filter's noise power); ``match``: a network's whole output
    frames scaled to their counts' mean / dose (:func:`match_mean`,
    ``apply.inference.match_mean``); ``counts``: the ``centre`` frames of ``frames`` stacked
    (N, H, W), when the caller has them already (stacked here otherwise)."""
    dose = prep.dose_e_per_px
    if counts is None:
        counts = np.stack([frames[t] for t in centre])
    if model is None or runner is None:  # raw, gaussian or wiener: no network, whole frames
        raw = counts.astype(np.float32) / np.float32(dose)
        if prep.mode == "raw":
            return raw
        filt = classical_filter(prep.mode, dose, prep.gaussian_sigma_px, prep.wiener_alpha, dqe,
                                prep.wiener_smooth_px)
        return np.stack([filt(f) for f in raw]).astype(np.float32)
    if prep.mode == "supervised":
        x = network_input(counts, dose, model.dose_conditioned, model.prefilter, dqe)
        out = runner.run(x)[:, 0]
    else:
        norm = {t: fr / np.float32(dose) for t, fr in frames.items()}
        ts = list(centre)
        n_frames = prep.geometry.n_frames

        def window(i: int) -> np.ndarray:
            return window_inputs(norm, segment_window(ts[i], prep.n_window, prep.breaks,
                                                      n_frames))

        out = runner.run(window, n=len(ts))[:, 0]
    return match_mean(out, counts, dose) if match else out


def runner_for(model: LoadedModel, inference: InferenceConfig) -> TiledRunner:
    """The tiled runner of ``apply`` (tile, overlap, batch, precision, device)."""
    i = inference
    return TiledRunner(model, i.tile_px, i.overlap_px, i.batch_size, i.precision, i.device)


def run_shard(
    movie: Movie,
    prep: PreparedMovie,
    cfg: EtemConfig,
    models: ApplyModels,
    start: int,
    stop: int,
    path: str | Path,
) -> Path:
    """Denoise, segment and find columns in frames ``start <= t < stop``; write ``path``."""
    geo = prep.geometry
    chunk = cfg.apply.io.chunk_frames
    if not 0 <= start < stop <= geo.n_frames or start % chunk:
        raise InputError(
            f"frames {start}:{stop}: need 0 <= start < stop <= {geo.n_frames} with start a "
            f"multiple of apply.io.chunk_frames ({chunk})"
        )
    model = denoiser_of(prep, models)
    runner = runner_for(model, cfg.apply.inference) if model is not None else None
    calibration = calibration_of(prep, models)
    seg_model = models.segmenter
    seg_runner = runner_for(seg_model, cfg.apply.inference) if seg_model is not None else None
    t0 = time.perf_counter()
    n = stop - start
    with atomic_path(Path(path), suffix=".h5") as tmp, h5py.File(tmp, "w") as h5:
        den_ds, seg_ds = create_frame_datasets(h5, geo, seg_runner is not None, n)
        store = ColumnStore(h5, n, first_frame=start)
        batches = _chunks(movie, prep, chunk, start, stop)
        for centre, frames in progress(batches, "apply", total=math.ceil(n / chunk)):
            counts = np.stack([frames[t] for t in centre])
            intensity = denoise_chunk(prep, model, runner, frames, centre,
                                      cfg.apply.preprocess.detector_dqe,
                                      cfg.apply.inference.match_mean, counts)
            seg = None
            if seg_runner is not None and seg_model is not None:
                dose = prep.dose_e_per_px
                xs = network_input(counts, dose, seg_model.dose_conditioned)
                module = seg_model.module
                seg = seg_runner.run(xs, post=functools.partial(decode_segmentation, module=module))
            i0 = centre.start - start
            den_ds[i0 : i0 + len(centre)] = intensity
            for i, key in enumerate(SEGMENTATION_MAPS):
                if seg is not None and key in seg_ds:
                    seg_ds[key][i0 : i0 + len(centre)] = seg[:, i]
            for j, t in enumerate(centre):
                if not prep.columns:  # not resolvable: frame-level statistics only
                    store.append(t, pd.DataFrame())
                    continue
                cols = frame_columns(
                    cfg, t, intensity[j], counts[j], prep.dose_e_per_px, prep.drift_px[t],
                    None if seg is None else seg[j], geo.pixel_size_A, prep.polarity,
                    calibration,
                )
                store.append(t, cols)
        store.finish()
        h5.attrs.update(
            {"start": start, "stop": stop, "contract_version": SHARD_VERSION,
             "processing_s": time.perf_counter() - t0}
        )
    return Path(path)


class ShardReader:
    """Frames and column tables of a movie's shard files, read in frame order."""

    def __init__(self, paths: list[str | Path]) -> None:
        self.files: list[h5py.File] = []
        for p in paths:
            if not Path(p).is_file():
                raise InputError(f"apply shard {p}: no such file")
            f = h5py.File(p, "r")
            if f.attrs.get("contract_version") != SHARD_VERSION:
                f.close()
                raise InputError(f"apply shard {p}: not a shard file of this etem version")
            self.files.append(f)
        self.files.sort(key=lambda f: int(f.attrs["start"]))
        ranges = [(int(f.attrs["start"]), int(f.attrs["stop"])) for f in self.files]
        for (_, b0), (a1, _) in itertools.pairwise(ranges):
            if a1 != b0:
                raise InputError(f"apply shards do not tile the movie: {b0} != {a1}")
        self.start = ranges[0][0] if ranges else 0
        self.stop = ranges[-1][1] if ranges else 0
        self.processing_s = float(sum(f.attrs["processing_s"] for f in self.files))
        self.has_segmentation = bool(self.files) and "class_map" in self.files[0]

    def frames(self) -> Iterator[tuple[int, h5py.File, int]]:
        """(movie frame t, shard file, index of t in the file) in order."""
        for f in self.files:
            a, b = int(f.attrs["start"]), int(f.attrs["stop"])
            for t in range(a, b):
                yield t, f, t - a

    def fields(self) -> list[str]:
        """The column-table fields (of the first shard that found columns)."""
        for f in self.files:
            names = [str(k) for k in f["columns"].attrs.get("fields", [])]
            if names:
                return names
        return []

    @staticmethod
    def columns(f: h5py.File, i: int, fields: list[str]) -> pd.DataFrame:
        """The column table of frame index ``i`` of shard file ``f`` (empty: no rows)."""
        g = f["columns"]
        off = g["frame_offsets"]
        a, b = int(off[i]), int(off[i + 1])
        if b <= a or not fields:
            return pd.DataFrame({k: np.zeros(0) for k in (fields or EMPTY_FIELDS)})
        return pd.DataFrame({k: g[k][a:b] for k in fields})

    def close(self) -> None:
        for f in self.files:
            f.close()
