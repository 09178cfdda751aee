"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from etem.config import EtemConfig
from tests.configs import make_tiny_config

ROOT = Path(__file__).resolve().parents[1]

# fixture modules loaded as plugins (their helper functions are imported as tests.<module>)
pytest_plugins = ["tests.training_fixtures"]


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., EtemConfig]:
    """The tiny campaign config: ``tiny_config(results_dir, **section_overrides)``.

    See :mod:`tests.configs` (every stage small, tracking off; overrides merged key by key).
    """
    return make_tiny_config


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
