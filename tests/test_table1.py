"""Table 1 like for like: the published row's own point value and unknown PCO, each model with
and without its post-hoc calibration, paired bootstrap errors, and winners only beyond them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _catalogues import make_catalogue
from scipy import stats

from photozsom.baseline import published_photoz_pdf
from photozsom.calibrate import Recalibrator
from photozsom.evaluation import metrics
from photozsom.evaluation.results import (
    PUBLISHED_NOTE,
    bootstrap_replicates,
    calibration_variants,
    compare_models,
    format_table1,
    metrics_table,
    prediction_table,
    published_table,
    recalibrated_table,
    table1,
)
from photozsom.features import CATALOG_FEATURES
from photozsom.model import PhotoZModel
from photozsom.pdf import MixturePDF, default_grid
from photozsom.schema import point_column


def _table(z: np.ndarray, dz: np.ndarray, pit: np.ndarray | None = None) -> pd.DataFrame:
    """A prediction table with scaled residuals ``dz``."""
    n = len(z)
    rng = np.random.default_rng(n)
    return pd.DataFrame({"OBJID": np.arange(n), "Z": z, "Z_PHOT_MEAN": z + (1 + z) * dz,
                         "PIT": rng.uniform(0, 1, n) if pit is None else pit,
                         "CRPS": np.abs(dz)})


def _paired(n: int, seed: int, *, common: float = 0.04, own: float = 0.01, shift: float = 0.0):
    """Two models whose residuals share a large common part (same galaxies are hard for both)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.05, 1.2, n)
    c = rng.normal(0, common, n)
    da = c + rng.normal(0, own, n)
    db = c + rng.normal(shift, own, n)
    return z, da, db


def test_paired_bootstrap_se_of_a_difference_matches_the_analytic_value():
    n = 4000
    z, da, db = _paired(n, 0)
    da[:160] += 0.5                                        # shared catastrophic outliers ...
    db[100:260] += 0.5                                     # ... partly the same galaxies
    ta, tb = _table(z, da), _table(z, db)
    reps = bootstrap_replicates({"a": ta, "b": tb}, n_boot=600, seed=1)
    d_bias = reps["a"]["bias"] - reps["b"]["bias"]
    # bias difference = mean of the per-galaxy difference: SE = sd(da - db) / sqrt(N)
    assert d_bias.std(ddof=1) == pytest.approx(np.std(da - db) / np.sqrt(n), rel=0.1)
    # eta difference: mean of the difference of two indicators
    ia, ib = np.abs(da) > 0.15, np.abs(db) > 0.15
    d_eta = reps["a"]["eta_%"] - reps["b"]["eta_%"]
    assert d_eta.std(ddof=1) == pytest.approx(100 * np.std(ia.astype(float) - ib) / np.sqrt(n),
                                              rel=0.1)
    # pairing matters: without the outliers the residuals are mostly shared, and the unpaired
    # error of the bias difference is several times the paired one
    z, da2, db2 = _paired(n, 0)
    r2 = bootstrap_replicates({"a": _table(z, da2), "b": _table(z, db2)}, n_boot=200, seed=1)
    unpaired = np.hypot(r2["a"]["bias"].std(), r2["b"]["bias"].std())
    assert (r2["a"]["bias"] - r2["b"]["bias"]).std() < 0.4 * unpaired
    # one row alone: the bias SE is sd(dz) / sqrt(N), CRPS SE sd(CRPS) / sqrt(N)
    assert reps["a"]["bias"].std(ddof=1) == pytest.approx(np.std(da) / np.sqrt(n), rel=0.1)
    assert reps["a"]["CRPS"].std(ddof=1) == pytest.approx(np.std(np.abs(da)) / np.sqrt(n), rel=0.1)


def test_bootstrap_se_of_the_mad_matches_the_asymptotic_median_error():
    # Gaussian residuals of width s: median |dz| = 0.6745 s, density of |dz| there 2 phi(0.6745) / s,
    # so SE(MAD) = 1.4826 * sqrt(1 / (4 N)) / (2 phi(0.6745) / s)
    n, s = 5000, 0.03
    rng = np.random.default_rng(3)
    z = rng.uniform(0.05, 1.2, n)
    t = _table(z, rng.normal(0, s, n))
    reps = bootstrap_replicates({"m": t}, n_boot=600, seed=4)
    q = stats.norm.ppf(0.75)
    want = 1.4826 * np.sqrt(0.25 / n) / (2 * stats.norm.pdf(q) / s)
    assert reps["m"]["MAD"].std(ddof=1) == pytest.approx(want, rel=0.15)


