"""Train / validation / test split by ``structure_id``, plus a held-out family.

Images of one structure never straddle splits: the split is drawn over the sorted unique
structure ids with a permutation seeded by the config seed. Rows whose manifest column
matches a ``held_out`` entry (e.g. ``particle_shape: decahedron``) form the ``held_out``
split, never seen in training (a generalisation test). Held-out structures take part in the
permutation (then are relabelled), so the other structures get the same split whether or not
the table carries the held-out columns (index alone vs index merged with the manifest).

Held-out microscope conditions (``held_out_conditions``: bands of image parameters such as
``detector_pixel_A`` or ``blur_fwhm_A``) are decided per image, after the structure split:
an image in any band is ``held_out_condition`` whatever its structure, so no held-out
condition is ever trained on, and the ``held_out`` split (unseen structures) keeps only seen
conditions. A table without a band's column (the structure manifest) has no such rows.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from etem.config.training import SplitConfig
from etem.errors import InputError
from etem.seeding import rng

log = logging.getLogger("etem.data.splits")

SPLITS = ("train", "val", "test", "held_out", "held_out_condition")


def assign_splits(df: Any, split_cfg: SplitConfig, seed: int) -> Any:
    """Split label per row, by structure.

    Parameters
    ----------
    df : pandas.DataFrame
        Image index or structure manifest; needs a ``structure_id`` column. Held-out columns
        (``split_cfg.held_out`` keys) are used where present; a missing one is logged and ignored.
    split_cfg : SplitConfig
        Fractions of structures for validation and test, and the held-out family.
    seed : int
        Root seed of the campaign.

    Returns
    -------
    pandas.Series
        ``'train' | 'val' | 'test' | 'held_out'`` per row, aligned with ``df.index``.
    """

    if "structure_id" not in df.columns:
        raise InputError("cannot split: the table has no 'structure_id' column")
    sid = df["structure_id"].astype(str)
    held = pd.Series(False, index=df.index)
    for col, value in split_cfg.held_out.items():
        if col not in df.columns:
            log.warning("held-out column %r not in the table: no held-out rows for it", col)
            continue
        held |= df[col].astype(str) == str(value)
    held_ids = set(sid[held])
    # the permutation runs over ALL structures, held-out ones included, so that the split of
    # every other structure is the same whether or not the held-out columns are known
    ids = sorted(set(sid))
    n = len(ids)
    perm = rng(seed, "split").permutation(n)
    n_test = _count(n, split_cfg.test_fraction)
    n_val = _count(n - n_test, split_cfg.val_fraction / max(1e-12, 1 - split_cfg.test_fraction))
    label: dict[str, str] = {}
    for rank, i in enumerate(perm):
        label[ids[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    for h in held_ids:
        label[h] = "held_out"
    out = pd.Series([label[s] for s in sid], index=df.index, name="split", dtype=object)
    out[held_out_condition_mask(df, getattr(split_cfg, "held_out_conditions", []))] = (
        "held_out_condition")
    return out


def held_out_condition_mask(df: Any, bands: list[Any]) -> Any:
    """Boolean Series: rows whose parameters fall in any held-out condition band."""
    mask = pd.Series(False, index=df.index)
    for band in bands:
        if band.column not in df.columns:
            continue
        v = pd.to_numeric(df[band.column], errors="coerce")
        mask |= (v >= band.low) & (v <= band.high)  # NaN (not drawn) is never in a band
    return mask


def condition_label(row: Any, bands: list[Any]) -> str:
    """The first band ``row`` (a mapping) falls in, as ``column=[low,high]``, or ''."""
    for band in bands:
        v = row.get(band.column)
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if band.low <= x <= band.high:
            return str(band.label)
    return ""


def _count(n: int, fraction: float) -> int:
    """round(n*fraction) structures, at least 1 if fraction > 0, leaving 1 for train."""
    if fraction <= 0 or n < 2:
        return 0
    return int(np.clip(round(n * fraction), 1, n - 1))
