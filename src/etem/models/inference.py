"""The one inference path: every prediction of an etem network goes through this module.

Training validation (:func:`autocast_predict`), the evaluation stage (:func:`denoise_images`,
:func:`segment_images`, :func:`denoise_movie`) and ``etem apply`` (:class:`TiledRunner`) share
the device choice (:func:`resolve_device`), the precision choice (:func:`precision_dtype`,
one bf16 check: :func:`bf16_supported`), padding to the network's size multiple, batching
and, for frames larger than ``tile_px``, overlapping tiles.

Inputs are detector counts [e/px] and the dose per pixel [e/px] (= dose [e/Å²] x pixel
area [Å²]); they are normalised by the dose (:func:`etem.data.inputs.normalize`) so outputs
are intensities with vacuum = 1. Low precision runs a copy of the network with bf16 weights
fed bf16 channels-last inputs (no per-operation autocast casts); a residual denoiser adds
its skip connection in float32. Each output pixel is taken from the tile in which it lies
farthest from a tile edge (seams at the midpoints of overlaps), so the result does not depend
on the tiling as long as the overlap exceeds the network's receptive-field margin.

The mean constraint (:func:`match_mean`, ``apply.inference.match_mean``, on by default in
:func:`denoise_images`, :func:`denoise_movie` and ``etem apply``) scales each whole output
frame so that its mean is the frame's mean count / dose: the networks' outputs came out 2-8 %
too bright on thick crystals (issue 14), and the counts' mean is an unbiased estimate of the
clean mean that costs nothing.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from etem.data.inputs import network_input, normalize
from etem.errors import InputError
from etem.frames.breaks import segment_window
from etem.models.io import LoadedModel, takes_dose_channel

__all__ = [
    "TiledRunner",
    "autocast_predict",
    "bf16_supported",
    "decode_segmentation",
    "denoise_images",
    "denoise_movie",
    "low_precision_module",
    "match_mean",
    "movie_mean_counts",
    "normalize",
    "precision_dtype",
    "resolve_device",
    "scaled_to_means",
    "segment_images",
    "window_inputs",
]

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 is fast on ``device`` (CUDA bf16; CPU with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.backends.mkldnn.is_available()) and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def precision_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The low-precision dtype of ``precision`` on ``device`` (None = float32).

    ``auto``: bf16 on CUDA (fp16 where CUDA lacks bf16) and on CPUs with native bf16, else
    float32; ``fp16`` on a CPU runs bf16 (no fast fp16 convolutions there).
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    if precision != "auto":
        raise InputError(f"precision {precision!r}: expected auto, fp32, bf16 or fp16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if bf16_supported(device) else None


def with_memory_format(module: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """``module.to(memory_format=fmt)`` (torch accepts it; its type stubs do not list it)."""
    return module.to(memory_format=fmt)  # type: ignore[call-overload]


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
        return Float32Module(with_memory_format(module, torch.channels_last), None)
    if getattr(module, "residual", False) and isinstance(getattr(module, "unet", None), nn.Module):
        net = copy.deepcopy(cast(nn.Module, module.unet)).to(device=device, dtype=dtype)
        return Float32Module(with_memory_format(net, torch.channels_last).eval(), dtype, True)
    net = copy.deepcopy(module).to(device=device, dtype=dtype)
    return Float32Module(with_memory_format(net, torch.channels_last).eval(), dtype)


class Float32Module:
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


def autocast_predict(
    model: nn.Module, inputs: torch.Tensor, batch_size: int, amp: bool, device: torch.device
) -> torch.Tensor:
    """Outputs (float32, CPU) of a model *being trained* on validation inputs, in batches.

    Training validation runs the training module itself under bf16 autocast (``amp``),
    not a cast copy (:func:`low_precision_module`): the weights change every step. The
    module is put back into training mode afterwards.
    """
    outs = []
    bs = max(1, int(batch_size))
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(inputs), bs):
            x = inputs[i : i + bs].to(device)
            if amp:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                outs.append(model(x).float().cpu())
    model.train()
    return torch.cat(outs)


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets [px] of tiles of ``tile`` px covering ``n`` px with >= ``overlap`` overlap."""
    if n <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = [*list(range(0, n - tile, step)), n - tile]
    return sorted(set(starts))


def balanced_tile(n: int, tile: int, overlap: int, mult: int) -> int:
    """Smallest tile [px] (multiple of ``mult``, <= ``tile``) covering ``n`` px with as many
    tiles as ``tile`` needs: equal tiles, so the overlap overhead stays near ``overlap``."""
    if n <= tile:
        return n
    n_t = math.ceil((n - overlap) / (tile - overlap))
    t = math.ceil((n + (n_t - 1) * overlap) / n_t)
    return min(math.ceil(t / mult) * mult, tile, n)


