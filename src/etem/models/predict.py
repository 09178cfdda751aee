"""Inference helpers: denoise images, denoise movies (blind-spot model), segment images.

Inputs are detector counts [e/px] and the dose per pixel [e/px] (= dose [e/Å²] x pixel
area [Å²]); they are normalised by the dose (:func:`normalize`) so outputs are intensities
with vacuum = 1. Images are padded (reflect) to a multiple of the network's pooling factor
and cropped back; batches run under ``torch.inference_mode`` in channels_last layout, in
bf16 where the device supports it natively (``amp=None``) unless ``amp=False``: a copy of the
network with bf16 weights is fed bf16 inputs (no per-operation autocast casts), and a residual
denoiser adds its input back in float32.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from etem.errors import InputError
from etem.models.inputs import image_input, normalize

__all__ = ["denoise_images", "denoise_movie", "normalize", "segment_images"]


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast on ``device`` (CUDA bf16, CPU AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def low_precision_module(
    module: nn.Module, dtype: torch.dtype | None, device: torch.device | str
) -> Callable[[torch.Tensor], Any]:
    """An inference module (eval, channels-last) taking and returning float32 tensors.

    With ``dtype`` (bf16 or fp16) it wraps a copy of ``module`` whose weights are cast to
    ``dtype`` (the caller's module is left as it is); inputs are cast on the way in, outputs
    back to float32. A residual denoiser (``module.residual`` and ``module.unet``, see
    :class:`etem.models.unet.Denoiser`) adds its input to the U-Net output in float32, so
    the result is the input plus a bf16-accurate correction.
    """
    module = module.to(device).eval()
    if dtype is None:
        return _Float32In(module.to(memory_format=torch.channels_last), None)
    if getattr(module, "residual", False) and isinstance(getattr(module, "unet", None), nn.Module):
        net = copy.deepcopy(module.unet).to(device=device, dtype=dtype)
        return _Float32In(net.to(memory_format=torch.channels_last).eval(), dtype, residual=True)
    net = copy.deepcopy(module).to(device=device, dtype=dtype)
    return _Float32In(net.to(memory_format=torch.channels_last).eval(), dtype)


class _Float32In:
    """Callable: float32 (B, C, h, w) -> ``net`` in ``dtype``, channels-last -> float32."""

    def __init__(self, net: nn.Module, dtype: torch.dtype | None, residual: bool = False) -> None:
        self.net, self.dtype, self.residual = net, dtype, residual

    def __call__(self, x: torch.Tensor) -> Any:
        xin = x if self.dtype is None else x.to(self.dtype)
        y = self.net(xin.contiguous(memory_format=torch.channels_last))
        if isinstance(y, tuple | list | dict):
            return y
        y = y.float()
        return x[:, :1] + y if self.residual else y


def _pad(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def run_batches(
    model: nn.Module, inputs: np.ndarray, batch_size: int = 4, amp: bool | None = None
) -> Iterator[np.ndarray]:
    """Run ``model`` over (N, C, H, W) float32 inputs in batches; yields (B, C_out, H, W).

    ``amp`` None: bf16 where the device supports it natively; True: bf16; False: float32.
    Low precision runs a bf16 copy of the network (:func:`low_precision_module`).
    """
    device = _device_of(model)
    multiple = int(getattr(model, "multiple", 1))
    use = bf16_supported(device) if amp is None else amp
    net = low_precision_module(model, torch.bfloat16 if use else None, device)
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[i : i + batch_size])).to(device)
            x, h, w = _pad(x, multiple)
            y = net(x)
            yield y[..., :h, :w].float().cpu().numpy()


def _as_stack(counts: np.ndarray) -> tuple[np.ndarray, bool]:
    arr = np.asarray(counts, dtype=np.float32)
    if arr.ndim == 2:
        return arr[None], True
    if arr.ndim != 3:
        raise InputError(f"expected counts of shape (H, W) or (N, H, W), got {arr.shape}")
    return arr, False


def _doses(dose_e_per_px: float | np.ndarray, n: int) -> np.ndarray:
    d = np.asarray(dose_e_per_px, dtype=np.float32)
    if d.ndim == 0:
        d = np.full(n, float(d), dtype=np.float32)
    if d.shape != (n,):
        raise InputError(f"need one dose per image ({n}), got shape {d.shape}")
    return d


def denoise_images(
    model: nn.Module, counts: np.ndarray, dose_e_per_px: float | np.ndarray,
    batch_size: int = 4, amp: bool | None = None,
) -> np.ndarray:
    """Denoise frames of counts with a supervised denoiser.

    Parameters
    ----------
    model : Denoiser
        From :func:`etem.models.io.load_model` (kind 'denoiser').
    counts : ndarray, (H, W) or (N, H, W)
        Detector counts [e/px].
    dose_e_per_px : float or ndarray (N,)
        Expected counts per pixel in vacuum [e/px].

    Returns
    -------
    ndarray float32, same shape as ``counts``: intensity with vacuum = 1.
    """
    stack, single = _as_stack(counts)
    doses = _doses(dose_e_per_px, len(stack))
    x = image_input(normalize(stack, doses), doses, getattr(model, "in_channels", 1) == 2)
    out = np.concatenate([y[:, 0] for y in run_batches(model, x, batch_size, amp)])
    return out[0] if single else out


def segment_images(
    model: nn.Module, counts: np.ndarray, dose_e_per_px: float | np.ndarray,
    batch_size: int = 4, amp: bool | None = None,
) -> dict[str, np.ndarray]:
    """Class map and column occupancies of frames of counts [e/px].

    Returns
    -------
    dict
        ``class_map`` uint8 (N, H, W) indices into ``etem.simulation.contract.CLASSES``;
        ``cation_occupancy`` / ``anion_occupancy`` float32 (N, H, W): expected atoms in the
        column at each pixel (sum of the ordinal probabilities P(n > k)); round for counts.
        A 2-D input gives 2-D outputs.
    """
    stack, single = _as_stack(counts)
    doses = _doses(dose_e_per_px, len(stack))
    x = image_input(normalize(stack, doses), doses, getattr(model, "in_channels", 1) == 2)
    c, m = model.n_classes, model.max_occupancy
    cls, cat, an = [], [], []
    for y in run_batches(model, x, batch_size, amp):
        cls.append(np.argmax(y[:, :c], axis=1).astype(np.uint8))
        cat.append(_sigmoid(y[:, c : c + m]).sum(axis=1).astype(np.float32))
        an.append(_sigmoid(y[:, c + m :]).sum(axis=1).astype(np.float32))
    out = {
        "class_map": np.concatenate(cls),
        "cation_occupancy": np.concatenate(cat),
        "anion_occupancy": np.concatenate(an),
    }
    return {k: v[0] for k, v in out.items()} if single else out


def denoise_movie(
    model: nn.Module, frames: Any, dose_e_per_px: float | None = None,
    batch_size: int = 4, amp: bool | None = None,
) -> np.ndarray:
    """Denoise every frame of a movie with the blind-spot multi-frame model.

    Parameters
    ----------
    model : BlindSpotDenoiser
        Kind 'unsupervised'; uses windows of ``model.n_frames`` frames, reflected at the ends.
    frames : array-like (T, H, W)
        Counts [e/px]; may be a lazy array (h5py dataset): frames are read as needed.
    dose_e_per_px : float, optional
        Dose per frame [e/px]; default the movie's mean count (then the output has mean ~1
        instead of vacuum = 1).

    Returns
    -------
    ndarray float32 (T, H, W)
    """
    from etem.data.datasets import reflect_window

    n = int(getattr(model, "n_frames", 0))
    if not n:
        raise InputError("denoise_movie needs an unsupervised (multi-frame) model")
    shape = tuple(int(s) for s in frames.shape)
    if len(shape) != 3:
        raise InputError(f"movie frames must be (T, H, W), got {shape}")
    t_all = shape[0]
    if t_all < n:
        raise InputError(f"movie has {t_all} frames, the model needs {n}")
    scale = float(dose_e_per_px) if dose_e_per_px is not None else movie_mean_counts(frames)
    if not scale > 0:
        raise InputError(f"dose per pixel must be > 0 (got {scale})")
    cache: dict[int, np.ndarray] = {}

    def frame(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = np.asarray(frames[i], dtype=np.float32) / scale
        return cache[i]

    out = np.empty(shape, dtype=np.float32)
    for t0 in range(0, t_all, batch_size):
        ts = range(t0, min(t_all, t0 + batch_size))
        x = np.stack([np.stack([frame(i) for i in reflect_window(t, n, t_all)]) for t in ts])
        (y,) = list(run_batches(model, x, len(x), amp))
        out[t0 : t0 + len(x)] = y[:, 0]
        for i in [k for k in cache if k < t0 + batch_size - n]:
            del cache[i]
    return out


def movie_mean_counts(frames: Any, max_frames: int = 16) -> float:
    """Mean count per pixel [e/px] over up to ``max_frames`` evenly spaced frames."""
    t_all = int(frames.shape[0])
    idx = np.unique(np.linspace(0, t_all - 1, min(t_all, max_frames)).astype(int))
    return float(np.mean([np.mean(np.asarray(frames[int(i)], dtype=np.float64)) for i in idx]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
