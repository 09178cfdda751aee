"""benchmarks/independent_set.py: the summary's margins, s.e.m. and below-oracle counts on a
toy per-image table, its subsets, the Markdown, the conditions and the noise streams
(issue 14)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etem.simulation.reference import corrected_microscope
from tests.benchmark_scripts import load_benchmark

ind = load_benchmark("independent_set")


def _toy() -> pd.DataFrame:
    """Pt blur: a beats the oracle by 1, 2, 3 dB; b is 1.5 dB below it (and 0.5 dB below NLM)
    on the first image.
    CeO2 in-range: a = oracle + 1 on both; b = a + 1."""
    rows = []
    for i, (ga, gb) in enumerate([(1.0, -1.5), (2.0, 1.0), (3.0, 1.0)]):
        rows.append({"material": "Pt", "condition": "blur", "noisy": 5.0, "flat": 15.0,
                     "oracle_gaussian": 20.0,
                     "nlm": 19.0 + i, "a": 20.0 + ga, "b": 20.0 + gb})
    for _ in range(2):
        rows.append({"material": "CeO2", "condition": "in-range", "noisy": 6.0, "flat": 16.0,
                     "oracle_gaussian": 22.0, "nlm": 21.0, "a": 23.0, "b": 24.0})
    return pd.DataFrame(rows)


def test_summary_margins_and_counts() -> None:
    s = ind.summarize(_toy(), ["a", "b"]).set_index("group")
    assert list(s.index) == ["Pt, blur", "CeO2, in-range", "Pt, all", "CeO2, all",
                             "held-out conditions", "all"]
    pt = s.loc["Pt, blur"]
    assert pt["n"] == 3
    assert pt["a_over_gauss_mean"] == pytest.approx(2.0)
    assert pt["a_over_gauss_sem"] == pytest.approx(1.0 / np.sqrt(3))  # sd of 1, 2, 3 is 1
    assert pt["a_over_nlm_mean"] == pytest.approx(2.0)  # (2 + 2 + 2) / 3
    assert pt["a_over_nlm_sem"] == pytest.approx(0.0)
    assert pt["a_below_gauss"] == 0
    assert pt["b_below_gauss"] == 1
    assert pt["b_below_nlm"] == 1  # 18.5 < 19; 21 > 20; 21 = 21 is not below
    assert pt["b_minus_a_mean"] == pytest.approx(np.mean([-2.5, -1.0, -2.0]))
    assert pt["b_beats_a"] == 0
    ce = s.loc["CeO2, in-range"]
    assert ce["b_beats_a"] == 2 and ce["b_minus_a_mean"] == pytest.approx(1.0)
    # the held-out subset holds the blur and pixel conditions only
    assert s.loc["held-out conditions", "n"] == 3
    total = s.loc["all"]
    assert total["n"] == 5 and total["b_below_gauss"] == 1 and total["b_beats_a"] == 2
    assert total["oracle_gaussian_mean"] == pytest.approx((3 * 20 + 2 * 22) / 5)


def test_summary_with_one_model_and_one_image() -> None:
    s = ind.summarize(_toy().iloc[:1], ["a"])
    assert list(s["group"]) == ["Pt, blur", "Pt, all", "all"]  # no held-out row equal to all
    assert np.isnan(s.iloc[0]["a_sem"])
    assert not any(c.startswith("a_minus") for c in s.columns)


def test_markdown_shows_margins_and_counts() -> None:
    text = ind.markdown(ind.summarize(_toy(), ["a", "b"]), ["a", "b"])
    pt_row = next(line for line in text.splitlines() if line.startswith("| Pt, blur |")
                  and "+" in line)
    assert "+2.00 ± 0.58" in pt_row  # a over the oracle Gaussian
    assert "| 1 / 1 |" in pt_row  # b below the oracle Gaussian / NLM
    assert "b − a" in text and "b beats a" in text


def test_conditions_and_noise_streams() -> None:
    assert corrected_microscope("blur", -6.0).blur_fwhm_A == 1.4
    pixel = corrected_microscope("pixel", -6.0)
    assert pixel.detector_pixel_A == 0.18 and pixel.blur_fwhm_A == 0.6
    assert corrected_microscope("in-range", -6.0).detector_pixel_A is None
    with pytest.raises(ValueError):
        corrected_microscope("tilt", 0.0)
    clean = np.full((32, 32), 1.0)
    a, b = ind.Spec("Pt", 3, "blur", -6.0), ind.Spec("Pt", 5, "blur", -6.0)
    # the same seed gives independent noise for two images, the same noise for one image
    assert not np.array_equal(ind.noise(clean, a, 7), ind.noise(clean, b, 7))
    assert np.array_equal(ind.noise(clean, a, 7), ind.noise(clean, a, 7))
    assert ind.noise(clean, a, 7).mean() == pytest.approx(0.45, abs=0.1)


def test_model_argument() -> None:
    assert ind.model_arg("v1=x.pt") == ("v1", Path("x.pt"))
    for bad in ("v1", "=x.pt", "nlm=x.pt", "v-1=x.pt"):
        with pytest.raises(argparse.ArgumentTypeError):
            ind.model_arg(bad)


def test_mean_matched_output_takes_the_counts_mean() -> None:
    est = np.full((8, 8), 2.0)
    est[0, 0] = 4.0
    counts = np.full((8, 8), 0.45 * 0.8)
    out = ind.mean_matched(est, counts)
    assert out.mean() == pytest.approx(0.8)  # intensity: mean count / dose
    assert out[0, 0] / out[1, 1] == pytest.approx(2.0)  # a scale, not an offset
    table = _toy().assign(a_bias=0.05, a_meanfix=30.0, clean_mean=0.8)
    text = ind.bias_table(table, ["a"])
    assert "| Pt | blur | 3 | 0.800 | +0.05 ± 0.00 | 22.00 ± 0.58 | 30.00 ± 0.00 |" in text
