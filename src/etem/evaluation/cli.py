"""``etem evaluate``: denoising tables, column detection, likelihood calibration, uMSE."""

from __future__ import annotations

import argparse
from typing import Any

from etem.cliutils import add_config_args, add_shard_arg, model_arg

HELP = """\
Benchmark the denoisers on the test and held-out images of a campaign.

inputs : --index  simulation/index.csv (image index; shards beside it, contract in
                  etem.simulation.contract); images are split by structure_id
         --denoiser / --unsupervised / --segmenter  model files (optional)
         --movie  synthetic movie HDF5 (/frames counts, /clean expected counts; optional)
         --code-path NAME=INDEX  images of code path NAME (evaluation.code_paths) made by
                  etem simulate-code-path + simulate-index (repeatable; optional)
outputs: --out DIR with per_image.parquet, denoising_summary.csv (one row per
         (method, subset); PSNR [dB], SSIM), columns_summary.csv (precision, recall,
         position RMSE [pm]), likelihood_columns.parquet, likelihood_calibration.json
         (used by `etem apply`), calibration_far.csv, reliability.csv, umse.csv,
         segmentation.csv, movie.csv, mohan_summary.csv / mohan_per_image.csv (Mohan
         et al.'s protocol: clean scaled to a peak of 1 count, PSNR [dB] / SSIM with
         peak 1 count after clamping; comparable with their 35-38 dB),
         conditions_summary.csv (denoisers per split and held-out microscope
         condition), segmentation_conditions.csv (the segmenter per split and
         condition beside occupancy from integrated column intensity), figures/*.png
         and summary.json.
units  : doses [e/Å²] (noise.benchmark_doses_e_per_A2), lengths [Å], positions [pm],
         intensities normalised so that vacuum = 1, counts [e/px].
"""


def register(sub: Any) -> None:
    """Add the ``evaluate`` subcommand (alias ``benchmark``)."""
    p = sub.add_parser("evaluate", aliases=["benchmark"],
                       help="the evaluation stage: denoising, column and likelihood tables "
                       "on the test split",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--index", required=True, help="simulation index CSV")
    p.add_argument("--denoiser", type=model_arg,
                   help="supervised denoiser model file (.pt) or models:/NAME/VERSION")
    p.add_argument("--unsupervised", type=model_arg,
                   help="unsupervised (multi-frame) model file (.pt) or models:/NAME/VERSION")
    p.add_argument("--segmenter", type=model_arg,
                   help="segmenter model file (.pt) or models:/NAME/VERSION")
    p.add_argument("--movie", help="synthetic movie HDF5 with ground truth")
    p.add_argument("--code-path", dest="code_paths", action="append", default=[],
                   metavar="NAME=INDEX",
                   help="image index of code path NAME (evaluation.code_paths), scored as the "
                   "group split=code_path|condition=NAME of the cross-condition table "
                   "(repeatable)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(handler="etem.evaluation.commands:evaluate")

    p = sub.add_parser(
        "simulate-code-path",
        help="simulate the evaluated structures through another abTEM code path",
        description=(
            "Simulate the images of the structures the benchmark evaluates (splits test and "
            "held_out of the structures manifest) with the simulation overrides of code path "
            "NAME (evaluation.code_paths: parametrization, projection, frozen_phonons, "
            "frozen_phonon_sigma_A, slice_thickness_A, images_per_structure), by the code of "
            "`etem simulate`. Output: one HDF5 image shard (the contract of `etem simulate`; "
            "attrs code_path and code_path_overrides); gather the shards with `etem "
            "simulate-index` and pass the index to `etem evaluate --code-path NAME=INDEX`."
        ),
    )
    add_config_args(p)
    p.add_argument("--code-path", required=True, metavar="NAME",
                   help="name of the code path (evaluation.code_paths)")
    p.add_argument("--manifest", help="structures manifest (default: <results>/structures/"
                   "manifest.csv)")
    add_shard_arg(p)
    p.add_argument("--out", help="output shard .h5 (default: <results>/simulation/code_paths/"
                   "NAME/shard_I.h5)")
    p.set_defaults(handler="etem.evaluation.codepaths:simulate_code_path")
