"""Classical denoisers used as baselines: flat, Gaussian filter, Anscombe + non-local means,
and the empirical Wiener filter of HRTEM (Kilaas 1998).

Every baseline maps raw counts [e/px] at a known dose per pixel to intensity normalised so
that vacuum = 1, like the supervised denoiser (``etem.models.inference.denoise_images``).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn, idctn
from scipy.ndimage import gaussian_filter, uniform_filter
from skimage.restoration import denoise_nl_means

# the Wiener filter's tuned defaults live with the config that defaults to them (a lower layer)
from etem.config.evaluation import WIENER_ALPHA, WIENER_SMOOTH_PX
from etem.errors import InputError


def _counts(counts: np.ndarray, dose_e_per_px: float) -> np.ndarray:
    y = np.asarray(counts, dtype=np.float64)
    if y.ndim != 2:
        raise InputError(f"baselines need a 2D counts image, got shape {y.shape}")
    if dose_e_per_px <= 0:
        raise InputError(f"dose per pixel must be > 0, got {dose_e_per_px}")
    return y


def noisy_intensity(counts: np.ndarray, dose_e_per_px: float) -> np.ndarray:
    """The raw counts as intensity (no denoising): counts / dose per pixel."""
    return _counts(counts, dose_e_per_px) / dose_e_per_px


def flat(counts: np.ndarray, dose_e_per_px: float) -> np.ndarray:
    """The image's mean count as intensity in every pixel: an estimate with no structure at
    all, the bar below which a denoiser has recovered nothing (in MSE) — on low-contrast
    images (heavily blurred columns at ~0.5 e/px) it is hard to beat."""
    c = _counts(counts, dose_e_per_px)
    return np.full(c.shape, float(c.mean()) / dose_e_per_px, dtype=np.float64)


def gaussian(counts: np.ndarray, dose_e_per_px: float, sigma_px: float) -> np.ndarray:
    """Gaussian filter of width ``sigma_px`` [px] (reflecting borders), as intensity."""

    return gaussian_filter(_counts(counts, dose_e_per_px), sigma_px, mode="reflect") / dose_e_per_px


def wiener(
    counts: np.ndarray, dose_e_per_px: float, alpha: float = WIENER_ALPHA,
    smooth_px: int = WIENER_SMOOTH_PX, dqe: float = 1.0,
) -> np.ndarray:
    """Empirical Wiener filter of the counts [e/px] (Kilaas, J. Microsc. 190, 45 (1998)), as
    intensity (vacuum = 1, float64).

    The filter acts on the image mirror-extended to twice its size (a cosine transform: no
    streaks from the non-periodic borders); the signal power of each spatial frequency is the
    periodogram smoothed over ``smooth_px`` x ``smooth_px`` frequencies (odd: a centred window
    keeps the gain symmetric, k and -k alike, so the output is real); the noise power is flat,
    the extended image's total counts (4 x the image's) / ``dqe`` (Poisson counts: E|N_k|^2 =
    sum of the variances). Gain ``max(0, 1 - alpha * noise / power)``, 1 at zero frequency, so
    the mean count is kept exactly. No training and no clean image: it keeps the frequencies
    that stand above the noise — the lattice's Bragg reflections of a crystal, whatever the
    microscope.

    Computed without the extension: its FFT is, per axis, the type-II DCT of the H x W image
    (scipy's unnormalised ``dctn``) up to a phase, |F(k)| = |y_k| for k < N, F(N) = 0 and
    |F(2N - k)| = |F(k)|; so the wrap-around smoothing over the 2H x 2W frequencies is a
    mirror-mode smoothing of the DCT power with a zero row and column appended, and the
    filtered image is ``idctn`` of the DCT coefficients x the gain. Two H x W float64 arrays
    at a time (the coefficients, the power turned gain in place): 256 MiB at 4096², where the
    2H x 2W complex FFT took 5.5 GiB; the output is the extension's to round-off (float32
    power would save a quarter but move the output by ~1e-8 of its range, float32
    coefficients the mean by ~1e-7).
    """
    y = _counts(counts, dose_e_per_px)
    if alpha <= 0 or smooth_px < 1 or smooth_px % 2 == 0 or dqe <= 0:
        raise InputError(f"wiener: alpha and dqe must be > 0 and smooth_px odd >= 1, got "
                         f"{alpha}, {smooth_px}, {dqe}")
    h, w = y.shape
    noise = 4.0 * float(y.sum()) / dqe
    # the transform may overwrite y only when it is our own copy, not the caller's counts
    ours = not (isinstance(counts, np.ndarray) and np.may_share_memory(y, counts))
    coef = dctn(y, type=2, overwrite_x=ours)
    del y
    # DCT power with the zero row H and column W of the extension's frequency N appended
    power = np.zeros((h + 1, w + 1), dtype=np.float64)
    gain = power[:h, :w]  # filled in place: power, then smoothed power, then gain
    np.square(coef, out=gain)
    if smooth_px > 1:
        uniform_filter(power, int(smooth_px), output=power, mode="mirror")
    np.divide(alpha * noise, np.maximum(gain, 1e-30, out=gain), out=gain)
    np.subtract(1.0, gain, out=gain)
    np.clip(gain, 0.0, 1.0, out=gain)
    gain[0, 0] = 1.0
    coef *= gain
    del power, gain
    out = np.asarray(idctn(coef, type=2, overwrite_x=True), dtype=np.float64)
    out /= dose_e_per_px
    return out


def anscombe(y: np.ndarray) -> np.ndarray:
    """Anscombe variance-stabilising transform: Poisson -> approx. unit-variance Gaussian."""
    return 2.0 * np.sqrt(np.clip(y, 0.0, None) + 3.0 / 8.0)


def inverse_anscombe(z: np.ndarray) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse (Makitalo & Foi 2011)."""
    z = np.maximum(np.asarray(z, dtype=np.float64), 1e-3)
    return np.clip(
        0.25 * z**2 + 0.25 * np.sqrt(1.5) / z - 11.0 / 8.0 / z**2
        + 0.625 * np.sqrt(1.5) / z**3 - 1.0 / 8.0,
        0.0, None,
    )


