"""Network inputs: counts normalised by the dose, so one model serves a range of doses.

A frame of counts divided by the dose per pixel [e/px] is an intensity with vacuum = 1 whose
noise level is 1/sqrt(dose) at vacuum; dose-conditioned models also get that noise level as
a second channel. A supervised denoiser with a *prefilter* (``training.denoiser.prefilter``)
gets, as its first channel, a classical estimate of the whole frame (intensity, vacuum = 1)
and refines it: ``wiener_sure`` is the empirical Wiener filter at the pair SURE chooses per
frame (:func:`etem.analysis.baselines.wiener_sure`), whose view of the whole frame's
periodogram the network's ~40 px receptive field lacks. Datasets (training),
:mod:`etem.models.inference` and ``etem apply`` all build inputs here, so they cannot disagree.

Channels of a supervised denoiser, in order: the prefilter's estimate (when it has one), the
normalised counts, the noise level (when dose-conditioned); a residual denoiser adds its
output to channel 0.
"""

from __future__ import annotations

import numpy as np

from etem.analysis.baselines import wiener_sure
from etem.config.training import PREFILTERS
from etem.errors import InputError


def normalize(counts: np.ndarray, dose_e_per_px: float | np.ndarray) -> np.ndarray:
    """Counts [e/px] divided by the dose [e/px] (scalar or one per leading index): vacuum = 1.

    Parameters
    ----------
    counts : ndarray, (H, W) or (N, H, W)
        Detector counts per pixel.
    dose_e_per_px : float or ndarray (N,)
        Expected counts per pixel in vacuum (dose [e/Å²] times pixel area [Å²]).
    """
    counts = np.asarray(counts, dtype=np.float32)
    dose = np.asarray(dose_e_per_px, dtype=np.float32)
    if np.any(dose <= 0) or not np.all(np.isfinite(dose)):
        raise InputError(f"dose per pixel must be finite and > 0 (got {dose_e_per_px})")
    if dose.ndim == 1:
        if counts.ndim < 3 or dose.shape[0] != counts.shape[0]:
            raise InputError(f"{dose.shape[0]} doses for counts of shape {counts.shape}")
        dose = dose.reshape((-1,) + (1,) * (counts.ndim - 1))
    return counts / dose


def dose_channel(dose_e_per_px: float | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Constant channel 1/sqrt(dose [e/px]) of ``shape`` (the vacuum noise level)."""
    dose = np.asarray(dose_e_per_px, dtype=np.float32)
    level = 1.0 / np.sqrt(dose)
    if level.ndim == 1:
        level = level.reshape((-1,) + (1,) * (len(shape) - 1))
    return np.broadcast_to(level, shape).astype(np.float32)


def image_input(
    norm: np.ndarray, dose_e_per_px: float | np.ndarray, dose_conditioned: bool,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """Stack model channels: (H, W) -> (C, H, W); (N, H, W) -> (N, C, H, W); ``prior`` (a
    prefilter's estimate, shaped like ``norm``) goes first."""
    axis = 0 if norm.ndim == 2 else 1
    chans = [norm.astype(np.float32)]
    if prior is not None:
        chans.insert(0, np.asarray(prior, dtype=np.float32))
    if dose_conditioned:
        chans.append(dose_channel(dose_e_per_px, norm.shape))
    return np.stack(chans, axis=axis)


def prefilter_estimate(
    counts: np.ndarray, dose_e_per_px: float | np.ndarray, prefilter: str, dqe: float = 1.0
) -> np.ndarray | None:
    """The prefilter's estimate (intensity, vacuum = 1, float32) of each whole frame of
    ``counts`` [e/px, detector DQE(0) ``dqe``], same shape; None for ``none``.

    ``wiener_sure``: each frame filtered alone at the (alpha, smoothing) pair of its own
    least SURE (:func:`etem.analysis.baselines.wiener_sure`: no clean image needed)."""
    if prefilter == "none":
        return None
    if prefilter != "wiener_sure":
        raise InputError(f"prefilter {prefilter!r}: expected one of {list(PREFILTERS)}")
    arr = np.asarray(counts)
    stack = arr[None] if arr.ndim == 2 else arr
    dose = np.broadcast_to(np.asarray(dose_e_per_px, dtype=np.float64), (len(stack),))
    out = np.stack([wiener_sure(f, float(d), dqe)[0] for f, d in zip(stack, dose, strict=True)])
    out = out.astype(np.float32)
    return out[0] if arr.ndim == 2 else out


def network_input(
    counts: np.ndarray, dose_e_per_px: float | np.ndarray, dose_conditioned: bool,
    prefilter: str = "none", dqe: float = 1.0, gain: float = 1.0,
) -> np.ndarray:
    """A supervised denoiser's (or a segmenter's, prefilter ``none``) input of whole frames
    of ``counts`` (detector counts, ``gain`` counts per electron, DQE(0) ``dqe``): (H, W) ->
    (C, H, W), (N, H, W) -> (N, C, H, W); channels in the module docstring's order."""
    norm = normalize(counts, np.asarray(dose_e_per_px, dtype=np.float64) * gain)
    prior = None
    if prefilter != "none":  # the filter's noise model wants electrons
        electrons = np.asarray(counts, dtype=np.float64) / gain if gain != 1 else counts
        prior = prefilter_estimate(electrons, dose_e_per_px, prefilter, dqe)
    return image_input(norm, dose_e_per_px, dose_conditioned, prior)


def noisy_channel(prefilter: str) -> int:
    """Index of the normalised counts among a supervised denoiser's input channels."""
    return 0 if prefilter == "none" else 1
