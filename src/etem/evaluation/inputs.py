"""Inputs of the benchmark: the test images of a campaign (split by structure and by held-out
microscope condition) and the synthetic movie."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from etem.data.splits import assign_splits, condition_label
from etem.errors import InputError
from etem.io import read_table
from etem.seeding import rng

#: splits the benchmark evaluates: in-distribution test structures, held-out structures
#: (seen conditions) and held-out microscope conditions (any structure)
EVALUATED_SPLITS = ("test", "held_out", "held_out_condition")


@dataclass
class TestImage:
    """A clean test image with its labels and parameters."""

    image_id: str
    clean: np.ndarray
    class_map: np.ndarray | None
    params: dict[str, Any]
    occupancy: dict[str, np.ndarray] = field(default_factory=dict)

def load_test_images(index_path: str | Path, cfg: Any) -> list[TestImage]:
    """Test, held-out-structure and held-out-condition images of the campaign, capped
    deterministically (see :mod:`etem.data.splits`); ``params["condition"]`` names the
    held-out condition band of an image (empty if none)."""
    index_path = Path(index_path)
    idx = split_index(index_path, cfg)
    sel = idx[idx["split"].isin(list(EVALUATED_SPLITS))].sort_values("image_id")
    if sel.empty:
        raise InputError(f"image index {index_path}: no test, held-out or held-out-condition "
                         "images")
    return _read_images(index_path, _capped(sel, cfg, "select"))


def load_train_images(index_path: str | Path, cfg: Any) -> list[TestImage]:
    """Training-split images of the campaign (at most
    ``evaluation.occupancy_baseline_train_images``, drawn from the seed; none if there are
    none): the calibration set of the intensity baseline of
    :mod:`etem.evaluation.segmentation`."""
    index_path = Path(index_path)
    idx = split_index(index_path, cfg)
    sel = idx[idx["split"] == "train"].sort_values("image_id")
    return _read_images(index_path, _capped(
        sel, cfg, "select_train", cap=cfg.evaluation.occupancy_baseline_train_images))


def load_code_path_images(
    index_path: str | Path, cfg: Any, name: str, campaign_index: str | Path,
) -> list[TestImage]:
    """The images of code path ``name`` (``evaluation.code_paths``; index written by
    ``etem simulate-code-path``), all with ``split = "code_path"`` and ``condition = name``.

    Their structures must never have been trained on: InputError if one has a train or
    validation image in ``campaign_index`` (the campaign's image index).
    """
    cfg.evaluation.code_path(name)  # ConfigError if not configured
    index_path = Path(index_path)
    idx = _read_index(index_path)
    if idx.empty:
        raise InputError(f"code path {name}: image index {index_path} has no images")
    campaign = split_index(Path(campaign_index), cfg)
    trained = set(campaign.loc[campaign["split"].isin(["train", "val"]), "structure_id"]
                  .astype(str))
    seen = sorted(set(idx["structure_id"].astype(str)) & trained)
    if seen:
        raise InputError(f"code path {name}: image index {index_path} holds structures trained "
                         f"on ({', '.join(seen[:5])}); simulate it for this campaign with "
                         "etem simulate-code-path")
    idx["split"] = "code_path"
    idx["condition"] = name
    return _read_images(index_path, _capped(idx.sort_values("image_id"), cfg, "select", name))


def split_index(index_path: Path, cfg: Any) -> pd.DataFrame:
    """The image index with its ``split`` and held-out ``condition`` per image."""
    idx = _with_manifest_columns(_read_index(index_path), index_path, cfg)
    idx["split"] = _splits(idx, cfg)
    bands = list(cfg.training.split.held_out_conditions)
    idx["condition"] = [condition_label(r, bands) for r in idx.to_dict("records")]
    return idx


def _read_index(index_path: Path) -> pd.DataFrame:
    if not index_path.exists():
        raise InputError(f"image index {index_path}: no such file")
    idx = read_table(index_path)
    for col in ("image_id", "structure_id", "shard", "index_in_shard", "pixel_size_A"):
        if col not in idx.columns:
            raise InputError(f"image index {index_path}: missing column {col!r}")
    return idx


def _capped(sel: pd.DataFrame, cfg: Any, *key: str, cap: int | None = None) -> pd.DataFrame:
    """At most ``cap`` (default ``evaluation.max_test_images``) rows, drawn from the seed and
    ``key``."""
    cap = cfg.evaluation.max_test_images if cap is None else cap
    if len(sel) > cap:
        pick = np.sort(rng(cfg.seed, "benchmark", *key).choice(len(sel), cap, replace=False))
        sel = sel.iloc[pick]
    return sel


def _read_images(index_path: Path, sel: pd.DataFrame) -> list[TestImage]:
    """The clean images, labels and parameters of the index rows ``sel``."""
    out: list[TestImage] = []
    handles: dict[str, Any] = {}
    try:
        row: Any
        for row in sel.itertuples(index=False):
            shard = str((index_path.parent / str(row.shard)).resolve())
            if shard not in handles:
                if not Path(shard).exists():
                    raise InputError(f"image shard {shard}: no such file")
                handles[shard] = h5py.File(shard, "r")
            fh = handles[shard]
            i = int(row.index_in_shard)
            clean = np.asarray(fh["clean"][i], dtype=np.float64)
            cls = np.asarray(fh["labels/class"][i]) if "labels/class" in fh else None
            params = row._asdict()
            occ = {k: np.asarray(fh[f"labels/{k}"][i], dtype=np.float64)
                   for k in ("cation_occupancy", "anion_occupancy") if f"labels/{k}" in fh}
            out.append(TestImage(str(row.image_id), clean, cls, params, occ))
    finally:
        for fh in handles.values():
            fh.close()
    return out


def _with_manifest_columns(idx: pd.DataFrame, index_path: Path, cfg: Any) -> pd.DataFrame:
    """Add held-out columns (e.g. ``particle_shape``) from the structures manifest if absent.

    The manifest is looked up where the results layout puts it
    (``<results>/structures/manifest.csv`` beside ``<results>/simulation/index.csv``).
    """
    idx = idx.copy()
    need = [c for c in cfg.training.split.held_out if c not in idx.columns]
    man_p = index_path.parent.parent / "structures" / "manifest.csv"
    if not need or not man_p.exists():
        return idx
    man = read_table(man_p)
    cols = [c for c in need if c in man.columns]
    if not cols or "structure_id" not in man.columns:
        return idx
    extra = man[["structure_id", *cols]].drop_duplicates("structure_id")
    extra["structure_id"] = extra["structure_id"].astype(str)
    idx["structure_id"] = idx["structure_id"].astype(str)
    return idx.merge(extra, on="structure_id", how="left")


def _splits(idx: pd.DataFrame, cfg: Any) -> pd.Series:
    return assign_splits(idx, cfg.training.split, cfg.seed)


def read_movie(path: str | Path) -> dict[str, Any]:
    """Synthetic movie HDF5 (``etem.simulation.contract.MOVIE_LAYOUT``).

    Returns ``frames`` (counts), ``clean`` (intensity, vacuum = 1, or None),
    ``dose_e_per_px`` (per frame) and ``static_frames``: frames before the first event
    (the static stretch used for uMSE).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"movie {p}: no such file")
    with h5py.File(p, "r") as fh:
        if "frames" not in fh:
            raise InputError(f"movie {p}: no /frames dataset")
        frames = np.asarray(fh["frames"][:], dtype=np.float64)
        clean = np.asarray(fh["clean"][:], dtype=np.float64) if "clean" in fh else None
        events = np.asarray(fh["events"][:], dtype=np.int64) if "events" in fh else np.zeros(0)
        dose = None
        for obj in (fh, fh["frames"]):
            if dose is None and "dose_e_per_px_per_frame" in obj.attrs:
                dose = float(np.asarray(obj.attrs["dose_e_per_px_per_frame"]))
    if dose is None or not dose > 0:
        raise InputError(f"movie {p}: no positive dose_e_per_px_per_frame attribute")
    if clean is not None:
        clean = clean / dose  # the contract stores expected counts
    static = int(events.min()) if len(events) else frames.shape[0]
    return {"frames": frames, "clean": clean, "dose_e_per_px": dose,
            "static_frames": max(min(static, frames.shape[0]), 0)}

