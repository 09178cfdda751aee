"""benchmarks/prefilter_events.py: how much of a local change (a vacancy patch appearing) a
denoiser keeps. What it measures must hold for the methods whose behaviour is known: the
Wiener filter, which keeps only the lattice's Bragg reflections of a 256² frame, paints the
lattice back into the vacancy patch; a small Gaussian keeps most of the change."""

from __future__ import annotations

from tests.benchmark_scripts import load_benchmark

pe = load_benchmark("prefilter_events")


def test_the_wiener_filter_paints_over_a_vacancy_patch_a_gaussian_keeps() -> None:
    rows = pe.measure({}, pairs=3, names=["lattice 256², vacancy patch"])
    kept = {r["method"]: r["kept"] for r in rows}
    assert set(kept) == {"Gaussian 1.5 px", pe.WIENER_DEFAULTS, "Wiener SURE"}
    assert kept["Gaussian 1.5 px"] > 0.5 > 0.3 > kept["Wiener SURE"]
    assert kept[pe.WIENER_DEFAULTS] < 0.3
    assert "| lattice 256², vacancy patch | Wiener SURE |" in pe.table(rows)
