"""Package a trained denoiser as etem's pretrained model, with its model card.

Reads the recipe's results folder (``bash benchmarks/pretrained.sh`` → ``results/pretrained``:
``config.yaml``, ``simulation/``, ``models/denoiser.pt``, ``mlflow.db``) and writes into
``src/etem/models/pretrained/``: ``denoiser.pt`` (the model file, same bytes),
``model_card.json``, ``MODEL_CARD.md``, ``learning_curve.csv`` and ``learning_curve.png``.

Usage: python benchmarks/pretrained_card.py [--results results/pretrained] [--out DIR]
       [--evaluation EVAL_DIR] [--retrain RETRAINED_MODEL] [--nice N] [--machine-note TEXT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
import yaml
from mlflow.tracking import MlflowClient

from etem.io import file_digest
from etem.models.factory import count_parameters
from etem.models.io import load_model
from etem.plotting import plt

OUT = Path(__file__).resolve().parents[1] / "src" / "etem" / "models" / "pretrained"
CURVE_KEYS = ("val_psnr", "val_ssim", "val_loss", "val_psnr_noisy", "val_psnr_mohan", "lr")


def data_digest(results: Path) -> dict[str, Any]:
    """SHA-256 of the simulated data's content: the index CSV and, per shard in index order,
    the clean images' bytes (HDF5 containers may differ in layout, the arrays do not)."""
    index = results / "simulation" / "index.csv"
    h = hashlib.sha256(index.read_bytes())
    table = pd.read_csv(index)
    for shard in sorted(table["shard"].unique()):
        with h5py.File(results / "simulation" / shard, "r") as f:
            h.update(np.ascontiguousarray(f["clean"][()], dtype=np.float32).tobytes())
    return {"sha256": h.hexdigest(), "images": len(table),
            "structures": int(table["structure_id"].nunique()),
            "method": "sha256 of simulation/index.csv, then of each shard's 'clean' array "
                      "(float32, C order) in shard-name order"}


def training_run(client: MlflowClient, digest: str) -> Any:
    """The first training run that wrote the model file of this digest (not a retrain)."""
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`etem.model.sha256` = '{digest}'",
        order_by=["attributes.start_time ASC"], max_results=1)
    if not runs:
        raise SystemExit(f"no training run with model digest {digest} in the store")
    return runs[0]


def learning_curve(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """Validation metrics per validation step, and the training loss averaged over the steps
    since the previous validation."""
    val = {k: {m.step: m.value for m in client.get_metric_history(run_id, k)}
           for k in CURVE_KEYS}
    loss = pd.Series({m.step: m.value for m in client.get_metric_history(run_id, "train_loss")})
    steps = sorted(val["val_psnr"])
    rows, prev = [], 0
    for s in steps:
        window = loss[(loss.index > prev) & (loss.index <= s)]
        rows.append({"step": s, "train_loss_mean": float(window.mean()),
                     **{k: val[k].get(s, float("nan")) for k in CURVE_KEYS}})
        prev = s
    return pd.DataFrame(rows)


def retrain_check(model_path: Path, retrain_path: Path) -> dict[str, Any]:
    """The `etem retrain` of the training against the training: validation metrics of both
    model files and whether every weight tensor is bitwise equal."""
    a, meta_a = load_model(model_path)
    b, meta_b = load_model(retrain_path)
    sa, sb = a.state_dict(), b.state_dict()
    equal = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    keys = ("val_psnr", "val_ssim", "val_loss")
    return {"retrain_model_sha256": file_digest(retrain_path), "weights_bitwise_equal": equal,
            "metrics": {k: [meta_a["metrics"].get(k), meta_b["metrics"].get(k)] for k in keys},
            "val_psnr_difference_db": float(meta_b["metrics"]["val_psnr"]
                                            - meta_a["metrics"]["val_psnr"])}


def machine(note: str, nice: int) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "device": "cpu", "torch_threads": 1,
            "torch": torch.__version__, "python": platform.python_version(),
            "nice": nice, "note": note}


