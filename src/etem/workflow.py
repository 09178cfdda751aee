"""``etem run``: run the Snakemake workflow so that the same command also resumes it.

After ``kill -9`` (or a power cut) Snakemake leaves its working-directory lock behind, and the
next ``snakemake ...`` stops with ``LockException`` until someone types ``--unlock`` and then
``--rerun-incomplete``. ``etem run <snakemake arguments>`` does both when they are safe:

* it holds an exclusive ``flock`` on ``.snakemake/etem-run.lock`` for the whole run (the
  kernel releases it when the process dies, however it dies), so two ``etem run`` in one
  folder are refused with one line;
* if Snakemake's lock is present and no Snakemake process of this folder is alive, the lock is
  stale: it runs ``snakemake --unlock`` with the same arguments and says so;
* it adds ``--rerun-incomplete`` (outputs of interrupted jobs are redone, never trusted).

Snakemake itself then resumes: finished outputs are kept, the rest re-run, and each re-run job
marks its interrupted MLflow run KILLED (:func:`etem.runs.mark_orphans`).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
from pathlib import Path

from etem.errors import InputError

#: The lock ``etem run`` holds while Snakemake runs (released by the kernel on any exit).
RUN_LOCK = Path(".snakemake") / "etem-run.lock"


def _directory(args: list[str]) -> Path:
    """The working directory Snakemake will use (``-d``/``--directory``, else the current)."""
    for i, a in enumerate(args):
        if a == "--":  # targets follow
            break
        if a in ("-d", "--directory") and i + 1 < len(args):
            return Path(args[i + 1]).resolve()
        if a.startswith("--directory="):
            return Path(a.split("=", 1)[1]).resolve()
    return Path.cwd().resolve()


def snakemake_processes(workdir: Path) -> list[int]:
    """Process ids of running Snakemake processes whose working directory is ``workdir``."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if any(b"snakemake" in part for part in cmd[:3]) and cwd == workdir:
            pids.append(pid)
    return pids


def stale_snakemake_lock(workdir: Path) -> bool:
    """Whether Snakemake's lock in ``workdir`` was left by a run that is no longer alive."""
    locks = workdir / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir()) and not snakemake_processes(workdir)


def run(args: argparse.Namespace) -> int:
    """``etem run``: Snakemake with the given arguments, resuming an interrupted run."""
    # a leading "--" only separates etem's arguments from Snakemake's; any later "--" is
    # Snakemake's own (it ends a list option: --allowed-rules a b -- TARGET)
    sm_args = list(args.snakemake_args)
    if sm_args[:1] == ["--"]:
        sm_args = sm_args[1:]
    snakemake = Path(sys.executable).with_name("snakemake")
    if not snakemake.exists():
        raise InputError(f"snakemake: not installed beside {sys.executable}")
    workdir = _directory(sm_args)
    lock_path = workdir / RUN_LOCK
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{workdir}: another `etem run` is running the workflow here "
                             "(wait for it, or stop it first)") from None
        if stale_snakemake_lock(workdir):
            print(f"etem run: {workdir}: removing the lock left by an interrupted run",
                  file=sys.stderr)
            subprocess.run([str(snakemake), "--unlock", *sm_args], check=True,
                           stdout=subprocess.DEVNULL)
        extra = [] if "--rerun-incomplete" in sm_args else ["--rerun-incomplete"]
        # become Snakemake, keeping the lock open: it is held exactly as long as the run lives
        os.set_inheritable(lock.fileno(), True)
        sys.stdout.flush()
        sys.stderr.flush()
        # options before the arguments: after a "--" Snakemake reads only targets
        os.execv(snakemake, [str(snakemake), *extra, *sm_args])
    return 1  # not reached
