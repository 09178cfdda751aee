"""PyTorch datasets streaming from the HDF5 image shards and from movies.

Every sample is addressed by a key ``(step, j)`` (``j``-th patch of optimizer step ``step``);
its image, crop, dihedral transform, dose and noise all derive from
``etem.seeding.rng(seed, purpose, step, j)``. Batches are therefore identical whatever the
number of workers, and a resumed run sees exactly the data an uninterrupted one would
(no sampler state to checkpoint). Validation samples use keys ``(-1, k)``: a fixed image,
centre crop and dose (doses spread log-uniformly over the range).

HDF5 files are opened lazily, once per process (safe with DataLoader workers), and only
the crop is read from disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from etem.data.augment import dihedral, erase_disc
from etem.data.inputs import network_input
from etem.data.noise import log_uniform
from etem.errors import InputError
from etem.frames.breaks import segment_window
from etem.io import read_table
from etem.seeding import rng as seeded_rng
from etem.simulation.noise import apply_dose, row_dqe

VAL_STEP = -1


def read_index(index_path: str | os.PathLike[str], manifest_path: str | None = None) -> Any:
    """The image index with absolute shard paths (column ``shard_path``).

    Manifest columns (e.g. ``particle_shape``) are merged by ``structure_id`` when a structures
    manifest is given or found at ``<results>/structures/manifest.csv`` beside the index folder.
    """

    index_path = Path(index_path)
    df = read_table(index_path)
    need = {"structure_id", "family", "pixel_size_A", "shard", "index_in_shard"}
    missing = need - set(df.columns)
    if missing:
        raise InputError(f"index {index_path}: missing columns {sorted(missing)}")
    if len(df) == 0:
        raise InputError(f"index {index_path}: no images")
    df = df.copy()
    df["structure_id"] = df["structure_id"].astype(str)
    df["shard_path"] = [str((index_path.parent / s).resolve()) for s in df["shard"]]
    default = index_path.parent.parent / "structures" / "manifest.csv"
    mpath = Path(manifest_path) if manifest_path else default
    if mpath.exists():
        man = read_table(mpath)
        if "structure_id" in man.columns:
            man = man.copy()
            man["structure_id"] = man["structure_id"].astype(str)
            extra = [c for c in man.columns if c not in df.columns]
            df = df.merge(man[["structure_id", *extra]], on="structure_id", how="left")
    elif manifest_path:
        raise InputError(f"structures manifest {mpath}: no such file")
    return df


class _ShardFiles:
    """h5py files opened on first use, per process (re-opened after a fork); ``what`` names
    the files in the error of one that cannot be opened."""

    def __init__(self, what: str = "image shard") -> None:
        self._pid = -1
        self._files: dict[str, Any] = {}
        self.what = what

    def get(self, path: str) -> Any:
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(path)
        if f is None:
            try:
                f = h5py.File(path, "r")
            except (OSError, FileNotFoundError) as exc:
                raise InputError(f"{self.what} {path}: cannot open ({exc})") from None
            self._files[path] = f
        return f

    def __getstate__(self) -> dict[str, Any]:
        return {"_pid": -1, "_files": {}, "what": self.what}


class H5Frames:
    """A (T, H, W) dataset of an HDF5 file read per slice (``frames[t, ys, xs]`` reads that
    crop only), e.g. the ``/frames`` and ``/clean`` of etem's movies beyond the memory budget.

    The file is opened on first read in each process (a DataLoader worker, forked or spawned,
    opens its own: h5py handles do not survive a fork) and the object pickles without it.
    """

    def __init__(self, path: str | os.PathLike[str], name: str) -> None:
        self.path = str(path)
        self.name = name
        self._files = _ShardFiles("movie")
        ds = self._files.get(self.path)[name]
        self.shape = tuple(int(s) for s in ds.shape)
        self.dtype = ds.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._files.get(self.path)[self.name][key])


class ImagePatchDataset:
    """Noisy/clean (denoiser) or noisy/labels (segmenter) patches from the image shards.

    Parameters
    ----------
    index : pandas.DataFrame
        Rows of the images to draw from (from :func:`read_index`, already split/filtered).
    task : {'denoiser', 'segmenter'}
    patch_px : int
        Training crop [px] (validation uses ``val_patch_px``).
    dose_range_e_per_A2 : (float, float)
        Training doses [e/Å²], drawn log-uniformly.
    seed : int
        Root seed.
    dose_conditioned : bool
        Add the noise-level channel to the input.
    max_occupancy : int
        Segmenter: occupancy labels are clipped to 0..max_occupancy.
    val_patch_px : int
        Validation centre-crop size [px].
    prefilter : str
        Denoiser: the classical estimate given as the first input channel
        (:mod:`etem.data.inputs`); its noise is drawn on the whole image, then cropped.
    erase_probability, erase_radius_A : float, (float, float)
        Denoiser: the fraction of samples whose clean image has the columns of a disc
        (radius [Å] uniform in the range, centre in the crop) removed before the noise
        (:func:`etem.data.augment.erase_disc`); training samples only (validation scores
        the simulated images as they are).
    """

    def __init__(
        self,
        index: Any,
        task: str,
        patch_px: int,
        dose_range_e_per_A2: tuple[float, float],
        seed: int,
        dose_conditioned: bool = False,
        max_occupancy: int = 12,
        val_patch_px: int = 128,
        purpose: str = "train",
        read_noise_e: float = 0.0,
        gain: float = 1.0,
        prefilter: str = "none",
        erase_probability: float = 0.0,
        erase_radius_A: tuple[float, float] = (3.0, 12.0),
    ) -> None:
        if len(index) == 0:
            raise InputError(f"no images for the {task} {purpose} set")
        self.rows = index.reset_index(drop=True)
        self.task = task
        self.patch_px = int(patch_px)
        self.val_patch_px = int(val_patch_px)
        self.dose_range = (float(dose_range_e_per_A2[0]), float(dose_range_e_per_A2[1]))
        self.seed = int(seed)
        self.dose_conditioned = dose_conditioned
        self.max_occupancy = int(max_occupancy)
        self.purpose = purpose
        self.read_noise_e = float(read_noise_e)
        self.gain = float(gain)
        self.prefilter = prefilter
        self.erase_probability = float(erase_probability)
        self.erase_radius_A = (float(erase_radius_A[0]), float(erase_radius_A[1]))
        #: validation samples, their doses spread over the range (set by the task)
        self.n_val = 1
        self._files = _ShardFiles()
        self._shape: tuple[int, int] | None = None

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the images [px]."""
        if self._shape is None:
            row = self.rows.iloc[0]
            shp = self._files.get(row["shard_path"])["clean"].shape
            self._shape = (int(shp[1]), int(shp[2]))
        return self._shape

    def __len__(self) -> int:
        return len(self.rows)

    def _erased_disc(self, step: int, j: int, pixel_A: float,
                     crop_px: int) -> tuple[float, float, float] | None:
        """The erased disc of sample ``(step, j)`` (``erase_probability``): (y, x) [px] of
        its centre in the crop and its radius [px]; None for most samples. Drawn from a
        stream of its own, so the other draws of a sample do not depend on it."""
        if self.erase_probability <= 0:
            return None
        g = seeded_rng(self.seed, self.purpose, "erase", step, j)
        if g.random() >= self.erase_probability:
            return None
        lo, hi = self.erase_radius_A
        cy, cx = g.uniform(0, crop_px, 2)
        return float(cy), float(cx), float(g.uniform(lo, hi)) / pixel_A

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        step, j = key
        h, w = self.image_shape
        if step == VAL_STEP:
            r = seeded_rng(self.seed, self.purpose, "val", j)
            pos = j % len(self.rows)
            p = min(self.val_patch_px, h, w)
            y0, x0, k = (h - p) // 2, (w - p) // 2, 0
            n = max(1, self.n_val)
            lo, hi = self.dose_range
            dose = float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * ((j % n) + 0.5) / n))
        else:
            r = seeded_rng(self.seed, self.purpose, step, j)
            pos = int(r.integers(len(self.rows)))
            p = min(self.patch_px, h, w)
            y0, x0 = int(r.integers(h - p + 1)), int(r.integers(w - p + 1))
            k = int(r.integers(8))
            dose = log_uniform(r, *self.dose_range)
        row = self.rows.iloc[pos]
        f = self._files.get(row["shard_path"])
        i = int(row["index_in_shard"])
        sl = (i, slice(y0, y0 + p), slice(x0, x0 + p))
        px = float(row["pixel_size_A"])
        dose_px = dose * px**2
        dqe = row_dqe(row)
        erase = (self._erased_disc(step, j, px, p)
                 if self.task == "denoiser" and step != VAL_STEP else None)
        # only the crop is read, noised and fed; a prefilter sees the whole frame, as at
        # inference: the whole image is read and noised, then the input cropped
        whole = self.prefilter != "none"
        oy, ox = (y0, x0) if whole else (0, 0)
        img = np.asarray(f["clean"][i] if whole else f["clean"][sl], dtype=np.float32)
        if erase is not None:
            img = erase_disc(img, (oy + erase[0], ox + erase[1]), erase[2], px)
        counts = apply_dose(img, dose, px, r, self.read_noise_e, self.gain, dqe)
        crop = (slice(oy, oy + p), slice(ox, ox + p))
        x = network_input(counts, dose_px, self.dose_conditioned, self.prefilter, dqe,
                          self.gain)[:, crop[0], crop[1]]
        clean = img[crop]
        out: dict[str, Any] = {
            "input": dihedral(x, k),
            "dose_e_per_px": np.float32(dose_px),
        }
        if self.task == "denoiser":
            out["target"] = dihedral(clean[None], k)
        else:
            lab = f["labels"]
            out["class"] = dihedral(np.asarray(lab["class"][sl], dtype=np.int64), k)
            for name in ("cation", "anion"):
                occ = np.asarray(lab[f"{name}_occupancy"][sl], dtype=np.float32)
                occ = np.clip(np.rint(occ), 0, self.max_occupancy).astype(np.int64)
                out[name] = dihedral(occ, k)
        return out


