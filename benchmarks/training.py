"""Benchmark of the networks: training and inference throughput on this machine.

Measures, in one process, for the demo and the full-campaign architectures:

* training throughput [samples/s] (Adam step on random patches) in fp32 (contiguous) and
  with channels_last + bf16 autocast (what the loop uses when ``amp`` and the CPU has bf16);
* inference throughput [frames/s] of :func:`etem.models.inference.denoise_images` on 512²
  and 1024² frames, fp32 vs channels_last + bf16, and the PSNR cost of bf16 (max |diff|);
* the blind-spot multi-frame model (training samples/s, movie frames/s).

Medians of repeated timings after warm-up. Writes a markdown table.

Usage: ``.venv/bin/python benchmarks/training.py [--threads 2] [--out benchmarks/training.md]``
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import time
from pathlib import Path

# as `etem train` does: idle OpenMP threads sleep (the machine may be shared)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np


def _machine() -> str:
    import torch

    from etem.models.inference import bf16_supported

    bf16 = "bf16" if bf16_supported(torch.device("cpu")) else "no bf16"
    host = platform.node() or "host"
    return f"{host} ({os.cpu_count()} cores, {bf16}), torch {torch.__version__}"


def _time(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def train_throughput(arch: dict, shape: tuple[int, ...], bf16: bool, repeat: int) -> float:
    """Samples/s of Adam steps on random input of ``shape`` (N, C, H, W)."""
    import torch

    from etem.models.factory import build_model

    torch.manual_seed(0)
    model = build_model(arch)
    x = torch.rand(*shape)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = model(x).float()
        loss = y.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return shape[0] / _time(step, repeat)


_CHILD = """
import time, torch
from etem.models.factory import build_model
torch.set_num_threads({threads})
torch.manual_seed(0)
m = build_model({{"kind": "denoiser", "depth": 2, "base_channels": 16}})
opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.rand(4, 1, 32, 32)
ts = []
for i in range(25):
    t = time.perf_counter()
    loss = m(x).square().mean(); opt.zero_grad(); loss.backward(); opt.step()
    ts.append(time.perf_counter() - t)
ts = sorted(ts[5:])
print(ts[len(ts) // 2])
"""


def _omp_child(policy: str, threads: int) -> float:
    """Median s/step of a tiny training loop in a fresh process with OMP_WAIT_POLICY=policy."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    out = subprocess.run([sys.executable, "-c", _CHILD.format(threads=threads)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/training.md")
    args = parser.parse_args()

    import torch

    from etem.config import load_config
    from etem.models.factory import architecture, build_model, count_parameters
    from etem.models.inference import denoise_images, denoise_movie

    torch.set_num_threads(args.threads)
    cmd = f"`python benchmarks/training.py --threads {args.threads}`"
    machine = _machine()
    date = _dt.date.today().isoformat()
    rows: list[tuple[str, str]] = []
    demo = load_config("config/demo.yaml")
    full = load_config("config/config.yaml")
    archs = {
        "demo denoiser": (architecture("denoiser", demo.training.denoiser),
                          (8, 1, 96, 96)),
        "full denoiser": (architecture("denoiser", full.training.denoiser),
                          (16, 1, 128, 128)),
        "demo unsupervised": (architecture("unsupervised", demo.training.unsupervised),
                              (4, 5, 64, 64)),
    }
    for name, (arch, shape) in archs.items():
        n_par = count_parameters(build_model(arch))
        fp32 = train_throughput(arch, shape, False, args.repeat)
        bf16 = train_throughput(arch, shape, True, args.repeat)
        rows.append((f"training, {name} ({n_par / 1e6:.2f} M params), batch {shape[0]} x "
                     f"{shape[-1]}² px", f"fp32 {fp32:.1f} samples/s; channels_last+bf16 "
                     f"{bf16:.1f} samples/s ({bf16 / fp32:.2f}x)"))

    rng = np.random.default_rng(0)
    for name in ("demo denoiser", "full denoiser"):
        torch.manual_seed(0)
        model = build_model(archs[name][0]).eval()
        for size in (512, 1024):
            counts = rng.poisson(0.5, (2, size, size)).astype(np.float32)
            t32 = _time(lambda m=model, c=counts: denoise_images(m, c, 0.5, amp=False),
                        max(2, args.repeat // 2), 1)
            t16 = _time(lambda m=model, c=counts: denoise_images(m, c, 0.5, amp=True),
                        max(2, args.repeat // 2), 1)
            diff = float(np.abs(denoise_images(model, counts, 0.5, amp=False)
                                - denoise_images(model, counts, 0.5, amp=True)).max())
            rows.append((f"inference, {name}, {size}² frames (denoise_images, batch 2)",
                         f"fp32 {2 / t32:.2f} frames/s; channels_last+bf16 {2 / t16:.2f} "
                         f"frames/s ({t32 / t16:.2f}x); max abs(fp32 − bf16) {diff:.2g} "
                         "(untrained weights)"))
    torch.manual_seed(0)
    uns = build_model(archs["demo unsupervised"][0]).eval()
    frames = rng.poisson(0.5, (8, 256, 256)).astype(np.float32)
    t = _time(lambda: denoise_movie(uns, frames, 0.5, amp=True), 2, 1)
    rows.append(("inference, demo unsupervised, 256² movie (denoise_movie, bf16)",
                 f"{len(frames) / t:.2f} frames/s"))

    waits = {policy: _omp_child(policy, args.threads) for policy in ("ACTIVE", "PASSIVE")}
    load = os.getloadavg()[0]
    rows.append((f"OMP_WAIT_POLICY, tiny U-Net step (4 x 32², fp32, {args.threads} threads), "
                 f"load average {load:.1f}",
                 f"ACTIVE {waits['ACTIVE'] * 1e3:.0f} ms/step; PASSIVE "
                 f"{waits['PASSIVE'] * 1e3:.0f} ms/step (etem train sets PASSIVE)"))

    lines = [
        "# Training benchmark",
        "",
        f"torch threads: {args.threads}; medians of {args.repeat} timings after warm-up; "
        "random weights and inputs (throughput does not depend on them). The machine may be "
        "shared with other jobs: compare ratios within one run.",
        "",
        "| figure | value | command | machine | date |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {f} | {v} | {cmd} | {machine} | {date} |" for f, v in rows]
    text = "\n".join(lines) + "\n"
    from etem.io import write_text

    write_text(Path(args.out), text)
    print(text)


if __name__ == "__main__":
    main()
