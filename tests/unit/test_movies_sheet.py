"""The movie sheet: rows validated (line and column named), movies opened, frame counts cached."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from etem.config import load_config
from etem.errors import ConfigError, InputError
from etem.frames import readers
from etem.frames.files import movie_files, movie_name
from etem.movies import sheet as sheet_mod
from etem.movies.sheet import (
    MODEL_KINDS,
    ShapeCache,
    campaign_movies,
    evaluated_networks,
    movie_groups,
    network_denoised,
    read_sheet,
    row_arguments,
    row_denoiser,
    row_networks,
    sheet_schema,
)

HEADER = "name\tpath\tpixel_size_A\tdose_e_per_px\tframe_time_s\tgroup\tdenoiser\tfinetune\n"


def _frames(t: int = 6, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).poisson(2.0, (t, size, size)).astype(np.uint16)


@pytest.fixture()
def movies(tmp_path: Path) -> Path:
    """A TIFF folder (4 frames), an MRC stack (6 frames) and a glob of npy-free TIFFs."""
    data = tmp_path / "data"
    (data / "tiffs").mkdir(parents=True)
    for i, fr in enumerate(_frames(4)):
        tifffile.imwrite(data / "tiffs" / f"f_{i:03d}.tif", fr)
    with mrcfile.new(data / "stack.mrc") as m:
        m.set_data(_frames(6))
        m.voxel_size = 0.5
    (data / "broken.mrc").write_bytes(b"not an mrc file at all" * 10)
    return data


def _sheet(tmp: Path, body: str, header: str = HEADER) -> Path:
    p = tmp / "movies.tsv"
    p.write_text(header + body)
    return p


def test_rows_read_with_frame_counts_and_relative_paths(movies: Path, tmp_path: Path) -> None:
    sheet = _sheet(
        tmp_path,
        "# a comment line\n"
        "a\tdata/tiffs\t0.5\t1.5\t0.025\t600C\tblindspot\ttrue\n"
        "\n"
        "b\tdata/stack.mrc\t\t\t\tO2\t\t\n"
        "c\tdata/tiffs/f_00[0-2].tif\t0.5\t\t\t\tauto\tno\n",
    )
    rows = read_sheet(sheet)
    assert [r.name for r in rows] == ["a", "b", "c"]
    assert [r.n_frames for r in rows] == [4, 6, 3]
    assert [r.line for r in rows] == [3, 5, 6]
    a, b, c = rows
    assert a.pixel_size_A == 0.5 and a.dose_e_per_px == 1.5 and a.frame_time_s == 0.025
    assert a.group == "600C" and a.denoiser == "blindspot" and a.finetune is True
    assert b.pixel_size_A is None and b.denoiser is None and b.finetune is None
    assert c.finetune is False and len(c.files) == 3
    assert Path(b.files[0]) == movies / "stack.mrc"  # relative to the sheet's folder
    assert row_arguments(a) == [
        "--set", "apply.preprocess.pixel_size_A=0.5",
        "--set", "apply.preprocess.dose_e_per_px_per_frame=1.5",
        "--set", "apply.inference.denoise_with=unsupervised", "--frame-time-s", "0.025",
    ]
    assert row_arguments(b) == []
    assert row_arguments(c)[-2:] == ["--finetune-steps", "0"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("a\tdata/stack.mrc\n", None),  # control: valid
        (
            "a\tdata/stack.mrc\na\tdata/tiffs\n",
            "line 3, column name: duplicate name 'a' (also line 2)",
        ),
        ("a b\tdata/stack.mrc\n", "line 2, column name: use letters, digits"),
        ("../x\tdata/stack.mrc\n", "line 2, column name:"),
        ("..\tdata/stack.mrc\n", "line 2, column name: use letters"),
        ("run.1_a-b\tdata/stack.mrc\n", None),
        ("a\tdata/nothing.mrc\n", "line 2, column path: no such file or folder 'data/nothing.mrc'"),
        ("a\tdata/*.dm4\n", "line 2, column path: no file matches 'data/*.dm4'"),
        ("a\tdata/broken.mrc\n", "line 2, column path: unreadable movie 'data/broken.mrc'"),
        ("a\t\n", "line 2, column path: empty (required)"),
        ("a\tdata/stack.mrc\t-1\n", "line 2, column pixel_size_A: Input should be greater than 0"),
        ("a\tdata/stack.mrc\t\t\t\t\tneural\n", "line 2, column denoiser:"),
        ("a\tdata/stack.mrc\t\t\t\t\t\tmaybe\n", "line 2, column finetune:"),
        ("a\tdata/stack.mrc\t\t\t\t\t\t\textra\n", "line 2, column #9:"),
    ],
)
def test_bad_rows_name_the_line_and_the_column(
    movies: Path, tmp_path: Path, body: str, where: str | None
) -> None:
    sheet = _sheet(tmp_path, body)
    if where is None:
        assert len(read_sheet(sheet)) == 1
        return
    with pytest.raises(ConfigError) as exc:
        read_sheet(sheet)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"movie sheet {sheet}: ")
    assert where in msg


def test_bad_header_names_the_column(movies: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 1, column temperature: unknown column"):
        read_sheet(_sheet(tmp_path, "a\tdata/stack.mrc\t300\n", header="name\tpath\ttemperature\n"))
    with pytest.raises(ConfigError, match=r"line 1, column path: missing column"):
        read_sheet(_sheet(tmp_path, "a\n", header="name\n"))
    with pytest.raises(ConfigError, match=r"no such file"):
        read_sheet(tmp_path / "absent.tsv")


def test_frame_counts_cached_by_path_size_mtime(
    movies: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sheet = _sheet(tmp_path, "a\tdata/stack.mrc\nb\tdata/tiffs\n")
    cache = tmp_path / "cache" / "movie_shapes.json"
    assert [r.n_frames for r in read_sheet(sheet, cache)] == [6, 4]
    entries = json.loads(cache.read_text())
    assert len(entries) == 2
    key = ShapeCache.key((str(movies / "stack.mrc"),))
    assert entries[key] == [6, 16, 16]
    assert str((movies / "stack.mrc").resolve()) in key

    def no_open(*a: object, **k: object) -> None:
        raise AssertionError("a cached movie was opened again")

    monkeypatch.setattr(readers, "open_movie", no_open)
    assert [r.n_frames for r in read_sheet(sheet, cache)] == [6, 4]
    # a faked count in the cache is what planning sees (benchmarks/plan.py relies on it)
    cache.write_text(json.dumps({**entries, key: [20000, 16, 16]}))
    assert read_sheet(sheet, cache)[0].n_frames == 20000
    # a changed file (size, mtime) is opened again
    monkeypatch.undo()
    with mrcfile.new(movies / "stack.mrc", overwrite=True) as m:
        m.set_data(_frames(9))
    assert read_sheet(sheet, cache)[0].n_frames == 9


def test_a_glob_row_is_a_group_movie_opened_as_its_files(tmp_path: Path) -> None:
    """A glob row names its files in natural order (f_2 before f_10, as in a folder) and its
    source is the pattern the group training expands to the same files: the sheet's folder
    (here with a space and glob characters) is never read as a pattern."""
    where = tmp_path / "sheet [a] b*"
    (where / "raw").mkdir(parents=True)
    frames = _frames(11)
    for i, fr in enumerate(frames):
        tifffile.imwrite(where / "raw" / f"f_{i}.tif", fr)
    sheet = _sheet(where, "g\traw/f_*.tif\t\t\t\t600C\nm\traw/f_1.tif\t\t\t\t600C\n")
    g, m = read_sheet(sheet)
    assert g.n_frames == 11
    assert g.files == tuple(str(where / "raw" / f"f_{i}.tif") for i in range(11))
    assert g.source == glob.escape(str(where)) + "/raw/f_*.tif"
    assert m.source == str(where / "raw" / "f_1.tif") and m.files == (m.source,)
    assert [r.name for r in movie_groups([g, m])["600C"]] == ["g", "m"]
    assert movie_files(g.source) == g.files  # what group training opens: the same files
    with readers.open_movie(g.source) as movie, readers.open_movie(list(g.files)) as listed:
        assert movie.shape == (11, 16, 16)
        assert np.array_equal(movie.read(0, 11), listed.read(0, 11))
        assert np.array_equal(movie.read(2, 3)[0], frames[2])
    with pytest.raises(InputError, match=r"movie .*/none_\*\.tif: no file matches the pattern$"):
        readers.open_movie(where / "raw" / "none_*.tif")


def test_a_movie_is_named_by_its_file_folder_or_the_folder_of_its_pattern(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`etem apply` without --name: a file's or folder's stem; a glob pattern's nearest
    folder that is no pattern (never 'f_*'), the current folder for a bare pattern."""
    work = tmp_path / "exp 7, 600C"
    (work / "stack.d").mkdir(parents=True)
    (work / "m.mrc").write_bytes(b"")
    monkeypatch.chdir(work)
    assert movie_name(work / "m.mrc") == "m" and movie_name("stack.d") == "stack"
    assert movie_name("/data/run 03, 600C/f_*.tif") == "run 03, 600C"
    assert movie_name("/data/exp/run*/f_?.tif") == "exp"  # a pattern's folder is skipped
    assert movie_name(glob.escape("/data/exp[1]") + "/f_*.tif") == "exp[1]"  # escaped: literal
    assert movie_name("f_*.tif") == movie_name("./f_*.tif") == "exp 7, 600C"
    assert movie_name("stack.d/../f_*.tif") == "exp 7, 600C"


