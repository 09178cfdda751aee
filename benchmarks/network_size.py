"""Network-size study: PSNR on the cross-condition set vs GFLOP per 1024² frame.

For several sizes (``depth`` x ``base_channels``) of the supervised denoiser (U-Net) and of
the blind-spot multi-frame network (kind ``unsupervised``):

* ``flops``: FLOP of one output frame of 1024² (:func:`etem.models.factory.flops_per_frame`,
  counted exactly by ``torch.utils.flop_counter``; the blind-spot network: one output frame
  from its window of ``n_frames`` input frames) and the parameter count;
* ``speed``: frames/s at 1024² on this machine through the inference path of ``etem apply``
  (:class:`etem.models.inference.TiledRunner` with the config's ``apply.inference`` settings:
  a 1024² frame runs whole), median of ``--rounds`` after one warm-up, ``--threads`` torch
  threads; untrained weights (the speed does not depend on them);
* ``train``: every size trained with the same budget (``--steps``, seed, data, no early stop);
  the supervised denoiser on the campaign's training split
  (:func:`etem.training.run.train_network`, the ``etem train denoiser`` path); the blind-spot
  network on the same training images as a group of static-scene movies (one movie per
  training image: ``--movie-frames`` independent Poisson frames at the per-frame dose the
  cross-condition table gives it, ``evaluation.condition_dose_e_per_px / n_frames``), the
  ``etem train unsupervised --movie M1 M2 ...`` group path;
* ``score``: PSNR [dB] on the benchmark's test images (``load_test_images``: test,
  held-out structures, held-out microscope conditions) with the same noise draws as the
  cross-condition table of ``etem evaluate`` (:mod:`etem.evaluation.conditions`): the
  supervised denoiser on the noisy image at ``condition_dose_e_per_px``, the blind-spot
  network on ``n_frames`` independent frames of the static scene with 1/n of the dose each;
  both Mohan et al.'s metric (clean in e/px, clamp [0, 1], data range 1) and etem's; noisy
  and oracle-Gaussian baselines beside them;
* ``table``: the markdown table (``--out``).

Usage::

    python benchmarks/network_size.py --config C.yaml --index RESULTS/simulation/index.csv \\
        --work /tmp/netsize --steps 400 --threads 1 \\
        --denoiser-sizes 3x8 3x16 3x32 4x32 --blindspot-sizes 2x8 2x16 3x16 2x32 \\
        --stages flops speed train score table --out benchmarks/network_size.md

Every stage keeps its results in ``--work`` (models, ``flops.json``, ``speed.json``,
``scores.csv``) and skips what is there, so stages and kinds can run in separate processes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import h5py
import numpy as np
import pandas as pd
import torch

from etem.analysis import baselines
from etem.analysis.metrics import data_range, psnr, psnr_peak
from etem.config import EtemConfig, load_config
from etem.data.datasets import read_index
from etem.data.splits import assign_splits
from etem.evaluation.inputs import load_test_images
from etem.models.factory import build_model, count_parameters, flops_per_frame
from etem.models.inference import TiledRunner, denoise_images, denoise_movie, match_mean
from etem.models.io import LoadedModel, load_model
from etem.seeding import rng
from etem.training.run import train_network

KINDS = {"denoiser": "supervised U-Net", "unsupervised": "blind-spot (UDVD-like)"}
#: the demo config's sizes (config/demo.yaml): the reference of the paired differences
DEMO = {"denoiser": "denoiser_3x16", "unsupervised": "unsupervised_2x16"}


def _arch(kind: str, size: str, n_frames: int) -> dict[str, Any]:
    depth, base = (int(v) for v in size.split("x"))
    arch: dict[str, Any] = {"kind": kind, "depth": depth, "base_channels": base}
    if kind == "unsupervised":
        arch["n_frames"] = n_frames
    return arch


def _sizes(args: argparse.Namespace) -> list[tuple[str, str]]:
    out = [("denoiser", s) for s in args.denoiser_sizes if "denoiser" in args.kinds]
    out += [("unsupervised", s) for s in args.blindspot_sizes if "unsupervised" in args.kinds]
    return out


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def stage_flops(args: argparse.Namespace, cfg: EtemConfig) -> None:
    path = args.work / "flops.json"
    data = _read_json(path)
    n = cfg.training.unsupervised.n_frames
    for kind, size in _sizes(args):
        arch = _arch(kind, size, n)
        data[f"{kind}_{size}"] = {
            "params": count_parameters(build_model(arch)),
            "gflop_1024": flops_per_frame(arch, 1024) / 1e9,
        }
        print(kind, size, data[f"{kind}_{size}"], flush=True)
    _write_json(path, data)


def stage_speed(args: argparse.Namespace, cfg: EtemConfig) -> None:
    path = args.work / "speed.json"
    data = _read_json(path)
    inf = cfg.apply.inference
    n = cfg.training.unsupervised.n_frames
    g = np.random.default_rng(0)
    for kind, size in _sizes(args):
        key = f"{kind}_{size}"
        if key in data and not args.redo:
            continue
        torch.manual_seed(0)
        model = build_model(_arch(kind, size, n))
        runner = TiledRunner(model, inf.tile_px, inf.overlap_px, inf.batch_size, inf.precision,
                             inf.device)
        c = int(getattr(model, "in_channels", 1))
        # normalised counts at 0.5 e/px (the network's input): one output frame per run
        x = (g.poisson(0.5, size=(1, c, 1024, 1024)) / 0.5).astype(np.float32)
        runner.run(x)  # warm-up
        times, cpu = [], []
        for _ in range(args.rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            runner.run(x)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        s, c = float(np.median(times)), float(np.median(cpu))
        # CPU time: what the process's threads computed (on a shared machine the wall time
        # includes waiting for a core; with 1 thread the CPU time is the idle-core time)
        data[key] = {"s_per_frame": s, "frames_per_s": 1 / s, "times_s": times,
                     "cpu_s_per_frame": c, "frames_per_cpu_s": 1 / c, "cpu_s": cpu,
                     "threads": torch.get_num_threads(),
                     "precision": str(runner.dtype or "float32"),
                     "load": os.getloadavg()[0]}
        print(key, data[key], flush=True)
        _write_json(path, data)


def _training_rows(cfg: EtemConfig, index: Path) -> pd.DataFrame:
    df = read_index(index)
    df["split"] = assign_splits(df, cfg.training.split, cfg.seed).to_numpy()
    fam = df["family"].astype(str).isin(cfg.training.denoiser.families)
    return df[fam & (df["split"] == "train")].sort_values("image_id")


def make_movies(args: argparse.Namespace, cfg: EtemConfig) -> list[Path]:
    """One static-scene movie per training image of the supervised denoiser (same images):
    ``--movie-frames`` independent Poisson frames at the per-frame dose of the benchmark's
    blind-spot input."""
    out = args.work / "movies"
    out.mkdir(parents=True, exist_ok=True)
    n = cfg.training.unsupervised.n_frames
    dose = float(cfg.evaluation.condition_dose_e_per_px) / n
    paths = []
    for row in _training_rows(cfg, args.index).itertuples(index=False):
        p = out / f"{row.image_id}.h5"
        paths.append(p)
        if p.exists():
            continue
        with h5py.File(str(row.shard_path), "r") as f:
            clean = np.clip(np.asarray(f["clean"][int(row.index_in_shard)], np.float64), 0, None)
        g = rng(cfg.seed, "network_size", "movie", str(row.image_id))
        frames = g.poisson(clean * dose, size=(args.movie_frames, *clean.shape))
        tmp = p.with_suffix(".tmp")
        with h5py.File(tmp, "w") as f:
            f["frames"] = frames.astype(np.float32)
            f["clean"] = np.broadcast_to(clean * dose, frames.shape).astype(np.float32)
            f.attrs["pixel_size_A"] = float(row.pixel_size_A)
            f.attrs["dose_e_per_px_per_frame"] = dose
        tmp.replace(p)
    return paths


def stage_train(args: argparse.Namespace, cfg_path: Path) -> None:
    (args.work / "models").mkdir(parents=True, exist_ok=True)
    base = load_config(cfg_path)
    movies: list[Path] = []
    for kind, size in _sizes(args):
        out = args.work / "models" / f"{kind}_{size}.pt"
        if out.exists():
            continue
        depth, width = (int(v) for v in size.split("x"))
        loop: dict[str, Any] = {"steps": args.steps, "early_stopping_patience": args.steps,
                                "model": {"depth": depth, "base_channels": width}}
        lr = args.denoiser_lr if kind == "denoiser" else args.blindspot_lr
        if lr:
            loop["lr"] = lr
        cfg = load_config(cfg_path, {f"training.{kind}": loop})
        if kind == "unsupervised":
            movies = movies or make_movies(args, base)
            source: Any = movies
        else:
            source = args.index
        t0 = time.perf_counter()
        res = train_network(kind, cfg, source, out, panels=False)
        meta = _read_json(args.work / "training.json")
        meta[f"{kind}_{size}"] = {"steps": res.steps, "best_step": res.best_step,
                                  "metrics": res.metrics, "wall_s": time.perf_counter() - t0,
                                  "threads": torch.get_num_threads()}
        _write_json(args.work / "training.json", meta)
        print(kind, size, meta[f"{kind}_{size}"], flush=True)


def _metrics(clean: np.ndarray, est: np.ndarray, dose: float) -> dict[str, float]:
    return {"psnr_mohan_db": psnr_peak(clean * dose, est * dose, 1.0),
            "psnr_db": psnr(clean, est, data_range(clean))}


def _middle_frame(model: Any, frames: np.ndarray, dose: float, check: bool) -> np.ndarray:
    """The blind-spot output for the middle frame of an ``n_frames`` movie: the one window
    (all n frames) that :func:`denoise_movie` feeds the network for it, through the same
    whole-frame runner, without the other n - 1 outputs, with the mean constraint of the
    middle frame (:func:`match_mean`, as :func:`denoise_movie` does); ``check``: compare with
    ``denoise_movie(...)[n // 2]`` (the cross-condition table's call)."""
    mult = int(model.multiple)
    size = max(frames.shape[-2:])
    runner = TiledRunner(LoadedModel(model, {"size_multiple": mult}),
                         tile_px=-(-size // mult) * mult, overlap_px=0, max_batch_px=2**62,
                         device=next(model.parameters()).device.type)
    raw = runner.run((frames / dose)[None])[0, 0]
    mid = np.asarray(frames[len(frames) // 2], dtype=np.float32)
    est = np.asarray(match_mean(raw, mid, dose), dtype=np.float64)
    if check:
        ref = denoise_movie(model, frames, dose)[len(frames) // 2]
        if not np.allclose(est, ref, atol=1e-4, rtol=1e-4):
            raise SystemExit(f"middle-frame shortcut differs from denoise_movie by "
                             f"{np.abs(est - ref).max():.3g}")
    return est


def stage_score(args: argparse.Namespace, cfg: EtemConfig) -> None:
    """Same noise draws as etem.evaluation.conditions (rng keys of conditions_table)."""
    path = args.work / "scores.csv"
    old = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["method"])
    done = set(old["method"])
    todo = [(k, s) for k, s in _sizes(args)
            if (args.work / "models" / f"{k}_{s}.pt").exists() and f"{k}_{s}" not in done]
    base = "noisy" not in done
    if not todo and not base:
        return
    models = {f"{k}_{s}": load_model(args.work / "models" / f"{k}_{s}.pt")[0] for k, s in todo}
    dose = float(cfg.evaluation.condition_dose_e_per_px)
    rows = []
    checked: set[str] = set()
    for im in load_test_images(args.index, cfg):
        clean = np.asarray(im.clean, dtype=np.float64)
        counts = rng(cfg.seed, "benchmark", "conditions", im.image_id).poisson(
            np.clip(clean, 0, None) * dose).astype(np.float64)
        info = {"image_id": im.image_id, "split": im.params.get("split"),
                "condition": str(im.params.get("condition", "") or "")}
        if base:
            rows.append({**info, "method": "noisy",
                         **_metrics(clean, baselines.noisy_intensity(counts, dose), dose)})
            est, _ = baselines.oracle_gaussian(counts, dose, clean,
                                               list(cfg.evaluation.oracle_sigmas_px))
            rows.append({**info, "method": "gaussian_oracle", **_metrics(clean, est, dose)})
        for name, model in models.items():
            if name.startswith("denoiser"):
                est = np.asarray(denoise_images(model, counts.astype(np.float32), dose),
                                 dtype=np.float64)
            else:
                n = int(model.n_frames)
                g = rng(cfg.seed, "benchmark", "conditions", "frames", im.image_id)
                frames = g.poisson(np.clip(clean, 0, None) * (dose / n),
                                   size=(n, *clean.shape)).astype(np.float32)
                est = _middle_frame(model, frames, dose / n, check=name not in checked)
                checked.add(name)
            rows.append({**info, "method": name, **_metrics(clean, est, dose)})
    new = pd.DataFrame(rows)
    out = new if old.empty else pd.concat([old, new], ignore_index=True)
    tmp = path.with_suffix(".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(path)
    print(new.groupby(["method", "split"])["psnr_mohan_db"].mean().round(2), flush=True)


def _mean_sem(x: pd.Series) -> str:
    sem = x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return f"{x.mean():.2f} ± {sem:.2f}"


def _paired(hc: pd.DataFrame, key: str, ref: str) -> str:
    """Mean ± s.e.m. over images of (PSNR of ``key`` - PSNR of ``ref``), Mohan's metric."""
    a = hc[hc["method"] == key].set_index("image_id")["psnr_mohan_db"]
    b = hc[hc["method"] == ref].set_index("image_id")["psnr_mohan_db"]
    if key == ref or b.empty:
        return "-"
    return _mean_sem((a - b).dropna())


def stage_table(args: argparse.Namespace, cfg: EtemConfig) -> str:
    flops = _read_json(args.work / "flops.json")
    speed = _read_json(args.work / "speed.json")
    train = _read_json(args.work / "training.json")
    sc = pd.read_csv(args.work / "scores.csv") if (args.work / "scores.csv").exists() else None
    hc = sc[sc["split"] == "held_out_condition"] if sc is not None else None
    ref = {}
    if hc is not None:
        for m in ("noisy", "gaussian_oracle"):
            g = hc[hc["method"] == m]
            ref[m] = float(g["psnr_mohan_db"].mean()) if len(g) else float("nan")
    lines = [
        "| network | depth x base | parameters | GFLOP / 1024² frame | frames/s at 1024², "
        "wall / CPU time (threads) | held-out conditions: PSNR Mohan [dB] | ... etem's PSNR [dB] | "
        "test structures: PSNR Mohan [dB] | minus oracle Gaussian [dB] | vs the demo size, "
        "paired [dB] | best val step / train wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, size in _sizes(args):
        key = f"{kind}_{size}"
        f = flops.get(key, {})
        s = speed.get(key)
        t = train.get(key)
        cells = [KINDS[kind], size, f"{f.get('params', 0):,}", f"{f.get('gflop_1024', 0):.1f}",
                 f"{s['frames_per_s']:.3f} / {s['frames_per_cpu_s']:.3f} ({s['threads']})"
                 if s else "-"]
        g = hc[hc["method"] == key] if hc is not None else None
        if g is not None and len(g):
            test = sc[(sc["method"] == key) & (sc["split"] == "test")]  # type: ignore[index]
            cells += [_mean_sem(g["psnr_mohan_db"]), _mean_sem(g["psnr_db"]),
                      _mean_sem(test["psnr_mohan_db"]),
                      f"{g['psnr_mohan_db'].mean() - ref['gaussian_oracle']:+.2f}",
                      _paired(hc, key, DEMO[kind])]
        else:
            cells += ["not trained", "-", "-", "-", "-"]
        cells.append(f"{t['best_step']} / {t['wall_s'] / 60:.0f} min ({t['threads']} thr)"
                     if t else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if hc is not None:
        for m in ("noisy", "gaussian_oracle"):
            g = hc[hc["method"] == m]
            test = sc[(sc["method"] == m) & (sc["split"] == "test")]  # type: ignore[index]
            lines.append(f"| {m} | | | | | {_mean_sem(g['psnr_mohan_db'])} | "
                         f"{_mean_sem(g['psnr_db'])} | {_mean_sem(test['psnr_mohan_db'])} | | | |")
    n_hc = hc["image_id"].nunique() if hc is not None else 0
    lines.append("")
    lines.append(f"Held-out-condition images: {n_hc}; dose "
                 f"{cfg.evaluation.condition_dose_e_per_px} e/px in vacuum; training "
                 f"{args.steps} steps per size.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--denoiser-sizes", nargs="*", default=["3x8", "3x16", "3x32", "4x32"])
    ap.add_argument("--blindspot-sizes", nargs="*", default=["2x8", "2x16", "3x16", "2x32"])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--stages", nargs="+", default=["flops", "speed", "train", "score", "table"],
                    choices=["flops", "speed", "train", "score", "table"])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--denoiser-lr", type=float, help="default: the config's")
    ap.add_argument("--blindspot-lr", type=float, help="default: the config's")
    ap.add_argument("--movie-frames", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redo", action="store_true", help="re-measure the speed")
    ap.add_argument("--out", type=Path, help="append the table to this markdown file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config)
    for stage in args.stages:
        if stage == "flops":
            stage_flops(args, cfg)
        elif stage == "speed":
            stage_speed(args, cfg)
        elif stage == "train":
            stage_train(args, args.config)
        elif stage == "score":
            stage_score(args, cfg)
        elif stage == "table":
            table = stage_table(args, cfg)
            print(table)
            if args.out:
                commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True).stdout.strip()
                head = (f"\n### {datetime.date.today()} {platform.node()} "
                        f"({platform.processor() or platform.machine()}), "
                        f"torch {torch.__version__}, {args.threads} thread(s), "
                        f"load {os.getloadavg()[0]:.1f}, commit {commit}\n\n")
                with args.out.open("a") as fh:
                    fh.write(head + table + "\n")


if __name__ == "__main__":
    main()
