"""benchmarks/wiener_local.py's windowed Wiener filters (experimental, not in the package):
wiener_local (each tile's own gain) and wiener_gated (the global filter's bands scaled by
their local regression on the counts). Basic properties, and what the benchmark found: the
tile filter cleans vacuum beside a crystal but loses the crystal at low dose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etem.analysis import baselines
from etem.config.evaluation import WIENER_ALPHA, WIENER_SMOOTH_PX
from etem.errors import InputError
from tests.benchmark_scripts import load_benchmark
from tests.evaluation_fixtures import lattice_image

wl = load_benchmark("wiener_local")

DOSE = 0.45  # e/px in vacuum, issue 14's


def _filters():
    return {"local": lambda c, d: wl.wiener_local(c, d, window_px=32),
            "gated": lambda c, d: wl.wiener_gated(c, d, window_px=32)}


@pytest.mark.parametrize("name", ["local", "gated"])
@pytest.mark.parametrize("shape", [(128, 96), (40, 23), (20, 150)])
def test_mean_kept_and_counts_untouched(name, shape):
    """Output: float64 intensity of the counts' shape, mean = counts' mean / dose exactly
    (tiles larger than the image shrink to it), the caller's counts unchanged."""
    rng = np.random.default_rng(sum(shape))
    clean = 1.0 + 0.6 * np.cos(2 * np.pi * np.arange(shape[1]) / 5.3)[None, :]
    counts = rng.poisson(clean * DOSE, shape).astype(np.float64)
    kept = counts.copy()
    out = _filters()[name](counts, DOSE)
    assert out.dtype == np.float64 and out.shape == shape and np.isfinite(out).all()
    assert out.mean() == pytest.approx(counts.mean() / DOSE, rel=1e-12)
    np.testing.assert_array_equal(counts, kept)


@pytest.mark.parametrize("name", ["local", "gated"])
def test_pure_noise_comes_out_flat(name):
    """No structure: nothing stands above the noise in any tile; what is left is the tiles'
    own means (the tile filter keeps each tile's zero frequency)."""
    counts = np.random.default_rng(3).poisson(np.full((128, 96), DOSE)).astype(float)
    out = _filters()[name](counts, DOSE)
    noisy_mse = np.mean((counts / DOSE - 1.0) ** 2)
    assert np.mean((out - 1.0) ** 2) < 0.002 * noisy_mse


def test_on_a_crystal_the_gated_filter_is_the_global_one():
    """Where the lattice is everywhere, each band's local regression is ~1: the global
    filter's output (within a few % of its error), while the tile filter, whose 64-px tiles
    see a Bragg reflection's power over far fewer pixels, loses the lattice at 0.45 e/px."""
    clean, _, _ = lattice_image(128, 0.2, sigma_A=0.5)
    for seed in range(2):
        counts = np.random.default_rng(seed).poisson(clean * DOSE).astype(float)
        err = {name: np.mean((f(counts, DOSE) - clean) ** 2) for name, f in {
            "global": baselines.wiener,
            "gated": lambda c, d: wl.wiener_gated(c, d, window_px=64),
            "local": lambda c, d: wl.wiener_local(c, d, window_px=64)}.items()}
        assert err["gated"] < 1.1 * err["global"]
        assert err["local"] > 2.0 * err["global"]


def test_beside_a_crystal_the_tile_filter_leaves_the_vacuum_flat():
    """A lattice on the left half, vacuum on the right, 2 e/px: the global filter keeps the
    lattice's frequencies over the whole frame (their noise and the lattice's extension show
    in the vacuum), the tile filter does not (its vacuum tiles keep nothing above the noise)
    — at the price of more error on the crystal (the benchmark's negative result)."""
    n, dose = 256, 2.0
    lattice, _, _ = lattice_image(n, 0.2, spacing_A=1.6, sigma_A=0.3, amplitude=0.8)
    clean = np.ones((n, n))
    clean[:, : n // 2] = lattice[:, : n // 2]
    counts = np.random.default_rng(0).poisson(clean * dose).astype(float)
    glob = baselines.wiener(counts, dose)
    loc = wl.wiener_local(counts, dose, window_px=64)
    vacuum = np.s_[:, n // 2 + 16:]
    crystal = np.s_[:, : n // 2 - 16]
    assert np.std(loc[vacuum]) < 0.5 * np.std(glob[vacuum])
    assert np.mean((loc - clean)[crystal] ** 2) > np.mean((glob - clean)[crystal] ** 2)


@pytest.mark.parametrize("kw", [{"alpha": 0.0}, {"smooth_px": 4}, {"dqe": 0.0},
                                {"window_px": 2}])
@pytest.mark.parametrize("name", ["wiener_local", "wiener_gated"])
def test_bad_parameters_are_one_line_input_errors(name, kw):
    with pytest.raises(InputError) as exc:
        getattr(wl, name)(np.ones((16, 16)), 1.0, **kw)
    assert "\n" not in str(exc.value) and name in str(exc.value)


def test_bad_mix_and_bands():
    with pytest.raises(InputError):
        wl.wiener_local(np.ones((16, 16)), 1.0, mix=1.5)
    with pytest.raises(InputError):
        wl.wiener_gated(np.ones((16, 16)), 1.0, bands=0)


def test_heldout_markdown_rows_and_paired_differences():
    """The held-out table: the independent set's groups, mean PSNR per method and each local
    filter's paired difference to the global one with the images where it is better."""
    rows = []
    for material, condition, base in (("Pt", "blur", 30.0), ("Pt/CeO2", "pixel-0.05", 28.0)):
        for k in range(2):
            rows.append({"material": material, "condition": condition, "seed": k,
                         "oracle_gaussian": base - 1, "wiener": base,
                         "wiener_local": base + (1.0 if k else -1.0), "wiener_gated": base + 0.5})
    table = wl.heldout_markdown(pd.DataFrame(rows))
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert {"Pt, blur", "Pt/CeO2, pixel-0.05", "Pt, all", "all, blur", "widened conditions",
            "all"} <= set(lines)
    assert lines["all"] == ("| all | 4 | 28.00 | 29.00 | 29.00 | 29.50 | +0.00 ± 0.58 (2) | "
                            "+0.50 ± 0.00 (4) |")


def test_events_share_the_change_kept_measure_of_prefilter_events() -> None:
    """``events`` is prefilter_events' measure with the local variants added: the global
    filter named as a variant at its defaults keeps what the classical row keeps."""
    text = wl.events([f"G:{WIENER_ALPHA}:{WIENER_SMOOTH_PX}"], pairs=2)
    rows = [line.split(" | ") for line in text.splitlines() if "lattice 256²" in line]
    kept = {r[1]: r[2] for r in rows}
    defaults = wl.prefilter_events.WIENER_DEFAULTS
    assert kept[f"local G:{WIENER_ALPHA}:{WIENER_SMOOTH_PX}"] == kept[defaults]
    assert float(kept["Gaussian 1.5 px"].split()[0]) > 0.5 > float(kept[defaults].split()[0])
