"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to a user's MLflow server or the repo's results folder."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


@pytest.fixture
def repo_root() -> Path:
    """The checkout's root folder."""
    return ROOT


@pytest.fixture
def etem_bin() -> str:
    """Path of the installed ``etem`` console script (the venv's)."""
    import shutil
    import sys

    candidate = Path(sys.executable).parent / "etem"
    return str(candidate) if candidate.exists() else (shutil.which("etem") or "etem")


def pytest_report_header(config: pytest.Config) -> str:
    return f"etem tests; cores={os.cpu_count()}"
