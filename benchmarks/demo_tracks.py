"""Column tracks on the demo's own synthetic movie against its truth (issue 15's targets).

Reads one ``etem apply`` output folder of the demo's synthetic movie (``columns.parquet``,
``results.h5``'s drift, ``summary.json``) and the movie's truth, and scores them with the
package's own functions (:func:`etem.movies.truth.score_columns` with the persistent column
identities of :func:`etem.movies.truth.persistent_column_ids` and the track figures of
:func:`etem.analysis.tracks.track_persistence`): precision (a found column matched to any
true column, visible or not, is correct), recall over visible columns (n_atoms x Z >= 150),
the fraction of matched visible detections in a track spanning their column's lifetime,
tracks per true column. With an apply run at ``apply.tracks.min_track_confidence`` 0 (all
detections), ``--min-conf`` scores the columns a filter at each value would keep (the same
tracks and confidences: the filter only removes rows).

The false detections are sorted by their distance to the nearest true column (any) and by
the nearest true column's site, with their tracks' confidence, to say what they are.

Usage::

    python benchmarks/demo_tracks.py --apply results/demo/apply/synthetic \\
        --movie results/demo/movies/synthetic.h5 [--min-conf 0 0.5 0.9]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from etem.analysis.matching import match_columns
from etem.config import load_config
from etem.movies.truth import (
    column_Z,
    found_in_raw_frame,
    load_truth,
    persistent_column_ids,
    score_columns,
)

#: Distance bands [Å] of a false detection to the nearest true column.
BANDS = (0.0, 1.0, 2.0, 3.0, np.inf)


def load(apply_dir: Path, movie: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Found columns in raw-frame coordinates [Å] (with track id and confidence), the truth
    with persistent ids, and the scoring geometry."""
    s = json.loads((apply_dir / "summary.json").read_text())
    truth = load_truth(movie)
    assert truth is not None and truth.columns is not None, "movie carries no true columns"
    px_raw = float(truth.pixel_size_A or s["pixel_size_A"])
    scale = float(s["pixel_size_A"]) / px_raw
    with h5py.File(apply_dir / "results.h5", "r") as f:
        drift = f["drift_px"][()]
    cols = pd.read_parquet(apply_dir / "columns.parquet")
    found = found_in_raw_frame(cols, drift, px_raw, scale, int(s["sum_frames"]))
    found["track_confidence"] = cols["track_confidence"].to_numpy()
    tcols = truth.columns.assign(
        true_id=persistent_column_ids(truth.columns, truth.drift_px, truth.pixel_size_A)
    )
    h, w = s["frame_shape_px"]
    geo = {
        "frames": [(t, t * int(s["sum_frames"])) for t in range(int(s["n_frames"]))],
        "shape_A": (h * scale * px_raw, w * scale * px_raw),
        "summary": s,
    }
    return found, tcols, geo


def false_detections(
    found: pd.DataFrame, truth: pd.DataFrame, geo: dict[str, Any], radius: float, border: float
) -> pd.DataFrame:
    """Unmatched found columns (inside the border) with the distance to the nearest true
    column and its site."""
    h, w = geo["shape_A"]
    rows = []
    tb = dict(tuple(truth.groupby("frame")))
    for (t, raw), f in found.groupby(["frame", "raw_frame"]):
        tr = tb[raw].reset_index(drop=True)
        f = f[(f["x_A"] >= border) & (f["x_A"] <= w - border)
              & (f["y_A"] >= border) & (f["y_A"] <= h - border)].reset_index(drop=True)
        i_f, _ = match_columns(f, tr, radius)
        fa = np.setdiff1d(np.arange(len(f)), i_f)
        d, j = cKDTree(tr[["x_A", "y_A"]].to_numpy()).query(f[["x_A", "y_A"]].to_numpy()[fa])
        rows.append(pd.DataFrame({
            "frame": t, "track_id": f["track_id"].to_numpy()[fa],
            "track_confidence": f["track_confidence"].to_numpy()[fa],
            "dist_A": d, "site": tr["site"].to_numpy()[j],
            "visible_nearest": column_Z(tr.iloc[j]) >= 150,
        }))
    return pd.concat(rows, ignore_index=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--apply", type=Path, default=Path("results/demo/apply/synthetic"))
    ap.add_argument("--movie", type=Path, default=Path("results/demo/movies/synthetic.h5"))
    ap.add_argument("--min-conf", type=float, nargs="*", default=[None])
    ap.add_argument("--radius", type=float, default=None, help="match radius [Å]")
    args = ap.parse_args()
    tc = load_config(None).apply.truth
    radius = args.radius or tc.match_radius_A
    found, truth, geo = load(args.apply, args.movie)
    print(json.dumps({"apply": str(args.apply), "tracks": geo["summary"].get("tracks")},
                     default=float))
    for mc in args.min_conf:
        kept = found if mc is None else found[found["track_confidence"] >= mc]
        _, o = score_columns(kept, truth, geo["frames"], geo["shape_A"], radius,
                             tc.min_column_Z, tc.border_A)
        row = {"min_track_confidence": mc, "precision": o["precision"], "recall": o["recall"],
               "recall_by_site": o["recall_by_site"], "n_found": o["n_found"],
               "n_visible": o["n_visible"], "rmse_A": o["rmse_A"], **o["tracks"]}
        fd = false_detections(kept, truth, geo, radius, tc.border_A)
        band = pd.cut(fd["dist_A"], BANDS, right=False)
        row["n_false"] = len(fd)
        counts = band.value_counts(sort=False)
        row["false_by_distance_A"] = {str(k): int(v) for k, v in counts.items()}
        row["false_by_nearest_site"] = fd["site"].value_counts().to_dict()
        row["false_track_confidence_median"] = float(fd["track_confidence"].median())
        print(json.dumps(row, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
