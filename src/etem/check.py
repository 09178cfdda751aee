"""``etem check``: verify that a campaign's outputs are complete, readable and tracked.

Run after a campaign (CI does, on the smoke campaign) or after a crash to see what is
missing. Each problem is one line; the exit code is non-zero when any is found.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import tifffile

from etem.cliutils import config_from_args
from etem.config import EtemConfig
from etem.errors import InputError
from etem.io import read_table, stale_temporaries
from etem.models.io import load_model
from etem.movies.sheet import campaign_movies
from etem.paths import Layout
from etem.runs import campaign_key, search_stage_runs, tracking_uri
from etem.simulation.contract import CONTRACT_VERSION as SIMULATION_CONTRACT_VERSION
from etem.simulation.contract import MOVIE_CONTRACT_VERSION, PARAM_COLUMNS, PARAM_DEFAULTS
from etem.structures.contract import CONTRACT_VERSION as STRUCTURES_CONTRACT_VERSION

#: Stages that every complete campaign has recorded in MLflow.
TRACKED_STAGES = (
    "structures", "simulation", "simulate-movie", "train-denoiser", "train-unsupervised",
    "train-segmenter", "evaluation", "apply", "report",
)


def _check_version(f: h5py.File, expected: int) -> None:
    """The file's ``contract_version`` attribute must be the one its reader expects."""
    got = f.attrs.get("contract_version")
    if got is None or int(got) != expected:
        raise InputError(f"{f.filename}: contract version {got}, this etem reads {expected} "
                         "(re-run the stage that writes it)")


def _check_structures(cfg: EtemConfig, lay: Layout) -> str:
    df = read_table(lay.structures_manifest)
    if len(df) != cfg.structures.total:
        raise InputError(f"manifest has {len(df)} structures, config asks {cfg.structures.total}")
    missing = [p for p in df["path"] if not (lay.structures_manifest.parent / p).exists()]
    if missing:
        raise InputError(f"{len(missing)} structure files missing, e.g. {missing[0]}")
    for i in range(cfg.structures.n_shards):
        with h5py.File(lay.structure_shard(i) / "columns.h5", "r") as f:
            _check_version(f, STRUCTURES_CONTRACT_VERSION)
    return f"{len(df)} structures"


def _check_shard(path: Path, size_px: int) -> int:
    """One simulation shard (the campaign's or a code path's): readable, of this etem's
    contract, /clean of ``size_px`` frames and finite, every /params column and label map.
    Returns its number of images."""
    if not path.exists():
        raise InputError(f"{path}: missing")
    try:
        with h5py.File(path, "r") as f:
            _check_version(f, SIMULATION_CONTRACT_VERSION)
            clean = f["clean"]
            if clean.ndim != 3 or clean.shape[1:] != (size_px,) * 2:
                raise InputError(f"{path}: /clean has shape {clean.shape}")
            if clean.shape[0] and not np.isfinite(clean[: min(4, clean.shape[0])]).all():
                raise InputError(f"{path}: /clean has non-finite values")
            # columns added later (PARAM_DEFAULTS) are filled in by the readers
            absent = [c for c in PARAM_COLUMNS
                      if f"params/{c}" not in f and c not in PARAM_DEFAULTS]
            if absent:
                raise InputError(f"{path}: params missing {absent}")
            for key in ("labels/class", "labels/cation_occupancy", "labels/anion_occupancy"):
                if f[key].shape != clean.shape:
                    raise InputError(f"{path}: /{key} shape {f[key].shape} != {clean.shape}")
            return int(clean.shape[0])
    except InputError:
        raise
    except Exception as exc:  # not HDF5, truncated, a dataset missing
        raise InputError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None


def _check_images(cfg: EtemConfig, lay: Layout) -> str:
    size = cfg.simulation.output_size_px
    n = sum(_check_shard(lay.simulation_shard(i), size) for i in range(cfg.simulation.n_shards))
    index = read_table(lay.simulation_index)
    if len(index) != n or n == 0:
        raise InputError(f"index has {len(index)} rows, shards hold {n} images")
    return f"{n} images in {cfg.simulation.n_shards} shards"


