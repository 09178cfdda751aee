"""The report's detection-power section reads a bank of benchmarks/detection_power.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from etem.report.detection import MATCHED, section_detection_power


def _bank(path: Path) -> Path:
    rows = []
    # etem finds 3 of 4 rotations, PELT at etem's rate 1 of 4; etem's onsets off by 1 once
    for i, mag in enumerate((1.0, 3.0, 8.0, 15.0)):
        rows.append({"kind": "rotation", "magnitude": mag, "dose": 0.5, "seed": 3,
                     "method": "etem", "found": i > 0, "onset_error": (1 if i == 1 else 0)
                     if i > 0 else None})
        rows.append({"kind": "rotation", "magnitude": mag, "dose": 0.5, "seed": 3,
                     "method": "PELT" + MATCHED, "found": i == 3,
                     "onset_error": 0 if i == 3 else None})
    data = {"fa_per_1000": {"etem": 0.5}, "matched": {"PELT": {"fa_per_1000": 0.25}},
            "rows": rows}
    path.write_text(json.dumps(data))
    return path


def test_section_shows_power_and_false_alarms_at_matched_rate(tmp_path: Path) -> None:
    html = section_detection_power([_bank(tmp_path / "bank.json")])
    assert "seed 3" in html and "<img" in html
    table = html[html.index("<table"):html.index("</table>")]
    etem = table[table.index("<td>etem</td>"):]
    cells = [c.split("</td>")[0] for c in etem.split("<td>")[1:5]]
    assert cells == ["etem", "0.5", "0.75", "0.3333"]  # FAR, power 3/4, mean |onset| 1/3
    pelt = table[table.index(f"<td>PELT{MATCHED}</td>"):]
    assert [c.split("</td>")[0] for c in pelt.split("<td>")[1:4]] == [
        f"PELT{MATCHED}", "0.25", "0.25"]
    assert table.index("<td>etem</td>") < table.index(f"<td>PELT{MATCHED}</td>")


def test_section_without_bank_says_so(tmp_path: Path) -> None:
    assert 'class="missing"' in section_detection_power([])
    (tmp_path / "empty.json").write_text("{}")
    html = section_detection_power([tmp_path / "empty.json"])
    assert 'class="missing"' in html


def test_report_refuses_a_missing_bank_file_in_one_line(etem_bin: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [etem_bin, "report", "--results", str(tmp_path),
         "--detection-power", str(tmp_path / "nope.json")],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.json: no such file" in lines[0]
    assert not (tmp_path / "report").exists()
