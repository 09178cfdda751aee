"""Atomic file output and small shared I/O helpers.

Every file etem writes goes through :func:`atomic_path`: the data are written to a temporary
file in the destination folder and renamed over the destination only when complete, so an
interrupted job never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from etem.errors import InputError

TMP_MARK = ".etemtmp-"
"""Infix of :func:`atomic_path` temporaries: ``.<name>.etemtmp-<host>-<pid>-*``."""


def host_tag() -> str:
    """This host's name as written in temporary-file names and run tags (no dots or dashes)."""
    return socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temporaries(folder: str | os.PathLike[str], recursive: bool = False,
                      name: str | None = None) -> list[Path]:
    """Temporary files of :func:`atomic_path` in ``folder`` whose writer no longer runs.

    A writer is known dead when it ran on this host and its process id is gone (a job killed
    with ``kill -9``, an out-of-memory kill). Temporaries of other hosts are left alone: their
    writer may still run on another node.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stem = f".{glob.escape(name)}" if name is not None else ".*"
    pattern = f"**/{stem}{TMP_MARK}*" if recursive else f"{stem}{TMP_MARK}*"
    host = host_tag()
    stale = []
    for p in folder.glob(pattern):
        tail = p.name.split(TMP_MARK, 1)[1]
        parts = tail.split("-")
        if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
            continue
        if not pid_alive(int(parts[1])):
            stale.append(p)
    return sorted(stale)


def remove_stale_temporaries(folder: str | os.PathLike[str], name: str | None = None) -> int:
    """Remove the stale temporaries (of ``name`` only, if given) in ``folder``; returns how many."""
    n = 0
    for p in stale_temporaries(folder, name=name):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            n += 1
    return n


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched. The
    temporary's name records host and process id, so the next writer of ``path`` removes the
    temporaries that a killed writer left behind (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}{TMP_MARK}{host_tag()}-{os.getpid()}-",
        suffix=suffix if suffix is not None else ".tmp", dir=path.parent,
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


def file_digest(path: str | os.PathLike[str], n: int = 16) -> str:
    """First ``n`` hex digits of the SHA-256 of a file's bytes (identifies model files)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def sampled_digest(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], n: int = 16
) -> str:
    """A content digest of a movie that reads at most ~2 MB, whatever its size [hex, ``n``].

    A file: SHA-256 of its size, first and last MiB and 16 blocks of 64 KiB spread over it.
    A folder (of frames): SHA-256 of every file's relative name and size plus the sampled
    digests of its first and last file. A list of files (a glob's frames): the same, names
    relative to their common folder, in the list's order. Identifies a movie in MLflow and
    checkpoints (multi-GB movies are not hashed whole).
    """
    if not isinstance(path, str | os.PathLike):
        files = [Path(f) for f in path]
        if not files:
            raise InputError("sampled_digest: empty list of files")
        root = Path(os.path.commonpath([f.parent for f in files]))
        return _files_digest(files, root, n)
    p = Path(path)
    if p.is_dir():
        return _files_digest(sorted(f for f in p.rglob("*") if f.is_file()), p, n)
    h = hashlib.sha256()
    size = p.stat().st_size
    h.update(str(size).encode())
    block = 1 << 20
    with open(p, "rb") as fh:
        offsets = [0, max(0, size - block)] + [int(size * k / 17) for k in range(1, 17)]
        for i, off in enumerate(offsets):
            fh.seek(off)
            h.update(fh.read(block if i < 2 else 1 << 16))
    return h.hexdigest()[:n]


def _files_digest(files: list[Path], root: Path, n: int) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root)}\0{f.stat().st_size}\0".encode())
    for f in files[:1] + files[-1:]:
        h.update(sampled_digest(f, 64).encode())
    return h.hexdigest()[:n]


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def metadata_path(path: str | os.PathLike[str]) -> Path:
    """Sidecar of a CSV table holding its provenance: ``<name>.csv.meta.json``."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def write_table(
    path: str | os.PathLike[str], df: Any, metadata: dict[str, Any] | None = None
) -> None:
    """Write a pandas DataFrame atomically as CSV or Parquet (by suffix).

    CSV files are plain (header + rows, opened as they are by ``pandas.read_csv`` and
    spreadsheets); their ``metadata`` (provenance) goes to the JSON sidecar
    :func:`metadata_path`. For Parquet it goes into the schema metadata.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa  # lazy: etem.io is on the CLI's parse path (etem --help)
        import pyarrow.parquet as pq  # lazy: as above

        with atomic_path(path, suffix=path.suffix) as tmp:
            table = pa.Table.from_pandas(df, preserve_index=False)
            if metadata:
                meta = dict(table.schema.metadata or {})
                meta[b"etem"] = json.dumps(metadata, sort_keys=True, default=_json_default).encode()
                table = table.replace_schema_metadata(meta)
            pq.write_table(table, tmp)
        return
    sidecar = metadata_path(path)
    if metadata:
        write_json(sidecar, metadata)
    else:
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
    with atomic_path(path, suffix=path.suffix) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")


def read_table(path: str | os.PathLike[str]) -> Any:
    """Read a CSV or Parquet table written by :func:`write_table` into pandas."""
    import pandas as pd  # lazy: etem.io is on the CLI's parse path (etem --help)

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def read_table_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Provenance metadata written by :func:`write_table` (CSV sidecar or Parquet schema)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # lazy: etem.io is on the CLI's parse path

        meta = pq.read_schema(path).metadata or {}
        return dict(json.loads(meta.get(b"etem", b"{}")))
    sidecar = metadata_path(path)
    if not sidecar.exists():
        return {}
    return dict(json.loads(sidecar.read_text(encoding="utf-8")))


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
