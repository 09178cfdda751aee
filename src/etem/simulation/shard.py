"""Read and write the HDF5 image shards and the campaign index (see :mod:`.contract`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from etem.errors import InputError
from etem.io import atomic_path, h5_write_attrs, read_table_metadata, write_table
from etem.simulation.contract import (
    CONTRACT_VERSION,
    IMAGE_COLUMN_COLUMNS,
    IMAGE_COLUMN_STRINGS,
    PARAM_COLUMNS,
    PARAM_DEFAULTS,
    STRING_COLUMNS,
)
from etem.simulation.labels import LABEL_MAPS


def _compression(name: str) -> dict[str, Any]:
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if name == "lzf":
        return {"compression": "lzf", "shuffle": True}
    return {}


def _column_dataset(group: Any, name: str, values: list[Any], is_str: bool) -> None:
    if is_str:
        arr = np.array([str(v) for v in values], dtype=object)
        group.create_dataset(name, data=arr, dtype=h5py.string_dtype(), track_times=False)
    else:
        group.create_dataset(name, data=np.asarray(values), track_times=False)


class ShardWriter:
    """Appends images to an open HDF5 shard structure by structure (bounded memory).

    Use :func:`open_shard` to get one that writes atomically.
    """

    def __init__(self, f: Any, size_px: int, compression: str = "lzf") -> None:
        self.f = f
        self.n = 0
        self.size_px = size_px
        comp = _compression(compression)
        shape, chunks = (0, size_px, size_px), (1, size_px, size_px)
        f.create_dataset("clean", shape=shape, maxshape=(None, size_px, size_px),
                         dtype=np.float32, chunks=chunks, track_times=False, **comp)
        g = f.create_group("labels")
        for name, dt in LABEL_MAPS.items():
            g.create_dataset(name, shape=shape, maxshape=(None, size_px, size_px), dtype=dt,
                             chunks=chunks, track_times=False, **comp)

    def append(self, clean: np.ndarray, labels: dict[str, Any]) -> None:
        """Append images (k, H, W) and their label maps (arrays or lists of (H, W) maps)."""
        k = clean.shape[0]
        if clean.shape[1:] != (self.size_px, self.size_px):
            raise ValueError(f"image shape {clean.shape[1:]} != {(self.size_px,) * 2}")
        ds = self.f["clean"]
        ds.resize(self.n + k, axis=0)
        ds[self.n:self.n + k] = clean.astype(np.float32, copy=False)
        for name, dt in LABEL_MAPS.items():
            ds = self.f[f"labels/{name}"]
            ds.resize(self.n + k, axis=0)
            maps = labels.get(name)
            if maps is None:
                continue  # fill value 0
            if len(maps) != k:
                raise ValueError(f"{len(maps)} '{name}' label maps for {k} images")
            for i, m in enumerate(maps):
                ds[self.n + i] = np.asarray(m, dtype=dt)
        self.n += k

    def finish(self, params: list[dict[str, Any]], columns: Any, attrs: dict[str, Any]) -> None:
        """Write the parameter and column tables and the attributes."""
        if len(params) != self.n:
            raise ValueError(f"{len(params)} parameter rows for {self.n} images")
        g = self.f.create_group("params")
        for col in PARAM_COLUMNS:
            values = [r[col] if col not in PARAM_DEFAULTS else r.get(col, PARAM_DEFAULTS[col])
                      for r in params]
            _column_dataset(g, col, values, col in STRING_COLUMNS)
        g = self.f.create_group("columns")
        for col in IMAGE_COLUMN_COLUMNS:
            values = columns[col].tolist() if len(columns) else []
            _column_dataset(g, col, values, col in IMAGE_COLUMN_STRINGS)
        h5_write_attrs(self.f, {**attrs, "contract_version": CONTRACT_VERSION,
                                "n_images": self.n})


@contextlib.contextmanager
def open_shard(
    path: str | os.PathLike[str], size_px: int, compression: str = "lzf"
) -> Iterator[ShardWriter]:
    """A :class:`ShardWriter` on a temporary file renamed onto ``path`` on success."""

    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        yield ShardWriter(f, size_px, compression)


def write_shard(
    path: str | os.PathLike[str],
    clean: np.ndarray,
    labels: dict[str, np.ndarray],
    params: list[dict[str, Any]],
    columns: Any,
    attrs: dict[str, Any],
    compression: str = "lzf",
) -> Path:
    """Write one image shard atomically in one go.

    Parameters
    ----------
    clean : ndarray
        float32 (N, H, W), vacuum = 1.
    labels : dict
        ``LABEL_MAPS`` name -> (N, H, W) array.
    params : list of dict
        One row per image with every ``PARAM_COLUMNS`` key.
    columns : pandas.DataFrame
        Per-image column rows (``IMAGE_COLUMN_COLUMNS``).
    attrs : dict
        Provenance and shard attributes.
    """
    with open_shard(path, clean.shape[-1], compression) as w:
        w.append(clean, labels)
        w.finish(params, columns, attrs)
    return Path(path)


def read_params(path: str | os.PathLike[str]) -> Any:
    """The ``/params`` table of a shard as a pandas DataFrame."""

    path = Path(path)
    if not path.exists():
        raise InputError(f"image shard {path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            if "params" not in f or "clean" not in f:
                raise InputError(f"image shard {path}: no /clean or /params (not an etem shard)")
            data = {}
            for col in PARAM_COLUMNS:
                if col not in f["params"] and col in PARAM_DEFAULTS:
                    data[col] = np.full(f["clean"].shape[0], PARAM_DEFAULTS[col])
                    continue
                if col not in f["params"]:
                    raise InputError(f"image shard {path}: missing /params/{col}")
                ds = f["params"][col]
                data[col] = ds.asstr()[...] if col in STRING_COLUMNS else ds[...]
    except OSError as exc:
        raise InputError(f"image shard {path}: unreadable HDF5 ({exc})") from None
    return pd.DataFrame(data)


def read_columns(path: str | os.PathLike[str]) -> Any:
    """The ``/columns`` table (per-image column positions) of a shard."""

    with h5py.File(path, "r") as f:
        g = f["columns"]
        return pd.DataFrame({
            c: (g[c].asstr()[...] if c in IMAGE_COLUMN_STRINGS else g[c][...])
            for c in IMAGE_COLUMN_COLUMNS
        })


def build_index(shards: list[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Any:
    """Gather the ``/params`` of ``shards`` into the index table at ``out`` (CSV/Parquet).

    Adds ``shard`` (path relative to the index's folder) and ``index_in_shard``. Image ids
    must be unique across shards.
    """

    out = Path(out)
    frames = []
    for s in sorted(Path(p) for p in shards):
        df = read_params(s)
        df["shard"] = os.path.relpath(s.resolve(), out.resolve().parent)
        df["index_in_shard"] = np.arange(len(df), dtype=np.int64)
        frames.append(df)
    if not frames:
        raise InputError("simulate-index: no shards given")
    index = pd.concat(frames, ignore_index=True)
    dup = index["image_id"][index["image_id"].duplicated()]
    if len(dup):
        raise InputError(f"simulate-index: duplicate image ids, e.g. {dup.iloc[0]!r}")
    meta = {}
    try:
        with h5py.File(sorted(Path(p) for p in shards)[0], "r") as f:
            meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()
                    if k in ("config_hash", "campaign", "etem_version", "git_commit")}
    except OSError:
        pass
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in meta.items()}
    meta["n_shards"] = len(frames)
    write_table(out, index, metadata=meta)
    return index


__all__ = [
    "ShardWriter", "build_index", "open_shard", "read_columns", "read_params",
    "read_table_metadata", "write_shard",
]
