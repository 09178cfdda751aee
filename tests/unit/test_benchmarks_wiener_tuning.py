"""benchmarks/wiener_tuning.py: the grid on a tiny fake campaign's training images, the best
pair, the refusal of held-out images (issue 14)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from etem.analysis.baselines import wiener
from etem.errors import InputError
from etem.evaluation.inputs import load_test_images, load_train_images
from tests.benchmark_scripts import load_benchmark
from tests.evaluation_fixtures import BENCHMARK_SPLIT, make_campaign

wt = load_benchmark("wiener_tuning")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, tiny_config):
    root = tmp_path_factory.mktemp("wiener")
    paths = make_campaign(root, n_images=8, size_px=96)
    cfg = tiny_config(root, **BENCHMARK_SPLIT)
    cfg_path = root / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return paths, cfg, cfg_path


def test_grid_on_training_images_and_best_pair(campaign, tmp_path, capsys):
    paths, cfg, cfg_path = campaign
    rc = wt.main(["--config", str(cfg_path), "--index", str(paths["index"]), "--n-images",
                  "3", "--alphas", "0.25", "4", "--smooth", "1", "3", "--out", str(tmp_path)])
    assert rc == 0
    t = pd.read_csv(tmp_path / "wiener_tuning.csv")
    s = pd.read_csv(tmp_path / "wiener_tuning_summary.csv").set_index("method")
    train = {im.image_id for im in load_train_images(paths["index"], cfg)}
    held = {im.image_id for im in load_test_images(paths["index"], cfg)}
    assert t["image_id"].nunique() == 3 and set(t["image_id"]) <= train
    assert not set(t["image_id"]) & held
    grid = {wt.wiener_name(a, sm) for a in (0.25, 4.0) for sm in (1, 3)}
    assert set(s.index) == grid | {"flat", "gaussian_oracle"}
    assert (s["n"] == 3).all()
    # the best pair is the grid's argmax of the mean Mohan PSNR, printed on the last line
    w = s.loc[sorted(grid)]
    a, sm = wt.best_pair(s.reset_index())
    assert wt.wiener_name(a, sm) == w["psnr_mohan_db_mean"].idxmax()
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"best: alpha {a:g}, smooth_px {sm}:")
    # a quarter of the noise power subtracted, unsmoothed: most of the noise stays in
    assert (s.loc["wiener_a4_s3", "psnr_mohan_db_mean"]
            > s.loc["wiener_a0.25_s1", "psnr_mohan_db_mean"] + 3)
    # the gain over the oracle is per image: its mean is the difference of the means
    assert s.loc["wiener_a4_s3", "gain_vs_oracle_db_mean"] == pytest.approx(
        s.loc["wiener_a4_s3", "psnr_mohan_db_mean"]
        - s.loc["gaussian_oracle", "psnr_mohan_db_mean"])


def test_held_out_images_are_refused(campaign):
    paths, cfg, _ = campaign
    held = load_test_images(paths["index"], cfg)[:1]
    with pytest.raises(InputError, match="training images only"):
        wt.tuning_table(cfg, held, [4.0], [3], 0.45)


def test_wiener_input_arms_see_the_same_frame() -> None:
    """benchmarks/wiener_input.py: the plain arm gets counts / dose and the dose channel, the
    Wiener arm the whole frame's Wiener estimate and counts / dose; training pairs are crops of
    one frame (shapes, and the clean target inside the clean image)."""
    wi = load_benchmark("wiener_input")
    g = np.random.default_rng(0)
    yy, xx = np.indices((64, 64))
    clean = 1 + 0.3 * np.cos(2 * np.pi * yy / 6.3) * np.cos(2 * np.pi * xx / 5.7)
    counts = g.poisson(clean * 0.5).astype(np.float64)
    plain, filt = wi.net_input("plain", counts, 0.5), wi.net_input("wiener_input", counts, 0.5)
    assert plain.shape == filt.shape == (2, 64, 64)
    np.testing.assert_allclose(plain[0], counts / 0.5, rtol=1e-6)
    assert np.all(plain[1] == np.float32(0.5))
    np.testing.assert_allclose(filt[0], wiener(counts, 0.5), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(filt[1], plain[0])
    x, y = wi.batch("wiener_input", [clean], [1.0], 0.5, 32, g, 3)
    assert tuple(x.shape) == (3, 2, 32, 32) and tuple(y.shape) == (3, 1, 32, 32)
    assert float(y.min()) >= clean.min() - 1e-6 and float(y.max()) <= clean.max() + 1e-6
