"""benchmarks/detection_power.py on a tiny bank: the three detectors run on the same frame
statistics, the report and the rows agree, etem finds a clear rotation (issue 15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_detection_power_script_on_a_tiny_bank(tmp_path: Path) -> None:
    out, js = tmp_path / "dp.md", tmp_path / "dp.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "detection_power.py"),
        "--size", "64", "--frames", "40", "--rotations", "12", "--surface", "6",
        "--doses", "2", "--stable-frames", "120", "--stable-size", "48", "--n-stable", "2",
        "--out", str(out), "--json", str(js),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=600)
    res = json.loads(js.read_text())
    rows = res["rows"]
    assert {r["method"] for r in rows} == {"etem", "PELT", "BOCPD"}
    assert len(rows) == 3 * 2  # 2 movies x 3 detectors
    assert set(res["fa_per_1000"]) == {"etem", "PELT", "BOCPD"}
    etem_rot = next(r for r in rows if r["method"] == "etem" and r["kind"] == "rotation")
    assert etem_rot["found"] and abs(etem_rot["onset_error"]) <= 1
    assert etem_rot["kind_found"] == "rotation"
    text = out.read_text()
    assert "False alarms per 1,000 stable frames" in text and "| PELT |" in text
    # the report shows the rows' numbers
    for method in ("etem", "PELT", "BOCPD"):
        g = [r for r in rows if r["method"] == method]
        p = sum(r["found"] for r in g) / len(g)
        assert f"| {method} | {p:.2f} |" in text
