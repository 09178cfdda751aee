"""Report section: detection power of the event detectors on a bank of generated movies.

Reads the JSON written by ``benchmarks/detection_power.py --json FILE`` (one file per bank of
movies: events of known kind, magnitude and dose, plus long stable movies): false alarms per
1,000 stable frames of each method, detection probability of etem and of the change-point
baselines (PELT, BOCPD) at their setting matched to etem's false-alarm rate, and detection
probability against the event's magnitude. The bank is too heavy for the campaign (~15 min
per bank on 2 cores), so the report shows the last measured one and says where it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from etem.plotting import plt
from etem.report import html as H

#: Suffix of a baseline's method name at the setting matched to etem's false-alarm rate.
MATCHED = "@etem-FAR"

#: Units of the event magnitudes of the bank, by kind.
MAGNITUDE_UNITS = {"rotation": "°", "surface_loss": "columns lost", "vacancy": "vacancies"}


def _bank(path: Path) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """(the JSON, its event rows) of one bank, None when unreadable or empty."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    rows = pd.DataFrame(data.get("rows") or [])
    if rows.empty or not {"method", "found", "kind", "magnitude", "dose"} <= set(rows):
        return None
    return data, rows


def _power_figure(rows: pd.DataFrame, title: str) -> Any:
    """Detection probability against magnitude, one panel per kind, one line per method."""
    kinds = sorted(rows["kind"].unique())
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.0 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        sub = rows[rows["kind"] == kind]
        for method, g in sub.groupby("method", sort=True):
            p = g.groupby("magnitude")["found"].mean()
            ax.plot(p.index, p.to_numpy(), marker="o", label=str(method))
        ax.set_xlabel(f"{kind.replace('_', ' ')} [{MAGNITUDE_UNITS.get(kind, 'magnitude')}]")
        ax.set_ylabel("detection probability")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0][0].legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def section_detection_power(paths: list[Path]) -> str:
    """The section for the bank files ``paths`` (missing ones are said to be missing)."""
    banks = [(p, _bank(p)) for p in paths]
    if not any(b is not None for _, b in banks):
        return H.missing("no detection-power bank measured (run `python "
                         "benchmarks/detection_power.py --json FILE` and pass the file to "
                         "`etem report --detection-power FILE`)")
    out = ["<p>Events of known kind, magnitude and dose in generated movies, and long stable "
           "movies for the false-alarm rate; the baselines run on the same frame statistics "
           "at the setting whose false alarms on the stable movies are at most etem's "
           "(matched false-alarm rate). Measured offline by "
           "<code>benchmarks/detection_power.py</code>, not by this campaign.</p>"]
    for path, bank in banks:
        if bank is None:
            out.append(H.missing(f"{path}: no detection-power bank there"))
            continue
        data, rows = bank
        seeds = sorted({int(s) for s in rows.get("seed", pd.Series(dtype=int)).unique()})
        title = f"bank {path.name} (seed {', '.join(map(str, seeds)) or '?'})"
        out.append(f"<h3>{H.esc(title)}</h3>")
        matched = data.get("matched") or {}
        fa = {"etem": (data.get("fa_per_1000") or {}).get("etem")}
        for m in ("PELT", "BOCPD"):  # the benchmark's rows of a baseline at etem's rate
            fa[f"{m}{MATCHED}"] = (matched.get(m) or {}).get("fa_per_1000")
        at = rows[rows["method"].isin(list(fa))]
        power = at.groupby("method")["found"].mean()
        onset = at[at["found"]].groupby("method")["onset_error"].apply(
            lambda s: float(s.abs().mean()) if len(s) else float("nan"))
        order = [m for m in fa if m in set(at["method"])]
        power, onset = power.reindex(order), onset.reindex(order)
        table = pd.DataFrame({
            "false alarms / 1,000 stable frames": pd.Series(fa).reindex(order),
            "detection probability": power,
            "mean |onset error| [frames]": onset,
        })
        out.append(H.table(table.rename_axis("method").reset_index()))
        by = at.pivot_table(index=["kind", "dose"], columns="method", values="found",
                            aggfunc="mean")
        out.append(H.folded("detection probability by kind and dose [e/px/frame]",
                            H.table(by.reset_index())))
        out.append(H.figure(_power_figure(at, title), "detection probability vs magnitude",
                            width=1000))
    return "".join(out)
