"""The campaign report: one self-contained HTML file built from a results folder.

Each section renders what exists under the results folder (``etem.paths.Layout``) and says
clearly what is missing: structures gallery, simulation examples, training curves (from
MLflow), benchmark tables and figures, likelihood calibration, movie results
(``apply/<movie>/``), the config, provenance and the MLflow runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import yaml

from etem.config import EtemConfig, stage_hash
from etem.errors import EtemError
from etem.movies.sheet import DEFAULT_CACHE, read_sheet
from etem.paths import Layout
from etem.plotting import plt
from etem.provenance import provenance
from etem.report import html as H
from etem.report.detection import section_detection_power
from etem.report.headline import read_json, read_table_or_none, section_headline
from etem.runs import search_stage_runs, tracking_uri
from etem.seeding import rng
from etem.structures.gallery import gallery_figure

log = logging.getLogger("etem.report.build")



def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flat(v, key + ".")
        elif isinstance(v, float):
            out.append((key, f"{v:.4g}"))
        elif isinstance(v, list) and len(v) > 12:
            out.append((key, f"[{len(v)} items]"))
        else:
            out.append((key, str(v)))
    return out


# -- sections ---------------------------------------------------------------------------
def section_structures(layout: Layout) -> str:
    """Structure counts and a gallery of projected structures (top view)."""
    man_p = layout.structures_manifest
    man = read_table_or_none(man_p) if man_p.exists() else None
    if man is None:
        return H.missing(f"no structures manifest ({man_p}): the structures stage has not run")
    body = [f"<p>{len(man)} structures.</p>"]
    group = [c for c in ("family", "material", "particle_shape", "zone_axis") if c in man.columns]
    if group:
        counts = man.groupby(group, dropna=False).size().reset_index(name="n")
        body.append(H.table(counts))
    caption = "Projected views of a sample of the library (x right, y down, beam along z) [Å]"
    if layout.structures_gallery.exists():  # the structures stage's own gallery
        body.append(H.png_file(layout.structures_gallery, caption))
    else:
        try:
            body.append(H.figure(gallery_figure(man, man_p.parent, n=6), caption))
        except Exception as exc:  # a report renders what it can
            body.append(H.missing(f"no structure gallery: {exc}"))
    return "".join(body)


def section_simulation(layout: Layout, config: EtemConfig) -> str:
    """Image counts per axis and example clean/noisy images."""
    idx_p = layout.simulation_index
    idx = read_table_or_none(idx_p) if idx_p.exists() else None
    if idx is None:
        return H.missing(f"no image index ({idx_p}): the simulation stage has not run")
    body = [f"<p>{len(idx)} images.</p>"]
    axes = [c for c in ("family", "thickness_nm", "defocus_nm", "tilt_x_mrad") if c in idx.columns]
    if axes:
        body.append(H.table(idx.groupby(axes[:2]).size().reset_index(name="n")))
    try:
        body.append(_simulation_examples(idx, idx_p.parent, config))
    except Exception as exc:
        body.append(H.missing(f"example images could not be read: {exc}"))
    return "".join(body)


def _simulation_examples(idx: pd.DataFrame, base: Path, config: EtemConfig, n: int = 4) -> str:
    picks = idx.groupby("family").head(2).head(n) if "family" in idx.columns else idx.head(n)
    dose = float(config.noise.benchmark_doses_e_per_A2[0])
    fig, axes = plt.subplots(2, len(picks), figsize=(2.4 * len(picks), 5), squeeze=False)
    row: Any  # a namedtuple of the columns
    for j, row in enumerate(picks.itertuples()):
        with h5py.File(base / str(row.shard), "r") as fh:
            clean = np.asarray(fh["clean"][int(row.index_in_shard)], dtype=np.float64)
        px = float(row.pixel_size_A)
        noisy = rng(config.seed, "report", str(row.image_id)).poisson(clean * dose * px * px)
        axes[0, j].imshow(clean, cmap="gray")
        axes[0, j].set_title(f"{row.image_id}\nclean", fontsize=6)
        axes[1, j].imshow(noisy, cmap="gray")
        axes[1, j].set_title(f"{dose:g} e/Å²", fontsize=6)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    return H.figure(fig, "Simulated images (clean, and with Poisson noise at the lowest "
                         "benchmark dose)")


#: panels of the training-curve figure: (title, y scale, does a metric key belong to it)
CURVE_PANELS: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    ("loss", "log", lambda k: "loss" in k),
    ("learning rate", "log", lambda k: k == "lr"),
    ("PSNR [dB]", "linear", lambda k: "psnr" in k),
    ("IoU / occupancy accuracy", "linear", lambda k: "iou" in k or "occ_acc" in k),
)


def curve_panels(histories: dict[str, list[tuple[int, float]]]) -> Any:
    """Figure of training curves, one panel per quantity (loss on a log axis, lr, PSNR, ...).

    ``histories`` maps a metric key to its (step, value) pairs; keys of no panel and panels
    without a curve of at least two points are left out. Returns None when nothing is left.
    """
    panels = []
    for title, scale, member in CURVE_PANELS:
        keys = [k for k in sorted(histories) if member(k) and len(histories[k]) > 1]
        if keys:
            panels.append((title, scale, keys))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (title, scale, keys) in zip(axes[0], panels, strict=True):
        for k in keys:
            steps, values = zip(*sorted(histories[k]), strict=True)
            ax.plot(steps, values, label=k, marker="." if len(steps) < 30 else None)
        if scale == "log" and all(v > 0 for k in keys for _, v in histories[k]):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def section_training(runs: pd.DataFrame | None, config: EtemConfig) -> str:
    """Training curves of the train-* stage runs (metric histories from MLflow)."""
    if runs is None:
        return H.missing("MLflow runs not available (tracking disabled or no store)")
    tr = runs[runs.get("tags.etem.stage", pd.Series(dtype=str)).astype(str).str.startswith("train")]
    if tr.empty:
        return H.missing("no training runs recorded in MLflow")
    from mlflow.tracking import MlflowClient  # lazy: MLflow only when runs are recorded

    client = MlflowClient(tracking_uri=tracking_uri(config))
    out = []
    for stage, g in tr.groupby("tags.etem.stage"):
        done = g[g["status"] == "FINISHED"] if "status" in g.columns else g
        run = (done if not done.empty else g).sort_values("start_time").iloc[-1]
        rid = run["run_id"]
        keys = [c.removeprefix("metrics.") for c in g.columns
                if c.startswith("metrics.") and pd.notna(run[c])]
        histories = {}
        for k in keys:
            if any(member(k) for _, _, member in CURVE_PANELS):
                histories[k] = [(m.step, m.value) for m in client.get_metric_history(rid, k)]
        fig = curve_panels(histories)
        if fig is not None:
            out.append(H.figure(fig, f"{stage}: training curves"))
        else:
            out.append(H.missing(f"{stage}: the training run has no metric history"))
    return "".join(out)


def section_evaluation(layout: Layout) -> str:
    """Benchmark tables and figures."""
    d = layout.evaluation_dir
    summary = read_json(d / "summary.json")
    if summary is None:
        return H.missing(f"no benchmark results ({d}/summary.json): the evaluation stage has "
                         "not run")
    body = []
    s = read_table_or_none(d / "denoising_summary.csv")
    if s is not None:
        body.append("<h3>Denoising (PSNR [dB], SSIM), by dose</h3>")
        sel = s[s["subset"].eq("all") | s["subset"].str.fullmatch(r"dose_e_per_A2=[0-9.e+]+")]
        body.append(H.table(sel))
        body.append("<h3>By split (test vs held-out family)</h3>")
        body.append(H.table(s[s["subset"].str.startswith("split=")]))
    body.append(section_mohan(d))
    body.append(section_conditions(d))
    for name, cap in (("psnr_vs_dose", "PSNR vs dose (mean ± s.e.m. over test images)"),
                      ("ssim_vs_dose", "SSIM vs dose"), ("examples", "Example outputs")):
        p = d / "figures" / f"{name}.png"
        if p.exists():
            body.append(H.png_file(p, cap))
    for p in sorted((d / "figures").glob("heatmap_*.png")):
        body.append(H.png_file(p, f"Mean PSNR of the primary method: {p.stem[8:]}", width=420))
    c = read_table_or_none(d / "columns_summary.csv")
    body.append("<h3>Column detection (precision, recall, position RMSE [pm])</h3>")
    if c is not None:
        body.append(H.table(c[c["subset"].eq("all")
                              | c["subset"].str.fullmatch(r"dose_e_per_A2=[0-9.e+]+")]))
    else:
        body.append(H.missing("no column detection table (no labels in the shards)"))
    cc = d / "columns_by_confidence.csv"
    if cc.exists():
        body.append("<p>Columns of the primary method kept at each calibrated confidence "
                    "level (0 = every blob):</p>")
        t = read_table_or_none(cc)
        body.append(H.table(t[t["subset"] == "all"] if t is not None else None))
    u = read_table_or_none(d / "umse.csv")
    body.append("<h3>Unsupervised MSE (Morales) vs true MSE</h3>")
    if u is not None:
        agg = u.groupby(["method", "dose_e_per_A2"]).agg(
            umse=("umse_counts2", "mean"), true_mse=("true_mse_counts2", "mean"),
            mean_z=("z", "mean"), n=("z", "size")).reset_index()
        body.append(H.table(agg))
    else:
        body.append(H.missing("no uMSE table"))
    for name, title in (("segmentation", "Segmentation"), ("movie", "Synthetic movie")):
        p = d / f"{name}.csv"
        if p.exists():
            t = read_table_or_none(p)
            body.append(f"<h3>{title}</h3>")
            if t is not None and "subset" in t.columns:
                t = t[t["subset"].eq("all")
                      | t["subset"].str.fullmatch(r"dose_e_per_A2=[0-9.e+]+")]
            body.append(H.table(t))
    return "".join(body)


def section_mohan(d: Path) -> str:
    """Mohan et al.'s protocol table (peak 1 count): overall, by family and by split."""
    p = d / "mohan_summary.csv"
    if not p.exists():
        return H.missing("no Mohan-protocol table (evaluation.mohan_protocol off)")
    t = read_table_or_none(p)
    if t is None:
        return H.missing(f"{p}: unreadable")
    sel = t[t["subset"].eq("all") | t["subset"].str.fullmatch(r"(family|split)=[^|]+")]
    cols = [c for c in ("method", "subset", "n", "psnr_db_mean", "psnr_db_sem", "ssim_mean",
                        "mean_counts_per_px_mean") if c in sel.columns]
    return ("<h3>Mohan et al.'s protocol (clean scaled to a peak of 1 count; PSNR [dB] and "
            "SSIM with peak 1 count after clamping to [0, 1])</h3>"
            "<p>Comparable with Mohan et al.'s 35-38 dB on held-out simulated Pt/CeO2 images "
            "(mean ~0.45 e/px); the tables above use the clean image's range as the peak "
            "instead. <code>mean_counts_per_px_mean</code>: mean of the scaled clean images "
            "[e/px].</p>" + H.table(sel[cols]))