def _check_code_paths(cfg: EtemConfig, lay: Layout) -> str:
    """Every code path (``evaluation.code_paths``): its shards (as the workflow plans them:
    ``n_shards``, else ``simulation.n_shards``) and its index, which lists their images."""
    if not cfg.evaluation.code_paths:
        return "no code paths configured"
    problems, total = [], 0
    for cp in cfg.evaluation.code_paths:
        size = cfg.with_code_path(cp.name).simulation.output_size_px
        n_shards = cp.n_shards or cfg.simulation.n_shards
        n = 0
        for i in range(n_shards):
            try:
                n += _check_shard(lay.code_path_shard(cp.name, i), size)
            except InputError as exc:
                problems.append(f"code path {cp.name}: {exc}")
        index = lay.code_path_index(cp.name)
        try:
            rows = len(read_table(index))
        except Exception as exc:  # missing or damaged
            problems.append(f"code path {cp.name}: {index}: "
                            f"{'missing' if not index.exists() else f'unreadable ({exc})'}")
            continue
        if rows != n or n == 0:
            problems.append(f"code path {cp.name}: {index} has {rows} rows, its "
                            f"{n_shards} shard(s) hold {n} images")
        total += n
    if problems:  # every damaged shard, not only the first
        raise InputError("; ".join(problems))
    names = ", ".join(cp.name for cp in cfg.evaluation.code_paths)
    return f"{total} code-path images ({names})"


def _check_movie(cfg: EtemConfig, lay: Layout) -> str:
    with h5py.File(lay.synthetic_movie, "r") as f:
        _check_version(f, MOVIE_CONTRACT_VERSION)
        shape = f["frames"].shape
    if shape[0] != cfg.synthetic_movie.n_frames:
        raise InputError(f"synthetic movie has {shape[0]} frames, config asks "
                         f"{cfg.synthetic_movie.n_frames}")
    return f"synthetic movie {shape}"


def _check_models(cfg: EtemConfig, lay: Layout) -> str:
    kinds = []
    for kind in ("denoiser", "unsupervised", "segmenter"):
        _, meta = load_model(lay.model(kind))
        if meta.get("kind") != kind:
            raise InputError(f"{lay.model(kind)}: kind {meta.get('kind')!r}, expected {kind!r}")
        kinds.append(kind)
    return "models " + ", ".join(kinds)


def readable(path: Path) -> None:
    """Open ``path`` the way its users will (by suffix); raise :class:`InputError` if it fails.

    Parquet/CSV tables are read whole, HDF5 files opened and their datasets' shapes read,
    JSON parsed, model files loaded, TIFF headers read, other files must be non-empty.
    """
    if not path.exists():
        raise InputError(f"{path}: missing")
    try:
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            pd.read_parquet(path)
        elif suffix == ".csv":
            pd.read_csv(path)
        elif suffix in (".h5", ".hdf5"):
            with h5py.File(path, "r") as f:
                f.visit(lambda name: getattr(f[name], "shape", None))
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".pt":
            load_model(path)
        elif suffix in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                _ = tif.series[0].shape
        elif path.stat().st_size == 0:
            raise InputError("empty file")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None


def _check_listed(folder: Path, required: tuple[str, ...]) -> int:
    """Every file ``folder/summary.json`` lists, and ``required``, exists and is readable."""
    summary = json.loads((folder / "summary.json").read_text())
    files = summary.get("files", [])
    names = list(files.values()) if isinstance(files, dict) else list(files)
    problems = []
    for name in sorted({*names, *required}):
        try:
            readable(folder / name)
        except InputError as exc:
            problems.append(str(exc))
    if problems:  # every damaged file, not only the first
        raise InputError("; ".join(problems))
    return len(names)


#: Files the evaluation stage always writes (besides those its summary.json lists).
EVALUATION_REQUIRED = ("per_image.parquet", "denoising_summary.csv", "likelihood_calibration.json")


def _check_evaluation(cfg: EtemConfig, lay: Layout) -> str:
    n = _check_listed(lay.evaluation_dir, EVALUATION_REQUIRED)
    if cfg.evaluation.code_paths and cfg.evaluation.conditions:
        # each code path is scored as its own group of the cross-condition table
        path = lay.evaluation_dir / "conditions_summary.csv"
        readable(path)
        table = pd.read_csv(path)
        groups = set(table["group"]) if "group" in table else set()
        absent = [f"split=code_path|condition={cp.name}" for cp in cfg.evaluation.code_paths
                  if f"split=code_path|condition={cp.name}" not in groups]
        if absent:
            raise InputError(f"{path}: no group {', '.join(absent)} (the evaluation ran "
                             "without the code paths' images)")
        return (f"{n} evaluation outputs readable, {len(cfg.evaluation.code_paths)} "
                "code-path group(s)")
    return f"{n} evaluation outputs readable"


