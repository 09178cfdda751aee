"""etem: quantitative in situ environmental TEM.

Simulated training data (ASE + abTEM), denoising and occupancy networks (PyTorch),
benchmarks and application to experimental movies, orchestrated by Snakemake and
tracked in MLflow. All logic lives in this package; the workflow only calls the CLI.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

#: The Python API (etem.api), loaded on first use so that ``import etem`` stays light.
_API = ("apply_movie", "load_model", "open_movie")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        # lazy (PEP 562): `import etem` and the CLI stay light; etem.api is the top layer
        return getattr(importlib.import_module("etem.api"), name)
    raise AttributeError(f"module 'etem' has no attribute {name!r}")
