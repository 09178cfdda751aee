"""The movie sheet: one row per experiment movie, the campaign's input (``movies.sheet``).

A TSV file (tab-separated, first line the header; blank lines and lines starting with ``#``
are skipped)::

    name   path               pixel_size_A  dose_e_per_px  frame_time_s  group  denoiser  finetune
    run01  raw/run01.dm4      0.5           1.2            0.025         600C   blindspot true
    run02  raw/run02_frames/                                             600C
    run03  raw/run03_*.tif    0.5                                        O2     auto

Columns (:data:`COLUMNS`; ``name`` and ``path`` required, the others optional, empty cells
mean "not given"):

* ``name``: the movie's results folder ``<results>/apply/<name>/`` (letters, digits, ``_.-``);
* ``path``: a movie file, a folder of per-frame files, or a glob of per-frame files
  (relative paths are relative to the sheet's folder; :func:`etem.frames.files.movie_files`,
  the glob's files in natural order, the same for apply and group training);
* ``pixel_size_A`` [Å], ``dose_e_per_px`` [e/px per frame], ``frame_time_s`` [s]: override
  (or supply) what the file records;
* ``group``: the condition (temperature, gas, ...) the report groups movies by;
* ``denoiser``: ``supervised``, ``blindspot`` (the unsupervised 5-frame network), ``auto``,
  or a classical filter ``raw``, ``gaussian``, ``wiener`` (default:
  ``apply.inference.denoise_with``);
* ``finetune``: ``true``/``false``, fine-tune the blind-spot network on this movie
  (``apply.finetune.steps`` steps; default: ``apply.finetune.steps`` > 0);
* ``denoiser_model``, ``unsupervised_model``, ``segmenter_model``: the movie's own networks
  (supervised denoiser, blind-spot network, occupancy segmenter): a model file (relative
  paths relative to the sheet's folder) or a model registry URI ``models:/NAME/VERSION`` or
  ``models:/NAME/latest`` (MLflow, the campaign's tracking store). Default: its group's
  blind-spot network (``movies.group_training``), else ``apply.models``, else the
  campaign's own trained networks.

A row's models reach its jobs as ``--denoiser``/``--unsupervised``/``--segmenter``
(the workflow's apply rules; a row that a classical filter denoises gets the segmenter only,
:func:`row_networks`, and the campaign's benchmark the networks of
:func:`evaluated_networks`); a registry URI is no input file of the jobs, it is checked
when the workflow plans (:func:`campaign_movies`: the store reachable, the name and version
registered, ``latest`` pinned to its number so every job of a movie uses one model).

A row's settings reach its jobs as overrides (:func:`row_arguments`):
``pixel_size_A`` → ``apply.preprocess.pixel_size_A``, ``dose_e_per_px`` →
``apply.preprocess.dose_e_per_px_per_frame``, ``denoiser`` → ``apply.inference.denoise_with``,
``finetune: false`` → ``--finetune-steps 0``, ``frame_time_s`` → ``--frame-time-s``.

:func:`read_sheet` validates every row and opens every movie (through
:func:`etem.frames.readers.open_movie`) before any job runs: unknown columns, duplicate names,
bad names or values, missing movie or model files and unreadable formats raise one
:class:`~etem.errors.ConfigError` line naming the sheet line and the column. The frame count
of each movie (needed to plan its shard jobs) is cached in a JSON file keyed by path, size and
modification time (:class:`ShapeCache`), so planning a campaign of long movies stays cheap.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from etem.config.apply import uses_network
from etem.errors import ConfigError, EtemError
from etem.frames.files import is_pattern, movie_files, movie_path
from etem.io import write_text
from etem.runs import is_registry_uri, pinned_model

__all__ = [
    "COLUMNS",
    "MODEL_KINDS",
    "SYNTHETIC",
    "MovieRow",
    "ShapeCache",
    "campaign_models",
    "campaign_movies",
    "evaluated_networks",
    "model_spec",
    "movie_groups",
    "network_denoised",
    "pin_models",
    "read_sheet",
    "row_arguments",
    "row_denoiser",
    "row_networks",
    "sheet_schema",
]

#: Name of the campaign's synthetic movie row (``movies.synthetic``).
SYNTHETIC = "synthetic"
#: Default place of the frame-count cache (beside Snakemake's own metadata).
DEFAULT_CACHE = Path(".snakemake") / "etem" / "movie_shapes.json"


class MovieRow(BaseModel):
    """One movie of the sheet (values as written; ``files``, ``line``, ``n_frames`` derived)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
        description="results folder name: letters, digits, '_', '.', '-' (not first: '.')",
    )
    path: str = Field(min_length=1, description="movie file, folder of frames, or glob")
    pixel_size_A: float | None = Field(default=None, gt=0, description="pixel size [Å]")
    dose_e_per_px: float | None = Field(default=None, gt=0, description="dose [e/px per frame]")
    frame_time_s: float | None = Field(default=None, gt=0, description="time between frames [s]")
    group: str | None = Field(default=None, description="condition (temperature, gas, ...)")
    denoiser: Literal["supervised", "blindspot", "auto", "raw", "gaussian",
                      "wiener"] | None = Field(
        default=None, description="which denoiser (default: apply.inference.denoise_with; auto "
        "= the highest uPSNR on the movie among apply.inference.auto_candidates)"
    )
    finetune: bool | None = Field(
        default=None, description="fine-tune the blind-spot network on this movie"
    )
    denoiser_model: str | None = Field(
        default=None, description="supervised denoiser of this movie: a model file (relative "
        "to the sheet's folder) or models:/NAME/VERSION (default: apply.models.denoiser, else "
        "the campaign's)"
    )
    unsupervised_model: str | None = Field(
        default=None, description="blind-spot network of this movie: a model file or "
        "models:/NAME/VERSION (default: its group's, else apply.models.unsupervised, else the "
        "campaign's)"
    )
    segmenter_model: str | None = Field(
        default=None, description="occupancy segmenter of this movie: a model file or "
        "models:/NAME/VERSION (default: apply.models.segmenter, else the campaign's)"
    )
    # derived (not sheet columns)
    source: str = Field(default="", description="the path as opened from the current folder: "
                        "the file, the folder or the glob pattern (etem.frames.files.movie_path)")
    files: tuple[str, ...] = Field(default=(), description="the file, the folder or the glob's "
                                   "files (etem.frames.files.movie_files)")
    line: int = Field(default=0, description="line of the sheet (0: not from a sheet)")
    n_frames: int | None = Field(default=None, description="raw frames (None: not known yet)")
    frame_px: int | None = Field(default=None, description="raw pixels per frame, height x width "
                                 "(None: not known yet)")
    models: dict[str, str] = Field(default_factory=dict, description="the row's own models by "
                                   "kind (MODEL_KINDS): files as opened from the current "
                                   "folder, registry URIs pinned by campaign_movies")


