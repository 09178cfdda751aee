"""First pass of ``etem apply``: everything the frame-range shards must agree on.

:func:`prepare_movie` reads the movie once, sequentially, without the network on every frame:
it resolves the frame geometry (summing, binning, resampling to the models' pixel size),
measures the drift of every processed frame, fixes the dose normalisation, fine-tunes the
blind-spot model when asked, decides the column polarity from the denoised first frame and
estimates the contrast regime of the raw frames (:func:`etem.analysis.domain.contrast_estimate`,
checked against the model's training regimes with the rest of its domain).
The result (:class:`PreparedMovie`) is written to ``prepare.h5``; every shard
(:mod:`etem.movies.shard`) and the gather (:mod:`etem.movies.gather`) read it, so an N-shard
run gives the same frames, columns and events as a 1-shard run.

``prepare.h5`` (contract version :data:`PREPARE_VERSION`)::

    drift_px   (T, 2) float64   drift (dy, dx) of each processed frame [px]
    attrs      prepared         JSON of the other fields of PreparedMovie
               contract_version
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from etem.analysis.baselines import wiener_sure_choice
from etem.analysis.columns import guess_polarity
from etem.analysis.domain import (
    ContrastEstimate,
    column_fwhm_A,
    contrast_estimate,
    contrast_record,
    domain_warnings,
    warning_line,
)
from etem.analysis.lattice import columns_resolvable
from etem.analysis.likelihood import Calibration
from etem.config import EtemConfig
from etem.config.apply import InferenceConfig
from etem.data.inputs import network_input
from etem.errors import InputError
from etem.frames.breaks import ChangeStatistic, segment_window
from etem.frames.geometry import (
    FrameGeometry,
    FramesSettings,
    aligned_frames,
    frame_stream,
    resolve_geometry,
)
from etem.frames.readers import Movie
from etem.io import atomic_path
from etem.models.inference import TiledRunner, match_mean, window_inputs
from etem.models.io import LoadedModel, load
from etem.movies.selection import (
    CLASSICAL,
    SURE_FRAMES,
    WIENER_CAVEAT,
    ColumnCheck,
    FrameFilter,
    best_candidate,
    classical_filter,
    frames_needed,
    hurting,
    score_candidates,
    target_frames,
)
from etem.provenance import provenance
from etem.training.finetune import FINETUNED_NAME, finetune_unsupervised

log = logging.getLogger("etem.movies.prepare")

#: Version of the ``prepare.h5`` layout.
PREPARE_VERSION = 1


@dataclass
class ApplyModels:
    """The networks and the likelihood calibration used by one apply."""

    denoiser: LoadedModel | None = None
    unsupervised: LoadedModel | None = None
    segmenter: LoadedModel | None = None
    calibration: Calibration | None = None
    calibration_path: str | None = None

    def loaded(self) -> dict[str, LoadedModel]:
        """The models given (kind -> model)."""
        kinds = ("denoiser", "unsupervised", "segmenter")
        return {k: m for k in kinds if (m := getattr(self, k)) is not None}

    def digests(self) -> dict[str, str]:
        """Model-file digests (kind -> :attr:`LoadedModel.sha256`) of the models read from files."""
        return {k: d for k, m in self.loaded().items() if (d := m.sha256)}


def check_networks(models: ApplyModels) -> dict[str, LoadedModel]:
    """The denoising networks given, by mode (``supervised``, ``unsupervised``), checked."""
    nets: dict[str, LoadedModel] = {}
    if models.denoiser is not None:
        if models.denoiser.n_frames != 1:
            raise InputError("the supervised denoiser given is a multi-frame model")
        nets["supervised"] = models.denoiser
    if models.unsupervised is not None:
        if models.unsupervised.n_frames < 3:
            raise InputError("the unsupervised model is not a multi-frame (blind-spot) model")
        nets["unsupervised"] = models.unsupervised
    return nets


def default_network(nets: dict[str, LoadedModel]) -> str:
    """The network ``auto`` falls back on when the movie cannot be scored: supervised when
    given, else unsupervised (fine-tuned when kept)."""
    if "supervised" in nets:
        return "supervised"
    if "unsupervised" not in nets:
        raise InputError("no denoiser given (use --denoiser and/or --unsupervised, or "
                         "apply.inference.denoise_with: wiener or gaussian)")
    return "finetuned" if "finetuned" in nets else "unsupervised"


def unscored_choice(inference: InferenceConfig, nets: dict[str, LoadedModel]) -> str:
    """What ``auto`` takes when the movie is not scored (too short, or ``score_targets: 0``):
    the first of ``auto_candidates`` that is available (a classical filter always; a network
    when given, ``unsupervised`` as the fine-tuned one when kept); when they list networks but
    none is given, the error of :func:`default_network`."""
    if inference.uses_network and not nets:
        return default_network(nets)
    for name in inference.auto_candidates:
        if name == "unsupervised" and "finetuned" in nets:
            return "finetuned"
        if name in CLASSICAL or name in nets:
            return name
    return default_network(nets)


@dataclass
class PreparedMovie:
    """What every pass of one apply shares (see the module docstring)."""

    geometry: FrameGeometry
    drift_px: np.ndarray
    dose_e_per_px: float
    dose_source: str
    mode: str
    n_window: int
    polarity: str
    denoiser_path: str | None
    finetune: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    breaks: list[int] = field(default_factory=list)
    break_kinds: list[str] = field(default_factory=list)
    columns: bool = True
    columns_reason: str = ""
    domain_warnings: list[str] = field(default_factory=list)
    contrast: dict[str, Any] = field(default_factory=dict)
    candidate: str = ""
    gaussian_sigma_px: float | None = None
    wiener_alpha: float | None = None
    wiener_smooth_px: int | None = None
    scores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def half_window(self) -> int:
        """Frames of context on each side of a denoised frame."""
        return self.n_window // 2

    def to_attrs(self) -> str:
        d = asdict(self)
        d.pop("drift_px")
        return json.dumps(d, sort_keys=True, default=str)


def write_prepared(path: Path, prep: PreparedMovie) -> None:
    """Write ``prepare.h5`` atomically."""
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("drift_px", data=prep.drift_px, track_times=False)
        h5.attrs["prepared"] = prep.to_attrs()
        h5.attrs["contract_version"] = PREPARE_VERSION


def read_prepared(path: str | Path) -> PreparedMovie:
    """The one reader of ``prepare.h5``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prepared movie {path}: no such file (run etem apply-prepare)")
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("contract_version") != PREPARE_VERSION:
            raise InputError(f"prepared movie {path}: not a prepare.h5 of this etem version")
        d = json.loads(h5.attrs["prepared"])
        drift = np.asarray(h5["drift_px"][()], dtype=np.float64)
    d["geometry"] = FrameGeometry(**d["geometry"])
    return PreparedMovie(drift_px=drift, **d)


