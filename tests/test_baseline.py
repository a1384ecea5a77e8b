"""The random-forest baseline against scikit-learn and a hand-made linear binning."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from photozsom.baseline import RandomForestPhotoZ
from photozsom.pdf import CENTRES, N_COMPONENTS, MixturePDF


def data(n: int = 1500, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    z = np.clip(0.7 + 0.25 * X[:, 0] - 0.1 * X[:, 1] + 0.04 * rng.normal(size=n), 0.0, 1.6)
    return X, z


@pytest.fixture(scope="module")
def fitted():
    X, z = data()
    rf = RandomForestPhotoZ(n_estimators=40, seed=0).fit(X[:1200], z[:1200])
    return rf, X[1200:], z[1200:], (X[:1200], z[:1200])


def test_forest_is_scikit_learns_forest_with_the_same_seed(fitted):
    rf, X, _, (Xtr, ztr) = fitted
    sk = RandomForestRegressor(n_estimators=40, random_state=0).fit(Xtr, ztr)
    np.testing.assert_allclose(rf.predict_point(X), sk.predict(X), atol=1e-12)
    trees = rf.predict_trees(X)
    assert trees.shape == (len(X), 40)
    np.testing.assert_allclose(trees.mean(axis=1), sk.predict(X), atol=1e-12)


def test_pdf_is_valid_and_its_mean_and_median_follow_the_trees(fitted):
    rf, X, _, _ = fitted
    pdf = rf.predict(X)
    assert isinstance(pdf, MixturePDF) and len(pdf) == len(X)
    np.testing.assert_array_equal(pdf.centres, CENTRES)
    np.testing.assert_allclose(pdf.weights.sum(axis=1), 1.0, atol=1e-12)
    trees = rf.predict_trees(X)
    # truncation moves the means of the components within ~3 sigma of the support edges
    interior = ((trees > 0.02) & (trees < 1.58)).all(axis=1)
    assert interior.mean() > 0.8
    np.testing.assert_allclose(pdf.mean()[interior], rf.predict_point(X)[interior], atol=1e-9)
    # the PDF median lies within the spread of the trees around their median
    gap = np.abs(pdf.median() - np.median(trees, axis=1))
    assert np.median(gap) < 0.01
    assert np.all(gap < np.std(trees, axis=1) + 0.01)


def test_linear_binning_of_tree_predictions_by_hand():
    rf = RandomForestPhotoZ(n_estimators=2)
    step = CENTRES[1] - CENTRES[0]
    t = np.array([[CENTRES[10] + 0.25 * step, CENTRES[50]],
                  [0.0, 1.6]])
    w = rf.pdf_from_trees(t).weights
    expect = np.zeros((2, N_COMPONENTS))
    expect[0, 10], expect[0, 11], expect[0, 50] = 0.5 * 0.75, 0.5 * 0.25, 0.5
    expect[1, 0], expect[1, -1] = 0.5, 0.5
    np.testing.assert_allclose(w, expect, atol=1e-12)


def test_bandwidth_widens_the_pdf():
    rf = RandomForestPhotoZ(n_estimators=1, bandwidth=0.02)
    t = np.array([[0.8]])
    wide = rf.pdf_from_trees(t).std()[0]
    narrow = RandomForestPhotoZ(n_estimators=1).pdf_from_trees(t).std()[0]
    np.testing.assert_allclose(wide, np.hypot(0.02, narrow), rtol=0.02)


def test_rf_save_load_round_trip(fitted, tmp_path):
    rf, X, z, _ = fitted
    path = rf.save(tmp_path / "rf.joblib")
    back = RandomForestPhotoZ.load(path)
    np.testing.assert_array_equal(back.predict(X).weights, rf.predict(X).weights)
    np.testing.assert_allclose(back.predict(X).crps(z), rf.predict(X).crps(z))


def test_rf_rejects_nan_wrong_width_and_out_of_range_redshifts(fitted):
    rf, X, _, _ = fitted
    Xb = X.copy()
    Xb[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rf.predict(Xb)
    with pytest.raises(ValueError, match="trained on 8"):
        rf.predict(X[:, :5])
    with pytest.raises(ValueError, match="outside"):
        RandomForestPhotoZ(n_estimators=2).fit(X, np.full(len(X), 2.0))
    with pytest.raises(RuntimeError, match="not trained"):
        RandomForestPhotoZ().predict(X)
