"""The git commit recorded in every output is read from ``.git`` without a subprocess."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from etem.provenance import git_commit, read_git_head

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_loose_and_packed_refs_and_detached_head(tmp_path: Path) -> None:
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    assert read_git_head(sub) is None  # branch without a commit yet
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{SHA} refs/heads/main\n")
    assert read_git_head(sub) == SHA
    other = SHA[::-1]
    (git / "refs" / "heads" / "main").write_text(other + "\n")  # a loose ref wins
    assert read_git_head(sub) == other
    (git / "HEAD").write_text(SHA + "\n")  # detached
    assert read_git_head(sub) == SHA


def test_outside_a_repository(tmp_path: Path) -> None:
    assert read_git_head(tmp_path) is None


def test_matches_git_rev_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETEM_GIT_COMMIT", raising=False)
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, check=False)
    except OSError:
        pytest.skip("git not installed")
    if out.returncode != 0:
        pytest.skip("tests are not in a git checkout")
    assert git_commit.__wrapped__() == out.stdout.strip()
