"""``etem apply`` and ``etem movie-info``: the movie stage on the command line."""

from __future__ import annotations

import argparse

from etem.cliutils import add_config_args

_APPLY_HELP = """\
Denoise an experimental movie and quantify it, streaming in chunks at bounded memory.

Input: a movie (dm3/dm4 file or a folder of per-frame .dm4 as GMS in-situ recording writes,
mrc, tif/tiff stack or folder of per-frame TIFFs, emd (Velox/NCEM), ser/emi, npy, etem h5)
and trained models (etem model files, models/<kind>.pt). Steps: frame summing and binning,
drift correction (integer shifts of counts, sub-pixel remainder applied to positions),
tiled batched denoising (supervised, or the 5-frame blind-spot model), column finding per
frame, tracking, occupancy per column (segmenter), per-column likelihood and confidence
(calibration JSON), and event detection (EWMA of frame statistics + time derivative).
With apply.finetune_steps > 0 (or --finetune-steps N) the blind-spot model is first
fine-tuned on the movie's leading frames (no clean data needed; see docs/movies.md).

Outputs in --out: results.h5 (denoised frames [intensity, vacuum = 1], per-frame column
tables [px, Å], occupancy maps, drift [px], frame statistics, events), columns.parquet,
events.csv (onset frames, [s] when the frame time is known), frames.csv, denoised.tif (float32
ImageJ stack, pixel size in nm), figures (PNG), preview.gif, timing.json and, written last,
summary.json (and finetuned_unsupervised.pt when fine-tuned). Config keys: apply.* (see
docs/movies.md); column finding uses benchmark.blob_*.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``apply`` and ``movie-info``."""
    p = sub.add_parser(
        "apply",
        help="denoise a movie, find and track columns, detect events",
        description=_APPLY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--movie",
        required=True,
        nargs="+",
        metavar="PATH",
        help="movie file, folder of per-frame files, or several per-frame files",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--name", help="movie name in the summary (default: file stem)")
    p.add_argument("--denoiser", metavar="MODEL", help="supervised denoiser model file (.pt)")
    p.add_argument(
        "--unsupervised", metavar="MODEL", help="blind-spot multi-frame model file (.pt)"
    )
    p.add_argument("--segmenter", metavar="MODEL", help="occupancy segmenter model file (.pt)")
    p.add_argument(
        "--calibration",
        metavar="JSON",
        help="likelihood calibration (benchmark/likelihood_calibration.json)",
    )
    p.add_argument(
        "--finetune-steps",
        type=int,
        metavar="N",
        help="fine-tune the unsupervised model on this movie for N optimizer steps before "
        "denoising (overrides apply.finetune_steps; 0 = off); writes finetuned_unsupervised.pt",
    )
    add_config_args(p)
    p.set_defaults(handler="etem.movies.commands:apply")

    q = sub.add_parser(
        "movie-info",
        help="print shape, pixel size [Å], frame time [s] and dose of a movie",
        description="Open a movie lazily (any supported format) and print its metadata as JSON: "
        "n_frames, height/width [px], dtype, pixel_size_A [Å], frame_time_s [s], fps, "
        "dose_e_per_px_per_frame [e/px/frame].",
    )
    q.add_argument("movie", nargs="+", metavar="PATH", help="movie file or folder")
    q.set_defaults(handler="etem.movies.commands:movie_info")