def measure_frames(
    movie: Movie, geo: FrameGeometry, frames_cfg: FramesSettings, chunk_frames: int
) -> tuple[np.ndarray, list[int]]:
    """Drift (dy, dx) [px] of every processed frame (zeros without drift correction) and the
    frames after a sudden change of the aligned raw counts (:mod:`etem.frames.breaks`)."""
    drift = np.zeros((geo.n_frames, 2))
    change = ChangeStatistic()
    for t, counts, d in frame_stream(movie, geo, frames_cfg, chunk_frames):
        drift[t] = d
        change.add(counts)
    return drift, change.breaks()


def scene_breaks(movie: Movie, geo: FrameGeometry, sudden: list[int]) -> dict[int, str]:
    """Processed frames that start a new segment, with their kind (time gap, sudden change)."""
    out: dict[int, str] = {t: "sudden change" for t in sudden}
    for raw in movie.time_gaps():
        t = raw // geo.n_sum
        if raw % geo.n_sum:
            log.warning("%s: time gap before raw frame %d falls inside summed frame %d",
                        movie.path, raw, t)
            t += 1
        if 0 < t < geo.n_frames:
            out[t] = "time gap"
    for t, kind in sorted(out.items()):
        log.warning("%s: %s before frame %d: denoising windows do not cross it",
                    movie.path, kind, t)
    return dict(sorted(out.items()))


