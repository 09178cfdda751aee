"""Generated test data with exact ground truth, shared by the tests and the benchmarks.

* :func:`lattice_image`: one clean image of a square lattice of Gaussian columns (vacuum = 1)
  with its class map and the true column positions;
* :func:`lattice_movie` / :func:`write_h5`: a fast lattice test movie with known columns and a
  known event.

The movie is not a physical simulation (``etem simulate-movie`` is): Gaussian atomic columns on
a square lattice on a vacuum-normalised background, Poisson counts at a given dose, optional
drift, and at ``event_frame`` a patch of columns vanishes and the neighbouring columns shift,
so column finding, tracking and event detection have exact ground truth. Written in the same
HDF5 contract as the synthetic movie of the simulation stage (``/frames`` counts with
``pixel_size_A``, ``frame_time_s``, ``dose_e_per_px_per_frame``; ``/clean``; ``/columns``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from etem.errors import InputError
from etem.io import atomic_path


def lattice_image(
    size_px: int, pixel_size_A: float, spacing_A: float = 2.8, sigma_A: float = 0.4,
    amplitude: float = 1.0, offset_px: float = 0.0, label_radius_A: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean intensity, class map, true column positions (x_px, y_px)) of a square lattice."""
    rr, cc = np.mgrid[:size_px, :size_px].astype(np.float64)
    sp = spacing_A / pixel_size_A
    s = sigma_A / pixel_size_A
    pos = []
    start = sp / 2 + offset_px
    for y in np.arange(start, size_px - sp / 4, sp):
        for x in np.arange(start, size_px - sp / 4, sp):
            pos.append((x, y))
    clean = np.ones((size_px, size_px))
    cls = np.zeros((size_px, size_px), dtype=np.uint8)
    rl = label_radius_A / pixel_size_A
    for x, y in pos:
        d2 = (rr - y) ** 2 + (cc - x) ** 2
        clean += amplitude * np.exp(-d2 / (2 * s * s))
        cls[d2 <= rl * rl] = 1
    return clean, cls, np.asarray(pos)


@dataclass
class LatticeMovie:
    """Clean intensities (T, H, W) (vacuum = 1), counts, and ground-truth columns per frame."""

    clean: np.ndarray
    counts: np.ndarray | None
    columns: list[np.ndarray]  # per frame (n, 2) x, y [px]
    pixel_size_A: float
    frame_time_s: float
    dose_e_per_px_per_frame: float
    event_frame: int | None
    ids: list[np.ndarray] | None = None  # per frame (n,) identity of each true column
    event_kind: str | None = None


