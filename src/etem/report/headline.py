"""The report's summary: what the campaign found, in a few lines, before the tables.

Best network against the best baseline and the raw data, Mohan et al.'s protocol against the
published figures, the likelihood calibration check, the events of every movie (against the
truth where the movie carries it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from etem.io import read_table
from etem.paths import Layout
from etem.report import html as H

log = logging.getLogger("etem.report")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's object, or None when missing or broken (the report says what is missing)."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError):
        return None


def read_table_or_none(path: Path) -> pd.DataFrame | None:
    """A table, or None when missing or unreadable (a broken file must not break the report)."""
    if not path.exists():
        return None
    try:
        return read_table(path)
    except Exception as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None


#: Published reference for the denoising headline (Mohan et al., simulated Pt/CeO2 test set,
#: peak-1 PSNR): see SCIENCE.md and section_mohan.
PUBLISHED_PSNR_DB = (35.0, 38.0)
#: Methods that are baselines in the benchmark tables (everything else is a network).
BASELINE_PREFIXES = ("noisy", "flat", "gaussian", "nlm", "wiener", "temporal_mean")


def _overall(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of subset ``all`` indexed by method."""
    return table[table["subset"] == "all"].set_index("method")


def _denoising_headline(d: Path) -> list[str]:
    t = read_table_or_none(d / "denoising_summary.csv")
    if t is None or t.empty:
        return []
    rows = _overall(t)
    psnr = {str(k): float(v) for k, v in rows["psnr_db_mean"].items()}
    ssim = {str(k): float(v) for k, v in rows["ssim_mean"].items()}
    nets = [m for m in psnr if not m.startswith(BASELINE_PREFIXES)]
    bases = [m for m in psnr if m.startswith(BASELINE_PREFIXES[1:])]
    if not nets:
        return []
    best_net = max(nets, key=psnr.__getitem__)
    line = (f"Denoising, held-out test images (all doses): <b>{H.esc(best_net)}</b> "
            f"{psnr[best_net]:.1f} dB PSNR, SSIM {ssim[best_net]:.2f}")
    if bases:
        best_base = max(bases, key=psnr.__getitem__)
        gain = psnr[best_net] - psnr[best_base]
        cls = "ok" if gain > 0 else "bad"
        line += (f"; best baseline {H.esc(best_base)} {psnr[best_base]:.1f} dB "
                 f'(<span class="{cls}">{gain:+.1f} dB</span>)')
    if "noisy" in psnr:
        line += f"; raw {psnr['noisy']:.1f} dB"
    out = [line + "."]
    m = read_table_or_none(d / "mohan_summary.csv")
    if m is not None and best_net in set(m["method"]):
        v = float(_overall(m)["psnr_db_mean"].astype(float)[best_net])
        lo, hi = PUBLISHED_PSNR_DB
        cls = "ok" if v >= lo else "bad"
        out.append(f"Mohan et al.'s protocol (peak 1 count): {H.esc(best_net)} "
                   f'<span class="{cls}">{v:.1f} dB</span> against the published {lo:.0f}-'
                   f"{hi:.0f} dB.")
    return out


def _calibration_headline(d: Path) -> list[str]:
    far = read_table_or_none(d / "calibration_far.csv")
    if far is None or far.empty:
        return []
    cal = far[(far["kind"] == "calibrated") & (far["dose_e_per_px"].astype(str) == "all")]
    if cal.empty:
        return []
    ok = bool(cal["within_2pp"].all())
    worst = float((cal["observed"] - cal["alpha"]).abs().max())
    return [f'Likelihood calibration: false-alarm rates <span class="{"ok" if ok else "bad"}">'
            f'{"within" if ok else "outside"} ±2 percentage points</span> of nominal '
            f"(worst {100 * worst:.1f} pp) on held-out simulated vacuum."]


def _movie_headline(layout: Layout) -> list[str]:
    out = []
    for d in sorted((layout.root / "apply").glob("*/summary.json")):
        s = read_json(d)
        if s is None:
            continue
        onsets = ", ".join(str(e.get("onset_frame")) for e in s.get("events", [])[:8]
                           if isinstance(e, dict))
        line = (f"Movie <b>{H.esc(d.parent.name)}</b>: {s.get('n_frames', '?')} frames, "
                f"{s.get('n_events', 0)} event(s)" + (f" at frame(s) {onsets}" if onsets else ""))
        truth = (s.get("truth") or {}).get("events")
        if truth:
            line += (f"; against the truth: {truth.get('n_hits', 0)} of {truth.get('n_true', 0)}"
                     f" found, {truth.get('n_false_alarms', 0)} false alarm(s)")
        if not s.get("columns_analysed", True):
            line += f"; no column analysis ({H.esc(s.get('columns_reason', ''))})"
        out.append(line + ".")
    return out


def section_headline(layout: Layout) -> str:
    """What the campaign found, in a few lines (the tables follow below)."""
    d = layout.evaluation_dir
    items = _denoising_headline(d) + _calibration_headline(d) + _movie_headline(layout)
    if not items:
        return H.missing("no results yet to summarise")
    return '<div class="headline"><ul>' + "".join(f"<li>{i}</li>" for i in items) + \
        "</ul></div>"
