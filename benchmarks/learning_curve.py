"""Extrapolate a validation curve: a saturating fit, its asymptote, the budget to a target.

Fits PSNR(s) = a - b * (s / s_last)^(-c) (b >= 0, c in [--c-min, --c-max]) by least squares to
a validation history (steps s, PSNR [dB]): ``a`` is the asymptote at this network size and
data, ``b`` the gain left after the last step ``s_last``, ``c`` the power. The fit is
linear in (a, b) for a given c (variable projection: c is searched, a and b solved), so it
needs no starting point. Uncertainty: the fit's covariance (Jacobian at the optimum) and a
bootstrap over the validation points (pairs resampled with replacement; percentiles 5 / 50 /
95 of a, of the curve and of the steps to the target).

The target: ``--target T`` in the curve's own metric, or, with ``--reference R``, in another
metric whose value for the final model is R (e.g. Mohan et al.'s PSNR on a test set): the
gain T - R is then added to the fitted curve at the last step (a change of the per-image MSE
moves every PSNR of the form 10 log10(range² / MSE) by the same dB, whatever the range).
Steps to the target: s_last * (b / (a - T_curve))^(1/c); "not reachable at this network
size" when the asymptote a is below the target (in the fit, and as the bootstrap's share).

Data volume (optional): ``--data-points N:PSNR ...`` (training images, final PSNR of runs at a
similar network size): with 4 or more points the same saturating fit in N; with 2-3 a line in
log2(N) (dB per doubling, no saturation: a lower bound on the images needed), and the images
to reach ``--data-target`` (default: ``--target``; with ``--reference``, the largest-N point
plus the gain T - R, that point being the final model of the curve in another metric).

Inputs: ``--curve learning_curve.csv`` (columns ``step`` and the metric, e.g. the packaged
model's card) or ``--mlflow-run RUN --tracking-uri URI`` (the metric's history of a training
run). Throughput for hours: ``--card model_card.json`` (default: the one beside the curve;
``training.wall_hours / training.steps``) or ``--hours-per-step``.

Outputs (``--out DIR``): ``learning_curve_fit.json`` (everything below), ``learning_curve_fit.png``
(the curve, the fit, its bootstrap band, the asymptote, the target and the data-volume panel),
and a Markdown summary on stdout.

Usage:
  python benchmarks/learning_curve.py --curve src/etem/models/pretrained/learning_curve.csv \\
      --target 35 --reference 22.53 --data-points 67:22.91 531:25.24 --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from etem.io import atomic_path
from etem.plotting import plt


@dataclass
class Fit:
    """PSNR(x) = a - b * (x / x_ref)^(-c); ``sd_*``: standard errors from the covariance."""

    a: float
    b: float
    c: float
    x_ref: float
    rmse: float
    n: int
    sd_a: float = float("nan")
    sd_b: float = float("nan")
    sd_c: float = float("nan")
    c_at_bound: bool = False

    def __call__(self, x: Any) -> Any:
        return self.a - self.b * (np.asarray(x, dtype=float) / self.x_ref) ** (-self.c)

    def steps_to(self, target: float) -> float:
        """The x at which the curve reaches ``target`` (inf if the asymptote is below it)."""
        if self.b <= 0:
            return 0.0 if self.a >= target else math.inf
        if self.a <= target:
            return math.inf
        return float(self.x_ref * (self.b / (self.a - target)) ** (1.0 / self.c))


def _solve_ab(x: np.ndarray, y: np.ndarray, c: float) -> tuple[float, float, float]:
    """Least-squares (a, b >= 0) for a given c, and the residual sum of squares."""
    u = -(x ** (-c))
    design = np.column_stack([np.ones_like(x), u])
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    if b < 0:  # a flat or falling curve: no gain left
        a, b = float(np.mean(y)), 0.0
    rss = float(np.sum((y - a - b * u) ** 2))
    return float(a), float(b), rss


def fit_saturating(
    x: Any, y: Any, c_min: float = 0.05, c_max: float = 3.0, x_ref: float | None = None,
) -> Fit:
    """Least-squares fit of y = a - b (x / x_ref)^(-c) (see module docstring); needs >= 3
    distinct x. ``x_ref`` defaults to the largest x (so b = the gain left there)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(np.unique(x)) < 3 or np.any(x <= 0):
        raise ValueError("a saturating fit needs at least 3 distinct positive x")
    ref = float(x_ref if x_ref is not None else x.max())
    xs = x / ref
    grid = np.geomspace(c_min, c_max, 60)
    rss = [_solve_ab(xs, y, c)[2] for c in grid]
    k = int(np.argmin(rss))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    if hi > lo:
        opt = minimize_scalar(lambda c: _solve_ab(xs, y, c)[2], bounds=(lo, hi),
                              method="bounded", options={"xatol": 1e-6})
        c = float(opt.x) if opt.fun <= rss[k] else float(grid[k])
    else:
        c = float(grid[k])
    a, b, r = _solve_ab(xs, y, c)
    n = len(x)
    fit = Fit(a=a, b=b, c=c, x_ref=ref, rmse=math.sqrt(r / n), n=n,
              c_at_bound=bool(np.isclose(c, c_min, rtol=1e-3) or np.isclose(c, c_max, rtol=1e-3)))
    if n > 3 and b > 0:
        p = xs ** (-c)
        jac = np.column_stack([np.ones_like(xs), -p, b * p * np.log(xs)])
        s2 = r / (n - 3)
        try:
            cov = s2 * np.linalg.inv(jac.T @ jac)
            fit.sd_a, fit.sd_b, fit.sd_c = (float(math.sqrt(max(v, 0.0)))
                                            for v in np.diag(cov))
        except np.linalg.LinAlgError:
            pass
    return fit