def test_each_replicate_is_table1_of_the_resampled_galaxies():
    n = 301
    z, da, db = _paired(n, 5)
    tables = {"a": _table(z, da), "b": _table(z, db).iloc[::-1]}      # order does not matter
    reps = bootstrap_replicates(tables, n_boot=20, seed=7, block=20)
    draw = np.random.default_rng(7).integers(0, n, size=(20, n))       # the resampling rule
    for k in (0, 13):
        for name, t in tables.items():
            t = t.sort_values("OBJID").reset_index(drop=True)
            want = metrics_table({name: t.iloc[draw[k]]}).loc[name]
            got = reps[name].iloc[k]
            for col in ("MAD", "bias", "eta_%", "PCO_%", "R2", "CRPS"):
                assert got[col] == pytest.approx(float(want[col]), rel=1e-10, abs=1e-12), (name, col)
    # the weighted median also where a resample's total weight is even (mean of two values)
    w = np.bincount(draw[0][:-1], minlength=n).astype(float)
    from photozsom.evaluation.results import _weighted_medians

    x = np.abs(da)
    assert _weighted_medians(x, w[None])[0] == metrics.weighted_median(x, w)


def test_table1_carries_the_bootstrap_errors():
    z, da, db = _paired(800, 8)
    tables = {"a": _table(z, da), "b": _table(z, db)}
    reps = bootstrap_replicates(tables, n_boot=50, seed=0)
    t1 = table1(tables, replicates=reps)
    assert t1.loc["a", "MAD ±"] == pytest.approx(reps["a"]["MAD"].std(ddof=1))
    assert t1.loc["b", "bias ±"] == pytest.approx(reps["b"]["bias"].std(ddof=1))
    assert np.isnan(t1.loc["paper: AION-1 MDN", "MAD ±"])
    assert "note" not in t1                                # no row needs one
    with pytest.raises(ValueError, match="replicates lack"):
        table1(tables, replicates={"a": reps["a"]})


def test_compare_models_names_no_winner_within_the_noise_and_keeps_its_level():
    # null: both models equally good (same residual law) -> a 'winner' in about 5% of skies
    named = {"bias": 0, "MAD": 0}
    n_sky = 60
    for s in range(n_sky):
        z, da, db = _paired(400, 100 + s, common=0.03, own=0.02)
        tables = {"img": _table(z, da), "cat": _table(z, db)}
        reps = bootstrap_replicates(tables, n_boot=100, seed=s)
        v = compare_models(table1(tables), ("img", "cat"), replicates=reps)
        for col in named:
            named[col] += v.loc[col, "winner_here"] != "no significant difference"
    for col, k in named.items():
        assert k / n_sky <= 0.15, (col, k)                 # ~5% nominal; a winner every time if no SE
    # a real difference (catalogue model biased by 0.01 = many paired SEs) is found
    z, da, db = _paired(400, 1, common=0.03, own=0.02, shift=0.01)
    tables = {"img": _table(z, da), "cat": _table(z, db)}
    v = compare_models(table1(tables), ("img", "cat"), replicates=bootstrap_replicates(tables, seed=0))
    assert v.loc["bias", "winner_here"] == "image model"
    assert abs(v.loc["bias", "difference"]) > 1.96 * v.loc["bias", "se"]
    # the paper's winners are read from its values: the forest's smaller MAD, the MDN's bias
    assert v.loc["MAD", "winner_paper"] == "catalogue model"
    assert v.loc["bias", "winner_paper"] == "image model" and bool(v.loc["bias", "agrees"])
    with pytest.raises(TypeError):
        compare_models(table1(tables), ("img", "cat"))      # no winner without replicates


def _published_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    med = rng.uniform(0.2, 1.0, n)
    s = 0.03 * (1 + med)
    z = np.clip(med + s * rng.standard_t(4, n), 0.01, 1.55)
    # skewed quantiles: the median is not the centre of the intervals
    return pd.DataFrame({"OBJID": np.arange(n) + 7, "Z": z, "Z_PHOT_MEDIAN": med,
                         "Z_PHOT_L68": med - 0.8 * s, "Z_PHOT_U68": med + 1.3 * s,
                         "Z_PHOT_L95": med - 1.7 * s, "Z_PHOT_U95": med + 2.9 * s,
                         "Z_PHOT_MEAN": med + 0.2 * s, "Z_PHOT_STD": s})


