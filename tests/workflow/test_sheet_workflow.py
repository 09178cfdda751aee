"""Movies of a sheet through the workflow; per-stage configs; a dry run writes nothing.

Planning only (``snakemake -n``), plus one campaign whose outputs are stand-ins (created
empty, then ``--touch``) to show which jobs a config change re-runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
import yaml

from etem.cluster.resources import gather_mem_mb, gather_runtime_min

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SMOKE = ROOT / "config" / "smoke.yaml"
pytestmark = pytest.mark.workflow
REAL_CANDIDATES = [ROOT.parent / "shared", ROOT.parent.parent / "shared"]
GOLD = next(
    (p / "data" / "real" / "gold_growth_movie" for p in REAL_CANDIDATES
     if (p / "data" / "real" / "gold_growth_movie").is_dir()),
    None,
)


def snakemake(*args: str, configs: tuple[Path, ...] = (SMOKE,), results: Path,
              cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(BIN / "snakemake"), *args, "--configfile", *map(str, configs),
         "--config", f"results_dir={results}"],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=300, check=False,
    )


def job_counts(text: str) -> dict[str, int]:
    """The "Job stats" table of a dry run."""
    block = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", block, flags=re.MULTILINE)}


def overlay(tmp: Path, text: str, name: str = "overlay.yaml") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def test_dry_run_writes_nothing_into_results(tmp_path: Path) -> None:
    res = tmp_path / "res"
    out = snakemake("-n", results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "stage_config" in out.stdout  # the per-stage configs are jobs, not parse-time writes
    assert not res.exists(), sorted(p.name for p in res.rglob("*"))


def test_code_paths_plan_their_jobs_and_feed_the_evaluation(tmp_path: Path) -> None:
    res = tmp_path / "res"
    plain = snakemake("-n", "-p", results=res)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "rule simulate_code_path" not in plain.stdout and "--code-path" not in plain.stdout
    extra = overlay(tmp_path, "evaluation:\n  code_paths:\n"
                    "  - {name: kirk, parametrization: kirkland, projection: finite}\n"
                    "  - {name: fp, frozen_phonons: 2, images_per_structure: 1, n_shards: 3}\n")
    out = snakemake("-n", "-p", configs=(SMOKE, extra), results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    counts, before = job_counts(out.stdout), job_counts(plain.stdout)
    n_sim = yaml.safe_load(SMOKE.read_text())["simulation"]["n_shards"]
    assert counts.pop("simulate_code_path") == n_sim + 3
    assert counts.pop("index_code_path") == 2
    counts["stage_config"] -= 1  # config/simulate-code-path.yaml
    assert counts == before  # the rest of the campaign is planned as without code paths
    cp = res / "simulation" / "code_paths"
    for name in ("kirk", "fp"):
        assert f"--code-path={name}={cp / name / 'index.csv'}" in out.stdout
    assert f"--code-path fp --shard 2/3 --out {cp / 'fp' / 'shard_002.h5'}" in out.stdout
    assert not res.exists()


@pytest.fixture(scope="module")
def done_campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke campaign whose outputs exist and are up to date: the stage configs written by
    their rule, every other output a stand-in (empty file, marked done with --touch)."""
    res = tmp_path_factory.mktemp("done") / "res"
    summary = snakemake("--summary", results=res)
    assert summary.returncode == 0, summary.stderr[-2000:]
    rows = [ln.split("\t") for ln in summary.stdout.splitlines()[1:] if "\t" in ln]
    configs = [r[0] for r in rows if r[2] == "stage_config"]
    out = snakemake("--cores", "1", *configs, results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    for path, _, rule, *_ in rows:
        if rule == "stage_config":
            continue
        p = Path(path)
        if rule == "build_structures":  # directory() outputs
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    out = snakemake("--cores", "1", "--touch", results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    out = snakemake("-n", results=res)
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout[-3000:]
    return res


def test_apply_setting_reruns_only_apply_and_report(done_campaign: Path, tmp_path: Path) -> None:
    res = done_campaign
    apply_yaml = res / "config" / "apply.yaml"
    assert yaml.safe_load(apply_yaml.read_text())["apply"]["events"]["false_alarm_rate"] == 0.01
    assert "apply:" not in (res / "config" / "training.yaml").read_text()
    ov = overlay(tmp_path, "apply:\n  events:\n    false_alarm_rate: 0.02\n")
    out = snakemake("-n", configs=(SMOKE, ov), results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    counts = job_counts(out.stdout)
    assert set(counts) == {"stage_config", "apply_prepare", "apply_shard", "apply_gather",
                           "make_report", "all"}, counts
    assert counts["stage_config"] == 2  # apply.yaml and report.yaml
    changed = re.findall(r"output: (\S+)\n.*\n.*\n\s+reason: Params have changed", out.stdout)
    assert sorted(Path(p).name for p in changed) == ["apply.yaml", "report.yaml"]
    reasons = out.stdout.split("Reasons:", 1)[1]
    assert "train_" not in reasons and "simulate_" not in reasons and "evaluate" not in reasons
    assert apply_yaml.read_text().count("0.01\n") >= 1  # the dry run wrote nothing

    # control: a training setting re-runs that training and what consumed its model
    ov = overlay(tmp_path, "training:\n  denoiser:\n    steps: 21\n", "training.yaml")
    counts = job_counts(snakemake("-n", configs=(SMOKE, ov), results=res).stdout)
    assert counts["train_denoiser"] == 1 and counts["evaluate"] == 1
    assert "simulate_images" not in counts and "build_structures" not in counts


def _two_movies(tmp: Path) -> Path:
    """A folder of 70 TIFF frames and a 40-frame MRC stack, and their sheet."""
    rng = np.random.default_rng(1)
    (tmp / "tiffs").mkdir()
    for i in range(70):
        tifffile.imwrite(tmp / "tiffs" / f"frame_{i:04d}.tif",
                         rng.poisson(1.0, (32, 32)).astype(np.uint16))
    with mrcfile.new(tmp / "stack.mrc") as m:
        m.set_data(rng.poisson(1.0, (40, 32, 32)).astype(np.uint16))
        m.voxel_size = 0.5
    sheet = tmp / "movies.tsv"
    sheet.write_text("name\tpath\tpixel_size_A\tframe_time_s\tgroup\n"
                     "tiff_run\ttiffs\t0.5\t0.025\t600C\n"
                     "mrc_run\tstack.mrc\t\t\tO2\n")
    return sheet


def test_sheet_movies_plan_sharded_apply_jobs(tmp_path: Path) -> None:
    sheet = _two_movies(tmp_path)
    # a glob row of 12 frames in the 600C group, in a folder whose name the shell would run
    frames = tmp_path / "glob frames;touch X"
    frames.mkdir()
    for i in range(12):
        tifffile.imwrite(frames / f"frame_{i}.tif", np.ones((32, 32), np.uint16))
    sheet.write_text(sheet.read_text() + "glob_run\tglob frames;touch X/frame_*.tif\t0.5\t\t600C\n")
    ov = overlay(tmp_path, f"movies:\n  sheet: {sheet}\napply:\n  io:\n"
                 "    shard_frames: 32\n    chunk_frames: 16\n")
    res = tmp_path / "res"
    out = snakemake("-n", "-p", configs=(SMOKE, ov), results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    counts = job_counts(out.stdout)
    # 70 frames -> 3 shards, 40 -> 2, the glob's 12 -> 1, the synthetic movie (16 frames) -> 1
    assert counts["apply_prepare"] == 4 and counts["apply_gather"] == 4
    assert counts["apply_shard"] == 3 + 2 + 1 + 1
    assert counts["make_report"] == 1
    text = out.stdout
    for name in ("tiff_run", "mrc_run", "synthetic"):
        assert f"{res}/apply/{name}/summary.json" in text
    assert "--frames 64:70" in text and "--frames 32:40" in text
    assert "--frame-time-s 0.025" in text and "--set apply.preprocess.pixel_size_A=0.5" in text
    assert "--tag etem.group=600C" in text and "--name tiff_run" in text
    # one blind-spot network per group, trained on its movies, denoises that group's movies
    assert counts["train_group"] == 2
    # the glob row joins its group as one quoted word: its pattern, expanded by the training
    assert (f"--movie {tmp_path}/tiffs '{frames}/frame_*.tif' --out {res}/models/groups/600C.pt"
            in text)
    assert not (tmp_path / "X").exists() and not (ROOT / "X").exists()
    assert re.search(rf"apply-prepare .*--movie {tmp_path}/tiffs .*--unsupervised "
                     rf"{res}/models/groups/600C.pt", text)
    # the apply jobs of the glob row get its pattern, one quoted word (the jobs' inputs are
    # still its 12 files), never one argument per frame
    quoted = f"'{frames}/frame_*.tif'"
    for rule in ("apply-prepare", "apply-shard", "apply-gather"):
        (command,) = [ln for ln in text.splitlines() if f" {rule} " in ln and "glob_run" in ln]
        assert f"--movie {quoted} " in command, command
        assert "frame_0.tif" not in command and "frame_11.tif" not in command
    assert "--name glob_run" in text
    assert not res.exists()
    cache = ROOT / ".snakemake" / "etem" / "movie_shapes.json"
    assert str((tmp_path / "stack.mrc").resolve()) in cache.read_text()


def test_long_movie_gather_asks_for_time_by_its_length(tmp_path: Path) -> None:
    """The gather goes through every frame on one core: its requested wall time and memory
    follow the movie's frame count (a 60-min floor lets a 20,000-frame gather time out)."""
    with mrcfile.new(tmp_path / "long.mrc") as m:
        m.set_data(np.ones((20_000, 8, 8), np.uint8))
    sheet = tmp_path / "movies.tsv"
    sheet.write_text("name\tpath\tpixel_size_A\nlong\tlong.mrc\t0.5\n")
    ov = overlay(tmp_path, f"movies:\n  sheet: {sheet}\n  synthetic: false\n")
    out = snakemake("-n", configs=(SMOKE, ov), results=tmp_path / "res")
    assert out.returncode == 0, out.stderr[-2000:]
    blocks = out.stdout.split("rule ")
    (gather,) = [b for b in blocks if b.startswith("apply_gather:")]
    (shard,) = [b for b in blocks if b.startswith("apply_shard:")][:1]
    runtime = int(re.search(r"runtime=(\d+)", gather).group(1))  # type: ignore[union-attr]
    mem = int(re.search(r"mem_mb=(\d+)", gather).group(1))  # type: ignore[union-attr]
    assert runtime == gather_runtime_min(20_000, 64) > 60
    assert mem == gather_mem_mb(20_000) > 4000
    assert "runtime=60" in shard  # a shard job's size does not depend on the movie


def _commands(text: str, word: str) -> list[str]:
    """The dry run's shell commands (``-p``) that contain ``word``."""
    return [ln for ln in text.splitlines() if "etem --tag rule=" in ln and word in ln]


def test_classical_movies_train_no_denoising_network(tmp_path: Path) -> None:
    """A movie that a classical filter denoises (raw, gaussian, wiener; auto among classical
    auto_candidates) is given no denoising network and no calibration, so a campaign whose
    movies are all such trains none: the segmenter only (occupancy, and the benchmark's
    segmentation), nothing when the segmenter comes from elsewhere."""
    res = tmp_path / "res"
    plain = job_counts(snakemake("-n", results=res).stdout)
    assert plain["train_denoiser"] == plain["train_unsupervised"] == 1  # control
    for inference in ("denoise_with: wiener", "auto_candidates: [raw, gaussian, wiener]"):
        ov = overlay(tmp_path, f"apply:\n  inference:\n    {inference}\n")
        out = snakemake("-n", "-p", configs=(SMOKE, ov), results=res)
        assert out.returncode == 0, out.stderr[-2000:]
        counts = job_counts(out.stdout)
        assert "train_denoiser" not in counts and "train_unsupervised" not in counts, counts
        assert counts["train_segmenter"] == counts["evaluate"] == counts["make_report"] == 1
        (evaluate,) = _commands(out.stdout, " evaluate ")
        assert f"--segmenter {res}/models/segmenter.pt --movie" in evaluate
        assert "--denoiser" not in evaluate and "--unsupervised" not in evaluate
        apply = _commands(out.stdout, " apply-")
        assert len(apply) == 3 and all(f"--segmenter {res}/models/segmenter.pt" in c
                                       for c in apply)
        for word in ("--denoiser", "--unsupervised", "--calibration"):
            assert not any(word in c for c in apply), word
    # the movies alone: no benchmark either (the calibration is no input of theirs)
    target = str(res / "apply" / "synthetic" / "summary.json")
    counts = job_counts(snakemake("-n", target, configs=(SMOKE, ov), results=res).stdout)
    assert "evaluate" not in counts and counts["train_segmenter"] == 1
    assert not any(k.startswith("train_") for k in counts if k != "train_segmenter")
    # the segmenter from elsewhere: nothing is trained (the benchmark scores the classical
    # baselines on the simulated images); the movies alone simulate no image
    seg = tmp_path / "seg.pt"
    seg.write_bytes(b"")
    ov = overlay(tmp_path, f"apply:\n  inference:\n    denoise_with: raw\n"
                 f"  models:\n    segmenter: {seg}\n")
    out = snakemake("-n", "-p", configs=(SMOKE, ov), results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    counts = job_counts(out.stdout)
    assert not any(k.startswith("train_") for k in counts), counts
    (evaluate,) = _commands(out.stdout, " evaluate ")
    assert "--segmenter" not in evaluate and "--denoiser" not in evaluate
    counts = job_counts(snakemake("-n", target, configs=(SMOKE, ov), results=res).stdout)
    assert set(counts) == {"stage_config", "build_structures", "gather_structures",
                           "simulate_movie", "apply_prepare", "apply_shard", "apply_gather"}
    assert not res.exists()


def test_classical_sheet_rows_train_no_group_network(tmp_path: Path) -> None:
    """Rows of the sheet: a group whose movies classical filters denoise gets no blind-spot
    network; a row that a network may denoise keeps its own (and the campaign's networks)."""
    sheet = _two_movies(tmp_path)
    ov = overlay(tmp_path, f"movies:\n  sheet: {sheet}\n  synthetic: false\n")
    res = tmp_path / "res"
    out = snakemake("-n", configs=(SMOKE, ov), results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    assert job_counts(out.stdout)["train_group"] == 2  # control: a network may denoise both
    sheet.write_text("name\tpath\tpixel_size_A\tgroup\tdenoiser\n"
                     "tiff_run\ttiffs\t0.5\t600C\twiener\n"
                     "mrc_run\tstack.mrc\t\tO2\tgaussian\n")
    out = snakemake("-n", "-p", configs=(SMOKE, ov), results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    counts = job_counts(out.stdout)
    assert [k for k in counts if k.startswith("train_")] == ["train_segmenter"], counts
    assert "--set apply.inference.denoise_with=wiener" in out.stdout
    sheet.write_text(sheet.read_text().replace("gaussian", "blindspot"))
    out = snakemake("-n", "-p", configs=(SMOKE, ov), results=res)
    assert out.returncode == 0, out.stderr[-2000:]
    counts = job_counts(out.stdout)
    assert counts["train_group"] == 1 and counts["train_denoiser"] == 1
    assert f"--out {res}/models/groups/O2.pt" in out.stdout
    assert f"{res}/models/groups/600C.pt" not in out.stdout
    (prepare,) = [c for c in _commands(out.stdout, " apply-prepare ") if "tiff_run" in c]
    assert "--unsupervised" not in prepare and "--calibration" not in prepare
    (prepare,) = [c for c in _commands(out.stdout, " apply-prepare ") if "mrc_run" in c]
    assert f"--unsupervised {res}/models/groups/O2.pt" in prepare
    assert f"--calibration {res}/evaluation/likelihood_calibration.json" in prepare
    assert not res.exists()


@pytest.mark.skipif(GOLD is None, reason="../shared/data/real/gold_growth_movie/ is absent")
def test_real_gold_movie_plans(tmp_path: Path) -> None:
    assert GOLD is not None
    sheet = tmp_path / "movies.tsv"
    sheet.write_text(f"name\tpath\tgroup\ngold\t{GOLD}\tgrowth\n")
    ov = overlay(tmp_path, f"movies:\n  sheet: {sheet}\n  synthetic: false\n")
    out = snakemake("-n", configs=(SMOKE, ov), results=tmp_path / "res")
    assert out.returncode == 0, out.stderr[-2000:]
    counts = job_counts(out.stdout)
    assert counts["apply_prepare"] == 1 and counts["apply_gather"] == 1


def test_bad_sheet_row_fails_before_any_job(tmp_path: Path) -> None:
    sheet = _two_movies(tmp_path)
    sheet.write_text(sheet.read_text() + "lost\tnowhere/run3.dm4\t\t\t\n")
    ov = overlay(tmp_path, f"movies:\n  sheet: {sheet}\n")
    res = tmp_path / "res"
    out = snakemake("--cores", "1", configs=(SMOKE, ov), results=res)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    line = f"movie sheet {sheet}: line 4, column path: no such file or folder 'nowhere/run3.dm4'"
    assert line in text
    assert [ln for ln in text.splitlines() if "nowhere/run3.dm4" in ln] == [line]
    assert "Traceback" not in text
    assert not res.exists()  # nothing ran


def test_hostile_results_dir_is_quoted_and_executes_nothing(tmp_path: Path) -> None:
    res = tmp_path / "a b;touch X"
    out = snakemake("-n", "-p", results=res, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"'{res}/config/apply.yaml'" in out.stdout  # every path quoted as one word
    assert not res.exists()
    for where in (ROOT, tmp_path, Path.cwd()):
        assert not (where / "X").exists()


def test_every_shell_path_is_quoted() -> None:
    """Any {input...}/{output...}/{log...}/{params...}/{wildcards...} in a rule's shell
    command must end in :q (a path with a space or ';' stays one word)."""
    bad = []
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")) + [ROOT / "Snakefile"]:
        text = smk.read_text()
        for m in re.finditer(r"^(\s*)shell:\s*\n((?:\1\s+.*\n|\s*\n)+)", text, flags=re.MULTILINE):
            for ref in re.findall(r"(?<!\{)\{((?:input|output|log|params|wildcards)[^{}]*)\}",
                                  m.group(2)):
                if not ref.endswith(":q"):
                    bad.append(f"{smk.name}: {{{ref}}}")
    assert not bad, bad
    # the check itself sees an unquoted reference
    sample = 'rule x:\n    shell:\n        "cat {input} > {output:q}"\n'
    m = re.search(r"^(\s*)shell:\s*\n((?:\1\s+.*\n|\s*\n)+)", sample, flags=re.MULTILINE)
    assert m and re.findall(r"(?<!\{)\{((?:input|output|log|params|wildcards)[^{}]*)\}",
                            m.group(2)) == ["input", "output:q"]
