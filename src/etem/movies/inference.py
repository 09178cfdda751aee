"""Tiled, batched network inference on movie frames of any size.

A frame larger than the network's training patches is cut into tiles of ``tile_px`` that
overlap by ``overlap_px``; tiles of all frames of a chunk go through the network in batches of
``batch_size`` under ``torch.inference_mode`` in channels-last layout (in bf16 on CPUs with
native bf16 support and on GPUs when ``precision='auto'``: a copy of the network with bf16
weights, fed bf16 inputs, which avoids autocast's per-operation casts; a residual denoiser
adds its skip connection in fp32), and each output pixel is taken from
the tile in which it lies farthest from a tile edge (seams at the midpoints of overlaps), so
the result does not depend on the tiling as long as the overlap exceeds the network's
receptive-field margin.

Frames are padded by reflection to a multiple of the network's size multiple (``2**depth``
for a U-Net) and cropped back afterwards.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from etem.errors import InputError

log = logging.getLogger("etem.movies.inference")


@dataclass
class LoadedModel:
    """A network plus its metadata (what ``etem.models.io.load_model`` returns).

    ``meta`` keys used here: ``kind`` (denoiser, unsupervised, segmenter), ``pixel_size_A``
    [Å], ``n_frames`` (unsupervised window), ``dose_conditioned``, ``size_multiple`` or
    ``depth`` (U-Net scales), ``mlflow_run_id``/``run_id``.
    """

    module: Any
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "denoiser"))

    @property
    def run_id(self) -> str | None:
        for key in ("mlflow_run_id", "run_id"):
            if self.meta.get(key):
                return str(self.meta[key])
        return None

    @property
    def pixel_size_A(self) -> float | None:
        v = self.meta.get("pixel_size_A")
        return float(v) if v else None

    @property
    def n_frames(self) -> int:
        """Frames in the input window (1 for single-frame models)."""
        return int(getattr(self.module, "n_frames", 0) or self.meta.get("n_frames", 1) or 1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this [px]."""
        return int(getattr(self.module, "multiple", 0) or self.meta.get("size_multiple", 16))

    @property
    def dose_conditioned(self) -> bool:
        """Whether the network takes the noise level 1/sqrt(dose) as a second channel."""
        return self.n_frames == 1 and int(getattr(self.module, "in_channels", 1)) == 2


