"""Deterministic seeds: every random choice in etem derives from the config ``seed``.

``derive_seed(seed, "simulation", structure_id, 3)`` gives a stable 63-bit integer for that
purpose, identical across processes, machines and Python versions (unlike ``hash()``).
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(seed: int, *keys: object) -> int:
    """A stable integer seed for the purpose named by ``keys`` under the root ``seed``."""
    text = "/".join([str(int(seed)), *(str(k) for k in keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def rng(seed: int, *keys: object) -> np.random.Generator:
    """A numpy Generator seeded by :func:`derive_seed`."""
    return np.random.default_rng(derive_seed(seed, *keys))