#: Sheet columns, in order (``name`` and ``path`` required).
COLUMNS = ("name", "path", "pixel_size_A", "dose_e_per_px", "frame_time_s", "group",
           "denoiser", "finetune", "denoiser_model", "unsupervised_model", "segmenter_model")
REQUIRED = ("name", "path")
#: The networks a movie is applied with (the ``--denoiser``, ``--unsupervised`` and
#: ``--segmenter`` of ``etem apply``; sheet columns ``<kind>_model``, ``apply.models.<kind>``).
MODEL_KINDS = ("denoiser", "unsupervised", "segmenter")


def sheet_schema() -> dict[str, Any]:
    """JSON schema of one sheet row (the sheet columns only)."""
    full = MovieRow.model_json_schema()
    props = {k: v for k, v in full["properties"].items() if k in COLUMNS}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "etem movie sheet row (TSV columns)",
        "type": "object",
        "properties": props,
        "required": list(REQUIRED),
        "additionalProperties": False,
    }


class ShapeCache:
    """Movie shapes ``(frames, height, width)`` keyed by path, size and mtime, in a JSON file.

    A movie whose files changed (size or modification time) is opened again; entries are
    written back by :meth:`save` (atomically) only when something was added.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, list[int]] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    self.entries = {str(k): list(v) for k, v in data.items()}
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache is rebuilt, never an error

    @staticmethod
    def key(files: tuple[str, ...]) -> str:
        """path + total size + newest mtime of the movie's files (a folder: its entries)."""
        size, mtime, paths = 0, 0, []
        for f in files:
            p = Path(f)
            paths.append(str(p.resolve()))
            st = p.stat()
            size, mtime = size + st.st_size, max(mtime, st.st_mtime_ns)
            if p.is_dir():
                with os.scandir(p) as it:
                    for e in it:
                        est = e.stat()
                        size, mtime = size + est.st_size, max(mtime, est.st_mtime_ns)
        digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
        where = paths[0] if len(paths) == 1 else f"{paths[0]}+{len(paths) - 1}:{digest}"
        return f"{where}|{size}|{mtime}"

    def shape(self, files: tuple[str, ...]) -> tuple[int, int, int]:
        """The movie's shape (opened only when not cached)."""
        key = self.key(files)
        if key in self.entries:
            t, h, w = self.entries[key]
            return int(t), int(h), int(w)
        # imported here, not at the top: the workflow plans from the cache on every run, and
        # the readers (rosettasciio, dask, tifffile) take 1-2 s to import
        from etem.frames.readers import open_movie

        with open_movie(files[0] if len(files) == 1 else list(files)) as movie:
            shape = tuple(int(s) for s in movie.shape)
        self.entries[key] = list(shape)
        self.dirty = True
        return shape  # type: ignore[return-value]

    def save(self) -> None:
        """Write the cache back if anything was added (a read-only place is not an error)."""
        if self.path is None or not self.dirty:
            return
        # entries of movies that are gone (moved, deleted, temporary) are dropped
        self.entries = {k: v for k, v in self.entries.items()
                        if Path(k.split("|", 1)[0].split("+", 1)[0]).exists()}
        try:
            write_text(self.path, json.dumps(self.entries, indent=0, sort_keys=True) + "\n")
            self.dirty = False
        except OSError:
            pass


def _fail(sheet: Path, line: int, column: str, msg: str) -> ConfigError:
    return ConfigError(f"movie sheet {sheet}: line {line}, column {column}: {msg}")


def _row(sheet: Path, line: int, cells: dict[str, str]) -> MovieRow:
    values = {k: v.strip() for k, v in cells.items() if v is not None and v.strip() != ""}
    for col in REQUIRED:
        if col not in values:
            raise _fail(sheet, line, col, "empty (required)")
    try:
        return MovieRow.model_validate({**values, "line": line})
    except pydantic.ValidationError as err:
        e = err.errors()[0]
        col = str(e["loc"][0]) if e["loc"] else "?"
        msg = e["msg"].removeprefix("Value error, ")
        if col == "name" and e["type"] == "string_pattern_mismatch":
            msg = ("use letters, digits, '_', '.', '-' only, not starting with '.' "
                   "(it names a folder)")
        raise _fail(sheet, line, col, f"{msg} (got {values.get(col)!r})") from None


def read_sheet(
    path: str | os.PathLike[str], cache: ShapeCache | str | os.PathLike[str] | None = None
) -> list[MovieRow]:
    """Read and validate a movie sheet; every movie is opened (or found in ``cache``).

    Returns the rows with ``files`` (what :func:`~etem.frames.readers.open_movie` opens) and
    ``n_frames`` (raw frames) filled in. Raises :class:`ConfigError`, one line naming the
    sheet line and the column, on the first bad row.
    """
    sheet = Path(path)
    if not sheet.is_file():
        raise ConfigError(f"movie sheet {sheet}: no such file")
    shapes = cache if isinstance(cache, ShapeCache) else ShapeCache(cache)
    try:
        text = sheet.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"movie sheet {sheet}: cannot read ({exc})") from None
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1)
                if ln.strip() and not ln.lstrip().startswith("#")]
    if not numbered:
        raise ConfigError(
            f"movie sheet {sheet}: empty (needs a header line: {', '.join(COLUMNS)})"
        )
    header_line, header = numbered[0]
    names = [h.strip() for h in next(csv.reader([header], delimiter="\t"))]
    for col in names:
        if col not in COLUMNS:
            raise _fail(sheet, header_line, col or "<empty>",
                        f"unknown column (columns: {', '.join(COLUMNS)})")
    for col in REQUIRED:
        if col not in names:
            raise _fail(sheet, header_line, col, "missing column (required)")
    if len(set(names)) != len(names):
        dup = next(c for c in names if names.count(c) > 1)
        raise _fail(sheet, header_line, dup, "column given twice")
    rows: list[MovieRow] = []
    seen: dict[str, int] = {}
    for line, text_line in numbered[1:]:
        cells = next(csv.reader([text_line], delimiter="\t"))
        if len(cells) > len(names):
            raise _fail(sheet, line, f"#{len(names) + 1}",
                        f"{len(cells)} cells, the header has {len(names)} columns")
        row = _row(sheet, line, dict(zip(names, cells, strict=False)))
        if row.name in seen:
            raise _fail(sheet, line, "name",
                        f"duplicate name {row.name!r} (also line {seen[row.name]})")
        seen[row.name] = line
        models = {}
        for kind in MODEL_KINDS:
            spec = getattr(row, f"{kind}_model")
            if spec is None:
                continue
            try:
                models[kind] = model_spec(spec, sheet.parent)
            except ConfigError as exc:
                raise _fail(sheet, line, f"{kind}_model", str(exc)) from None
        source = movie_path(row.path, sheet.parent)
        files = movie_files(source)
        if not files:
            what = "no file matches" if is_pattern(row.path) else "no such file or folder"
            raise _fail(sheet, line, "path", f"{what} {row.path!r}")
        try:
            t, h, w = shapes.shape(files)
        except (EtemError, OSError, ValueError) as exc:
            raise _fail(sheet, line, "path", f"unreadable movie {row.path!r}: {exc}") from None
        rows.append(row.model_copy(update={"source": source, "files": files, "n_frames": t,
                                           "frame_px": h * w, "models": models}))
    shapes.save()
    return rows