def section_conditions(d: Path) -> str:
    """The cross-condition tables: denoisers (PSNR/SSIM) and the segmenter beside the
    intensity-counting baseline (occupancy accuracy), per split and held-out condition."""
    c = read_table_or_none(d / "conditions_summary.csv")
    if c is None:
        return H.missing("no cross-condition table (evaluation.conditions off)")
    body = ["<h3>Held-out microscope conditions: denoisers</h3>",
            "<p>Test structures (<code>split=test</code>), held-out structures and images "
            "whose microscope parameters lie in a held-out band "
            "(<code>training.split.held_out_conditions</code>), all at "
            "<code>evaluation.condition_dose_e_per_px</code>; PSNR [dB] and SSIM in etem's "
            "metric and Mohan et al.'s.</p>", H.table(c)]
    p = d / "figures" / "conditions_psnr.png"
    if p.exists():
        body.append(H.png_file(p, "PSNR per split and held-out condition (mean ± s.e.m.)"))
    s = read_table_or_none(d / "segmentation_conditions.csv")
    body.append("<h3>Held-out microscope conditions: segmenter vs intensity counting</h3>")
    if s is None:
        body.append(H.missing("no segmentation table per condition (no occupancy labels)"))
        return "".join(body)
    body.append("<p>The same noisy frames. <code>segmenter</code>: the network's class map "
                "and occupancies; <code>intensity</code>: each labelled column's mean "
                "intensity in the noisy frame mapped to atoms by a monotone curve fitted on "
                "the training images nearest in microscope parameters (given the true "
                "columns, so no IoU); <code>intensity_clean</code>: the same on the "
                "noise-free image (oracle); <code>majority</code>: the most frequent atom "
                "count of those training columns (chance). Values: fraction of column pixels "
                "(occupancy) or IoU, pooled over the group's images.</p>")
    body.append(H.table(s))
    p = d / "figures" / "segmentation_conditions.png"
    if p.exists():
        body.append(H.png_file(p, "Occupancy accuracy per split and held-out condition"))
    return "".join(body)


