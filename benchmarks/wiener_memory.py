"""Peak memory and wall time of the Wiener filter (``etem.analysis.baselines.wiener``) on
full detector frames: the DCT form in etem against the mirror-extended FFT form it replaced
(an inline copy below), one subprocess per form and frame shape.

Each child builds a Poisson lattice frame of counts (float64, as ``wiener_denoise`` passes
them; made in row blocks so building it peaks no higher than the frame), reads its RSS, runs
the filter once and reads the peak RSS (``ru_maxrss``: every allocation, pocketfft's and
ndimage's buffers included) — the figure is the peak above the RSS before the call; then
once under ``tracemalloc`` (numpy's arrays only) and ``--repeats`` times for the median wall
time. The old form's child also runs the new form on the same counts and reports the largest
difference / the old output's range. The old form runs only on frames of at most
``--old-max-px`` pixels (default 4096², ~3.5 GiB there).

    .venv/bin/python benchmarks/wiener_memory.py
    .venv/bin/python benchmarks/wiener_memory.py --shapes 1024x1024 4096x4096 --repeats 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from etem.analysis.baselines import wiener

SHAPES = ["1024x1024", "2048x2048", "4096x4096", "5760x4092"]
MIB = 1024.0**2


def wiener_mirror_fft(counts: np.ndarray, dose_px: float, alpha: float = 2.5,
                      smooth_px: int = 5, dqe: float = 1.0) -> np.ndarray:
    """The form replaced (etem before the DCT form): FFT of the 2H x 2W mirror extension;
    as etem's filter is now, the zero frequency left out of the smoothed power (the mean over
    each window's other frequencies)."""
    y = np.asarray(counts, dtype=np.float64)
    h, w = y.shape
    ext = np.block([[y, y[:, ::-1]], [y[::-1, :], y[::-1, ::-1]]])
    f = np.fft.fft2(ext)
    power = np.abs(f) ** 2
    power[0, 0] = 0.0
    if smooth_px > 1:
        mask = np.ones_like(power)
        mask[0, 0] = 0.0
        power = uniform_filter(power, int(smooth_px), mode="wrap")
        power /= uniform_filter(mask, int(smooth_px), mode="wrap")
    noise = float(ext.sum()) / dqe
    gain = np.clip(1.0 - alpha * noise / np.maximum(power, 1e-30), 0.0, 1.0)
    gain[0, 0] = 1.0
    return np.asarray(np.real(np.fft.ifft2(f * gain))[:h, :w] / dose_px)


def lattice_counts(h: int, w: int, dose_px: float, seed: int = 0) -> np.ndarray:
    """Poisson counts [e/px] of a two-period cosine lattice (vacuum 1), float64, by rows."""
    rng = np.random.default_rng(seed)
    out = np.empty((h, w), dtype=np.float64)
    x = np.arange(w)
    for r0 in range(0, h, 256):
        yy = np.arange(r0, min(h, r0 + 256))[:, None]
        clean = (1.0 + 0.3 * np.cos(2 * np.pi * x / 7.3) * np.cos(2 * np.pi * yy / 6.1)
                 + 0.1 * np.cos(2 * np.pi * (x + yy) / 11.7))
        out[r0:r0 + len(yy)] = rng.poisson(clean * dose_px)
    return out


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(form: str, shape: str, repeats: int, dose_px: float) -> dict[str, Any]:
    h, w = (int(v) for v in shape.split("x"))
    counts = lattice_counts(h, w, dose_px)
    run = wiener_mirror_fft if form == "old" else wiener
    base = _rss_mib()
    t0 = time.perf_counter()
    out = run(counts, dose_px)
    first_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    del out
    tracemalloc.start()
    run(counts, dose_px)
    traced = tracemalloc.get_traced_memory()[1] / MIB
    tracemalloc.stop()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(counts, dose_px)
        times.append(time.perf_counter() - t0)
    res: dict[str, Any] = {
        "form": form, "shape": shape, "frame_mib": counts.nbytes / MIB, "rss_before_mib": base,
        "peak_rss_mib": peak, "peak_above_mib": peak - base, "traced_peak_mib": traced,
        "first_s": first_s, "median_s": statistics.median(times), "times_s": times}
    if form == "old":
        ref = wiener_mirror_fft(counts, dose_px)
        res["max_diff_over_range"] = float(np.abs(wiener(counts, dose_px) - ref).max()
                                           / np.ptp(ref))
    return res


def _machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines()
        if ln.startswith("Model name")), platform.processor())
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return (f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, "
            f"{model}, numpy {np.__version__}, `uptime`: {load}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=SHAPES, help="HxW frames")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per form and frame")
    ap.add_argument("--dose", type=float, default=0.45, help="dose per pixel [e/px]")
    ap.add_argument("--old-max-px", type=int, default=4096 * 4096,
                    help="run the old form only on frames of at most this many pixels")
    ap.add_argument("--child", nargs=2, metavar=("FORM", "SHAPE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.repeats, a.dose)))
        return
    print(_machine(), flush=True)
    print(f"dose {a.dose} e/px, alpha 2.5, smooth 5 px, float64 counts in; "
          f"median of {a.repeats} calls after two untimed ones\n")
    print("| frame | form | peak RSS above the RSS before the call [MiB] | "
          "tracemalloc peak [MiB] | median wall [s] | max diff / range |")
    print("|---|---|---|---|---|---|")
    for shape in a.shapes:
        h, w = (int(v) for v in shape.split("x"))
        for form in ("old", "new"):
            if form == "old" and h * w > a.old_max_px:
                print(f"| {shape} | old | not run (> --old-max-px) | | | |", flush=True)
                continue
            cmd = [sys.executable, __file__, "--child", form, shape, "--repeats",
                   str(a.repeats), "--dose", str(a.dose)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                          text=True).stdout)
            diff = f"{r['max_diff_over_range']:.1e}" if "max_diff_over_range" in r else ""
            print(f"| {shape} | {form} | {r['peak_above_mib']:,.0f} | "
                  f"{r['traced_peak_mib']:,.0f} | {r['median_s']:.3f} "
                  f"({', '.join(f'{t:.3f}' for t in r['times_s'])}) | {diff} |", flush=True)


if __name__ == "__main__":
    main()
