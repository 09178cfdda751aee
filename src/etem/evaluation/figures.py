"""Figures of the benchmark: metric vs dose, heat maps, example panels, calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etem.evaluation.tables import axis_levels
from etem.plotting import plt, save_png


def save(fig: Any, path: Path) -> Path:
    """Save a figure atomically as PNG (no timestamps in the file) and close it."""
    return save_png(fig, path, dpi=100)


def metric_vs_dose(summary: pd.DataFrame, metric: str, ylabel: str) -> Any:
    """Mean ± s.e.m. of ``metric`` vs dose, one line per method."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sel = summary[summary["subset"].str.fullmatch(r"dose_e_per_A2=[0-9.e+]+")]
    for method, g in sel.groupby("method", sort=False):
        d = g["subset"].str.split("=").str[1].astype(float)
        order = np.argsort(d.to_numpy())
        ax.errorbar(d.to_numpy()[order], g[f"{metric}_mean"].to_numpy()[order],
                    yerr=g[f"{metric}_sem"].to_numpy()[order], marker="o", capsize=2,
                    label=method)
    ax.set_xscale("log")
    ax.set_xlabel("dose [e/Å²]")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def heatmap(per_image: pd.DataFrame, method: str, axis: str, metric: str = "psnr_db") -> Any:
    """Mean ``metric`` of ``method`` over dose (rows) x ``axis`` values (columns)."""
    g = per_image[per_image["method"] == method]
    g = g.assign(**{axis: axis_levels(g[axis])})
    tab = g.pivot_table(index="dose_e_per_A2", columns=axis, values=metric, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * max(tab.shape[1], 1), 1.0 + 0.5 * tab.shape[0]))
    im = ax.imshow(tab.to_numpy(), aspect="auto", cmap="viridis")
    ax.set_xticks(range(tab.shape[1]), [str(c) for c in tab.columns], fontsize=7, rotation=30)
    ax.set_yticks(range(tab.shape[0]), [f"{v:g}" for v in tab.index], fontsize=7)
    for (i, j), v in np.ndenumerate(tab.to_numpy()):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6, color="w")
    ax.set_xlabel(axis)
    ax.set_ylabel("dose [e/Å²]")
    ax.set_title(f"{method}: {metric}", fontsize=8)
    fig.colorbar(im, ax=ax)
    return fig


def examples(example_list: list[dict[str, Any]]) -> Any:
    """Example panels: clean, then every method's output, one row per (image, dose)."""
    if not example_list:
        return None
    names = list(example_list[0]["outs"])
    ncol = 1 + len(names)
    fig, axes = plt.subplots(len(example_list), ncol, figsize=(1.8 * ncol, 1.9 * len(example_list)),
                             squeeze=False)
    for r, ex in enumerate(example_list):
        lo, hi = np.percentile(ex["clean"], [1, 99])
        panels = [("clean", ex["clean"])] + [(n, ex["outs"][n]) for n in names]
        for c, (title, img) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            sub = f"\n{ex['image_id']} @ {ex['dose']:g} e/Å²" if c == 0 else ""
            ax.set_title(f"{title}{sub}", fontsize=6)
    return fig


