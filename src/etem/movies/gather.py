"""Third pass of ``etem apply``: the shards of a movie gathered into its results.

:func:`gather_movie` reads the shard files (:mod:`etem.movies.shard`) in frame order together
with the processed raw counts (read again from the movie: the raw-count statistics need them),
links the columns into tracks over the whole series, computes the frame statistics and the
events, and writes ``results.h5`` (contract in :mod:`etem.movies.outputs`), the tables, the
TIFF stack, the figures, the preview, the truth scores (movies that carry their truth),
``timing.json`` and, last, ``summary.json``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import trackpy

from etem.config import EtemConfig
from etem.config.apply import TracksConfig
from etem.errors import InputError
from etem.frames.geometry import FrameGeometry, aligned_frames
from etem.frames.readers import Movie
from etem.io import atomic_path, h5_write_attrs, write_json, write_table
from etem.movies import figures
from etem.movies.events import EventResult, detect_frame_events
from etem.movies.frame_analysis import FrameStatistics
from etem.movies.outputs import (
    ColumnStore,
    Preview,
    TrackStore,
    create_frame_datasets,
    write_tables,
    write_tables_h5,
    write_tiff,
)
from etem.movies.prepare import ApplyModels, PreparedMovie, calibration_of
from etem.movies.shard import SEGMENTATION_MAPS, ShardReader
from etem.movies.truth import score_apply
from etem.progress import progress

log = logging.getLogger("etem.movies.gather")


@dataclass
class Gathered:
    """What the gather produced, for the summary."""

    stats: pd.DataFrame
    events: EventResult
    frame_stats: FrameStatistics
    truth: dict[str, Any] | None
    files: dict[str, str] = field(default_factory=dict)
    processing_s: float = 0.0


def detect(
    cfg: EtemConfig,
    prep: PreparedMovie,
    stats: pd.DataFrame,
    frame_stats: FrameStatistics | None = None,
) -> EventResult:
    """Events of a movie (:func:`etem.movies.events.detect_frame_events`); frames whose
    denoising window was reflected at the movie edges are left out of the image statistics."""
    geo = prep.geometry
    edge = None
    if prep.n_window > 1:  # the unsupervised model sees a reflected window at the movie edges
        half = prep.half_window
        edge = ((stats["frame"] < half) | (stats["frame"] >= geo.n_frames - half)).to_numpy()
    regions, boxes = frame_stats.regions() if frame_stats is not None else (None, [])
    return detect_frame_events(cfg.apply.events, stats, regions, boxes, edge, geo.frame_time_s)


def _stream(
    movie: Movie,
    prep: PreparedMovie,
    cfg: EtemConfig,
    reader: ShardReader,
    h5: h5py.File,
) -> tuple[ColumnStore, FrameStatistics, Preview]:
    """Copy the shards' frames into ``h5``, link tracks and compute frame statistics."""
    a, geo = cfg.apply, prep.geometry
    den_ds, seg_ds = create_frame_datasets(h5, geo, reader.has_segmentation)
    store = ColumnStore(h5, geo.n_frames)
    tracks = TrackStore(h5)
    stats = FrameStatistics(cfg, geo, edge_frames=prep.half_window)
    preview = Preview(geo.n_frames, a.io.preview_max_frames, a.io.preview_size_px)
    fields = reader.fields()
    raw = aligned_frames(movie, geo, a.io.chunk_frames, prep.drift_px, 0, geo.n_frames)
    shards = progress(reader.frames(), "gather", total=geo.n_frames)
    for (t, f, i), (t_raw, counts) in zip(shards, raw, strict=True):
        assert t == t_raw
        intensity = np.asarray(f["denoised"][i])
        den_ds[t] = intensity
        for key in SEGMENTATION_MAPS:
            if key in seg_ds:
                seg_ds[key][t] = f[key][i]
        cols = stats.add(t, reader.columns(f, i, fields), counts, intensity, prep.drift_px[t])
        store.append(t, cols)
        tracks.append(stats.tracker.pop_finished())
        preview.add(t, intensity)
    tracks.append(stats.tracker.finish())
    stats.track_summary = _filter_tracks(
        a.tracks, geo, store, tracks, stats.tracker.n_tracks, prep.n_window
    )
    store.finish()
    return store, stats, preview


