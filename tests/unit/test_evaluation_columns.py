"""Column finding: positions, refinement, polarity, labels."""

from __future__ import annotations

import numpy as np
import pytest

from etem.analysis.columns import columns_from_labels, find_columns
from etem.analysis.matching import detection_metrics
from etem.errors import InputError
from tests.evaluation_fixtures import lattice_image

PX = 0.2


def _truth(pos: np.ndarray):
    import pandas as pd

    return pd.DataFrame({"x_px": pos[:, 0], "y_px": pos[:, 1], "x_A": pos[:, 0] * PX,
                         "y_A": pos[:, 1] * PX})


@pytest.mark.parametrize("refine", ["centroid", "gaussian"])
def test_finds_every_lattice_column_with_subpixel_accuracy(refine):
    clean, _, pos = lattice_image(64, PX, offset_px=1.37)
    found = find_columns(clean, PX, 0.3, 0.6, 0.05, refine=refine, exclude_border_px=0)
    m = detection_metrics(found, _truth(pos), radius_A=0.5)
    assert m["recall"] == 1.0 and m["precision"] == 1.0
    assert m["rmse_pm"] < 2.0  # < 0.1 px at 0.2 Å/px
    assert set(found.columns) >= {"x_px", "y_px", "x_A", "y_A", "sigma_A", "intensity", "peak"}
    assert np.allclose(found["x_A"], found["x_px"] * PX)
    assert (found["intensity"] > 0).all()


def test_gaussian_fit_recovers_width_and_integrated_intensity():
    clean, _, _ = lattice_image(64, PX, sigma_A=0.4, amplitude=2.0)
    found = find_columns(clean, PX, 0.3, 0.6, 0.05, refine="gaussian")
    inner = found[(found["x_px"] > 10) & (found["x_px"] < 54) & (found["y_px"] > 10)
                  & (found["y_px"] < 54)]
    assert np.allclose(inner["sigma_A"], 0.4, atol=0.02)
    s_px = 0.4 / PX
    assert np.allclose(inner["intensity"], 2.0 * 2 * np.pi * s_px**2, rtol=0.05)


def test_dark_columns_need_dark_polarity():
    clean, _, pos = lattice_image(64, PX)
    dark = 2.0 - clean
    bright_found = find_columns(dark, PX, 0.3, 0.6, 0.05, polarity="bright")
    m_bright = detection_metrics(bright_found, _truth(pos), 0.5)
    for pol in ("dark", "auto"):
        m = detection_metrics(find_columns(dark, PX, 0.3, 0.6, 0.05, polarity=pol),
                              _truth(pos), 0.5)
        assert m["recall"] == 1.0 and m["precision"] == 1.0
    assert m_bright["precision"] < 0.5


def test_flat_image_has_no_columns_and_bad_input_raises():
    assert len(find_columns(np.ones((32, 32)), PX)) == 0
    with pytest.raises(InputError):
        find_columns(np.ones((4, 4, 4)), PX)
    with pytest.raises(InputError):
        find_columns(np.full((8, 8), np.nan), PX)
    with pytest.raises(InputError):
        find_columns(np.ones((8, 8)), -1.0)


def test_columns_from_labels_match_true_positions():
    _, cls, pos = lattice_image(64, PX, offset_px=0.5)
    lab = columns_from_labels(cls, PX)
    m = detection_metrics(lab, _truth(pos), 0.3)
    assert m["recall"] == 1.0 and m["precision"] == 1.0
    assert m["rmse_pm"] < 5.0
