"""The benchmark stage on a tiny fake campaign: tables, calibration, CLI, determinism."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from etem.analysis.likelihood import Calibration
from etem.cli import main
from etem.evaluation.benchmark import (
    load_test_images,
    make_methods,
    mohan_protocol,
    run_benchmark,
    write_outputs,
)
from etem.io import read_table
from tests.evaluation_fixtures import BENCHMARK_SPLIT, make_campaign


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, tiny_config):
    root = tmp_path_factory.mktemp("bench")
    paths = make_campaign(root)
    cfg = tiny_config(root, **BENCHMARK_SPLIT)
    cfg_path = root / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return root, paths, cfg, cfg_path


def test_tables_have_one_row_per_method_and_subset(campaign):
    _root, paths, cfg, _ = campaign
    images = load_test_images(paths["index"], cfg)
    assert {im.params["split"] for im in images} <= {"test", "held_out"}
    res = run_benchmark(cfg, images)
    for name in ("denoising_summary", "columns_summary"):
        t = res.tables[name]
        assert not t.duplicated(["method", "subset"]).any()
        assert {"all", "dose_e_per_A2=50", "dose_e_per_A2=400"} <= set(t["subset"])
    per = res.tables["per_image"]
    assert len(per) == len(images) * 2 * len(res.summary["methods"])
    assert {"wiener", "wiener_sure"} <= set(res.summary["methods"])  # fixed and chosen by SURE
    s = res.tables["denoising_summary"].set_index(["method", "subset"])
    # denoising beats the noisy input, and everything improves with dose
    assert s.loc[("gaussian_1px", "all"), "psnr_db_mean"] > s.loc[("noisy", "all"),
                                                                  "psnr_db_mean"]
    assert s.loc[("noisy", "dose_e_per_A2=400"), "psnr_db_mean"] > s.loc[
        ("noisy", "dose_e_per_A2=50"), "psnr_db_mean"]
    far = res.tables["calibration_far"]
    assert set(far["kind"]) == {"calibrated", "raw"}
    lik = res.tables["likelihood_columns"]
    # true columns are more confident than spurious ones
    assert lik.loc[lik["is_true"], "confidence"].mean() > lik.loc[~lik["is_true"],
                                                                   "confidence"].mean()


def test_mohan_protocol_scales_to_one_count_peak(campaign):
    _root, paths, cfg, _ = campaign
    images = load_test_images(paths["index"], cfg)
    methods = make_methods(cfg)
    t = mohan_protocol(cfg, images, methods)
    assert len(t) == len(images) * (len(methods) + 1)  # + the oracle Gaussian
    assert (t["peak_counts"] == 1.0).all()
    for im in images:  # the scaled clean image has max 1 count, so its mean is mean/max
        row = t[t["image_id"] == im.image_id].iloc[0]
        assert row["mean_counts_per_px"] == pytest.approx(im.clean.mean() / im.clean.max())
        # the dose handed to the methods is the measured mean count: close to the true mean
        assert row["dose_e_per_px"] == pytest.approx(row["mean_counts_per_px"], rel=0.05)
    by = t.groupby("method")["psnr_db"].mean()
    # smoothing the single-frame counts beats the raw frame by a wide margin at ~0.5 e/px
    assert by["gaussian_1px"] > by["noisy"] + 5
    # the Wiener filter is among the methods, and keeps the lattice: above the fixed Gaussian
    assert "wiener" in methods and by["wiener"] > by["gaussian_1px"]
    assert "wiener_sure" in methods and by["wiener_sure"] > by["gaussian_1px"]
    # the oracle picks its width (least MSE) on the clean image: not below a fixed width it
    # could pick (up to the clamping of the PSNR), and above it on the mean
    per = t.pivot(index="image_id", columns="method", values="psnr_db")
    assert (per["gaussian_oracle"] >= per["gaussian_1px"] - 0.1).all()
    assert by["gaussian_oracle"] >= by["gaussian_1px"]
    assert mohan_protocol(cfg, images, methods).equals(t)  # noise drawn from the seed
    res = run_benchmark(cfg, images)
    s = res.tables["mohan_summary"]
    assert {"all", "split=test"} <= set(s["subset"])
    assert res.summary["mohan_protocol"]["psnr_db"]["noisy"] == pytest.approx(by["noisy"])


def test_cli_writes_outputs_deterministically(campaign, capsys):
    root, paths, _, cfg_path = campaign
    outs = []
    for run in ("a", "b"):
        out = root / f"out_{run}"
        rc = main(["evaluate", "--config", str(cfg_path), "--index", str(paths["index"]),
                   "--out", str(out)])
        assert rc == 0
        outs.append(out)
    a, b = outs
    for name in ("denoising_summary.csv", "likelihood_calibration.json", "summary.json",
                 "per_image.parquet", "calibration_far.csv", "figures/calibration.png",
                 "mohan_summary.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    cal = Calibration.load(a / "likelihood_calibration.json")
    assert cal.meta["provenance"]["stage"] == "evaluation"
    summary = json.loads((a / "summary.json").read_text())
    assert "figures/psnr_vs_dose.png" in summary["files"]
    t = read_table(a / "denoising_summary.csv")
    assert isinstance(t, pd.DataFrame) and len(t)
    out = capsys.readouterr().out
    assert "PSNR" in out and "Mohan et al.'s protocol (peak 1 count" in out


def test_cli_missing_index_is_a_one_line_error(campaign, capsys):
    root, _, _, cfg_path = campaign
    rc = main(["evaluate", "--config", str(cfg_path), "--index", str(root / "nope.csv"),
               "--out", str(root / "x")])
    assert rc == 3
    err = capsys.readouterr().err
    assert err.startswith("etem: error:") and "nope.csv" in err


def test_write_outputs_lists_files(campaign, tmp_path):
    _root, paths, cfg, _ = campaign
    res = run_benchmark(cfg, load_test_images(paths["index"], cfg)[:1])
    files = write_outputs(cfg, res, tmp_path)
    assert all(f.exists() for f in files)
    assert (tmp_path / "figures" / "examples.png").exists()


def test_likelihood_of_a_dqe_image_is_on_effective_poisson_counts(campaign):
    """A test image recorded with detector DQE 0.7: its likelihood rows are computed on the
    effective Poisson counts (vacuum level DQE x dose per pixel), the DQE recorded."""
    _root, paths, cfg, _ = campaign
    im = load_test_images(paths["index"], cfg)[0]
    im.params["dqe"] = 0.7
    lik = run_benchmark(cfg, [im]).tables["likelihood_columns"]
    assert len(lik) and (lik["dqe"] == 0.7).all()
    assert lik["lambda_vac"].to_numpy() == pytest.approx(0.7 * lik["dose_e_per_px"].to_numpy())
