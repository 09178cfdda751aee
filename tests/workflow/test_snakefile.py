"""The Snakefile: config validation before any job, full-campaign planning, lint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.workflow


def snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=cwd, capture_output=True, text=True, env=env,
        timeout=300, check=False,
    )


def test_bad_config_fails_before_any_job_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: bad\nresults_dir: {tmp_path}/res\nsimulation:\n  defocus_nm: abc\n")
    out = snakemake("-n", "--configfile", str(bad))
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "simulation.defocus_nm: Input should be a valid list (got 'abc')" in text
    assert not (tmp_path / "res").exists()  # nothing ran, nothing written


def test_unknown_key_fails_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: bad\nresults_dir: {tmp_path}/res\ntraining:\n  denoisr: {{}}\n")
    out = snakemake("-n", "--configfile", str(bad))
    assert out.returncode != 0
    assert "training.denoisr: unknown key" in out.stdout + out.stderr


def test_full_campaign_plans_in_sharded_jobs(tmp_path: Path) -> None:
    out = snakemake(
        "-n", "--quiet", "rules", "--configfile", "config/config.yaml",
        "--config", f"results_dir={tmp_path}/full",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    total = int(re.search(r"^total\s+(\d+)", text, flags=re.MULTILINE).group(1))
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", text, flags=re.MULTILINE))
    from etem.config import load_config

    cfg = load_config(ROOT / "config" / "config.yaml")
    # one job per shard, not per image or structure
    assert int(counts["simulate_images"]) == cfg.simulation.n_shards
    assert int(counts["build_structures"]) == cfg.structures.n_shards
    assert total < 1000
