"""Shared helpers of the movie-stage tests: tiny deterministic 'denoisers' and test movies.

The networks of the campaign are trained by the training stage; unit tests of the movie stage
need denoisers that are fast and known to work, so they use fixed linear filters wrapped as
``nn.Module`` with the attributes of the real networks (``multiple``, ``in_channels``,
``n_frames``, ``n_classes``, ``max_occupancy``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from etem.analysis.likelihood import Calibration
from etem.models.factory import build_model
from etem.models.io import LoadedModel, save_model


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = int(np.ceil(3 * sigma))
    x = np.arange(-r, r + 1)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return torch.tensor(g / g.sum(), dtype=torch.float32)[None, None]


class BlurDenoiser(nn.Module):
    """Single-frame 'denoiser': Gaussian smoothing of the normalised frame."""

    def __init__(self, sigma_px: float = 1.5, multiple: int = 4) -> None:
        super().__init__()
        self.register_buffer("k", _gauss_kernel(sigma_px))
        self.pad = self.k.shape[-1] // 2
        self.multiple = multiple
        self.in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x[:, :1], self.k.to(x.dtype), padding=self.pad)


class WindowDenoiser(BlurDenoiser):
    """Multi-frame 'denoiser': mean of the window's frames, then Gaussian smoothing."""

    def __init__(self, n_frames: int = 5, sigma_px: float = 1.5) -> None:
        super().__init__(sigma_px)
        self.n_frames = n_frames
        self.in_channels = n_frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.mean(dim=1, keepdim=True))


class ThresholdSegmenter(BlurDenoiser):
    """Segmenter-shaped module: class 1 where the smoothed frame is bright; occupancy grows
    with brightness (ordinal logits)."""

    def __init__(self, n_classes: int = 3, max_occupancy: int = 4) -> None:
        super().__init__(1.5)
        self.n_classes = n_classes
        self.max_occupancy = max_occupancy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = super().forward(x) - 1.0
        cls = [torch.zeros_like(s), 8 * (s - 0.3)] + [torch.full_like(s, -9.0)] * (
            self.n_classes - 2
        )
        ks = torch.arange(self.max_occupancy, dtype=s.dtype, device=s.device).view(1, -1, 1, 1)
        occ = 10 * (s * 4 - ks)
        return torch.cat([*cls, occ, occ], dim=1)


def blur_model(pixel_size_A: float | None = 0.2, **kw: Any) -> LoadedModel:
    return LoadedModel(
        BlurDenoiser(**kw),
        {"kind": "denoiser", "pixel_size_A": pixel_size_A},
    )


def window_model(pixel_size_A: float | None = 0.2) -> LoadedModel:
    return LoadedModel(
        WindowDenoiser(),
        {
            "kind": "unsupervised",
            "pixel_size_A": pixel_size_A,
            "n_frames": 5,
        },
    )


def segmenter_model(pixel_size_A: float | None = 0.2) -> LoadedModel:
    return LoadedModel(
        ThresholdSegmenter(),
        {"kind": "segmenter", "pixel_size_A": pixel_size_A},
    )