def _filter_tracks(
    a: TracksConfig, geo: FrameGeometry, store: ColumnStore, tracks: TrackStore, n_tracks: int,
    window_frames: int,
) -> dict[str, Any]:
    """Track confidence of every column (presence counted in independent looks of the
    denoiser's ``window_frames``); columns of tracks below
    ``apply.tracks.min_track_confidence`` removed from the column tables (counted, logged)."""
    radius = a.link_radius_A / geo.pixel_size_A
    conf, rates = tracks.confidence(
        n_tracks, geo.n_frames, a.max_gap_frames, geo.height * geo.width, radius, window_frames
    )
    n_before = store.n
    removed = store.filter_tracks(conf, a.min_track_confidence)
    kept_tracks = int((conf >= a.min_track_confidence).sum())
    if removed:
        log.info(
            "tracks: %d of %d columns (%d of %d tracks) below min_track_confidence %g removed",
            removed, n_before, n_tracks - kept_tracks, n_tracks, a.min_track_confidence,
        )
    evidence = "presence" + ("+likelihood" if "p_value" in (store.fields or []) else "")
    return {
        "n_tracks": n_tracks,
        "n_tracks_kept": kept_tracks,
        "min_track_confidence": a.min_track_confidence,
        "n_columns_removed": removed,
        "n_columns_before_filter": n_before,
        "q_real": rates.q_real,
        "q_noise": rates.q_noise,
        "window_frames": window_frames,
        "evidence": evidence,
        "linker": f"trackpy {trackpy.__version__} (memory {a.max_gap_frames} frames)",
    }


def _results_attrs(
    movie: Movie, prep: PreparedMovie, models: ApplyModels, events: EventResult
) -> dict[str, Any]:
    geo = prep.geometry
    return {
        **prep.provenance,
        "movie": str(movie.path),
        "source_format": movie.source_format,
        "pixel_size_A": geo.pixel_size_A,
        "frame_time_s": geo.frame_time_s,
        "dose_e_per_px_per_frame": prep.dose_e_per_px,
        "dose_source": prep.dose_source,
        "denoiser": prep.mode,
        "sum_frames": geo.n_sum,
        "bin_factor": geo.bin_total,
        "model_sha256": models.digests(),
        "event_threshold": events.threshold,
    }


def gather_results(
    movie: Movie,
    prep: PreparedMovie,
    cfg: EtemConfig,
    models: ApplyModels,
    shard_paths: list[str | Path],
    out: Path,
) -> Gathered:
    """results.h5, tables, TIFF, figures, preview and truth scores of a movie's shards."""
    a, geo = cfg.apply, prep.geometry
    reader = ShardReader(shard_paths)
    try:
        if (reader.start, reader.stop) != (0, geo.n_frames):
            raise InputError(
                f"apply shards cover frames {reader.start}:{reader.stop}, the movie has "
                f"{geo.n_frames} processed frames"
            )
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            tmp_h5 = stack.enter_context(atomic_path(out / "results.h5", suffix=".h5"))
            h5 = stack.enter_context(h5py.File(tmp_h5, "w", track_order=True))
            store, frame_stats, preview = _stream(movie, prep, cfg, reader, h5)
            stats = frame_stats.frame_table(prep.drift_px)
            events = detect(cfg, prep, stats, frame_stats)
            write_tables_h5(h5, stats, events, prep.drift_px)
            h5_write_attrs(h5, _results_attrs(movie, prep, models, events))
            files = write_tables(out, store, stats, events, prep.provenance)
            if prep.scores:
                write_table(out / "denoiser_scores.csv", pd.DataFrame(prep.scores),
                            metadata=prep.provenance)
                files["denoiser_scores"] = "denoiser_scores.csv"
            if a.io.write_tiff:
                write_tiff(out / "denoised.tif", h5["denoised"], geo)
                files["denoised_tiff"] = "denoised.tif"
            files.update(figures.write_figures(out, h5, store, stats, events, geo, movie))
            if preview.frames and figures.write_gif(
                out / "preview.gif", preview.frames, geo.frame_time_s
            ):
                files["preview"] = "preview.gif"
            truth, truth_files = score_apply(
                movie.path, store.frames, prep.drift_px, events.events, geo, a.truth, out,
                prep.provenance,
            )
            files.update(truth_files)
        elapsed = reader.processing_s + time.perf_counter() - t0
    finally:
        reader.close()
    files["results"] = "results.h5"
    return Gathered(stats, events, frame_stats, truth, files, elapsed)