def section_calibration(layout: Layout) -> str:
    """Likelihood calibration: false-alarm table and figure."""
    d = layout.evaluation_dir
    cal = read_json(d / "likelihood_calibration.json")
    if cal is None:
        return H.missing(f"no likelihood calibration ({d}/likelihood_calibration.json)")
    body = [f"<p>Null fitted on {cal.get('meta', {}).get('n_null', '?')} spurious detections "
            f"in simulated vacuum, {cal.get('meta', {}).get('n_true', '?')} true columns; "
            f"vacuum-level bins [counts/px]: "
            f"{', '.join(f'{v:.3g}' for v in cal.get('lambda_vac_bins', []))}.</p>"]
    far = read_table_or_none(d / "calibration_far.csv")
    if far is not None:
        body.append("<p>False-alarm rate on held-out simulated vacuum (target: within ±2 "
                    "percentage points of nominal):</p>")
        body.append(H.table(far[far["dose_e_per_px"].astype(str) == "all"]))
        cal_rows = far[(far["kind"] == "calibrated")]
        ok = bool(cal_rows["within_2pp"].all()) if len(cal_rows) else False
        cls = "ok" if ok else "bad"
        body.append(f'<p class="{cls}">Calibrated false-alarm rates within ±2 pp of nominal '
                    f'for every dose and level: {"yes" if ok else "no"}.</p>')
    p = d / "figures" / "calibration.png"
    if p.exists():
        body.append(H.png_file(p, "Left: nominal vs observed false-alarm rate; middle: "
                                  "statistic for spurious and true columns; right: reliability"))
    return "".join(body)


