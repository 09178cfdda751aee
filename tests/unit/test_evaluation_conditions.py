"""The cross-condition table: held-out structures vs held-out microscope conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etem.analysis.baselines import (
    WIENER_SURE_ALPHAS,
    WIENER_SURE_SMOOTHS_PX,
    estimate_noise_sigma,
    nlm_estimated,
    oracle_gaussian,
)
from etem.config.training import ConditionBand
from etem.errors import InputError
from etem.evaluation.benchmark import load_test_images, run_benchmark, write_outputs
from etem.evaluation.conditions import conditions_table, summarise_conditions
from etem.evaluation.methods import make_methods
from tests.configs import make_tiny_config
from tests.evaluation_fixtures import BENCHMARK_SPLIT, make_campaign
from tests.movies_fixtures import blur_model, window_model

BAND = {"column": "blur_fwhm_A", "low": 1.3, "high": 1.5}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    paths = make_campaign(root, n_images=8)
    idx = pd.read_csv(paths["index"])
    idx["blur_fwhm_A"] = [1.4 if i in (0, 3, 6) else 0.5 for i in range(len(idx))]
    idx.to_csv(paths["index"], index=False)
    cfg = make_tiny_config(root, **BENCHMARK_SPLIT,
                           evaluation={"max_test_images": 8, "condition_max_images": 8})
    cfg.training.split.held_out_conditions = [ConditionBand(**BAND)]
    return paths, cfg


def test_held_out_condition_images_are_evaluated(campaign):
    paths, cfg = campaign
    images = load_test_images(paths["index"], cfg)
    splits = {im.params["split"] for im in images}
    assert "held_out_condition" in splits and "held_out" in splits
    for im in images:
        in_band = im.params["blur_fwhm_A"] > 1.3
        assert (im.params["split"] == "held_out_condition") == in_band
        assert (im.params["condition"] == "blur_fwhm_A=[1.3,1.5]") == in_band


def test_table_has_rows_per_split_condition_and_method(campaign):
    paths, cfg = campaign
    images = load_test_images(paths["index"], cfg)
    t = conditions_table(cfg, images, blur_model().module, window_model().module)
    methods = {"noisy", "flat", "gaussian_oracle", "nlm", "wiener", "wiener_sure", "supervised",
               "blind_spot"}
    assert set(t["method"]) == methods and len(t) == len(images) * len(methods)
    metrics = ["psnr_db", "ssim", "psnr_mohan_db", "ssim_mohan"]
    assert set(metrics) <= set(t.columns)
    assert np.isfinite(t.loc[t["method"] == "wiener", metrics].to_numpy(float)).all()
    assert np.isfinite(t.loc[t["method"] == "wiener_sure", metrics].to_numpy(float)).all()
    # the pair SURE chose for each image is recorded on its rows (NaN on the others)
    sure = t[t["method"] == "wiener_sure"]
    assert sure["wiener_alpha"].isin(WIENER_SURE_ALPHAS).all()
    assert sure["wiener_smooth_px"].isin(WIENER_SURE_SMOOTHS_PX).all()
    assert t.loc[t["method"] == "wiener", "wiener_alpha"].isna().all()
    s = summarise_conditions(t)
    groups = set(s["group"])
    assert {"split=held_out", "split=held_out_condition",
            "split=held_out_condition|condition=blur_fwhm_A=[1.3,1.5]"} <= groups
    by = t.groupby("method")[["psnr_db", "psnr_mohan_db"]].mean()
    # at 0.45 e/px the oracle Gaussian, NLM and the Wiener filter beat the raw counts
    for m in ("gaussian_oracle", "nlm", "wiener", "wiener_sure"):
        assert (by.loc[m] > by.loc["noisy"] + 3).all()
    # the flat image: its Mohan-metric error is the clean image's variance (in counts) plus
    # the mean's bias; the oracle Gaussian (widths up to 16 px) approaches it from above
    assert by.loc["gaussian_oracle", "psnr_mohan_db"] >= by.loc["flat", "psnr_mohan_db"] - 0.5
    # the oracle chooses its width on the clean image: never worse than a fixed 1.5 px blur
    assert by.loc["gaussian_oracle", "psnr_db"] >= by.loc["supervised", "psnr_db"] - 1e-6
    assert conditions_table(cfg, images, blur_model().module, None).equals(
        conditions_table(cfg, images, blur_model().module, None))  # seeded noise


@pytest.mark.parametrize("method", ["wiener", "wiener_sure"])
def test_wiener_is_left_out_when_switched_off(campaign, method):
    paths, cfg = campaign
    images = load_test_images(paths["index"], cfg)[:2]
    off = cfg.model_copy(deep=True)
    setattr(off.evaluation, method, False)
    assert method in set(conditions_table(cfg, images)["method"])
    assert method not in set(conditions_table(off, images)["method"])
    assert method in make_methods(cfg) and method not in make_methods(off)
    other = "wiener_sure" if method == "wiener" else "wiener"
    assert other in set(conditions_table(off, images)["method"]) and other in make_methods(off)


def test_wiener_sure_gets_each_images_dqe(campaign, monkeypatch):
    """The noise level SURE needs: the cross-condition table and the benchmark's per-image
    rows give wiener_sure the image's detector DQE (its counts' variance / mean is 1 / dqe);
    the Mohan protocol's Poisson counts, dqe 1."""
    from etem.analysis import baselines
    from etem.evaluation import benchmark, methods

    paths, cfg = campaign
    images = load_test_images(paths["index"], cfg)[:2]
    for k, im in enumerate(images):
        im.params["dqe"] = 0.5 + 0.1 * k
    seen: list[float] = []
    real = baselines.wiener_sure

    def spy(counts, dose, dqe=1.0, *a, **kw):
        seen.append(dqe)
        return real(counts, dose, dqe, *a, **kw)

    monkeypatch.setattr(baselines, "wiener_sure", spy)
    conditions_table(cfg, images)
    assert seen == [0.5, 0.6]
    seen.clear()
    fn = methods.make_methods(cfg)["wiener_sure"]
    est = methods.run_method("wiener_sure", fn, np.ones((16, 16)), 1.0, 0.7)
    assert seen == [0.7] and est.shape == (16, 16)
    seen.clear()
    methods.run_method("wiener", methods.make_methods(cfg)["wiener"], np.ones((16, 16)), 1.0,
                       0.7)  # the fixed filter takes no dqe
    assert seen == []
    assert benchmark.run_method is methods.run_method


