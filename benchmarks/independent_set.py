"""Denoisers on a set of images made outside etem's campaign code path (issue 14).

The recipe of ``tests/integration/test_pretrained_unseen.py``, widened: structures built with
ASE alone (bulk Pt fcc and fluorite CeO2 along [001], not etem's structure builder; optionally
a Pt cluster from ``ase.cluster`` on a CeO2 (001) slab), imaged with abTEM alone
(:func:`etem.simulation.reference.abtem_image`) by a corrected 300 kV microscope (Cs -15 µm,
C5 2 mm) at its Scherzer defocus and ±4 nm, under six conditions:

- ``blur``: Gaussian blur FWHM 1.4 Å (held out of the pretrained campaigns: >= 1.3 Å);
- ``pixel``: 0.18 Å detector pixels (held out: >= 0.16 Å), blur 0.6 Å;
- ``in-range``: blur 0.6 Å, no detector pixel (inside the training ranges);

and three that keep contrast (``WIDENED``), blur 0.6 Å, no detector pixel:

- ``pixel-0.05``: 0.05 Å output pixels (issue 14's user case), simulated at 0.05 Å, on a
  smaller field of the bulk crystals (``LATERAL``; the particle's whole slab);
- ``pixel-0.3``: 0.3 Å output pixels;
- ``uncorrected``: the uncorrected 200 kV microscope of
  :func:`etem.simulation.reference.uncorrected_microscope` (Cs 1.2 mm) at its own Scherzer
  defocus (67 nm) and the same offsets;

at several thicknesses, with Poisson noise at 0.45 e/px in vacuum (issue 14's dose) from
several seeds. Each clean image is simulated once per (structure, condition, defocus) and
reused across seeds and models. The first three and ``uncorrected`` are at the models' pixel
(``--pixel``, default the models' 0.2 Å). The bulk crystals of the widened conditions span a
whole number of simulation grid points per unit cell (``LATERAL``: Pt 8 x 8 and CeO2 6 x 6
cells, 4 x 4 and 3 x 3 at 0.05 Å): abTEM spreads each atom over its neighbouring grid points,
so on a grid incommensurate with the cell (the first three conditions' 7 x 7 Pt and 5 x 5
CeO2) the columns differ from cell to cell, a superstructure that is not the crystal's (8
cells of Pt at Scherzer: clean std 0.078 on 7 x 7 cells, 0.021-0.023 on 4, 5, 6 or 8).

Methods: the noisy counts, ``flat`` (a constant image at the mean count: no structure at all,
the floor that says how much contrast an image has left to recover), the oracle Gaussian (the
width among ``EtemConfig().evaluation.oracle_sigmas_px`` best on the clean image, or
``--oracle-sigmas``; ``oracle_at_edge`` marks images where it chose the list's widest),
NLM with an estimated noise level, ``wiener`` (:func:`etem.analysis.baselines.wiener`,
its defaults) and ``wiener_sure`` (the same filter, its pair chosen per image by SURE with
the counts' Poisson noise, :func:`etem.analysis.baselines.wiener_sure`; the pair in
``wiener_sure_alpha``, ``wiener_sure_smooth_px``), all at the image's own pixel, and each
``--model NAME=PATH`` through
:func:`etem.models.inference.denoise_images` on the frame ``etem apply`` would give it: the
counts resampled to the model's pixel by apply's own geometry
(:func:`etem.frames.geometry.resolve_geometry` and :func:`~etem.frames.geometry.collect_frames`:
4 x 4 binning from 0.05 Å, count splitting by overlap from 0.3 Å, at the dose per processed
pixel), and the estimate brought back to the image's pixel (:func:`to_native`); with the
mean constraint of ``apply.inference.match_mean`` (:func:`etem.models.inference.match_mean`)
unless ``--no-match-mean`` (``--no-match-mean --mean-matched`` gives both, paired).
Metric: Mohan et al.'s PSNR, ``psnr_peak(clean * D, estimate * D, 1.0)`` (D = 0.45 e/px).

Outputs (``--out DIR``): ``per_image.csv`` (one row per noisy image, a PSNR column per method),
``summary.csv`` and ``summary.md`` (mean ± s.e.m. per material × condition, per condition,
the held-out and the widened conditions together and overall; the best method of each; the
Wiener filter's and each model's paired margin over the oracle Gaussian and over NLM, the
images where it is below them, whether it meets issue 14's targets (+3 dB over the oracle
Gaussian and +5 dB over NLM, on the means), and each model's paired difference to the first
model); the Markdown is printed too. The s.e.m. is over images; the seeds of one clean image are not
independent draws of the structure, so it understates the spread over structures.

Usage:
  python benchmarks/independent_set.py --model v1=src/etem/models/pretrained/denoiser.pt \\
      --model v2=results/pretrained2/card_v2/denoiser.pt --out results/independent_set
"""