def bootstrap(
    x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, c_min: float, c_max: float,
) -> list[Fit]:
    """Fits to ``n_boot`` resamples of the (x, y) pairs (with replacement; resamples with
    fewer than 3 distinct x are drawn again)."""
    g = np.random.default_rng(seed)
    fits: list[Fit] = []
    ref = float(np.max(x))
    while len(fits) < n_boot:
        i = g.integers(0, len(x), len(x))
        if len(np.unique(x[i])) < 3:
            continue
        fits.append(fit_saturating(x[i], y[i], c_min, c_max, x_ref=ref))
    return fits


def percentiles(v: Any, q: tuple[float, ...] = (5, 50, 95)) -> list[float]:
    """Percentiles of ``v`` (inf kept: a percentile past the finite share is inf)."""
    arr = np.sort(np.asarray(v, dtype=float))
    return [float(arr[min(math.floor(p / 100 * len(arr)), len(arr) - 1)]) for p in q]


def loglinear(n: Any, y: Any) -> dict[str, float]:
    """y = p + q log2(n) by least squares: q = dB per doubling."""
    q, p = np.polyfit(np.log2(np.asarray(n, dtype=float)), np.asarray(y, dtype=float), 1)
    return {"intercept": float(p), "db_per_doubling": float(q)}


def data_volume(points: list[tuple[float, float]], target: float | None, c_min: float,
                c_max: float) -> dict[str, Any]:
    """The data-volume extrapolation of ``points`` (training images, PSNR)."""
    n = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    out: dict[str, Any] = {"points": [{"images": float(a), "psnr_db": float(b)}
                                      for a, b in points]}
    if len(np.unique(n)) >= 4:
        f = fit_saturating(n, y, c_min, c_max)
        out["model"] = "saturating"
        out["fit"] = asdict(f)
        if target is not None:
            out["images_to_target"] = f.steps_to(target)
    elif len(np.unique(n)) >= 2:
        ll = loglinear(n, y)
        out["model"] = "loglinear"
        out["fit"] = ll
        if target is not None:
            q = ll["db_per_doubling"]
            out["images_to_target"] = (float(2 ** ((target - ll["intercept"]) / q)) if q > 0
                                       else math.inf)
    else:
        raise ValueError("--data-points: at least 2 distinct image counts")
    out["target"] = target
    return out


