"""The denoising methods compared by the benchmark: baselines and networks.

A :data:`Method` maps counts [e/px] and the dose per pixel [e/px] to intensity (vacuum = 1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from etem.analysis import baselines
from etem.models.inference import denoise_images
from etem.seeding import rng
from etem.simulation.noise import apply_dose

#: maps counts [e/px] and dose per pixel [e/px] to intensity (vacuum = 1)
Method = Callable[[np.ndarray, float], np.ndarray]
#: Methods that also take the image's detector DQE(0) as the keyword ``dqe`` (their noise
#: level, default 1, Poisson counts; the supervised denoiser's prefilter, if it has one):
#: call them through :func:`run_method`.
DQE_METHODS = frozenset({"wiener_sure", "supervised"})


def run_method(name: str, fn: Method, counts: np.ndarray, dose_e_per_px: float,
               dqe: float = 1.0) -> np.ndarray:
    """``fn`` (the method ``name``) on ``counts`` at ``dose_e_per_px``; a method of
    :data:`DQE_METHODS` gets the image's detector DQE(0) ``dqe`` too."""
    if name in DQE_METHODS:
        return fn(counts, dose_e_per_px, dqe=dqe)  # type: ignore[call-arg]
    return fn(counts, dose_e_per_px)


def wiener_sure(counts: np.ndarray, dose_e_per_px: float, dqe: float = 1.0) -> np.ndarray:
    """The Wiener filter at the pair SURE chooses for this image
    (:func:`etem.analysis.baselines.wiener_sure`), as intensity."""
    return baselines.wiener_sure(counts, dose_e_per_px, dqe)[0]


def make_methods(cfg: Any, denoiser: Any | None = None) -> dict[str, Method]:
    """Methods compared: noisy input, Gaussian filters, NLM, the empirical Wiener filter
    (Poisson noise, ``dqe`` 1: like the networks it sees only the counts and the dose), the
    Wiener filter with its pair chosen per image by SURE (``wiener_sure``: given the image's
    DQE through :func:`run_method`), and the supervised denoiser."""
    b = cfg.evaluation
    methods: dict[str, Method] = {"noisy": baselines.noisy_intensity}
    for s in b.gaussian_sigma_px:
        methods[f"gaussian_{s:g}px"] = functools.partial(baselines.gaussian, sigma_px=s)
    if b.nlm:
        methods["nlm"] = lambda c, d: baselines.nlm(
            c, d, b.nlm_patch_size_px, b.nlm_patch_distance_px, b.nlm_h
        )
    if b.wiener:
        methods["wiener"] = functools.partial(
            baselines.wiener, alpha=b.wiener_alpha, smooth_px=b.wiener_smooth_px)
    if b.wiener_sure:
        methods["wiener_sure"] = wiener_sure
    if denoiser is not None:
        match = cfg.apply.inference.match_mean  # the same mean constraint as etem apply
        def supervised(c: np.ndarray, d: float, dqe: float = 1.0) -> np.ndarray:
            return np.asarray(denoise_images(denoiser, c.astype(np.float32), d, match=match,
                                             dqe=dqe), dtype=np.float64)

        methods["supervised"] = supervised
    return methods


def primary_method(methods: dict[str, Method]) -> str:
    """Method whose columns are calibrated: supervised denoiser, else NLM, else a Gaussian."""
    if "supervised" in methods:
        return "supervised"
    if "nlm" in methods:
        return "nlm"
    gauss = [m for m in methods if m.startswith("gaussian_")]
    return gauss[len(gauss) // 2] if gauss else "noisy"


def noisy_counts(
    clean: np.ndarray, dose_A2: float, px: float, cfg: Any, key: str, dqe: float = 1.0
) -> np.ndarray:
    """The benchmark's noisy counts of an image at a dose, seeded by its key; ``dqe``: the
    image's detector DQE(0) (:func:`etem.simulation.noise.row_dqe` of its parameters)."""
    g = rng(cfg.seed, "benchmark", "noise", key, f"{dose_A2:g}")

    return np.asarray(
        apply_dose(clean, dose_A2, px, g, cfg.noise.read_noise_e, cfg.noise.gain, dqe),
        dtype=np.float64,
    )

