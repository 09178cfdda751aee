"""benchmarks/independent_set.py: the summary's margins, s.e.m. and below-oracle counts on a
toy per-image table, its subsets, the Markdown, the conditions and the noise streams, the
widened conditions' microscopes, pixels and fields, and the way the models get their frames
(apply's resampling there, the estimate brought back) (issue 14)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from etem.simulation.grid import image_grid
from etem.simulation.microscope import scherzer_defocus_nm
from etem.simulation.reference import corrected_microscope
from tests.benchmark_scripts import load_benchmark

ind = load_benchmark("independent_set")


def _toy() -> pd.DataFrame:
    """Pt blur: a beats the oracle by 1, 2, 3 dB; b is 1.5 dB below it (and 0.5 dB below NLM)
    on the first image; the Wiener filter 4 dB above the oracle, flat 30 dB (best).
    CeO2 in-range: a = oracle + 1 on both; b = a + 1; Wiener oracle + 3.5 (best).
    Pt pixel-0.05 (widened), two images: Wiener = oracle + 3 and NLM + 5 exactly (meets), a =
    oracle + 6 and NLM + 8 (best, meets), b = oracle + 1."""
    rows = []
    for i, (ga, gb) in enumerate([(1.0, -1.5), (2.0, 1.0), (3.0, 1.0)]):
        rows.append({"material": "Pt", "condition": "blur", "noisy": 5.0, "flat": 30.0,
                     "oracle_gaussian": 20.0, "wiener": 24.0,
                     "nlm": 19.0 + i, "a": 20.0 + ga, "b": 20.0 + gb})
    for _ in range(2):
        rows.append({"material": "CeO2", "condition": "in-range", "noisy": 6.0, "flat": 16.0,
                     "oracle_gaussian": 22.0, "wiener": 25.5, "nlm": 21.0, "a": 23.0,
                     "b": 24.0})
    return pd.DataFrame(rows)


def _widened() -> pd.DataFrame:
    extra = pd.DataFrame([{"material": "Pt", "condition": "pixel-0.05", "noisy": 5.0,
                           "flat": 10.0, "oracle_gaussian": 20.0, "wiener": 23.0,
                           "nlm": 18.0, "a": 26.0, "b": 21.0}] * 2)
    return pd.concat([_toy(), extra], ignore_index=True)


def test_summary_margins_and_counts() -> None:
    s = ind.summarize(_toy(), ["a", "b"]).set_index("group")
    assert list(s.index) == ["Pt, blur", "CeO2, in-range", "Pt, all", "CeO2, all",
                             "all, blur", "all, in-range", "held-out conditions", "all"]
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


def test_summary_gives_the_wiener_margins_the_best_method_and_the_targets() -> None:
    s = ind.summarize(_widened(), ["a", "b"]).set_index("group")
    assert "widened conditions" in s.index and s.loc["widened conditions", "n"] == 2
    assert s.loc["all, pixel-0.05", "n"] == 2 and s.loc["Pt, all", "n"] == 5
    pt = s.loc["Pt, blur"]
    assert pt["wiener_over_gauss_mean"] == pytest.approx(4.0)
    assert pt["wiener_over_nlm_mean"] == pytest.approx(4.0)  # 24 - (19, 20, 21)
    assert pt["wiener_below_nlm"] == 0 and not pt["wiener_meets"]  # +4 over NLM < +5
    assert pt["best"] == "flat"  # the noisy image is not a candidate; flat is
    assert s.loc["CeO2, in-range", "best"] == "wiener"
    px = s.loc["Pt, pixel-0.05"]
    assert px["wiener_meets"]  # +3 and +5 exactly: the targets are >=
    assert px["best"] == "a" and px["a_meets"]  # +6 / +8
    assert not px["b_meets"]  # +1 / +3
    assert not s.loc["CeO2, in-range", "b_meets"]  # +2 / +3


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
    assert "Wiener − oracle G" in text and "| Wiener |" in text.splitlines()[2]
    ce_row = next(line for line in text.splitlines() if line.startswith("| CeO2, in-range |"))
    assert ce_row.endswith("| Wiener |")  # the best method, by its label


def test_markdown_reads_a_table_without_wiener() -> None:
    old = _toy().drop(columns="wiener")
    text = ind.markdown(ind.summarize(old, ["a"]), ["a"])
    assert "Wiener" not in text and "a − oracle G" in text


def test_wiener_sure_gets_its_column_and_margins() -> None:
    t = _toy().assign(wiener_sure=lambda d: d["wiener"] + 1.0)
    s = ind.summarize(t, ["a"]).set_index("group")
    assert s.loc["Pt, blur", "wiener_sure_over_gauss_mean"] == pytest.approx(5.0)
    assert s.loc["CeO2, in-range", "best"] == "wiener_sure"
    text = ind.markdown(s.reset_index(), ["a"])
    assert "Wiener SURE − oracle G" in text and "| Wiener SURE |" in text.splitlines()[2]


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


def test_widened_conditions_microscopes_pixels_and_defoci() -> None:
    unc = ind.Spec("Pt", 3, "uncorrected", 0.0).microscope()
    assert (unc.energy_kv, unc.cs_um, unc.c5_mm) == (200.0, 1200.0, 0.0)
    fine = ind.Spec("Pt", 3, "pixel-0.05", -6.0).microscope()
    assert fine.energy_kv == 300.0 and fine.blur_fwhm_A == 0.6 and fine.detector_pixel_A is None
    assert ind.Spec("Pt", 3, "pixel-0.05", 0.0).pixel_A(0.2) == 0.05
    assert ind.Spec("Pt", 3, "pixel-0.3", 0.0).pixel_A(0.2) == 0.3
    assert ind.Spec("Pt", 3, "uncorrected", 0.0).pixel_A(0.2) == 0.2
    assert ind.Spec("Pt", 3, "blur", 0.0).pixel_A(0.25) == 0.25
    spec = list(ind.specs([3], [], [-4.0, 0.0], ["uncorrected", "in-range"], False))
    assert [s.defocus_nm for s in spec] == pytest.approx(
        [scherzer_defocus_nm(1200.0, 200.0) - 4, scherzer_defocus_nm(1200.0, 200.0),
         scherzer_defocus_nm(-15.0, 300.0) - 4, scherzer_defocus_nm(-15.0, 300.0)])
    assert spec[1].defocus_nm == pytest.approx(67.19, abs=0.01)


@pytest.mark.parametrize("condition", ["pixel-0.05", "pixel-0.3", "uncorrected"])
def test_widened_fields_span_whole_grid_points_per_cell(condition: str) -> None:
    """abTEM spreads atoms over neighbouring grid points: each unit cell must hold a whole
    number of them, or the columns differ from cell to cell."""
    for material, a in (("Pt", 3.924), ("CeO2", 5.411)):
        atoms = ind.Spec(material, 2, condition, 0.0).atoms()
        n = ind.LATERAL[condition][material]
        assert atoms.cell[0, 0] == pytest.approx(n * a)
        px = ind.Spec(material, 2, condition, 0.0).pixel_A(0.2)
        gpts = image_grid((n * a, n * a), min(0.1, px), 8).gpts
        assert gpts % n == 0
    # the first conditions keep their fields (7 x 7 Pt)
    assert ind.Spec("Pt", 2, "in-range", 0.0).atoms().cell[0, 0] == pytest.approx(7 * 3.924)


def test_to_native_brings_binned_and_finer_estimates_back() -> None:
    # 4 x 4 binning: processed pixel a holds the mean of image pixels 4a..4a+3 of a ramp
    # 0.01 i, i.e. 0.01 (4a + 1.5); back at the image pixels the ramp returns
    i = np.arange(64, dtype=np.float64)
    ramp = np.add.outer(0.01 * i, 0.02 * i)
    binned = ramp.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    back = ind.to_native(binned, 4.0, (66, 66))  # 2 rows apply cropped: held constant
    assert back.shape == (66, 66)
    # exact inside (a cubic spline reproduces a ramp); the 1.5 image pixels outside the
    # outermost processed pixel centres held constant (off by up to 1.5 x the ramp's step)
    assert np.allclose(back[20:44, 20:44], ramp[20:44, 20:44], atol=1e-4)
    assert np.allclose(back[:64, :64], ramp, atol=1.5 * (0.01 + 0.02) + 0.005)
    assert back[0, 0] == pytest.approx(binned[0, 0])
    assert np.allclose(back[64:, 10], back[63, 10])
    # processed pixels 2/3 of an image pixel (0.3 Å -> 0.2 Å): each image pixel the area
    # mean of the processed pixels it covers (1.5 x 1.5 of them)
    est = np.zeros((9, 9)) + 0.5
    est[:, 1] = 2.0  # covers 1/3 of image pixel 0's width and 2/3 of image pixel 1's
    est[:, 2] = 0.5
    out = ind.to_native(est + 0.25, 2.0 / 3.0, (6, 6))
    assert out.shape == (6, 6)
    assert out[0, 0] == pytest.approx(0.75 + 1.5 / 1.5 * 0.5 * 1.0)  # (1*0.75 + .5*2.25)/1.5
    assert out[0, 1] == pytest.approx((0.5 * 2.25 + 1.0 * 0.75) / 1.5)
    assert np.allclose(out[:, 3:], 0.75)
    assert np.allclose(ind.to_native(binned, 1.0, (16, 16)), binned)


class _Echo(torch.nn.Module):
    """A 'denoiser' that returns its input: the counts over the dose it was given."""

    multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


@pytest.mark.parametrize(("pixel", "dose", "shape"),
                         [(0.05, 0.45 * 16, (2, 96, 96)), (0.3, 0.45 * (2 / 3) ** 2, (2, 30, 30)),
                          (0.2, 0.45, (2, 40, 40))])
def test_models_get_the_frames_apply_would_give(pixel: float, dose: float,
                                                shape: tuple[int, int, int]) -> None:
    """0.05 Å: 4 x 4 binned (7.2 e/px); 0.3 Å: counts split by overlap onto 0.2 Å pixels
    (0.2 e/px); 0.2 Å: as is. The estimate comes back at the image's pixels, its mean the
    counts' mean over the dose (vacuum = 1)."""
    counts = np.random.default_rng(1).poisson(0.45 * 0.8, shape).astype(np.float32)
    est, seen = ind.through_apply(_Echo(), 0.2, counts, pixel, 5)
    assert seen == pytest.approx(dose)
    assert est.shape == shape
    assert est.mean() == pytest.approx(0.8, rel=0.05)
    if pixel == 0.2:
        assert np.allclose(est, counts / 0.45, atol=1e-5)
