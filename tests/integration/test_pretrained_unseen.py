"""The packaged pretrained denoiser on images etem did not make.

Structures built with ASE alone (bulk Pt and fluorite CeO2 along [001], not etem's
structure builder), imaged with abTEM alone (:func:`etem.simulation.reference.abtem_image`,
the third-party recipe; the recipe of these images is shared with
``benchmarks/independent_set.py`` in :mod:`etem.simulation.reference`) under microscope
conditions inside the held-out bands the model never
trained on (blur FWHM >= 1.3 Å; detector pixel >= 0.16 Å), with Poisson noise at 0.45 e/px in
vacuum (issue 14's dose). The ordering asked of a denoiser that holds up elsewhere: above the
oracle Gaussian (the width best on the clean image) and above NLM, in Mohan et al.'s metric.
Above NLM holds on all four; above the oracle Gaussian on three since the packaged model
refines the Wiener estimate (2026-12-07; the model before it cleared only CeO2 with 0.18 Å
pixels) — Pt blurred 1.4 Å, a near-flat image whose best estimate is nearly its mean, is
recorded as a strict expected failure (the issue's target, not met there), so a model that
clears it turns it red and the mark must go.
"""

from __future__ import annotations

import numpy as np
import pytest

from etem.analysis import baselines
from etem.analysis.metrics import psnr_peak
from etem.config import EtemConfig
from etem.models.inference import denoise_images
from etem.models.io import load_model
from etem.models.pretrained import pretrained_path
from etem.simulation.microscope import scherzer_defocus_nm
from etem.simulation.reference import (
    CS_UM,
    ENERGY_KV,
    bulk_crystal,
    corrected_microscope,
    independent_image,
)

DOSE_E_PER_PX = 0.45
#: unit cells along [001] of the two crystals
CELLS = {"Pt": 5, "CeO2": 4}


def _image(material: str, condition: str, pixel_A: float) -> np.ndarray:
    """Clean image (vacuum = 1) at ``pixel_A`` [Å] of the corrected 300 kV microscope at its
    Scherzer defocus, blurred 1.4 Å (``blur``) or recorded on 0.18 Å pixels (``pixel``)."""
    mic = corrected_microscope(condition, scherzer_defocus_nm(CS_UM, ENERGY_KV))
    return independent_image(bulk_crystal(material, CELLS[material]), mic, pixel_A)


def _scores(material: str, condition: str) -> dict[str, float]:
    """Mohan et al.'s PSNR [dB] of the packaged model, the oracle Gaussian, NLM and the noisy
    frame on one image (Poisson noise, seed 7)."""
    path = pretrained_path()
    assert path is not None, "the package ships no pretrained denoiser"
    model, meta = load_model(path)
    clean = _image(material, condition, float(meta["pixel_size_A"]))
    assert clean.std() > 0.01  # some contrast left to recover
    counts = np.random.default_rng(7).poisson(np.clip(clean, 0, None) * DOSE_E_PER_PX)
    counts = counts.astype(np.float32)
    net = np.asarray(denoise_images(model, counts[None], DOSE_E_PER_PX)[0], dtype=np.float64)
    sigmas = list(EtemConfig().evaluation.oracle_sigmas_px)
    gauss, _ = baselines.oracle_gaussian(counts, DOSE_E_PER_PX, clean, sigmas)
    nlm = baselines.nlm_estimated(counts, DOSE_E_PER_PX)

    def mohan(est: np.ndarray) -> float:
        return psnr_peak(clean * DOSE_E_PER_PX, est * DOSE_E_PER_PX, 1.0)

    return {"net": mohan(net), "oracle_gaussian": mohan(gauss), "nlm": mohan(nlm),
            "noisy": mohan(counts / DOSE_E_PER_PX)}


@pytest.mark.parametrize("condition", ["blur", "pixel"])
@pytest.mark.parametrize("material", ["Pt", "CeO2"])
def test_pretrained_beats_nlm_on_unseen_conditions(material: str, condition: str) -> None:
    s = _scores(material, condition)
    assert s["net"] > s["nlm"] > s["noisy"]


_BELOW_ORACLE = pytest.mark.xfail(
    strict=True,
    reason="issue 14, not met: the packaged model (Wiener-refining, 2026-12-07) is below the "
    "oracle Gaussian on this near-flat blurred Pt image (35.26 vs 35.84 dB; the flat image and "
    "the oracle's widest widths are best there; the other three: Pt pixel 26.37 vs 24.32, CeO2 "
    "blur 32.25 vs 31.99, CeO2 pixel 27.82 vs 18.60)",
)


@pytest.mark.parametrize(("material", "condition"), [
    pytest.param("Pt", "blur", marks=_BELOW_ORACLE),
    ("Pt", "pixel"),
    ("CeO2", "blur"),
    ("CeO2", "pixel"),
])
def test_pretrained_beats_the_oracle_gaussian_on_unseen_conditions(
    material: str, condition: str
) -> None:
    s = _scores(material, condition)
    assert s["net"] > s["oracle_gaussian"] > s["noisy"]
