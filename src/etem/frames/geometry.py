"""Frame geometry of a movie as etem processes it, and the stream of preprocessed frames.

:func:`resolve_geometry` decides how raw frames become processed frames: ``sum_frames``
consecutive frames summed, ``bin_factor`` x ``bin_factor`` pixels summed, and a further
resampling to the models' pixel size [Å]: binning by an integer factor, splitting counts over
k x k sub-pixels, or, for any other ratio, splitting each pixel's counts over the output
pixels it overlaps by area (:func:`etem.frames.preprocess.resample_by_overlap`); all three keep
counts and Poisson statistics. :func:`frame_stream` yields the
processed frames one at a time (integer-pixel drift correction of counts, sub-pixel remainder
returned), reading ``chunk_frames`` raw frames at a time, so memory is bounded whatever the
movie's length.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from etem.errors import InputError
from etem.frames.preprocess import (
    DriftCorrector,
    bin_frames,
    integer_counts,
    resample_by_overlap,
    resampled_size,
    shift_integer,
    split_counts,
    sum_frames,
)
from etem.frames.readers import Movie

log = logging.getLogger("etem.frames.geometry")

#: Largest factor by which a movie coarser than the model is upsampled (split counts).
MAX_UPSAMPLE = 4
#: Smallest processed frame [px] (each side).
MIN_FRAME_PX = 16


class FramesSettings(Protocol):
    """The frame settings read here (``apply.preprocess`` of the config)."""

    sum_frames: int
    bin_factor: int
    pixel_size_A: float | None
    pixel_size_tolerance: float
    pixel_size_mismatch: Literal["resample", "refuse", "ignore"]
    drift_correction: bool
    drift_smooth_px: float


@dataclass
class FrameGeometry:
    """How raw frames map to processed frames.

    ``n_sum`` raw frames are summed into one; ``bin_total`` x ``bin_total`` raw pixels are
    summed, then each pixel split into ``upsample`` x ``upsample``, or (a non-integer ratio)
    resampled to pixels ``resample`` times as large (:func:`resample_by_overlap`); the processed
    frames are ``n_frames`` x ``height`` x ``width`` [px] of ``pixel_size_A`` [Å],
    ``frame_time_s`` [s] apart (None when the file does not say).
    """

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
    resample: float = 1.0

    @property
    def scale(self) -> float:
        """Raw pixels per processed pixel (along each axis)."""
        return self.bin_total * self.resample / self.upsample

    def processed_dose(self, dose_raw_e_per_px: float) -> float:
        """Dose per processed pixel and frame [e/px] of a raw dose [e/px/frame]."""
        return (float(dose_raw_e_per_px) * self.n_sum * self.bin_total**2 / self.upsample**2
                * self.resample**2)

    @property
    def raw_pixel_size_A(self) -> float:
        """Pixel size of the raw frames [Å]."""
        return self.pixel_size_A * self.upsample / self.bin_total / self.resample


def _integer_counts(movie: Movie, n_sum: int) -> bool:
    """Whether the first processed frame of ``movie`` holds integer counts (>= 0)."""
    return integer_counts(sum_frames(movie.read(0, n_sum), n_sum)[0])


def _resample_to_model(
    movie: Movie, px: float, target: float, frames: FramesSettings, notes: list[str]
) -> tuple[int, int, float]:
    """(extra bin factor, upsample factor, non-integer resampling factor) that bring ``px``
    [Å] to the model's ``target``."""
    tol = frames.pixel_size_tolerance
    ratio = target / px
    if abs(ratio - 1) <= tol:
        return 1, 1, 1.0
    k_bin, k_up = round(ratio), round(1 / ratio)
    resample = frames.pixel_size_mismatch == "resample"
    if resample and k_bin >= 2 and abs(ratio / k_bin - 1) <= tol:
        notes.append(f"binned {k_bin}x{k_bin} to the model pixel size {target:.4g} Å")
        log.warning(
            "%s: pixel %.4g Å is %dx finer than the model's %.4g Å: binning",
            movie.path, px, k_bin, target,
        )
        return k_bin, 1, 1.0
    if resample and 2 <= k_up <= MAX_UPSAMPLE and abs(ratio * k_up - 1) <= tol:
        notes.append(
            f"upsampled {k_up}x{k_up} to the model pixel size {target:.4g} Å "
            "(counts split multinomially: Poisson statistics kept, signal blocky)"
        )
        log.warning(
            "%s: pixel %.4g Å is %dx coarser than the model's %.4g Å: "
            "splitting counts over %dx%d pixels",
            movie.path, px, k_up, target, k_up, k_up,
        )
        return 1, k_up, 1.0
    if resample and ratio * MAX_UPSAMPLE >= 1 - tol:
        how = (
            "each count placed in an output pixel it overlaps with the overlap's share of its "
            "area (multinomial: Poisson statistics kept)"
            if _integer_counts(movie, frames.sum_frames) else
            "the frames are not integer counts (gain-normalised?): values spread over the "
            "output pixels by overlap area (counts conserved, Poisson statistics not kept)"
        )
        notes.append(
            f"resampled from {px:.4g} Å to the model pixel size {target:.4g} Å "
            f"(factor {ratio:.4g}, not an integer): {how}"
        )
        log.warning(
            "%s: pixel %.4g Å is %.4gx the model's %.4g Å: resampling counts by pixel overlap",
            movie.path, px, 1 / ratio, target,
        )
        return 1, 1, ratio
    why = (f"more than {MAX_UPSAMPLE}x coarser" if resample
           else "apply.preprocess.pixel_size_mismatch is 'refuse'")
    # binning helps a finer movie only; a coarser one needs another model or none
    hint = ("set apply.preprocess.bin_factor" if ratio > 1 else
            "give a model trained near this pixel size, or apply.inference.denoise_with="
            "wiener (no network)")
    raise InputError(
        f"movie {movie.path}: pixel size {px:.4g} Å does not match the model's "
        f"{target:.4g} Å (ratio {ratio:.3g}; {why}); {hint}, "
        "or apply.preprocess.pixel_size_mismatch=ignore to force"
    )


