"""``etem run``: the Snakemake command line it becomes (os.execv captured, nothing runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from etem import workflow
from etem.cli import main


class _Exec(Exception):
    pass


@pytest.fixture
def execv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake(path: str, argv: list[str]) -> None:
        calls.append(list(argv))
        raise _Exec

    monkeypatch.setattr(workflow.os, "execv", fake)
    return calls


def test_run_keeps_snakemakes_own_double_dash(execv: list[list[str]], tmp_path: Path) -> None:
    """``--allowed-rules a b -- TARGET``: the "--" ends Snakemake's list option and stays;
    --rerun-incomplete goes before it (after a "--" Snakemake reads only targets)."""
    with pytest.raises(_Exec):
        main(["run", "-d", str(tmp_path), "--allowed-rules", "a", "b", "--", "t1", "t2"])
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    assert execv == [[snakemake, "--rerun-incomplete", "-d", str(tmp_path),
                      "--allowed-rules", "a", "b", "--", "t1", "t2"]]


def test_run_drops_a_leading_double_dash(execv: list[list[str]], tmp_path: Path) -> None:
    with pytest.raises(_Exec):
        main(["run", "--", "--cores", "2", "--directory", str(tmp_path), "--rerun-incomplete"])
    assert execv[0][1:] == ["--cores", "2", "--directory", str(tmp_path), "--rerun-incomplete"]
    assert (tmp_path / workflow.RUN_LOCK).exists()  # the lock taken in -d's folder


def test_a_target_after_double_dash_is_no_directory(
    execv: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(_Exec):
        main(["run", "--cores", "1", "--", "-d", "elsewhere"])
    assert (tmp_path / workflow.RUN_LOCK).exists()
