"""Windowed (local) vs global empirical Wiener filter on heterogeneous HRTEM images.

The global filter (:func:`etem.analysis.baselines.wiener`) keeps the frequencies whose power
over the whole frame stands above the noise: a particle on a support gets both lattices
everywhere, vacancies are filled, vacuum shows lattice. Two experimental local filters, defined
here (a negative result, ``benchmarks/pretrained.md``; not in the package): :func:`wiener_local`
gives each overlapping tile its own gain; :func:`wiener_gated` keeps the global filter's
frequencies but scales each radial band by its local regression on the counts. Four measures:

* ``psnr``: Mohan's PSNR of the global filter, the oracle Gaussian and variants
  (``--variant``, repeatable): ``WINDOW[:MIX[:ALPHA[:SMOOTH]]]`` the tile filter
  (``wiener_local``; e.g. ``64``, ``128:0.5``, ``96:0:2:3``), ``gWINDOW:BANDS[:ALPHA[:
  SMOOTH]]`` the gated filter (``wiener_gated``), a leading ``A`` for a window in Å instead
  of pixels (``A25.6:0:2.5:3``, ``Ag25.6:16:2``: converted with each image's pixel), and
  ``G:ALPHA:SMOOTH`` the global filter with other parameters (a control), on the images
  of ``benchmarks/independent_set.py`` (same structures, microscopes, noise streams:
  ``--seeds``; choose variants on seed 7, report seeds 8 and 9), per material x
  condition (mean ± s.e.m. and the paired difference to the global filter); clean images
  cached under ``--cache``;
* ``events`` (``prefilter_events.measure``, beside its classical rows: a 1.5 px Gaussian,
  the Wiener filter at its defaults and SURE-chosen): on :func:`etem.testing.lattice_movie`
  (vacancy patch) and
  :func:`etem.testing.particle_movie` (surface loss) movies, the change kept on single frame
  pairs (frame ``e - 2 - i`` before, ``e + 2 + i`` after the event, i = 0..7): the
  projection of the denoised change on the clean change over the event region (pixels whose
  clean intensity changes by > 0.05, dilated 3 px; 1 = all of it, as in
  ``benchmarks/selection_events.py``, there on 4-frame means), mean ± s.e.m. over the pairs;
  and the ghost lattice: rms of the denoised frame minus the clean frame in the vacuum of
  the particle movie;
* ``timing``: seconds per 1024² frame (Poisson at 0.45 e/px; median of 3);
* ``heldout``: the chosen filters (windows of ``LOCAL_WINDOW_A`` converted with each image's
  pixel, ``LOCAL_PARAMS`` / ``GATED_PARAMS``, chosen on seed 7), the global filter at its
  defaults and the oracle Gaussian on the independent set's images (``--seeds 8 9``: held
  out), Mohan's PSNR per material x condition, material, condition and overall
  (``independent_set.groups``), with the paired difference of each local filter to the global
  one (mean ± s.e.m., images better); ``--out DIR``: ``per_image.csv`` and ``summary.md``.

Usage::

    python benchmarks/wiener_local.py psnr --seeds 7 --variant 64 --variant Ag25.6:16:2
    python benchmarks/wiener_local.py events --variant A25.6:0:2.5:3 --variant Ag25.6:16:2
    python benchmarks/wiener_local.py timing --variant 128:0:2.5:3 --variant g128:16:2
    python benchmarks/wiener_local.py heldout --seeds 8 9 --out results/wiener_local/heldout
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.fft import dctn, idctn
from scipy.ndimage import uniform_filter

from etem.analysis import baselines
from etem.config import EtemConfig
from etem.config.evaluation import WIENER_ALPHA, WIENER_SMOOTH_PX
from etem.errors import InputError
from etem.simulation.reference import independent_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_set as ind
import prefilter_events

DOSE = ind.DOSE_E_PER_PX
#: the held-out filters' window [Å], converted to pixels per image, and their other
#: parameters, chosen on seed 7 (the global filter keeps its defaults alpha 2.5, smooth 5 px)
LOCAL_WINDOW_A = 25.6
LOCAL_PARAMS = {"alpha": 2.5, "smooth_px": 3}
GATED_PARAMS = {"alpha": 2.0, "smooth_px": 5, "bands": 16}


# --- the filters (experimental; not in etem.analysis.baselines) ---------------------------


def _counts(counts: np.ndarray, dose_e_per_px: float) -> np.ndarray:
    """The counts as float64, checked as the package's baselines check them."""
    y = np.asarray(counts, dtype=np.float64)
    if y.ndim != 2:
        raise InputError(f"baselines need a 2D counts image, got shape {y.shape}")
    if dose_e_per_px <= 0:
        raise InputError(f"dose per pixel must be > 0, got {dose_e_per_px}")
    return y


