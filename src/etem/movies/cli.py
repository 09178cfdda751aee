"""``etem apply`` and ``etem movie-info``: the movie stage on the command line."""

from __future__ import annotations

import argparse

from etem.cliutils import add_config_args, existing_path, model_arg, output_file, output_folder

_APPLY_HELP = """\
Denoise an experimental movie and quantify it, streaming in chunks at bounded memory.

Input: a movie (dm3/dm4 file or a folder of per-frame .dm4 as GMS in-situ recording writes,
mrc, tif/tiff stack or folder of per-frame TIFFs, emd (Velox/NCEM), ser/emi, npy, etem h5)
and trained models (etem model files, models/<kind>.pt). Steps: frame summing and binning,
drift correction (integer shifts of counts, sub-pixel remainder applied to positions),
tiled batched denoising (supervised, or the 5-frame blind-spot model), column finding per
frame, tracking, occupancy per column (segmenter), per-column likelihood and confidence
(calibration JSON), and event detection (EWMA of frame statistics + time derivative).
With apply.finetune.steps > 0 (or --finetune-steps N) the blind-spot model is first
fine-tuned on the movie's leading frames (no clean data needed; see docs/movies.md).

Outputs in --out: results.h5 (denoised frames [intensity, vacuum = 1], per-frame column
tables [px, Å], occupancy maps, drift [px], frame statistics, events), columns.parquet,
events.csv (onset frames, [s] when the frame time is known), frames.csv, denoised.tif (float32
ImageJ stack, pixel size in nm), figures (PNG), preview.gif, timing.json and, written last,
summary.json (and finetuned_unsupervised.pt when fine-tuned). Config keys: apply.io,
apply.preprocess, apply.inference, apply.tracks, apply.events, apply.truth, apply.finetune
(see docs/movies.md), set with dotted keys, e.g. --set apply.inference.tile_px=512; column
finding uses the columns: section.
"""


def _movie_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--movie",
        required=True,
        nargs="+",
        type=existing_path,
        metavar="PATH",
        help="movie file, folder of per-frame files, quoted glob pattern of per-frame files "
        "(e.g. 'run03/f_*.tif', natural order), or several per-frame files",
    )
    p.add_argument(
        "--frame-time-s",
        type=_positive,
        metavar="S",
        help="time between raw frames [s] when the file does not record it (or records it "
        "wrongly); the movie sheet's frame_time_s column",
    )


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return v


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--denoiser", type=model_arg, metavar="MODEL",
                   help="supervised denoiser: model file (.pt) or registered model "
                   "models:/NAME/VERSION (or models:/NAME/latest) in the config's tracking "
                   "store; default: apply.models.denoiser, else the pretrained denoiser "
                   "shipped in the package (apply.inference.pretrained)")
    p.add_argument("--unsupervised", type=model_arg, metavar="MODEL",
                   help="blind-spot multi-frame model: file (.pt) or models:/NAME/VERSION "
                   "(default: apply.models.unsupervised)")
    p.add_argument("--segmenter", type=model_arg, metavar="MODEL",
                   help="occupancy segmenter: model file (.pt) or models:/NAME/VERSION "
                   "(default: apply.models.segmenter)")
    p.add_argument(
        "--calibration",
        type=existing_path,
        metavar="JSON",
        help="likelihood calibration (evaluation/likelihood_calibration.json)",
    )
    p.add_argument(
        "--finetune-steps",
        type=int,
        metavar="N",
        help="fine-tune the unsupervised model on this movie for N optimizer steps before "
        "denoising (overrides apply.finetune.steps; 0 = off); writes finetuned_unsupervised.pt",
    )
    add_config_args(p)