def calibration(far: pd.DataFrame, null_fit: pd.DataFrame, lik: pd.DataFrame | None,
                reliability: pd.DataFrame | None, cal: Any) -> Any:
    """P-P plot (nominal vs observed false-alarm rate), statistic histograms, reliability."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    ax = axes[0]
    grid = np.linspace(0.001, 0.3, 60)
    if len(null_fit):
        u = null_fit["u"].to_numpy()
        p_cal = cal.calibrate_u(u, null_fit["lambda_vac"].to_numpy())
        ax.plot(grid, [np.mean(u <= a) for a in grid], label="raw Poisson p (fit set)")
        ax.plot(grid, [np.mean(p_cal <= a) for a in grid], label="calibrated (fit set)")
    a = far[(far["dose_e_per_px"] == "all")] if len(far) else far
    for kind, g in a.groupby("kind") if len(a) else []:
        ax.errorbar(g["alpha"], g["observed"], yerr=2 * g["se"], fmt="o", capsize=2,
                    label=f"{kind}, held out (±2 s.e.)")
    ax.plot([0, 0.3], [0, 0.3], "k--", lw=0.8)
    ax.set_xlabel("nominal false-alarm rate α")
    ax.set_ylabel("observed on spurious detections")
    ax.legend(fontsize=6)
    ax.set_title("calibration on simulated vacuum", fontsize=8)
    ax = axes[1]
    bins = 40
    if len(null_fit):
        ax.hist(null_fit["llr"], bins=bins, density=True, alpha=0.5, label="spurious (vacuum)")
    if lik is not None and len(lik):
        ax.hist(lik.loc[lik["is_true"], "llr"], bins=bins, density=True, alpha=0.5,
                label="true columns")
        ax.hist(lik.loc[~lik["is_true"], "llr"], bins=bins, density=True, alpha=0.5,
                label="unmatched in crystal images")
    ax.set_xlabel("mean log-likelihood ratio [nats/px]")
    ax.legend(fontsize=6)
    ax.set_yscale("log")
    ax = axes[2]
    if reliability is not None and len(reliability):
        ax.plot(reliability["p_pred_mean"], reliability["frac_true"], "o-")
        for r in reliability.itertuples():
            ax.annotate(str(r.n), (r.p_pred_mean, r.frac_true), fontsize=5)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("predicted P(true column)")
    ax.set_ylabel("observed fraction true")
    ax.set_title("reliability diagram (held-out vacuum + test columns)", fontsize=8)
    return fig


def likelihood_example(counts: np.ndarray, denoised: np.ndarray, tab: pd.DataFrame) -> Any:
    """Noisy counts, denoised image and the columns coloured by confidence."""
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    axes[0].imshow(counts, cmap="gray")
    axes[0].set_title("noisy counts", fontsize=8)
    axes[1].imshow(denoised, cmap="gray")
    axes[1].set_title("denoised", fontsize=8)
    axes[2].imshow(denoised, cmap="gray")
    if len(tab):
        sc = axes[2].scatter(tab["x_px"], tab["y_px"], c=tab["confidence"], cmap="RdYlGn",
                             vmin=0, vmax=1, s=10)
        fig.colorbar(sc, ax=axes[2], label="confidence")
    axes[2].set_title("columns by confidence", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def conditions_bars(summary: pd.DataFrame) -> Any:
    """Cross-condition table: mean PSNR (etem's and Mohan et al.'s) ± s.e.m. per group, one
    bar per method."""
    if summary is None or summary.empty:
        return None
    groups = list(dict.fromkeys(summary["group"]))
    methods = list(dict.fromkeys(summary["method"]))
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(groups), 3.5))
    width = 0.8 / max(len(methods), 1)
    for ax, metric, label in ((axes[0], "psnr_db", "PSNR [dB] (etem)"),
                              (axes[1], "psnr_mohan_db", "PSNR [dB] (Mohan et al.)")):
        for k, m in enumerate(methods):
            g = summary[summary["method"] == m].set_index("group").reindex(groups)
            ax.bar(np.arange(len(groups)) + k * width, g[f"{metric}_mean"], width,
                   yerr=g[f"{metric}_sem"], capsize=2, label=m)
        ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2,
                      [s.replace("split=", "").replace("|condition=", "\n") for s in groups],
                      fontsize=6)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=6)
    return fig


def segmentation_conditions_bars(summary: pd.DataFrame | None) -> Any:
    """The segmenter per condition beside the intensity baselines: exact and ±1-atom
    occupancy accuracy of cation and anion column pixels per group, one bar per method."""
    if summary is None or summary.empty:
        return None
    groups = list(dict.fromkeys(summary["group"]))
    methods = list(dict.fromkeys(summary["method"]))
    fig, axes = plt.subplots(2, 2, figsize=(4 + 1.6 * len(groups), 6), sharey=True,
                             squeeze=False)
    width = 0.8 / max(len(methods), 1)
    labels = [s.replace("split=held_out_condition|condition=", "").replace("split=", "")
              for s in groups]  # a band's label alone: it is a held-out condition
    for r, site in enumerate(("cation", "anion")):
        for c, (tol, title) in enumerate((("exact", "exact"), ("within1", "within ±1 atom"))):
            ax = axes[r, c]
            for k, m in enumerate(methods):
                g = summary[summary["method"] == m].set_index("group").reindex(groups)
                ax.bar(np.arange(len(groups)) + k * width, g[f"{site}_occupancy_{tol}"], width,
                       label=m)
            ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, labels, fontsize=6)
            ax.set_ylim(0, 1)
            ax.set_title(f"{site} occupancy, {title}", fontsize=8)
            ax.grid(alpha=0.3, axis="y")
    axes[0, 0].set_ylabel("fraction of column pixels")
    axes[1, 0].set_ylabel("fraction of column pixels")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig
