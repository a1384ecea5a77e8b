"""PhotoZModel: the feature recipe by name ("auto" included), the missing-input rule, the
support, the estimators, save/load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _catalogues import make_catalogue

from photozsom import features
from photozsom.artifacts import ArtifactError
from photozsom.baseline import RandomForestPhotoZ
from photozsom.features import CATALOG_FEATURES, feature_matrix
from photozsom.mdn import MDN
from photozsom.model import PhotoZModel, embedding_columns, with_embeddings


@pytest.fixture(scope="module")
def data():
    train, val, test = make_catalogue(1500, 1), make_catalogue(300, 2), make_catalogue(200, 3)
    train.loc[train.index[:40], "FLUX_IVAR_W2"] = 0.0  # undetected W2: not used in training
    test.loc[test.index[:5], "FLUX_IVAR_W1"] = 0.0
    return train, val, test


@pytest.fixture(scope="module")
def fitted(data):
    train, val, _ = data
    return PhotoZModel("catalog", seed=0, max_epochs=6, catalog_features=CATALOG_FEATURES,
                       recalibration=None).fit(train, train["Z"], val, val["Z"], progress=False)


def test_rows_with_a_missing_band_are_not_scored(data, fitted):
    test = data[2]
    assert fitted.n_unscored_train_ == 40  # the training rows without W2
    Xt, ok, reason = fitted.transform(test)
    raw, valid = feature_matrix(test, CATALOG_FEATURES)
    np.testing.assert_array_equal(ok, valid)
    assert not ok[:5].any() and ok[5:].all()
    np.testing.assert_allclose(Xt[5:], raw[5:], rtol=1e-6)
    assert all(r.startswith("not scored: missing feature(s) z-W1, W1-W2") for r in reason[:5])
    pdf, scored, _ = fitted.predict_with_status(test)
    assert len(pdf) == ok.sum() and not scored[:5].any()
    with pytest.raises(ValueError, match="cannot be scored"):
        fitted.predict(test)


def test_model_equals_an_mdn_on_the_same_matrix(data, fitted):
    """The recipe computes exactly the matrix one would build by hand (complete rows only)."""
    train, val, test = data
    Xtr, ok_tr = feature_matrix(train, CATALOG_FEATURES)
    Xva, ok_va = feature_matrix(val, CATALOG_FEATURES)
    mdn = MDN(n_inputs=Xtr.shape[1], seed=0, max_epochs=6)
    mdn.fit(Xtr[ok_tr], train["Z"].to_numpy()[ok_tr], Xva[ok_va], val["Z"].to_numpy()[ok_va],
            progress=False)
    Xte, ok_te = feature_matrix(test, CATALOG_FEATURES)
    np.testing.assert_allclose(fitted.predict(test[ok_te]).weights, mdn.predict(Xte[ok_te]).weights,
                               rtol=1e-5, atol=1e-7)


def test_auto_recipe_follows_the_bands_of_the_table(data):
    train, val, _ = data
    north = train.drop(columns=["FLUX_I", "FLUX_IVAR_I", "MW_TRANSMISSION_I", "SHAPE_R",
                                "SHAPE_E1", "SHAPE_E2", "SERSIC"])
    griz = train.drop(columns=[c for c in train.columns if c.endswith(("_W1", "_W2"))
                               or c.startswith(("MW_TRANSMISSION_", "SHAPE_"))
                               or c in ("PHOTSYS", "SERSIC")])
    assert features.auto_features(train, "catalog") == [
        "r", "g-r", "r-i", "i-z", "z-W1", "W1-W2", "log10_shape_r", "axis_ratio", "sersic"]
    assert features.auto_features(north, "catalog") == ["r", "g-r", "r-z", "z-W1", "W1-W2"]
    assert features.auto_features(north, "som") == features.NORTH_SOM_FEATURES
    assert features.auto_features(train, "som") == features.SOM_FEATURES
    m = PhotoZModel("catalog", seed=0, max_epochs=2, recalibration=None)
    m.fit(griz, griz["Z"], val, val["Z"], progress=False)
    assert m.catalog_features_ == m.feature_names_ == ["r", "g-r", "r-i", "i-z"]
    # griz fluxes without MW_TRANSMISSION are taken as dereddened
    X, _ = feature_matrix(griz, ["g-r"])
    g = features.asinh_mag(griz["FLUX_G"].to_numpy(), features.SOFTENING["G"])
    r = features.asinh_mag(griz["FLUX_R"].to_numpy(), features.SOFTENING["R"])
    np.testing.assert_allclose(X[:, 0], g - r, rtol=1e-5)
    with pytest.raises(ValueError, match="at least two measured bands"):
        PhotoZModel("catalog").fit(griz[["FLUX_G", "Z"]], griz["Z"], val, val["Z"])


def test_support_threshold_is_the_stated_quantile(data, fitted):
    """The rule recomputed with scikit-learn: nearest other reference galaxy, 0.999 quantile."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    sup = fitted.support_
    d, _ = NearestNeighbors(n_neighbors=2).fit(sup.points_).kneighbors(sup.points_)
    assert sup.threshold_ == pytest.approx(np.quantile(d[:, 1], 0.999), rel=1e-9)
    train = data[0]
    X, ok = feature_matrix(train, CATALOG_FEATURES)
    Z = (X[ok] - X[ok].mean(axis=0)) / X[ok].std(axis=0)
    pca = PCA().fit(Z)   # the same subspace as scikit-learn's principal axes
    k = sup.components_.shape[1]
    proj = sup.components_ @ sup.components_.T
    np.testing.assert_allclose(proj, pca.components_[:k].T @ pca.components_[:k], atol=1e-4)