def _check_apply(cfg: EtemConfig, lay: Layout) -> str:
    movies = campaign_movies(cfg, lay.synthetic_movie)  # the sheet's rows + synthetic
    n = 0
    for row in movies:
        folder = lay.apply_dir(row.name)
        if not lay.apply_summary(row.name).exists():
            raise InputError(f"{lay.apply_summary(row.name)}: missing (movie {row.name})")
        n += _check_listed(folder, ("results.h5", "columns.parquet", "events.csv", "frames.csv"))
    return f"{len(movies)} movie result(s), {n} outputs readable"


def _check_report(cfg: EtemConfig, lay: Layout) -> str:
    text = lay.report.read_text(encoding="utf-8")
    if "<html" not in text.lower() or "</html>" not in text.lower():
        raise InputError(f"{lay.report}: not a complete HTML document")
    return f"report {lay.report.stat().st_size // 1024} KiB"


def _check_temporaries(cfg: EtemConfig, lay: Layout) -> str:
    stale = stale_temporaries(lay.root, recursive=True)
    if stale:
        raise InputError(f"{len(stale)} temporary file(s) of killed jobs, e.g. {stale[0]} "
                         "(the next run of that job removes them)")
    return "no temporaries of killed jobs"


def _check_tracking(cfg: EtemConfig, lay: Layout) -> str:
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise InputError(f"no MLflow store at {uri}")
    runs = search_stage_runs(cfg)
    if runs.empty:
        raise InputError("no MLflow runs recorded")
    running = runs[runs["status"] == "RUNNING"]
    if not running.empty:
        stages = ", ".join(sorted(set(running["tags.etem.stage"].astype(str))))
        raise InputError(f"{len(running)} MLflow run(s) still RUNNING ({stages}): a job is "
                         "running or was killed (re-running the workflow marks them KILLED)")
    key = campaign_key(cfg)
    if "tags.etem.campaign_key" not in runs:
        raise InputError("no MLflow runs of this campaign (no etem.campaign_key tags)")
    runs = runs[(runs["status"] == "FINISHED") & (runs["tags.etem.campaign_key"] == key)]
    missing = [s for s in TRACKED_STAGES if s not in set(runs["tags.etem.stage"])]
    if missing:
        raise InputError(f"no finished MLflow run for stage(s) {', '.join(missing)}")
    return f"{len(runs)} finished MLflow stage runs"


CHECKS: dict[str, Callable[[Any, Layout], str]] = {
    "structures": _check_structures,
    "images": _check_images,
    "code_paths": _check_code_paths,
    "movie": _check_movie,
    "models": _check_models,
    "evaluation": _check_evaluation,
    "apply": _check_apply,
    "report": _check_report,
    "temporaries": _check_temporaries,
    "tracking": _check_tracking,
}


def check_campaign(cfg: EtemConfig) -> list[tuple[str, bool, str]]:
    """Run every check; returns (name, ok, message) triples."""
    lay = Layout(cfg.results_path)
    out = []
    for name, fn in CHECKS.items():
        try:
            out.append((name, True, fn(cfg, lay)))
        except Exception as exc:  # a diagnostics tool: report every failure, keep going
            out.append((name, False, f"{type(exc).__name__}: {exc}"))
    return out


def run(args: argparse.Namespace) -> int:
    """``etem check``: print every check; error when the campaign is incomplete."""
    cfg = config_from_args(args)
    results = check_campaign(cfg)
    for name, ok, msg in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name:<11} {msg}")
    bad = [n for n, ok, _ in results if not ok]
    if bad:
        where = f"campaign {cfg.name} in {cfg.results_path}"
        raise InputError(f"{where}: incomplete ({', '.join(bad)})")
    print(f"campaign {cfg.name} in {Path(cfg.results_path)}: complete")
    return 0
