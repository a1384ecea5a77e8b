"""Fluxes -> asinh magnitudes, colours and feature matrices, against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from photozsom import features
from photozsom.features import SOFTENING, asinh_mag

BANDS = ("G", "R", "I", "Z", "W1", "W2")


def _lupton(flux_nmgy, b_nmgy):
    """Lupton, Gunn & Szalay (1999) eq. 2 in maggies: m = -(2.5/ln10)[asinh(x/2b) + ln b]."""
    x = np.asarray(flux_nmgy, float) * 1e-9
    b = b_nmgy * 1e-9
    return -(2.5 / np.log(10)) * (np.arcsinh(x / (2 * b)) + np.log(b))


def _catalog(flux: dict, ivar=None, mw=None, n=None) -> pd.DataFrame:
    n = n or len(next(iter(flux.values())))
    cols = {}
    for b in BANDS:
        cols[f"FLUX_{b}"] = np.asarray(flux[b], float)
        cols[f"FLUX_IVAR_{b}"] = np.full(n, 10.0) if ivar is None else np.asarray(ivar[b], float)
        cols[f"MW_TRANSMISSION_{b}"] = np.ones(n) if mw is None else np.asarray(mw[b], float)
    return pd.DataFrame(cols)


def test_asinh_magnitude_equals_ab_magnitude_for_bright_flux():
    f = np.logspace(2, 5, 50)  # >= 2000 softenings: asinh term differs by < 3e-7 mag
    np.testing.assert_allclose(asinh_mag(f, 0.05), 22.5 - 2.5 * np.log10(f), atol=1e-6, rtol=0)


def test_asinh_magnitude_matches_lupton_formula_everywhere():
    f = np.linspace(-5, 50, 1001)
    for b in SOFTENING.values():
        np.testing.assert_allclose(asinh_mag(f, b), _lupton(f, b), atol=1e-9, rtol=0)


def test_asinh_magnitude_finite_for_zero_and_negative_flux_and_monotone():
    f = np.array([-10.0, -1.0, -0.01, 0.0, 0.01, 1.0, 10.0])
    m = asinh_mag(f, 0.1)
    assert np.isfinite(m).all()
    assert np.all(np.diff(m) < 0)  # brighter (larger flux) is a smaller magnitude
    assert m[3] == pytest.approx(22.5 - 2.5 * np.log10(0.1), abs=1e-12)  # zero flux
    assert np.isnan(asinh_mag(np.array([np.nan]), 0.1)[0])
    with pytest.raises(ValueError, match="softening must be > 0"):
        asinh_mag(f, 0.0)


def test_extinction_correction_divides_by_mw_transmission():
    rng = np.random.default_rng(0)
    n = 20
    flux = {b: rng.uniform(-1, 100, n) for b in BANDS}
    mw = {b: rng.uniform(0.5, 1.0, n) for b in BANDS}
    m = features.magnitudes(_catalog(flux, mw=mw))
    for b in BANDS:
        np.testing.assert_allclose(m[b.lower()], _lupton(flux[b] / mw[b], SOFTENING[b]),
                                   atol=1e-9)
    # bright limit: the correction is the extinction A = -2.5 log10(T) magnitudes
    bright = {b: np.full(3, 1e5) for b in BANDS}
    mw3 = {b: np.array([1.0, 0.9, 0.5]) for b in BANDS}
    g = features.magnitudes(_catalog(bright, mw=mw3))["g"].to_numpy()
    np.testing.assert_allclose(g[0] - g[1:], -2.5 * np.log10([0.9, 0.5]), atol=1e-6)


def test_som_features_columns_against_hand_computation():
    flux = {"G": [1.0, 2.0], "R": [2.0, 3.0], "I": [3.0, -0.2], "Z": [4.0, 5.0],
            "W1": [6.0, 7.0], "W2": [5.0, 0.0]}
    mw = {b: [0.9, 0.95] for b in BANDS}
    X, valid = features.som_features(_catalog(flux, mw=mw))
    mag = {b: _lupton(np.array(flux[b]) / np.array(mw[b]), SOFTENING[b]) for b in BANDS}
    expected = np.column_stack([mag["G"] - mag["R"], mag["R"] - mag["I"], mag["I"] - mag["Z"],
                                mag["Z"] - mag["W1"], mag["W1"] - mag["W2"], mag["R"]])
    assert X.shape == (2, 6) and X.dtype == np.float32
    assert features.SOM_FEATURES == ["g-r", "r-i", "i-z", "z-W1", "W1-W2", "r"]
    np.testing.assert_allclose(X, expected, atol=2e-5)
    assert valid.tolist() == [True, True]  # negative and zero fluxes are valid data


def test_north_rows_without_i_band_are_invalid_for_som_only():
    n = 4
    flux = {b: np.full(n, 3.0) for b in BANDS}
    flux["I"] = np.array([3.0, np.nan, 3.0, 3.0])
    ivar = {b: np.full(n, 10.0) for b in BANDS}
    ivar["I"] = np.array([10.0, 0.0, 0.0, 10.0])  # rows 1, 2: north (no i-band imaging)
    cat = _catalog(flux, ivar=ivar)
    X, valid = features.som_features(cat)
    assert valid.tolist() == [True, False, False, True]
    assert np.isnan(X[1:3, 1:3]).all() and np.isfinite(X[1:3, [0, 3, 4, 5]]).all()
    for c, v in (("SHAPE_R", 0.5), ("SHAPE_E1", 0.1), ("SHAPE_E2", 0.0), ("SERSIC", 1.0)):
        cat[c] = v
    _, cvalid = features.catalog_features(cat)
    assert cvalid.all()  # the random-forest features use no i-band


def test_catalog_features_against_hand_computation():
    flux = {"G": [1.0, 10.0], "R": [2.0, 20.0], "I": [0, 0], "Z": [3.0, 30.0],
            "W1": [4.0, 40.0], "W2": [2.0, 30.0]}
    cat = _catalog(flux)
    cat["SHAPE_R"] = [0.0, 2.0]       # PSF: clipped to 0.01 arcsec
    cat["SHAPE_E1"] = [0.0, 0.3]
    cat["SHAPE_E2"] = [0.0, 0.4]      # |e| = 0.5 -> q = 1/3
    cat["SERSIC"] = [0.0, 4.0]
    X, valid = features.catalog_features(cat)
    mag = {b: _lupton(np.array(flux[b]), SOFTENING[b]) for b in BANDS}
    expected = np.column_stack([mag["R"], mag["G"] - mag["R"], mag["R"] - mag["Z"],
                                mag["Z"] - mag["W1"], mag["W1"] - mag["W2"],
                                [np.log10(0.01), np.log10(2.0)], [1.0, 1 / 3], [0.0, 4.0]])
    assert features.CATALOG_FEATURES[5:] == ["log10_shape_r", "axis_ratio", "sersic"]
    np.testing.assert_allclose(X, expected, atol=2e-5)
    assert valid.all()


def test_magnitudes_missing_column_is_named():
    cat = _catalog({b: [1.0] for b in BANDS}).drop(columns="MW_TRANSMISSION_Z")
    with pytest.raises(ValueError, match="MW_TRANSMISSION_Z"):
        features.magnitudes(cat)


def test_standardizer_matches_sklearn_and_round_trips():
    rng = np.random.default_rng(1)
    X = rng.normal([1, -2, 5], [0.5, 2.0, 0.0], size=(200, 3))  # third feature constant
    X[5, 0] = np.nan  # rows with a NaN are left out of the fit
    st = features.Standardizer().fit(X, names=["a", "b", "c"])
    ref = StandardScaler().fit(X[np.isfinite(X).all(axis=1)])
    np.testing.assert_allclose(st.mean, ref.mean_)
    np.testing.assert_allclose(st.std, ref.scale_)  # sklearn also uses 1 for zero spread
    Z = st.transform(X)
    np.testing.assert_allclose(Z[6:], ref.transform(X[6:]), atol=1e-5)
    back = features.Standardizer.from_dict(st.to_dict())
    np.testing.assert_array_equal(back.transform(X), Z)
    np.testing.assert_allclose(back.inverse_transform(Z[6:]), X[6:], atol=1e-5)
    with pytest.raises(ValueError, match=r"expected \[N, 3\]"):
        st.transform(X[:, :2])
    with pytest.raises(RuntimeError, match="not fitted"):
        features.Standardizer().transform(X)
