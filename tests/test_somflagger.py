"""SOMFlagger: the flag as an estimator (fit / flag / save / load), checked against the
pipeline's flags stage and the hand assembly it replaces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _catalogues import make_catalogue

from photozsom import features
from photozsom.evaluation import metrics
from photozsom.flags import (
    ALL,
    Flagger,
    RegionalFlagger,
    SOMFlagger,
    auto_shape,
    choose_thresholds,
    load_flagger,
)
from photozsom.workflow import pipeline


def test_pipeline_flags_stage_reproduces_the_hand_assembled_flagger(tiny_run):
    """The flagger the pipeline saves equals one assembled from the parts as before."""
    run = tiny_run
    res = {"chosen": load_flagger(run.root / "flags" / "flagger").thresholds_,
           "random_flags": pd.read_parquet(run.root / "flags" / "random_flags.parquet")}
    maps, reports = pipeline.load_maps(run), pipeline.load_reports(run)
    ev = pd.read_parquet(run.root / "cells" / "evaluated.parquet")
    in_train = (run.split().reindex(ev["OBJID"].to_numpy()) == "train").to_numpy()
    random = run.random()
    rc = pipeline.spec_cells(random, maps)
    hand = {}
    for r in reports:
        e, u = (ev["SOM"] == r).to_numpy(), (rc["SOM"] == r).to_numpy()
        ch = choose_thresholds(maps[r], reports[r].table["n_train"].to_numpy(),
                               ev["CELL"].to_numpy()[e], ev["DIST"].to_numpy()[e],
                               ev["Z"].to_numpy()[e], ev["Z_PHOT_MEAN"].to_numpy()[e],
                               in_train=in_train[e], pit_values=ev["PIT"].to_numpy()[e],
                               sample_cell=rc["CELL"].to_numpy()[u],
                               sample_distance=rc["DIST"].to_numpy()[u])
        hand[r] = Flagger(maps[r], reports[r], min_count=ch.min_count,
                          distance_quantile=ch.distance_quantile)
        assert res["chosen"][r] == (ch.min_count, ch.distance_quantile)
    expected = RegionalFlagger(hand).flag(random)
    saved = load_flagger(run.root / "flags" / "flagger")
    assert isinstance(saved, SOMFlagger)
    pd.testing.assert_frame_equal(saved.flag(random), expected)
    pd.testing.assert_frame_equal(res["random_flags"].drop(columns="OBJID"), expected)


def test_fit_from_scratch_equals_the_pipeline(tiny_run):
    """Maps, cell reports and thresholds fitted by SOMFlagger alone give the run's flags."""
    run = tiny_run
    saved = load_flagger(run.root / "flags" / "flagger")
    spec = run.spec_with_split()
    pool = spec[spec["SPLIT"].isin(["train", "val"])].reset_index(drop=True)
    oof = pd.read_parquet(run.root / "mdn" / "oof_predictions.parquet").set_index("OBJID")
    oof = oof.reindex(pool["OBJID"].to_numpy())
    p = pipeline.preset("tiny")
    fl = SOMFlagger(shape={"S": p["som_shape"], "N": p["som_shape_north"]},
                    n_boot=p["n_boot"], fallback=(p["min_count"], 0.99), progress=False)
    fl.fit(run.random(), pool, pool["Z"], oof["Z_PHOT_MEAN"], oof["PIT"],
           in_train=(pool["SPLIT"] == "train").to_numpy())
    assert fl.thresholds_ == saved.thresholds_
    assert {r: m.feature_names for r, m in fl.maps_.items()} == {
        "S": features.SOM_FEATURES, "N": features.NORTH_SOM_FEATURES}
    for r, rep in fl.reports_.items():
        pd.testing.assert_frame_equal(rep.table, saved.reports_[r].table)
    random = run.random()
    pd.testing.assert_frame_equal(fl.flag(random), saved.flag(random))


