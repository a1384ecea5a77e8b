"""The random-forest baseline against scikit-learn and brute force; the published-catalogue P(z)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import ndtr
from sklearn.ensemble import RandomForestRegressor

from photozsom.artifacts import ArtifactError
from photozsom.baseline import (
    PUBLISHED_QUANTILES,
    RandomForestPhotoZ,
    published_photoz_pdf,
    published_photoz_valid,
)
from photozsom.evaluation import metrics
from photozsom.pdf import CENTRES, N_COMPONENTS, MixturePDF

STEP = CENTRES[1] - CENTRES[0]
EDGES = np.concatenate([[0.0], 0.5 * (CENTRES[1:] + CENTRES[:-1]), [1.6]])


def data(n: int, seed: int):
    """A well-specified problem: z = f(X) + Gaussian noise of width 0.03-0.045 (1 + z)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    mean = 0.6 + 0.25 * np.tanh(X[:, 0]) + 0.1 * X[:, 1] * X[:, 2] / (1 + np.abs(X[:, 1]))
    sig = 0.03 * (1 + mean) * (1 + 0.5 * (X[:, 3] > 0))
    z = mean + sig * rng.normal(size=n)
    ok = (z > 0.0) & (z < 1.6)
    return X[ok], z[ok]


@pytest.fixture(scope="module")
def fitted():
    X, z = data(4000, 0)
    Xv, zv = data(2000, 1)
    Xt, zt = data(3000, 2)
    rf = RandomForestPhotoZ(n_estimators=100, seed=0).fit(X, z, Xv, zv)
    return rf, (X, z), (Xv, zv), (Xt, zt)


