"""Fixtures that bring up real services for the cluster tests, and stop them by PID.

* :func:`slurm_cluster`: a single-node SLURM cluster via ``tests/cluster/slurm_cluster.sh``
  (installs ``slurm-wlm munge`` with apt-get when missing; needs root).
* :func:`postgres`: a PostgreSQL server (Debian ``postgresql`` package) initialised into a temp
  directory, listening on 127.0.0.1 only.
* :func:`mlflow_server`: ``etem tracking-server`` on 127.0.0.1 backed by that PostgreSQL.

When a service cannot run on this machine (not Linux, not root, no apt-get, a foreign
``/etc/slurm/slurm.conf``, no psycopg2) the tests skip with the reason; every subprocess has a
hard timeout so nothing can hang the suite.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "cluster" / "slurm_cluster.sh"
VENV_BIN = Path(sys.executable).parent


def env_with_venv(**extra: str) -> dict[str, str]:
    """The environment with the project's venv first on PATH (jobs inherit it)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SNAKEMAKE_PROFILE", None)
    env.update(extra)
    return env


def run(cmd: list[str], timeout: float, **kw: object) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with captured text output and a hard timeout."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def _skip_unless_root_linux(what: str) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip(f"{what} needs Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (daemons, system packages); run the suite as root")


_APT_UPDATED = False


def apt_install(*packages: str) -> None:
    """``apt-get install`` (one ``apt-get update`` per session); skip when impossible."""
    global _APT_UPDATED
    if shutil.which("apt-get") is None:
        pytest.skip(f"{' '.join(packages)} not installed and no apt-get on this machine")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        if not _APT_UPDATED:
            run(["apt-get", "update", "-qq"], timeout=180, env=env, check=True)
            _APT_UPDATED = True
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            timeout=300, env=env, check=True)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"apt-get install {' '.join(packages)} failed: {exc.stderr.strip()[-300:]}")
    except subprocess.TimeoutExpired:
        pytest.skip(f"apt-get install {' '.join(packages)} timed out")


# -- SLURM -----------------------------------------------------------------------------------
@dataclass
class SlurmCluster:
    """A running single-node SLURM cluster."""

    state_dir: Path
    node: str

    def squeue(self) -> list[dict[str, str]]:
        """All jobs known to slurmctld: id, name, state, comment (= Snakemake rule)."""
        out = run(["squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%k"], 20).stdout
        jobs = []
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                jobs.append(dict(zip(("id", "name", "state", "comment"), parts, strict=True)))
        return jobs

    def logs(self) -> str:
        """Tails of the daemon logs (for failure messages)."""
        text = []
        for f in sorted((self.state_dir / "log").glob("*.log")):
            text.append(f"== {f.name}\n" + "\n".join(f.read_text().splitlines()[-15:]))
        return "\n".join(text)


def slurm_cluster_fixture(tmp_root: Path) -> Iterator[SlurmCluster]:
    """Start the test cluster (state under ``tmp_root``), yield it, stop it by PID."""
    _skip_unless_root_linux("the SLURM test cluster")
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and "written by etem" not in conf.read_text(errors="replace"):
        pytest.skip(f"{conf} belongs to a real SLURM installation; not touching it")
    if not all(shutil.which(t) for t in ("slurmctld", "slurmd", "munged", "sbatch")):
        apt_install("slurm-wlm", "munge")
    state = tmp_root / "slurm"
    env = dict(os.environ, ETEM_SLURM_DIR=str(state))
    try:
        res = run(["bash", str(SCRIPT), "start"], timeout=90, env=env)
    except subprocess.TimeoutExpired:
        run(["bash", str(SCRIPT), "stop"], timeout=60, env=env)
        pytest.fail("slurm_cluster.sh start timed out")
    if res.returncode != 0:
        run(["bash", str(SCRIPT), "stop"], timeout=60, env=env)
        if "another test cluster is running" in res.stderr:
            pytest.skip(res.stderr.strip().splitlines()[-1])
        pytest.fail(f"SLURM test cluster did not start:\n{res.stderr}")
    cluster = SlurmCluster(state_dir=state, node=socket.gethostname().split(".")[0])
    try:
        yield cluster
    finally:
        res = run(["bash", str(SCRIPT), "stop"], timeout=60, env=env)
        if res.returncode != 0:
            print(f"slurm_cluster.sh stop failed: {res.stderr}", file=sys.stderr)


# -- PostgreSQL ------------------------------------------------------------------------------
@dataclass
class Postgres:
    """A running PostgreSQL server on 127.0.0.1."""

    port: int
    user: str
    database: str

    @property
    def uri(self) -> str:
        """SQLAlchemy URI of the database."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _stop_pid(proc: subprocess.Popen[bytes], sig: int, wait_s: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def postgres_fixture(tmp_root: Path) -> Iterator[Postgres]:
    """initdb into ``tmp_root``, run ``postgres`` on 127.0.0.1 as user postgres, stop it."""
    _skip_unless_root_linux("the PostgreSQL fixture")
    if _pg_bin() is None:
        apt_install("postgresql")
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no 'postgres' system user (the Debian postgresql package creates it)")
    data = tmp_root / "pgdata"
    sock = tmp_root / "pgsock"
    for d in (data, sock):
        d.mkdir(parents=True)
        shutil.chown(d, "postgres", "postgres")
    # postgres refuses to run as root, and needs to traverse tmp_root
    for parent in [tmp_root, *tmp_root.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o111)
    # run as the postgres user directly (not via runuser), so the PID we stop is postgres's
    as_pg = {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": str(data)}
    res = run([str(pg_bin / "initdb"), "-D", str(data), "-U", "etem", "--auth=trust",
               "-E", "UTF8", "--no-sync"], timeout=120, **as_pg)
    if res.returncode != 0:
        pytest.fail(f"initdb failed: {res.stderr}")
    port = free_port()
    log = tmp_root / "postgres.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(pg_bin / "postgres"), "-D", str(data), "-h", "127.0.0.1",
             "-p", str(port), "-k", str(sock), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, **as_pg,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            ok = run([str(pg_bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], 10)
            if ok.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"postgres did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        res = run([str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "etem",
                   "mlflow"], timeout=30)
        if res.returncode != 0:
            pytest.fail(f"createdb failed: {res.stderr}")
        yield Postgres(port=port, user="etem", database="mlflow")
    finally:
        # SIGINT = postgres "fast shutdown"
        _stop_pid(proc, signal.SIGINT)


# -- MLflow server ---------------------------------------------------------------------------
@dataclass
class MlflowServer:
    """A running ``etem tracking-server``."""

    uri: str
    artifact_root: Path
    log: Path


def mlflow_server_fixture(pg: Postgres, tmp_root: Path) -> Iterator[MlflowServer]:
    """``etem tracking-server`` on 127.0.0.1 with the PostgreSQL backend; stopped by PID."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 not installed (pip install psycopg2-binary): needed by MLflow "
                    "for a PostgreSQL backend store")
    port = free_port()
    art = tmp_root / "mlartifacts"
    log = tmp_root / "mlflow-server.log"
    cmd = [str(VENV_BIN / "etem"), "tracking-server", "--backend-uri", pg.uri,
           "--artifact-root", str(art), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "2"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env=env_with_venv(), start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield MlflowServer(uri=uri, artifact_root=art, log=log)
    finally:
        # the whole session: etem -> mlflow server -> uvicorn workers
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