# long (~80 lines): the summary.json record, one key per line.
def summarise(
    movie: Movie,
    prep: PreparedMovie,
    models: ApplyModels,
    gathered: Gathered,
    out: Path,
    name: str,
) -> dict[str, Any]:
    """timing.json and, last, summary.json; returns the summary."""
    geo, ft = prep.geometry, prep.finetune
    stats, events = gathered.stats, gathered.events
    files = dict(gathered.files)
    write_json(
        out / "timing.json",
        {
            "processing_s": gathered.processing_s,
            "processing_fps": geo.n_frames / max(gathered.processing_s, 1e-9),
            "finetune_s": ft["seconds"] if ft is not None else 0.0,
            "note": "wall-clock timing of this run (not reproducible, kept out of summary.json)",
        },
    )
    files["timing"] = "timing.json"
    if ft is not None and ft["model"]:
        files["finetuned_model"] = ft["model"]
    drift = prep.drift_px
    summary = {
        "movie": name,
        "movie_path": str(movie.path),
        "source_format": movie.source_format,
        "n_frames": geo.n_frames,
        "n_frames_raw": len(movie),
        "frame_shape_px": [geo.height, geo.width],
        "pixel_size_A": geo.pixel_size_A,
        "frame_time_s": geo.frame_time_s,
        "fps": 1.0 / geo.frame_time_s if geo.frame_time_s else None,
        "dose_e_per_px_per_frame": prep.dose_e_per_px,
        "dose_source": prep.dose_source,
        "sum_frames": geo.n_sum,
        "bin_factor": geo.bin_total,
        "notes": geo.notes,
        "scene_breaks": [
            {"frame": t, "kind": k} for t, k in zip(prep.breaks, prep.break_kinds, strict=True)
        ],
        "columns_analysed": prep.columns,
        "columns_reason": prep.columns_reason,
        "imaging_mode": movie.metadata.get("imaging_mode"),
        "domain_warnings": list(prep.domain_warnings),
        "contrast": dict(prep.contrast),
        "denoiser": prep.mode,
        "denoiser_candidate": prep.candidate,
        "gaussian_sigma_px": prep.gaussian_sigma_px,
        "wiener_alpha": prep.wiener_alpha,
        "wiener_smooth_px": prep.wiener_smooth_px,
        "denoiser_upsnr_dB": {str(r["candidate"]): r["upsnr_dB"] for r in prep.scores},
        "denoiser_column_f1": {str(r["candidate"]): r.get("column_f1") for r in prep.scores},
        "finetune": None if ft is None else {k: v for k, v in ft.items() if k != "seconds"},
        "segmenter": models.segmenter is not None,
        "calibration": models.calibration_path if calibration_of(prep, models) else None,
        "n_columns": int(np.median(stats["n_columns"])) if len(stats) else 0,
        "n_columns_per_frame_mean": float(stats["n_columns"].mean()),
        "n_tracks": gathered.frame_stats.tracker.n_tracks,
        "tracks": gathered.frame_stats.track_summary,
        "mean_confidence": gathered.frame_stats.mean_confidence(),
        "drift_total_px": [float(v) for v in drift[-1]],
        "event_threshold": events.threshold,
        "calibration_frames": events.calibration_frames,
        "event_ewma": {
            "threshold": events.threshold,
            "calibration": events.calibration,
            "null": events.null,
            "calibration_frames": events.calibration_frames or None,
            "noise_scales": events.noise_scales,
        },
        "event_glr": None
        if events.glr is None
        else {
            "threshold": events.glr.threshold,
            "n_series": events.glr.n_series,
            "false_alarms_per_1000_nominal": events.glr.far_per_1000,
            "noise_model": events.glr.noise_model,
            "thresholds": events.glr.thresholds,
            "n_alarms": len(events.glr.alarms),
        },
        "n_events": len(events.events),
        "events": events.events.to_dict(orient="records"),
        "truth": gathered.truth,
        "models": {k: {"path": m.path, "sha256": m.sha256, **({"source": m.source} if m.source
                                                                else {})}
                   for k, m in models.loaded().items()},
        "files": dict(sorted(files.items())),
        "provenance": prep.provenance,
    }
    write_json(out / "summary.json", summary)
    return summary
