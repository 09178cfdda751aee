"""Paired margins of denoisers over the baselines, from `etem evaluate` folders.

Reads ``conditions_per_image.csv`` (the cross-condition table, contract in
``etem.evaluation.conditions``) of one or more ``etem evaluate --out`` folders made on the
same images (same config and index; one denoiser each) and prints, per group of
:func:`etem.evaluation.conditions.condition_groups` (each split, each held-out band), the mean
of every baseline and every model and, for every model, its paired margin over the oracle
Gaussian, NLM and the SURE-chosen Wiener filter: mean ± s.e.m. over images [dB] and the
number of images below. The baselines must agree between the folders (the same noisy
frames): checked, to 1e-6 dB.

With ``--by COLUMN --bins E0 E1 ...`` the groups are instead each split's images binned by an
image parameter of the table (``blur_fwhm_A``, ``detector_pixel_A``, ``defocus_nm``, ...;
bins (E0, E1], (E1, E2], ...): whether a held-out band's margin is the band's being unseen or
the images' being hard shows in the same bins of the test split.

Usage: python benchmarks/condition_margins.py --eval v3=DIR --eval v4=DIR2
       [--metric psnr_mohan_db] [--by blur_fwhm_A --bins 0 0.6 0.9 1.1 1.3 2]
       [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from etem.errors import InputError
from etem.evaluation.conditions import binned_groups, condition_groups

BASELINES = ("flat", "gaussian_oracle", "nlm", "wiener_sure")
AGAINST = ("gaussian_oracle", "nlm", "wiener_sure")
TABLE = "conditions_per_image.csv"


def wide(evals: dict[str, Path], metric: str, by: str | None = None) -> pd.DataFrame:
    """One row per image: the split, condition (and the image parameter ``by``) and
    ``metric`` of each baseline and of each model (the ``supervised`` rows of the folder named
    by its label)."""
    table: pd.DataFrame | None = None
    param: pd.Series | None = None
    for label, folder in evals.items():
        df = pd.read_csv(folder / TABLE)
        df["condition"] = df["condition"].fillna("").astype(str)
        if by is not None and param is None:
            if by not in df:
                raise SystemExit(f"{folder / TABLE}: no column {by!r} to bin by")
            param = df.groupby("image_id")[by].first()
        pv = df.pivot_table(index=["image_id", "split", "condition"], columns="method",
                            values=metric, aggfunc="first")
        if "supervised" not in pv:
            raise SystemExit(f"{folder / TABLE}: no supervised rows (evaluated without "
                             "--denoiser)")
        part = pv[[b for b in BASELINES if b in pv]].copy()
        part[label] = pv["supervised"]
        if table is None:
            table = part
            continue
        common = table.index.intersection(part.index)
        if len(common) != len(table) or len(common) != len(part):
            raise SystemExit(f"{folder}: other images than {next(iter(evals.values()))}")
        for b in BASELINES:
            if b in part and b in table and not np.allclose(
                    table.loc[common, b], part.loc[common, b], atol=1e-6, equal_nan=True):
                raise SystemExit(f"{folder}: baseline {b} differs (other noisy frames?)")
        table[label] = part.loc[table.index, label]
    assert table is not None
    out = table.reset_index()
    if param is not None:
        out[str(by)] = out["image_id"].map(param)  # binned_groups takes its numbers
    return out


def margins(table: pd.DataFrame, models: list[str],
            groups: list[tuple[str, pd.DataFrame]] | None = None) -> pd.DataFrame:
    """Per group (default :func:`etem.evaluation.conditions.condition_groups`): n, the mean of
    each method and, per model and baseline, the paired margin (``<model>-<baseline>``: mean,
    ``_sem``, ``_below``: images where the model is lower)."""
    rows = []
    methods = [b for b in BASELINES if b in table] + models
    for group, g in (condition_groups(table) if groups is None else groups):
        row: dict[str, object] = {"group": group, "n": len(g)}
        row.update({m: float(g[m].mean()) for m in methods})
        for m in models:
            for b in AGAINST:
                if b not in g:
                    continue
                d = (g[m] - g[b]).to_numpy(dtype=float)
                key = f"{m}-{b}"
                row[key] = float(d.mean())
                row[key + "_sem"] = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
                row[key + "_below"] = int((d < 0).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(m: pd.DataFrame, models: list[str]) -> str:
    methods = [b for b in BASELINES if b in m] + models
    head = ["group", "n", *methods] + [f"{x} − {b}" for x in models for b in AGAINST
                                        if f"{x}-{b}" in m]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in m.iterrows():
        cells = [str(r["group"]), str(int(r["n"]))] + [f"{r[x]:.2f}" for x in methods]
        cells += [f"{r[f'{x}-{b}']:+.2f} ± {r[f'{x}-{b}_sem']:.2f} ({int(r[f'{x}-{b}_below'])})"
                  for x in models for b in AGAINST if f"{x}-{b}" in m]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", action="append", required=True, metavar="LABEL=DIR",
                    help="an `etem evaluate --out` folder and the model's label (repeatable)")
    ap.add_argument("--metric", default="psnr_mohan_db",
                    help="column of the table (psnr_mohan_db: Mohan et al.'s PSNR)")
    ap.add_argument("--by", metavar="COLUMN",
                    help="group each split's images by this image parameter (with --bins)")
    ap.add_argument("--bins", type=float, nargs="+", metavar="EDGE",
                    help="bin edges of --by, ascending (bins (E0, E1], (E1, E2], ...)")
    ap.add_argument("--csv", type=Path, help="write the margins table here too")
    a = ap.parse_args()
    if (a.by is None) != (a.bins is None):
        raise SystemExit("--by and --bins go together")
    evals = {}
    for item in a.eval:
        label, sep, folder = item.partition("=")
        if not sep or not label or label in BASELINES:
            raise SystemExit(f"--eval {item}: give LABEL=DIR (label not a baseline name)")
        if not (Path(folder) / TABLE).is_file():
            raise SystemExit(f"--eval {item}: no {TABLE} in {folder}")
        evals[label] = Path(folder)
    models = list(evals)
    table = wide(evals, a.metric, a.by)
    try:
        groups = None if a.by is None else binned_groups(table, a.by, a.bins)
    except InputError as e:
        raise SystemExit(str(e)) from None
    m = margins(table, models, groups)
    print(markdown(m, models))
    if a.csv:
        m.to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