def test_nonsense_photometry_is_never_ok(data, fitted):
    _, _, test = data
    flux = [c for c in test.columns if c.startswith("FLUX_") and not c.startswith("FLUX_IVAR")]
    good = test.iloc[5:]
    neg = good.assign(**{c: -np.abs(good[c]) - 1.0 for c in flux})
    huge = good.assign(**{c: 1e30 for c in flux})
    nan = good.assign(**{c: np.nan for c in flux})
    _, ok, reason = fitted.predict_with_status(good)
    inside = ok & (reason == "")
    assert inside.mean() > 0.97  # galaxies like the training ones are inside
    for bad in (neg, huge):
        _, ok, reason = fitted.predict_with_status(bad)
        assert ok.all() and all(r.startswith("outside the training data") for r in reason)
    _, ok, reason = fitted.predict_with_status(nan)
    assert not ok.any() and all(r.startswith("not scored: missing feature(s)") for r in reason)


def test_columns_are_selected_by_name_not_position(data, fitted):
    test = data[2].iloc[5:]
    shuffled = test[test.columns[::-1]]
    np.testing.assert_array_equal(fitted.predict(shuffled).weights, fitted.predict(test).weights)


def test_save_load_round_trip_and_version_check(tmp_path, data, fitted):
    _, _, test = data
    test = test.iloc[5:]
    path = fitted.save(tmp_path / "model")
    back = PhotoZModel.load(path)
    np.testing.assert_allclose(back.predict(test).weights, fitted.predict(test).weights,
                               rtol=1e-6, atol=1e-8)
    assert back.feature_names_ == list(CATALOG_FEATURES)
    assert back.support_.threshold_ == fitted.support_.threshold_
    np.testing.assert_array_equal(back.support_.inside(back.transform(test)[0]),
                                  fitted.support_.inside(fitted.transform(test)[0]))
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "photozsom.photoz_model" and meta["version"] == 2
    assert not list(path.rglob("*.pkl")) and not list(path.rglob("*.pt"))
    meta["version"] = 99
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="version 99"):
        PhotoZModel.load(path)


def test_random_forest_behind_the_same_interface(data):
    train, val, test = data
    model = PhotoZModel("catalog", estimator="random_forest", seed=0, n_estimators=20,
                        catalog_features=CATALOG_FEATURES, recalibration=None)
    model.fit(train, train["Z"], val, val["Z"])
    X, ok = feature_matrix(train, CATALOG_FEATURES)
    Xva, ok_va = feature_matrix(val, CATALOG_FEATURES)
    rf = RandomForestPhotoZ(seed=0, n_estimators=20).fit(X[ok], train["Z"].to_numpy()[ok],
                                                         Xva[ok_va], val["Z"].to_numpy()[ok_va])
    Xte, ok_te = feature_matrix(test, CATALOG_FEATURES)
    np.testing.assert_allclose(model.predict(test[ok_te]).mean(), rf.predict(Xte[ok_te]).mean(),
                               rtol=1e-9)


def test_embedding_features_and_unscorable_rows(data):
    train, val, test = data
    rng = np.random.default_rng(0)
    emb = {k: rng.normal(size=(len(d), 4)) + d["Z"].to_numpy()[:, None]
           for k, d in (("train", train), ("val", val), ("test", test))}
    tr, va, te = (with_embeddings(d, emb[k]) for k, d in
                  (("train", train), ("val", val), ("test", test)))
    assert embedding_columns(4) == ["EMB_000", "EMB_001", "EMB_002", "EMB_003"]
    model = PhotoZModel("both", seed=0, max_epochs=3, catalog_features=CATALOG_FEATURES,
                        recalibration=None).fit(tr, train["Z"], va, val["Z"], progress=False)
    assert model.feature_names_ == list(CATALOG_FEATURES) + embedding_columns(4)
    te.loc[te.index[7], "EMB_002"] = np.nan
    pdf, ok, reason = model.predict_with_status(te)
    assert ok.sum() == len(te) - 6 and not ok[7] and len(pdf) == len(te) - 6  # + 5 without W1
    assert reason[7].startswith("not scored: 1 embedding value(s) missing")
    with pytest.raises(ValueError, match="cannot be scored"):
        model.predict(te)
    with pytest.raises(ValueError, match="EMB_000"):
        PhotoZModel("embedding").fit(train, train["Z"], val, val["Z"])