def _frames(text: str) -> tuple[int, int]:
    a, sep, b = text.partition(":")
    try:
        start, stop = int(a), int(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frames {text!r}: expected START:STOP") from None
    if not sep or not 0 <= start < stop:
        raise argparse.ArgumentTypeError(f"--frames {text!r}: need 0 <= START < STOP")
    return start, stop


# long (94 lines): the declarations of the four movie subcommands (argparse only).
def register(sub: argparse._SubParsersAction) -> None:
    """Add ``apply``, its three passes, and ``movie-info``."""
    p = sub.add_parser(
        "apply",
        help="denoise a movie, find and track columns, detect events",
        description=_APPLY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _movie_arg(p)
    p.add_argument("--out", required=True, type=output_folder, metavar="DIR",
                   help="output folder")
    p.add_argument("--name", help="movie name in the summary (default: the file's or "
                   "folder's stem; a glob pattern's folder name)")
    _model_args(p)
    p.set_defaults(handler="etem.movies.commands:apply")

    p = sub.add_parser(
        "apply-prepare",
        help="first pass of apply: geometry, drift, dose, fine-tuning (one job per movie)",
        description="Read the movie once (no network on every frame): frame geometry, drift "
        "of every processed frame [px], dose [e/px], fine-tuning of the blind-spot model "
        "(--finetune-steps), column polarity. Writes PREPARED (HDF5, etem.movies.prepare) and, "
        "when fine-tuned, finetuned_unsupervised.pt beside it in the movie's output folder.",
    )
    _movie_arg(p)
    p.add_argument("--out", required=True, type=output_file, metavar="PREPARED",
                   help="prepare.h5 to write")
    p.add_argument("--finetuned-dir", type=output_folder, metavar="DIR",
                   help="where the fine-tuned model goes (default: beside --out)")
    _model_args(p)
    p.set_defaults(handler="etem.movies.commands:apply_prepare")

    p = sub.add_parser(
        "apply-shard",
        help="second pass of apply: denoise, segment, find columns in a frame range",
        description="Denoise, segment and find columns in the processed frames START:STOP "
        "(START a multiple of apply.io.chunk_frames) of a prepared movie. Writes one shard file "
        "(HDF5, etem.movies.shard). Shards of one movie run in parallel.",
    )
    _movie_arg(p)
    p.add_argument("--prepared", required=True, type=existing_path, metavar="PREPARED",
                   help="prepare.h5")
    p.add_argument("--frames", required=True, type=_frames, metavar="START:STOP",
                   help="processed frames of this shard")
    p.add_argument("--out", required=True, type=output_file, metavar="SHARD",
                   help="shard file to write (.h5)")
    _model_args(p)
    p.set_defaults(handler="etem.movies.commands:apply_shard")

    p = sub.add_parser(
        "apply-gather",
        help="third pass of apply: tracks, statistics, events, outputs of a movie's shards",
        description="Gather the shard files of a movie into its results (the outputs of "
        "`etem apply`), with tracks, frame statistics and events over the whole series. "
        "Records the movie's MLflow run.",
    )
    _movie_arg(p)
    p.add_argument("--prepared", required=True, type=existing_path, metavar="PREPARED",
                   help="prepare.h5")
    p.add_argument("--shards", required=True, nargs="+", type=existing_path, metavar="SHARD",
                   help="shard files")
    p.add_argument("--out", required=True, type=output_folder, metavar="DIR",
                   help="output folder")
    p.add_argument("--name", help="movie name in the summary (default: the file's or "
                   "folder's stem; a glob pattern's folder name)")
    _model_args(p)
    p.set_defaults(handler="etem.movies.commands:apply_gather")

    q = sub.add_parser(
        "sheet",
        help="validate a movie sheet, or print its schema",
        description="The movie sheet (movies.sheet in the config): a TSV file, one row per "
        "movie, columns name, path (file, folder of frames or glob; relative to the sheet), "
        "and optional pixel_size_A [Å], dose_e_per_px [e/px per frame], frame_time_s [s], "
        "group, denoiser (supervised|blindspot|auto), finetune (true|false), "
        "denoiser_model, unsupervised_model, segmenter_model (model file or "
        "models:/NAME/VERSION). "
        "'validate' opens every movie and prints its frame count, and checks every model "
        "registry URI in the tracking store of --config; a bad row is one error "
        "line naming the line and the column. 'schema' prints the JSON schema of a row.",
    )
    q.add_argument("action", choices=["validate", "schema"])
    q.add_argument("sheet", nargs="?", metavar="SHEET", help="the TSV sheet (for validate)")
    q.add_argument("--cache", metavar="JSON",
                   help="frame-count cache (default: none; the workflow uses "
                   ".snakemake/etem/movie_shapes.json)")
    q.add_argument("--out", metavar="FILE", help="with 'schema': write the JSON schema here")
    add_config_args(q)  # the tracking store in which models:/ URIs of the sheet are checked
    q.set_defaults(handler="etem.movies.commands:sheet")

    q = sub.add_parser(
        "movie-info",
        help="print shape, pixel size [Å], frame time [s] and dose of a movie",
        description="Open a movie lazily (any supported format) and print its metadata as JSON: "
        "n_frames, height/width [px], dtype, pixel_size_A [Å], frame_time_s [s], fps, "
        "dose_e_per_px_per_frame [e/px/frame].",
    )
    q.add_argument("movie", nargs="+", type=existing_path, metavar="PATH",
                   help="movie file or folder")
    q.set_defaults(handler="etem.movies.commands:movie_info")