def _tile_starts(n: int, size: int) -> list[int]:
    """Starts of tiles of ``size`` px covering ``n`` px with half-tile hops (the last tile
    flush with the end)."""
    hop = max(1, size // 2)
    starts = list(range(0, n - size + 1, hop))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


def wiener_local(
    counts: np.ndarray, dose_e_per_px: float, alpha: float = WIENER_ALPHA,
    smooth_px: int = WIENER_SMOOTH_PX, dqe: float = 1.0, window_px: int = 64,
    mix: float = 0.0, exclude_dc: bool = True,
) -> np.ndarray:
    """Windowed (local) empirical Wiener filter of the counts [e/px], as intensity (vacuum =
    1, float64): ``baselines.wiener`` on overlapping tiles, blended back.

    The image is cut into tiles of ``window_px`` x ``window_px`` pixels (the image's size
    where it is smaller) with half-tile hops, the last tile of each row and column flush with
    the border. Each tile gets ``baselines.wiener``'s gain from its own DCT-II periodogram
    (smoothed over ``smooth_px`` x ``smooth_px`` of the tile's frequencies, mirror mode) and
    its own flat Poisson noise power (4 x the tile's counts / ``dqe``): gain ``max(0, 1 -
    alpha / snr)`` with ``snr`` = smoothed power / noise, 1 at zero frequency. ``mix`` in
    [0, 1] blends in the whole image's statistics: ``snr = (1 - mix) snr_tile + mix
    snr_global * tile area / image area``, ``snr_global`` the whole image's smoothed DCT power
    over its noise at the nearest whole-image frequency (cycles/px) — on a uniform crystal the
    scaled global SNR of a Bragg reflection is what a tile expects, with less scatter; mix 0
    is the purely local filter. The filtered tiles are blended with a Hann weight
    ``sin^2(pi (n + 1/2) / N)`` per axis, normalised by the weights' sum (a constant image
    stays constant), and the result shifted by a constant so that its mean is the counts'
    mean / dose exactly (as ``baselines.wiener`` keeps it).

    Frequencies a tile resolves are coarser than the whole image's (a Bragg reflection's
    power over the noise scales with the area), so a tile sees weak reflections the whole
    image keeps as noise: the price of following a non-periodic specimen (a particle on a
    support, surfaces, vacuum, vacancies). Unlike ``baselines.wiener``, the zero frequency's power
    is set to its noise before the smoothing (else it spreads gain to the tile's lowest
    frequencies whatever the data) and the noise power is 2x on the DCT's zero row and
    column (where the cosine's square averages 1, not 1/2). Time: one DCT pair per tile,
    about 4x the image's pixels in tiles (half-tile hops), computed one row of tiles at a
    time; ~0.2 s per 1024² frame (3x ``baselines.wiener``).

    Experimental (not in the package, used by nothing but this benchmark): at 0.45
    e/px it loses crystals (a tile's few counts put weak reflections under the noise) and,
    on the independent set, the Pt particle on CeO2 (-0.23 dB under ``baselines.wiener``); where
    it gains overall it is its ``smooth_px`` (3), which gains more on ``baselines.wiener`` itself.
    """
    y = _counts(counts, dose_e_per_px)
    if (alpha <= 0 or smooth_px < 1 or smooth_px % 2 == 0 or dqe <= 0 or window_px < 8
            or not 0.0 <= mix <= 1.0):
        raise InputError(f"wiener_local: alpha and dqe must be > 0, smooth_px odd >= 1, "
                         f"window_px >= 8 and mix in [0, 1], got {alpha}, {smooth_px}, {dqe}, "
                         f"{window_px}, {mix}")
    h, w = y.shape
    th, tw = min(int(window_px), h), min(int(window_px), w)
    rows, cols = _tile_starts(h, th), _tile_starts(w, tw)
    wy = np.sin(np.pi * (np.arange(th) + 0.5) / th) ** 2
    wx = np.sin(np.pi * (np.arange(tw) + 0.5) / tw) ** 2
    weight = wy[:, None] * wx[None, :]
    snr_g = None
    if mix > 0:
        power = baselines._smoothed_power(dctn(y, type=2), smooth_px)  # baselines.wiener's
        ky = np.clip(np.rint(np.arange(th) * h / th).astype(int), 0, h - 1)
        kx = np.clip(np.rint(np.arange(tw) * w / tw).astype(int), 0, w - 1)
        snr_g = power[np.ix_(ky, kx)] / max(4.0 * float(y.sum()) / dqe, 1e-30)
        snr_g *= th * tw / (h * w)
        del power
    # the noise power of the DCT-II of independent counts is 2x as large on the zero row and
    # column (cos^2 = 1 instead of 1/2 on average), 4x at zero frequency (kept anyway)
    axis_noise = np.ones((th, tw))
    axis_noise[0, :] *= 2.0
    axis_noise[:, 0] *= 2.0
    out = np.zeros((h, w))
    wsum = np.zeros((h, w))
    for r in rows:
        tiles = np.stack([y[r:r + th, c:c + tw] for c in cols])  # (n, th, tw)
        noise = 4.0 * tiles.sum(axis=(1, 2)) / dqe
        coef = dctn(tiles, type=2, axes=(1, 2))
        power = np.zeros((len(cols), th + 1, tw + 1))
        np.square(coef, out=power[:, :th, :tw])
        if exclude_dc:
            power[:, 0, 0] = noise * 4.0  # the mean's power spreads no gain to its neighbours
        if smooth_px > 1:
            uniform_filter(power, (1, int(smooth_px), int(smooth_px)), output=power,
                           mode="mirror")
        snr = power[:, :th, :tw] / np.maximum(noise, 1e-30)[:, None, None]
        snr /= axis_noise
        if snr_g is not None:
            snr = (1.0 - mix) * snr + mix * snr_g[None]
        gain = np.clip(1.0 - alpha / np.maximum(snr, 1e-30), 0.0, 1.0)
        gain[:, 0, 0] = 1.0
        filt = idctn(coef * gain, type=2, axes=(1, 2))
        for i, c in enumerate(cols):
            out[r:r + th, c:c + tw] += weight * filt[i]
            wsum[r:r + th, c:c + tw] += weight
    out /= wsum
    out += float(y.mean()) - float(out.mean())
    out /= dose_e_per_px
    return out


def _local_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Two passes of a ``size`` x ``size`` box mean (reflecting borders): a smooth
    triangular-weight local mean of std ~0.41 ``size`` per axis, O(1) per pixel."""
    return uniform_filter(uniform_filter(x, size, mode="reflect"), size, mode="reflect")


def wiener_gated(
    counts: np.ndarray, dose_e_per_px: float, alpha: float = WIENER_ALPHA,
    smooth_px: int = WIENER_SMOOTH_PX, dqe: float = 1.0, window_px: int = 128,
    bands: int = 8, low_bins: int = 3,
) -> np.ndarray:
    """The global empirical Wiener filter's output with each frequency band's amplitude
    estimated locally, as intensity (vacuum = 1, float64).

    ``baselines.wiener``'s gain (``alpha``, ``smooth_px``, ``dqe``: the frequencies that stand
    above the noise over the whole image) picks the frequencies; the filtered coefficients
    within ``low_bins`` DCT bins of zero frequency (radius, the background) are kept as
    ``baselines.wiener`` keeps them; the other kept coefficients are split into ``bands`` radial
    rings of equal kept power (gain x power) and each ring's image ``x_b`` (inverse DCT) is
    scaled pixel by pixel by ``a_b = clip(<x_b (y - <y>)> / <x_b^2>, 0, 1)``, its local
    regression coefficient on the counts ``y`` (``<.>``: a local mean over about
    ``window_px`` pixels, two passes of a box of ``0.6 window_px``, std ~0.25 ``window_px``
    per axis). Where a ring's lattice is in the counts ``a_b`` is ~1 (the global filter);
    where it is not (vacuum, the other crystal of a particle on a support, a vacancy patch)
    ~0 ± the noise of the regression, which pools all of the ring's frequencies — many
    reflections — over the window, so it resolves what a tile's own periodogram
    (:func:`wiener_local`) cannot at low dose. The output is shifted by a constant so that
    its mean is the counts' mean / dose exactly.

    Experimental (not in the package, used by nothing but this benchmark): on the
    independent set (seeds 8, 9; alpha 2, 16 bands, 25.6 Å windows) it is +0.24 dB over
    ``baselines.wiener`` at its defaults but only +0.09 over ``baselines.wiener`` at the same
    alpha, and it does not clean vacuum: ``x_b`` is a filter of the counts themselves, so
    where a band holds only noise the regression fits that noise (``a_b`` spread over [0, 1],
    not ~0). About 3 s per 1024² frame with 16 bands (40x ``baselines.wiener``).
    """
    y = _counts(counts, dose_e_per_px)
    if (alpha <= 0 or smooth_px < 1 or smooth_px % 2 == 0 or dqe <= 0 or window_px < 4
            or bands < 1 or low_bins < 0):
        raise InputError(f"wiener_gated: alpha and dqe must be > 0, smooth_px odd >= 1, "
                         f"window_px >= 4, bands >= 1 and low_bins >= 0, got {alpha}, "
                         f"{smooth_px}, {dqe}, {window_px}, {bands}, {low_bins}")
    h, w = y.shape
    noise = 4.0 * float(y.sum()) / dqe
    coef = dctn(y, type=2)
    power = baselines._smoothed_power(coef, smooth_px)  # the zero frequency left out
    gain = np.clip(1.0 - alpha * noise / np.maximum(power[:h, :w], 1e-30), 0.0, 1.0)
    gain[0, 0] = 1.0
    del power
    radius = np.hypot(np.arange(h)[:, None] / h, np.arange(w)[None, :] / w)
    r_low = np.hypot(low_bins / h, low_bins / w)
    low = radius <= r_low
    kept = coef * gain
    del coef
    out = np.asarray(idctn(np.where(low, kept, 0.0), type=2), dtype=np.float64)
    sel = (~low) & (gain > 0)
    if sel.any():
        rs = radius[sel]
        order = np.argsort(rs, kind="stable")
        cum = np.cumsum((kept[sel] ** 2)[order])
        cum /= cum[-1]
        cuts = [float(rs[order][min(int(np.searchsorted(cum, q)), len(rs) - 1)])
                for q in np.arange(1, bands) / bands]
        edges = [r_low, *cuts, np.inf]
        size = max(1, round(0.6 * window_px))
        resid = y - _local_mean(y, size)
        for lo, hi in pairwise(edges):
            ring = sel & (radius > lo) & (radius <= hi)
            if not ring.any():
                continue
            xb = np.asarray(idctn(np.where(ring, kept, 0.0), type=2), dtype=np.float64)
            den = np.maximum(_local_mean(xb * xb, size), 1e-30)
            a = np.clip(_local_mean(xb * resid, size) / den, 0.0, 1.0)
            out += a * xb
    out += float(y.mean()) - float(out.mean())
    out /= dose_e_per_px
    return out


# --- measures ------------------------------------------------------------------------------


def parse_variant(text: str) -> dict[str, float | int]:
    """``WINDOW[:MIX[:ALPHA[:SMOOTH]]]`` -> wiener_local's keywords."""
    parts = text.split(":")
    out: dict[str, float | int] = {"window_px": int(parts[0]), "mix": 0.0,
                                   "alpha": WIENER_ALPHA, "smooth_px": WIENER_SMOOTH_PX}
    if len(parts) > 1:
        out["mix"] = float(parts[1])
    if len(parts) > 2:
        out["alpha"] = float(parts[2])
    if len(parts) > 3:
        out["smooth_px"] = int(parts[3])
    return out


