"""The HTML report renders on a tiny fake results folder, embeds figures, names what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from etem.cli import main
from etem.evaluation.benchmark import load_test_images, run_benchmark, write_outputs
from etem.paths import Layout
from tests.evaluation_fixtures import BENCHMARK_SPLIT, make_campaign


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def test_report_on_fake_results(tmp_path, capsys, tiny_config):
    from etem.config import load_config
    from etem.runs import StageRun

    make_campaign(tmp_path)
    data = tiny_config(tmp_path, **BENCHMARK_SPLIT).model_dump(mode="json")
    data["tracking"]["enabled"] = True  # sqlite store under tmp_path
    cfg = load_config(data)
    with StageRun(cfg, "train-denoiser") as run:
        for step in range(4):
            run.log_metrics({"train/loss": 1.0 / (step + 1)}, step=10 * step)
        train_run_id = run.run_id
    layout = Layout(tmp_path)
    res = run_benchmark(cfg, load_test_images(layout.simulation_index, cfg)[:2])
    write_outputs(cfg, res, layout.evaluation_dir)
    movie = layout.apply_dir("synthetic")
    movie.mkdir(parents=True)
    (movie / "summary.json").write_text(json.dumps({"n_frames": 16, "events": [10]}))
    _png(movie / "event_timeline.png")
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = tmp_path / "r" / "report.html"
    rc = main(["report", "--config", str(cfg_path), "--results", str(tmp_path), "--out",
               str(out)])
    assert rc == 0
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # self-contained: figures embedded, nothing loaded from elsewhere
    assert html.count("data:image/png;base64,") >= 5
    assert 'src="http' not in html and "<link" not in html
    for text in ("Evaluation", "Likelihood calibration", "denoising", "gaussian_1px",
                 "event timeline", cfg.hash(), "Missing results",
                 "train-denoiser: training curves", "mlflow ui --backend-store-uri",
                 "Mohan et al.'s protocol", "split=test",
                 "Held-out microscope conditions: denoisers",
                 "Movie <b>synthetic</b>: 16 frames", "Likelihood calibration: false-alarm",
                 "<details>"):
        assert text.lower() in html.lower(), text
    # run ids stay out of the report (same config, same bytes); the lineage sidecar has them
    assert train_run_id not in html
    lineage = pd.read_csv(out.with_name("runs.csv"))
    assert train_run_id in set(lineage["run_id"])
    # the structures stage did not run: said clearly
    assert "the structures stage has not run" in html
    assert "missing: structures" in capsys.readouterr().out


def test_report_missing_results_folder_is_an_error(tmp_path, capsys, tiny_config):
    cfg = tiny_config(tmp_path, **BENCHMARK_SPLIT)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    rc = main(["report", "--config", str(cfg_path), "--results", str(tmp_path / "none")])
    assert rc == 3
    assert "no such folder" in capsys.readouterr().err


def test_empty_results_folder_renders_with_every_section_missing(tmp_path, tiny_config):
    from etem.report.build import build_report

    cfg = tiny_config(tmp_path, **BENCHMARK_SPLIT)
    doc, present = build_report(cfg, tmp_path)
    assert not any(v for k, v in present.items() if k != "provenance")
    assert "the evaluation stage has not run" in doc and "the apply stage has not run" in doc


def test_training_curves_get_one_panel_per_quantity():
    from etem.report.build import curve_panels

    steps = [0, 100, 200, 300]
    hist = {"train_loss": [(s, 1.0 / (s + 1)) for s in steps],
            "val_loss": [(s, 2.0 / (s + 1)) for s in steps],
            "lr": [(s, 1e-3) for s in steps],
            "val_psnr": [(s, 20.0 + s / 100) for s in steps],
            "throughput_samples_per_s": [(s, 50.0) for s in steps],
            "val_iou_cation": [(0, 0.5)]}  # one point: no curve
    fig = curve_panels(hist)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "learning rate", "PSNR [dB]"]
    assert fig.axes[0].get_yscale() == "log"
    assert {ln.get_label() for ln in fig.axes[0].get_lines()} == {"train_loss", "val_loss"}
    assert [ln.get_label() for ln in fig.axes[2].get_lines()] == ["val_psnr"]
    assert curve_panels({"throughput_samples_per_s": hist["lr"]}) is None


def test_headline_compares_the_best_network_with_the_best_baseline(tmp_path):
    from etem.report.build import section_headline

    layout = Layout(tmp_path)
    d = layout.evaluation_dir
    d.mkdir(parents=True)
    rows = [("noisy", 12.0, 0.2), ("gaussian_1.5px", 20.0, 0.5), ("nlm", 21.0, 0.55),
            ("supervised", 24.5, 0.7), ("unsupervised", 23.0, 0.65)]
    pd.DataFrame([{"method": m, "subset": s, "n": 10, "psnr_db_mean": p, "psnr_db_sem": 0.1,
                   "ssim_mean": q, "ssim_sem": 0.01} for m, p, q in rows
                  for s in ("all", "dose_e_per_A2=25")]).to_csv(d / "denoising_summary.csv",
                                                                index=False)
    pd.DataFrame([{"method": "supervised", "subset": "all", "n": 10, "psnr_db_mean": 33.0}]
                 ).to_csv(d / "mohan_summary.csv", index=False)
    text = section_headline(layout)
    assert "<b>supervised</b> 24.5 dB PSNR, SSIM 0.70" in text
    assert "best baseline nlm 21.0 dB" in text and "+3.5 dB" in text and "raw 12.0 dB" in text
    assert 'class="bad">33.0 dB</span> against the published 35-38 dB' in text
    # the Wiener filter is a baseline, never "the best network", even when it leads
    t = pd.read_csv(d / "denoising_summary.csv")
    w = t[t["method"] == "nlm"].assign(method="wiener", psnr_db_mean=26.0)
    pd.concat([t, w]).to_csv(d / "denoising_summary.csv", index=False)
    text = section_headline(layout)
    assert "<b>supervised</b> 24.5 dB" in text
    assert "best baseline wiener 26.0 dB" in text and "-1.5 dB" in text


def test_movies_table_by_condition(tmp_path: Path) -> None:
    from etem.report.build import movies_table

    dirs = []
    for name, chosen, n_ev in (("b_hot", "gaussian", 1), ("a_cold", "unsupervised", 0)):
        d = tmp_path / name
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({
            "n_frames": 100, "n_events": n_ev, "denoiser": chosen, "denoiser_candidate": chosen,
            "gaussian_sigma_px": 1.5 if chosen == "gaussian" else None,
            "denoiser_upsnr_dB": {"raw": 10.0, "gaussian": 14.5, "unsupervised": 17.0}}))
        pd.DataFrame({"onset_frame": [40] * n_ev, "onset_time_s": [1.0] * n_ev,
                      "kind": ["rotation"] * n_ev}).to_csv(d / "events.csv", index=False)
        dirs.append(d)
    t = movies_table(dirs, {"b_hot": "600C", "a_cold": "25C"}).set_index("movie")
    assert list(t.index) == ["a_cold", "b_hot"]  # by condition
    assert t.loc["b_hot", "group"] == "600C" and t.loc["b_hot", "onsets (kind)"] == "1 s (rotation)"
    assert t.loc["a_cold", "uPSNR gain over raw [dB]"] == 7.0
    assert t.loc["b_hot", "uPSNR gain over raw [dB]"] == 4.5
    # a classical filter is named with the parameter its uMSE chose
    assert t.loc["b_hot", "denoiser"] == "gaussian (sigma 1.5 px)"
    assert t.loc["a_cold", "denoiser"] == "unsupervised"
    w = tmp_path / "w"
    w.mkdir()
    (w / "summary.json").write_text(json.dumps({
        "denoiser": "wiener", "denoiser_candidate": "wiener", "wiener_alpha": 4.0,
        "wiener_smooth_px": 3, "denoiser_upsnr_dB": {"raw": 10.0, "wiener": 16.0}}))
    t = movies_table([w], {}).set_index("movie")
    assert t.loc["w", "denoiser"] == "wiener (alpha 4, smoothing 3 px)"
    assert t.loc["w", "uPSNR gain over raw [dB]"] == 6.0