def test_published_row_uses_z_phot_median_and_leaves_pco_unknown():
    cat = _published_rows(600, 0)
    pub = published_table(cat)
    assert "Z_PHOT_MEAN" not in pub and point_column(pub) == "Z_PHOT_MEDIAN"
    np.testing.assert_array_equal(pub["Z_PHOT_MEDIAN"], cat["Z_PHOT_MEDIAN"])
    # not the reconstruction's mean, which the old row used
    assert np.abs(pub["Z_PHOT_MEDIAN"] - published_photoz_pdf(cat).mean()).max() > 0.005
    assert pub["PIT"].isna().all() and pub["CRPS"].isna().all()
    z = cat["Z"].to_numpy()
    np.testing.assert_array_equal(pub["OUT95"], (z < cat["Z_PHOT_L95"]) | (z > cat["Z_PHOT_U95"]))
    rng = np.random.default_rng(1)
    other = _table(z, rng.normal(0, 0.03, len(z)))
    other["OBJID"] = cat["OBJID"].to_numpy()
    tables = {"mdn": other, "published": pub}
    reps = bootstrap_replicates(tables, n_boot=40, seed=0)
    t1 = table1(tables, replicates=reps)
    dz = (cat["Z_PHOT_MEDIAN"] - z) / (1 + z)
    assert t1.loc["published", "MAD"] == pytest.approx(1.4826 * np.median(np.abs(dz)))
    assert t1.loc["published", "bias"] == pytest.approx(dz.mean())
    assert np.isnan(t1.loc["published", "PCO_%"]) and np.isnan(t1.loc["published", "CRPS"])
    assert np.isnan(t1.loc["published", "PCO_% ±"]) and t1.loc["published", "MAD ±"] > 0
    assert t1.loc["published", "note"] == PUBLISHED_NOTE and t1.loc["mdn", "note"] == ""
    shown = format_table1(t1)
    assert shown.loc["published", "PCO_%"] == "—"
    assert shown.loc["mdn", "MAD"] == f"{t1.loc['mdn', 'MAD']:.4f} ± {t1.loc['mdn', 'MAD ±']:.4f}"
    v = compare_models(t1, ("mdn", "published"), replicates=reps)
    assert v.loc["PCO_%", "winner_here"] == "unknown" and v.loc["CRPS", "winner_here"] == "unknown"
    assert v.loc["MAD", "winner_here"] != "unknown"
    with pytest.raises(ValueError, match="Z_PHOT_L95"):
        published_table(cat.drop(columns="Z_PHOT_L95"))
    with pytest.raises(ValueError, match="'Z'"):
        published_table(cat.drop(columns="Z"))


@pytest.fixture(scope="module")
def forest():
    train, val, test = make_catalogue(1200, 11), make_catalogue(400, 12), make_catalogue(300, 13)
    model = PhotoZModel("catalog", estimator="random_forest", seed=0, n_estimators=40,
                        catalog_features=CATALOG_FEATURES, recalibration="global")
    model.fit(train, train["Z"], val, val["Z"], progress=False)
    return model, test


def test_forest_variants_raw_smoothed_and_recalibrated(forest):
    model, test = forest
    v = calibration_variants(model, test)
    assert list(v) == ["uncalibrated", "smoothed", "recalibrated"]
    X, ok, _ = model.transform(test)
    rf = model.estimator_
    trees = rf.predict_trees(X[ok])
    # uncalibrated: the raw histogram of the trees, i.e. no kernel width at all
    raw = rf.pdf_from_trees(trees, spread_scale=0.0, floor=0.0)
    np.testing.assert_allclose(v["uncalibrated"]["PIT"], raw.pit(test["Z"].to_numpy()[ok]), atol=1e-12)
    assert rf.floor_ > 0                                   # the smoothing is a real change
    smoothed = rf.pdf_from_trees(trees)
    np.testing.assert_allclose(v["smoothed"]["CRPS"], smoothed.crps(test["Z"].to_numpy()[ok]), atol=1e-12)
    # recalibrated: the model's own full prediction (smoothing, then its recalibrator)
    full = model.predict(test[ok])
    np.testing.assert_allclose(v["recalibrated"]["Z_PHOT_MEAN"], full.mean(), atol=1e-12)
    # the raw histogram's PCO is set by 40 trees x 2.5% mass each, far from the smoothed one
    assert v["uncalibrated"]["CRPS"].mean() > v["smoothed"]["CRPS"].mean()
    for t in v.values():
        assert t["OBJID"].tolist() == test["OBJID"].to_numpy()[ok].tolist()


def test_recalibrated_table_is_the_recalibrator_fitted_on_the_held_out_pdfs():
    grid = default_grid()
    rng = np.random.default_rng(2)

    def overconfident(n):
        zt = rng.uniform(0.2, 1.2, n)
        centre = zt + rng.normal(0, 0.05, n)               # true scatter 0.05, P(z) width 0.02
        w = np.exp(-0.5 * ((grid.centres[None, :] - centre[:, None]) / 0.02) ** 2)
        return MixturePDF(w / w.sum(axis=1, keepdims=True)), zt

    pdf_fit, z_fit = overconfident(3000)
    pdf, z = overconfident(1500)
    t = recalibrated_table(pdf_fit, z_fit, pdf, np.arange(1500), z)
    want = Recalibrator("global").fit(pdf_fit, z_fit).apply(pdf)
    np.testing.assert_allclose(t["PIT"], want.pit(z), atol=1e-12)
    before = prediction_table(pdf, np.arange(1500), z)
    tabs = metrics_table({"before": before, "after": t})
    assert tabs.loc["before", "PCO_%"] > 10 and abs(tabs.loc["after", "PCO_%"] - 1.0) < 1.5