def read_curve(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """(steps, values, source) of the validation history."""
    if args.mlflow_run:
        from mlflow.tracking import MlflowClient

        hist = MlflowClient(tracking_uri=args.tracking_uri).get_metric_history(
            args.mlflow_run, args.metric)
        if not hist:
            raise SystemExit(f"run {args.mlflow_run}: no history of metric {args.metric!r}")
        last: dict[int, float] = {}
        for m in sorted(hist, key=lambda m: (m.step, m.timestamp)):
            last[int(m.step)] = float(m.value)  # a resumed run logs a step again: keep the last
        steps = np.array(sorted(last), dtype=float)
        vals = np.array([last[int(s)] for s in steps], dtype=float)
        return steps, vals, f"MLflow run {args.mlflow_run} ({args.tracking_uri}), {args.metric}"
    t = pd.read_csv(args.curve)
    if "step" not in t or args.metric not in t:
        raise SystemExit(f"{args.curve}: needs columns 'step' and {args.metric!r} "
                         f"(has {', '.join(t.columns)})")
    t = t[["step", args.metric]].dropna().drop_duplicates("step", keep="last").sort_values("step")
    return (t["step"].to_numpy(dtype=float), t[args.metric].to_numpy(dtype=float),
            f"{args.curve}, {args.metric}")


def hours_per_step(args: argparse.Namespace) -> tuple[float | None, str]:
    """Wall hours per step of the training (``--hours-per-step`` or the model card)."""
    if args.hours_per_step:
        return float(args.hours_per_step), "--hours-per-step"
    card = Path(args.card) if args.card else (
        Path(args.curve).with_name("model_card.json") if args.curve else None)
    if card is None or not card.is_file():
        return None, ""
    tr = json.loads(card.read_text()).get("training", {})
    if tr.get("wall_hours") and tr.get("steps"):
        return float(tr["wall_hours"]) / float(tr["steps"]), f"{card} (training.wall_hours / steps)"
    return None, ""


def analyse(
    steps: np.ndarray, vals: np.ndarray, target: float | None, reference: float | None,
    n_boot: int = 1000, seed: int = 0, c_min: float = 0.05, c_max: float = 3.0,
    min_step: float = 0.0, gains: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0),
) -> dict[str, Any]:
    """The fit, its bootstrap and the steps to the target / to each gain over the last step."""
    keep = steps >= min_step
    x, y = steps[keep], vals[keep]
    fit = fit_saturating(x, y, c_min, c_max)
    boots = bootstrap(x, y, n_boot, seed, c_min, c_max)
    last = float(x.max())
    at_last = float(fit(last))
    res: dict[str, Any] = {
        "points": len(x), "first_step": float(x.min()), "last_step": last,
        "last_value": float(y[np.argmax(x)]), "fit_at_last_step": at_last,
        "fit": asdict(fit),
        "bootstrap": {"n": n_boot, "seed": seed,
                      "a_p5_p50_p95": percentiles([f.a for f in boots]),
                      "c_p5_p50_p95": percentiles([f.c for f in boots]),
                      "gain_left_p5_p50_p95": percentiles([f.a - f(last) for f in boots])},
        "c_bounds": [c_min, c_max], "min_step": min_step,
    }
    if target is not None:
        gain = (target - reference) if reference is not None else (target - at_last)
        t_curve = at_last + gain
        s_fit = fit.steps_to(t_curve)
        s_boot = [f.steps_to(f(last) + gain) for f in boots]
        res["target"] = {
            "target": target, "reference": reference, "gain_needed_db": gain,
            "target_on_curve": t_curve, "reachable": bool(math.isfinite(s_fit)),
            "steps": s_fit, "extra_steps": (s_fit - last) if math.isfinite(s_fit) else math.inf,
            "reachable_share_bootstrap": float(np.mean(np.isfinite(s_boot))),
            "steps_p5_p50_p95": percentiles(s_boot),
        }
    res["gains"] = [{"gain_db": g, "steps": fit.steps_to(at_last + g),
                     "steps_p5_p50_p95": percentiles([f.steps_to(f(last) + g) for f in boots])}
                    for g in gains]
    res["_boots"] = boots
    return res


def _fmt_steps(s: float) -> str:
    return "not reachable" if not math.isfinite(s) else f"{s:,.0f}"


def _fmt_hours(s: float, hps: float | None) -> str:
    if hps is None or not math.isfinite(s):
        return ""
    return f" ({s * hps:,.1f} h)"