def load(path: str) -> LoadedModel:
    """Load a saved model with the networks stage's loader (``etem.models.io.load_model``)."""
    try:
        from etem.models.io import load_model
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on installation
        raise InputError(f"cannot load model {path}: etem.models.io unavailable ({exc})") from None
    module, meta = load_model(path)
    return LoadedModel(module, dict(meta or {}), str(path))


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets [px] of tiles of ``tile`` px covering ``n`` px with >= ``overlap`` overlap."""
    if n <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = [*list(range(0, n - tile, step)), n - tile]
    return sorted(set(starts))


def _balanced_tile(n: int, tile: int, overlap: int, mult: int) -> int:
    """Smallest tile [px] (multiple of ``mult``, <= ``tile``) covering ``n`` px with as many
    tiles as ``tile`` needs: equal tiles, so the overlap overhead stays near ``overlap``."""
    if n <= tile:
        return n
    n_t = math.ceil((n - overlap) / (tile - overlap))
    t = math.ceil((n + (n_t - 1) * overlap) / n_t)
    return min(math.ceil(t / mult) * mult, tile, n)


def _cuts(starts: list[int], tile: int, n: int) -> list[tuple[int, int]]:
    """Output range [a, b) [px] owned by each tile: seams at the middle of each overlap."""
    bounds = [0]
    for s0, s1 in itertools.pairwise(starts):
        bounds.append((s0 + tile + s1) // 2)
    bounds.append(n)
    return list(itertools.pairwise(bounds))


def _pad_to(x: np.ndarray, mult: int) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % mult, (-w) % mult
    if ph == 0 and pw == 0:
        return x, (h, w)
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(x, pad, mode=mode), (h, w)


class TiledRunner:
    """Run a network on (N, C, H, W) inputs of any H, W by overlapping tiles, in batches.

    Parameters
    ----------
    model : LoadedModel
        The network (an ``nn.Module`` mapping (B, C, h, w) to (B, C_out, h, w)).
    tile_px, overlap_px : int
        Tile size and minimum overlap [px]; the tile is rounded to the size multiple.
    batch_size : int
        Tiles per forward pass, at most ``max_batch_px`` pixels in all (so whole 1024²
        frames go one at a time: batching them is not faster on a CPU and multiplies the
        activation memory).
    max_batch_px : int
        Pixel budget of one forward pass [px]; at least one tile always runs.
    precision : {'auto', 'fp32', 'bf16', 'fp16'}
        ``auto``: bf16 on CUDA and on CPUs with native bf16, else fp32. Low precision runs a
        copy of the network with its weights cast
        (:func:`etem.models.predict.low_precision_module`).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        model: LoadedModel,
        tile_px: int = 256,
        overlap_px: int = 32,
        batch_size: int = 4,
        precision: str = "auto",
        device: str = "auto",
        max_batch_px: int = 1024 * 1024,
    ) -> None:
        import torch

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
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.dtype = _autocast_dtype(precision, self.device)
        from etem.models.predict import low_precision_module

        self.module = low_precision_module(model.module, self.dtype, self.device)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """One forward pass on a (B, C, h, w) float32 batch -> (B, C_out, h, w) float32."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            y = self.module(x)
            if isinstance(y, tuple | list):
                y = y[0]
            if isinstance(y, dict):
                y = next(iter(y.values()))
            return y.float().cpu().numpy()

    def run(
        self,
        inputs: Any,
        n: int | None = None,
        post: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Apply the network to N inputs of shape (C, H, W); returns (N, C_out, H, W) float32.

        ``inputs`` is an (N, C, H, W) array or a callable ``i -> (C, H, W)`` (with ``n``), so
        multi-frame inputs are built one frame at a time (bounded memory). ``post`` maps each
        raw output batch (B, C_out, h, w) before stitching (e.g. class probabilities -> map).
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
                return arr[i]

        first, (h, w) = _pad_to(get(0), self.mult)
        hp, wp = first.shape[-2:]
        th = _balanced_tile(hp, self.tile, self.overlap, self.mult)
        tw = _balanced_tile(wp, self.tile, self.overlap, self.mult)
        ys, xs = tile_starts(hp, th, self.overlap), tile_starts(wp, tw, self.overlap)
        ycut, xcut = _cuts(ys, th, hp), _cuts(xs, tw, wp)
        jobs = [(i, a, b) for i in range(n) for a in range(len(ys)) for b in range(len(xs))]
        cache: dict[int, np.ndarray] = {0: first}
        out: np.ndarray | None = None
        bs = max(1, min(self.batch_size, self.max_batch_px // (th * tw)))
        for k in range(0, len(jobs), bs):
            part = jobs[k : k + bs]
            tiles = []
            for i, a, b in part:
                if i not in cache:
                    cache = {i: _pad_to(get(i), self.mult)[0]}
                tiles.append(cache[i][:, ys[a] : ys[a] + th, xs[b] : xs[b] + tw])
            res = self.forward(np.stack(tiles))
            if post is not None:
                res = post(res)
            if out is None:
                out = np.empty((n, res.shape[1], hp, wp), dtype=np.float32)
            for (i, a, b), tile_out in zip(part, res, strict=True):
                (y0, y1), (x0, x1) = ycut[a], xcut[b]
                out[i, :, y0:y1, x0:x1] = tile_out[
                    :, y0 - ys[a] : y1 - ys[a], x0 - xs[b] : x1 - xs[b]
                ]
        assert out is not None
        return out[:, :, :h, :w]


def _autocast_dtype(precision: str, device: Any) -> Any:
    import torch

    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        native = bool(torch.backends.mkldnn.is_available()) and _cpu_has_bf16()
    except Exception:  # pragma: no cover
        native = False
    return torch.bfloat16 if native else None


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# -- model-specific inputs and outputs -----------------------------------------------------
def denoiser_inputs(counts: np.ndarray, dose: np.ndarray, dose_conditioned: bool) -> np.ndarray:
    """(N, H, W) counts -> (N, C, H, W) network input (counts / dose, vacuum = 1)."""
    from etem.models.inputs import image_input, normalize

    norm = normalize(counts, dose)
    return image_input(norm, dose, dose_conditioned)


def window_inputs(norm: np.ndarray, local: list[int]) -> np.ndarray:
    """Stack the normalised frames ``norm[local]`` as the channels of one window (C, H, W)."""
    return np.stack([norm[i] for i in local]).astype(np.float32, copy=False)