from __future__ import annotations

import argparse
import logging
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
from scipy.ndimage import map_coordinates

from etem.analysis import baselines
from etem.analysis.metrics import psnr_peak
from etem.config import EtemConfig
from etem.config.apply import PreprocessConfig
from etem.frames.geometry import collect_frames, resolve_geometry
from etem.frames.preprocess import resample_by_overlap
from etem.frames.readers import Movie
from etem.io import atomic_path
from etem.models.inference import denoise_images, match_mean
from etem.models.io import load_model
from etem.simulation.microscope import Microscope, scherzer_defocus_nm
from etem.simulation.reference import (
    A_PT,
    CONDITIONS,
    CS_UM,
    ENERGY_KV,
    UNCORRECTED_CS_UM,
    UNCORRECTED_KV,
    bulk_crystal,
    ceo2_crystal,
    corrected_microscope,
    independent_image,
    uncorrected_microscope,
)

DOSE_E_PER_PX = 0.45
HELD_OUT = ("blur", "pixel")
#: held-out conditions that keep contrast: output pixel [Å] (None: the models'), microscope
WIDENED = {"pixel-0.05": 0.05, "pixel-0.3": 0.3, "uncorrected": None}
ALL_CONDITIONS = (*CONDITIONS, *WIDENED)
#: lateral unit cells of the bulk crystals under the widened conditions: a whole number of
#: simulation grid points per cell (40 / 60 at 0.1 Å, 80 / 120 at 0.05 Å); 0.05 Å: a 16 Å
#: field (~320 px)
LATERAL = {"pixel-0.05": {"Pt": 4, "CeO2": 3}, "pixel-0.3": {"Pt": 8, "CeO2": 6},
           "uncorrected": {"Pt": 8, "CeO2": 6}}
BASELINES = ("noisy", "flat", "oracle_gaussian", "nlm", "wiener", "wiener_sure")
#: methods whose margins over the oracle Gaussian and NLM are given besides the models
CLASSICAL = ("wiener", "wiener_sure")
PARTICLE = "Pt/CeO2"
#: issue 14's targets [dB]: the best etem denoiser over the oracle Gaussian and over NLM
TARGET_OVER_GAUSS = 3.0
TARGET_OVER_NLM = 5.0


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
        if self.material == PARTICLE:
            return particle()
        lateral = LATERAL.get(self.condition, {}).get(self.material)
        return bulk_crystal(self.material, self.cells, lateral)

    def microscope(self) -> Microscope:
        if self.condition == "uncorrected":
            return uncorrected_microscope(self.defocus_nm)
        return corrected_microscope(self.condition if self.condition in CONDITIONS
                                    else "in-range", self.defocus_nm)

    def pixel_A(self, model_pixel_A: float) -> float:
        """The output pixel [Å] asked for (the image's is the cell / its pixel count)."""
        return WIDENED.get(self.condition) or model_pixel_A

    def key(self) -> str:
        return f"{self.material}|{self.cells}|{self.condition}|{self.defocus_nm:.3f}"