def test_campaign_movies_add_the_synthetic_row(movies: Path, tmp_path: Path) -> None:
    cfg = load_config(None, {"synthetic_movie.n_frames": 50})
    rows = campaign_movies(cfg, tmp_path / "synthetic.h5", cache=None)
    assert [(r.name, r.n_frames) for r in rows] == [("synthetic", 50)]
    sheet = _sheet(tmp_path, "a\tdata/stack.mrc\n")
    rows = campaign_movies(load_config(None, {"movies.sheet": str(sheet)}), "s.h5", cache=None)
    assert [r.name for r in rows] == ["a", "synthetic"]
    only = load_config(None, {"movies.sheet": str(sheet), "movies.synthetic": False})
    assert [r.name for r in campaign_movies(only, "s.h5", cache=None)] == ["a"]
    with pytest.raises(ConfigError, match="no movie to apply"):
        campaign_movies(load_config(None, {"movies.synthetic": False}), "s.h5", cache=None)
    clash = _sheet(tmp_path, "synthetic\tdata/stack.mrc\n")
    with pytest.raises(ConfigError, match="line 2, column name: 'synthetic' is the campaign"):
        campaign_movies(load_config(None, {"movies.sheet": str(clash)}), "s.h5", cache=None)
    ft = _sheet(tmp_path, "a\tdata/stack.mrc\t\t\t\t\t\ttrue\n")
    with pytest.raises(ConfigError, match=r"line 2, column finetune: true needs apply.finetune"):
        campaign_movies(load_config(None, {"movies.sheet": str(ft)}), "s.h5", cache=None)
    ok = load_config(None, {"movies.sheet": str(ft), "apply.finetune.steps": 5})
    assert campaign_movies(ok, "s.h5", cache=None)[0].finetune is True