class MoviePatchDataset:
    """Windows of ``n_frames`` consecutive frames of a noisy movie (blind-spot training).

    The input is the window (reflected at the movie ends) normalised by ``scale`` [e/px]; the
    target is the noisy middle frame (same normalisation). ``clean`` (optional, synthetic
    movies) gives validation ground truth, rescaled to mean 1 like the normalised frames.
    """

    def __init__(
        self,
        frames: Any,
        n_frames: int,
        patch_px: int,
        scale_e_per_px: float,
        seed: int,
        clean: Any = None,
        val_patch_px: int = 128,
        purpose: str = "train",
    ) -> None:
        if len(frames.shape) != 3:
            raise InputError(f"movie frames must be (T, H, W), got shape {tuple(frames.shape)}")
        if frames.shape[0] < n_frames:
            raise InputError(f"movie has {frames.shape[0]} frames, the network needs {n_frames}")
        self.frames = frames
        self.clean = clean
        self.n_frames = n_frames
        self.patch_px = patch_px
        self.val_patch_px = val_patch_px
        self.scale = float(scale_e_per_px)
        self.seed = seed
        self.purpose = purpose
        self.n_val = 1  # validation samples spread over the movie (set by the task)
        #: the frames a training sample's centre (target) frame is drawn from; None: all
        #: (:meth:`hold_out`)
        self._targets: np.ndarray | None = None
        #: frames whose validation crop no training target may cover (:meth:`hold_out`)
        self._held: frozenset[int] = frozenset()
        #: the patch corners beside the crop: rows outside it (any column), then rows inside
        #: it with columns outside (:meth:`_corner_outside`; set by :meth:`hold_out`)
        self._beside: tuple[np.ndarray, np.ndarray, np.ndarray, int] | None = None
        self.clean_factor = 1.0
        if clean is not None:  # clean in its own units -> the units of the normalised frames
            m = min(int(frames.shape[0]), 8)
            f_mean = float(np.mean(np.asarray(frames[:m], dtype=np.float64)))
            c_mean = float(np.mean(np.asarray(clean[:m], dtype=np.float64)))
            self.clean_factor = f_mean / (max(c_mean, 1e-12) * self.scale)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def _val_frame(self, j: int, n: int) -> int:
        """The centre frame of validation sample ``j`` of ``n`` (spread over the movie)."""
        return int((j % n + 0.5) * int(self.frames.shape[0]) / n)

    def val_frames(self, n: int, used: int | None = None) -> list[int]:
        """The centre frames of validation samples ``0 .. used - 1`` (all ``n`` by default)
        of ``n`` (``n_val`` = n; :meth:`__getitem__`)."""
        n = max(1, int(n))
        return sorted({self._val_frame(j, n) for j in range(n if used is None else used)})

    def hold_out(self, frames: list[int], whole_frames: bool = False) -> bool:
        """Never train on the validation pixels of ``frames``: the noisy pixels of their
        validation crops (the centre ``val_patch_px`` square) are what the validation loss
        is measured against, and a network that learned their noise as targets would see its
        loss fall while its true error rose. A training sample centred on one of ``frames``
        takes its patch outside that crop (:meth:`_corner_outside`); a frame with no patch
        position outside it (a side under ``val_patch_px + 2 patch_px``, about), or every one
        of ``frames`` with ``whole_frames``, is not drawn at all. Every frame held out whole is
        refused (nothing would be left to train on). Returns whether they are held out whole."""
        _, h, w = (int(s) for s in self.frames.shape)
        rows, cols = self._outside(h, w)
        nx = w - min(self.patch_px, h, w) + 1
        other_rows = np.setdiff1d(np.arange(h - min(self.patch_px, h, w) + 1), rows)
        self._beside = (rows, other_rows, cols, nx)
        fits = (rows.size or cols.size) and not whole_frames
        whole = [] if fits else sorted({int(t) for t in frames})
        keep = np.setdiff1d(np.arange(int(self.frames.shape[0])), np.asarray(whole, dtype=int))
        if keep.size == 0:
            raise InputError(f"holding out frames {sorted(frames)} leaves no training frame")
        self._targets = keep if whole else None
        self._held = frozenset(int(t) for t in frames) - frozenset(whole)
        return bool(whole)

    def _outside(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Training-patch corners whose rows (``rows``: y0) or columns (``cols``: x0) miss
        those of the validation crop of an (``h``, ``w``) frame."""
        p, v = min(self.patch_px, h, w), min(self.val_patch_px, h, w)
        out = []
        for n in (h, w):
            c = np.arange(n - p + 1)
            lo = (n - v) // 2
            out.append(c[(c + p <= lo) | (c >= lo + v)])
        return out[0], out[1]

    def _corner_outside(self, r: np.random.Generator) -> tuple[int, int]:
        """A training-patch corner (y0, x0) drawn uniformly among those whose patch misses the
        validation crop (rows or columns outside it; the sets :meth:`hold_out` computed)."""
        assert self._beside is not None, "hold_out sets the corners beside the crop"
        rows, other_rows, cols, nx = self._beside
        k = int(r.integers(rows.size * nx + other_rows.size * cols.size))
        if k < rows.size * nx:  # rows outside, any column
            return int(rows[k // nx]), k % nx
        k -= rows.size * nx  # rows inside, columns outside
        return int(other_rows[k // cols.size]), int(cols[k % cols.size])

    def window(self, t: int) -> list[int]:
        """Frame indices centred on ``t``, reflected at the movie ends."""
        return segment_window(t, self.n_frames, (), int(self.frames.shape[0]))

    def _crop(self, i: int, ys: slice, xs: slice) -> np.ndarray:
        """Frame ``i`` cropped to (``ys``, ``xs``), as float32 (in-memory, HDF5 or a reader's
        lazy stack, which indexes along T only and reads the frame)."""
        if isinstance(self.frames, np.ndarray | h5py.Dataset | H5Frames):
            return np.asarray(self.frames[i, ys, xs], dtype=np.float32)
        return np.asarray(self.frames[i], dtype=np.float32)[ys, xs]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        step, j = key
        t_all, h, w = (int(s) for s in self.frames.shape)
        if step == VAL_STEP:
            p = min(self.val_patch_px, h, w)
            t = self._val_frame(j, max(1, self.n_val))
            y0, x0, k = (h - p) // 2, (w - p) // 2, 0
        else:
            r = seeded_rng(self.seed, self.purpose, step, j)
            p = min(self.patch_px, h, w)
            if self._targets is None:
                t = int(r.integers(t_all))
            else:
                t = int(self._targets[int(r.integers(self._targets.size))])
            if t in self._held:
                y0, x0 = self._corner_outside(r)
            else:
                y0, x0 = int(r.integers(h - p + 1)), int(r.integers(w - p + 1))
            k = int(r.integers(8))
        ys, xs = slice(y0, y0 + p), slice(x0, x0 + p)
        stack = np.stack([self._crop(i, ys, xs) for i in self.window(t)])
        x = dihedral(stack / self.scale, k)
        out: dict[str, Any] = {"input": x, "target": x[self.n_frames // 2][None].copy(),
                               "scale": np.full((1, 1, 1), self.scale, np.float32)}
        if self.clean is not None:
            c = np.asarray(self.clean[t, ys, xs], dtype=np.float32) * self.clean_factor
            out["clean"] = dihedral(c[None], k)
        return out


class MovieGroupDataset:
    """Patches of several movies (one group: movies of one condition), streamed.

    Each movie is a :class:`MoviePatchDataset` over its own frames, normalised by its own
    dose; frames are read per patch (lazy readers keep memory bounded whatever the movies'
    lengths). A training sample comes from movie ``i`` with probability proportional to its
    frame count, drawn from the seed, step and slot; validation samples cycle over the movies.

    Clean frames (etem's synthetic HDF5 movies; experiment movies have none) serve validation
    only: training samples carry none, so the movies of a group mix freely. When any movie has
    them, every validation sample carries ``has_clean`` (bool) and ``clean`` (NaN for the
    movies without), so a batch stacks and the PSNR is taken on the samples that have them.
    """

    def __init__(self, parts: list[MoviePatchDataset], seed: int, purpose: str) -> None:
        if not parts:
            raise InputError("a movie group needs at least one movie")
        self.parts = parts
        self.seed = seed
        self.purpose = purpose
        frames = np.array([len(p) for p in parts], dtype=np.float64)
        self.cumulative = np.cumsum(frames) / frames.sum()
        self.n_val = 1
        self.any_clean = any(p.clean is not None for p in parts)

    def __len__(self) -> int:
        return int(sum(len(p) for p in self.parts))

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        step, j = key
        if step == VAL_STEP:
            n = len(self.parts)
            part = self.parts[j % n]
            part.n_val = -(-self.n_val // n)
            sample = part[(VAL_STEP, j // n)]
            if self.any_clean:
                sample["has_clean"] = np.array(part.clean is not None)
                sample.setdefault("clean", np.full_like(sample["target"], np.nan))
            return sample
        r = seeded_rng(self.seed, self.purpose, "movie", step, j)
        i = min(int(np.searchsorted(self.cumulative, r.random(), side="right")),
                len(self.parts) - 1)
        sample = self.parts[i][key]
        sample.pop("clean", None)  # validation only
        return sample


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of samples into a batch of torch tensors."""

    return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}


class StepBatches:
    """Batch sampler: lists of keys ``(step, j)`` for steps ``start..stop-1``."""

    def __init__(self, start: int, stop: int, batch_size: int) -> None:
        self.start, self.stop, self.batch_size = start, stop, batch_size

    def __iter__(self) -> Any:
        for s in range(self.start, self.stop):
            yield [(s, j) for j in range(self.batch_size)]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)
