"""Does the movie's own uPSNR rank the denoisers as the true PSNR does?

``etem apply`` chooses its denoiser (``apply.inference.denoise_with: auto``) by the
unsupervised MSE of every candidate, estimated from neighbouring frames of the movie
(:mod:`etem.movies.selection`). On movies that carry their clean frames (etem's synthetic
movie ``/clean``, or a generated particle movie) this script compares, per candidate and on
the same target frames, the uMSE (± its standard error) with the true MSE against the clean
frames aligned by the same drift, and says whether the candidate chosen by uMSE is the one of
the lowest true MSE.

    .venv/bin/python benchmarks/selection.py --movie results/demo/movies/synthetic.h5 \\
        --config config/demo.yaml --denoiser results/demo/models/denoiser.pt \\
        --unsupervised results/demo/models/unsupervised.pt
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from etem.config import load_config
from etem.frames.geometry import aligned_frames
from etem.frames.readers import open_movie
from etem.io import atomic_path
from etem.models.io import load
from etem.movies.prepare import ApplyModels, network_outputs, prepare_movie
from etem.movies.selection import classical_filter, target_frames


def _clean_movie(path: Path, out: Path) -> Path:
    """The movie's clean frames [counts] as a movie file of the same contract."""
    with h5py.File(path, "r") as h5:
        dose = float(h5.attrs["dose_e_per_px_per_frame"])
        clean = np.asarray(h5["clean"][()], dtype=np.float32) * dose
        attrs = {k: h5.attrs[k] for k in ("pixel_size_A", "frame_time_s",
                                          "dose_e_per_px_per_frame")}
    with atomic_path(out, suffix=".h5") as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("frames", data=clean)
        h5.attrs.update(attrs)
    return out


def compare(movie_path: Path, config: Path | None, models: ApplyModels) -> pd.DataFrame:
    """Per candidate: uMSE, its SE and the true MSE on the scored targets [intensity²]."""
    cfg = load_config(config, {"tracking.enabled": False})
    movie = open_movie(movie_path)
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare_movie(movie, cfg, models, tmp)
        clean_movie = open_movie(_clean_movie(movie_path, Path(tmp) / "clean.h5"))
        geo, chunk = prep.geometry, cfg.apply.io.chunk_frames
        scores = pd.DataFrame(prep.scores)
        half = max([m.n_frames // 2 for m in (models.denoiser, models.unsupervised)
                    if m is not None], default=0)
        n = max(int(t) for t in target_frames(geo.n_frames, half, prep.breaks,
                                               cfg.apply.inference.score_targets)) + half + 3
        noisy = np.stack([f for _, f in aligned_frames(movie, geo, chunk, prep.drift_px, 0, n)])
        clean = np.stack([f for _, f in aligned_frames(clean_movie, geo, chunk, prep.drift_px,
                                                        0, n)])
    dose = prep.dose_e_per_px
    targets = target_frames(n, half, prep.breaks, cfg.apply.inference.score_targets)
    # the rows the drift correction fills by reflection are left out of the true MSE
    m = int(np.ceil(np.abs(prep.drift_px[:n]).max())) + 1
    inner = (slice(m, -m), slice(m, -m))
    truth = clean / np.float32(dose)
    outs: dict[str, dict[int, np.ndarray]] = {
        "raw": {t: noisy[t] / np.float32(dose) for t in targets}}
    row = scores.set_index("candidate")
    for name in ("gaussian", "wiener"):  # the parameter uMSE chose
        f = classical_filter(name, dose, float(row.sigma_px["gaussian"]),
                             float(row.wiener_alpha["wiener"]), cfg.apply.preprocess.detector_dqe,
                             int(row.wiener_smooth_px["wiener"]))
        outs[name] = {t: f(noisy[t] / np.float32(dose)) for t in targets}
    for name, model in (("supervised", models.denoiser), ("unsupervised", models.unsupervised)):
        if model is not None:
            outs[name] = network_outputs(model, noisy, dose, prep.breaks, geo.n_frames, targets,
                                         cfg.apply.inference)
    true = {k: float(np.mean([np.mean((v[t][inner] - truth[t][inner]) ** 2) for t in targets]))
            for k, v in outs.items()}
    scores = scores[scores.candidate.isin(list(true))].copy()
    scores["true_mse"] = scores.candidate.map(true)
    scores["true_gain_dB"] = 10 * np.log10(true["raw"] / scores.true_mse)
    scores["chosen_by_umse"] = scores.umse == scores.umse.min()
    scores["best_by_true_mse"] = scores.true_mse == scores.true_mse.min()
    scores["parameter"] = [
        f"sigma {s:g} px" if c == "gaussian" else f"alpha {a:g}, smoothing {m:g} px"
        if c == "wiener" else ""
        for c, s, a, m in zip(scores.candidate, scores.sigma_px, scores.wiener_alpha,
                              scores.wiener_smooth_px, strict=True)]
    return scores[["candidate", "parameter", "umse", "umse_se", "true_mse", "gain_dB",
                   "true_gain_dB", "chosen_by_umse", "best_by_true_mse"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--movie", type=Path, required=True, help="movie HDF5 with /clean")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--denoiser", type=Path)
    ap.add_argument("--unsupervised", type=Path)
    args = ap.parse_args()
    models = ApplyModels(denoiser=load(args.denoiser) if args.denoiser else None,
                         unsupervised=load(args.unsupervised) if args.unsupervised else None)
    t = compare(args.movie, args.config, models)
    print(f"# {args.movie} ({platform.node()})")
    print(t.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
