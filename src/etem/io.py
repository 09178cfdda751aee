"""Atomic file output and small shared I/O helpers.

Every file etem writes goes through :func:`atomic_path`: the data are written to a temporary
file in the destination folder and renamed over the destination only when complete, so an
interrupted job never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from etem.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix if suffix is not None else ".tmp", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file the usual permissions (0666 minus umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_table(
    path: str | os.PathLike[str], df: Any, metadata: dict[str, Any] | None = None
) -> None:
    """Write a pandas DataFrame atomically as CSV or Parquet (by suffix).

    For CSV, ``metadata`` (provenance) is written as ``# key: value`` comment lines first
    (read back with ``pandas.read_csv(path, comment="#")``); for Parquet it goes into the
    schema metadata.
    """
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if path.suffix == ".parquet":
            import pyarrow as pa  # lazy: etem.io is imported by `etem --help`
            import pyarrow.parquet as pq  # lazy: as above

            table = pa.Table.from_pandas(df, preserve_index=False)
            if metadata:
                meta = dict(table.schema.metadata or {})
                meta[b"etem"] = json.dumps(metadata, sort_keys=True, default=_json_default).encode()
                table = table.replace_schema_metadata(meta)
            pq.write_table(table, tmp)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                for key, value in sorted((metadata or {}).items()):
                    text = json.dumps(value, sort_keys=True, default=_json_default)
                    fh.write(f"# {key}: {text}\n")
                df.to_csv(fh, index=False, lineterminator="\n")


def read_table(path: str | os.PathLike[str]) -> Any:
    """Read a CSV (with ``#`` provenance comments) or Parquet table into pandas."""
    import pandas as pd  # lazy: etem.io is imported by `etem --help`

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, comment="#")


def read_table_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Provenance metadata written by :func:`write_table`."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # lazy: etem.io is imported by `etem --help`

        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta.get(b"etem", b"{}"))
    out: dict[str, Any] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(": ")
            out[key] = json.loads(value)
    return out


def h5_write_attrs(obj: Any, attrs: dict[str, Any]) -> None:
    """Store a flat dict as HDF5 attributes; nested values are stored as JSON strings."""
    for key, value in attrs.items():
        if isinstance(value, dict | list | tuple) or value is None:
            obj.attrs[key] = json.dumps(value, sort_keys=True, default=_json_default)
        else:
            obj.attrs[key] = value


def require_file(path: str | os.PathLike[str], what: str = "input") -> Path:
    """Return ``Path(path)`` or raise :class:`InputError` naming the missing file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {p}: no such file")
    return p


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