def summary_markdown(res: dict[str, Any], source: str, hps: float | None, hsrc: str) -> str:
    """A Markdown summary of :func:`analyse`'s result (and the data-volume part)."""
    f = res["fit"]
    bs = res["bootstrap"]
    few = (" **Few points: the asymptote and the extrapolation are not determined.**"
           if res["points"] < 6 else "")
    lines = [
        f"Learning curve: {source}; {res['points']} points, steps {res['first_step']:,.0f}-"
        f"{res['last_step']:,.0f} (last value {res['last_value']:.2f} dB, fit there "
        f"{res['fit_at_last_step']:.2f} dB).{few}",
        f"Fit PSNR(s) = a - b (s / {f['x_ref']:,.0f})^(-c): a = {f['a']:.2f} ± {f['sd_a']:.2f} dB "
        f"(covariance), b = {f['b']:.2f} dB, c = {f['c']:.3f}"
        f"{' (at its bound: the asymptote is not determined)' if f['c_at_bound'] else ''}, "
        f"rms residual {f['rmse']:.2f} dB.",
        f"Bootstrap ({bs['n']} resamples of the points): asymptote a p5/p50/p95 = "
        + " / ".join(f"{v:.2f}" for v in bs["a_p5_p50_p95"])
        + " dB; gain left after the last step "
        + " / ".join(f"{v:.2f}" for v in bs["gain_left_p5_p50_p95"]) + " dB.",
    ]
    if hps is not None:
        lines.append(f"Wall time per step: {hps * 3600:.3g} s ({hsrc}; hours below at that "
                     "rate, on that machine).")
    t = res.get("target")
    if t:
        ref = (f" (target {t['target']:.2f} dB vs the final model's {t['reference']:.2f} dB in "
               "that metric)" if t["reference"] is not None else "")
        lines.append(f"Target: +{t['gain_needed_db']:.2f} dB over the fit at the last step{ref} "
                     f"= {t['target_on_curve']:.2f} dB on this curve.")
        if t["reachable"]:
            lines.append(f"Steps to the target (fit): {_fmt_steps(t['steps'])}"
                         f"{_fmt_hours(t['steps'], hps)}, {_fmt_steps(t['extra_steps'])} more; "
                         f"bootstrap p5/p50/p95 "
                         + " / ".join(_fmt_steps(v) for v in t["steps_p5_p50_p95"])
                         + f" (reachable in {100 * t['reachable_share_bootstrap']:.0f} % of "
                         "the resamples).")
        else:
            lines.append("Steps to the target: **not reachable at this network size: "
                         f"asymptote {f['a']:.2f} dB below the target {t['target_on_curve']:.2f} "
                         f"dB** (reachable in {100 * t['reachable_share_bootstrap']:.0f} % of "
                         "the bootstrap resamples).")
    lines.append("")
    lines.append("| gain over the last step [dB] | steps (fit) | bootstrap p5 / p50 / p95 |")
    lines.append("|---|---|---|")
    for g in res["gains"]:
        lines.append(f"| +{g['gain_db']:g} | {_fmt_steps(g['steps'])}{_fmt_hours(g['steps'], hps)}"
                     f" | {' / '.join(_fmt_steps(v) for v in g['steps_p5_p50_p95'])} |")
    dv = res.get("data_volume")
    if dv:
        pts = ", ".join(f"{p['images']:,.0f} → {p['psnr_db']:.2f}" for p in dv["points"])
        lines.append("")
        if dv["model"] == "loglinear":
            lines.append(f"Data volume ({pts} dB): {dv['fit']['db_per_doubling']:.2f} dB per "
                         "doubling of the training images (a line in log2 N through "
                         f"{len(dv['points'])} points: no saturation assumed, so the images "
                         "below are a lower bound).")
        else:
            df = dv["fit"]
            lines.append(f"Data volume ({pts} dB): saturating fit a = {df['a']:.2f} dB, "
                         f"c = {df['c']:.3f}.")
        if dv.get("target") is not None:
            lines.append(f"Training images to reach {dv['target']:.2f} dB: "
                         f"{_fmt_steps(dv['images_to_target'])}.")
    return "\n".join(lines)