def test_bad_input_gives_clear_errors(data):
    train, _, _ = data
    with pytest.raises(ValueError, match="features must be one of"):
        PhotoZModel("pixels").fit(train, train["Z"])
    with pytest.raises(ValueError, match="non-finite redshift"):
        PhotoZModel("catalog").fit(train, np.where(np.arange(len(train)) == 3, np.nan, train["Z"]))
    with pytest.raises(ValueError, match="not fitted"):
        PhotoZModel("catalog").predict(train)
    with pytest.raises(ValueError, match="FLUX_W1.*features='auto'"):
        PhotoZModel("catalog", max_epochs=1, catalog_features=CATALOG_FEATURES,
                    recalibration=None).fit(train.drop(columns=["FLUX_W1"]), train["Z"])
    with pytest.raises(ValueError, match="rows but z_train"):
        PhotoZModel("catalog", max_epochs=1, recalibration=None).fit(train, train["Z"][:10])
    with pytest.raises(ValueError, match="validation data"):   # the forest has no out-of-fold map
        PhotoZModel("catalog", estimator="random_forest",
                    recalibration="global").fit(train, train["Z"])
    with pytest.raises(ValueError, match="validation data"):
        PhotoZModel("catalog", recalibration="cell").fit(train, train["Z"])


def test_global_recalibration_is_saved_and_applied(tmp_path, data):
    train, val, test = data
    model = PhotoZModel("catalog", seed=0, max_epochs=4, recalibration="global")
    model.fit(train, train["Z"], val, val["Z"], progress=False)
    test = test.iloc[5:]
    raw = model.predict(test, recalibrate=False)
    cal = model.predict(test)
    np.testing.assert_allclose(cal.weights, model.recalibrator_.apply(raw).weights)
    back = PhotoZModel.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(back.predict(test).weights, cal.weights, rtol=1e-6, atol=1e-8)
    pd.testing.assert_frame_equal(back.history_, model.history_, check_dtype=False)


def test_recalibration_source_follows_the_validation_size(tmp_path):
    """From RECAL_OOF_BELOW validation galaxies up the map is fitted on the final model's own
    validation P(z) (the same map as one fitted by hand on them); below, out of fold."""
    from photozsom.calibrate import Recalibrator
    from photozsom.model import RECAL_OOF_BELOW

    train, val = make_catalogue(1500, seed=3), make_catalogue(RECAL_OOF_BELOW, seed=4)
    opts = {"hidden": (16, 16, 16), "max_epochs": 2, "device": "cpu"}
    model = PhotoZModel("catalog", seed=0, catalog_features=CATALOG_FEATURES, **opts)
    model.fit(train, train["Z"], val, val["Z"], progress=False)
    Xva, ok = feature_matrix(val, CATALOG_FEATURES)
    assert model.recalibration_source_ == "validation"
    assert model.recalibrator_.n_fit_ == ok.sum()
    ref = Recalibrator("global").fit(model.estimator_.predict(Xva[ok]), val["Z"].to_numpy()[ok])
    np.testing.assert_allclose(model.recalibrator_.knots_x_, ref.knots_x_, rtol=1e-9)
    small = val.iloc[: RECAL_OOF_BELOW - 1]
    model_s = PhotoZModel("catalog", seed=0, catalog_features=CATALOG_FEATURES, **opts)
    model_s.fit(train, train["Z"], small, small["Z"], progress=False)
    assert model_s.recalibration_source_.startswith("out_of_fold")
    # the source is saved with the model
    back = PhotoZModel.load(model_s.save(tmp_path / "m"))
    assert back.recalibration_source_ == model_s.recalibration_source_
    # fields kept whole in the folds (fold_groups): named in the source, saved with the model
    train_f = train.assign(ROSETTE=np.arange(len(train)) % 4)
    small_f = small.assign(ROSETTE=4)
    model_g = PhotoZModel("catalog", seed=0, catalog_features=CATALOG_FEATURES,
                          fold_groups="rosette", **opts)
    model_g.fit(train_f, train_f["Z"], small_f, small_f["Z"], progress=False)
    assert model_g.recalibration_source_ == "out_of_fold_5_by_ROSETTE"
    assert not np.allclose(model_g.recalibrator_.knots_x_, model_s.recalibrator_.knots_x_)
    assert PhotoZModel.load(model_g.save(tmp_path / "g")).fold_groups == "ROSETTE"
    with pytest.raises(ValueError, match="fold_groups='ROSETTE': val_catalogue has no such"):
        model_g.fit(train_f, train_f["Z"], small, small["Z"], progress=False)