def tile_cuts(starts: list[int], tile: int, n: int) -> list[tuple[int, int]]:
    """Output range [a, b) [px] owned by each tile: seams at the middle of each overlap."""
    bounds = [0]
    for s0, s1 in itertools.pairwise(starts):
        bounds.append((s0 + tile + s1) // 2)
    bounds.append(n)
    return list(itertools.pairwise(bounds))


def pad_to_multiple(x: np.ndarray, mult: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes by reflection to multiples of ``mult``; returns the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % mult, (-w) % mult
    if ph == 0 and pw == 0:
        return x, (h, w)
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    mode: Literal["reflect", "edge"] = "reflect" if ph < h and pw < w else "edge"
    return np.pad(x, pad, mode=mode), (h, w)


class TiledRunner:
    """Run a network on (N, C, H, W) inputs of any H, W by overlapping tiles, in batches.

    Parameters
    ----------
    model : LoadedModel or nn.Module
        The network (mapping (B, C, h, w) to (B, C_out, h, w)).
    tile_px, overlap_px : int
        Tile size and minimum overlap [px]; the tile is rounded to the size multiple. Frames
        up to ``tile_px`` run whole.
    batch_size : int
        Tiles per forward pass, at most ``max_batch_px`` pixels in all (so whole 1024²
        frames go one at a time: batching them is not faster on a CPU and multiplies the
        activation memory).
    precision : {'auto', 'fp32', 'bf16', 'fp16'}
        See :func:`precision_dtype`.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    max_batch_px : int
        Pixel budget of one forward pass [px]; at least one tile always runs.
    """

    def __init__(
        self,
        model: LoadedModel | nn.Module,
        tile_px: int = 256,
        overlap_px: int = 32,
        batch_size: int = 4,
        precision: str = "auto",
        device: str = "auto",
        max_batch_px: int = 1024 * 1024,
    ) -> None:
        if isinstance(model, nn.Module):
            model = LoadedModel(model, {})
        self.model = model
        self.mult = max(int(model.size_multiple), 1)
        self.tile = max(self.mult, (int(tile_px) // self.mult) * self.mult)
        self.overlap = int(overlap_px)
        if self.overlap >= self.tile:
            raise InputError(
                f"tile overlap {overlap_px} px must be smaller than the tile {self.tile} px"
            )
        self.batch_size = int(batch_size)
        self.max_batch_px = int(max_batch_px)
        self.device = resolve_device(device)
        self.dtype = precision_dtype(precision, self.device)
        self.module = low_precision_module(model.module, self.dtype, self.device)

    def forward(
        self, batch: np.ndarray, post: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> np.ndarray:
        """One forward pass on a (B, C, h, w) float32 batch -> (B, C_out, h, w) float32;
        ``post`` maps the output tensor on the device first (e.g. logits -> class map)."""
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            y = self.module(x)
            if isinstance(y, tuple | list):
                y = y[0]
            if isinstance(y, dict):
                y = next(iter(y.values()))
            y = y.float()
            if post is not None:
                y = post(y)
            return np.asarray(y.cpu().numpy())

    def run(
        self,
        inputs: np.ndarray | Callable[[int], np.ndarray],
        n: int | None = None,
        post: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> np.ndarray:
        """Apply the network to N inputs of shape (C, H, W); returns (N, C_out, H, W) float32.

        ``inputs`` is an (N, C, H, W) array or a callable ``i -> (C, H, W)`` (with ``n``), so
        multi-frame inputs are built one frame at a time (bounded memory). ``post`` maps each
        output batch tensor (B, C_out, h, w) on the device before stitching (e.g. logits ->
        class map: less to copy back).
        """
        if callable(inputs):
            get = inputs
            if n is None:
                raise ValueError("n is required with a callable input")
        else:
            arr = np.asarray(inputs)
            if arr.ndim != 4:
                raise ValueError(f"expected (N, C, H, W), got {arr.shape}")
            n = arr.shape[0]

            def get(i: int) -> np.ndarray:
                return np.asarray(arr[i])

        first, (h, w) = pad_to_multiple(get(0), self.mult)
        hp, wp = first.shape[-2:]
        th = balanced_tile(hp, self.tile, self.overlap, self.mult)
        tw = balanced_tile(wp, self.tile, self.overlap, self.mult)
        ys, xs = tile_starts(hp, th, self.overlap), tile_starts(wp, tw, self.overlap)
        ycut, xcut = tile_cuts(ys, th, hp), tile_cuts(xs, tw, wp)
        jobs = [(i, a, b) for i in range(n) for a in range(len(ys)) for b in range(len(xs))]
        cache: dict[int, np.ndarray] = {0: first}
        out: np.ndarray | None = None
        bs = max(1, min(self.batch_size, self.max_batch_px // (th * tw)))
        for k in range(0, len(jobs), bs):
            part = jobs[k : k + bs]
            tiles = []
            for i, a, b in part:
                if i not in cache:
                    cache = {i: pad_to_multiple(get(i), self.mult)[0]}
                tiles.append(cache[i][:, ys[a] : ys[a] + th, xs[b] : xs[b] + tw])
            res = self.forward(np.stack(tiles), post)
            if out is None:
                out = np.empty((n, res.shape[1], hp, wp), dtype=np.float32)
            for (i, a, b), tile_out in zip(part, res, strict=True):
                (y0, y1), (x0, x1) = ycut[a], xcut[b]
                out[i, :, y0:y1, x0:x1] = tile_out[
                    :, y0 - ys[a] : y1 - ys[a], x0 - xs[b] : x1 - xs[b]
                ]
        if out is None:
            raise ValueError("no inputs")
        return out[:, :, :h, :w]


def _whole_frames(model: nn.Module, shape: tuple[int, ...], batch_size: int,
                  amp: bool | None) -> TiledRunner:
    """A runner that takes each frame whole (no tiles), ``amp`` None = auto, True = bf16."""
    mult = max(int(getattr(model, "multiple", 1)), 1)
    size = max(int(shape[-1]), int(shape[-2]))
    precision = "auto" if amp is None else ("bf16" if amp else "fp32")
    device = next((p.device.type for p in model.parameters()), "cpu")
    return TiledRunner(
        LoadedModel(model, {"size_multiple": mult}),
        tile_px=math.ceil(size / mult) * mult,
        overlap_px=0,
        batch_size=batch_size,
        precision=precision,
        device=device,
        max_batch_px=2**62,
    )


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


def match_mean(
    out: np.ndarray, counts: np.ndarray, dose_e_per_px: float | np.ndarray
) -> np.ndarray:
    """The mean constraint: scale each whole frame of ``out`` so that its mean intensity is
    the mean count of its frame of ``counts`` / the dose.

    For Poisson (or any mean-preserving detector) counts, mean(counts) / dose is an unbiased
    estimate of the clean image's mean intensity (vacuum = 1) with a relative error of
    1 / sqrt(total counts) (0.15 % for a 1024² frame at 0.45 e/px): far below the 2-8 %
    offsets of the denoisers on thick crystals (issue 14). Multiplicative, one factor per
    frame, applied to whole frames (never per tile, so the result does not depend on the
    tiling). A frame whose output mean is not > 0, or whose counts' mean is not > 0, is left
    as it is (no scale to take).

    Parameters
    ----------
    out : ndarray, (H, W) or (N, H, W)
        Denoised intensity (vacuum = 1).
    counts : ndarray, same shape as ``out``
        The counts [e/px] whose mean each frame of ``out`` takes: for a single-frame denoiser
        its input frame; for the blind-spot network the centre frame of its window.
    dose_e_per_px : float or ndarray (N,)
        Expected counts per pixel in vacuum [e/px] of each frame of ``counts``.

    Returns
    -------
    ndarray of ``out``'s shape and dtype (float32 stays float32).
    """
    o = np.asarray(out)
    c = np.asarray(counts)
    if o.shape != c.shape or o.ndim not in (2, 3):
        raise InputError(f"match_mean: output {o.shape} and counts {c.shape} must both be "
                         "(H, W) or (N, H, W)")
    o3, c3 = (o[None], c[None]) if o.ndim == 2 else (o, c)
    n = o3.shape[0]
    target = c3.reshape(n, -1).mean(axis=1, dtype=np.float64) / _doses(dose_e_per_px, n)
    res = scaled_to_means(o3, target)
    return res[0] if o.ndim == 2 else res


def scaled_to_means(out: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Each frame of ``out`` (N, H, W) scaled to the mean ``target[i]`` (one factor per
    frame; frames whose own mean or target is not > 0 are left as they are)."""
    n = out.shape[0]
    mean = out.reshape(n, -1).mean(axis=1, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    ok = np.isfinite(mean) & (mean > 0) & np.isfinite(target) & (target > 0)
    scale = np.where(ok, target / np.where(ok, mean, 1.0), 1.0)
    dtype = out.dtype if out.dtype.kind == "f" else np.dtype(np.float64)
    return out * scale.astype(dtype)[:, None, None]


def denoise_images(
    model: nn.Module,
    counts: np.ndarray,
    dose_e_per_px: float | np.ndarray,
    batch_size: int = 4,
    amp: bool | None = None,
    match: bool = True,
    dqe: float = 1.0,
) -> np.ndarray:
    """Denoise frames of counts [e/px] with a supervised denoiser.

    Parameters
    ----------
    model : Denoiser
        From :func:`etem.models.io.load_model` (kind 'denoiser').
    counts : ndarray, (H, W) or (N, H, W)
        Detector counts [e/px].
    dose_e_per_px : float or ndarray (N,)
        Expected counts per pixel in vacuum [e/px].
    amp : bool, optional
        None: bf16 where the device has it natively; True: bf16; False: float32.
    match : bool
        The mean constraint (:func:`match_mean`; ``apply.inference.match_mean``): each
        output frame scaled to its counts' mean / dose.
    dqe : float
        The detector's DQE(0): the noise level of a prefilter (:mod:`etem.data.inputs`).

    Returns
    -------
    ndarray float32, same shape as ``counts``: intensity with vacuum = 1.
    """
    stack, single = _as_stack(counts)
    doses = _doses(dose_e_per_px, len(stack))
    x = network_input(stack, doses, takes_dose_channel(model),
                       str(getattr(model, "prefilter", "none")), dqe)
    out = _whole_frames(model, x.shape, batch_size, amp).run(x)[:, 0]
    if match:
        out = match_mean(out, stack, doses)
    return out[0] if single else out


def decode_segmentation(y: torch.Tensor, module: Any) -> torch.Tensor:
    """Segmenter logits (B, C, h, w) -> (B, 3, h, w) float32: class index, cation and anion
    occupancy (expected atoms in the column: the sum of the ordinal probabilities P(n > k))."""
    c = int(getattr(module, "n_classes", y.shape[1]))
    m = int(getattr(module, "max_occupancy", 0))
    cls = torch.argmax(y[:, :c], dim=1).float()
    if m:
        cat = torch.sigmoid(y[:, c : c + m]).sum(dim=1)
        an = torch.sigmoid(y[:, c + m : c + 2 * m]).sum(dim=1)
    else:
        cat = an = torch.full_like(cls, float("nan"))
    return torch.stack([cls, cat, an], dim=1)


def segment_images(
    model: nn.Module,
    counts: np.ndarray,
    dose_e_per_px: float | np.ndarray,
    batch_size: int = 4,
    amp: bool | None = None,
) -> dict[str, np.ndarray]:
    """Class map and column occupancies of frames of counts [e/px].

    Returns
    -------
    dict
        ``class_map`` uint8 (N, H, W) indices into ``etem.simulation.contract.CLASSES``;
        ``cation_occupancy`` / ``anion_occupancy`` float32 (N, H, W): expected atoms in the
        column at each pixel; round for counts. A 2-D input gives 2-D outputs.
    """
    stack, single = _as_stack(counts)
    doses = _doses(dose_e_per_px, len(stack))
    x = network_input(stack, doses, takes_dose_channel(model))
    runner = _whole_frames(model, x.shape, batch_size, amp)
    y = runner.run(x, post=lambda z: decode_segmentation(z, model))
    out = {
        "class_map": y[:, 0].astype(np.uint8),
        "cation_occupancy": y[:, 1],
        "anion_occupancy": y[:, 2],
    }
    return {k: v[0] for k, v in out.items()} if single else out


def window_inputs(norm: np.ndarray | Mapping[int, np.ndarray], local: list[int]) -> np.ndarray:
    """Stack the normalised frames ``norm[i]``, i in ``local``, as the channels of one window
    (C, H, W); ``norm`` is a (T, H, W) array or a mapping frame index -> (H, W)."""
    return np.stack([norm[i] for i in local]).astype(np.float32, copy=False)


def denoise_movie(
    model: nn.Module,
    frames: Any,
    dose_e_per_px: float | None = None,
    batch_size: int = 4,
    amp: bool | None = None,
    match: bool = True,
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
    match : bool
        The mean constraint (:func:`match_mean`; ``apply.inference.match_mean``): each
        output frame scaled to the mean count of its own (centre) frame / dose.

    Returns
    -------
    ndarray float32 (T, H, W)
    """
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
    means = np.zeros(t_all)  # each frame's mean count / dose: the mean constraint's target

    def window(t: int) -> np.ndarray:
        for i in segment_window(t, n, (), t_all):
            if i not in cache:
                cache[i] = np.asarray(frames[i], dtype=np.float32) / scale
                means[i] = cache[i].mean(dtype=np.float64)
        for i in [k for k in cache if k < t - n]:
            del cache[i]
        return np.stack([cache[i] for i in segment_window(t, n, (), t_all)])

    runner = _whole_frames(model, (n, *shape[1:]), batch_size, amp)
    out = runner.run(window, n=t_all)[:, 0]
    return scaled_to_means(out, means) if match else out


def movie_mean_counts(frames: Any, max_frames: int = 16) -> float:
    """Mean count per pixel [e/px] over up to ``max_frames`` evenly spaced frames."""
    t_all = int(frames.shape[0])
    idx = np.unique(np.linspace(0, t_all - 1, min(t_all, max_frames)).astype(int))
    return float(np.mean([np.mean(np.asarray(frames[int(i)], dtype=np.float64)) for i in idx]))
