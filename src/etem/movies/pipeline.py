"""``etem apply``: stream a movie through drift correction, denoising, column finding,
tracking, occupancy, likelihood and event detection, at memory bounded by the chunk size.

Data flow (one pass over the file, ``apply.chunk_frames`` frames at a time)::

    raw chunk -> sum frames -> bin -> drift (integer shifts) -> normalise by dose
      -> denoise (tiled, batched; 5-frame window for the blind-spot model)
      -> segment (tiled) -> columns per frame (etem.evaluation.columns.find_columns)
      -> likelihood/confidence (etem.evaluation.likelihood) -> tracks -> frame statistics
      -> results.h5 (appended per chunk)
    end: events from the frame statistics, then columns.parquet, events.csv, frames.csv,
         denoised.tif, figures, preview.gif and, last, summary.json.

Every file is written through :func:`etem.io.atomic_path`; ``summary.json`` is removed at the
start and written only when everything else is complete, so a failed run never leaves an
output folder that looks complete.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etem.config.apply import EventStatistic
from etem.errors import InputError
from etem.movies.events import EventResult, detect_events
from etem.movies.inference import LoadedModel, TiledRunner, window_inputs
from etem.movies.io import Movie
from etem.movies.preprocess import (
    DriftCorrector,
    bin_frames,
    shift_integer,
    split_counts,
    sum_frames,
)
from etem.movies.tracking import ColumnTracker

log = logging.getLogger("etem.movies.pipeline")

#: Frame statistics the event detector can score (``apply.event_statistics`` picks).
EVENT_STATS: tuple[str, ...] = typing.get_args(EventStatistic)
#: Largest factor by which a movie coarser than the model is upsampled (split counts).
MAX_UPSAMPLE = 4
#: Output files (name -> description) listed in summary.json.
OUTPUT_FILES = {
    "results": "results.h5",
    "columns": "columns.parquet",
    "events": "events.csv",
    "frames": "frames.csv",
    "denoised_tiff": "denoised.tif",
    "figure_raw_vs_denoised": "raw_vs_denoised.png",
    "figure_confidence": "overlay_confidence.png",
    "figure_occupancy": "overlay_occupancy.png",
    "figure_events": "event_timeline.png",
    "preview": "preview.gif",
    "timing": "timing.json",
    "truth_columns": "truth_columns.csv (movies that carry true columns)",
    "truth_events": "truth_events.csv (movies that carry true events)",
}


@dataclass
class ApplyModels:
    """The networks and the likelihood calibration used by one apply."""

    denoiser: LoadedModel | None = None
    unsupervised: LoadedModel | None = None
    segmenter: LoadedModel | None = None
    calibration: Any = None
    calibration_path: str | None = None

    def run_ids(self) -> dict[str, str]:
        """MLflow run ids of the models (kind -> id) where recorded."""
        out = {}
        for kind in ("denoiser", "unsupervised", "segmenter"):
            m = getattr(self, kind)
            if m is not None and m.run_id:
                out[kind] = m.run_id
        return out


@dataclass
class _Geometry:
    n_sum: int
    bin_total: int
    n_frames: int
    height: int
    width: int
    pixel_size_A: float
    frame_time_s: float | None
    notes: list[str] = field(default_factory=list)
    upsample: int = 1
    seed: int = 0


def resolve_geometry(movie: Movie, cfg: Any, models: ApplyModels) -> _Geometry:
    """Frames, binning and pixel size after summing/binning; checks against the models.

    Raises :class:`InputError` when the pixel size is unknown everywhere, or the models were
    trained at a pixel size the movie cannot be binned to (``apply.pixel_size_mismatch``).
    """
    a = cfg.apply
    t_raw, h_raw, w_raw = movie.shape
    n_sum = a.sum_frames
    n = t_raw // n_sum
    if n == 0:
        raise InputError(f"movie {movie.path}: {t_raw} frames, fewer than sum_frames={n_sum}")
    used = [m for m in (models.denoiser, models.unsupervised, models.segmenter) if m is not None]
    model_px = [m.pixel_size_A for m in used if m.pixel_size_A]
    notes: list[str] = []
    px_raw = a.pixel_size_A or movie.pixel_size_A
    if px_raw is None:
        if not model_px:
            raise InputError(
                f"movie {movie.path}: pixel size unknown (not in the file); set apply.pixel_size_A"
            )
        px_raw = model_px[0] / a.bin_factor
        notes.append(f"pixel size not in the file: assumed the model's {model_px[0]:.4g} Å")
        log.warning(
            "%s: pixel size not recorded; assuming the model's %.4g Å", movie.path, model_px[0]
        )
    bin_total = a.bin_factor
    px = px_raw * bin_total
    tol = a.pixel_size_tolerance
    up = 1
    if model_px and a.pixel_size_mismatch != "ignore":
        target = model_px[0]
        ratio = target / px
        if abs(ratio - 1) > tol:
            k_bin, k_up = round(ratio), round(1 / ratio)
            if a.pixel_size_mismatch == "resample" and k_bin >= 2 and abs(ratio / k_bin - 1) <= tol:
                bin_total *= k_bin
                px *= k_bin
                notes.append(f"binned {k_bin}x{k_bin} to the model pixel size {target:.4g} Å")
                log.warning(
                    "%s: pixel %.4g Å is %dx finer than the model's %.4g Å: binning",
                    movie.path,
                    px / k_bin,
                    k_bin,
                    target,
                )
            elif (
                a.pixel_size_mismatch == "resample"
                and 2 <= k_up <= MAX_UPSAMPLE
                and abs(ratio * k_up - 1) <= tol
            ):
                up = k_up
                px /= k_up
                notes.append(
                    f"upsampled {k_up}x{k_up} to the model pixel size {target:.4g} Å "
                    "(counts split multinomially: Poisson statistics kept, signal blocky)"
                )
                log.warning(
                    "%s: pixel %.4g Å is %dx coarser than the model's %.4g Å: "
                    "splitting counts over %dx%d pixels",
                    movie.path,
                    px * k_up,
                    k_up,
                    target,
                    k_up,
                    k_up,
                )
            else:
                raise InputError(
                    f"movie {movie.path}: pixel size {px:.4g} Å does not match the model's "
                    f"{target:.4g} Å (ratio {ratio:.3g}); set apply.bin_factor, or "
                    "apply.pixel_size_mismatch=ignore to force"
                )
        for other in model_px[1:]:
            if abs(other / px - 1) > tol:
                raise InputError(
                    f"models disagree on the pixel size ({model_px} Å); movie at {px:.4g} Å"
                )
    h, w = h_raw // bin_total * up, w_raw // bin_total * up
    if h < 16 or w < 16:
        raise InputError(
            f"movie {movie.path}: frames of {h}x{w} px after binning {bin_total}x are too small "
            "(need >= 16x16 px)"
        )
    ft = movie.frame_time_s * n_sum if movie.frame_time_s else None
    return _Geometry(n_sum, bin_total, n, h, w, float(px), ft, notes, up, int(cfg.seed))


def _choose_denoiser(cfg: Any, models: ApplyModels) -> tuple[LoadedModel, str]:
    mode = cfg.apply.denoise_with
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


def _window_batches(
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


def _reflect(t: int, n_frames: int, t_all: int) -> list[int]:
    from etem.data.datasets import reflect_window

    return reflect_window(t, n_frames, t_all)


class _ColumnStore:
    """Per-frame column tables appended to resizable HDF5 datasets under /columns."""

    def __init__(self, h5: Any, n_frames: int) -> None:
        self.group = h5.create_group("columns")
        self.offsets = np.zeros(n_frames + 1, dtype=np.int64)
        self.n = 0
        self.fields: list[str] | None = None

    def append(self, t: int, df: pd.DataFrame) -> None:
        if self.fields is None and len(df):
            self.fields = list(df.columns)
            for name in self.fields:
                dt = (
                    np.int64
                    if name in ("frame", "track_id", "n_pixels", "class_index")
                    else np.float64
                )
                self.group.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(65536,), track_times=False
                )
        if len(df) and self.fields is not None:
            for name in self.fields:
                ds = self.group[name]
                ds.resize((self.n + len(df),))
                ds[self.n :] = df[name].to_numpy(dtype=ds.dtype) if name in df else np.nan
            self.n += len(df)
        self.offsets[t + 1] = self.n

    def finish(self) -> None:
        self.group.create_dataset("frame_offsets", data=self.offsets, track_times=False)
        self.group.attrs["description"] = (
            "rows frame_offsets[t]:frame_offsets[t+1] are the columns of frame t; x_px, y_px "
            "[px] in the frame of the first (drift-corrected) frame, x_A, y_A [Å]"
        )

    def iter_tables(self, rows: int = 200_000) -> Iterator[pd.DataFrame]:
        if self.fields is None:
            return
        for a in range(0, self.n, rows):
            yield pd.DataFrame({k: self.group[k][a : a + rows] for k in self.fields})


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
        From :func:`etem.movies.io.open_movie`.
    out_dir : path
        Output folder (created).
    cfg : EtemConfig
        Uses ``cfg.apply`` and the column-finding keys of ``cfg.benchmark``.
    models : ApplyModels
        Supervised and/or unsupervised denoiser, optional segmenter and calibration.
    name : str, optional
        Name of the movie in the summary (default: file stem).

    Returns
    -------
    dict
        The summary (also written to ``out_dir/summary.json``, last).
    """
    from etem.io import atomic_path, write_json
    from etem.provenance import provenance

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)
    a = cfg.apply
    den_model, mode = _choose_denoiser(cfg, models)
    geo = resolve_geometry(movie, cfg, models)
    n_win = den_model.n_frames if mode == "unsupervised" else 1
    if n_win > 1 and geo.n_frames < 2:
        raise InputError(f"movie {movie.path}: the unsupervised model needs >= 2 frames")
    from etem.movies.finetune import FINETUNED_NAME, finetune_for_apply

    (out / FINETUNED_NAME).unlink(missing_ok=True)  # never a stale one from an earlier run
    finetune: dict[str, Any] | None = None
    if mode == "unsupervised" and a.finetune_steps > 0:
        den_model, finetune = finetune_for_apply(movie, geo, cfg, den_model, out)
    prov = provenance(cfg, "apply")
    t0 = time.perf_counter()
    runner = TiledRunner(den_model, a.tile_px, a.overlap_px, a.batch_size, a.precision, a.device)
    seg_runner = (
        TiledRunner(models.segmenter, a.tile_px, a.overlap_px, a.batch_size, a.precision, a.device)
        if models.segmenter is not None
        else None
    )
    dose_raw = a.dose_e_per_px_per_frame or movie.dose_e_per_px_per_frame
    dose = dose_raw * geo.n_sum * geo.bin_total**2 / geo.upsample**2 if dose_raw else None
    dose_source = "config" if a.dose_e_per_px_per_frame else ("file" if dose_raw else "estimated")
    state = _FrameAnalysis(cfg, geo, models, edge_frames=n_win // 2)
    with contextlib.ExitStack() as stack:
        import h5py

        tmp_h5 = stack.enter_context(atomic_path(out / "results.h5", suffix=".h5"))
        h5 = stack.enter_context(h5py.File(tmp_h5, "w", track_order=True))
        den_ds = h5.create_dataset(
            "denoised",
            shape=(geo.n_frames, geo.height, geo.width),
            dtype=np.float32,
            chunks=(1, geo.height, geo.width),
            compression="lzf",
            track_times=False,
        )
        den_ds.attrs["units"] = "intensity, vacuum = 1 (counts / dose per pixel)"
        seg_ds = {}
        if seg_runner is not None:
            for key, dt in (
                ("class_map", np.uint8),
                ("cation_occupancy", np.float16),
                ("anion_occupancy", np.float16),
            ):
                seg_ds[key] = h5.create_dataset(
                    key,
                    shape=(geo.n_frames, geo.height, geo.width),
                    dtype=dt,
                    chunks=(1, geo.height, geo.width),
                    compression="lzf",
                    track_times=False,
                )
        store = _ColumnStore(h5, geo.n_frames)
        drift = np.zeros((geo.n_frames, 2))
        preview = _Preview(geo.n_frames, a.preview_max_frames, a.preview_size_px)
        half = n_win // 2
        stream = _frame_stream(movie, geo, a)
        from etem.progress import progress

        n_batches = math.ceil(geo.n_frames / a.chunk_frames)
        for buf, first, centre in progress(
            _window_batches(stream, a.chunk_frames, half),
            "apply",
            total=n_batches,
        ):
            counts_buf = np.stack([b[1] for b in buf])
            if dose is None:
                dose = float(counts_buf.mean())
                if not dose > 0:
                    raise InputError(
                        f"movie {movie.path}: mean counts {dose} <= 0; "
                        "set apply.dose_e_per_px_per_frame"
                    )
                log.warning(
                    "dose not recorded: using the mean counts of the first chunk, %.4g e/px/frame",
                    dose,
                )
            loc = [t - first for t in centre]
            counts = counts_buf[loc]
            if mode == "supervised":
                from etem.models.inputs import image_input, normalize

                x = image_input(normalize(counts, dose), dose, den_model.dose_conditioned)
                intensity = runner.run(x)[:, 0]
            else:
                norm = counts_buf / np.float32(dose)
                ts = list(centre)

                def get(
                    i: int, ts: list[int] = ts, norm: np.ndarray = norm, first: int = first
                ) -> np.ndarray:
                    idx = [k - first for k in _reflect(ts[i], n_win, geo.n_frames)]
                    return window_inputs(norm, idx)

                intensity = runner.run(get, n=len(ts))[:, 0]
            seg = None
            if seg_runner is not None:
                from etem.models.inputs import image_input, normalize

                segm = models.segmenter.module  # type: ignore[union-attr]
                xs = image_input(normalize(counts, dose), dose, models.segmenter.dose_conditioned)  # type: ignore[union-attr]
                seg = seg_runner.run(xs, post=lambda y, m=segm: _decode_segmentation(y, m))
            c0 = centre.start
            den_ds[c0 : c0 + len(loc)] = intensity
            for key, ds in seg_ds.items():
                ds[c0 : c0 + len(loc)] = seg[
                    :, ("class_map", "cation_occupancy", "anion_occupancy").index(key)
                ]  # type: ignore[index]
            for j, t in enumerate(centre):
                drift[t] = buf[loc[j]][2]
                cols = state.analyse(
                    t,
                    counts[j],
                    intensity[j],
                    intensity[j] * dose,
                    drift[t],
                    None if seg is None else seg[j],
                )
                store.append(t, cols)
                preview.add(t, intensity[j])
        elapsed = time.perf_counter() - t0
        store.finish()
        stats = state.frame_table(drift, dose)
        ev_stats = stats[list(a.event_statistics)].copy()
        if n_win > 1:  # the unsupervised model sees a reflected window at the movie edges
            edge = (stats["frame"] < n_win // 2) | (stats["frame"] >= geo.n_frames - n_win // 2)
            ev_stats.loc[edge.to_numpy()] = np.nan
        events = detect_events(
            ev_stats,
            a.ewma_alpha,
            a.event_false_alarm_rate,
            a.calibration_frames,
            a.event_merge_gap_frames,
            a.event_min_frames,
            state.floors(stats),
            geo.frame_time_s,
        )
        refine_onsets(events, stats, a, geo.frame_time_s)
        _write_tables_h5(h5, stats, events, drift)
        from etem.io import h5_write_attrs

        h5_write_attrs(
            h5,
            {
                **prov,
                "movie": str(movie.path),
                "source_format": movie.source_format,
                "pixel_size_A": geo.pixel_size_A,
                "frame_time_s": geo.frame_time_s,
                "dose_e_per_px_per_frame": dose,
                "dose_source": dose_source,
                "denoiser": mode,
                "sum_frames": geo.n_sum,
                "bin_factor": geo.bin_total,
                "model_run_ids": models.run_ids(),
                "event_threshold": events.threshold,
            },
        )
        files = _write_outputs(out, h5, store, stats, events, geo, prov, movie, preview, a)
        from etem.movies.truth import score_apply

        truth, truth_files = score_apply(
            movie.path, store.iter_tables(), drift, events.events, geo, a, out, prov
        )
        files.update(truth_files)
    files["results"] = "results.h5"
    write_json(
        out / "timing.json",
        {
            "processing_s": elapsed,
            "processing_fps": geo.n_frames / max(elapsed, 1e-9),
            "finetune_s": finetune["seconds"] if finetune is not None else 0.0,
            "note": "wall-clock timing of this run (not reproducible, kept out of summary.json)",
        },
    )
    files["timing"] = "timing.json"
    if finetune is not None and finetune["model"]:
        files["finetuned_model"] = finetune["model"]
    summary = {
        "movie": name or movie.path.stem,
        "movie_path": str(movie.path),
        "source_format": movie.source_format,
        "n_frames": geo.n_frames,
        "n_frames_raw": len(movie),
        "frame_shape_px": [geo.height, geo.width],
        "pixel_size_A": geo.pixel_size_A,
        "frame_time_s": geo.frame_time_s,
        "fps": 1.0 / geo.frame_time_s if geo.frame_time_s else None,
        "dose_e_per_px_per_frame": dose,
        "dose_source": dose_source,
        "sum_frames": geo.n_sum,
        "bin_factor": geo.bin_total,
        "notes": geo.notes,
        "denoiser": mode,
        "finetune": None
        if finetune is None
        else {k: v for k, v in finetune.items() if k != "seconds"},
        "segmenter": models.segmenter is not None,
        "calibration": models.calibration_path,
        "n_columns": int(np.median(stats["n_columns"])) if len(stats) else 0,
        "n_columns_per_frame_mean": float(stats["n_columns"].mean()),
        "n_tracks": int(state.tracker._next_id),
        "mean_confidence": state.mean_confidence(),
        "drift_total_px": [float(v) for v in drift[-1]],
        "event_threshold": events.threshold,
        "calibration_frames": events.calibration_frames,
        "n_events": len(events.events),
        "events": events.events.to_dict(orient="records"),
        "truth": truth,
        "models": {
            k: {"path": getattr(models, k).path, "run_id": getattr(models, k).run_id}
            for k in ("denoiser", "unsupervised", "segmenter")
            if getattr(models, k) is not None
        },
        "model_run_ids": models.run_ids(),
        "files": dict(sorted(files.items())),
        "provenance": prov,
    }
    write_json(out / "summary.json", summary)
    return summary


def _frame_stream(
    movie: Movie, geo: _Geometry, a: Any
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Preprocessed frames (t, counts (H, W) float32, drift (dy, dx) [px]) one at a time."""
    corr = DriftCorrector(smooth_px=a.drift_smooth_px) if a.drift_correction else None
    for start, raw in movie.iter_chunks(a.chunk_frames * geo.n_sum):
        raw = raw[: (len(raw) // geo.n_sum) * geo.n_sum]
        block = bin_frames(sum_frames(raw, geo.n_sum), geo.bin_total)
        for j, fr in enumerate(block):
            t = start // geo.n_sum + j
            if t >= geo.n_frames:
                return
            if geo.upsample > 1:
                fr = split_counts(fr, geo.upsample, geo.seed, t)
            fr = fr[: geo.height, : geo.width]
            if corr is not None:
                fr, d = corr(fr)
            else:
                d = np.zeros(2)
            yield t, np.ascontiguousarray(fr, dtype=np.float32), d


def _decode_segmentation(y: np.ndarray, module: Any) -> np.ndarray:
    """Segmenter logits (B, C, h, w) -> (B, 3, h, w): class index, cation, anion occupancy."""
    c = int(getattr(module, "n_classes", y.shape[1]))
    m = int(getattr(module, "max_occupancy", 0))
    cls = np.argmax(y[:, :c], axis=1).astype(np.float32)
    if m:
        cat = (1.0 / (1.0 + np.exp(-y[:, c : c + m]))).sum(axis=1)
        an = (1.0 / (1.0 + np.exp(-y[:, c + m : c + 2 * m]))).sum(axis=1)
    else:
        cat = an = np.full_like(cls, np.nan)
    return np.stack([cls, cat, an], axis=1).astype(np.float32)


class _FrameAnalysis:
    """Columns, likelihood, occupancy, tracks and frame statistics, frame by frame."""

    def __init__(self, cfg: Any, geo: _Geometry, models: ApplyModels, edge_frames: int = 0) -> None:
        self.cfg = cfg
        self.edge_frames = edge_frames
        self.recent: list[np.ndarray] = []  # smoothed centre frames for the change statistic
        self.recent_local: list[np.ndarray] = []  # the same for the local-change statistic
        # raw-count statistic at persistent columns: (counts, track ids, aligned xy in roi)
        self.count_on = "column_counts_z" in cfg.apply.event_statistics
        self.recent_counts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.geo = geo
        self.models = models
        self.polarity: str | None = (
            None if cfg.apply.column_polarity == "auto" else cfg.apply.column_polarity
        )
        self.tracker = ColumnTracker(
            cfg.apply.link_radius_A / geo.pixel_size_A, cfg.apply.max_gap_frames
        )
        self.background: np.ndarray | None = None
        self.prev_ids: set[int] = set()
        self.rows: list[dict[str, float]] = []
        self.conf_sum = 0.0
        self.conf_n = 0

    def analyse(
        self,
        t: int,
        counts: np.ndarray,
        intensity: np.ndarray,
        den_counts: np.ndarray,
        drift: np.ndarray,
        seg: np.ndarray | None,
    ) -> pd.DataFrame:
        from etem.evaluation.columns import find_columns
        from etem.evaluation.likelihood import likelihood_table

        b = self.cfg.benchmark
        px = self.geo.pixel_size_A
        if self.polarity is None:
            d = intensity - intensity.mean()
            self.polarity = "bright" if float(np.mean(d**3)) >= 0 else "dark"
            log.info("column polarity from frame 0: %s", self.polarity)
        cols = find_columns(
            intensity,
            px,
            b.blob_min_sigma_A,
            b.blob_max_sigma_A,
            b.blob_threshold,
            refine=self.cfg.apply.column_refine,
            polarity=self.polarity,  # type: ignore[arg-type]
        )
        radius_px = max(b.column_disk_radius_A / px, 1.0)
        if len(cols):
            cols = likelihood_table(
                counts,
                np.maximum(den_counts, 1e-6),
                cols,
                radius_px,
                calibration=self.models.calibration,
            )
        frac = drift - np.round(drift)
        iy, ix = (int(v) for v in np.round(drift))
        h, w = intensity.shape
        if len(cols):  # drop columns in the strips that the integer shift filled by reflection
            ok = (
                (cols["y_px"] >= -iy)
                & (cols["y_px"] < h - iy)
                & (cols["x_px"] >= -ix)
                & (cols["x_px"] < w - ix)
            )
            cols = cols[ok.to_numpy()].reset_index(drop=True)
        cols.insert(0, "frame", np.full(len(cols), t, dtype=np.int64))
        cols["x_aligned_px"] = cols["x_px"].to_numpy()
        cols["y_aligned_px"] = cols["y_px"].to_numpy()
        cols["x_px"] = cols["x_aligned_px"] - frac[1]
        cols["y_px"] = cols["y_aligned_px"] - frac[0]
        cols["x_A"] = cols["x_px"] * px
        cols["y_A"] = cols["y_px"] * px
        mg = round(self.cfg.apply.stats_margin_frac * min(h, w))
        roi = (
            (cols["x_aligned_px"] >= mg)
            & (cols["x_aligned_px"] < w - mg)
            & (cols["y_aligned_px"] >= mg)
            & (cols["y_aligned_px"] < h - mg)
        ).to_numpy()
        if seg is not None and len(cols):
            r = np.clip(np.round(cols["y_aligned_px"]).astype(int), 0, seg.shape[1] - 1)
            c = np.clip(np.round(cols["x_aligned_px"]).astype(int), 0, seg.shape[2] - 1)
            cols["class_index"] = seg[0, r, c].astype(np.int64)
            cols["cation_occupancy"] = seg[1, r, c]
            cols["anion_occupancy"] = seg[2, r, c]
        xy = cols[["x_px", "y_px"]].to_numpy() if len(cols) else np.zeros((0, 2))
        ids, disp = self.tracker.update(t, xy)
        cols.insert(1, "track_id", ids)
        cols["displacement_A"] = disp * px
        # frame statistics, from the centre region (roi) only
        n_all = len(cols)
        n = int(roi.sum())
        d_roi = disp[roi] if n_all else disp
        ids_set = {int(i) for i in ids[roi]} if n_all else set()
        appeared = float(np.isnan(d_roi).sum()) / n if (n and t > 0) else (0.0 if t > 0 else np.nan)
        vanished = (
            (len(self.prev_ids - ids_set) / len(self.prev_ids))
            if (self.prev_ids and t > 0)
            else (0.0 if t > 0 else np.nan)
        )
        self.prev_ids = ids_set
        alpha = self.cfg.apply.ewma_alpha
        centre = intensity[mg : h - mg, mg : w - mg]
        if self.background is None:
            dissim = np.nan
            self.background = centre.astype(np.float64)
        else:
            dissim = 1.0 - _corr(centre, self.background)
            self.background = (1 - alpha) * self.background + alpha * centre
        change = self._change(t, centre, frac)
        local_change, local_onset = self._local_change(t, centre, frac)
        counts_z, counts_onset = np.nan, np.nan
        if self.count_on:
            axy = cols[["x_aligned_px", "y_aligned_px"]].to_numpy()[roi] if n_all else xy
            counts_z, counts_onset = self._column_counts_z(
                t,
                counts, ids[roi] if n_all else ids, axy
            )
        if "confidence" in cols and n_all:
            self.conf_sum += float(cols["confidence"].sum())
            self.conf_n += n_all
        self.rows.append(
            {
                "frame": t,
                "n_columns": n,
                "n_columns_all": n_all,
                "mean_intensity": float(cols["intensity"][roi].mean()) if n else np.nan,
                "mean_displacement_A": float(np.nanmean(d_roi * px))
                if n and np.isfinite(d_roi).any()
                else np.nan,
                "appeared_frac": appeared,
                "vanished_frac": vanished,
                "dissimilarity": dissim,
                "change": change,
                "local_change": local_change,
                "local_change_onset": local_onset,
                "column_counts_z": counts_z,
                "column_counts_z_onset": counts_onset,
                "mean_counts": float(counts.mean()),
                "mean_llr": float(cols["llr"].mean()) if n_all and "llr" in cols else np.nan,
                "mean_confidence": float(cols["confidence"].mean())
                if n_all and "confidence" in cols
                else np.nan,
            }
        )
        return cols

    def _local_change(self, t: int, centre: np.ndarray, frac: np.ndarray) -> tuple[float, float]:
        """Largest local change z between the recent frames and the frames before them.

        On drift-corrected denoised centre regions smoothed by ``event_local_sigma_A`` (about
        a column), the per-pixel difference of the mean of the last k frames
        (``event_local_window_frames``) and the mean of the m frames before them
        (``event_local_reference_frames``) is divided by its standard error, from the pooled
        within-window variance of each pixel smoothed over ``event_local_noise_sigma_A``:
        z(x) = |mean_new - mean_old| / sqrt(s^2 (1/k + 1/m)).
        The statistic is max_x z(x): a change confined to a few columns (atoms leaving a
        particle surface) that is lost in frame averages stands out here, and the noise
        normalisation makes the statistic comparable across movies. It is defined once k + m
        frames are buffered (fixed windows keep its null distribution stationary also for
        the temporally correlated output of the multi-frame blind-spot model).

        Also returns the change-point estimate [frame]: the split of the buffered k + m frames
        (>= 2 frames each side) with the largest max_x z, used to refine event onsets (the
        windowed statistic peaks up to k - 1 frames after the change).
        """
        from scipy import ndimage

        a = self.cfg.apply
        k, m = a.event_local_window_frames, a.event_local_reference_frames
        if t < self.edge_frames or t >= self.geo.n_frames - self.edge_frames:
            return np.nan, np.nan
        px = self.geo.pixel_size_A
        x = ndimage.gaussian_filter(centre.astype(np.float32), a.event_local_sigma_A / px)
        if np.any(frac != 0):
            x = ndimage.shift(x, -np.asarray(frac, dtype=np.float64), order=1, mode="nearest")
        self.recent_local = [*self.recent_local, x][-(k + m) :]
        buf = np.stack(self.recent_local).astype(np.float64)
        n = len(buf)
        if n < k + m:
            return np.nan, np.nan
        cs = np.cumsum(buf, axis=0)
        n1 = n - k
        m1, m2 = cs[n1 - 1] / n1, (cs[-1] - cs[n1 - 1]) / k
        ss = ((buf[:n1] - m1) ** 2).sum(axis=0) + ((buf[n1:] - m2) ** 2).sum(axis=0)
        var = ndimage.gaussian_filter(ss / (n - 2), a.event_local_noise_sigma_A / px)
        inv_sd = 1.0 / np.sqrt(np.maximum(var, 1e-30))
        stat = float((np.abs(m2 - m1) * inv_sd).max()) / math.sqrt(1 / n1 + 1 / k)
        # change point on every 2nd pixel (the z-map is smooth on the column scale): cheap
        cs2, inv2 = cs[:, ::2, ::2], inv_sd[::2, ::2]

        def zmax(n2: int) -> float:
            """max_x z for the split with the last n2 frames as 'recent' (noise map of k)."""
            j = n - n2
            d = (cs2[-1] - cs2[j - 1]) / n2 - cs2[j - 1] / j
            return float((np.abs(d) * inv2).max()) / math.sqrt(1 / j + 1 / n2)

        splits = {n2: zmax(n2) for n2 in range(2, n - 1)}
        best = max(splits, key=splits.__getitem__)
        return stat, float(t - best + 1)

    def _column_counts_z(
        self, t: int, counts: np.ndarray, ids: np.ndarray, axy: np.ndarray
    ) -> tuple[float, float]:
        """Largest change z of the raw counts at persistent columns (denoiser-free null).

        Sites are the tracks found in at least half of the m reference frames
        (``event_local_reference_frames``) of the buffered k + m frames (real columns; noise
        blobs flicker), at their mean drift-corrected position. At each site s the raw counts
        in a disk of ``benchmark.column_disk_radius_A`` give per-frame sums; the mean of the
        last k frames (``event_local_window_frames``) is compared with the mean of the m before:
        z_s = (mean_new - mean_old) / sqrt(F lambda_s (1/k + 1/m)), lambda_s = the mean sum over
        the k + m frames and F = pooled within-window variance / mean over all sites, the Fano
        factor of the camera (1 for electron counting; it absorbs a gain). The null
        distribution depends on counting statistics only, not on the denoiser, which only
        picks the sites. Returns max_s |z_s| and a change-point estimate [frame] (the split
        of the buffer, >= 2 frames each side, with the largest max_s |z_s|).
        """
        a = self.cfg.apply
        k, m = a.event_local_window_frames, a.event_local_reference_frames
        self.recent_counts = [
            *self.recent_counts,
            (counts.astype(np.float32, copy=True), np.asarray(ids), np.asarray(axy, float)),
        ][-(k + m) :]
        n = len(self.recent_counts)
        if n < k + m:
            return np.nan, np.nan
        tid = np.concatenate([r[1] for r in self.recent_counts[:m]]).astype(np.int64)
        pos = np.concatenate([r[2].reshape(-1, 2) for r in self.recent_counts[:m]])
        uniq, inv, n_seen = np.unique(tid, return_inverse=True, return_counts=True)
        mean_xy = np.stack(
            [np.bincount(inv, pos[:, j], len(uniq)) / n_seen for j in (0, 1)], axis=1
        )
        sites = mean_xy[2 * n_seen >= m]  # (S, 2) x, y [px]
        if len(sites) < 2:
            return np.nan, np.nan
        h, w = counts.shape
        r = max(self.cfg.benchmark.column_disk_radius_A / self.geo.pixel_size_A, 1.0)
        q = int(np.ceil(r))
        dy, dx = np.mgrid[-q : q + 1, -q : q + 1]
        inside = dy**2 + dx**2 <= r * r
        xs = np.round(sites).astype(int)
        yy = np.clip(xs[:, 1, None] + dy[inside][None, :], 0, h - 1)
        xx = np.clip(xs[:, 0, None] + dx[inside][None, :], 0, w - 1)
        x = np.stack([c[yy, xx].sum(axis=1) for c, _, _ in self.recent_counts]).astype(
            np.float64
        )  # (k + m, S) disk sums [counts]
        lam = np.maximum(x.mean(axis=0), 1e-9)

        def zmax(n2: int) -> float:
            """max_s |z_s| with the last n2 frames as 'recent'."""
            old, new = x[: n - n2], x[n - n2 :]
            ss = ((old - old.mean(0)) ** 2).sum() + ((new - new.mean(0)) ** 2).sum()
            fano = max(float(ss) / ((n - 2) * float(lam.sum())), 1e-9)
            z = (new.mean(0) - old.mean(0)) / np.sqrt(fano * lam * (1 / (n - n2) + 1 / n2))
            return float(np.abs(z).max())

        splits = {n2: zmax(n2) for n2 in range(2, n - 1)}
        best = max(splits, key=splits.__getitem__)
        return (splits[k] if k in splits else zmax(k)), float(t - best + 1)

    def _change(self, t: int, centre: np.ndarray, frac: np.ndarray) -> float:
        """Relative rms change between the mean of the last k frames and the m frames before.

        Both means are of drift-corrected denoised centre regions smoothed by
        ``event_smooth_px`` (the sub-pixel remainder ``frac`` of the drift, left by the integer
        shift, is removed here by linear interpolation); the difference is taken after
        removing its mean (dose changes) and divided by the rms contrast of the older mean.
        Two adjacent windows (not the EWMA background) keep the noise floor constant from the
        first value on. Frames whose denoising window was reflected at the movie edges are
        skipped.
        """
        from scipy import ndimage

        a = self.cfg.apply
        k, m = a.event_window_frames, a.event_reference_frames
        if t < self.edge_frames or t >= self.geo.n_frames - self.edge_frames:
            return np.nan
        x = centre.astype(np.float64)
        if a.event_smooth_px > 0:
            x = ndimage.gaussian_filter(x, a.event_smooth_px)
        if np.any(frac != 0):
            x = ndimage.shift(x, -np.asarray(frac, dtype=np.float64), order=1, mode="nearest")
        self.recent = [*self.recent, x][-(k + m) :]
        if len(self.recent) < k + m:
            return np.nan
        old = np.mean(self.recent[:m], axis=0)
        new = np.mean(self.recent[m:], axis=0)
        diff = new - old
        contrast = float(np.mean((old - old.mean()) ** 2))
        if not contrast > 0:
            return np.nan
        return math.sqrt(float(np.mean((diff - diff.mean()) ** 2)) / contrast)

    def frame_table(self, drift: np.ndarray, dose: float) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        df["drift_y_px"] = drift[:, 0]
        df["drift_x_px"] = drift[:, 1]
        if self.geo.frame_time_s:
            df["time_s"] = df["frame"] * self.geo.frame_time_s
        return df

    def floors(self, stats: pd.DataFrame) -> dict[str, float]:
        """Smallest noise scales of the event statistics (units of each statistic)."""
        med_i = (
            float(np.nanmedian(np.abs(stats["mean_intensity"])))
            if stats["mean_intensity"].notna().any()
            else 0.0
        )
        return {
            "n_columns": 1.0,
            "mean_intensity": 0.005 * med_i,
            "mean_displacement_A": 0.02,
            "appeared_frac": 0.01,
            "vanished_frac": 0.01,
            "dissimilarity": 1e-4,
            "change": 1e-4,
            "local_change": 0.05,
            "column_counts_z": 0.05,
        }

    def mean_confidence(self) -> float | None:
        return self.conf_sum / self.conf_n if self.conf_n else None


def refine_onsets(
    events: EventResult, stats: pd.DataFrame, a: Any, frame_time_s: float | None = None
) -> None:
    """Move event onsets to the change point of a windowed statistic (in place).

    The windowed statistics (``local_change``, ``column_counts_z``) cross the threshold up to
    ``event_local_window_frames`` - 1 frames after the change. For each event in whose first
    ``k + m`` frames the innovation of one of them exceeds the threshold (the one with the
    largest innovation there when both do), the onset becomes the median change-point
    estimate (``<statistic>_onset``) over the k frames from the detected onset on (the
    estimate steadies as post-change frames fill the buffer), if that is earlier than the
    detected onset and after the previous event. The detected onset is kept as
    ``detected_frame``.
    """
    ev = events.events
    ev["detected_frame"] = ev["onset_frame"].copy()
    windowed = [s for s in ("local_change", "column_counts_z") if s in a.event_statistics]
    if not windowed or not len(ev):
        return
    zs = {s: events.scores[f"z_{s}_ewma"].to_numpy() for s in windowed}
    cps = {s: stats[f"{s}_onset"].to_numpy(dtype=np.float64) for s in windowed}
    span = a.event_local_window_frames + a.event_local_reference_frames
    detected = ev["onset_frame"].to_numpy().copy()
    onsets = detected.copy()
    prev_end = -1
    for i, (on, end) in enumerate(zip(detected, ev["end_frame"].to_numpy(), strict=True)):
        lo, hi = int(on), int(min(end, on + span - 1)) + 1
        best = max(windowed, key=lambda s: float(zs[s][lo:hi].max()))
        z, cp = zs[best], cps[best]
        est = cp[lo : min(lo + a.event_local_window_frames, int(end) + 1)]
        est = est[np.isfinite(est)]
        if (z[lo:hi] > events.threshold).any() and len(est):
            c = int(np.floor(np.median(est) + 0.5))
            if prev_end < c < on:
                onsets[i] = c
        prev_end = int(end)
    ev["detected_frame"] = detected
    ev["onset_frame"] = onsets
    if frame_time_s:
        ev["onset_time_s"] = onsets.astype(float) * frame_time_s


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.ravel() - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else 1.0


def _write_tables_h5(h5: Any, stats: pd.DataFrame, events: EventResult, drift: np.ndarray) -> None:
    h5.create_dataset("drift_px", data=drift, track_times=False).attrs["columns"] = "dy, dx [px]"
    g = h5.create_group("frame_stats")
    for k in stats.columns:
        g.create_dataset(k, data=stats[k].to_numpy(), track_times=False)
    g = h5.create_group("event_scores")
    for k in events.scores.columns:
        v = events.scores[k].to_numpy()
        g.create_dataset(k, data=v.astype("S") if v.dtype == object else v, track_times=False)
    g = h5.create_group("events")
    g.attrs["threshold"] = events.threshold
    g.attrs["calibration_frames"] = events.calibration_frames
    for k in events.events.columns:
        v = events.events[k].to_numpy()
        g.create_dataset(k, data=v.astype("S") if v.dtype == object else v, track_times=False)


class _Preview:
    """Small 8-bit frames kept for the GIF preview (bounded number and size)."""

    def __init__(self, n_frames: int, max_frames: int, size_px: int) -> None:
        self.step = max(1, math.ceil(n_frames / max_frames)) if max_frames else 0
        self.size = size_px
        self.frames: list[np.ndarray] = []
        self.lohi: tuple[float, float] | None = None

    def add(self, t: int, img: np.ndarray) -> None:
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


def _write_outputs(
    out: Path,
    h5: Any,
    store: _ColumnStore,
    stats: pd.DataFrame,
    events: EventResult,
    geo: _Geometry,
    prov: dict[str, Any],
    movie: Movie,
    preview: _Preview,
    a: Any,
) -> dict[str, str]:
    """Tables, TIFF, figures and preview (results.h5 is still open, being written)."""
    from etem.io import atomic_path, write_table
    from etem.movies import figures

    files: dict[str, str] = {}
    # columns.parquet, streamed in row groups
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(out / "columns.parquet", suffix=".parquet") as tmp:
        writer = None
        import json

        meta = {b"etem": json.dumps(prov, sort_keys=True, default=str).encode()}
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
    files["columns"] = "columns.parquet"
    write_table(out / "events.csv", events.events, metadata=prov)
    files["events"] = "events.csv"
    write_table(out / "frames.csv", stats.merge(events.scores, on="frame"), metadata=prov)
    files["frames"] = "frames.csv"
    if a.write_tiff:
        _write_tiff(out / "denoised.tif", h5["denoised"], geo)
        files["denoised_tiff"] = "denoised.tif"
    files.update(figures.write_figures(out, h5, store, stats, events, geo, movie))
    if preview.frames:
        if figures.write_gif(out / "preview.gif", preview.frames, geo.frame_time_s):
            files["preview"] = "preview.gif"
    return files


def _write_tiff(path: Path, ds: Any, geo: _Geometry) -> None:
    """Denoised frames as a float32 TIFF stack (ImageJ hyperstack, BigTIFF when > 3.5 GB)."""
    import tifffile

    from etem.io import atomic_path

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


def reprocess_frame(movie: Movie, t: int, geo: _Geometry, drift: np.ndarray) -> np.ndarray:
    """The preprocessed counts of output frame ``t`` (summed, binned/split, drift-shifted)."""
    raw = movie.read(t * geo.n_sum, (t + 1) * geo.n_sum)
    fr = bin_frames(sum_frames(raw, geo.n_sum), geo.bin_total)[0]
    if geo.upsample > 1:
        fr = split_counts(fr, geo.upsample, geo.seed, t)
    fr = fr[: geo.height, : geo.width]
    iy, ix = (int(v) for v in np.round(drift[t]))
    return shift_integer(fr, -iy, -ix)