@pytest.fixture(scope="module")
def one_map():
    """A sample without PHOTSYS whose red galaxies (g-r > 1) get bad photo-z."""
    random = make_catalogue(6000, 11, spread=0.2).drop(columns="PHOTSYS")
    lab = make_catalogue(3000, 12, spread=0.2).drop(columns="PHOTSYS")
    rng = np.random.default_rng(0)
    g_r = features.feature_matrix(lab, ["g-r"])[0][:, 0]
    bad = g_r > 1.0
    z = lab["Z"].to_numpy()
    z_pred = z + 0.01 * rng.standard_normal(len(z))
    z_pred[bad] = np.where(rng.random(bad.sum()) < 0.5, z[bad] + 0.4, z_pred[bad])
    fl = SOMFlagger(shape=(8, 8), n_boot=100, seed=0, progress=False)
    fl.fit(random, lab, z, z_pred)
    return random, lab, z, z_pred, bad, fl


def test_one_map_without_photsys_flags_the_bad_region(one_map):
    _, lab, z, z_pred, bad, fl = one_map
    assert set(fl.maps_) == {ALL} and isinstance(fl.flagger_, Flagger)
    assert fl.maps_[ALL].feature_names == features.SOM_FEATURES
    out = fl.flag(lab)
    assert len(out) == len(lab) and out.index.equals(lab.index)
    flagged = out["flag"].to_numpy()
    # flagged galaxies are clearly worse; most of the planted bad region is flagged
    assert metrics.outlier_fraction(z[flagged], z_pred[flagged]) > \
        5 * metrics.outlier_fraction(z[~flagged], z_pred[~flagged])
    assert flagged[bad].mean() > 0.4 and flagged[bad].mean() > 3 * flagged[~bad].mean()


def test_save_load_round_trip(tmp_path, one_map):
    random, *_, fl = one_map
    back = SOMFlagger.load(fl.save(tmp_path / "fl"))
    assert back.thresholds_ == fl.thresholds_ and back.trained_on_ == "random"
    pd.testing.assert_frame_equal(back.flag(random), fl.flag(random))
    pd.testing.assert_frame_equal(back.threshold_choice_, fl.threshold_choice_,
                                  check_dtype=False)
    assert isinstance(load_flagger(tmp_path / "fl"), SOMFlagger)


def test_random_none_trains_on_the_labelled_sample_and_says_so(one_map):
    _, lab, z, z_pred, *_ = one_map
    with pytest.warns(UserWarning, match="trained on the labelled sample"):
        fl = SOMFlagger(shape=(6, 6), n_boot=20, min_count=5, distance_quantile=0.99,
                        progress=False).fit(None, lab, z, z_pred)
    assert fl.trained_on_ == "labelled" and fl.thresholds_ == {ALL: (5, 0.99)}


def test_griz_only_table_gets_its_own_recipe(one_map):
    random, lab, z, z_pred, *_ = one_map
    drop = [c for c in random.columns if c.endswith(("_W1", "_W2"))]
    fl = SOMFlagger(shape=(6, 6), n_boot=20, progress=False)
    fl.fit(random.drop(columns=drop), lab.drop(columns=drop), z, z_pred)
    assert fl.maps_[ALL].feature_names == ["g-r", "r-i", "i-z", "r"]
    assert fl.flag(lab.drop(columns=drop))["cell"].min() >= 0


def test_bad_input_is_named(one_map):
    random, lab, z, z_pred, *_ = one_map
    with pytest.raises(ValueError, match="z_true must have one value per labelled galaxy"):
        SOMFlagger(progress=False).fit(random, lab, z[:-1], z_pred)
    with pytest.raises(ValueError, match='min_count must be a number or "auto"'):
        SOMFlagger(min_count="many").fit(random, lab, z, z_pred)
    with pytest.raises(ValueError, match="not fitted"):
        SOMFlagger().flag(lab)
    with pytest.raises(ValueError, match="at least two measured bands"):
        SOMFlagger(progress=False).fit(random[["FLUX_G"]], lab, z, z_pred)


def test_auto_shape_rule():
    assert auto_shape(20 * 12 ** 2, 10 ** 6) == (12, 12)    # ~20 labelled galaxies per cell
    assert auto_shape(10 ** 6, 10 ** 7) == (32, 32)         # capped
    assert auto_shape(10 ** 6, 10 * 9 ** 2) == (9, 9)       # the random sample fills each cell