def nlm(
    counts: np.ndarray, dose_e_per_px: float, patch_size: int = 5, patch_distance: int = 6,
    h_factor: float = 0.8,
) -> np.ndarray:
    """Non-local means (scikit-image, fast mode) on the Anscombe-transformed counts.

    After the transform the noise is approximately Gaussian with unit variance, so the
    filter strength is ``h = h_factor * 1``; the result is transformed back and divided by
    the dose per pixel.
    """

    y = _counts(counts, dose_e_per_px)
    z = anscombe(y)
    den = denoise_nl_means(
        z, patch_size=patch_size, patch_distance=patch_distance, h=h_factor, sigma=1.0,
        fast_mode=True, preserve_range=True,
    )
    return inverse_anscombe(den) / dose_e_per_px


def oracle_gaussian(
    counts: np.ndarray, dose_e_per_px: float, clean: np.ndarray, sigmas_px: list[float]
) -> tuple[np.ndarray, float]:
    """The Gaussian filter whose width (among ``sigmas_px`` [px]) is best on the clean image.

    An oracle (it looks at the clean image, intensity with vacuum = 1): the bar a denoiser
    has to clear. Returns the filtered intensity and the chosen sigma [px] (least MSE).
    """
    ref = np.asarray(clean, dtype=np.float64)
    best: tuple[float, np.ndarray, float] | None = None
    for s in sigmas_px:
        est = gaussian(counts, dose_e_per_px, float(s))
        err = float(np.mean((est - ref) ** 2))
        if best is None or err < best[0]:
            best = (err, est, float(s))
    if best is None:
        raise InputError("oracle_gaussian: no sigma to try")
    return best[1], best[2]


def nlm_estimated(
    counts: np.ndarray, dose_e_per_px: float, patch_size: int = 5, patch_distance: int = 6,
) -> np.ndarray:
    """Non-local means with an estimated noise level (scikit-image's recipe).

    The counts are Anscombe-transformed, the noise sigma is estimated from the transformed
    image (:func:`estimate_noise_sigma`), and ``denoise_nl_means`` runs with
    ``h = 0.8 sigma`` (fast mode) and ``sigma``; transformed back, divided by the dose.
    """
    z = anscombe(_counts(counts, dose_e_per_px))
    sigma = max(estimate_noise_sigma(z), 1e-6)
    den = denoise_nl_means(z, patch_size=patch_size, patch_distance=patch_distance,
                           h=0.8 * sigma, sigma=sigma, fast_mode=True, preserve_range=True)
    return inverse_anscombe(den) / dose_e_per_px


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Robust Gaussian noise sd of an image: median absolute finest diagonal wavelet
    coefficient / 0.6745 (Donoho & Johnstone; the recipe of ``skimage.restoration.
    estimate_sigma``, here with the orthonormal Haar wavelet, so PyWavelets is not needed)."""
    z = np.asarray(image, dtype=np.float64)
    h, w = (z.shape[0] // 2) * 2, (z.shape[1] // 2) * 2
    a, b = z[0:h:2, 0:w:2], z[0:h:2, 1:w:2]
    c, d = z[1:h:2, 0:w:2], z[1:h:2, 1:w:2]
    hh = (a - b - c + d) / 2.0
    return float(np.median(np.abs(hh)) / 0.6745)