def plot(res: dict[str, Any], steps: np.ndarray, vals: np.ndarray, source: str,
         path: Path) -> None:
    """The curve, the fit and its bootstrap band, the asymptote, the target (and data volume)."""
    f = Fit(**res["fit"])
    boots: list[Fit] = res["_boots"]
    t = res.get("target")
    last = res["last_step"]
    far = last * 10
    if t and t["reachable"]:
        far = max(far, min(t["steps"] * 1.5, last * 1000))
    xs = np.geomspace(max(res["first_step"], 1.0), far, 300)
    band = np.array([b(xs) for b in boots])
    dv = res.get("data_volume")
    fig, axes = plt.subplots(1, 2 if dv else 1, figsize=(11 if dv else 6.5, 4.2), squeeze=False)
    ax = axes[0][0]
    ax.fill_between(xs, np.percentile(band, 5, axis=0), np.percentile(band, 95, axis=0),
                    color="tab:blue", alpha=0.2, label="bootstrap 5-95 %")
    ax.plot(steps, vals, "o", ms=4, color="k", label="validation")
    ax.plot(xs, f(xs), "-", color="tab:blue",
            label=f"a - b (s/s_last)^-c: a={f.a:.2f}, c={f.c:.2f}")
    ax.axhline(f.a, color="tab:blue", ls=":", lw=1, label=f"asymptote {f.a:.2f} dB")
    if t:
        ax.axhline(t["target_on_curve"], color="tab:red", ls="--", lw=1,
                   label=f"target (+{t['gain_needed_db']:.1f} dB) {t['target_on_curve']:.2f} dB")
        if t["reachable"]:
            ax.axvline(t["steps"], color="tab:red", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training steps")
    ax.set_ylabel("validation PSNR [dB]")
    ax.set_title(f"learning curve ({Path(source.split(',')[0]).name})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    if dv:
        ax2 = axes[0][1]
        n = np.array([p["images"] for p in dv["points"]])
        y = np.array([p["psnr_db"] for p in dv["points"]])
        top = max(n.max() * 10, min(dv.get("images_to_target") or 0, n.max() * 1e3))
        ns = np.geomspace(n.min(), top * 1.2 if math.isfinite(top) else n.max() * 10, 200)
        if dv["model"] == "loglinear":
            yy = dv["fit"]["intercept"] + dv["fit"]["db_per_doubling"] * np.log2(ns)
            lab = f"{dv['fit']['db_per_doubling']:.2f} dB per doubling"
        else:
            yy = Fit(**dv["fit"])(ns)
            lab = f"saturating, a={dv['fit']['a']:.2f}"
        ax2.plot(n, y, "s", color="k", label="runs")
        ax2.plot(ns, yy, "-", color="tab:green", label=lab)
        if dv.get("target") is not None:
            ax2.axhline(dv["target"], color="tab:red", ls="--", lw=1,
                        label=f"target {dv['target']:.1f} dB")
        ax2.set_xscale("log")
        ax2.set_xlabel("training images")
        ax2.set_ylabel("PSNR [dB] (the points' metric)")
        ax2.set_title("data volume", fontsize=9)
        ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def data_target(args: argparse.Namespace) -> float | None:
    """The data-volume target: ``--data-target``; else, with ``--target`` and ``--reference``,
    the largest-N point plus the gain T - R; else ``--target``."""
    if args.data_target is not None:
        return float(args.data_target)
    if args.target is not None and args.reference is not None and args.data_points:
        top = max(args.data_points, key=lambda p: p[0])
        return float(top[1] + args.target - args.reference)
    return args.target


def finite_json(v: Any) -> Any:
    """``v`` with every non-finite float written as the string "inf" / "-inf" / "nan"."""
    if isinstance(v, dict):
        return {k: finite_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [finite_json(x) for x in v]
    if isinstance(v, float | np.floating) and not math.isfinite(v):
        return str(float(v))
    if isinstance(v, np.generic):
        return v.item()
    return v


def _point(s: str) -> tuple[float, float]:
    n, sep, v = s.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{s!r}: expected N:PSNR")
    return float(n), float(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--curve", help="CSV with columns step and the metric")
    src.add_argument("--mlflow-run", help="MLflow run id of a training")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="with --mlflow-run")
    p.add_argument("--metric", default="val_psnr", help="validation metric [dB]")
    p.add_argument("--min-step", type=float, default=0.0, help="drop points before this step")
    p.add_argument("--target", type=float, help="target PSNR [dB] (see --reference)")
    p.add_argument("--reference", type=float,
                   help="the final model's value in the target's metric (the target is then "
                   "a gain over the last step)")
    p.add_argument("--data-points", nargs="+", type=_point, metavar="N:PSNR",
                   help="(training images, final PSNR) of runs at a similar network size")
    p.add_argument("--data-target", type=float, help="target of the data-volume fit "
                   "(default: --target)")
    p.add_argument("--card", help="model_card.json for the hours per step (default: beside "
                   "--curve)")
    p.add_argument("--hours-per-step", type=float, help="wall hours per training step")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--c-min", type=float, default=0.05, help="smallest power c")
    p.add_argument("--c-max", type=float, default=3.0, help="largest power c")
    p.add_argument("--out", required=True, help="output folder")
    args = p.parse_args(argv)
    steps, vals, source = read_curve(args)
    if np.sum(steps >= args.min_step) < 3:
        raise SystemExit(f"{source}: {np.sum(steps >= args.min_step)} validation points from "
                         f"step {args.min_step:g}; the fit needs at least 3 (6 or more for a "
                         "meaningful asymptote)")
    res = analyse(steps, vals, args.target, args.reference, args.bootstrap, args.seed,
                  args.c_min, args.c_max, args.min_step)
    if args.data_points:
        res["data_volume"] = data_volume(args.data_points, data_target(args), args.c_min,
                                         args.c_max)
    hps, hsrc = hours_per_step(args)
    res["hours_per_step"] = hps
    res["source"] = source
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(res, steps, vals, source, out / "learning_curve_fit.png")
    text = summary_markdown(res, source, hps, hsrc)
    res.pop("_boots")
    res["summary"] = text
    with atomic_path(out / "learning_curve_fit.json") as tmp:
        tmp.write_text(json.dumps(finite_json(res), indent=1, allow_nan=False))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