def test_a_movie_a_classical_filter_denoises_is_given_no_denoising_network(
    movies: Path, tmp_path: Path
) -> None:
    """A row's denoiser (else apply.inference.denoise_with) decides which networks its jobs
    get: none of the denoising ones for raw/gaussian/wiener, nor for auto among classical
    auto_candidates; the segmenter always (occupancy). The campaign's evaluation benchmarks
    (so trains) the denoising networks only when one may denoise a movie."""
    sheet = _sheet(tmp_path, "w\tdata/stack.mrc\t\t\t\t\twiener\n"
                   "b\tdata/stack.mrc\t\t\t\t\tblindspot\n"
                   "a\tdata/stack.mrc\n")
    cfg = load_config(None, {"movies.sheet": str(sheet), "movies.synthetic": False})
    w, b, a = read_sheet(sheet, None)
    assert [row_denoiser(r, cfg) for r in (w, b, a)] == ["wiener", "unsupervised", "auto"]
    assert [network_denoised(r, cfg) for r in (w, b, a)] == [False, True, True]
    assert row_networks(w, cfg) == ("segmenter",)
    assert row_networks(b, cfg) == row_networks(a, cfg) == MODEL_KINDS
    assert evaluated_networks([w, b, a], cfg) == MODEL_KINDS
    assert evaluated_networks([w], cfg) == ("segmenter",)
    # auto among classical candidates only needs no network either
    only = load_config(None, {"apply.inference.auto_candidates": ["raw", "gaussian", "wiener"]})
    assert row_networks(a, only) == row_networks(w, only) == ("segmenter",)
    assert evaluated_networks([a, w], only) == ("segmenter",)
    tuned = load_config(None, {"apply.inference.auto_candidates": ["finetuned", "raw"]})
    assert row_networks(a, tuned) == MODEL_KINDS and row_networks(w, tuned) == ("segmenter",)
    raw = load_config(None, {"apply.inference.denoise_with": "raw"})
    assert not network_denoised(a, raw) and network_denoised(b, raw)
    assert evaluated_networks([a, w], raw) == ("segmenter",)
    # classical only, the segmenter from elsewhere: the campaign trains nothing
    seg = movies / "seg.pt"
    seg.write_bytes(b"")
    elsewhere = load_config(None, {"apply.inference.denoise_with": "raw",
                                   "apply.models.segmenter": str(seg)})
    assert evaluated_networks([a, w], elsewhere) == ()
    own = _sheet(tmp_path, "w\tdata/stack.mrc\t\t\t\t\twiener\t\tmine.pt\n",
                 header=HEADER.rstrip("\n") + "\tsegmenter_model\n")
    (tmp_path / "mine.pt").write_bytes(b"")
    (mine,) = read_sheet(own, None)
    assert mine.models == {"segmenter": str(tmp_path / "mine.pt")}
    assert evaluated_networks([mine], cfg) == ()
    assert evaluated_networks([mine, w], cfg) == ("segmenter",)


