"""``etem benchmark``: denoising tables, column detection, likelihood calibration, uMSE."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from etem.cliutils import add_config_args, config_from_args, stage_run

log = logging.getLogger("etem.evaluation.cli")

HELP = """\
Benchmark the denoisers on the test and held-out images of a campaign.

inputs : --index  simulation/index.csv (image index; shards beside it, contract in
                  etem.simulation.contract); images are split by structure_id
         --denoiser / --unsupervised / --segmenter  model files (optional)
         --movie  synthetic movie HDF5 (/frames counts, /clean expected counts; optional)
outputs: --out DIR with per_image.parquet, denoising_summary.csv (one row per
         (method, subset); PSNR [dB], SSIM), columns_summary.csv (precision, recall,
         position RMSE [pm]), likelihood_columns.parquet, likelihood_calibration.json
         (used by `etem apply`), calibration_far.csv, reliability.csv, umse.csv,
         segmentation.csv, movie.csv, mohan_summary.csv / mohan_per_image.csv (Mohan
         et al.'s protocol: clean scaled to a peak of 1 count, PSNR [dB] / SSIM with
         peak 1 count after clamping; comparable with their 35-38 dB), figures/*.png
         and summary.json.
units  : doses [e/Å²] (noise.benchmark_doses_e_per_A2), lengths [Å], positions [pm],
         intensities normalised so that vacuum = 1, counts [e/px].
"""


def register(sub: Any) -> None:
    """Add the ``benchmark`` subcommand."""
    p = sub.add_parser("benchmark", help="denoising/column/likelihood benchmarks on the test split",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--index", required=True, help="simulation index CSV")
    p.add_argument("--denoiser", help="supervised denoiser model file (.pt)")
    p.add_argument("--unsupervised", help="unsupervised (multi-frame) model file (.pt)")
    p.add_argument("--segmenter", help="segmenter model file (.pt)")
    p.add_argument("--movie", help="synthetic movie HDF5 with ground truth")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def _load(path: str | None) -> Any:
    if not path:
        return None
    from etem.models.io import load_model

    model, _ = load_model(path)
    return model


def run(args: argparse.Namespace) -> int:
    """Run the benchmark stage."""
    from etem.evaluation.benchmark import load_test_images, read_movie, run_benchmark, write_outputs
    from etem.io import require_file

    cfg = config_from_args(args)
    require_file(args.index, "image index")
    images = load_test_images(args.index, cfg)
    denoiser, unsup, seg = _load(args.denoiser), _load(args.unsupervised), _load(args.segmenter)
    movie = read_movie(args.movie) if args.movie else None
    params = {"n_images": len(images), "denoiser": args.denoiser, "unsupervised": args.unsupervised,
              "segmenter": args.segmenter, "movie": args.movie}
    with stage_run(args, cfg, "benchmark", params=params) as run_:
        res = run_benchmark(cfg, images, denoiser, seg, movie, unsup)
        files = write_outputs(cfg, res, Path(args.out))
        _log_mlflow(run_, res, files)
    s = res.summary
    print(f"benchmark: {len(images)} images, methods {', '.join(s['methods'])} -> {args.out}")
    for m, v in s["psnr_db"].items():
        print(f"  {m:>16s}: PSNR {v:6.2f} dB  SSIM {s['ssim'][m]:.3f}")
    mp = s.get("mohan_protocol")
    if mp:
        print(f"Mohan et al.'s protocol (peak {mp['peak_counts']:g} count, mean "
              f"{mp['mean_counts_per_px']:.3f} e/px):")
        for m, v in mp["psnr_db"].items():
            print(f"  {m:>16s}: PSNR {v:6.2f} dB  SSIM {mp['ssim'][m]:.3f}")
    return 0


def _log_mlflow(run_: Any, res: Any, files: list[Path]) -> None:
    s = res.summary
    metrics = {f"psnr_db.{m}": v for m, v in s["psnr_db"].items()}
    metrics.update({f"ssim.{m}": v for m, v in s["ssim"].items()})
    for k, v in s.get("false_alarm", {}).items():
        metrics[f"false_alarm.{k}"] = v["observed"]
    for m, v in s.get("columns", {}).items():
        metrics.update({f"columns.{m}.{k}": x for k, x in v.items() if x == x})
    mp = s.get("mohan_protocol", {})
    metrics.update({f"mohan.psnr_db.{m}": v for m, v in mp.get("psnr_db", {}).items()})
    metrics.update({f"mohan.ssim.{m}": v for m, v in mp.get("ssim", {}).items()})
    if mp:
        metrics["mohan.mean_counts_per_px"] = mp["mean_counts_per_px"]
    if "umse_mean_abs_z" in s:
        metrics["umse_mean_abs_z"] = s["umse_mean_abs_z"]
    run_.log_metrics(metrics)
    for f in files:
        run_.log_artifact(f, "figures" if f.suffix == ".png" else None)