def movie_group_names(config: EtemConfig) -> dict[str, str]:
    """Movie name -> its sheet ``group`` (condition); empty without a readable sheet."""
    if not config.movies.sheet:
        return {}
    try:
        return {r.name: r.group or "" for r in read_sheet(config.movies.sheet, DEFAULT_CACHE)}
    except EtemError as exc:
        log.warning("report: movie groups not shown: %s", exc)
        return {}


def movies_table(dirs: list[Path], groups: dict[str, str]) -> pd.DataFrame:
    """One row per movie: condition, frames, denoiser and its uPSNR gain, events found."""
    rows = []
    for d in dirs:
        summ = read_json(d / "summary.json") or {}
        ev = read_table_or_none(d / "events.csv")
        scores = summ.get("denoiser_upsnr_dB") or {}
        chosen = summ.get("denoiser_candidate") or summ.get("denoiser", "")
        gain = (scores[chosen] - scores["raw"]) if chosen in scores and "raw" in scores else None
        label = chosen
        if chosen == "gaussian" and summ.get("gaussian_sigma_px") is not None:
            label = f"gaussian (sigma {summ['gaussian_sigma_px']:g} px)"
        elif chosen == "wiener" and summ.get("wiener_alpha") is not None:
            smooth = summ.get("wiener_smooth_px")
            label = (f"wiener (alpha {summ['wiener_alpha']:g}"
                     + (f", smoothing {smooth} px)" if smooth is not None else ")"))
        onsets = ""
        if ev is not None and len(ev):
            col = "onset_time_s" if "onset_time_s" in ev else "onset_frame"
            unit = " s" if col == "onset_time_s" else ""
            onsets = ", ".join(f"{v:.3g}{unit} ({k})" for v, k in zip(
                ev[col], ev.get("kind", [""] * len(ev)), strict=True))
        rows.append({"movie": d.name, "group": groups.get(d.name, ""),
                     "frames": summ.get("n_frames"), "denoiser": label,
                     "uPSNR gain over raw [dB]": gain, "events": summ.get("n_events"),
                     "onsets (kind)": onsets})
    t = pd.DataFrame(rows)
    return t.sort_values(["group", "movie"], kind="stable") if len(t) else t