def scherzer_nm(condition: str) -> float:
    """Scherzer defocus [nm] of the condition's microscope."""
    if condition == "uncorrected":
        return scherzer_defocus_nm(UNCORRECTED_CS_UM, UNCORRECTED_KV)
    return scherzer_defocus_nm(CS_UM, ENERGY_KV)


def specs(pt_cells: list[int], ceo2_cells: list[int], offsets_nm: list[float],
          conditions: list[str], with_particle: bool) -> Iterator[Spec]:
    """The clean images: defoci ``offsets_nm`` [nm] from the Scherzer defocus of each
    condition's microscope."""
    for material, cells_list in (("Pt", pt_cells), ("CeO2", ceo2_cells)):
        for cells in cells_list:
            for condition in conditions:
                for d in offsets_nm:
                    yield Spec(material, cells, condition, scherzer_nm(condition) + d)
    if with_particle:
        for condition in conditions:
            for d in offsets_nm:
                yield Spec(PARTICLE, 0, condition, scherzer_nm(condition) + d)


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
    """``est`` (intensity) scaled so that its mean is the noisy image's mean count / dose
    (the inference's mean constraint, :func:`etem.models.inference.match_mean`)."""
    return np.asarray(match_mean(est, counts, DOSE_E_PER_PX), dtype=np.float64)


