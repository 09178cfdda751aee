"""Evidence that accumulates: a windowed generalised likelihood-ratio (GLR) change detector.

Each series x_t (a frame statistic, the raw counts of one region of the frame, ...) is scored
at every frame t by the GLR of a step in its mean somewhere in the last ``W`` frames, with
both the level before and the level after unknown (no stable leading stretch and no
baseline are assumed)::

    G_t = max_k  n1 n2 / (n1 + n2) (mean[s, k) - mean[k, t])^2 / (2 sigma^2)

(s = t - W + 1; n1, n2 >= 2 frames each side). A persistent change adds evidence with every
frame after it (G grows like n2 shift^2 / 2 until the window is full), a one-frame glitch does
not; the split that maximises G estimates the onset, and the splits whose log-likelihood lies
within 1.92 of the maximum give its 95 % likelihood interval.

Noise model (recorded per series in ``noise_model``), from the whole movie, robust to the
changes it should find (no stable leading stretch is assumed):

* frame statistics of at least :data:`WANDER_MIN_FRAMES` frames: ``white + AR(1) wander
  (block differences)`` (or ``white (block differences)``): the variance of the difference
  of adjacent means of b frames -- what the GLR compares -- is measured robustly over the
  whole movie for b = 1 ... T / 16 (a step is at most 1/8 of those differences) and fitted
  by white noise plus a share of AR(1) noise (:func:`fit_noise_model`). Statistics of tracks
  and windows wander slowly (a track lost and found again moves the reference of the
  rotation); their scale of one frame understates the noise of means of many frames. The
  GLR then divides each split by its variance under the model (:func:`split_variance`);
* shorter frame statistics: ``white, long-run scale``: sigma = the larger of
  1.4826 MAD(x_t - x_{t-1}) / sqrt(2) (a step is one outlier among the differences) and the
  same of means of 5 and 10 frames times sqrt(block) (:func:`long_run_sigma`);
* ``poisson``: raw region counts; sigma^2 = F x (median counts of the series), F the Fano
  factor of the camera (1 for electron counting) from the first differences of all regions.

Each standardised value's deviation from the running median of 5 frames is clipped at
:data:`HAMPEL_C` (:func:`hampel`): one outlying frame cannot make an alarm.

Threshold: the null distribution of G_t (the noise model of the series, the same window, the
same clipping) is simulated (fixed seed, once per model) and the threshold h set so that the
upcrossings of h number ``far_per_1000`` per 1,000 frames over all series (Bonferroni);
rates too small to simulate are extrapolated log-linearly in h from the simulated tail. An
alarm is a run of frames with G > h (gaps <= ``merge_gap``); its significance is the peak
G / h of its series.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.signal import lfilter

#: GLR window [frames]: evidence accumulates over up to W - 2 frames after a change.
GLR_WINDOW = 100
#: Fewest frames on each side of a split.
MIN_SIDE = 2
#: Half the 95 % quantile of chi^2(1): the likelihood interval of the onset.
LIKELIHOOD_DROP = 1.92
#: Null simulation: series x frames (fixed seed).
NULL_SERIES, NULL_FRAMES, NULL_SEED = 64, 4000, 12345
#: Wander model: fewest finite frames to fit it, lags of the variogram, AR(1) grid.
WANDER_MIN_FRAMES = 200
WANDER_BLOCKS = (1, 2, 4, 8, 16, 32, 48)
WANDER_PHI = tuple(float(v) for v in 1 - np.geomspace(2e-3, 0.5, 12))
WANDER_SHARES = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)
#: Confidence region of the wander model: weighted squared log residuals within this of the
#: best (chi^2(1), one-sided 90 %).
WANDER_DCHI2 = 2.71
#: Null simulation of a wander model: series (fixed seed; fewer: one per model).
NULL_SERIES_WANDER = 32
#: Clip of a value's deviation from the running median of 5 frames [sigma] (:func:`hampel`).
HAMPEL_C = 3.0


@dataclass
class Alarm:
    """One GLR alarm of one series."""

    series: str
    index: int  # column of the series within its group (region number, 0 for frame stats)
    alarm_frame: int
    onset_frame: int
    onset_lo: int
    onset_hi: int
    direction: int  # +1 increase, -1 decrease
    significance: float  # peak G / threshold
    peak_frame: int = -1
    end_frame: int = -1
    threshold: float = float("nan")  # the series' threshold h (its noise model's)


def glr_scan(
    x: np.ndarray, window: int = GLR_WINDOW, var: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """GLR G_t (in units of sigma^2 = 1) of finite (T,) or (T, M) series and the split frame
    (first frame after the step) that maximises it. Returns (G, split), -1 where none.

    ``var[n1, n2]``: the null variance of the difference of the means of n1 frames and of
    the n2 frames that follow them (:func:`split_variance`; default white noise,
    1 / n1 + 1 / n2): G = max (mean1 - mean2)^2 / (2 var)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    t_n, m = x.shape
    c = np.concatenate([np.zeros((1, m)), np.cumsum(x, axis=0)])  # c[i] = sum x[:i]
    t = np.arange(t_n)[:, None]
    s = np.maximum(0, t - window + 1)
    n = t - s + 1
    g = np.zeros((t_n, m))
    split = np.full((t_n, m), -1, dtype=np.int64)
    for d in range(MIN_SIDE, window - MIN_SIDE + 1):  # d = frames after the split
        k = t - d + 1
        n1 = k - s
        ok = (n1 >= MIN_SIDE)[:, 0]
        if not ok.any():
            continue
        kk, ss, tt, nn, nn1 = k[ok, 0], s[ok, 0], t[ok, 0], n[ok], n1[ok]
        m1 = (c[kk] - c[ss]) / nn1
        m2 = (c[tt + 1] - c[kk]) / d
        if var is None:
            ll = nn1 * d / nn * (m1 - m2) ** 2 / 2
        else:
            ll = (m1 - m2) ** 2 / (2 * var[nn1[:, 0], d][:, None])
        better = ll > g[ok]
        gi, si = g[ok], split[ok]
        gi[better] = ll[better]
        si[better] = np.broadcast_to(kk[:, None], si.shape)[better]
        g[ok], split[ok] = gi, si
    return g, split


