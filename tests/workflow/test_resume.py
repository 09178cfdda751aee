"""kill -9 of a running campaign, then the same command: it resumes, and the files are the
same bytes as an uninterrupted run's (but the lineage and timing files of VARYING_OUTPUTS);
`etem check` then passes, and names each kind of damage done to a finished campaign."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

import etem
from etem.io import TMP_MARK, host_tag
from etem.paths import VARYING_OUTPUTS
from etem.provenance import git_commit

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return env


def _campaign(work: Path) -> subprocess.Popen[bytes]:
    """`etem run` of the smoke campaign in ``work`` (its own process group, to kill whole)."""
    cmd = [str(BIN / "etem"), "run", "--cores", "2", "-s", str(ROOT / "Snakefile"),
           "--configfile", str(ROOT / "config" / "smoke.yaml"),
           "--config", f"results_dir={work / 'results'}", "-d", str(work)]
    with open(work.parent / f"{work.name}.log", "ab") as log:  # the child keeps its copy
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                                start_new_session=True)


def _running(results: Path) -> bool:
    """Whether a stage run is RUNNING in the campaign's sqlite store (read-only look)."""
    db = results / "mlflow.db"
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            (n,) = con.execute(
                "select count(*) from runs where status = 'RUNNING' and run_uuid in "
                "(select run_uuid from tags where key = 'etem.role' and value = 'stage')"
            ).fetchone()
    except sqlite3.Error:  # being written: look again
        return False
    return bool(n)


def _digests(results: Path) -> dict[str, str]:
    varying: set[Path] = set()
    for pattern in VARYING_OUTPUTS:  # before Python 3.13 a trailing ** matches folders only
        for p in results.glob(pattern):
            varying.update([p, *p.rglob("*")] if p.is_dir() else [p])
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file() and p not in varying}


def _code() -> tuple[str, str]:
    """The commit every output records (provenance) and a digest of the code the jobs run
    (the etem package they import, the Snakefile and its rules), as a fresh job sees them."""
    h = hashlib.sha256()
    files = [*Path(etem.__file__).parent.rglob("*.py"), ROOT / "Snakefile",
             *(ROOT / "workflow").rglob("*.smk")]
    for p in sorted(files):
        h.update(str(p).encode() + b"\0" + p.read_bytes())
    return git_commit.__wrapped__(), h.hexdigest()[:16]


def _check(results: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "etem"), "check", "--config", str(ROOT / "config" / "smoke.yaml"),
         "--set", f"results_dir={results}"],
        capture_output=True, text=True, env=_env(), timeout=300, check=False)


def test_killed_campaign_resumes_with_the_same_command_to_identical_files(
        tmp_path: Path) -> None:
    code = _code()
    work = tmp_path / "w"
    work.mkdir()
    assert _campaign(work).wait(timeout=1500) == 0, (tmp_path / "w.log").read_text()[-3000:]
    work.rename(tmp_path / "a")  # the uninterrupted run (same paths while it ran)
    work.mkdir()
    results = work / "results"

    run = _campaign(work)
    deadline = time.monotonic() + 900
    # kill once a simulation shard is written and a stage job is inside its MLflow run
    while not (list((results / "simulation").glob("shard_*.h5")) and _running(results)):
        assert run.poll() is None and time.monotonic() < deadline, "no shard was written"
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # the whole tree: Snakemake and its jobs
    run.wait()
    assert any((work / ".snakemake" / "locks").iterdir())  # the dead run's lock is left
    assert not (results / "report" / "report.html").exists()

    again = _campaign(work)  # the same command
    assert again.wait(timeout=1500) == 0, (tmp_path / "w.log").read_text()[-3000:]
    assert "removing the lock left by an interrupted run" in (tmp_path / "w.log").read_text()
    assert not list(results.rglob(f"*{TMP_MARK}*"))
    client = mlflow.MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    exps = [e.experiment_id for e in client.search_experiments()]
    status = [r.info.status for r in client.search_runs(exps, max_results=1000)]
    assert "RUNNING" not in status and "KILLED" in status
    checked = _check(results)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # a commit or an edit of the tree under test while the campaigns ran changes the outputs
    # (each records its commit) for a reason that is no resume bug: say so instead
    assert _code() == code, (f"the code under test changed while the test ran ({code} -> "
                             f"{_code()}: commit, code digest): rerun it on a quiet tree")
    a, b = _digests(tmp_path / "a" / "results"), _digests(results)
    assert sorted(a) == sorted(b)
    differ = [k for k in a if a[k] != b[k]]
    assert differ == [], f"{len(differ)} files differ: {differ}"  # outside VARYING_OUTPUTS

    # damage that `etem check` must name, one line each
    (results / "apply" / "synthetic" / "results.h5").unlink()
    (results / "apply" / "synthetic" / "columns.parquet").write_bytes(b"PAR1 truncated")
    (results / "evaluation" / "per_image.parquet").unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (results / "models" / f".denoiser.pt{TMP_MARK}{host_tag()}-{dead}-x.tmp").write_bytes(b"")
    client.create_run(exps[0], tags={"etem.role": "stage", "etem.stage": "apply"})
    checked = _check(results)
    out = checked.stdout + checked.stderr
    assert checked.returncode != 0
    for text in ("results.h5: missing", "columns.parquet: unreadable", "per_image.parquet",
                 "temporary file(s) of killed jobs", "still RUNNING (apply)"):
        assert text in out, out