def _leading_frames(
    movie: Movie, geo: FrameGeometry, chunk_frames: int, drift: np.ndarray, n: int
) -> np.ndarray:
    """The first ``n`` processed, aligned frames (n, H, W) float32 [counts]."""
    got = [fr for _, fr in aligned_frames(movie, geo, chunk_frames, drift, 0, n)]
    return np.stack(got) if got else np.zeros((0, geo.height, geo.width), np.float32)


def network_outputs(
    model: LoadedModel,
    leading: np.ndarray,
    dose: float,
    breaks: list[int],
    n_frames: int,
    targets: list[int],
    inference: InferenceConfig,
    dqe: float = 1.0,
) -> dict[int, np.ndarray]:
    """Denoised intensity (vacuum = 1) of the ``targets`` frames of ``leading`` [counts,
    detector DQE(0) ``dqe``: a prefilter's noise level]."""
    i = inference
    runner = TiledRunner(model, i.tile_px, i.overlap_px, i.batch_size, i.precision, i.device)
    if model.n_frames == 1:
        x = network_input(leading[targets], dose, model.dose_conditioned, model.prefilter,
                           dqe)
        out = runner.run(x)[:, 0]
    else:
        norm = leading / np.float32(dose)

        def window(k: int) -> np.ndarray:
            return window_inputs(norm, segment_window(targets[k], model.n_frames, breaks,
                                                      n_frames))

        out = runner.run(window, n=len(targets))[:, 0]
    if i.match_mean:  # scored as the shards will denoise
        out = match_mean(out, leading[targets], dose)
    return {t: out[k] for k, t in enumerate(targets)}


def first_frame_polarity(
    model: LoadedModel | None,
    leading: np.ndarray,
    dose: float,
    breaks: list[int],
    n_frames: int,
    inference: InferenceConfig,
    classical: FrameFilter | None = None,
    dqe: float = 1.0,
) -> str:
    """Column polarity (``bright``/``dark``) of the denoised first frame (skewness); without
    a network, of the first frame filtered by ``classical`` (default: a Gaussian of 1 px)."""
    if model is None:
        filt = classical or classical_filter("gaussian", dose)
        return guess_polarity(filt(leading[0] / np.float32(dose)))
    return guess_polarity(
        network_outputs(model, leading, dose, breaks, n_frames, [0], inference, dqe)[0])


def unscored_wiener(frames: np.ndarray, dqe: float) -> tuple[float, int]:
    """The Wiener filter's (alpha, smooth_px) for a movie that uMSE cannot score (too short,
    a single image, or ``score_targets: 0``): the pair of the least Stein's unbiased risk
    estimate summed over its first :data:`SURE_FRAMES` frames ``frames`` [counts, detector
    DQE ``dqe``] (:func:`etem.analysis.baselines.wiener_sure_choice`; no clean image and no
    neighbouring frames needed, but the noise level is: ``apply.preprocess.detector_dqe``)."""
    use = frames[:SURE_FRAMES]
    alpha, smooth = wiener_sure_choice(use, dqe)
    log.info("movie not scored by uMSE: the Wiener filter's alpha %g and smoothing %d px "
             "chosen by SURE on %d frame(s) (detector DQE %g)", alpha, smooth, len(use), dqe)
    return alpha, smooth


