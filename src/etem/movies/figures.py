"""Figures of the movie stage: raw vs denoised, column overlays, event timeline, GIF preview."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pandas as pd

from etem.frames.geometry import FrameGeometry, reprocess_frame
from etem.frames.readers import Movie
from etem.io import atomic_path
from etem.movies.events import EventResult
from etem.movies.outputs import ColumnStore
from etem.plotting import plt, save_png

log = logging.getLogger("etem.movies.figures")


def _show_frames(stats: pd.DataFrame, events: EventResult) -> list[int]:
    t_n = len(stats)
    frames = [0]
    if len(events.events):
        onset = int(events.events["onset_frame"].iloc[0])
        frames += [max(onset - 1, 0), min(onset + 1, t_n - 1)]
    else:
        frames.append(t_n - 1)
    return list(dict.fromkeys(frames))


# long (99 lines): the four apply figures in sequence; a candidate for one function each.
def write_figures(
    out: Path,
    h5: Any,
    store: ColumnStore,
    stats: pd.DataFrame,
    events: EventResult,
    geo: FrameGeometry,
    movie: Movie,
) -> dict[str, str]:
    """Write the PNG figures; returns {key: file name}."""
    files: dict[str, str] = {}
    drift = h5["drift_px"][()]
    shown = _show_frames(stats, events)
    # raw vs denoised
    fig, axes = plt.subplots(2, len(shown), figsize=(3.2 * len(shown), 6.4), squeeze=False)
    for j, t in enumerate(shown):
        raw = reprocess_frame(movie, t, geo, drift)
        den = h5["denoised"][t]
        axes[0, j].imshow(raw, cmap="gray")
        axes[0, j].set_title(f"raw frame {t} ({raw.mean():.3g} e/px)", fontsize=8)
        axes[1, j].imshow(den, cmap="gray")
        axes[1, j].set_title(f"denoised frame {t}", fontsize=8)
        for ax in axes[:, j]:
            ax.set_axis_off()
    fig.suptitle(f"{movie.path.name}: {geo.pixel_size_A:.3g} Å/px", fontsize=9)
    save_png(fig, out / "raw_vs_denoised.png")
    files["figure_raw_vs_denoised"] = "raw_vs_denoised.png"
    # overlays
    for key, col, label, fname in (
        (
            "figure_confidence",
            "confidence",
            "confidence (1 - calibrated p)",
            "overlay_confidence.png",
        ),
        (
            "figure_occupancy",
            "cation_occupancy",
            "cation occupancy [atoms]",
            "overlay_occupancy.png",
        ),
    ):
        if store.fields is None or (
            col not in store.fields and not (col == "confidence" and "llr" in store.fields)
        ):
            continue
        use = col if col in store.fields else "llr"
        if use == "llr":
            label = "log-likelihood ratio [nats/px] (no calibration given)"
        fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.6), squeeze=False)
        sc = None
        for j, t in enumerate(shown):
            df = store.frame(t)
            ax = axes[0, j]
            ax.imshow(h5["denoised"][t], cmap="gray")
            if len(df):
                sc = ax.scatter(
                    df["x_aligned_px"],
                    df["y_aligned_px"],
                    c=df[use],
                    s=8,
                    cmap="viridis",
                    vmin=0 if use == "confidence" else None,
                    vmax=1 if use == "confidence" else None,
                )
            ax.set_title(f"frame {t}: {len(df)} columns", fontsize=8)
            ax.set_axis_off()
        if sc is not None:
            fig.colorbar(sc, ax=axes[0, :].tolist(), shrink=0.8, label=label)
        save_png(fig, out / fname)
        files[key] = fname
    # event timeline
    fig, axes = plt.subplots(3, 1, figsize=(7, 6), sharex=True)
    x = stats["frame"].to_numpy()
    axes[0].plot(x, events.scores["score"], lw=1)
    axes[0].axhline(
        events.threshold, color="r", ls="--", lw=1, label=f"threshold {events.threshold:.2f}"
    )
    if events.calibration_frames:
        axes[0].axvspan(
            0, events.calibration_frames - 0.5, color="0.9", label="calibration stretch"
        )
    for _, ev in events.events.iterrows():
        for ax in axes:
            ax.axvline(ev["onset_frame"], color="orange", lw=1)
    axes[0].set_ylabel("event score [z]")
    axes[0].legend(fontsize=7)
    axes[1].plot(x, stats["n_columns"], lw=1)
    axes[1].set_ylabel("columns")
    # the scored statistics: the larger of each one's EWMA and time-derivative z-scores
    sc = events.scores
    for name in sorted({c[2:-5] for c in sc.columns if c.startswith("z_") and c.endswith("_ewma")}):
        z = np.fmax(sc[f"z_{name}_ewma"].to_numpy(float), sc[f"z_{name}_diff"].to_numpy(float))
        axes[2].plot(x[: len(z)], z, lw=1, label=name)
    axes[2].axhline(events.threshold, color="r", ls="--", lw=1)
    axes[2].set_ylabel("z per statistic")
    if axes[2].get_legend_handles_labels()[0]:
        axes[2].legend(fontsize=6, ncol=3)
    axes[2].set_xlabel("frame")
    save_png(fig, out / "event_timeline.png")
    files["figure_events"] = "event_timeline.png"
    return files


def write_gif(path: Path, frames: list[np.ndarray], frame_time_s: float | None) -> bool:
    """Animated GIF preview with imageio (pillow); returns False if no writer works."""
    duration_ms = 1000.0 * frame_time_s if frame_time_s else 100.0
    try:
        with atomic_path(path, suffix=".gif") as tmp:
            iio.imwrite(
                tmp, np.stack(frames), extension=".gif", duration=max(duration_ms, 20.0), loop=0
            )
    except Exception as exc:  # writer plugin problems are not fatal
        log.warning("GIF preview not written: %s", exc)
        return False
    return True