def test_benchmark_reports_held_out_condition_rows(campaign, tmp_path):
    paths, cfg = campaign
    images = load_test_images(paths["index"], cfg)
    res = run_benchmark(cfg, images)
    s = res.tables["conditions_summary"]
    assert "split=held_out_condition" in set(s["group"])
    assert "split=held_out_condition" in res.summary["conditions"]
    d = res.tables["denoising_summary"]
    assert "split=held_out_condition" in set(d["subset"])
    files = {p.name for p in write_outputs(cfg, res, tmp_path / "out")}
    assert {"conditions_summary.csv", "conditions_per_image.csv", "conditions_psnr.png"} <= files


def test_oracle_gaussian_and_estimated_sigma():
    r = np.random.default_rng(1)
    clean = 1.0 + 0.5 * np.sin(np.arange(64)[None, :] / 3.0) * np.ones((64, 1))
    counts = r.poisson(clean * 20.0).astype(float)
    est, s = oracle_gaussian(counts, 20.0, clean, [0.5, 1.0, 2.0, 8.0])
    assert est.shape == clean.shape
    errs = {sg: np.mean((oracle_gaussian(counts, 20.0, clean, [sg])[0] - clean) ** 2)
            for sg in (0.5, 1.0, 2.0, 8.0)}
    assert s == min(errs, key=errs.get)
    assert estimate_noise_sigma(r.normal(0, 0.7, (128, 128))) == pytest.approx(0.7, rel=0.1)
    out = nlm_estimated(counts, 20.0)
    assert np.mean((out - clean) ** 2) < np.mean((counts / 20.0 - clean) ** 2)


def test_blind_spot_finetuned_rows_come_from_held_out_conditions_first(campaign, tmp_path):
    """``evaluation.finetune_images``: the blind-spot network fine-tuned on an image's own
    noisy frames (no clean image; kept only when its blind-spot loss on those frames falls)
    denoises the first images of the table, held-out conditions first; not kept, its rows are
    the parent's; kept, it is no worse; the plain blind-spot rows do not change."""
    from etem.models.io import load
    from etem.training.run import train_network
    from tests.training_fixtures import write_movie

    paths, cfg = campaign
    images = load_test_images(paths["index"], cfg)
    held = [im for im in images if im.params["split"] == "held_out_condition"]
    images = [next(im for im in images if im.params["split"] != "held_out_condition"), *held[:2]]
    loop = {"steps": 6, "val_every_steps": 3, "batch_size": 4, "patch_px": 32,
            "val_samples": 4, "val_patch_px": 32}
    parent_cfg = make_tiny_config(tmp_path / "p", training={"unsupervised": loop})
    movie = write_movie(tmp_path / "m.h5", n_frames=8, size=48, dose_e_per_px=2.0)
    train_network("unsupervised", parent_cfg, movie, tmp_path / "parent.pt", panels=False)
    parent = load(tmp_path / "parent.pt")
    tuned = cfg.model_copy(deep=True)
    tuned.evaluation.finetune_images = 2
    tuned.evaluation.finetune_steps = 12
    t = conditions_table(tuned, images, None, parent)
    ft = t[t["method"] == "blind_spot_finetuned"].set_index("image_id")
    base = t[t["method"] == "blind_spot"].set_index("image_id")
    noisy = t[t["method"] == "noisy"].set_index("image_id")
    assert sorted(ft.index) == sorted(im.image_id for im in held[:2])
    kept = ft["finetune_kept"].astype(bool)
    assert ft["finetune_kept"].isin([True, False]).all()
    assert (ft["psnr_db"] > noisy.loc[ft.index, "psnr_db"] + 3).all()
    same = ft.index[~kept.to_numpy()]
    assert np.allclose(ft.loc[same, "psnr_db"], base.loc[same, "psnr_db"])
    # the keep criterion (held-out validation frame, mean-matched loss) keeps no fine-tuning
    # that makes the image worse: before it, both tunings here were kept at -1.3 / -0.9 dB
    assert (ft["psnr_db"] >= base.loc[ft.index, "psnr_db"] - 0.05).all()
    plain = conditions_table(cfg, images, None, parent)
    assert "blind_spot_finetuned" not in set(plain["method"])
    assert np.allclose(plain.loc[plain["method"] == "blind_spot", "psnr_db"].to_numpy(),
                       t.loc[t["method"] == "blind_spot", "psnr_db"].to_numpy())
    with pytest.raises(InputError, match="finetune_images"):
        conditions_table(tuned, images, None, parent.module)
