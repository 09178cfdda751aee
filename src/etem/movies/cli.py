"""``etem apply`` and ``etem movie-info``: the movie stage on the command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from etem.cliutils import add_config_args, config_from_args, stage_run

log = logging.getLogger("etem.movies.cli")

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
    p.set_defaults(func=_apply)

    q = sub.add_parser(
        "movie-info",
        help="print shape, pixel size [Å], frame time [s] and dose of a movie",
        description="Open a movie lazily (any supported format) and print its metadata as JSON: "
        "n_frames, height/width [px], dtype, pixel_size_A [Å], frame_time_s [s], fps, "
        "dose_e_per_px_per_frame [e/px/frame].",
    )
    q.add_argument("movie", nargs="+", metavar="PATH", help="movie file or folder")
    q.set_defaults(func=_info)


def _open(paths: list[str]):  # type: ignore[no-untyped-def]
    from etem.frames.readers import open_movie

    return open_movie(paths[0] if len(paths) == 1 else paths)


def _info(args: argparse.Namespace) -> int:
    with _open(args.movie) as movie:
        sys.stdout.write(json.dumps(movie.describe(), indent=2) + "\n")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from etem.errors import InputError
    from etem.models.io import load
    from etem.movies.apply import ApplyModels, apply_movie

    if args.finetune_steps is not None:
        if args.finetune_steps < 0:
            raise InputError(f"--finetune-steps {args.finetune_steps}: must be >= 0")
        args.overrides = [*(args.overrides or []), f"apply.finetune_steps={args.finetune_steps}"]
    cfg = config_from_args(args)
    if not (args.denoiser or args.unsupervised):
        raise InputError("etem apply needs --denoiser and/or --unsupervised")
    models = ApplyModels(
        denoiser=load(args.denoiser) if args.denoiser else None,
        unsupervised=load(args.unsupervised) if args.unsupervised else None,
        segmenter=load(args.segmenter) if args.segmenter else None,
    )
    if args.calibration:
        from etem.analysis.likelihood import Calibration

        models.calibration = Calibration.load(args.calibration)
        models.calibration_path = str(args.calibration)
    name = args.name or Path(args.movie[0]).stem
    params = {
        "movie": " ".join(args.movie),
        "out": args.out,
        **{f"apply.{k}": v for k, v in cfg.section("apply").items()},
    }
    with stage_run(args, cfg, "apply", params=params, run_name=f"apply {name}") as run:
        run.set_tags(
            {f"etem.model.{k}.run_id": v for k, v in models.run_ids().items()}
            | {"etem.model_run_ids": ",".join(models.run_ids().values()), "etem.movie": name}
        )
        with _open(args.movie) as movie:
            summary = apply_movie(movie, args.out, cfg, models, name=name)
        timing = json.loads((Path(args.out) / "timing.json").read_text())
        run.log_metrics(
            {
                "n_frames": summary["n_frames"],
                "n_events": summary["n_events"],
                "n_columns": summary["n_columns"],
                "n_tracks": summary["n_tracks"],
                "processing_fps": timing["processing_fps"],
                **(
                    {"mean_confidence": summary["mean_confidence"]}
                    if summary["mean_confidence"] is not None
                    else {}
                ),
            }
        )
        ft = summary.get("finetune")
        if ft is not None:
            run.log_metrics(
                {
                    "finetune_loss_before": ft["loss_before"],
                    "finetune_loss_after": ft["loss_after"],
                    "finetune_steps_done": ft["steps"],
                    "finetune_kept": float(ft["kept"]),
                    "finetune_s": timing.get("finetune_s", 0.0),
                }
            )
            run.set_tags({"etem.finetune.parent_run_id": ft["parent"]["run_id"] or ""})
        if summary.get("truth"):  # the movie carried its ground truth (etem.movies.truth)
            from etem.movies.truth import metrics as truth_metrics

            run.log_metrics(truth_metrics(summary["truth"]))
        for f in summary["files"].values():
            if f.endswith((".png", ".gif", ".csv", ".json", ".pt")):
                run.log_artifact(Path(args.out) / f, "apply")
        run.log_artifact(Path(args.out) / "summary.json", "apply")
    print(
        f"{name}: {summary['n_frames']} frames, {summary['n_columns']} columns/frame, "
        f"{summary['n_events']} events -> {args.out}"
    )
    return 0
