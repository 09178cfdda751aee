"""Handler of the evaluation stage's subcommand (arguments in :mod:`etem.evaluation.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from etem.cliutils import config_from_args, stage_run
from etem.config import EtemConfig
from etem.errors import ConfigError
from etem.evaluation.benchmark import load_test_images, read_movie, run_benchmark, write_outputs
from etem.evaluation.inputs import TestImage, load_code_path_images, load_train_images
from etem.io import require_file
from etem.models.io import load, load_model
from etem.runs import StageRun, model_file


def _load(spec: str | None, cfg: EtemConfig, meta: bool = False) -> Any:
    """A model argument (file or ``models:/NAME/VERSION``) loaded, or None: the network, or
    with ``meta`` the :class:`~etem.models.io.LoadedModel` (fine-tuning needs its file's
    architecture)."""
    if not spec:
        return None
    if meta:
        return load(model_file(spec, cfg))
    model, _ = load_model(model_file(spec, cfg))
    return model


def evaluate(args: argparse.Namespace) -> int:
    """``etem evaluate``: run the evaluation stage."""
    cfg = config_from_args(args)
    require_file(args.index, "image index")
    images = load_test_images(args.index, cfg)
    code_paths = _code_paths(args, cfg)
    train = load_train_images(args.index, cfg) if cfg.evaluation.conditions else []
    denoiser, unsup, seg = (_load(args.denoiser, cfg), _load(args.unsupervised, cfg, meta=True),
                         _load(args.segmenter, cfg))
    movie = read_movie(args.movie) if args.movie else None
    params = {"n_images": len(images), "denoiser": args.denoiser, "unsupervised": args.unsupervised,
              "segmenter": args.segmenter, "movie": args.movie,
              **{f"code_path.{k}": len(v) for k, v in code_paths.items()}}
    with stage_run(args, cfg, "evaluation", params=params) as run_:
        res = run_benchmark(cfg, images, denoiser, seg, movie, unsup, code_paths, train)
        files = write_outputs(cfg, res, Path(args.out))
        _log_mlflow(run_, res, files)
    s = res.summary
    print(f"evaluation: {len(images)} images, methods {', '.join(s['methods'])} -> {args.out}")
    for m, v in s["psnr_db"].items():
        print(f"  {m:>16s}: PSNR {v:6.2f} dB  SSIM {s['ssim'][m]:.3f}")
    mp = s.get("mohan_protocol")
    if mp:
        print(f"Mohan et al.'s protocol (peak {mp['peak_counts']:g} count, mean "
              f"{mp['mean_counts_per_px']:.3f} e/px):")
        for m, v in mp["psnr_db"].items():
            print(f"  {m:>16s}: PSNR {v:6.2f} dB  SSIM {mp['ssim'][m]:.3f}")
    for group, by_method in s.get("conditions", {}).items():
        parts = [f"{m} {v['psnr_db']:.2f}/{v['psnr_mohan_db']:.2f}" for m, v in by_method.items()]
        print(f"  cross-condition {group} (PSNR etem/Mohan dB): {', '.join(parts)}")
    for group, by_method in s.get("segmentation_conditions", {}).items():
        parts = [f"{m} {v.get('cation_occupancy_exact', float('nan')):.2f}/"
                 f"{v.get('anion_occupancy_exact', float('nan')):.2f}"
                 for m, v in by_method.items()]
        print(f"  occupancy {group} (exact, cation/anion): {', '.join(parts)}")
    return 0


def _code_paths(args: argparse.Namespace, cfg: Any) -> dict[str, list[TestImage]]:
    """The images of every ``--code-path NAME=INDEX``, by name."""
    out: dict[str, list[TestImage]] = {}
    for item in getattr(args, "code_paths", None) or []:
        name, sep, index = item.partition("=")
        if not sep or not name or not index:
            raise ConfigError(f"--code-path {item!r}: expected NAME=INDEX")
        if name in out:
            raise ConfigError(f"--code-path {name}: given twice")
        cfg.evaluation.code_path(name)  # ConfigError if not configured
        require_file(index, f"code path {name}: image index")
        out[name] = load_code_path_images(index, cfg, name, args.index)
    return out


def _log_mlflow(run_: StageRun, res: Any, files: list[Path]) -> None:
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
