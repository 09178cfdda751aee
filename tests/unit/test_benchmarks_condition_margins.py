"""benchmarks/condition_margins.py: paired margins from `etem evaluate` folders. The margin
of a model over a baseline is the mean of the per-image differences, counted per group; two
folders must have been made on the same noisy frames (their baselines agree)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etem.errors import InputError
from tests.benchmark_scripts import load_benchmark

cm = load_benchmark("condition_margins")


def _folder(path: Path, supervised: list[float], nlm_shift: float = 0.0) -> Path:
    rows = []
    images = [("a", "test", ""), ("b", "held_out_condition", "blur"),
              ("c", "held_out_condition", "blur"), ("d", "held_out_condition", "pixel")]
    for (image, split, cond), sup in zip(images, supervised, strict=True):
        values = {"flat": 20.0, "gaussian_oracle": 25.0, "nlm": 21.0 + nlm_shift,
                  "wiener_sure": 26.0, "supervised": sup}
        blur = {"a": 1.2, "b": 1.4, "c": 1.35, "d": 0.5}[image]
        rows += [{"image_id": image, "split": split, "condition": cond, "method": m,
                  "psnr_mohan_db": v, "blur_fwhm_A": blur} for m, v in values.items()]
    path.mkdir()
    pd.DataFrame(rows).to_csv(path / cm.TABLE, index=False)
    return path


def test_paired_margins_per_group(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", [30.0, 27.0, 24.0, 29.0])
    b = _folder(tmp_path / "b", [31.0, 28.0, 26.0, 30.0])
    m = cm.margins(cm.wide({"v3": a, "v4": b}, "psnr_mohan_db"), ["v3", "v4"]).set_index("group")
    held = m.loc["split=held_out_condition"]
    assert held["n"] == 3
    assert held["v3-gaussian_oracle"] == pytest.approx((2 - 1 + 4) / 3)
    assert held["v3-gaussian_oracle_below"] == 1 and held["v4-gaussian_oracle_below"] == 0
    assert m.loc["split=held_out_condition|condition=blur", "v4-wiener_sure"] == pytest.approx(1.0)
    assert m.loc["split=test", "n"] == 1 and "split=test|condition=" not in m.index
    assert "| split=held_out_condition | 3 |" in cm.markdown(m.reset_index(), ["v3", "v4"])


def test_folders_of_other_noisy_frames_are_refused(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", [30.0, 27.0, 24.0, 29.0])
    b = _folder(tmp_path / "b", [31.0, 28.0, 26.0, 30.0], nlm_shift=0.5)
    with pytest.raises(SystemExit, match="baseline nlm differs"):
        cm.wide({"v3": a, "v4": b}, "psnr_mohan_db")


def test_margins_per_bin_of_an_image_parameter(tmp_path: Path) -> None:
    """--by blur_fwhm_A --bins 0 1 1.3 2: each split's images in their bins, empty bins left
    out, an image outside the edges in none."""
    a = _folder(tmp_path / "a", [30.0, 27.0, 24.0, 29.0])
    table = cm.wide({"v3": a}, "psnr_mohan_db", by="blur_fwhm_A")
    m = cm.margins(table, ["v3"], cm.binned_groups(table, "blur_fwhm_A", [0, 1, 1.3, 2]))
    m = m.set_index("group")
    assert list(m.index) == ["split=held_out_condition|blur_fwhm_A in (0.0, 1.0]",
                             "split=held_out_condition|blur_fwhm_A in (1.3, 2.0]",
                             "split=test|blur_fwhm_A in (1.0, 1.3]"]
    held = m.loc["split=held_out_condition|blur_fwhm_A in (1.3, 2.0]"]
    assert held["n"] == 2 and held["v3-gaussian_oracle"] == pytest.approx((2 - 1) / 2)
    narrow = cm.binned_groups(table, "blur_fwhm_A", [1.3, 2])
    assert sorted(len(g) for _, g in narrow) == [2]
    with pytest.raises(SystemExit, match="no column 'defocus_nm'"):
        cm.wide({"v3": a}, "psnr_mohan_db", by="defocus_nm")
    with pytest.raises(InputError, match="ascending"):
        cm.binned_groups(table, "blur_fwhm_A", [1.3, 0.5])
    with pytest.raises(InputError, match="no row has a number"):
        cm.binned_groups(table.assign(regime="dark"), "regime", [0, 1])