def test_trees_and_forest_equal_scikit_learns_with_the_same_seed(fitted):
    rf, (X, z), _, (Xt, _) = fitted
    sk = RandomForestRegressor(n_estimators=100, random_state=0, max_features=1.0).fit(X, z)
    trees = rf.predict_trees(Xt)
    assert trees.shape == (len(Xt), 100)
    for i, est in enumerate(sk.estimators_):       # the stored node arrays walk like sklearn
        np.testing.assert_array_equal(trees[:, i], est.predict(Xt))
    np.testing.assert_allclose(rf.predict_point(Xt), sk.predict(Xt), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(rf.predict_point(Xt, "median"),
                                  np.median([e.predict(Xt) for e in sk.estimators_], axis=0))


def test_save_load_round_trip_is_exact_and_pickle_free(fitted, tmp_path):
    rf, _, _, (Xt, _) = fitted
    d = rf.save(tmp_path / "random_forest")
    assert sorted(p.name for p in d.iterdir()) == ["arrays.npz", "meta.json"]
    with np.load(d / "arrays.npz", allow_pickle=False) as f:   # plain arrays only
        assert all(f[k].dtype != object for k in f.files)
    back = RandomForestPhotoZ.load(d)
    np.testing.assert_array_equal(back.predict_trees(Xt), rf.predict_trees(Xt))
    np.testing.assert_array_equal(back.predict(Xt).weights, rf.predict(Xt).weights)
    assert (back.spread_scale_, back.floor_) == (rf.spread_scale_, rf.floor_)
    with pytest.raises(ArtifactError, match="random_forest"):
        RandomForestPhotoZ.load(tmp_path / "nothing")


def test_fitted_width_beats_the_histogram_and_gives_a_one_percent_pco(fitted):
    rf, _, _, (Xt, zt) = fitted
    fit = rf.width_fit_
    assert fit["source"] == "validation" and fit["n_galaxies"] > 1900
    assert fit["crps_fitted"] < fit["crps_histogram"]
    trees = rf.predict_trees(Xt)
    smooth = rf.predict(Xt)
    hist = rf.pdf_from_trees(trees, spread_scale=0.0, floor=0.0)
    assert smooth.crps(zt).mean() < hist.crps(zt).mean()          # also on unseen galaxies
    pco, pco_hist = (metrics.pco_fraction(p.pit(zt)) for p in (smooth, hist))
    # 1% expected for calibrated tails (3000 galaxies: binomial sd 0.18%); the forest's
    # spread is not exact, and the histogram's 1/T steps put far more outside
    assert 0.004 < pco < 0.02, pco
    assert pco_hist > 0.025 and pco_hist > 2 * pco, pco_hist


def test_fitted_width_minimises_the_validation_crps(fitted):
    rf, _, (Xv, zv), _ = fitted
    trees = rf.predict_trees(Xv)
    a, b = rf.spread_scale_, rf.floor_

    def crps(a_, b_):
        return rf.pdf_from_trees(trees, spread_scale=a_, floor=b_).crps(zv).mean()

    best = crps(a, b)
    np.testing.assert_allclose(best, rf.width_fit_["crps_fitted"], rtol=1e-12)
    for a_, b_ in ((a + 0.1, b), (max(a - 0.1, 0.0), b), (a, 1.3 * b), (a, max(b / 1.3, 1e-3))):
        assert best <= crps(a_, b_) + 1e-6, (a_, b_)


def test_smoothed_weights_are_cell_masses_of_the_truncated_gaussian_kde():
    rf = RandomForestPhotoZ(n_estimators=4, spread_scale=0.5, floor=0.01)
    rng = np.random.default_rng(3)
    t = np.vstack([0.7 + 0.05 * rng.normal(size=40), 0.02 + 0.01 * rng.random(40),
                   np.r_[np.full(30, 0.3), np.full(10, 1.1)], np.full(40, 1.58)])
    w = rf.pdf_from_trees(t, spread_scale=0.5, floor=0.01).weights
    h = 0.5 * t.std(axis=1) + 0.01 * (1 + t.mean(axis=1))
    G = ndtr((EDGES[None, :, None] - t[:, None, :]) / h[:, None, None]).mean(axis=2)
    expect = np.diff(G, axis=1)
    expect /= expect.sum(axis=1, keepdims=True)                   # truncated to [0, 1.6]
    # fine-grid binning and the 1% width ladder stay far below a cell's mass
    np.testing.assert_allclose(np.cumsum(w, axis=1), np.cumsum(expect, axis=1), atol=3e-3)
    assert np.abs(np.cumsum(w, axis=1) - np.cumsum(expect, axis=1)).mean() < 5e-4


def test_raw_histogram_is_linear_binning_by_hand():
    rf = RandomForestPhotoZ(n_estimators=2)
    t = np.array([[CENTRES[10] + 0.25 * STEP, CENTRES[50]], [0.0, 1.6]])
    w = rf.pdf_from_trees(t, spread_scale=0.0, floor=0.0).weights
    expect = np.zeros((2, N_COMPONENTS))
    expect[0, 10], expect[0, 11], expect[0, 50] = 0.5 * 0.75, 0.5 * 0.25, 0.5
    expect[1, 0], expect[1, -1] = 0.5, 0.5
    np.testing.assert_allclose(w, expect, atol=1e-12)


def test_without_validation_the_width_is_fitted_on_an_internal_split():
    X, z = data(1500, 4)
    rf = RandomForestPhotoZ(n_estimators=20, seed=1, val_fraction=0.25).fit(X, z)
    assert rf.width_fit_["source"] == "internal split"
    assert rf.width_fit_["n_galaxies"] == round(0.25 * len(z))
    assert rf.width_fit_["crps_fitted"] < rf.width_fit_["crps_histogram"]
    sk = RandomForestRegressor(n_estimators=20, random_state=1, max_features=1.0).fit(X, z)
    np.testing.assert_allclose(rf.predict_point(X[:200]), sk.predict(X[:200]), atol=1e-12)


def test_dataframe_columns_are_selected_by_name(tmp_path):
    X, z = data(600, 5)
    cols = [f"f{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=cols)
    rf = RandomForestPhotoZ(n_estimators=5, spread_scale=0.0, floor=0.01).fit(df, z)
    assert rf.feature_names == cols
    shuffled = df[cols[::-1]]
    np.testing.assert_array_equal(rf.predict(shuffled).weights, rf.predict(X).weights)
    back = RandomForestPhotoZ.load(rf.save(tmp_path / "rf"))
    assert back.feature_names == cols
    with pytest.raises(ValueError, match="f3"):
        rf.predict(df.drop(columns="f3"))


def test_rf_rejects_nan_wrong_width_and_out_of_range_redshifts(fitted):
    rf, _, _, (X, _) = fitted
    Xb = X.copy()
    Xb[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rf.predict(Xb)
    with pytest.raises(ValueError, match="trained on 6"):
        rf.predict(X[:, :5])
    with pytest.raises(ValueError, match="outside"):
        RandomForestPhotoZ(n_estimators=2).fit(X, np.full(len(X), 2.0))
    with pytest.raises(ValueError, match="both spread_scale and floor"):
        RandomForestPhotoZ(n_estimators=2, floor=0.01).fit(X, np.full(len(X), 0.5))
    with pytest.raises(ValueError, match="X_val and z_val"):
        RandomForestPhotoZ(n_estimators=2).fit(X, np.full(len(X), 0.5), X_val=X)
    with pytest.raises(RuntimeError, match="not trained"):
        RandomForestPhotoZ().predict(X)


# -- the published DR10 photo-z catalogue ------------------------------------------------------
def quantile_table(dists) -> pd.DataFrame:
    """Published-style columns from scipy distributions (the true quantiles)."""
    q = np.array(list(PUBLISHED_QUANTILES.values()))
    rows = [dict(zip(PUBLISHED_QUANTILES, d.ppf(q))) for d in dists]
    out = pd.DataFrame(rows)
    out["Z_PHOT_MEAN"] = [d.mean() for d in dists]
    out["Z_PHOT_STD"] = [d.std() for d in dists]
    return out


DISTS = [stats.norm(0.7, 0.05), stats.lognorm(0.4, scale=0.3), stats.norm(0.05, 0.03),
         stats.skewnorm(4, 0.9, 0.12), stats.uniform(1.2, 0.3), stats.norm(1.5, 0.08)]


def test_published_pdf_reproduces_the_catalogue_quantiles():
    table = quantile_table(DISTS)
    pdf = published_photoz_pdf(table)
    assert isinstance(pdf, MixturePDF) and len(pdf) == len(DISTS)
    np.testing.assert_array_equal(pdf.centres, CENTRES)
    for col, q in PUBLISHED_QUANTILES.items():
        want = np.clip(table[col].to_numpy(), 0.0, 1.6)
        got = pdf.ppf(np.full(len(table), q))
        inside = (want > STEP) & (want < 1.6 - STEP)   # at the edges the mass is folded in
        np.testing.assert_allclose(got[inside], want[inside], atol=STEP, err_msg=col)


def test_published_pdf_has_gaussian_tails_and_the_piecewise_linear_cdf():
    d = stats.norm(0.7, 0.05)
    pdf = published_photoz_pdf(quantile_table([d]))
    # beyond L95/U95 the tails are the Gaussian's with the same 95% interval
    for q in (0.001, 0.01, 0.99, 0.999):
        assert abs(pdf.ppf(q)[0] - d.ppf(q)) < STEP
    # between the quantiles the CDF is linear: at the midpoint of L68..MEDIAN it is 0.33
    row = quantile_table([d]).iloc[0]
    mid = 0.5 * (row["Z_PHOT_L68"] + row["Z_PHOT_MEDIAN"])
    cell_edge = EDGES[np.argmin(np.abs(EDGES - mid))]
    lin = 0.16 + 0.34 * (cell_edge - row["Z_PHOT_L68"]) / (row["Z_PHOT_MEDIAN"] - row["Z_PHOT_L68"])
    k = np.searchsorted(EDGES, cell_edge)
    assert abs(pdf.weights[0, :k].sum() - lin) < 1e-12


def test_published_pdf_accepts_astropy_and_dicts_and_reports_bad_input():
    from astropy.table import Table

    table = quantile_table(DISTS[:3])
    ref = published_photoz_pdf(table).weights
    np.testing.assert_array_equal(published_photoz_pdf(Table.from_pandas(table)).weights, ref)
    lower = {c.lower(): table[c].to_numpy() for c in PUBLISHED_QUANTILES}
    np.testing.assert_array_equal(published_photoz_pdf(lower).weights, ref)
    with pytest.raises(ValueError, match="Z_PHOT_U95"):
        published_photoz_pdf(table.drop(columns="Z_PHOT_U95"))
    bad = table.copy()
    bad.loc[1, "Z_PHOT_L68"] = -99.0                 # the catalogue's missing-value code
    bad.loc[2, "Z_PHOT_U68"] = bad.loc[2, "Z_PHOT_MEDIAN"] - 0.05   # disordered
    np.testing.assert_array_equal(published_photoz_valid(bad), [True, False, False])
    with pytest.raises(ValueError, match="published_photoz_valid"):
        published_photoz_pdf(bad)
    ok = published_photoz_pdf(bad[published_photoz_valid(bad)])
    np.testing.assert_array_equal(ok.weights, ref[:1])


def test_raw_prediction_is_the_tree_histogram_before_the_fitted_width(fitted):
    rf, _, _, (Xt, zt) = fitted
    raw = rf.predict(Xt[:300], raw=True)
    want = rf.pdf_from_trees(rf.predict_trees(Xt[:300]), spread_scale=0.0, floor=0.0)
    np.testing.assert_allclose(raw.weights, want.weights, rtol=0, atol=1e-15)
    # the histogram keeps the trees' mean; the smoothed P(z) is the better calibrated one
    np.testing.assert_allclose(raw.mean(), rf.predict_point(Xt[:300]), atol=2e-3)
    assert np.mean(rf.predict(Xt[:300]).crps(zt[:300])) < np.mean(raw.crps(zt[:300]))