def figure(curve: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(curve.step, curve.val_psnr, "o-", label="denoised")
    ax[0].plot(curve.step, curve.val_psnr_noisy, "--", color="grey", label="noisy input")
    ax[0].set(xlabel="optimizer step (batch 8 x 96²)", ylabel="validation PSNR [dB]")
    ax[0].legend()
    ax[1].semilogy(curve.step, curve.train_loss_mean, "o-")
    ax[1].set(xlabel="optimizer step", ylabel="training MSE (mean since last validation)")
    fig.suptitle("etem pretrained denoiser: learning curve")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(card: dict[str, Any]) -> str:
    t, m, d, mf = card["training"], card["metrics"], card["data"], card["model_file"]
    rows = "\n".join(f"| {r['step']} | {r['val_psnr']:.2f} | {r['val_ssim']:.3f} | "
                     f"{r['train_loss_mean']:.4g} | {r['lr']:.3g} |" for r in card["curve"])
    arch = card["architecture"]
    curve = card["curve"]
    gain = curve[-1]["val_psnr"] - curve[max(0, len(curve) - 5)]["val_psnr"] if curve else 0.0
    trend = (f"The validation PSNR still rose by {gain:.2f} dB over its last four validations "
             "when it stopped." if gain > 0.1 else
             f"The validation PSNR changed by {gain:+.2f} dB over its last four validations.")
    bench = ""
    if "benchmark" in card:
        rows_b = card["benchmark"]["rows"]
        groups = list(dict.fromkeys(r["group"] for r in rows_b))
        methods = list(dict.fromkeys(r["method"] for r in rows_b))
        cell = {(r["group"], r["method"]): r for r in rows_b}
        lines = ["| group (n) | " + " | ".join(methods) + " |",
                 "|---|" + "---|" * len(methods)]
        for g in groups:
            n = cell[(g, methods[0])]["n"]
            label = g.replace("|", ", ")  # a '|' would split the table cell
            lines.append(f"| {label} ({n}) | " + " | ".join(
                f"{cell[(g, m)]['psnr_mohan_db_mean']:.2f} / {cell[(g, m)]['psnr_db_mean']:.2f}"
                for m in methods) + " |")
        bench = ("Benchmark (`etem evaluate`, 12.5 e/Å², the campaign's test, held-out-structure "
                 "and held-out-condition images; command in model_card.json): PSNR [dB], "
                 "Mohan et al.'s metric / etem's; means over the group's images (s.e.m. in "
                 "model_card.json):\n\n" + "\n".join(lines) + "\n")
    retrain = ""
    if "retrain" in card:
        r = card["retrain"]
        old, new = r["metrics"]["val_psnr"]
        retrain = (f"\n\nChecked: `etem retrain` of this training (on the same machine, "
                   f"after it) gave val PSNR {new:.4f} dB against {old:.4f} dB (difference "
                   f"{r['val_psnr_difference_db']:+.4f} dB); weights bitwise equal: "
                   f"{r['weights_bitwise_equal']}.")
    limits = f"{card['limits_note']} " if card.get("limits_note") else ""
    if arch.get("prefilter", "none") == "wiener_sure":
        inputs = ("Input: the empirical Wiener filter of the whole frame at the pair SURE "
                  "chooses for it (`etem.analysis.baselines.wiener_sure`, intensity, vacuum = "
                  "1), the counts / dose [e/px] (vacuum = 1) and the noise-level channel "
                  "1/sqrt(dose); output: clean intensity (vacuum = 1), a correction added to "
                  "the Wiener estimate (`training.denoiser.prefilter: wiener_sure`).")
    else:
        inputs = ("Input: counts / dose [e/px] (vacuum = 1) plus the noise-level channel "
                  "1/sqrt(dose); output: clean intensity (vacuum = 1).")
    table = "\n".join([
        f"| recipe | `{t['recipe']}` (config `benchmarks/pretrained.yaml`, seed {t['seed']}) |",
        f"| data | {d['images']} simulated images of {d['structures']} structures (train "
        f"{t['train_images']}, validation {t['val_images']}); content sha256 "
        f"`{d['sha256'][:16]}` |",
        f"| steps | {t['steps']} of batch {t['batch_size']} x {t['patch_px']}² (best step "
        f"{t['best_step']}, stopped early: {t['stopped_early']}) |",
        f"| wall time | {t['wall_hours']:.2f} h on {card['machine']['cpu'] or 'CPU'}, 1 torch "
        f"thread, nice {card['machine']['nice']} ({card['machine']['note']}) |",
        f"| how | {t['history']} |",
        f"| MLflow | run `{t['mlflow_run_id']}`, registered `{t['registered_model']}` in the "
        "recipe's store |",
    ])
    return f"""# etem pretrained general denoiser

A supervised, dose-conditioned U-Net denoiser (depth {arch['depth']}, {arch['base_channels']}
channels at the first scale, {mf['parameters']:,} parameters, {mf['bytes'] / 1e6:.2f} MB)
trained on simulated HRTEM images with **per-image microscope randomisation** (voltage,
Cs/C5, defocus, two-fold astigmatism, coma, focal spread, convergence, detector pixel, blur,
detector DQE(0), dose; bright, dark and intermediate atom contrast in equal proportions: the
default ranges of `simulation.microscope`). `etem apply` uses it when no `--denoiser` is given
(`apply.inference.pretrained`; with `denoise_with: auto` it is one candidate scored by uPSNR
on the movie). {inputs} Model file sha256 (first 16 hex) `{mf['sha256']}`.

## Training

| | |
|---|---|
{table}

## Metrics (validation images, held-out structures; doses spread over the training range)

| metric | value |
|---|---|
| val PSNR [dB] | {m['val_psnr']:.2f} (noisy input {m['val_psnr_noisy']:.2f}) |
| val SSIM | {m['val_ssim']:.3f} |
| val MSE | {m['val_loss']:.4g} |

{bench}
Learning curve (`learning_curve.csv`, `learning_curve.png`):

| step | val PSNR [dB] | val SSIM | train MSE | lr |
|---|---|---|---|---|
{rows}

## Reproduce

{card['reproduce']}{retrain}

## Limits

{limits}Trained for what a shared 2-core CPU allowed ({t['wall_hours']:.1f} h). {trend}
A longer run of the same recipe (`training.denoiser.steps`, or a wider network under
`training.denoiser.model`) on a GPU is the way to a better model. Images etem never
simulated (other imaging modes, STEM, dark-atom
contrast outside the randomised ranges) may lie outside its training domain: `etem apply`
scores it against the raw frames and a Gaussian filter on the movie itself and does not use
it where it hurts.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results/pretrained", type=Path)
    ap.add_argument("--out", default=OUT, type=Path)
    ap.add_argument("--wall-hours", type=float, default=None,
                    help="training wall time [h] when it spanned several runs (default: the "
                    "training run's own start to end)")
    ap.add_argument("--evaluation", type=Path, default=None,
                    help="an `etem evaluate` folder of this model: its conditions_summary.csv "
                    "goes into the card")
    ap.add_argument("--retrain", type=Path, default=None,
                    help="the model file an `etem retrain` of the training run wrote: compared "
                    "with the trained one (weights, validation metrics) in the card")
    ap.add_argument("--machine-note", default="2-core VM shared with other jobs",
                    help="the machine's load during the training (recorded in the card)")
    ap.add_argument("--nice", type=int, default=0, help="the training's nice level")
    ap.add_argument("--evaluation-settings",
                    default="max_test_images 40, condition_max_images 80, umse_images 0",
                    help="the evaluation section of the --evaluation run (recorded in the card)")
    ap.add_argument("--history", default="",
                    help="how the training ran, when not in one run (recorded in the card)")
    ap.add_argument("--limits-note", default="",
                    help="measured limits of this model (the card's Limits section)")
    args = ap.parse_args()
    results: Path = args.results
    model_path = results / "models" / "denoiser.pt"
    module, meta = load_model(model_path)
    digest = file_digest(model_path)
    uri = f"sqlite:///{(results / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=uri)
    run = training_run(client, digest)
    curve = learning_curve(client, run.info.run_id)
    config = yaml.safe_load((results / "config.yaml").read_text())
    config.pop("results_dir", None)
    loop = meta["config"]
    end = run.info.end_time or run.info.start_time
    card: dict[str, Any] = {
        "name": "etem pretrained general denoiser",
        "kind": meta["kind"],
        "model_file": {"name": "denoiser.pt", "sha256": digest, "bytes": model_path.stat().st_size,
                       "parameters": count_parameters(module)},
        "architecture": meta["arch"],
        "training": {
            "recipe": "bash benchmarks/pretrained.sh",
            "config": config,
            "seed": config.get("seed"),
            "steps": meta["steps"], "best_step": meta["best_step"],
            "stopped_early": meta["stopped_early"],
            "batch_size": loop["batch_size"], "patch_px": loop["patch_px"],
            "wall_hours": args.wall_hours or (end - run.info.start_time) / 3.6e6,
            "history": args.history or "one run of the recipe",
            "train_images": None, "val_images": None,
            "train_structures": meta.get("train_structures"),
            "val_structures": meta.get("val_structures"),
            "mlflow_run_id": run.info.run_id,
            "registered_model": run.data.tags.get("etem.registered_model", ""),
        },
        "limits_note": args.limits_note,
        "data": data_digest(results),
        "machine": machine(args.machine_note, args.nice),
        "metrics": meta["metrics"],
        "dose_e_per_A2": meta.get("train_dose_e_per_A2"),
        "provenance": meta.get("provenance", {}),
        "curve": curve.to_dict(orient="records"),
        "reproduce": (
            "On the machine that trained it: `etem retrain --run-id "
            f"{run.info.run_id} --tracking-uri sqlite:///results/pretrained/mlflow.db` reruns "
            "the logged training (same config, same images) and prints the old and new "
            "validation metrics. Anywhere: `bash benchmarks/pretrained.sh` rebuilds the "
            "structures and images from the seed (the data sha256 above, from `python "
            "benchmarks/pretrained_card.py --out /tmp/card`, is that of the training machine's "
            "CPU: the simulation's floating point differs in the last bits between CPUs, so "
            "another CPU gives another digest for images that agree to round-off) and "
            "retrains. Training on CPU with deterministic algorithms and one thread is bitwise "
            "reproducible on one machine (the loop's resume test and `etem retrain` check it); "
            "across machines the metrics agree (benchmarks/pretrained.md)."),
    }
    counts = [ln for ln in (results / "train.log").read_text().splitlines()
              if "training images" in ln] if (results / "train.log").exists() else []
    if counts:  # "denoiser: 531 training images (60 structures), 71 validation images ..."
        words = counts[-1].split()
        card["training"]["train_images"] = int(words[words.index("training") - 1])
        card["training"]["val_images"] = int(words[words.index("validation") - 1])
    if args.evaluation is not None:
        table = pd.read_csv(args.evaluation / "conditions_summary.csv")
        card["benchmark"] = {
            "command": "etem evaluate --config C --index results/pretrained/simulation/index.csv "
                       "--denoiser models:/etem-pretrained-denoiser/N --out E (C: the recipe "
                       "config with noise.benchmark_doses_e_per_A2 [12.5], evaluation "
                       f"{args.evaluation_settings})",
            "rows": table[["method", "group", "n", "psnr_db_mean", "psnr_mohan_db_mean",
                           "psnr_mohan_db_sem", "ssim_mean"]].to_dict(orient="records"),
        }
    if args.retrain is not None:
        card["retrain"] = retrain_check(model_path, args.retrain)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, out / "denoiser.pt")
    curve.to_csv(out / "learning_curve.csv", index=False, float_format="%.6g")
    figure(curve, out / "learning_curve.png")
    (out / "model_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    (out / "MODEL_CARD.md").write_text(markdown(card))
    print(f"{out}: denoiser.pt ({digest}), {meta['steps']} steps, val PSNR "
          f"{meta['metrics']['val_psnr']:.2f} dB, {card['training']['wall_hours']:.2f} h")


if __name__ == "__main__":
    main()
