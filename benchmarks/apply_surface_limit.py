"""Information limit of a local event in a simulated movie: an oracle raw-count test.

For a movie from ``etem simulate-movie`` (it stores the true columns per frame, the clean
expectation ``/clean`` [e/px] and the Poisson frames ``/frames`` [counts]), this sums the raw
counts in a disk of ``--radius`` Å around every TRUE visible column (n_atoms x Z >= --min-z,
centre region inside a 10 % margin, positions per frame including the drift) and compares,
per column, the mean of the last k frames with the mean of the m frames before:
z = (mean_new - mean_old) / sqrt(lambda (1/k + 1/m)), lambda = the clean expectation of the
reference frames (the exact Poisson null). No denoiser, no column finder: this is the best a
per-column test can do. It prints, per frame, max |z| over all visible columns and over the
visible columns of one element (--element), and the z of the columns whose atoms change at
the event (--event-frame), as a markdown table row per window end.

Usage::

    .venv/bin/python benchmarks/apply_surface_limit.py [--movie results/demo/movies/synthetic.h5]
        [--k 6] [--m 8] [--event-frame 24] [--element Pt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from etem.movies.truth import column_Z


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--movie", type=Path, default=Path("results/demo/movies/synthetic.h5"))
    p.add_argument("--k", type=int, default=6, help="recent frames")
    p.add_argument("--m", type=int, default=8, help="reference frames")
    p.add_argument("--radius", type=float, default=0.5, help="disk radius [Å]")
    p.add_argument("--min-z", type=float, default=150.0, help="visible: n_atoms x Z >= this")
    p.add_argument("--element", default="Pt", help="element of the restricted site set")
    p.add_argument("--event-frame", type=int, default=24, help="frame of the local event")
    a = p.parse_args()
    with h5py.File(a.movie, "r") as f:
        raw = f["frames"][:].astype(np.float64)
        clean = f["clean"][:].astype(np.float64)
        px = float(f.attrs["pixel_size_A"])
        dose = float(f.attrs["dose_e_per_px_per_frame"])
        g = f["columns"]
        tc = pd.DataFrame({k: g[k][:] for k in ("column_id", "frame", "n_atoms", "x_A", "y_A")})
        tc["element"] = [e.decode() if isinstance(e, bytes) else str(e) for e in g["element"][:]]
    if clean.mean() > 5 * dose:  # clean stored as intensity (vacuum 1): to counts
        clean = clean * dose
    tc["Z"] = column_Z(tc)
    n_t, h, w = raw.shape
    mg = round(0.1 * min(h, w))
    r = a.radius / px
    q = int(np.ceil(r))
    dy, dx = np.mgrid[-q : q + 1, -q : q + 1]
    ins = dy**2 + dx**2 <= r * r
    dy, dx = dy[ins], dx[ins]
    by_frame = {t: d.set_index("column_id") for t, d in tc.groupby("frame")}
    before = by_frame[a.event_frame - 1]["n_atoms"]
    after = by_frame[a.event_frame]["n_atoms"].reindex(before.index)
    changed = set(before.index[before.to_numpy() != after.to_numpy()])

    def disk(img: np.ndarray, d: pd.DataFrame) -> np.ndarray:
        y = np.clip(np.round(d["y_A"].to_numpy() / px).astype(int)[:, None] + dy, 0, h - 1)
        x = np.clip(np.round(d["x_A"].to_numpy() / px).astype(int)[:, None] + dx, 0, w - 1)
        return img[y, x].sum(axis=1)

    print(f"movie {a.movie}, k={a.k}, m={a.m}, disk {a.radius} Å, columns changed at "
          f"frame {a.event_frame}: {sorted(changed)}")
    print(f"| window end | max z (visible, n) | max z ({a.element}, n) | z of changed columns |")
    print("|---|---|---|---|")
    for t in range(a.k + a.m - 1, n_t):
        n0 = t - a.k - a.m + 1
        ref = by_frame[n0]
        x0, y0 = ref["x_A"] / px, ref["y_A"] / px
        sites = ref[
            (ref["Z"] >= a.min_z) & (x0 >= mg) & (x0 < w - mg) & (y0 >= mg) & (y0 < h - mg)
        ].index
        s_raw = np.stack([disk(raw[s], by_frame[s].loc[sites]) for s in range(n0, t + 1)])
        lam = np.stack(
            [disk(clean[s], by_frame[s].loc[sites]) for s in range(n0, n0 + a.m)]
        ).mean(axis=0)
        z = (s_raw[a.m :].mean(0) - s_raw[: a.m].mean(0)) / np.sqrt(
            np.maximum(lam, 1e-9) * (1 / a.k + 1 / a.m)
        )
        el = (ref.loc[sites, "element"] == a.element).to_numpy()
        ch = np.array([s in changed for s in sites])
        zc = ", ".join(f"{v:+.1f}" for v in z[ch])
        print(f"| {t} | {np.abs(z).max():.1f} ({len(z)}) | "
              f"{np.abs(z[el]).max() if el.any() else float('nan'):.1f} ({int(el.sum())}) | "
              f"{zc} |")


if __name__ == "__main__":
    main()