def lattice_movie(
    n_frames: int = 24,
    size_px: int = 96,
    spacing_px: float = 12.0,
    sigma_px: float = 2.0,
    contrast: float = 1.5,
    dose_e_per_px_per_frame: float = 2.0,
    event_frame: int | None = 14,
    drift_px_per_frame: float = 0.0,
    pixel_size_A: float = 0.2,
    frame_time_s: float = 0.025,
    seed: int = 0,
    counts: bool = True,
) -> LatticeMovie:
    """Make the movie.

    Parameters
    ----------
    spacing_px, sigma_px : float
        Lattice constant and column width [px].
    contrast : float
        Peak intensity of a column above the background (vacuum = 1).
    dose_e_per_px_per_frame : float
        Mean counts per pixel of vacuum per frame [e/px].
    event_frame : int or None
        From this frame on, the columns in the central patch (about 1/9 of them) are gone and
        the ring of columns around it moved by 0.3 spacing towards the centre.
    drift_px_per_frame : float
        Uniform drift of the specimen along x and y [px/frame].
    counts : bool
        Draw Poisson counts (else ``counts`` is None; for large benchmark movies).
    """
    rng = np.random.default_rng(seed)
    n_side = int(size_px // spacing_px)
    g = (np.arange(n_side) + 0.5) * spacing_px
    xx, yy = np.meshgrid(g, g)
    base = np.stack([xx.ravel(), yy.ravel()], axis=1)
    c = size_px / 2
    dist = np.hypot(base[:, 0] - c, base[:, 1] - c)
    gone = dist < 1.0 * spacing_px
    ring = (dist >= 1.0 * spacing_px) & (dist < 2.0 * spacing_px)
    clean = np.empty((n_frames, size_px, size_px), np.float32)
    cols, ids = [], []
    all_ids = np.arange(len(base))
    for t in range(n_frames):
        pos, idx = base.copy(), all_ids
        if event_frame is not None and t >= event_frame:
            vec = np.array([c, c]) - pos[ring]
            pos[ring] += 0.3 * spacing_px * vec / np.linalg.norm(vec, axis=1, keepdims=True)
            pos, idx = pos[~gone], all_ids[~gone]
        pos = pos + drift_px_per_frame * t
        cols.append(pos)
        ids.append(idx)
        clean[t] = render_columns(pos, size_px, sigma_px, contrast)
    cnt = rng.poisson(clean * dose_e_per_px_per_frame).astype(np.uint16) if counts else None
    return LatticeMovie(
        clean,
        cnt,
        cols,
        pixel_size_A,
        frame_time_s,
        dose_e_per_px_per_frame,
        event_frame,
        ids,
        None if event_frame is None else "vacancy_patch",
    )


def render_columns(
    pos: np.ndarray, size_px: int, sigma_px: float, contrast: float | np.ndarray
) -> np.ndarray:
    """Gaussian columns at the (n, 2) positions (x, y) [px] of peak ``contrast`` above a
    vacuum of 1, on a (size_px, size_px) float32 image."""
    img = np.ones((size_px, size_px), np.float32)
    r = int(np.ceil(4 * sigma_px))
    amp = np.broadcast_to(np.asarray(contrast, dtype=np.float64), (len(pos),))
    g = np.arange(-r, r + 1, dtype=np.float32)
    for (x, y), a in zip(pos, amp, strict=True):
        ix, iy = int(np.floor(x)), int(np.floor(y))
        x0, x1 = max(ix - r, 0), min(ix + r + 1, size_px)
        y0, y1 = max(iy - r, 0), min(iy + r + 1, size_px)
        if x0 >= x1 or y0 >= y1:
            continue
        gx = np.exp(-((g[x0 - ix + r : x1 - ix + r] + ix - x) ** 2) / (2 * sigma_px**2))
        gy = np.exp(-((g[y0 - iy + r : y1 - iy + r] + iy - y) ** 2) / (2 * sigma_px**2))
        img[y0:y1, x0:x1] += np.float32(a) * gy[:, None] * gx[None, :]
    return img


def particle_movie(
    n_frames: int = 48,
    size_px: int = 96,
    event: str | None = "rotation",
    magnitude: float = 8.0,
    event_frame: int = 24,
    dose_e_per_px_per_frame: float = 0.5,
    radius_frac: float = 0.32,
    spacing_px: float = 9.0,
    sigma_px: float = 1.6,
    contrast: float = 1.5,
    pixel_size_A: float = 0.2,
    frame_time_s: float = 0.025,
    seed: int = 0,
) -> LatticeMovie:
    """A round crystalline particle (square lattice of Gaussian columns) in vacuum, with one
    structural event at ``event_frame``.

    ``event``: ``"rotation"`` (the particle turns by ``magnitude`` degrees about its centre),
    ``"surface_loss"`` (the ``magnitude`` outermost columns on the particle's upper-right
    surface vanish), or None (a stable movie). Column ids follow each column through the
    rotation.
    """
    rng = np.random.default_rng(seed)
    c = size_px / 2
    rad = radius_frac * size_px
    n = int(np.ceil(rad / spacing_px)) + 1
    g = np.arange(-n, n + 1) * spacing_px
    xx, yy = np.meshgrid(g, g)
    rel = np.stack([xx.ravel(), yy.ravel()], axis=1)
    rel = rel[np.hypot(rel[:, 0], rel[:, 1]) <= rad]
    ids0 = np.arange(len(rel))
    gone = np.zeros(len(rel), bool)
    if event == "surface_loss":
        # outermost columns, nearest to the upper-right direction first
        score = np.hypot(*rel.T) / rad + 0.5 * (rel @ np.array([1.0, -1.0]) / (np.sqrt(2) * rad))
        gone[np.argsort(-score)[: int(magnitude)]] = True
    elif event not in ("rotation", None):
        raise ValueError(f"unknown event kind {event!r}")
    clean = np.empty((n_frames, size_px, size_px), np.float32)
    cols, ids = [], []
    for t in range(n_frames):
        pos, idx = rel, ids0
        if event is not None and t >= event_frame:
            if event == "rotation":
                a = np.deg2rad(magnitude)
                rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
                pos = rel @ rot.T
            else:
                pos, idx = rel[~gone], ids0[~gone]
        pos = pos + c
        cols.append(pos)
        ids.append(idx)
        clean[t] = render_columns(pos, size_px, sigma_px, contrast)
    cnt = rng.poisson(clean * dose_e_per_px_per_frame).astype(np.uint16)
    return LatticeMovie(
        clean, cnt, cols, pixel_size_A, frame_time_s, dose_e_per_px_per_frame,
        None if event is None else event_frame, ids, event,
    )


def write_h5(movie: LatticeMovie, path: str | Path) -> Path:
    """Write in the synthetic-movie HDF5 contract (atomically)."""
    if movie.counts is None:
        raise InputError("synthetic movie: no counts to write (generated with counts=False)")
    path = Path(path)
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as fh:
        ds = fh.create_dataset(
            "frames", data=movie.counts, chunks=(1, *movie.counts.shape[1:]), track_times=False
        )
        ds.attrs["units"] = "counts [e/px]"
        for k in ("pixel_size_A", "frame_time_s", "dose_e_per_px_per_frame"):
            fh.attrs[k] = getattr(movie, k)
        fh.create_dataset("clean", data=movie.clean, track_times=False)
        g = fh.create_group("columns")
        for t, c in enumerate(movie.columns):
            g.create_dataset(f"{t:05d}", data=c, track_times=False)
        ev = fh.create_group("events")
        ev.create_dataset(
            "frame", data=np.asarray([] if movie.event_frame is None else [movie.event_frame])
        )
        if movie.event_kind is not None:
            ev.attrs["kind"] = movie.event_kind
    return path
