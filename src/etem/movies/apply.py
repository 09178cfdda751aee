"""``etem apply``: stream a movie through drift correction, denoising, column finding,
tracking, occupancy, likelihood and event detection, at memory bounded by the chunk size.

Data flow (one pass over the file, ``apply.chunk_frames`` frames at a time)::

    raw chunk -> sum frames -> bin -> drift (integer shifts)      etem.frames.geometry
      -> normalise by dose -> denoise (tiled, batched; 5-frame
         window for the blind-spot model) -> segment (tiled)      etem.models.inference
      -> columns, likelihood/confidence, tracks, frame statistics etem.movies.frame_analysis
      -> results.h5 (appended per chunk)                          etem.movies.outputs
    end: events from the frame statistics                         etem.movies.events
         columns.parquet, events.csv, frames.csv, denoised.tif,
         figures, preview.gif and, last, summary.json.

:func:`apply_movie` is the three steps: :func:`open_apply` (checks, geometry, models),
:func:`run_chunks` (the streaming pass) and :func:`summarise` (events, tables, figures,
summary). Every file is written through :func:`etem.io.atomic_path`; ``summary.json`` is
removed at the start and written only when everything else is complete, so a failed run
never leaves an output folder that looks complete.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from etem.analysis.likelihood import Calibration
from etem.data.datasets import reflect_window
from etem.data.inputs import image_input, normalize
from etem.errors import InputError
from etem.frames.geometry import FrameGeometry, collect_frames, frame_stream, resolve_geometry
from etem.frames.readers import Movie
from etem.io import atomic_path, h5_write_attrs, write_json
from etem.models.inference import TiledRunner, decode_segmentation, window_inputs
from etem.models.io import LoadedModel
from etem.movies import figures
from etem.movies.events import EventResult, detect_events, refine_onsets, statistic_floors
from etem.movies.frame_analysis import FrameAnalysis
from etem.movies.outputs import (
    ColumnStore,
    Preview,
    create_frame_datasets,
    write_tables,
    write_tables_h5,
    write_tiff,
)
from etem.movies.truth import score_apply
from etem.progress import progress
from etem.provenance import provenance
from etem.training.finetune import FINETUNED_NAME, finetune_unsupervised

log = logging.getLogger("etem.movies.apply")

#: Segmenter outputs stored per frame, in the order of :func:`decode_segmentation`.
SEGMENTATION_MAPS = ("class_map", "cation_occupancy", "anion_occupancy")


@dataclass
class ApplyModels:
    """The networks and the likelihood calibration used by one apply."""

    denoiser: LoadedModel | None = None
    unsupervised: LoadedModel | None = None
    segmenter: LoadedModel | None = None
    calibration: Calibration | None = None
    calibration_path: str | None = None

    def loaded(self) -> dict[str, LoadedModel]:
        """The models given (kind -> model)."""
        kinds = ("denoiser", "unsupervised", "segmenter")
        return {k: m for k in kinds if (m := getattr(self, k)) is not None}

    def run_ids(self) -> dict[str, str]:
        """MLflow run ids of the models (kind -> id) where recorded."""
        return {k: m.run_id for k, m in self.loaded().items() if m.run_id}


def choose_denoiser(denoise_with: str, models: ApplyModels) -> tuple[LoadedModel, str]:
    """The denoiser to use and its mode (``supervised`` or ``unsupervised``)."""
    mode = denoise_with
    if mode == "auto":
        mode = "supervised" if models.denoiser is not None else "unsupervised"
    model = models.denoiser if mode == "supervised" else models.unsupervised
    if model is None:
        raise InputError(f"no {mode} denoiser given (use --denoiser and/or --unsupervised)")
    if mode == "unsupervised" and model.n_frames < 3:
        raise InputError("the unsupervised model is not a multi-frame (blind-spot) model")
    if mode == "supervised" and model.n_frames != 1:
        raise InputError("the supervised denoiser given is a multi-frame model")
    return model, mode


def window_batches(
    stream: Iterator[tuple[int, np.ndarray, np.ndarray]],
    chunk: int,
    half: int,
) -> Iterator[tuple[list[tuple[int, np.ndarray, np.ndarray]], int, range]]:
    """Group a frame stream into chunks of ``chunk`` centre frames with ``half`` frames of
    context on each side available in the buffer (yields buffer, index of buffer[0], centres)."""
    buf: list[tuple[int, np.ndarray, np.ndarray]] = []
    first = 0
    done = 0
    for item in stream:
        buf.append(item)
        while first + len(buf) - done >= chunk + half:
            yield buf, first, range(done, done + chunk)
            done += chunk
            drop = max(0, done - half - first)
            buf, first = buf[drop:], first + drop
    while done < first + len(buf):
        n = min(chunk, first + len(buf) - done)
        yield buf, first, range(done, done + n)
        done += n


def finetune_for_apply(
    movie: Movie, geo: FrameGeometry, cfg: Any, model: LoadedModel, out_dir: Path
) -> tuple[LoadedModel, dict[str, Any]]:
    """Fine-tune ``model`` on ``movie``'s leading processed frames (``apply.finetune_*``).

    The frames and the dose normalisation are those of the denoising pass (dose from the
    config, else the file, else the mean counts of the first chunk). Writes
    ``out_dir/finetuned_unsupervised.pt`` when the fine-tuning lowered the validation loss.
    """
    a = cfg.apply
    frames = collect_frames(movie, geo, a, min(a.finetune_max_frames, geo.n_frames))
    dose_raw = a.dose_e_per_px_per_frame or movie.dose_e_per_px_per_frame
    if dose_raw:
        dose = geo.processed_dose(dose_raw)
    else:  # as the denoising pass estimates it: first chunk (+ half window) of frames
        dose = float(frames[: a.chunk_frames + model.n_frames // 2].mean()) if len(frames) else 0.0
    return finetune_unsupervised(
        cfg, model, frames, dose, geo.pixel_size_A, out_dir / FINETUNED_NAME,
        name=str(movie.path),
    )


@dataclass
class ApplyRun:
    """State of one apply between :func:`open_apply`, :func:`run_chunks` and :func:`summarise`."""

    movie: Movie
    out: Path
    cfg: Any
    models: ApplyModels
    name: str
    geo: FrameGeometry
    denoiser: LoadedModel
    mode: str
    n_window: int
    dose: float | None
    dose_source: str
    prov: dict[str, Any]
    finetune: dict[str, Any] | None = None
    drift: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    elapsed_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)


def open_apply(
    movie: Movie, out_dir: str | Path, cfg: Any, models: ApplyModels, name: str | None = None
) -> ApplyRun:
    """Check the inputs, resolve the frame geometry, fine-tune if asked; prepare ``out_dir``."""
    a = cfg.apply
    den_model, mode = choose_denoiser(a.denoise_with, models)
    pixel_sizes = [m.pixel_size_A for m in models.loaded().values() if m.pixel_size_A]
    geo = resolve_geometry(movie, a, pixel_sizes, int(cfg.seed))
    n_win = den_model.n_frames if mode == "unsupervised" else 1
    if n_win > 1 and geo.n_frames < 2:
        raise InputError(f"movie {movie.path}: the unsupervised model needs >= 2 frames")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)
    (out / FINETUNED_NAME).unlink(missing_ok=True)  # never a stale one from an earlier run
    finetune = None
    if mode == "unsupervised" and a.finetune_steps > 0:
        den_model, finetune = finetune_for_apply(movie, geo, cfg, den_model, out)
    dose_raw = a.dose_e_per_px_per_frame or movie.dose_e_per_px_per_frame
    source = "config" if a.dose_e_per_px_per_frame else ("file" if dose_raw else "estimated")
    return ApplyRun(
        movie=movie,
        out=out,
        cfg=cfg,
        models=models,
        name=name or movie.path.stem,
        geo=geo,
        denoiser=den_model,
        mode=mode,
        n_window=n_win,
        dose=geo.processed_dose(dose_raw) if dose_raw else None,
        dose_source=source,
        prov=provenance(cfg, "apply"),
        finetune=finetune,
    )


def _estimate_dose(run: ApplyRun, counts_buf: np.ndarray) -> float:
    """Dose [e/px] from the mean counts of the first chunk (no dose in config or file)."""
    dose = float(counts_buf.mean())
    if not dose > 0:
        raise InputError(
            f"movie {run.movie.path}: mean counts {dose} <= 0; "
            "set apply.dose_e_per_px_per_frame"
        )
    log.warning("dose not recorded: using the mean counts of the first chunk, %.4g e/px/frame",
                dose)
    return dose


def _denoise(run: ApplyRun, runner: TiledRunner, counts_buf: np.ndarray, first: int,
             centre: range) -> np.ndarray:
    """Denoised intensity (vacuum = 1) of the ``centre`` frames of the buffer."""
    dose = run.dose
    assert dose is not None
    counts = counts_buf[[t - first for t in centre]]
    if run.mode == "supervised":
        x = image_input(normalize(counts, dose), dose, run.denoiser.dose_conditioned)
        return runner.run(x)[:, 0]
    norm = counts_buf / np.float32(dose)
    ts = list(centre)

    def window(i: int) -> np.ndarray:
        idx = [k - first for k in reflect_window(ts[i], run.n_window, run.geo.n_frames)]
        return window_inputs(norm, idx)

    return runner.run(window, n=len(ts))[:, 0]


def _runner(model: LoadedModel, cfg: Any) -> TiledRunner:
    a = cfg.apply
    return TiledRunner(model, a.tile_px, a.overlap_px, a.batch_size, a.precision, a.device)


def run_chunks(run: ApplyRun, h5: h5py.File) -> tuple[ColumnStore, FrameAnalysis, Preview]:
    """The streaming pass: denoise, segment and analyse every frame into ``h5``."""
    a, geo = run.cfg.apply, run.geo
    runner = _runner(run.denoiser, run.cfg)
    segmenter = run.models.segmenter
    seg_runner = _runner(segmenter, run.cfg) if segmenter is not None else None
    state = FrameAnalysis(run.cfg, geo, run.models.calibration, edge_frames=run.n_window // 2)
    den_ds, seg_ds = create_frame_datasets(h5, geo, seg_runner is not None)
    store = ColumnStore(h5, geo.n_frames)
    run.drift = np.zeros((geo.n_frames, 2))
    preview = Preview(geo.n_frames, a.preview_max_frames, a.preview_size_px)
    t0 = time.perf_counter()
    stream = frame_stream(run.movie, geo, a)
    batches = window_batches(stream, a.chunk_frames, run.n_window // 2)
    n_batches = math.ceil(geo.n_frames / a.chunk_frames)
    for buf, first, centre in progress(batches, "apply", total=n_batches):
        counts_buf = np.stack([b[1] for b in buf])
        if run.dose is None:
            run.dose = _estimate_dose(run, counts_buf)
        dose = run.dose
        counts = counts_buf[[t - first for t in centre]]
        intensity = _denoise(run, runner, counts_buf, first, centre)
        seg = None
        if seg_runner is not None and segmenter is not None:
            module = segmenter.module
            xs = image_input(normalize(counts, dose), dose, segmenter.dose_conditioned)
            seg = seg_runner.run(xs, post=lambda y, m=module: decode_segmentation(y, m))
        c0 = centre.start
        den_ds[c0 : c0 + len(centre)] = intensity
        for i, key in enumerate(SEGMENTATION_MAPS):
            if seg is not None and key in seg_ds:
                seg_ds[key][c0 : c0 + len(centre)] = seg[:, i]
        for j, t in enumerate(centre):
            run.drift[t] = buf[t - first][2]
            cols = state.analyse(
                t, counts[j], intensity[j], intensity[j] * dose, run.drift[t],
                None if seg is None else seg[j],
            )
            store.append(t, cols)
            preview.add(t, intensity[j])
    run.elapsed_s = time.perf_counter() - t0
    store.finish()
    return store, state, preview


def detect(run: ApplyRun, stats: pd.DataFrame) -> EventResult:
    """Events from the frame statistics (edge frames of a reflected window excluded)."""
    a, geo = run.cfg.apply, run.geo
    ev_stats = stats[list(a.event_statistics)].copy()
    if run.n_window > 1:  # the unsupervised model sees a reflected window at the movie edges
        half = run.n_window // 2
        edge = (stats["frame"] < half) | (stats["frame"] >= geo.n_frames - half)
        ev_stats.loc[edge.to_numpy()] = np.nan
    events = detect_events(
        ev_stats,
        a.ewma_alpha,
        a.event_false_alarm_rate,
        a.calibration_frames,
        a.event_merge_gap_frames,
        a.event_min_frames,
        statistic_floors(stats),
        geo.frame_time_s,
    )
    refine_onsets(events, stats, a, geo.frame_time_s)
    return events


def _results_attrs(run: ApplyRun, events: EventResult) -> dict[str, Any]:
    geo = run.geo
    return {
        **run.prov,
        "movie": str(run.movie.path),
        "source_format": run.movie.source_format,
        "pixel_size_A": geo.pixel_size_A,
        "frame_time_s": geo.frame_time_s,
        "dose_e_per_px_per_frame": run.dose,
        "dose_source": run.dose_source,
        "denoiser": run.mode,
        "sum_frames": geo.n_sum,
        "bin_factor": geo.bin_total,
        "model_run_ids": run.models.run_ids(),
        "event_threshold": events.threshold,
    }


def write_results(
    run: ApplyRun, h5: h5py.File, store: ColumnStore, state: FrameAnalysis, preview: Preview
) -> tuple[pd.DataFrame, EventResult, dict[str, Any] | None]:
    """Events, tables, TIFF, figures, preview and truth scores (results.h5 still open)."""
    a, out, geo = run.cfg.apply, run.out, run.geo
    stats = state.frame_table(run.drift)
    events = detect(run, stats)
    write_tables_h5(h5, stats, events, run.drift)
    h5_write_attrs(h5, _results_attrs(run, events))
    files = write_tables(out, store, stats, events, run.prov)
    if a.write_tiff:
        write_tiff(out / "denoised.tif", h5["denoised"], geo)
        files["denoised_tiff"] = "denoised.tif"
    files.update(figures.write_figures(out, h5, store, stats, events, geo, run.movie))
    if preview.frames and figures.write_gif(out / "preview.gif", preview.frames, geo.frame_time_s):
        files["preview"] = "preview.gif"
    truth, truth_files = score_apply(
        run.movie.path, store.iter_tables(), run.drift, events.events, geo, a, out, run.prov
    )
    files.update(truth_files)
    run.files.update(files)
    return stats, events, truth


def summarise(
    run: ApplyRun,
    stats: pd.DataFrame,
    events: EventResult,
    state: FrameAnalysis,
    truth: dict[str, Any] | None,
) -> dict[str, Any]:
    """timing.json and, last, summary.json; returns the summary."""
    geo, out, ft = run.geo, run.out, run.finetune
    write_json(
        out / "timing.json",
        {
            "processing_s": run.elapsed_s,
            "processing_fps": geo.n_frames / max(run.elapsed_s, 1e-9),
            "finetune_s": ft["seconds"] if ft is not None else 0.0,
            "note": "wall-clock timing of this run (not reproducible, kept out of summary.json)",
        },
    )
    run.files["results"] = "results.h5"
    run.files["timing"] = "timing.json"
    if ft is not None and ft["model"]:
        run.files["finetuned_model"] = ft["model"]
    summary = {
        "movie": run.name,
        "movie_path": str(run.movie.path),
        "source_format": run.movie.source_format,
        "n_frames": geo.n_frames,
        "n_frames_raw": len(run.movie),
        "frame_shape_px": [geo.height, geo.width],
        "pixel_size_A": geo.pixel_size_A,
        "frame_time_s": geo.frame_time_s,
        "fps": 1.0 / geo.frame_time_s if geo.frame_time_s else None,
        "dose_e_per_px_per_frame": run.dose,
        "dose_source": run.dose_source,
        "sum_frames": geo.n_sum,
        "bin_factor": geo.bin_total,
        "notes": geo.notes,
        "denoiser": run.mode,
        "finetune": None if ft is None else {k: v for k, v in ft.items() if k != "seconds"},
        "segmenter": run.models.segmenter is not None,
        "calibration": run.models.calibration_path,
        "n_columns": int(np.median(stats["n_columns"])) if len(stats) else 0,
        "n_columns_per_frame_mean": float(stats["n_columns"].mean()),
        "n_tracks": state.tracker.n_tracks,
        "mean_confidence": state.mean_confidence(),
        "drift_total_px": [float(v) for v in run.drift[-1]],
        "event_threshold": events.threshold,
        "calibration_frames": events.calibration_frames,
        "n_events": len(events.events),
        "events": events.events.to_dict(orient="records"),
        "truth": truth,
        "models": {k: {"path": m.path, "run_id": m.run_id} for k, m in run.models.loaded().items()},
        "model_run_ids": run.models.run_ids(),
        "files": dict(sorted(run.files.items())),
        "provenance": run.prov,
    }
    write_json(out / "summary.json", summary)
    return summary


def apply_movie(
    movie: Movie,
    out_dir: str | Path,
    cfg: Any,
    models: ApplyModels,
    name: str | None = None,
) -> dict[str, Any]:
    """Run the whole movie stage on ``movie`` and write the outputs into ``out_dir``.

    Parameters
    ----------
    movie : Movie
        From :func:`etem.frames.readers.open_movie`.
    out_dir : path
        Output folder (created).
    cfg : EtemConfig
        Uses ``cfg.apply``, ``cfg.columns`` and ``cfg.seed``.
    models : ApplyModels
        Supervised and/or unsupervised denoiser, optional segmenter and calibration.
    name : str, optional
        Name of the movie in the summary (default: file stem).

    Returns
    -------
    dict
        The summary (also written to ``out_dir/summary.json``, last).
    """
    run = open_apply(movie, out_dir, cfg, models, name)
    with contextlib.ExitStack() as stack:
        tmp_h5 = stack.enter_context(atomic_path(run.out / "results.h5", suffix=".h5"))
        h5 = stack.enter_context(h5py.File(tmp_h5, "w", track_order=True))
        store, state, preview = run_chunks(run, h5)
        stats, events, truth = write_results(run, h5, store, state, preview)
    return summarise(run, stats, events, state, truth)
