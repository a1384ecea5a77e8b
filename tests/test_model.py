"""PhotoZModel: the feature recipe by name, the imputer, the estimators, save/load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _catalogues import make_catalogue

from photozsom.artifacts import ArtifactError
from photozsom.baseline import RandomForestPhotoZ
from photozsom.features import CATALOG_FEATURES, feature_matrix
from photozsom.mdn import MDN
from photozsom.model import PhotoZModel, embedding_columns, with_embeddings


@pytest.fixture(scope="module")
def data():
    train, val, test = make_catalogue(1500, 1), make_catalogue(300, 2), make_catalogue(200, 3)
    train.loc[train.index[:40], "FLUX_IVAR_W2"] = 0.0  # undetected W2: imputed
    test.loc[test.index[:5], "FLUX_IVAR_W1"] = 0.0
    return train, val, test


@pytest.fixture(scope="module")
def fitted(data):
    train, val, _ = data
    return PhotoZModel("catalog", seed=0, max_epochs=6).fit(train, train["Z"], val, val["Z"],
                                                            progress=False)


def test_imputer_is_the_training_median_of_each_feature(data, fitted):
    train, _, test = data
    X, _ = feature_matrix(train, CATALOG_FEATURES)
    np.testing.assert_allclose(fitted.impute_values_, np.nanmedian(X.astype(np.float64), axis=0))
    Xt, ok, reason = fitted.transform(test)
    raw, _ = feature_matrix(test, CATALOG_FEATURES)
    j = CATALOG_FEATURES.index("W1-W2")
    np.testing.assert_allclose(Xt[:5, j], fitted.impute_values_[j], rtol=1e-6)
    np.testing.assert_allclose(Xt[5:], raw[5:], rtol=1e-6)
    assert ok.all()
    assert all("imputed with the training median: z-W1, W1-W2" == r for r in reason[:5])
    assert (reason[5:] == "").all()


def test_model_equals_an_mdn_on_the_same_matrix(data, fitted):
    """The recipe computes exactly the matrix one would build by hand."""
    train, val, test = data
    Xtr, _ = feature_matrix(train, CATALOG_FEATURES)
    Xva, _ = feature_matrix(val, CATALOG_FEATURES)
    med = np.nanmedian(Xtr.astype(np.float64), axis=0)
    fill = lambda X: np.where(np.isfinite(X), X, med).astype(np.float32)
    mdn = MDN(n_inputs=Xtr.shape[1], seed=0, max_epochs=6)
    mdn.fit(fill(Xtr), train["Z"].to_numpy(), fill(Xva), val["Z"].to_numpy(), progress=False)
    Xte, _ = feature_matrix(test, CATALOG_FEATURES)
    np.testing.assert_allclose(fitted.predict(test).weights, mdn.predict(fill(Xte)).weights,
                               rtol=1e-5, atol=1e-7)


def test_columns_are_selected_by_name_not_position(data, fitted):
    _, _, test = data
    shuffled = test[test.columns[::-1]]
    np.testing.assert_array_equal(fitted.predict(shuffled).weights, fitted.predict(test).weights)


def test_save_load_round_trip_and_version_check(tmp_path, data, fitted):
    _, _, test = data
    path = fitted.save(tmp_path / "model")
    back = PhotoZModel.load(path)
    np.testing.assert_allclose(back.predict(test).weights, fitted.predict(test).weights,
                               rtol=1e-6, atol=1e-8)
    assert back.feature_names_ == list(CATALOG_FEATURES)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "photozsom.photoz_model" and meta["version"] == 1
    assert not list(path.rglob("*.pkl")) and not list(path.rglob("*.pt"))
    meta["version"] = 99
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="version 99"):
        PhotoZModel.load(path)


def test_random_forest_behind_the_same_interface(data):
    train, val, test = data
    model = PhotoZModel("catalog", estimator="random_forest", seed=0, n_estimators=20)
    model.fit(train, train["Z"], val, val["Z"])
    X, _ = feature_matrix(train, CATALOG_FEATURES)
    med = np.nanmedian(X.astype(np.float64), axis=0)
    fill = lambda X: np.where(np.isfinite(X), X, med).astype(np.float32)
    Xva, _ = feature_matrix(val, CATALOG_FEATURES)
    rf = RandomForestPhotoZ(seed=0, n_estimators=20).fit(fill(X), train["Z"].to_numpy(),
                                                         fill(Xva), val["Z"].to_numpy())
    Xte, _ = feature_matrix(test, CATALOG_FEATURES)
    np.testing.assert_allclose(model.predict(test).mean(), rf.predict(fill(Xte)).mean(), rtol=1e-9)


def test_embedding_features_and_unscorable_rows(data):
    train, val, test = data
    rng = np.random.default_rng(0)
    emb = {k: rng.normal(size=(len(d), 4)) + d["Z"].to_numpy()[:, None]
           for k, d in (("train", train), ("val", val), ("test", test))}
    tr, va, te = (with_embeddings(d, emb[k]) for k, d in
                  (("train", train), ("val", val), ("test", test)))
    assert embedding_columns(4) == ["EMB_000", "EMB_001", "EMB_002", "EMB_003"]
    model = PhotoZModel("both", seed=0, max_epochs=3).fit(tr, train["Z"], va, val["Z"],
                                                          progress=False)
    assert model.feature_names_ == list(CATALOG_FEATURES) + embedding_columns(4)
    te.loc[te.index[7], "EMB_002"] = np.nan
    pdf, ok, reason = model.predict_with_status(te)
    assert ok.sum() == len(te) - 1 and not ok[7] and len(pdf) == len(te) - 1
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
    with pytest.raises(ValueError, match="FLUX_W1"):
        PhotoZModel("catalog", max_epochs=1).fit(train.drop(columns=["FLUX_W1"]), train["Z"])
    with pytest.raises(ValueError, match="rows but z_train"):
        PhotoZModel("catalog", max_epochs=1).fit(train, train["Z"][:10])
    with pytest.raises(ValueError, match="validation data"):
        PhotoZModel("catalog", recalibration="global").fit(train, train["Z"])


def test_global_recalibration_is_saved_and_applied(tmp_path, data):
    train, val, test = data
    model = PhotoZModel("catalog", seed=0, max_epochs=4, recalibration="global")
    model.fit(train, train["Z"], val, val["Z"], progress=False)
    raw = model.predict(test, recalibrate=False)
    cal = model.predict(test)
    np.testing.assert_allclose(cal.weights, model.recalibrator_.apply(raw).weights)
    back = PhotoZModel.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(back.predict(test).weights, cal.weights, rtol=1e-6, atol=1e-8)
    assert isinstance(pd.DataFrame(back.history_), pd.DataFrame)