def _contrast_line(contrast: dict[str, Any] | None) -> str:
    """The contrast regime of a movie against its model's training regimes ('' if none)."""
    if not contrast or not contrast.get("regime"):
        return ""
    trained = contrast.get("trained_regimes")
    if trained is None:
        of_model = "no network denoised it"
    elif trained == "unknown":
        of_model = "the model file does not record its training regimes"
    else:
        of_model = "the model was trained on " + (", ".join(trained) or "none")
    return f"Contrast regime of the atoms (estimated on the raw frames): {contrast['regime']}; " \
        f"{of_model}."


def section_movies(layout: Layout, config: EtemConfig) -> str:
    """Results of the movie stage: a table across movies (by condition), then one
    subsection per ``apply/<movie>/``."""
    base = layout.root / "apply"
    dirs = sorted(p for p in base.glob("*") if p.is_dir()) if base.exists() else []
    if not dirs:
        return H.missing(f"no movie results ({base}/<movie>/): the apply stage has not run")
    out = ["<p>Movies by condition (sheet column <code>group</code>); the uPSNR gain is the "
           "chosen denoiser's against the raw frames, measured on the movie itself:</p>",
           H.table(movies_table(dirs, movie_group_names(config)))]
    for d in dirs:
        out.append(f"<h3>{H.esc(d.name)}</h3>")
        summ = read_json(d / "summary.json")
        if summ is None:
            out.append(H.missing(f"{d}/summary.json missing: the run is incomplete"))
        else:
            for w in summ.get("domain_warnings") or []:
                out.append(f"<p><b>Warning:</b> {H.esc(w)}</p>")
            contrast = _contrast_line(summ.get("contrast"))
            if contrast:
                out.append(f"<p>{H.esc(contrast)}</p>")
            flat = [(k, v) for k, v in _flat(summ) if not k.startswith("provenance")]
            out.append(H.folded("summary.json (every value)", H.table(
                pd.DataFrame(flat, columns=["key", "value"]), max_rows=200)))
        scores = read_table_or_none(d / "denoiser_scores.csv")
        if scores is not None:
            keep = [c for c in ("candidate", "upsnr_dB", "gain_dB", "umse_se", "sigma_px",
                                "wiener_alpha", "wiener_smooth_px", "column_recall",
                                "column_precision", "column_f1", "columns_agree", "chosen")
                    if c in scores]
            out.append("<p>Denoisers scored on this movie (uPSNR from neighbouring frames, no "
                       "ground truth; gain over the raw frames; columns found on a denoised "
                       "frame against those of the mean of its neighbouring raw frames: "
                       "recall, precision, F1, and whether the F1 is within apply.inference."
                       "column_f1_margin of the best):</p>" + H.table(scores[keep]))
        ev = d / "events.csv"
        if ev.exists():
            t = read_table_or_none(ev)
            out.append("<p>Events:</p>" + H.table(t))
        for p in sorted(d.glob("*.png")):
            out.append(H.png_file(p, p.stem.replace("_", " "), width=1000))
    return "".join(out)


def section_provenance(config: EtemConfig, layout: Layout, runs: pd.DataFrame | None) -> str:
    """Config, provenance and MLflow runs."""

    prov = provenance(config, "report")
    body = ["<h3>Provenance</h3>",
            H.table(pd.DataFrame(_flat(prov), columns=["key", "value"]), max_rows=80)]
    bench = read_json(layout.evaluation_dir / "summary.json")
    if bench and "provenance" in bench:
        # the benchmark ran on its own per-stage config (etem.config.stages)
        expected = stage_hash(config, "evaluation")
        same = bench["provenance"].get("config_hash") == expected
        body.append(f"<p>Benchmark produced with config hash "
                    f"{H.esc(bench['provenance'].get('config_hash'))} "
                    f"({'same as' if same else '<b>differs from</b>'} this campaign's benchmark "
                    "config), git commit "
                    f"{H.esc(bench['provenance'].get('git_commit'))}.</p>")
    body.append("<h3>MLflow runs</h3>")
    if config.tracking.enabled:
        body.append(f"<p>Tracking store: <code>{H.esc(tracking_uri(config))}</code> (open with "
                    f"<code>mlflow ui --backend-store-uri {H.esc(tracking_uri(config))}</code>)"
                    "</p>")
    if runs is None or runs.empty:
        body.append(H.missing("no MLflow stage runs found for this campaign"))
    else:
        # run ids stay out of the report (same config, same report): they are in the
        # tracking store and in runs.csv beside this report (RUNS_FILE)
        # the finished runs that made these results; killed or failed attempts and all run
        # ids are in RUNS_FILE
        done = runs[runs["status"] == "FINISHED"]
        if "start_time" in done.columns:  # a job re-run after an interruption: its last run
            key = [c for c in ("tags.etem.stage", "tags.etem.snakemake.rule",
                               "tags.etem.snakemake.wildcards") if c in done.columns]
            done = done.sort_values("start_time").drop_duplicates(key, keep="last")
        t = runs_table(done).drop(columns=["run_id", "status"])
        body.append(f"<p>{len(t)} finished stage runs; every run with its MLflow run id "
                    f"(killed and failed attempts too) is in <code>{RUNS_FILE}</code> beside "
                    "this report.</p>")
        body.append(H.table(t, max_rows=200))
    body.append("<h3>Configuration</h3>")
    body.append(f"<pre>{H.esc(yaml.safe_dump(config.model_dump(mode='json'), sort_keys=False))}"
                "</pre>")
    return "".join(body)


