"""benchmarks/learning_curve.py: the saturating fit recovers a known curve, an unreachable
target is reported as such, the data-volume line, the one-command CLI (issue 14)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.benchmark_scripts import load_benchmark

lc = load_benchmark("learning_curve")

A, B, C = 30.0, 6.0, 0.4  # PSNR(s) = A - B (s / 1000)^(-C)


def _curve(noise: float = 0.0, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(250, 8001, 250, dtype=float)
    y = A - B * (steps / 1000.0) ** (-C)
    return steps, y + np.random.default_rng(seed).normal(0, noise, len(steps))


def test_fit_recovers_a_known_curve() -> None:
    steps, y = _curve()
    f = lc.fit_saturating(steps, y, x_ref=1000.0)
    assert (f.a, f.b, f.c) == pytest.approx((A, B, C), rel=1e-3)
    # steps to 28 dB: 1000 * (B / (A - 28))^(1 / C)
    assert f.steps_to(28.0) == pytest.approx(1000 * (B / 2.0) ** (1 / C), rel=1e-3)
    # with validation noise the asymptote stays within its bootstrap interval and 0.6 dB
    steps, y = _curve(noise=0.1)
    res = lc.analyse(steps, y, target=28.0, reference=None, n_boot=200, seed=0)
    assert res["fit"]["a"] == pytest.approx(A, abs=0.6)
    lo, _, hi = res["bootstrap"]["a_p5_p50_p95"]
    assert lo <= A <= hi
    assert res["fit"]["c"] == pytest.approx(C, abs=0.1)
    t = res["target"]
    assert t["reachable"] and t["reachable_share_bootstrap"] > 0.9
    true_steps = 1000 * (B / (A - 28.0)) ** (1 / C)
    assert t["steps"] == pytest.approx(true_steps, rel=0.25)


def test_unreachable_target_is_reported_as_such() -> None:
    steps, y = _curve(noise=0.05)
    res = lc.analyse(steps, y, target=A + 3.0, reference=None, n_boot=200, seed=0)
    t = res["target"]
    assert not t["reachable"] and math.isinf(t["steps"])
    assert t["reachable_share_bootstrap"] < 0.1
    text = lc.summary_markdown(res, "synthetic", None, "")
    assert "not reachable at this network size" in text
    # a target given in another metric: the gain is added to the fit at the last step
    res = lc.analyse(steps, y, target=40.0, reference=39.0, n_boot=50, seed=0)
    assert res["target"]["gain_needed_db"] == pytest.approx(1.0)
    assert res["target"]["target_on_curve"] == pytest.approx(res["fit_at_last_step"] + 1.0)
    assert res["target"]["reachable"]


def test_flat_curve_has_no_gain_left() -> None:
    steps = np.arange(100, 2001, 100, dtype=float)
    f = lc.fit_saturating(steps, 20.0 - 0.001 * np.log(steps))  # slowly falling
    assert f.b == 0.0 and math.isinf(f.steps_to(25.0))


def test_data_volume_line_and_saturating_fit() -> None:
    dv = lc.data_volume([(100, 20.0), (400, 22.0)], 25.0, 0.05, 3.0)
    assert dv["model"] == "loglinear"
    assert dv["fit"]["db_per_doubling"] == pytest.approx(1.0)
    assert dv["images_to_target"] == pytest.approx(100 * 2**5)
    n = np.array([50, 100, 200, 400, 800, 1600], dtype=float)
    dv = lc.data_volume([(x, 30 - 8 * (x / 100) ** -0.5) for x in n], 31.0, 0.05, 3.0)
    assert dv["model"] == "saturating" and dv["fit"]["a"] == pytest.approx(30.0, rel=1e-3)
    assert math.isinf(dv["images_to_target"])


def test_cli_one_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steps, y = _curve(noise=0.05)
    csv = tmp_path / "learning_curve.csv"
    pd.DataFrame({"step": steps, "val_psnr": y, "lr": 1e-3}).to_csv(csv, index=False)
    (tmp_path / "model_card.json").write_text(json.dumps(
        {"training": {"steps": 8000, "wall_hours": 2.0}}))
    out = tmp_path / "out"
    rc = lc.main(["--curve", str(csv), "--target", "35", "--reference", "20",
                  "--data-points", "67:20", "531:22", "--bootstrap", "50", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "not reachable at this network size" in text  # +15 dB over the curve's 29 dB
    res = json.loads((out / "learning_curve_fit.json").read_text())  # strict JSON (no inf)
    assert res["target"]["steps"] == "inf" and res["target"]["reachable"] is False
    assert res["hours_per_step"] == pytest.approx(2.0 / 8000)
    # the data target is the largest-N point plus the same gain: 22 + 15 dB
    assert res["data_volume"]["target"] == pytest.approx(37.0)
    assert (out / "learning_curve_fit.png").stat().st_size > 10_000


def test_cli_refuses_too_short_a_curve(tmp_path: Path) -> None:
    csv = tmp_path / "learning_curve.csv"
    pd.DataFrame({"step": [250, 500], "val_psnr": [10.0, 11.0]}).to_csv(csv, index=False)
    with pytest.raises(SystemExit, match="at least 3"):
        lc.main(["--curve", str(csv), "--out", str(tmp_path / "out")])