def campaign_movies(
    config: Any,
    synthetic_path: str | os.PathLike[str],
    cache: str | os.PathLike[str] | None = DEFAULT_CACHE,
) -> list[MovieRow]:
    """The movies of a campaign: the sheet's rows, then the synthetic row (if enabled).

    ``config`` is the campaign's :class:`~etem.config.EtemConfig`; ``synthetic_path`` where the
    workflow writes the synthetic movie (its frame count comes from ``synthetic_movie.n_frames``).
    A row's registry URIs (``models:/...``) are checked in the campaign's tracking store
    and pinned to their version (:func:`pin_models`).
    Raises :class:`ConfigError` (one line) on a bad sheet, a row named ``synthetic`` while
    the synthetic movie runs, a ``finetune`` row without ``apply.finetune.steps``, a model
    the registry does not hold (or a store it cannot reach), or no movie.
    """
    m = config.movies
    rows = read_sheet(m.sheet, cache) if m.sheet else []
    rows = pin_models(rows, config, m.sheet) if m.sheet else rows
    for r in rows:
        if r.finetune and config.apply.finetune.steps == 0:
            raise _fail(Path(m.sheet), r.line, "finetune",
                        "true needs apply.finetune.steps > 0 in the config")
        if r.name == SYNTHETIC and m.synthetic:
            raise _fail(Path(m.sheet), r.line, "name",
                        f"{SYNTHETIC!r} is the campaign's synthetic movie (movies.synthetic: "
                        "true); rename the row or set movies.synthetic: false")
    if m.synthetic:
        rows.append(MovieRow(name=SYNTHETIC, path=str(synthetic_path),
                             source=str(synthetic_path), files=(str(synthetic_path),),
                             n_frames=config.synthetic_movie.n_frames,
                             frame_px=config.synthetic_movie.size_px ** 2))
    if not rows:
        raise ConfigError("movies: no movie to apply (movies.sheet unset and "
                          "movies.synthetic: false)")
    return rows


def model_spec(spec: str, base: str | os.PathLike[str] | None = None) -> str:
    """A model argument as the jobs take it: a registry URI (``models:/...``) unchanged, a
    file joined to ``base`` when relative (``~`` expanded); ConfigError when the file does
    not exist. The registry itself is asked by :func:`pin_models` / :func:`campaign_models`.
    """
    if is_registry_uri(spec):
        return spec
    text = os.path.expanduser(spec)
    path = Path(text) if base is None or Path(text).is_absolute() else Path(base) / text
    if not path.is_file():
        raise ConfigError(f"no such model file {spec!r} (a model file .pt or "
                          "models:/NAME/VERSION)")
    return str(path)


def _pinned(spec: str, config: Any, memo: dict[str, str]) -> str:
    """:func:`etem.runs.pinned_model` once per URI (``memo``); its InputError a ConfigError."""
    if spec not in memo:
        try:
            memo[spec] = pinned_model(spec, config)
        except EtemError as exc:
            raise ConfigError(str(exc)) from None
    return memo[spec]


def pin_models(rows: list[MovieRow], config: Any,
               sheet: str | os.PathLike[str] | None = None) -> list[MovieRow]:
    """The rows with their registry URIs checked in the tracking store of ``config`` and
    pinned (``models:/NAME/latest`` -> ``models:/NAME/<number>``); one ConfigError line naming
    the sheet line and column when the store is unreachable or lacks the name or version."""
    memo: dict[str, str] = {}
    out = []
    for row in rows:
        models = dict(row.models)
        for kind, spec in row.models.items():
            try:
                models[kind] = _pinned(spec, config, memo)
            except ConfigError as exc:
                raise _fail(Path(sheet or "?"), row.line, f"{kind}_model", str(exc)) from None
        out.append(row.model_copy(update={"models": models}))
    return out