def local(counts: np.ndarray, variant: str, pixel_A: float = 0.2,
          dose: float = DOSE) -> np.ndarray:
    """A method named by ``variant`` (see :func:`main`'s ``--variant``) on ``counts``."""
    if variant.startswith("G"):  # G:ALPHA:SMOOTH: the global filter with other parameters
        p = variant.split(":")
        return baselines.wiener(counts, dose, alpha=float(p[1]), smooth_px=int(p[2]))
    if variant.startswith("A"):  # window in Å
        head, _, rest = variant[1:].partition(":")
        kind = "g" if head.startswith("g") else ""
        px = max(8, round(float(head.lstrip("g")) / pixel_A))
        variant = f"{kind}{px}" + (f":{rest}" if rest else "")
    if variant.startswith("g"):  # gWINDOW:BANDS[:ALPHA[:SMOOTH]]: wiener_gated
        p = variant[1:].split(":")
        return wiener_gated(
            counts, dose, window_px=int(p[0]), bands=int(p[1]),
            alpha=float(p[2]) if len(p) > 2 else WIENER_ALPHA,
            smooth_px=int(p[3]) if len(p) > 3 else WIENER_SMOOTH_PX)
    kw = parse_variant(variant)
    return wiener_local(counts, dose, alpha=float(kw["alpha"]), smooth_px=int(kw["smooth_px"]),
                        window_px=int(kw["window_px"]), mix=float(kw["mix"]))


