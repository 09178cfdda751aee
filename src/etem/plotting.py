"""Matplotlib for etem's figures: the non-interactive Agg backend and one way to save PNGs.

Every module that draws imports ``plt`` from here, so figures render the same on a laptop,
a headless cluster node and CI, and PNG files carry no timestamp (byte-identical reruns).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from etem.io import atomic_path

__all__ = ["plt", "save_png"]


def save_png(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG atomically (no timestamp or software metadata); closes it."""
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png", metadata={"Software": None})
    plt.close(fig)
    return path
