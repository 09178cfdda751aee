"""Provenance recorded in MLflow and in every output file's metadata.

Nothing here depends on time or on a random run id, so that the same config, seed and code
give byte-identical output files.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

from etem import __version__

#: Packages whose versions are recorded with every output.
TRACKED_PACKAGES = (
    "numpy", "scipy", "pandas", "h5py", "ase", "abtem", "torch", "mlflow", "snakemake",
    "scikit-image", "rosettasciio",
)


def config_hash(config_dict: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of a validated config."""
    blob = json.dumps(config_dict, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_git_head(start: Path) -> str | None:
    """HEAD commit read from the ``.git`` directory above ``start`` (no subprocess), or None."""
    for d in (start, *start.parents):
        git = d / ".git"
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref: "):
                return head or None
            ref = head[5:].strip()
            loose = git / ref
            if loose.is_file():
                return loose.read_text().strip() or None
            packed = git / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
        except OSError:
            return None
        return None
    return None


@functools.cache
def git_commit() -> str:
    """Commit of the source tree etem runs from (``ETEM_GIT_COMMIT`` overrides), or 'unknown'.

    Read from the ``.git`` directory (no subprocess, so a loaded machine cannot time it out and
    record 'unknown' in one output and the commit in another); ``git rev-parse`` is the fallback
    for worktrees and other layouts.
    """
    env = os.environ.get("ETEM_GIT_COMMIT")
    if env:
        return env
    here = Path(__file__).resolve().parent
    direct = read_git_head(here)
    if direct:
        return direct
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


@functools.cache
def package_versions() -> dict[str, str]:
    """Installed versions of :data:`TRACKED_PACKAGES` (absent ones are skipped)."""
    versions: dict[str, str] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


class Campaign(Protocol):
    """What provenance reads of the campaign config (:class:`etem.config.EtemConfig`; the
    config package sits above this module, so it is not imported here)."""

    name: str
    seed: int

    def hash(self) -> str: ...


def provenance(config: Campaign, stage: str, seed: int | None = None) -> dict[str, Any]:
    """The provenance dict of one stage output.

    Parameters
    ----------
    config : EtemConfig
        The validated campaign config.
    stage : str
        Stage name (``structures``, ``simulation``, ...).
    seed : int, optional
        The seed actually used by this output (defaults to the config seed).
    """
    return {
        "etem_version": __version__,
        "stage": stage,
        "campaign": config.name,
        "config_hash": config.hash(),
        "seed": int(config.seed if seed is None else seed),
        "git_commit": git_commit(),
        "package_versions": package_versions(),
    }
