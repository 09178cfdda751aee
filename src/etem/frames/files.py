"""Which files a movie path names: a file, a folder of per-frame files, or a glob pattern.

The one expansion of a movie path (:func:`movie_files`), shared by
:func:`etem.frames.readers.open_movie`, the movie sheet (:mod:`etem.movies.sheet`) and the
blind-spot training (``etem train unsupervised --movie``), so a glob row is opened as the same
frames in the same order by apply and by group training. Light on purpose (standard library
only): the workflow plans the sheet from here on every run without importing the readers.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["is_pattern", "movie_files", "movie_name", "movie_path", "natural_key"]

_GLOB_CHARS = frozenset("*?[")
_ESCAPED = re.compile(r"\[([*?\[])\]")  # glob.escape's form of a literal '*', '?' or '['


def natural_key(path: str | os.PathLike[str]) -> list[Any]:
    """Sort key of frame files: digit runs compare as numbers (``f_2`` before ``f_10``)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", os.fspath(path))]


def is_pattern(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a glob character (``*``, ``?``, ``[``)."""
    return any(c in os.fspath(path) for c in _GLOB_CHARS)


def movie_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> str:
    """``path`` as :func:`movie_files` takes it without ``base``: ``~`` expanded, a relative
    path joined to ``base``; for a glob pattern, ``base``'s own glob characters escaped (the
    workflow passes this one string per movie to ``etem train unsupervised --movie``)."""
    text = os.path.expanduser(os.fspath(path))
    if base is None or Path(text).is_absolute():
        return text
    literal = os.path.join(base, text)
    if os.path.exists(literal) or not is_pattern(text):
        return str(Path(literal))
    return os.path.join(glob.escape(os.fspath(base)), text)


def movie_files(
    path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None
) -> tuple[str, ...]:
    """The file or folder ``path`` names, else the files its glob pattern matches; ``()``
    when nothing is there.

    A glob's files (folders it matches are skipped) come in natural order of their paths,
    as a folder's frames do. ``~`` expands; a relative ``path`` is relative to ``base``
    (default: the current folder), whose own characters are never read as a pattern
    (:func:`movie_path`). A path that exists as written is taken as it is, glob characters
    or not.
    """
    text = movie_path(path, base)
    if os.path.exists(text):
        return (str(Path(text)),)
    if not is_pattern(text):
        return ()
    matches = [m for m in glob.glob(text) if os.path.isfile(m)]
    return tuple(sorted(matches, key=natural_key))


def movie_name(path: str | os.PathLike[str]) -> str:
    """A name for the movie ``path`` names (results and MLflow run when none is given): the
    file's or folder's stem; for a glob pattern, its nearest folder whose name is no pattern
    (``run03`` for ``run03/f_*.tif``; the current folder's for ``f_*.tif``)."""
    text = os.path.expanduser(os.fspath(path))
    if os.path.exists(text) or not is_pattern(text):
        return Path(text).stem
    folder = Path(text).parent
    while folder != folder.parent and is_pattern(_ESCAPED.sub("", folder.name)):
        folder = folder.parent
    name = _ESCAPED.sub(r"\1", folder.name)
    if name in ("", ".", ".."):
        name = Path(os.path.abspath(folder)).name
    return name or "movie"
