"""The segmenter per held-out condition beside the intensity-counting baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etem.analysis.metrics import occupancy_accuracy
from etem.analysis.occupancy import IntensityCurve, disc_columns, paint
from etem.config.training import ConditionBand
from etem.evaluation.benchmark import (
    load_test_images,
    load_train_images,
    run_benchmark,
    write_outputs,
)
from etem.evaluation.protocols import segmentation_counts
from etem.evaluation.segmentation import (
    QUANTITIES,
    segmentation_conditions_table,
    summarise_segmentation_conditions,
)
from etem.report.build import section_conditions
from tests.configs import make_tiny_config
from tests.evaluation_fixtures import make_occupancy_campaign, occupancy_image
from tests.movies_fixtures import segmenter_model

BAND = {"column": "blur_fwhm_A", "low": 1.3, "high": 1.5}
LABEL = "blur_fwhm_A=[1.3,1.5]"
METHODS = {"segmenter", "intensity", "intensity_clean", "majority"}


# -- the metrics, by hand ----------------------------------------------------------------
def test_segmentation_counts_equal_hand_computed():
    true_cls = np.array([[0, 1, 1],
                         [0, 2, 2],
                         [0, 0, 3]])
    pred_cls = np.array([[1, 1, 0],
                         [0, 2, 0],
                         [0, 0, 0]])
    true_occ = {"cation_occupancy": np.array([[0, 3, 3], [0, 0, 0], [0, 0, 0]], float),
                "anion_occupancy": np.array([[0, 0, 0], [0, 2, 5], [0, 0, 0]], float)}
    pred_occ = {"cation_occupancy": np.array([[9, 3.4, 1.6], [0, 0, 0], [0, 0, 0]], float),
                "anion_occupancy": np.array([[0, 0, 0], [0, 2.2, 3.9], [0, 0, 0]], float)}
    got = {r["quantity"]: (r["num"], r["den"])
           for r in segmentation_counts(true_cls, true_occ, pred_cls, pred_occ)}
    assert got == {
        # background: true {(0,0),(1,0),(2,0),(2,1)}, pred adds (0,2),(1,2),(2,2), drops (0,0)
        "iou_background": (3, 7),
        "iou_cation": (1, 3),  # (0,1) shared; (0,0) pred only, (0,2) true only
        "iou_anion": (1, 2),
        "iou_metal": (0, 1),
        # cation pixels 3, 3 vs rint 3, 2: one exact, both within 1
        "cation_occupancy_exact": (1, 2), "cation_occupancy_within1": (2, 2),
        # anion 2, 5 vs 2, 4
        "anion_occupancy_exact": (1, 2), "anion_occupancy_within1": (2, 2),
    }
    # the training's validation metric is the same count
    assert occupancy_accuracy(pred_occ["anion_occupancy"], true_occ["anion_occupancy"],
                              true_occ["anion_occupancy"] > 0.5, 1) == 1.0
    # no predicted class map (the baselines): no IoU rows
    assert {r["quantity"] for r in segmentation_counts(true_cls, true_occ, None, pred_occ)} == {
        "cation_occupancy_exact", "cation_occupancy_within1", "anion_occupancy_exact",
        "anion_occupancy_within1"}


def test_summary_pools_counts_over_the_images_of_a_group():
    rows = []
    for img, split, cond, num, den in (("a", "test", "", 1, 4), ("b", "test", "", 3, 4),
                                       ("c", "held_out_condition", LABEL, 2, 8)):
        for q in ("cation_occupancy_exact", "iou_cation"):
            rows.append({"image_id": img, "split": split, "condition": cond,
                         "method": "segmenter", "quantity": q, "num": num, "den": den})
    s = summarise_segmentation_conditions(pd.DataFrame(rows)).set_index("group")
    assert list(s.index) == ["split=held_out_condition", "split=test",
                             f"split=held_out_condition|condition={LABEL}"]
    assert s.loc["split=test", "cation_occupancy_exact"] == pytest.approx(4 / 8)  # not 0.5 avg
    assert s.loc["split=test", "iou_cation"] == pytest.approx(4 / 8)
    assert s.loc["split=test", "n_images"] == 2 and s.loc["split=test", "cation_pixels"] == 8
    assert s.loc[f"split=held_out_condition|condition={LABEL}", "cation_occupancy_exact"] == 0.25
    assert np.isnan(s.loc["split=test", "anion_occupancy_exact"])  # no anion rows: NaN


# -- the intensity baseline --------------------------------------------------------------
def _columns(seed: int, n_images: int, dark: bool = False):
    g = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        clean, cls, occ = occupancy_image(g)
        img = 2.0 - clean if dark else clean
        out.append((disc_columns(img, cls, 1, occ["cation_occupancy"]), occ, cls))
    return out


@pytest.mark.parametrize("dark", [False, True])
def test_intensity_curve_recovers_occupancy_when_intensity_is_monotone(dark):
    train, test = _columns(0, 6, dark), _columns(1, 3, dark)
    x = np.concatenate([c.intensity for c, _, _ in train])
    y = np.concatenate([c.occupancy for c, _, _ in train])
    curve = IntensityCurve.fit(x, y)
    assert curve.increasing is not dark
    for cols, occ, cls in test:
        pred = paint(cols, curve.predict(cols.intensity))
        assert occupancy_accuracy(pred, occ["cation_occupancy"], cls == 1, 0) > 0.95


def test_intensity_curve_is_near_chance_when_intensity_is_shuffled():
    train, test = _columns(0, 6), _columns(1, 3)
    x = np.concatenate([c.intensity for c, _, _ in train])
    y = np.concatenate([c.occupancy for c, _, _ in train])
    curve = IntensityCurve.fit(np.random.default_rng(2).permutation(x), y)
    hits = n = 0.0
    for cols, occ, cls in test:
        pred = paint(cols, curve.predict(cols.intensity))
        m = cls == 1
        hits += occupancy_accuracy(pred, occ["cation_occupancy"], m, 0) * m.sum()
        n += m.sum()
    # six equally likely counts: chance is 1/6; the monotone fit above gets > 0.95
    assert hits / n < 0.35


def test_intensity_curve_is_the_conditional_median_not_the_mean():
    g = np.random.default_rng(3)
    y = np.where(g.random(2000) < 0.8, 3.0, 8.0)  # one dominant count
    x = g.normal(size=y.size) + 0.3 * (y == 8)  # intensity says little
    pred = IntensityCurve.fit(x, y).predict(g.normal(size=500))
    # a mean curve would round to 4 (3*0.8 + 8*0.2); the median is 3 almost everywhere
    assert np.mean(pred == 3.0) > 0.9
    assert np.all(np.diff(IntensityCurve.fit(x, y).predict(np.linspace(-3, 3, 50))) >= 0)


# -- the per-condition table -------------------------------------------------------------
@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("segcond")
    paths = make_occupancy_campaign(root, n_images=16)
    cfg = make_tiny_config(
        root, training={"split": {"val_fraction": 0.0, "test_fraction": 0.3}},
        evaluation={"max_test_images": 16, "condition_max_images": 16,
                    "condition_dose_e_per_px": 400.0, "occupancy_baseline_neighbours": 4})
    cfg.training.split.held_out_conditions = [ConditionBand(**BAND)]
    return paths, cfg


def test_table_has_rows_for_each_split_condition_and_method(campaign):
    paths, cfg = campaign
    images, train = load_test_images(paths["index"], cfg), load_train_images(paths["index"], cfg)
    assert train and {im.params["split"] for im in train} == {"train"}
    assert {im.params["split"] for im in images} == {"test", "held_out", "held_out_condition"}
    t = segmentation_conditions_table(cfg, images, train, segmenter_model().module)
    assert set(t["method"]) == METHODS
    assert set(t["image_id"]) == {im.image_id for im in images}
    s = summarise_segmentation_conditions(t)
    groups = {"split=test", "split=held_out", "split=held_out_condition",
              f"split=held_out_condition|condition={LABEL}"}
    assert set(zip(s["method"], s["group"], strict=True)) == {
        (m, g) for m in METHODS for g in groups}
    assert set(QUANTITIES) | {"n_images", "cation_pixels", "anion_pixels"} <= set(s.columns)
    s = s.set_index(["method", "group"])
    # the baselines are given the true columns: no IoU of theirs
    assert s.loc[("intensity", "split=test"), list(QUANTITIES[:4])].isna().all()
    assert s.loc[("segmenter", "split=test"), "iou_background"] > 0
    # intensity is monotone in the atom count here: counting by intensity works, also under
    # the held-out condition, and far above chance (the majority count)
    for g in groups:
        for site in ("cation", "anion"):
            q = f"{site}_occupancy_exact"
            assert s.loc[("intensity_clean", g), q] > 0.95
            assert s.loc[("intensity", g), q] > 0.8
            assert s.loc[("majority", g), q] < 0.4
    # every method is scored on the same column pixels
    px = s.groupby(level="group")["cation_pixels"].nunique()
    assert (px == 1).all()
    # seeded noise: the same table again
    again = segmentation_conditions_table(cfg, images, train, None)
    assert again.equals(t[t["method"] != "segmenter"].reset_index(drop=True))


def test_benchmark_writes_the_table_figure_and_report_section(campaign, tmp_path):
    paths, cfg = campaign
    images = load_test_images(paths["index"], cfg)[:6]
    res = run_benchmark(cfg, images, segmenter=segmenter_model().module,
                        train_images=load_train_images(paths["index"], cfg))
    seg = res.tables["segmentation"]  # the all-doses table: the same counting
    assert {"iou_cation", "cation_occupancy_exact"} <= set(seg["quantity"])
    assert "split=test" in res.summary["segmentation_conditions"]
    assert "intensity" in res.summary["segmentation_conditions"]["split=test"]
    out = tmp_path / "evaluation"
    files = {p.name for p in write_outputs(cfg, res, out)}
    assert {"segmentation_conditions.csv", "segmentation_conditions_per_image.csv",
            "segmentation_conditions.png"} <= files
    html = section_conditions(out)
    assert "segmenter vs intensity counting" in html and "intensity_clean" in html
    assert html.count("data:image/png;base64,") == 2
    # without training images: the segmenter alone
    res = run_benchmark(cfg, images, segmenter=segmenter_model().module)
    assert set(res.tables["segmentation_conditions"]["method"]) == {"segmenter"}