@functools.lru_cache(maxsize=64)
def _null_tail(window: int, wander: float, phi: float) -> tuple[np.ndarray, np.ndarray]:
    """Upcrossing rate per frame and series of levels h by the null G_t, simulated (fixed
    seed) under the noise model (white noise + a share ``wander`` of AR(1) noise with
    coefficient ``phi``, unit variance) and scored with the model's split variances."""
    m = NULL_SERIES_WANDER if wander > 0 else NULL_SERIES
    x = simulate_noise(NULL_FRAMES, m, wander, phi)
    var = split_variance(window, wander, phi) if wander > 0 else None
    g, _ = glr_scan(hampel(x), window, var)
    g = g[window:]  # stationary part
    n_frames = g.size
    hs = np.linspace(2.0, float(np.quantile(g, 0.99999)), 60)
    up = np.array([((g[1:] > h) & (g[:-1] <= h)).sum() for h in hs]) / n_frames
    return hs, up


def simulate_noise(
    n_frames: int, n_series: int, wander: float = 0.0, phi: float = 0.0, seed: int = NULL_SEED
) -> np.ndarray:
    """(n_frames, n_series) unit-variance null series of a :class:`NoiseModel`: white noise
    plus a share ``wander`` of stationary AR(1) noise with coefficient ``phi`` (fixed
    ``seed``: the same draws every call)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_frames, n_series))
    if wander > 0:
        e = rng.standard_normal((n_frames, n_series))
        zi = phi * rng.standard_normal((1, n_series))  # stationary start
        ar = lfilter([math.sqrt(1 - phi * phi)], [1.0, -phi], e, axis=0, zi=zi)[0]
        x = math.sqrt(1 - wander) * x + math.sqrt(wander) * ar
    return x


def glr_threshold(
    rate_per_frame: float, window: int = GLR_WINDOW, wander: float = 0.0, phi: float = 0.0
) -> float:
    """Threshold h whose upcrossings by the null G_t happen ``rate_per_frame`` times per
    frame and series (simulated under the noise model, fixed seed; log-linear tail
    extrapolation)."""
    hs, up = _null_tail(window, wander, phi)
    n_frames = (NULL_FRAMES - window - 1) * (NULL_SERIES_WANDER if wander > 0 else NULL_SERIES)
    ok = up * n_frames >= 20  # rates estimated from >= 20 upcrossings
    if rate_per_frame >= up[ok].min():
        return float(np.interp(-math.log(rate_per_frame), -np.log(up[ok]), hs[ok]))
    tail = np.flatnonzero(ok)[-10:]
    slope, icpt = np.polyfit(hs[tail], np.log(up[tail]), 1)
    return float((math.log(rate_per_frame) - icpt) / slope)


@functools.lru_cache(maxsize=64)
def split_variance(window: int, wander: float = 0.0, phi: float = 0.0) -> np.ndarray:
    """(W + 1, W + 1) table: the variance of mean(n1 frames) - mean(the next n2 frames) of
    unit-variance noise with autocorrelation rho(k) = wander phi^k (k >= 1), i.e. white noise
    plus a share ``wander`` of AR(1) noise (white: 1 / n1 + 1 / n2; row and column 0 are
    infinite). With s(n) = sum over i, j < n of rho(|i - j|):
    s(n1) / n1^2 + s(n2) / n2^2 - (s(n1 + n2) - s(n1) - s(n2)) / (n1 n2)."""
    n_max = 2 * window + 1
    k = np.arange(1, n_max)
    rho = wander * phi**k
    n = np.arange(n_max + 1, dtype=np.float64)
    # s(n) = n + 2 sum_{k=1}^{n-1} (n - k) rho(k)
    c1 = np.concatenate([[0.0], np.cumsum(rho)])  # sum_{k<=m} rho
    c2 = np.concatenate([[0.0], np.cumsum(k * rho)])
    m = np.maximum(n - 1, 0).astype(int)
    s_n = n + 2 * (n * c1[m] - c2[m])
    a = np.arange(window + 1)
    n1, n2 = a[:, None], a[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (s_n[n1] / n1**2 + s_n[n2] / n2**2
             - (s_n[n1 + n2] - s_n[n1] - s_n[n2]) / (n1 * n2))
    v[0, :] = np.inf
    v[:, 0] = np.inf
    return np.maximum(v, 1e-12)


def mad_sigma(x: np.ndarray) -> float:
    """Robust noise scale of a series from its first differences (NaN skipped): the larger
    of 1.4826 MAD and the standard deviation winsorised at 5 MAD, over sqrt(2)."""
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 3:
        return float("nan")
    d = np.diff(v)
    med = np.median(d)
    s_mad = 1.4826 * float(np.median(np.abs(d - med)))
    # tails heavier than Gaussian: the standard deviation of the differences winsorised at
    # 5 MAD-sigma (a step is one outlier among them), when larger
    s_std = float(np.std(np.clip(d, med - 5 * s_mad, med + 5 * s_mad)))
    return max(s_mad, s_std) / math.sqrt(2)


def long_run_sigma(x: np.ndarray, blocks: tuple[int, ...] = (5, 10)) -> float:
    """Noise scale for means of serially correlated values: the largest of :func:`mad_sigma`
    of the frames and of 1.4826 MAD of the first differences of means of b frames, over
    sqrt(2), times sqrt(b), for each block size b with at least 8 blocks (equal for white
    noise). Statistics of tracks and of windows wander from frame to frame: their mean over
    n frames is noisier than sigma / sqrt(n). The block means are near Gaussian and few: the
    plain MAD (a step is one outlier among their differences; a winsorised standard
    deviation of so few values would count it)."""
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    out = mad_sigma(v)
    for b in blocks:
        nb = len(v) // b
        if nb >= 8:
            d = np.diff(v[: nb * b].reshape(nb, b).mean(axis=1))
            s_mad = 1.4826 * float(np.median(np.abs(d - np.median(d))))
            out = max(out, s_mad / math.sqrt(2) * math.sqrt(b))
    return out


def fano_factor(x: np.ndarray) -> float:
    """Fano factor of (T, R) counts: median over the series of :func:`mad_sigma` squared
    (the noise variance of one frame) / the median counts (1 for Poisson counts)."""
    f = []
    for r in range(x.shape[1]):
        lam = float(np.nanmedian(x[:, r]))
        s = mad_sigma(x[:, r])
        if lam > 0 and np.isfinite(s):
            f.append(s * s / lam)
    return float(np.median(f)) if f else 1.0


@dataclass(frozen=True)
class NoiseModel:
    """Noise of one series: scale ``sigma`` (standard deviation of one frame) and the share
    ``wander`` of its variance that is AR(1) with coefficient ``phi`` (0: white)."""

    sigma: float
    wander: float = 0.0
    phi: float = 0.0
    name: str = "white"


def block_difference_variance(x: np.ndarray, blocks: tuple[int, ...]) -> np.ndarray:
    """Robust variance ((1.4826 MAD)^2) of the difference of the means of b frames and of
    the b frames that follow them, over all positions, for each block size b (NaN skipped;
    NaN where fewer than 20 differences): the GLR's balanced split, measured. A step is 2 b
    outliers among the T - 2 b differences (the plain MAD: a winsorised standard deviation
    would count them; heavy tails of single frames are clipped by :func:`hampel`)."""
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    c = np.concatenate([[0.0], np.cumsum(v)])
    out = np.full(len(blocks), np.nan)
    for i, bl in enumerate(blocks):
        m = (c[bl:] - c[:-bl]) / bl  # mean of x[t : t + b]
        d = m[bl:] - m[:-bl]
        if len(d) >= 20:
            out[i] = (1.4826 * float(np.median(np.abs(d - np.median(d))))) ** 2
    return out


def fit_noise_model(x: np.ndarray, window: int = GLR_WINDOW) -> NoiseModel:
    """Noise model of a frame statistic over the whole movie, robust to the changes it
    should find.

    Series of at least :data:`WANDER_MIN_FRAMES` finite values: white noise plus AR(1)
    wander, fitted to the measured variances of the differences of adjacent b-frame means
    (:func:`block_difference_variance`, b in :data:`WANDER_BLOCKS` up to T / 16: a step is
    at most 1/8 of the differences), i.e. to what the GLR compares: sigma^2 from the
    first differences (:func:`mad_sigma`), the share of AR(1) wander and its coefficient
    from the grids :data:`WANDER_SHARES` x :data:`WANDER_PHI` (weighted least squares in
    log variance; of the models within :data:`WANDER_DCHI2` of the best fit, the one with
    the largest variance of a balanced split of the window: an upper confidence bound of
    the long-run noise; the null thresholds are simulated per model). Shorter series: white noise of
    scale :func:`long_run_sigma` (slow wander cannot be told from an event in few frames)."""
    v = np.asarray(x, dtype=np.float64)
    v_fin = v[np.isfinite(v)]
    if len(v_fin) < WANDER_MIN_FRAMES:
        return NoiseModel(long_run_sigma(v_fin), name="white, long-run scale")
    blocks = tuple(b for b in WANDER_BLOCKS if 16 * b <= len(v_fin) and b <= window // 2)
    vb = block_difference_variance(v_fin, blocks)
    ok = np.isfinite(vb) & (vb > 0)
    if ok.sum() < 3:
        return NoiseModel(mad_sigma(v_fin), name="white")
    bl = np.array(blocks)[ok]
    log_vb = np.log(vb[ok])
    # weights: 1 / variance of the log of a MAD-based variance of ~ (T - 2b) / 2b
    # independent differences (5.44 / n)
    wt = np.maximum(len(v_fin) - 2 * bl, 1) / (2 * bl) / 5.44
    fits = []
    half = max(window // 2, 1)
    for share in WANDER_SHARES:
        for phi in (WANDER_PHI if share > 0 else (0.0,)):
            model = np.log(_balanced_variance(bl, share, phi))
            off = float(np.sum(wt * (log_vb - model)) / wt.sum())  # log sigma^2
            res = float(np.sum(wt * (log_vb - model - off) ** 2))
            long_var = math.exp(off) * float(_balanced_variance(np.array([half]), share, phi)[0])
            fits.append((res, long_var, share, phi, off))
    # the long-run variance is the least certain part (few long blocks) and the one the
    # GLR's tail depends on: of the models that fit within the 90 % (one-sided) confidence
    # region, the one with the largest variance of a balanced split of the window
    best_res = min(f[0] for f in fits)
    _, _, share, phi, log_var = max(
        (f for f in fits if f[0] <= best_res + WANDER_DCHI2), key=lambda f: f[1]
    )
    sigma = math.sqrt(math.exp(log_var))
    if share <= 0:
        return NoiseModel(sigma, name="white (block differences)")
    return NoiseModel(
        sigma, share, phi,
        f"white + AR(1) wander (block differences): wander share {share:.2f}, phi {phi:.3g}",
    )


def _balanced_variance(blocks: np.ndarray, share: float, phi: float) -> np.ndarray:
    """Variance of mean(b frames) - mean(next b frames) of unit-variance white noise plus a
    share of AR(1) noise with coefficient phi, for each b."""
    out = np.empty(len(blocks))
    for i, b in enumerate(blocks):
        k = np.arange(1, 2 * b)
        rho = share * phi**k
        s1 = b + 2 * float(((b - k[: b - 1]) * rho[: b - 1]).sum())
        s2 = 2 * b + 2 * float(((2 * b - k) * rho).sum())
        out[i] = 2 * s1 / b**2 - (s2 - 2 * s1) / b**2
    return out


def hampel(z: np.ndarray, c: float = HAMPEL_C) -> np.ndarray:
    """(T,) or (T, M) standardised series with each value's deviation from the running
    median of 5 frames clipped at +-c: a one-frame outlier (heavy-tailed noise, a detection
    glitch) cannot make an alarm by itself, a step (which the running median follows) is
    kept."""
    z = np.asarray(z, dtype=np.float64)
    p = np.concatenate([z[:1], z[:1], z, z[-1:], z[-1:]])
    med = np.median(np.stack([p[i : i + len(z)] for i in range(5)]), axis=0)
    return med + np.clip(z - med, -c, c)


def _alarms(
    name: str, index: int, z: np.ndarray, h: float, merge_gap: int, window: int,
    var: np.ndarray | None = None,
) -> tuple[np.ndarray, list[Alarm]]:
    """Score G / h of one standardised series and its alarms (runs above h)."""
    z = hampel(z)
    g, split = glr_scan(z, window, var)
    g, split = g[:, 0], split[:, 0]
    above = np.flatnonzero(g > h)
    alarms: list[Alarm] = []
    if len(above):
        runs = np.split(above, np.flatnonzero(np.diff(above) > merge_gap + 1) + 1)
        for r in runs:
            peak = int(r[np.argmax(g[r])])
            on, lo, hi, d = _onset(z, peak, window, var)
            alarms.append(Alarm(
                name, index, int(r[0]), on, lo, hi, d, float(g[peak] / h), peak, int(r[-1]), h
            ))
    return g / h, alarms


def _onset(
    z: np.ndarray, t: int, window: int, var: np.ndarray | None = None
) -> tuple[int, int, int, int]:
    """Most likely step (first frame after it) in the window ending at ``t``, its 95 %
    likelihood interval and direction."""
    s = max(0, t - window + 1)
    w = z[s : t + 1]
    n = len(w)
    cs = np.cumsum(w)
    j = np.arange(MIN_SIDE, n - MIN_SIDE + 1)
    m1 = cs[j - 1] / j
    m2 = (cs[-1] - cs[j - 1]) / (n - j)
    if var is None:
        ll = j * (n - j) / n * (m1 - m2) ** 2 / 2
    else:
        ll = (m1 - m2) ** 2 / (2 * var[j, n - j])
    b = int(np.argmax(ll))
    ok = np.flatnonzero(ll >= ll[b] - LIKELIHOOD_DROP)
    return s + int(j[b]), s + int(j[ok.min()]), s + int(j[ok.max()]), int(np.sign(m2[b] - m1[b]))


#: Kind of structural event each accumulating statistic reports.
SERIES_KIND = {
    "region_counts": "intensity/occupancy",
    "mean_intensity": "intensity/occupancy",
    "contrast": "intensity/occupancy",
    "matter_area_nm2": "intensity/occupancy",
    "n_columns": "appearance/disappearance",
    "appeared_frac": "appearance/disappearance",
    "vanished_frac": "appearance/disappearance",
    "rotation_deg": "rotation",
    "shift_x_A": "displacement",
    "shift_y_A": "displacement",
    "lattice_angle_deg": "rotation",
}


@dataclass
class CusumResult:
    """Per-frame accumulated evidence, the alarms and how they were calibrated."""

    scores: pd.DataFrame  # frame, glr_score (max G / h), glr_<series>
    alarms: list[Alarm]
    threshold: float
    n_series: int
    noise_model: dict[str, str]
    far_per_1000: float
    thresholds: dict[str, float] = field(default_factory=dict)  # per series (noise model)


def detect_glr(
    stats: pd.DataFrame,
    regions: np.ndarray | None,
    far_per_1000: float,
    names: list[str] | None = None,
    merge_gap: int = 2,
    window: int = GLR_WINDOW,
) -> CusumResult:
    """GLR alarms of the frame statistics ``names`` (default: those of :data:`SERIES_KIND`
    present) and of the (T, R) raw region counts ``regions`` (Poisson model), all sharing one
    threshold for ``far_per_1000`` false alarms per 1,000 frames."""
    names = [s for s in (names or list(SERIES_KIND)) if s in stats and s != "region_counts"]
    models = {s: fit_noise_model(stats[s].to_numpy(), window) for s in names}
    names = [s for s in names if np.isfinite(models[s].sigma) and models[s].sigma > 0]
    n_reg = 0 if regions is None else regions.shape[1]
    n_series = len(names) + n_reg
    rate = far_per_1000 / 1000.0 / max(n_series, 1)
    h = glr_threshold(rate, window)
    t_n = len(stats)
    out = pd.DataFrame({"frame": stats["frame"].to_numpy()})
    alarms: list[Alarm] = []
    noise: dict[str, str] = {}
    thresholds: dict[str, float] = {}
    best = np.zeros(t_n)
    for s in names:
        nm = models[s]
        x = stats[s].to_numpy(dtype=np.float64)
        # missing values (warm-up, edge frames) count as the median: no evidence either way
        z = np.nan_to_num((x - np.nanmedian(x)) / nm.sigma, nan=0.0, posinf=0.0, neginf=0.0)
        var = split_variance(window, nm.wander, nm.phi) if nm.wander > 0 else None
        hs = glr_threshold(rate, window, nm.wander, nm.phi) if nm.wander > 0 else h
        sc, al = _alarms(s, 0, z, hs, merge_gap, window, var)
        out[f"glr_{s}"] = sc
        best = np.maximum(best, sc)
        noise[s] = nm.name
        thresholds[s] = hs
        alarms += al
    if regions is not None and n_reg:
        fano = fano_factor(regions)
        reg_best = np.zeros(t_n)
        for r in range(n_reg):
            x = regions[:, r].astype(np.float64)
            lam = max(float(np.median(x)), 1e-9)
            sc, al = _alarms("region_counts", r, (x - lam) / math.sqrt(fano * lam), h,
                             merge_gap, window)
            thresholds["region_counts"] = h
            reg_best = np.maximum(reg_best, sc)
            alarms += al
        out["glr_region_counts"] = reg_best
        best = np.maximum(best, reg_best)
        noise["region_counts"] = f"poisson (Fano factor {fano:.3g} from first differences)"
    out["glr_score"] = best
    return CusumResult(out, alarms, h, n_series, noise, far_per_1000, thresholds)


def group_alarms(alarms: list[Alarm], merge_gap: int) -> list[list[Alarm]]:
    """Alarms whose onset intervals overlap or lie within ``merge_gap`` + 1 frames (one
    structural event seen by several series or regions), grouped."""
    groups: list[list[Alarm]] = []
    for a in sorted(alarms, key=lambda a: a.onset_lo):
        if groups and a.onset_lo - max(b.onset_hi for b in groups[-1]) <= merge_gap + 1:
            groups[-1].append(a)
        else:
            groups.append([a])
    return groups