@dataclass
class Choice:
    """The denoiser chosen for a movie (a candidate of :mod:`etem.movies.selection`) and the
    scores it was chosen by (None: not scored)."""

    candidate: str
    model: LoadedModel | None
    sigma_px: float | None
    scores: pd.DataFrame | None
    warning: str = ""
    wiener_alpha: float | None = None
    wiener_smooth_px: int | None = None

    @property
    def mode(self) -> str:
        """``supervised``, ``unsupervised`` (the fine-tuned model too), ``raw``, ``gaussian``,
        ``wiener``."""
        if self.model is None:
            return self.candidate
        return "supervised" if self.model.n_frames == 1 else "unsupervised"

    def classical(self, dose_e_per_px: float, dqe: float) -> FrameFilter | None:
        """The classical filter chosen (None: a network denoises)."""
        if self.model is not None:
            return None
        return classical_filter(self.candidate, dose_e_per_px, self.sigma_px, self.wiener_alpha,
                                dqe, self.wiener_smooth_px)


def score_and_choose(
    inference: InferenceConfig,
    nets: dict[str, LoadedModel],
    scored: np.ndarray,
    dose: float,
    breaks: list[int],
    n_frames: int,
    dqe: float = 1.0,
    columns: ColumnCheck | None = None,
) -> Choice:
    """Score every candidate on the leading frames ``scored`` [counts, detector DQE ``dqe``]
    (:mod:`etem.movies.selection`; with ``columns``, their column agreement too), then
    choose: ``auto`` the lowest uMSE among ``inference.auto_candidates`` whose columns agree,
    networks and classical alike; otherwise the one named. ``nets``: candidate name ->
    network. The Wiener filter of a movie not scored takes its parameters by SURE
    (:func:`unscored_wiener`)."""
    half = max([m.n_frames // 2 for m in nets.values()], default=0)
    targets = target_frames(len(scored), half, breaks, inference.score_targets)
    scores = None
    if targets:
        outs = {name: network_outputs(m, scored, dose, breaks, n_frames, targets, inference,
                                      dqe)
                for name, m in nets.items()}
        scores = score_candidates({k: v.__getitem__ for k, v in outs.items()},
                                  scored / np.float32(dose), targets, half,
                                  dose_e_per_px=dose, dqe=dqe, columns=columns,
                                  breaks=breaks, allowed=inference.auto_candidates)
    elif inference.score_targets:
        log.warning("fewer than %d frames in the movie's first segment: denoisers not scored",
                    frames_needed(half))
    want = inference.denoise_with
    if want == "auto":
        name = (best_candidate(scores, inference.auto_candidates) if scores is not None
                else unscored_choice(inference, nets))
    elif want == "unsupervised" and "finetuned" in nets:
        name = "finetuned"
    else:
        name = want
    if name not in nets and name not in CLASSICAL:
        raise InputError(f"no {name} denoiser given (use --denoiser and/or --unsupervised)")
    sigma = alpha = smooth = None
    warning = ""
    if scores is not None:
        scores["chosen"] = scores.candidate == name
        if name == "gaussian":
            sigma = float(scores.sigma_px[scores.candidate == "gaussian"].iloc[0])
        if name == "wiener":
            row = scores[scores.candidate == "wiener"].iloc[0]
            alpha, smooth = float(row.wiener_alpha), int(row.wiener_smooth_px)
        warning = hurting(scores, name, inference.auto_candidates)
        log.info("uPSNR on the movie [dB]: %s; denoising with %s", ", ".join(
            f"{c} {u:.2f}" for c, u in zip(scores.candidate, scores.upsnr_dB, strict=True)),
            name)
        if warning:
            log.warning("%s", warning)
    elif name == "gaussian":
        sigma = 1.0
    elif name == "wiener":
        alpha, smooth = unscored_wiener(scored, dqe)
    if name == "wiener":
        caveat = WIENER_CAVEAT
        log.warning("%s", caveat)
        warning = f"{warning}; {caveat}" if warning else caveat
    return Choice(name, nets.get(name), sigma, scores, warning, alpha, smooth)


#: What :func:`check_movie` returns: the networks of the first pass, by mode, and the geometry.
CheckedMovie = tuple[dict[str, LoadedModel], FrameGeometry]


def check_movie(movie: Movie, cfg: EtemConfig, models: ApplyModels) -> CheckedMovie:
    """The inputs of an apply checked against each other before anything starts (no MLflow
    run, no output): the networks for ``apply.inference.denoise_with`` and the movie's frames
    and pixel size for the models' (:func:`etem.frames.geometry.resolve_geometry`; reads at
    most the first frames). The networks the first pass uses and the geometry; an
    :class:`InputError` naming the movie or the model otherwise."""
    a = cfg.apply
    want = a.inference.denoise_with
    nets = check_networks(models)
    if want in ("supervised", "unsupervised") and want not in nets:
        raise InputError(f"no {want} denoiser given (use --denoiser and/or --unsupervised)")
    if want == "auto" and a.inference.score_targets == 0:  # no scoring: the fallback only
        fallback = unscored_choice(a.inference, nets)
        nets = {k: v for k, v in nets.items() if k == fallback}
    pixel_sizes = [m.pixel_size_A for m in models.loaded().values() if m.pixel_size_A]
    geo = resolve_geometry(movie, a.preprocess, pixel_sizes, int(cfg.seed))
    if want == "unsupervised" and geo.n_frames < 2:
        raise InputError(f"movie {movie.path}: the unsupervised model needs >= 2 frames")
    return nets, geo


# long (~100 lines): one sequence (geometry, drift and breaks, leading frames, dose,
# fine-tuning, scoring and choice, domain, polarity) whose steps share the leading frames.
def prepare_movie(
    movie: Movie, cfg: EtemConfig, models: ApplyModels, out_dir: str | Path,
    checked: CheckedMovie | None = None,
) -> PreparedMovie:
    """Geometry, drift, dose, fine-tuning, denoiser choice and polarity of ``movie`` (first
    pass of apply).

    Writes ``out_dir/finetuned_unsupervised.pt`` when the blind-spot model is fine-tuned
    and lowered its validation loss; the prepared state is returned (the caller writes it).
    ``checked``: what :func:`check_movie` returned for these arguments, if the caller
    checked them already (else checked here).
    """
    a = cfg.apply
    pre, chunk, want = a.preprocess, a.io.chunk_frames, a.inference.denoise_with
    nets, geo = checked or check_movie(movie, cfg, models)
    half = max([m.n_frames // 2 for m in nets.values()], default=0)
    out = Path(out_dir)
    drift, sudden = measure_frames(movie, geo, pre, chunk)
    breaks = scene_breaks(movie, geo, sudden)
    # the frames of the first chunk and its window context, as the denoising pass reads them,
    # and those the fine-tuning samples from (``leading``); the denoisers are scored on the
    # first ``n_scored`` frames (at least as many)
    finetuning = "unsupervised" in nets and a.finetune.steps > 0 and want in (
        "auto", "unsupervised")
    n_lead = chunk + half
    if finetuning:
        n_lead = max(n_lead, a.finetune.max_frames)
    n_lead = min(geo.n_frames, n_lead)
    n_scored = n_lead
    if a.inference.score_targets:
        n_scored = min(geo.n_frames,
                       max(n_lead, frames_needed(half) + 2 * a.inference.score_targets))
    scored = _leading_frames(movie, geo, chunk, drift, n_scored)
    leading = scored[:n_lead]
    dose_raw = pre.dose_e_per_px_per_frame or movie.dose_e_per_px_per_frame
    if dose_raw:
        dose = geo.processed_dose(dose_raw)
        source = "config" if pre.dose_e_per_px_per_frame else "file"
    else:
        dose = float(leading[: chunk + half].mean())
        source = "estimated"
        if not dose > 0:
            raise InputError(f"movie {movie.path}: mean counts {dose} <= 0; "
                             "set apply.preprocess.dose_e_per_px_per_frame")
        log.warning("dose not recorded: using the mean counts of the first chunk, "
                    "%.4g e/px/frame", dose)
    finetune = None
    if finetuning:
        out.mkdir(parents=True, exist_ok=True)
        frames = leading[: min(a.finetune.max_frames, geo.n_frames)]
        tuned, finetune = finetune_unsupervised(
            cfg, nets["unsupervised"], frames, dose, geo.pixel_size_A, out / FINETUNED_NAME,
            name=str(movie.path),
        )
        if finetune.get("kept"):
            nets["finetuned"] = tuned
    seen = columns_resolvable(
        leading.mean(axis=0), geo.pixel_size_A, cfg.columns.max_pixel_size_A
    )
    check = ColumnCheck(cfg.columns, geo.pixel_size_A, a.tracks.polarity,
                        a.inference.column_f1_margin)
    choice = score_and_choose(a.inference, nets, scored, dose, list(breaks), geo.n_frames,
                              pre.detector_dqe, check)
    model = choice.model
    domain: list[str] = []
    contrast = contrast_estimate(leading, geo.pixel_size_A)
    parent = None
    if model is not None:  # the training domain of a fine-tuned model is its parent's
        parent = nets["unsupervised"] if choice.candidate == "finetuned" else model
        domain = _domain_warnings(movie, parent, choice.mode, leading, geo.pixel_size_A, dose,
                                  contrast)
    log.info("%s: contrast regime %s (band skewness %.3g)", movie.path, contrast.regime,
             contrast.skewness)
    if choice.warning:
        domain.append(choice.warning)
    if not seen.resolvable:
        log.warning("%s: no column analysis: %s; frame-level statistics only",
                    movie.path, seen.reason)
    polarity: str = a.tracks.polarity
    if polarity == "auto":
        polarity = first_frame_polarity(model, leading, dose, list(breaks), geo.n_frames,
                                        a.inference, choice.classical(dose, pre.detector_dqe),
                                        pre.detector_dqe)
        log.info("column polarity from frame 0: %s", polarity)
    return PreparedMovie(
        geometry=geo,
        drift_px=drift,
        dose_e_per_px=float(dose),
        dose_source=source,
        mode=choice.mode,
        n_window=model.n_frames if model is not None else 1,
        polarity=polarity,
        denoiser_path=None if model is None else model.path,
        finetune=finetune,
        provenance=provenance(cfg, "apply"),
        breaks=list(breaks),
        break_kinds=list(breaks.values()),
        columns=seen.resolvable,
        columns_reason=seen.reason,
        domain_warnings=domain,
        contrast=contrast_record(None if parent is None else parent.meta, contrast),
        candidate=choice.candidate,
        gaussian_sigma_px=choice.sigma_px,
        wiener_alpha=choice.wiener_alpha,
        wiener_smooth_px=choice.wiener_smooth_px,
        scores=[] if choice.scores is None else json.loads(
            choice.scores.to_json(orient="records")),
    )


def _domain_warnings(
    movie: Movie, model: LoadedModel, mode: str, leading: np.ndarray, pixel_size_A: float,
    dose_e_per_px: float, contrast: ContrastEstimate,
) -> list[str]:
    """What of the movie lies outside the model's training distribution; warned in one line."""
    width = column_fwhm_A(leading.mean(axis=0, dtype=np.float64), pixel_size_A)
    found = domain_warnings(model.meta, pixel_size_A, dose_e_per_px, width, contrast,
                            movie.metadata.get("imaging_mode"))
    line = warning_line(mode, found)
    if line:
        log.warning("%s: %s", movie.path, line)
    return found


def calibration_of(prep: PreparedMovie, models: ApplyModels) -> Calibration | None:
    """The likelihood calibration to apply: fitted on a network's output, so None when no
    network denoises (``raw``/``gaussian``/``wiener``)."""
    return None if prep.mode in CLASSICAL else models.calibration


def denoiser_of(prep: PreparedMovie, models: ApplyModels) -> LoadedModel | None:
    """The network that denoises: the fine-tuned one when prepare chose it, the chosen one
    given, or None (``raw``/``gaussian``/``wiener``: no network)."""
    if prep.mode in CLASSICAL:
        return None
    if prep.candidate == "finetuned" and prep.denoiser_path:
        return load(prep.denoiser_path)
    chosen = models.denoiser if prep.mode == "supervised" else models.unsupervised
    if chosen is None:
        raise InputError(f"no {prep.mode} denoiser given (the movie was prepared with one)")
    return chosen