def to_native(est: np.ndarray, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """A model's estimate (intensity) on the processed grid brought back to the image's own
    pixels: ``scale`` image pixels per processed pixel (``FrameGeometry.scale``; processed
    pixel a covers image pixels [a scale, (a + 1) scale), as apply bins and resamples),
    ``shape`` the image's (H, W).

    Coarser processed pixels (``scale`` > 1, e.g. 4 x 4 binning): cubic-spline interpolation
    of the processed pixel values at the image pixel centres (processed coordinate
    (i + 0.5) / scale - 0.5), constant beyond the outermost processed pixel centres (apply
    crops a remainder of image pixels that fill no processed pixel).
    Finer processed pixels (``scale`` < 1): each image pixel the mean of the processed pixels
    it covers, weighted by overlap area (apply's :func:`resample_by_overlap` on the
    estimate's values, divided by the pixels per image pixel), the processed frame extended
    by its edge where it stops short of the image.
    """
    est = np.asarray(est, dtype=np.float64)
    h, w = shape
    if abs(scale - 1.0) < 1e-9:
        pad = ((0, max(0, h - est.shape[0])), (0, max(0, w - est.shape[1])))
        return np.pad(est, pad, mode="edge")[:h, :w]
    if scale > 1.0:
        cy = np.clip((np.arange(h) + 0.5) / scale - 0.5, 0, est.shape[0] - 1)
        cx = np.clip((np.arange(w) + 0.5) / scale - 0.5, 0, est.shape[1] - 1)
        grid = np.meshgrid(cy, cx, indexing="ij")
        return map_coordinates(est, grid, order=3, mode="nearest")
    ratio = 1.0 / scale
    need = (int(np.ceil((h + 1) * ratio)), int(np.ceil((w + 1) * ratio)))
    pad = ((0, max(0, need[0] - est.shape[0])), (0, max(0, need[1] - est.shape[1])))
    ext = np.pad(est, pad, mode="edge")
    out = resample_by_overlap(ext, ratio, 0, 0).astype(np.float64) / ratio**2
    return out[:h, :w]


def through_apply(model: torch.nn.Module, model_pixel_A: float, counts: np.ndarray,
                  pixel_A: float, seed: int, match: bool = True,
                  dose_e_per_px: float = DOSE_E_PER_PX) -> tuple[np.ndarray, float]:
    """A model's estimates (N, H, W) of noisy ``counts`` (N, H, W) at ``pixel_A`` [Å] the way
    ``etem apply`` gives it the frames: apply's geometry resamples the counts to
    ``model_pixel_A`` (binning, count splitting, or overlap resampling; no drift correction,
    seeded by ``seed``), the model denoises them at the dose per processed pixel, and
    :func:`to_native` brings each estimate back; ``match``: with the mean constraint
    (``apply.inference.match_mean``); ``dose_e_per_px``: the counts' dose per frame [e/px in
    vacuum]. Returns the estimates and that dose [e/px]."""
    movie = Movie(frames=counts, pixel_size_A=pixel_A, frame_time_s=None,
                  dose_e_per_px_per_frame=dose_e_per_px, source_format="npy",
                  path=Path("independent_set"))
    settings = PreprocessConfig(drift_correction=False)
    geo = resolve_geometry(movie, settings, [model_pixel_A], seed)
    frames = collect_frames(movie, geo, settings, len(counts), len(counts))
    dose = geo.processed_dose(dose_e_per_px)
    est = np.asarray(denoise_images(model, frames, dose, match=match), np.float64)
    shape = (counts.shape[1], counts.shape[2])
    return np.stack([to_native(e, geo.scale, shape) for e in est]), dose


def run_set(spec_list: list[Spec], seeds: list[int], models: dict[str, torch.nn.Module],
            pixel_A: float, sigmas: list[float] | None = None, log: bool = True,
            match: bool = True) -> pd.DataFrame:
    """Per-image PSNR of every method (one row per (clean image, seed)); ``pixel_A``: the
    models' pixel [Å] (the conditions other than ``pixel-*`` are imaged at it); ``sigmas``:
    the oracle Gaussian's widths [px] (default the config's ``evaluation.oracle_sigmas_px``);
    ``match``: the models with the mean constraint (as ``etem apply`` runs them)."""
    sigmas = sigmas or list(EtemConfig().evaluation.oracle_sigmas_px)
    rows = []
    for i, spec in enumerate(spec_list):
        t0 = time.perf_counter()
        atoms = spec.atoms()
        clean = independent_image(atoms, spec.microscope(), spec.pixel_A(pixel_A))
        px = float(atoms.cell[0, 0]) / clean.shape[1]
        counts = np.stack([noise(clean, spec, s) for s in seeds])
        key_seed = zlib.crc32(spec.key().encode())
        outs, doses = {}, {}
        for name, m in models.items():
            outs[name], doses[name] = through_apply(m, pixel_A, counts, px, key_seed,
                                                        match)
        for j, seed in enumerate(seeds):
            gauss, sigma = baselines.oracle_gaussian(counts[j], DOSE_E_PER_PX, clean, sigmas)
            row: dict[str, object] = {
                "material": spec.material, "cells": spec.cells,
                "thickness_A": round(float(atoms.cell[2, 2]), 2),
                "condition": spec.condition, "defocus_nm": round(spec.defocus_nm, 3),
                "pixel_A": round(px, 4),
                "seed": seed, "size_px": clean.shape[0], "clean_std": float(clean.std()),
                "clean_mean": float(clean.mean()),
                "oracle_sigma_px": sigma,
                "oracle_at_edge": bool(sigma == max(sigmas)),
                "noisy": mohan(clean, counts[j] / DOSE_E_PER_PX),
                "flat": mohan(clean, np.full_like(clean, counts[j].mean() / DOSE_E_PER_PX)),
                "oracle_gaussian": mohan(clean, gauss),
                "nlm": mohan(clean, baselines.nlm_estimated(counts[j], DOSE_E_PER_PX)),
                "wiener": mohan(clean, baselines.wiener(counts[j], DOSE_E_PER_PX)),
            }
            # Poisson counts (dqe 1): the noise level SURE needs
            sure, alpha, smooth = baselines.wiener_sure(counts[j], DOSE_E_PER_PX, 1.0)
            row.update(wiener_sure=mohan(clean, sure), wiener_sure_alpha=alpha,
                       wiener_sure_smooth_px=smooth)
            for name, out in outs.items():
                row[name] = mohan(clean, out[j])
                row[f"{name}_dose"] = doses[name]
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
    """The summary's subsets: material × condition, each material, each condition (when
    there are several materials), the held-out conditions together, the widened ones
    together, and all images."""
    for (material, condition), g in per_image.groupby(["material", "condition"], sort=False):
        yield f"{material}, {condition}", g
    for material, g in per_image.groupby("material", sort=False):
        yield f"{material}, all", g
    if per_image["material"].nunique() > 1:
        for condition, g in per_image.groupby("condition", sort=False):
            yield f"all, {condition}", g
    for label, names in (("held-out conditions", HELD_OUT),
                         ("widened conditions", tuple(WIDENED))):
        sub = per_image[per_image["condition"].isin(names)]
        if len(sub) and len(sub) < len(per_image):
            yield label, sub
    yield "all", per_image


def methods(per_image: pd.DataFrame) -> list[str]:
    """The baselines the table holds (older tables have no ``wiener``, ``wiener_sure``)."""
    return [m for m in BASELINES if m in per_image]


def summarize(per_image: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """One row per subset: n, mean and s.e.m. of each method, the best method on the mean
    (the noisy image aside) and the images where the oracle Gaussian chose its widest width;
    for the Wiener filter and each model its paired margin over the oracle Gaussian and NLM
    (mean, s.e.m.), the number of images where it is below each and whether the means meet
    issue 14's targets (``{m}_meets``: >= +3 dB over the oracle Gaussian and >= +5 dB over
    NLM); and (second model on) each model's paired difference to the first model and the
    number of images where it beats it."""
    out = []
    base = methods(per_image)
    compared = [m for m in CLASSICAL if m in base] + list(models)
    for name, g in groups(per_image):
        row: dict[str, object] = {"group": name, "n": len(g)}
        for m in (*base, *models):
            row[f"{m}_mean"], row[f"{m}_sem"] = _mean_sem(g[m])
        scored = [m for m in (*base, *models) if m != "noisy"]
        row["best"] = max(scored, key=lambda m: float(row[f"{m}_mean"]))  # type: ignore[arg-type]
        if "oracle_at_edge" in g:
            row["oracle_at_edge"] = int(g["oracle_at_edge"].sum())
        for m in compared:
            for ref, tag in (("oracle_gaussian", "gauss"), ("nlm", "nlm")):
                d = g[m] - g[ref]
                row[f"{m}_over_{tag}_mean"], row[f"{m}_over_{tag}_sem"] = _mean_sem(d)
                row[f"{m}_below_{tag}"] = int((d < 0).sum())
            row[f"{m}_meets"] = bool(
                float(row[f"{m}_over_gauss_mean"]) >= TARGET_OVER_GAUSS  # type: ignore[arg-type]
                and float(row[f"{m}_over_nlm_mean"]) >= TARGET_OVER_NLM)  # type: ignore[arg-type]
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


_LABELS = {"noisy": "noisy", "flat": "flat", "oracle_gaussian": "oracle Gaussian",
           "nlm": "NLM", "wiener": "Wiener", "wiener_sure": "Wiener SURE"}


def markdown(summary: pd.DataFrame, models: list[str]) -> str:
    """Two Markdown tables: PSNR per method with the best method (and the images where the
    oracle Gaussian took its widest width), and the margins, counts and target check of the
    Wiener filter and each model."""
    base = [m for m in BASELINES if f"{m}_mean" in summary]
    compared = [m for m in CLASSICAL if m in base] + list(models)
    edge = "oracle_at_edge" in summary
    lines = ["PSNR [dB] (Mohan's metric, 0.45 e/px), mean ± s.e.m. over images:", ""]
    head = ["group", "n", *[_LABELS[m] for m in base], *models, "best"]
    head += ["G at widest σ"] if edge else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [str(r["group"]), str(r["n"])]
        cells += [_pm(r[f"{m}_mean"], r[f"{m}_sem"]) for m in (*base, *models)]
        cells += [_LABELS.get(str(r["best"]), str(r["best"]))]
        cells += [str(r["oracle_at_edge"])] if edge else []
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Paired margins [dB] (mean ± s.e.m.), images below (of n), and issue 14's "
              f"targets (>= +{TARGET_OVER_GAUSS:g} dB over the oracle Gaussian and >= "
              f"+{TARGET_OVER_NLM:g} dB over NLM, on the means):", ""]
    head = ["group", "n"]
    for m in compared:
        label = _LABELS.get(m, m)
        head += [f"{label} − oracle G", f"{label} − NLM", f"{label} below G / NLM",
                 f"{label} meets"]
    for m in models[1:]:
        head += [f"{m} − {models[0]}", f"{m} beats {models[0]}"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [str(r["group"]), str(r["n"])]
        for m in compared:
            cells += [_signed(r[f"{m}_over_gauss_mean"], r[f"{m}_over_gauss_sem"]),
                      _signed(r[f"{m}_over_nlm_mean"], r[f"{m}_over_nlm_sem"]),
                      f"{r[f'{m}_below_gauss']} / {r[f'{m}_below_nlm']}",
                      "yes" if bool(r[f"{m}_meets"]) else "no"]
        for m in models[1:]:
            key = f"{m}_minus_{models[0]}"
            cells += [_signed(r[f"{key}_mean"], r[f"{key}_sem"]),
                      str(r[f"{m}_beats_{models[0]}"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def breakdown(per_image: pd.DataFrame, models: list[str], by: str) -> str:
    """Each model's margin over the oracle Gaussian by ``by`` within each condition and
    material (Markdown)."""
    head = ["condition", "material", by, "n", "oracle Gaussian",
            *[f"{m} − oracle G" for m in models]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (condition, material, value), g in per_image.groupby(["condition", "material", by],
                                                             sort=False):
        cells = [str(condition), str(material), str(value), str(len(g)),
                 _pm(*_mean_sem(g["oracle_gaussian"]))]
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
                    help="defoci [nm] relative to Scherzer of each condition's microscope")
    ap.add_argument("--conditions", nargs="+", default=list(ALL_CONDITIONS),
                    choices=ALL_CONDITIONS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--no-particle", action="store_true", help="leave out the Pt/CeO2 particle")
    ap.add_argument("--pixel", type=float, default=None,
                    help="the models' pixel [Å], at which all but the pixel-* conditions "
                         "are imaged (default: the models' training pixel, else 0.2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--mean-matched", action="store_true",
                    help="also summarize each model scaled to the noisy image's mean count "
                         "(NAME_meanfix; with --no-match-mean: the constraint's effect, paired)")
    ap.add_argument("--no-match-mean", action="store_true",
                    help="run the models without the mean constraint (apply.inference."
                         "match_mean: false; the outputs before it existed)")
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

    logging.getLogger("etem.frames.geometry").setLevel(logging.ERROR)  # one note per image
    scherzer = scherzer_defocus_nm(CS_UM, ENERGY_KV)
    spec_list = list(specs(args.pt_cells, args.ceo2_cells, args.defocus_offsets,
                           args.conditions, not args.no_particle))
    t0 = time.perf_counter()
    per_image = run_set(spec_list, args.seeds, models, pixel_A, args.oracle_sigmas,
                        match=not args.no_match_mean)
    wall = time.perf_counter() - t0
    shown = names + [f"{n}_meanfix" for n in names] if args.mean_matched else names
    summary = summarize(per_image, shown)
    text = (f"{len(spec_list)} clean images x {len(args.seeds)} seeds = {len(per_image)} "
            f"images, models' pixel {pixel_A} Å, Scherzer {scherzer:.2f} nm (uncorrected "
            f"{scherzer_nm('uncorrected'):.2f} nm), {wall:.0f} s\n\n"
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
