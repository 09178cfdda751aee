"""Denoisers on a set of images made outside etem's campaign code path (issue 14).

The recipe of ``tests/integration/test_pretrained_unseen.py``, widened: structures built with
ASE alone (bulk Pt fcc and fluorite CeO2 along [001], not etem's structure builder; optionally
a Pt cluster from ``ase.cluster`` on a CeO2 (001) slab), imaged with abTEM alone
(:func:`etem.simulation.reference.abtem_image`) by a corrected 300 kV microscope (Cs -15 µm,
C5 2 mm) at its Scherzer defocus and ±4 nm, under three conditions:

- ``blur``: Gaussian blur FWHM 1.4 Å (held out of the pretrained campaigns: >= 1.3 Å);
- ``pixel``: 0.18 Å detector pixels (held out: >= 0.16 Å), blur 0.6 Å;
- ``in-range``: blur 0.6 Å, no detector pixel (inside the training ranges);

at several thicknesses, with Poisson noise at 0.45 e/px in vacuum (issue 14's dose) from
several seeds. Each clean image is simulated once per (structure, condition, defocus) and
reused across seeds and models.

Methods: the noisy counts, ``flat`` (a constant image at the mean count: no structure at all,
the floor that says how much contrast an image has left to recover), the oracle Gaussian (the
width among ``EtemConfig().evaluation.oracle_sigmas_px`` best on the clean image, or
``--oracle-sigmas``), NLM with an estimated noise level, and each ``--model NAME=PATH``
through :func:`etem.models.inference.denoise_images`.
Metric: Mohan et al.'s PSNR, ``psnr_peak(clean * D, estimate * D, 1.0)`` (D = 0.45 e/px).

Outputs (``--out DIR``): ``per_image.csv`` (one row per noisy image, a PSNR column per method),
``summary.csv`` and ``summary.md`` (mean ± s.e.m. per material × condition, the held-out
conditions together and overall; each model's paired margin over the oracle Gaussian and over
NLM, the images where it is below them, and its paired difference to the first model); the
Markdown is printed too. The s.e.m. is over images; the seeds of one clean image are not
independent draws of the structure, so it understates the spread over structures.

Usage:
  python benchmarks/independent_set.py --model v1=src/etem/models/pretrained/denoiser.pt \\
      --model v2=results/pretrained2/card_v2/denoiser.pt --out results/independent_set
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ase import Atoms
from ase.cluster import FaceCenteredCubic

from etem.analysis import baselines
from etem.analysis.metrics import psnr_peak
from etem.config import EtemConfig
from etem.io import atomic_path
from etem.models.inference import denoise_images
from etem.models.io import load_model
from etem.simulation.microscope import scherzer_defocus_nm
from etem.simulation.reference import (
    A_PT,
    CONDITIONS,
    CS_UM,
    ENERGY_KV,
    bulk_crystal,
    ceo2_crystal,
    corrected_microscope,
    independent_image,
)

DOSE_E_PER_PX = 0.45
HELD_OUT = ("blur", "pixel")
BASELINES = ("noisy", "flat", "oracle_gaussian", "nlm")
PARTICLE = "Pt/CeO2"


# --- the particle (the bulk crystals, microscope and images: etem.simulation.reference) ---


def particle(layers: tuple[int, int, int] = (4, 4, 3), support_cells: int = 2) -> Atoms:
    """A Pt cuboctahedral cluster ([001] along z) 2 Å above a 6 x 6 x ``support_cells`` CeO2
    (001) slab, centred, 3 Å of vacuum above it."""
    slab = ceo2_crystal(6, support_cells)
    cluster = FaceCenteredCubic("Pt", [(1, 0, 0), (1, 1, 0), (1, 1, 1)], list(layers),
                                latticeconstant=A_PT)
    pos = cluster.get_positions()
    top = float(slab.get_positions()[:, 2].max())
    shift = np.array([slab.cell[0, 0] / 2, slab.cell[1, 1] / 2, top + 2.0])
    shift -= np.array([pos[:, 0].mean(), pos[:, 1].mean(), pos[:, 2].min()])
    cluster.translate(shift)
    atoms = slab + cluster
    height = float(atoms.get_positions()[:, 2].max()) + 3.0
    atoms.set_cell([slab.cell[0, 0], slab.cell[1, 1], height])
    return atoms


@dataclass(frozen=True)
class Spec:
    """One clean image of the set."""

    material: str
    cells: int  # unit cells along z (0: the particle)
    condition: str
    defocus_nm: float

    def atoms(self) -> Atoms:
        return particle() if self.material == PARTICLE else bulk_crystal(self.material, self.cells)

    def key(self) -> str:
        return f"{self.material}|{self.cells}|{self.condition}|{self.defocus_nm:.3f}"


def specs(pt_cells: list[int], ceo2_cells: list[int], defoci_nm: list[float],
          conditions: list[str], with_particle: bool) -> Iterator[Spec]:
    for material, cells_list in (("Pt", pt_cells), ("CeO2", ceo2_cells)):
        for cells in cells_list:
            for condition in conditions:
                for df in defoci_nm:
                    yield Spec(material, cells, condition, df)
    if with_particle:
        for condition in conditions:
            for df in defoci_nm:
                yield Spec(PARTICLE, 0, condition, df)


def noise(clean: np.ndarray, spec: Spec, seed: int) -> np.ndarray:
    """Poisson counts at 0.45 e/px; the stream is drawn from (seed, the image's key), so the
    images of one seed are independent of each other."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.key().encode())])
    return rng.poisson(np.clip(clean, 0, None) * DOSE_E_PER_PX).astype(np.float32)


# --- scoring -----------------------------------------------------------------------------


def mohan(clean: np.ndarray, est: np.ndarray) -> float:
    """Mohan et al.'s PSNR: both images in counts at 0.45 e/px, clamped to [0, 1 count]."""
    return psnr_peak(clean * DOSE_E_PER_PX, np.asarray(est, np.float64) * DOSE_E_PER_PX, 1.0)


def mean_matched(est: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``est`` (intensity) scaled so that its mean is the noisy image's mean count / dose."""
    mean = float(est.mean())
    return est * (float(counts.mean()) / DOSE_E_PER_PX / mean) if mean > 0 else est


def run_set(spec_list: list[Spec], seeds: list[int], models: dict[str, torch.nn.Module],
            pixel_A: float, sigmas: list[float] | None = None, log: bool = True) -> pd.DataFrame:
    """Per-image PSNR of every method (one row per (clean image, seed)); ``sigmas``: the
    oracle Gaussian's widths [px] (default the config's ``evaluation.oracle_sigmas_px``)."""
    sigmas = sigmas or list(EtemConfig().evaluation.oracle_sigmas_px)
    rows = []
    for i, spec in enumerate(spec_list):
        t0 = time.perf_counter()
        atoms = spec.atoms()
        clean = independent_image(atoms, corrected_microscope(spec.condition, spec.defocus_nm),
                                  pixel_A)
        counts = np.stack([noise(clean, spec, s) for s in seeds])
        outs = {name: np.asarray(denoise_images(m, counts, DOSE_E_PER_PX), np.float64)
                for name, m in models.items()}
        for j, seed in enumerate(seeds):
            gauss, sigma = baselines.oracle_gaussian(counts[j], DOSE_E_PER_PX, clean, sigmas)
            row: dict[str, object] = {
                "material": spec.material, "cells": spec.cells,
                "thickness_A": round(float(atoms.cell[2, 2]), 2),
                "condition": spec.condition, "defocus_nm": round(spec.defocus_nm, 3),
                "seed": seed, "size_px": clean.shape[0], "clean_std": float(clean.std()),
                "clean_mean": float(clean.mean()),
                "oracle_sigma_px": sigma,
                "noisy": mohan(clean, counts[j] / DOSE_E_PER_PX),
                "flat": mohan(clean, np.full_like(clean, counts[j].mean() / DOSE_E_PER_PX)),
                "oracle_gaussian": mohan(clean, gauss),
                "nlm": mohan(clean, baselines.nlm_estimated(counts[j], DOSE_E_PER_PX)),
            }
            for name, out in outs.items():
                row[name] = mohan(clean, out[j])
                # diagnostics: the output's mean offset from the clean image (intensity, vacuum
                # = 1), and the PSNR after scaling the output to the noisy image's mean count
                # (no oracle: the counts alone)
                row[f"{name}_bias"] = float(out[j].mean() - clean.mean())
                row[f"{name}_meanfix"] = mohan(clean, mean_matched(out[j], counts[j]))
            rows.append(row)
        if log:
            print(f"[{i + 1}/{len(spec_list)}] {spec.key()} {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


# --- summary -----------------------------------------------------------------------------


def _mean_sem(x: pd.Series) -> tuple[float, float]:
    v = x.to_numpy(dtype=float)
    sem = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), sem


def groups(per_image: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """The summary's subsets: material × condition, each material, the held-out conditions
    together, and all images."""
    for (material, condition), g in per_image.groupby(["material", "condition"], sort=False):
        yield f"{material}, {condition}", g
    for material, g in per_image.groupby("material", sort=False):
        yield f"{material}, all", g
    held = per_image[per_image["condition"].isin(HELD_OUT)]
    if len(held) and len(held) < len(per_image):
        yield "held-out conditions", held
    yield "all", per_image


def summarize(per_image: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """One row per subset: n, mean and s.e.m. of each method, and for each model its paired
    margin over the oracle Gaussian and NLM (mean, s.e.m.), the number of images where it is
    below each, and (second model on) its paired difference to the first model and the number
    of images where it beats it."""
    out = []
    for name, g in groups(per_image):
        row: dict[str, object] = {"group": name, "n": len(g)}
        for m in (*BASELINES, *models):
            row[f"{m}_mean"], row[f"{m}_sem"] = _mean_sem(g[m])
        for m in models:
            for ref, tag in (("oracle_gaussian", "gauss"), ("nlm", "nlm")):
                d = g[m] - g[ref]
                row[f"{m}_over_{tag}_mean"], row[f"{m}_over_{tag}_sem"] = _mean_sem(d)
                row[f"{m}_below_{tag}"] = int((d < 0).sum())
        for m in models[1:]:
            d = g[m] - g[models[0]]
            row[f"{m}_minus_{models[0]}_mean"], row[f"{m}_minus_{models[0]}_sem"] = _mean_sem(d)
            row[f"{m}_beats_{models[0]}"] = int((d > 0).sum())
        out.append(row)
    return pd.DataFrame(out)


def _pm(mean: object, sem: object) -> str:
    return f"{float(mean):.2f} ± {float(sem):.2f}"  # type: ignore[arg-type]


def _signed(mean: object, sem: object) -> str:
    return f"{float(mean):+.2f} ± {float(sem):.2f}"  # type: ignore[arg-type]


def markdown(summary: pd.DataFrame, models: list[str]) -> str:
    """Two Markdown tables: PSNR per method, and each model's margins and counts."""
    lines = ["PSNR [dB] (Mohan's metric, 0.45 e/px), mean ± s.e.m. over images:", ""]
    head = ["group", "n", "noisy", "flat", "oracle Gaussian", "NLM", *models]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [str(r["group"]), str(r["n"])]
        cells += [_pm(r[f"{m}_mean"], r[f"{m}_sem"]) for m in (*BASELINES, *models)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Paired margins [dB] (mean ± s.e.m.) and images below (of n):", ""]
    head = ["group", "n"]
    for m in models:
        head += [f"{m} − oracle G", f"{m} − NLM", f"{m} below G / NLM"]
    for m in models[1:]:
        head += [f"{m} − {models[0]}", f"{m} beats {models[0]}"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [str(r["group"]), str(r["n"])]
        for m in models:
            cells += [_signed(r[f"{m}_over_gauss_mean"], r[f"{m}_over_gauss_sem"]),
                      _signed(r[f"{m}_over_nlm_mean"], r[f"{m}_over_nlm_sem"]),
                      f"{r[f'{m}_below_gauss']} / {r[f'{m}_below_nlm']}"]
        for m in models[1:]:
            key = f"{m}_minus_{models[0]}"
            cells += [_signed(r[f"{key}_mean"], r[f"{key}_sem"]),
                      str(r[f"{m}_beats_{models[0]}"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def breakdown(per_image: pd.DataFrame, models: list[str], by: str) -> str:
    """Each model's margin over the oracle Gaussian by ``by`` within each material (Markdown)."""
    head = ["material", by, "n", "oracle Gaussian", *[f"{m} − oracle G" for m in models]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (material, value), g in per_image.groupby(["material", by], sort=False):
        cells = [str(material), str(value), str(len(g)), _pm(*_mean_sem(g["oracle_gaussian"]))]
        cells += [_signed(*_mean_sem(g[m] - g["oracle_gaussian"])) for m in models]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bias_table(per_image: pd.DataFrame, models: list[str]) -> str:
    """Each model's mean offset from the clean image and its PSNR scaled to the noisy image's
    mean count, per material × condition (Markdown)."""
    head = ["material", "condition", "n", "clean mean"]
    for m in models:
        head += [f"{m} offset", m, f"{m} mean-matched"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (material, condition), g in per_image.groupby(["material", "condition"], sort=False):
        cells = [str(material), str(condition), str(len(g)), "—"]
        if "clean_mean" in g:
            cells[3] = f"{g['clean_mean'].mean():.3f}"
        for m in models:
            cells += [_signed(*_mean_sem(g[f"{m}_bias"])), _pm(*_mean_sem(g[m])),
                      _pm(*_mean_sem(g[f"{m}_meanfix"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- CLI ---------------------------------------------------------------------------------


def model_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--model takes NAME=PATH, got {text!r}")
    if name in BASELINES or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"model name {name!r} must be a new identifier")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", type=model_arg, default=[],
                    help="NAME=PATH of a denoiser (repeatable)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--pt-cells", type=int, nargs="+", default=[3, 5, 8])
    ap.add_argument("--ceo2-cells", type=int, nargs="+", default=[2, 4, 6])
    ap.add_argument("--defocus-offsets", type=float, nargs="+", default=[-4.0, 0.0, 4.0],
                    help="defoci [nm] relative to Scherzer of the corrected microscope")
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--no-particle", action="store_true", help="leave out the Pt/CeO2 particle")
    ap.add_argument("--pixel", type=float, default=None,
                    help="pixel [Å] (default: the models' training pixel, else 0.2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--mean-matched", action="store_true",
                    help="also summarize each model scaled to the noisy image's mean count "
                         "(NAME_meanfix)")
    ap.add_argument("--oracle-sigmas", type=float, nargs="+", default=None,
                    help="the oracle Gaussian's widths [px] (default: the config's)")
    args = ap.parse_args(argv)

    names = [n for n, _ in args.model]
    if len(set(names)) != len(names):
        ap.error("model names must differ")
    torch.set_num_threads(args.threads)
    models: dict[str, torch.nn.Module] = {}
    pixels = set()
    for name, path in args.model:
        if not path.is_file():
            ap.error(f"no model file {path}")
        model, meta = load_model(path)
        models[name] = model
        pixels.add(float(meta["pixel_size_A"]))
    if args.pixel is None and len(pixels) > 1:
        ap.error(f"the models were trained at different pixels {sorted(pixels)}; give --pixel")
    pixel_A = args.pixel or (pixels.pop() if pixels else 0.2)

    scherzer = scherzer_defocus_nm(CS_UM, ENERGY_KV)
    spec_list = list(specs(args.pt_cells, args.ceo2_cells,
                           [scherzer + d for d in args.defocus_offsets], args.conditions,
                           not args.no_particle))
    t0 = time.perf_counter()
    per_image = run_set(spec_list, args.seeds, models, pixel_A, args.oracle_sigmas)
    wall = time.perf_counter() - t0
    shown = names + [f"{n}_meanfix" for n in names] if args.mean_matched else names
    summary = summarize(per_image, shown)
    text = (f"{len(spec_list)} clean images x {len(args.seeds)} seeds = {len(per_image)} "
            f"images, pixel {pixel_A} Å, Scherzer {scherzer:.2f} nm, {wall:.0f} s\n\n"
            + markdown(summary, shown))
    if names:
        text += "\nMargin over the oracle Gaussian by thickness:\n\n"
        text += breakdown(per_image, names, "cells")
        text += "\nMargin over the oracle Gaussian by defocus [nm]:\n\n"
        text += breakdown(per_image, names, "defocus_nm")
        text += ("\nMean offset of each model's output from the clean image (intensity, vacuum"
                 " = 1) and its PSNR [dB] after scaling it to the noisy image's mean count:\n\n")
        text += bias_table(per_image, names)
    args.out.mkdir(parents=True, exist_ok=True)
    for fname, frame in (("per_image.csv", per_image), ("summary.csv", summary)):
        with atomic_path(args.out / fname) as tmp:
            frame.to_csv(tmp, index=False)
    with atomic_path(args.out / "summary.md") as tmp:
        Path(tmp).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