def test_planning_from_the_cache_does_not_import_the_readers(movies: Path, tmp_path: Path) -> None:
    sheet = _sheet(tmp_path, "a\tdata/stack.mrc\n")
    cache = tmp_path / "shapes.json"
    read_sheet(sheet, cache)
    code = (f"import sys; from etem.movies.sheet import read_sheet; "
            f"r = read_sheet({str(sheet)!r}, {str(cache)!r}); "
            "assert r[0].n_frames == 6; assert 'etem.frames.readers' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_schema_lists_the_sheet_columns_only() -> None:
    s = sheet_schema()
    assert list(s["properties"]) == list(sheet_mod.COLUMNS)
    assert s["required"] == ["name", "path"]
    assert s["properties"]["denoiser"]["anyOf"][0]["enum"] == ["supervised", "blindspot", "auto",
                                                               "raw", "gaussian", "wiener"]


def test_cli_validate_and_schema(movies: Path, tmp_path: Path) -> None:
    etem = [sys.executable, "-m", "etem.cli"]
    good = _sheet(tmp_path, "a\tdata/stack.mrc\nb\tdata/tiffs\n")
    out = subprocess.run([*etem, "sheet", "validate", str(good)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "a\t6 frames" in out.stdout and "valid (2 movies)" in out.stdout
    bad = _sheet(tmp_path, "a\tdata/stack.mrc\nb\tdata/missing\n")
    out = subprocess.run([*etem, "sheet", "validate", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "line 3, column path: no such file or folder" in out.stderr
    out = subprocess.run([*etem, "sheet", "schema"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["required"] == ["name", "path"]