def clean_image(spec: object, cache: Path, pixel_A: float = 0.2) -> np.ndarray:
    path = cache / f"{zlib.crc32(spec.key().encode()):08x}.npy"  # type: ignore[attr-defined]
    if path.is_file():
        return np.load(path)
    img = independent_image(spec.atoms(), spec.microscope(),  # type: ignore[attr-defined]
                            spec.pixel_A(pixel_A))  # type: ignore[attr-defined]
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, img)
    return img


#: a method scored on the set: (counts, the image's pixel [Å]) -> intensity
Method = Callable[[np.ndarray, float], np.ndarray]


def score_set(seeds: list[int], methods: dict[str, Method], conditions: list[str],
              cache: Path) -> pd.DataFrame:
    """Per-image Mohan PSNR of the oracle Gaussian, the global filter (defaults) and each of
    ``methods`` on the independent set's images (its default structures, defoci and the
    particle; ``independent_set.noise`` streams), one row per (clean image, seed)."""
    sigmas = list(EtemConfig().evaluation.oracle_sigmas_px)
    rows = []
    spec_list = list(ind.specs([3, 5, 8], [2, 4, 6], [-4.0, 0.0, 4.0], conditions, True))
    for i, spec in enumerate(spec_list):
        clean = clean_image(spec, cache)
        px = float(spec.atoms().cell[0, 0]) / clean.shape[1]
        for seed in seeds:
            counts = ind.noise(clean, spec, seed)
            gauss, _ = baselines.oracle_gaussian(counts, DOSE, clean, sigmas)
            row = {"material": spec.material, "condition": spec.condition, "seed": seed,
                   "cells": spec.cells, "defocus_nm": round(spec.defocus_nm, 3),
                   "size_px": clean.shape[0],
                   "oracle_gaussian": ind.mohan(clean, gauss),
                   "wiener": ind.mohan(clean, baselines.wiener(counts, DOSE))}
            for name, f in methods.items():
                row[name] = ind.mohan(clean, f(counts, px))
            rows.append(row)
        print(f"[{i + 1}/{len(spec_list)}] {spec.key()}", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def psnr_table(seeds: list[int], variants: list[str], conditions: list[str],
               cache: Path) -> pd.DataFrame:
    methods: dict[str, Method] = {
        f"local {v}": (lambda c, px, v=v: local(c, v, px)) for v in variants}
    return score_set(seeds, methods, conditions, cache)


def heldout_filters() -> dict[str, Method]:
    """The chosen filters, as held out: windows of ``LOCAL_WINDOW_A`` in the image's pixels."""
    def window(px: float) -> int:
        return max(8, round(LOCAL_WINDOW_A / px))
    return {
        "wiener_local": lambda c, px: wiener_local(c, DOSE, window_px=window(px),
                                                   **LOCAL_PARAMS),
        "wiener_gated": lambda c, px: wiener_gated(c, DOSE, window_px=window(px),
                                                   **GATED_PARAMS),
    }


def _ms(v: np.ndarray) -> str:
    sem = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{v.mean():+.2f} ± {sem:.2f}"


def psnr_markdown(df: pd.DataFrame, variants: list[str]) -> str:
    cols = [f"local {v}" for v in variants]
    head = ["group", "n", "oracle G", "global Wiener", *[f"{c} − global" for c in cols]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    parts: list[tuple[str, pd.DataFrame]] = [
        (f"{m}, {c}", g) for (m, c), g in df.groupby(["material", "condition"], sort=False)]
    parts += [(f"{m}, all", g) for m, g in df.groupby("material", sort=False)]
    parts += [(f"all, {c}", g) for c, g in df.groupby("condition", sort=False)]
    parts += [("all", df)]
    for name, g in parts:
        cells = [name, str(len(g)), f"{g['oracle_gaussian'].mean():.2f}",
                 f"{g['wiener'].mean():.2f}"]
        cells += [_ms((g[c] - g["wiener"]).to_numpy()) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _better(d: np.ndarray) -> str:
    return f"{_ms(d)} ({int((d > 0).sum())})"


def heldout_markdown(df: pd.DataFrame) -> str:
    """Mean PSNR per group (``independent_set.groups``) and each local filter's paired
    difference to the global one: mean ± s.e.m. (images better of n)."""
    head = ["group", "n", "oracle G", "global Wiener", "local (tile)", "gated",
            "local − global", "gated − global"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, g in ind.groups(df):
        cells = [name, str(len(g))]
        cells += [f"{g[m].mean():.2f}" for m in ("oracle_gaussian", "wiener", "wiener_local",
                                                 "wiener_gated")]
        cells += [_better((g[m] - g["wiener"]).to_numpy())
                  for m in ("wiener_local", "wiener_gated")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def events(variants: list[str], pairs: int = 8) -> str:
    """The change kept by each local variant beside the classical bars, on the 96² and 256²
    movies of ``prefilter_events.py`` (its :func:`prefilter_events.measure`)."""
    def method(v: str) -> prefilter_events.Method:
        return lambda c, d, px: np.stack([local(f, v, px, dose=d) for f in c])

    methods = {f"local {v}": method(v) for v in variants}
    names = [n for n in prefilter_events.movies() if n != prefilter_events.LARGE]
    return prefilter_events.table(prefilter_events.measure(methods, pairs, names))


def timing(variants: list[str], size: int = 1024) -> str:
    counts = np.random.default_rng(0).poisson(DOSE, (size, size)).astype(np.float32)
    methods = {"global Wiener": lambda: baselines.wiener(counts, DOSE)}
    for v in variants:
        methods[f"local {v}"] = lambda v=v: local(counts, v)
    lines = []
    for name, f in methods.items():
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        lines.append(f"{name}: {np.median(ts):.3f} s per {size}² frame")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("psnr", "events", "timing", "heldout"))
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7])
    ap.add_argument("--conditions", nargs="+", default=list(ind.ALL_CONDITIONS),
                    choices=ind.ALL_CONDITIONS)
    ap.add_argument("--cache", type=Path, default=Path("results/wiener_local/clean"))
    ap.add_argument("--out", type=Path, default=None,
                    help="psnr: per-image CSV; heldout: folder for per_image.csv, summary.md")
    args = ap.parse_args(argv)
    if args.what == "psnr":
        df = psnr_table(args.seeds, args.variant, args.conditions, args.cache)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(args.out, index=False)
        print(psnr_markdown(df, args.variant))
    elif args.what == "heldout":
        t0 = time.perf_counter()
        df = score_set(args.seeds, heldout_filters(), args.conditions, args.cache)
        text = (f"{len(df)} images (seeds {' '.join(map(str, args.seeds))}), "
                f"{time.perf_counter() - t0:.0f} s; Mohan's PSNR [dB], paired difference to "
                "the global filter (mean ± s.e.m., images better):\n\n" + heldout_markdown(df))
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            df.to_csv(args.out / "per_image.csv", index=False)
            (args.out / "summary.md").write_text(text)
        print(text)
    elif args.what == "events":
        print(events(args.variant))
    else:
        print(timing(args.variant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