def write_movie_file(
    fmt: str, folder: Path, data: np.ndarray, px_A: float, dt_s: float = 0.025
) -> Path:
    """Write a (T, H, W) count stack in ``fmt`` with pixel size [Å] and frame time [s].

    Formats: npy, mrc, tiff, bigtiff, hyperstack, tiff-folder (nested like GMS in-situ
    recording), hdf5 (etem contract), emd (time first) and emd-yxt (time last).
    """
    _, h, w = np.shape(data)
    import h5py
    import mrcfile
    import tifffile

    if fmt == "npy":
        p = folder / "m.npy"
        np.save(p, data)
    elif fmt == "mrc":
        p = folder / "m.mrc"
        with mrcfile.new(p) as m:
            m.set_data(np.asarray(data).astype(np.uint16))
            m.voxel_size = px_A
    elif fmt == "tiff":
        p = folder / "m.tif"
        tifffile.imwrite(
            p,
            data,
            imagej=True,
            resolution=(10 / px_A, 10 / px_A),
            metadata={"axes": "TYX", "unit": "nm", "finterval": dt_s},
        )
    elif fmt == "bigtiff":
        p = folder / "m_big.tif"
        tifffile.imwrite(p, data, bigtiff=True)
    elif fmt == "hyperstack":
        p = folder / "m_hyper.tif"
        tifffile.imwrite(
            p,
            data[:, None, None],
            imagej=True,
            resolution=(10 / px_A, 10 / px_A),
            metadata={"axes": "TZCYX", "unit": "nm"},
        )
    elif fmt == "tiff-folder":  # nested like GMS in-situ recording, names sort naturally
        p = folder / "frames"
        for t in range(len(data)):
            sub = p / f"Second_{t // 3:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(
                sub / f"frame_{t}.tif",
                data[t],
                imagej=True,
                resolution=(10 / px_A, 10 / px_A),
                metadata={"unit": "nm"},
            )
    elif fmt == "hdf5":
        p = folder / "m.h5"
        with h5py.File(p, "w") as fh:
            fh.create_dataset("frames", data=data)
            fh.attrs.update(pixel_size_A=px_A, frame_time_s=dt_s, dose_e_per_px_per_frame=3.0)
    elif fmt == "emd":
        from rsciio.emd import file_writer

        p = folder / "m.emd"
        axes = [
            dict(name="t", size=len(data), scale=dt_s, offset=0, units="s", navigate=True),
            dict(name="y", size=h, scale=px_A / 10, offset=0, units="nm", navigate=False),
            dict(name="x", size=w, scale=px_A / 10, offset=0, units="nm", navigate=False),
        ]
        file_writer(
            str(p),
            dict(
                data=data,
                axes=axes,
                metadata={"General": {"title": "m"}, "Signal": {"signal_type": ""}},
                original_metadata={},
            ),
        )
    elif fmt == "emd-yxt":  # time last, as ncempy-style writers store it
        from rsciio.emd import file_writer

        p = folder / "m_yxt.emd"
        axes = [
            dict(name="y", size=h, scale=px_A / 10, offset=0, units="nm", navigate=False),
            dict(name="x", size=w, scale=px_A / 10, offset=0, units="nm", navigate=False),
            dict(name="t", size=len(data), scale=dt_s, offset=0, units="s", navigate=False),
        ]
        file_writer(
            str(p),
            dict(
                data=np.moveaxis(data, 0, -1),
                axes=axes,
                metadata={"General": {"title": "m"}, "Signal": {"signal_type": ""}},
                original_metadata={},
            ),
        )
    else:  # pragma: no cover
        raise ValueError(fmt)
    return p


def simulate_movie_file(tmp: Path, cfg: dict[str, Any], manifest: Path) -> tuple[Path, Path]:
    """Write ``cfg`` as ``tmp/c.yaml`` and run ``etem simulate-movie`` on the structure
    ``manifest`` into ``tmp/movie.h5``; returns (config path, movie path)."""
    import yaml

    from etem.cli import main

    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    movie = tmp / "movie.h5"
    assert (
        main(["simulate-movie", "-c", str(path), "--manifest", str(manifest), "--out", str(movie)])
        == 0
    )
    return path, movie


def write_stand_in_models(results: Path, pixel_size_A: float = 0.2) -> None:
    """Small untrained networks (seeded) and a likelihood calibration, placed where the
    campaign's training and evaluation jobs would write them under ``results``, so a workflow
    test can run the apply rules alone."""
    archs: dict[str, dict[str, Any]] = {
        "denoiser": dict(kind="denoiser", depth=2, base_channels=4),
        "unsupervised": dict(kind="unsupervised", depth=2, base_channels=4, n_frames=5),
        "segmenter": dict(
            kind="segmenter", depth=2, base_channels=4, classes=["v", "a", "b"], max_occupancy=3
        ),
    }
    for kind, arch in archs.items():
        torch.manual_seed(0)
        save_model(results / "models" / f"{kind}.pt", build_model(arch),
                   {"kind": kind, "arch": arch, "pixel_size_A": pixel_size_A,
                    "mlflow_run_id": f"run{kind}"})
    rng = np.random.default_rng(0)
    (results / "evaluation").mkdir(parents=True, exist_ok=True)
    Calibration.fit(
        pd.DataFrame({"lambda_vac": np.full(200, 2.0), "u": rng.uniform(size=200)})
    ).save(results / "evaluation" / "likelihood_calibration.json")


def write_two_movie_sheet(data: Path, px_A: float, tiff_counts: np.ndarray,
                          mrc_counts: np.ndarray) -> Path:
    """A TIFF folder of ``tiff_counts`` (T, H, W) and an MRC stack of ``mrc_counts`` under
    ``data``, and their movie sheet: rows ``tiff_run`` (pixel size ``px_A``, frame time, group
    600C, supervised) and ``mrc_run`` (pixel size from the file, group O2, blindspot)."""
    import mrcfile
    import tifffile

    (data / "tiffs").mkdir(parents=True)
    for i, fr in enumerate(tiff_counts):
        tifffile.imwrite(data / "tiffs" / f"f_{i:03d}.tif", fr.astype(np.uint16))
    with mrcfile.new(data / "stack.mrc") as m:
        m.set_data(mrc_counts.astype(np.uint16))
        m.voxel_size = px_A
    sheet = data / "movies.tsv"
    sheet.write_text("name\tpath\tpixel_size_A\tframe_time_s\tgroup\tdenoiser\n"
                     f"tiff_run\ttiffs\t{px_A}\t0.025\t600C\tsupervised\n"
                     "mrc_run\tstack.mrc\t\t\tO2\tblindspot\n")
    return sheet