def resolve_geometry(
    movie: Movie, frames: FramesSettings, model_pixel_sizes_A: Sequence[float], seed: int
) -> FrameGeometry:
    """Frames, binning and pixel size after summing/binning; checks against the models.

    ``model_pixel_sizes_A`` are the pixel sizes [Å] the models were trained at (empty when
    they do not say). Raises :class:`InputError` when the pixel size is unknown everywhere,
    or the models were trained at a pixel size the movie cannot be resampled to.
    """
    t_raw, h_raw, w_raw = movie.shape
    n_sum = frames.sum_frames
    n = t_raw // n_sum
    if n == 0:
        raise InputError(f"movie {movie.path}: {t_raw} frames, fewer than sum_frames={n_sum}")
    model_px = [float(p) for p in model_pixel_sizes_A if p]
    notes: list[str] = []
    px_raw = frames.pixel_size_A or movie.pixel_size_A
    if px_raw is None:
        if not model_px:
            raise InputError(
                f"movie {movie.path}: pixel size unknown (not in the file); "
                "set apply.preprocess.pixel_size_A"
            )
        px_raw = model_px[0] / frames.bin_factor
        notes.append(f"pixel size not in the file: assumed the model's {model_px[0]:.4g} Å")
        log.warning(
            "%s: pixel size not recorded; assuming the model's %.4g Å", movie.path, model_px[0]
        )
    bin_total = frames.bin_factor
    px = px_raw * bin_total
    up, factor = 1, 1.0
    if model_px and frames.pixel_size_mismatch != "ignore":
        k_bin, up, factor = _resample_to_model(movie, px, model_px[0], frames, notes)
        bin_total *= k_bin
        px = px * k_bin / up * factor
        for other in model_px[1:]:
            if abs(other / px - 1) > frames.pixel_size_tolerance:
                raise InputError(
                    f"models disagree on the pixel size ({model_px} Å); movie at {px:.4g} Å"
                )
    h, w = h_raw // bin_total * up, w_raw // bin_total * up
    if factor != 1.0:
        h = resampled_size(h_raw // bin_total, factor)
        w = resampled_size(w_raw // bin_total, factor)
    if h < MIN_FRAME_PX or w < MIN_FRAME_PX:
        raise InputError(
            f"movie {movie.path}: frames of {h}x{w} px after binning {bin_total}x are too small "
            f"(need >= {MIN_FRAME_PX}x{MIN_FRAME_PX} px)"
        )
    ft = movie.frame_time_s * n_sum if movie.frame_time_s else None
    return FrameGeometry(n_sum, bin_total, n, h, w, float(px), ft, notes, up, int(seed), factor)


def _process(block: np.ndarray, t: int, geo: FrameGeometry) -> np.ndarray:
    """Upsample (split counts) or resample, and crop one summed, binned frame."""
    fr = block
    if geo.upsample > 1:
        fr = split_counts(fr, geo.upsample, geo.seed, t)
    elif geo.resample != 1.0:
        fr = resample_by_overlap(fr, geo.resample, geo.seed, t)
    return fr[: geo.height, : geo.width]


def _unaligned(
    movie: Movie, geo: FrameGeometry, chunk_frames: int, start: int, stop: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Summed, binned/split frames ``start <= t < stop`` before drift correction."""
    n_sum = geo.n_sum
    stop = min(stop, geo.n_frames)
    for first in range(start, stop, chunk_frames):
        last = min(first + chunk_frames, stop)
        block = bin_frames(sum_frames(movie.read(first * n_sum, last * n_sum), n_sum),
                           geo.bin_total)
        for j, fr in enumerate(block):
            yield first + j, _process(fr, first + j, geo)


def frame_stream(
    movie: Movie, geo: FrameGeometry, frames: FramesSettings, chunk_frames: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Processed frames ``(t, counts (H, W) float32, drift (dy, dx) [px])`` one at a time,
    read ``chunk_frames`` raw frames at a time.

    Drift is measured against a reference built from the frames streamed so far (an EWMA of
    the aligned frames, anchored to frame 0), so the stream starts at frame 0.
    """
    corr = DriftCorrector(smooth_px=frames.drift_smooth_px) if frames.drift_correction else None
    for t, fr in _unaligned(movie, geo, chunk_frames, 0, geo.n_frames):
        if corr is not None:
            fr, d = corr(fr)
        else:
            d = np.zeros(2)
        yield t, np.ascontiguousarray(fr, dtype=np.float32), d


def aligned_frames(
    movie: Movie, geo: FrameGeometry, chunk_frames: int, drift: np.ndarray, start: int, stop: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Processed frames ``start <= t < stop`` shifted by a drift measured before (``drift``
    (T, 2) (dy, dx) [px] from :func:`frame_stream`): the same counts the stream gave."""
    for t, fr in _unaligned(movie, geo, chunk_frames, start, stop):
        iy, ix = (int(v) for v in np.round(drift[t]))
        yield t, np.ascontiguousarray(shift_integer(fr, -iy, -ix), dtype=np.float32)


def collect_frames(
    movie: Movie, geo: FrameGeometry, frames: FramesSettings, chunk_frames: int, max_frames: int
) -> np.ndarray:
    """The first ``max_frames`` processed frames (T, H, W) [counts], as the stream gives them."""
    out = []
    for _, counts, _ in frame_stream(movie, geo, frames, chunk_frames):
        out.append(counts)
        if len(out) >= max_frames:
            break
    return np.stack(out) if out else np.zeros((0, geo.height, geo.width), np.float32)


def reprocess_frame(movie: Movie, t: int, geo: FrameGeometry, drift: np.ndarray) -> np.ndarray:
    """The processed counts of frame ``t`` (summed, binned/split, drift-shifted by ``drift``)."""
    raw = movie.read(t * geo.n_sum, (t + 1) * geo.n_sum)
    fr = _process(bin_frames(sum_frames(raw, geo.n_sum), geo.bin_total)[0], t, geo)
    iy, ix = (int(v) for v in np.round(drift[t]))
    return shift_integer(fr, -iy, -ix)