#: The lineage sidecar of the report: one row per MLflow stage run, with its run id.
RUNS_FILE = "runs.csv"


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Stage, rule, status, config hash and run id of each stage run, sorted by stage and rule."""
    names = {"tags.etem.stage": "stage", "tags.etem.snakemake.rule": "rule",
             "tags.etem.snakemake.wildcards": "wildcards", "status": "status",
             "tags.etem.config_hash": "config_hash", "run_id": "run_id"}
    t = runs[[c for c in names if c in runs.columns]].rename(columns=names).fillna("")
    return t.sort_values([c for c in ("stage", "rule", "wildcards", "run_id") if c in t.columns])


# -- the report -------------------------------------------------------------------------
def campaign_runs(config: EtemConfig) -> pd.DataFrame | None:
    """The campaign's MLflow stage runs, or None when tracking is off or unavailable."""
    if not config.tracking.enabled:
        return None
    try:
        return search_stage_runs(config)
    except Exception as exc:
        log.warning("MLflow runs unavailable: %s", exc)
        return None


def build_report(config: EtemConfig, results_dir: str | Path,
                 runs: pd.DataFrame | None = None,
                 detection_power: list[Path] | None = None) -> tuple[str, dict[str, bool]]:
    """The report HTML and which sections had results (name -> present);
    ``detection_power``: detection-power bank files (:mod:`etem.report.detection`)."""
    layout = Layout(Path(results_dir))
    runs = campaign_runs(config) if runs is None else runs
    parts: list[tuple[str, str, Callable[[], str]]] = [
        ("summary", "Summary", lambda: section_headline(layout)),
        ("structures", "Structures", lambda: section_structures(layout)),
        ("simulation", "Simulated images", lambda: section_simulation(layout, config)),
        ("training", "Training", lambda: section_training(runs, config)),
        ("evaluation", "Evaluation", lambda: section_evaluation(layout)),
        ("calibration", "Likelihood calibration", lambda: section_calibration(layout)),
        ("movies", "Movies", lambda: section_movies(layout, config)),
        ("detection", "Event detection power",
         lambda: section_detection_power(list(detection_power or []))),
        ("provenance", "Config, provenance, MLflow", lambda: section_provenance(config, layout,
                                                                                runs)),
    ]
    body, present = [], {}
    for anchor, title, fn in parts:
        try:
            html_ = fn()
        except Exception as exc:  # one broken section must not lose the others
            log.exception("report section %s failed", anchor)
            html_ = H.missing(f"section failed: {type(exc).__name__}: {exc}")
        present[anchor] = 'class="missing"' not in html_[:200]
        body.append(H.section(anchor, title, html_))
    missing = [t for (a, t, _), ok in zip(parts, present.values(), strict=True) if not ok]
    intro = (f"<p>Campaign <b>{H.esc(config.name)}</b>, config hash "
             f"<code>{H.esc(config.hash())}</code>, seed {config.seed}, results "
             f"<code>{H.esc(Path(results_dir))}</code>.</p>")
    if missing:
        intro += H.missing("Missing results: " + ", ".join(missing))
    doc = H.page(f"etem report: {config.name}", [(a, t) for a, t, _ in parts],
                 intro + "".join(body))
    return doc, present