def campaign_models(config: Any) -> dict[str, str]:
    """The config's ``apply.models`` (kind -> model file or pinned registry URI; kinds left
    unset are absent: the campaign's own networks). One ConfigError line naming the key when
    a file is missing or the registry lacks the model (or cannot be reached)."""
    memo: dict[str, str] = {}
    out = {}
    for kind in MODEL_KINDS:
        spec = getattr(config.apply.models, kind)
        if spec is None:
            continue
        try:
            out[kind] = _pinned(model_spec(spec), config, memo)
        except ConfigError as exc:
            raise ConfigError(f"apply.models.{kind}: {exc}") from None
    return out


def movie_groups(rows: list[MovieRow]) -> dict[str, list[MovieRow]]:
    """Sheet rows by ``group`` (rows without a group, and the synthetic movie, are in none)."""
    groups: dict[str, list[MovieRow]] = {}
    for row in rows:
        if row.group and row.name != SYNTHETIC:
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", row.group):
                raise ConfigError(f"movie sheet line {row.line}, column group: {row.group!r} "
                                  "names a model file: use letters, digits, '_', '.', '-'")
            groups.setdefault(row.group, []).append(row)
    return groups


#: Sheet ``denoiser`` values named otherwise in ``apply.inference.denoise_with``.
_MODES = {"blindspot": "unsupervised"}


def row_denoiser(row: MovieRow, config: Any) -> str:
    """The ``apply.inference.denoise_with`` of a row: its ``denoiser`` (``blindspot`` is
    ``unsupervised``), else the config's."""
    if row.denoiser is None:
        return str(config.apply.inference.denoise_with)
    return _MODES.get(row.denoiser, row.denoiser)


def network_denoised(row: MovieRow, config: Any) -> bool:
    """Whether a network may denoise the row's movie (:func:`etem.config.apply.uses_network`
    of its denoiser): not for a classical filter (``raw``, ``gaussian``, ``wiener``), nor for
    ``auto`` when ``apply.inference.auto_candidates`` lists no network."""
    return uses_network(row_denoiser(row, config), config.apply.inference.auto_candidates)


def row_networks(row: MovieRow, config: Any) -> tuple[str, ...]:
    """The networks (:data:`MODEL_KINDS`) the row's apply jobs are given: all three when a
    network may denoise it (:func:`network_denoised`; the likelihood calibration, fitted on a
    network's output, goes with them), else the segmenter only (occupancy does not depend on
    the denoiser), so the workflow trains no denoising network for a movie that a classical
    filter denoises."""
    return MODEL_KINDS if network_denoised(row, config) else ("segmenter",)


def evaluated_networks(rows: list[MovieRow], config: Any) -> tuple[str, ...]:
    """The campaign's own networks its evaluation benchmarks (so the campaign trains them):
    all three when a network may denoise any of its movies (the calibration those movies use
    is fitted on the campaign's denoiser); when classical filters denoise every movie, the
    segmenter if a movie is applied with the campaign's own (no ``segmenter_model`` of its
    row, no ``apply.models.segmenter``), else none (the benchmark then scores the classical
    baselines only, and nothing is trained)."""
    if any(network_denoised(r, config) for r in rows):
        return MODEL_KINDS
    own = config.apply.models.segmenter is None and any("segmenter" not in r.models
                                                        for r in rows)
    return ("segmenter",) if own else ()


def row_arguments(row: MovieRow) -> list[str]:
    """The ``etem apply-*`` arguments of a row's own settings (each one shell word)."""
    args: list[str] = []
    if row.pixel_size_A is not None:
        args += ["--set", f"apply.preprocess.pixel_size_A={row.pixel_size_A!r}"]
    if row.dose_e_per_px is not None:
        args += ["--set", f"apply.preprocess.dose_e_per_px_per_frame={row.dose_e_per_px!r}"]
    if row.denoiser is not None:
        args += ["--set", f"apply.inference.denoise_with={_MODES.get(row.denoiser, row.denoiser)}"]
    if row.finetune is False:
        args += ["--finetune-steps", "0"]
    if row.frame_time_s is not None:
        args += ["--frame-time-s", repr(row.frame_time_s)]
    return args
