"""Model files: the weights plus everything needed to rebuild and use the network.

A model file (``models/<kind>.pt``) is a ``torch.save`` dict::

    format        "etem-model", version 1
    meta          kind ('denoiser' | 'unsupervised' | 'segmenter'), arch (factory dict),
                  config (the training config section), pixel_size_A, dose range [e/Å²],
                  n_frames (unsupervised), classes / max_occupancy (segmenter),
                  metrics (final validation), provenance (config hash, seed, commit,
                  versions), signature; no run id or timestamp (same config, same bytes)
    state_dict    float32 weights (CPU tensors)

Loading uses ``weights_only=True`` (no arbitrary code), rebuilds the network with
:func:`etem.models.factory.build_model` and loads the weights strictly.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from etem.errors import InputError
from etem.io import atomic_path, file_digest
from etem.models.factory import build_model

FORMAT = "etem-model"
VERSION = 1


def save_model(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model`` and ``meta`` to ``path`` atomically. ``meta`` needs ``kind`` and ``arch``."""
    for key in ("kind", "arch"):
        if key not in meta:
            raise ValueError(f"model meta needs {key!r}")
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone()
             for k, v in model.state_dict().items()}
    # through JSON: equal meta gives equal pickle bytes (pickle shares repeated objects, so
    # the same values built along different code paths could pickle differently)
    plain = json.loads(json.dumps(_plain(meta)))
    blob = {"format": FORMAT, "version": VERSION, "meta": plain, "state_dict": state}
    path = Path(path)
    buf = io.BytesIO()  # not the temp file: torch names the archive after the file name
    torch.save(blob, buf)
    with atomic_path(path, suffix=".tmp") as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def load_model(
    path: str | os.PathLike[str], device: str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model file: ``(network in eval mode on device, meta)``.

    Raises :class:`~etem.errors.InputError` if the file is missing, not a model file, or
    its weights do not fit its architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path}: no such file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        why = type(exc).__name__
        raise InputError(f"model file {path}: not a readable model file ({why})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"model file {path}: not an etem model file")
    if blob.get("version") != VERSION:
        raise InputError(f"model file {path}: unsupported version {blob.get('version')}")
    meta = blob["meta"]
    try:
        model = build_model(meta["arch"])
        model.load_state_dict(blob["state_dict"], strict=True)
    except Exception as exc:
        raise InputError(f"model file {path}: weights do not fit ({exc})") from None
    model.to(device).eval()
    return model, meta


def _plain(obj: Any) -> Any:
    """Meta as plain Python types (what ``weights_only`` loading accepts)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


def takes_dose_channel(module: Any) -> bool:
    """Whether a single-frame network takes the noise level 1/sqrt(dose) as an input channel:
    its ``dose_conditioned`` flag; a module without one, two input channels (the rule before
    the flag)."""
    flag = getattr(module, "dose_conditioned", None)
    return bool(flag) if flag is not None else int(getattr(module, "in_channels", 1)) == 2


@dataclass
class LoadedModel:
    """A network plus its model-file metadata (what :func:`load` returns).

    ``meta`` keys used here: ``kind`` (denoiser, unsupervised, segmenter), ``pixel_size_A``
    [Å], ``n_frames`` (unsupervised window), ``dose_conditioned``, ``size_multiple`` or
    ``depth`` (U-Net scales).
    """

    module: Any
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    #: where the file came from when not a path given: ``models:/NAME/VERSION`` or the
    #: packaged pretrained model (recorded in the apply summary)
    source: str | None = None

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "denoiser"))

    @property
    def sha256(self) -> str | None:
        """First 16 hex digits of the model file's SHA-256 (None for an in-memory model).

        Model files carry no MLflow run id (same config, same bytes); the training run is
        found in MLflow by this digest (tag ``etem.model.sha256``).
        """
        return file_digest(self.path) if self.path and Path(self.path).is_file() else None

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
        """Whether the network takes the noise level 1/sqrt(dose) as an input channel."""
        return self.n_frames == 1 and takes_dose_channel(self.module)

    @property
    def prefilter(self) -> str:
        """The classical estimate a supervised denoiser refines (its first input channel;
        :mod:`etem.data.inputs`), 'none' for the others."""
        return str(getattr(self.module, "prefilter", "none"))


#: What each kind of model file is, for messages.
KIND_NAMES = {
    "denoiser": "a supervised denoiser",
    "unsupervised": "an unsupervised (blind-spot) denoiser",
    "segmenter": "an occupancy segmenter",
}


def load(
    path: str | os.PathLike[str], device: str = "cpu", kind: str | None = None
) -> LoadedModel:
    """Load a model file as a :class:`LoadedModel` (network in eval mode + meta + path).

    With ``kind``, a model file of another kind is an :class:`InputError` naming both.
    """
    module, meta = load_model(path, device)
    model = LoadedModel(module, dict(meta or {}), str(path))
    if kind is not None and model.kind != kind:
        raise InputError(
            f"model file {path} is {KIND_NAMES.get(model.kind, model.kind)}, "
            f"not {KIND_NAMES.get(kind, kind)}"
        )
    return model
