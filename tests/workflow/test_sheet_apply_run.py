"""A two-row movie sheet (a TIFF folder and an MRC stack the test writes) through the apply
rules for real: prepare -> sharded jobs -> gather per movie, one MLflow run per movie.

The models and the likelihood calibration are small stand-ins placed where the campaign's
training and benchmark jobs would write them; only the stage-config and apply rules run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import mrcfile
import numpy as np
import pytest
import tifffile

from etem.testing import lattice_movie
from tests.movies_fixtures import write_stand_in_models, write_two_movie_sheet

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PX_A = 0.2
pytestmark = pytest.mark.workflow


def test_two_row_sheet_runs_sharded_per_movie(tmp_path: Path) -> None:
    data = tmp_path / "my data"  # a space in the movies' paths, too
    a = lattice_movie(n_frames=20, size_px=48, event_frame=None, seed=1).counts
    b = lattice_movie(n_frames=12, size_px=48, event_frame=None, seed=2).counts
    assert a is not None and b is not None
    sheet = write_two_movie_sheet(data, PX_A, a, b)
    res = tmp_path / "res"
    write_stand_in_models(res, PX_A)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        # the campaign's models only (per-group training: tests/unit/test_training_group.py
        # and the train_group jobs planned in test_sheet_workflow.py)
        f"movies:\n  sheet: {sheet}\n  synthetic: false\n  group_training: false\n"
        "apply:\n"
        "  io: {shard_frames: 8, chunk_frames: 4, write_tiff: false, preview_max_frames: 0}\n"
        "  events: {calibration_frames: 4, local_window_frames: 2, local_reference_frames: 2}\n"
        "  inference: {tile_px: 64, overlap_px: 8}\n"
    )
    targets = [str(res / "apply" / n / "summary.json") for n in ("tiff_run", "mrc_run")]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "2", "--configfile", str(ROOT / "config/smoke.yaml"),
         str(overlay), "--config", f"results_dir={res}", "--allowed-rules", "stage_config",
         "apply_prepare", "apply_shard", "apply_gather", "--", *targets],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200, check=False,
    )
    logs = "\n".join(p.read_text()[-1500:] for p in (res / "logs").rglob("*.log"))
    assert out.returncode == 0, out.stderr[-3000:] + logs
    text = out.stdout + out.stderr
    # 20 frames in shards of 8 -> 3 shard jobs; 12 -> 2
    assert text.count("rule apply_shard:") == 5 and text.count("rule apply_gather:") == 2
    assert "rule train_" not in text and "rule simulate_" not in text
    for name, n in (("tiff_run", 20), ("mrc_run", 12)):
        summary = json.loads((res / "apply" / name / "summary.json").read_text())
        assert summary["n_frames"] == n
        assert (res / "apply" / name / "events.csv").exists()
        assert not list((res / "apply" / name / ".work").rglob("*.h5"))  # temp()
    tiff = json.loads((res / "apply" / "tiff_run" / "summary.json").read_text())
    assert tiff["frame_time_s"] == pytest.approx(0.025)

    mlflow.set_tracking_uri(f"sqlite:///{res / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["smoke"],
                              filter_string="tags.`etem.stage` = 'apply'")
    tags = {r["tags.etem.movie"]: r for _, r in runs.iterrows()}
    assert set(tags) == {"tiff_run", "mrc_run"}
    assert tags["tiff_run"]["tags.etem.group"] == "600C"
    assert tags["mrc_run"]["tags.etem.group"] == "O2"
    assert tags["tiff_run"]["tags.etem.snakemake.rule"] == "apply_gather"
