"""schema.validate: one clear ValueError per kind of bad catalogue, and the inputs it accepts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from photozsom import schema
from photozsom.schema import validate


def _cat(n: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "RA": rng.uniform(0, 360, n), "DEC": rng.uniform(-30, 30, n),
        "FLUX_G": rng.normal(1, 1, n), "FLUX_I": rng.normal(1, 1, n),
        "MASKBITS": np.arange(n, dtype=np.int32), "TYPE": ["PSF"] * n,
    })


def test_valid_catalogue_is_returned_unchanged():
    df = _cat()
    out = validate(df, ["RA", "DEC", "FLUX_G", "MASKBITS", "TYPE"])
    pd.testing.assert_frame_equal(out, df)


def test_missing_column_is_named():
    with pytest.raises(ValueError, match=r"cat\.fits lacks column\(s\) FLUX_W1"):
        validate(_cat(), ["RA", "FLUX_W1"], name="cat.fits")


def test_missing_band_error_names_the_features_option():
    df = _cat().drop(columns="FLUX_I")
    with pytest.raises(ValueError, match="lacks column\\(s\\) FLUX_I, .*features='auto'"):
        validate(df, ["FLUX_I"])
    with pytest.raises(ValueError, match="rename your columns") as err:  # not a photometry column
        validate(df, ["RA", "OBJID_X"])
    assert "features=" not in str(err.value)


def test_wrong_dtype_text_in_flux_column():
    df = _cat()
    df["FLUX_G"] = ["a"] * len(df)
    with pytest.raises(ValueError, match="column FLUX_G must be numeric"):
        validate(df, ["FLUX_G"])


def test_integer_column_accepts_integral_floats_only():
    df = _cat()
    df["MASKBITS"] = df["MASKBITS"].astype(float)
    validate(df, ["MASKBITS"])  # 0.0, 1.0, ... are integers in float clothing
    df.loc[2, "MASKBITS"] = 1.5
    with pytest.raises(ValueError, match="column MASKBITS must be integer"):
        validate(df, ["MASKBITS"])


def test_text_column_rejects_numbers():
    df = _cat()
    df["TYPE"] = 1.0
    with pytest.raises(ValueError, match="column TYPE must be text"):
        validate(df, ["TYPE"])


def test_nan_in_ra_names_column_and_rows():
    df = _cat(8)
    df.loc[[3, 6], "RA"] = np.nan
    msg = r"column RA has 2 non-finite value\(s\) \(first rows: \[3, 6\]\)"
    with pytest.raises(ValueError, match=msg):
        validate(df, ["RA", "DEC"])
    df = _cat()
    df.loc[1, "DEC"] = np.inf
    with pytest.raises(ValueError, match="column DEC has 1 non-finite"):
        validate(df, ["RA", "DEC"])


def test_nan_allowed_where_schema_or_caller_says_so():
    df = _cat()
    df.loc[0, "FLUX_I"] = np.nan  # schema: nan_ok (no i-band in the north)
    df.loc[1, "FLUX_G"] = np.nan
    assert schema.COLUMNS["FLUX_I"].nan_ok and not schema.COLUMNS["FLUX_G"].nan_ok
    validate(df, ["FLUX_I"])
    with pytest.raises(ValueError, match="FLUX_G"):
        validate(df, ["FLUX_G"])
    validate(df, ["FLUX_G"], allow_nan=["flux_g"])  # case-insensitive


def test_empty_table():
    with pytest.raises(ValueError, match=r"sweep\.fits is empty \(0 rows\)"):
        validate(_cat().iloc[:0], ["RA"], name="sweep.fits")
    assert len(validate(_cat().iloc[:0], ["RA"], allow_empty=True)) == 0


def test_astropy_table_lower_case_big_endian():
    t = Table()
    t["ra"] = np.array([1.0, 2.0], dtype=">f8")  # FITS columns are big-endian
    t["dec"] = np.array([3.0, 4.0], dtype=">f8")
    t["flux_g"] = np.array([5.0, 6.0], dtype=">f4")
    t["dchisq"] = np.zeros((2, 5))  # a vector column: not representable, left out
    out = validate(t, ["RA", "dec", "FLUX_G"])
    assert list(out.columns) == ["RA", "DEC", "FLUX_G"]
    assert all(out[c].dtype.byteorder in "=|" for c in out.columns)
    np.testing.assert_array_equal(out["FLUX_G"], [5.0, 6.0])


def test_structured_array_and_dict_inputs():
    arr = np.zeros(3, dtype=[("RA", "f8"), ("DEC", "f8")])
    assert list(validate(arr, ["RA", "DEC"]).columns) == ["RA", "DEC"]
    assert len(validate({"ra": [1.0], "dec": [2.0]}, ["RA", "DEC"])) == 1
    with pytest.raises(ValueError, match="expected a catalogue"):
        validate([1, 2, 3], ["RA"])


def test_schema_units_and_flux_columns():
    assert schema.COLUMNS["FLUX_G"].unit == "nanomaggy"
    assert schema.COLUMNS["RA"].unit == "deg"
    assert schema.flux_columns(["g", "W1"]) == ["FLUX_G", "FLUX_W1"]
    assert set(schema.NORTH_BANDS) < set(schema.SOUTH_BANDS)


def test_every_output_column_is_described_with_its_dtype():
    """predict_table's columns are all in schema.OUTPUT_COLUMNS, with the stated dtype kind."""
    from _catalogues import make_catalogue

    from photozsom.flags import SOMFlagger
    from photozsom.model import PhotoZModel
    from photozsom.predict import predict_table
    from photozsom.schema import OUTPUT_COLUMNS

    cat = make_catalogue(600, 4).drop(columns="PHOTSYS")
    model = PhotoZModel("catalog", seed=0, max_epochs=2, recalibration=None)
    model.fit(cat[:400], cat["Z"][:400], cat[400:500], cat["Z"][400:500], progress=False)
    fl = SOMFlagger(shape=(4, 4), n_boot=10, min_count=1, distance_quantile=1.0,
                    progress=False).fit(cat, cat, cat["Z"], cat["Z"] + 0.01)
    out = predict_table(cat[500:], model, fl)
    assert set(out.columns) <= set(OUTPUT_COLUMNS), set(out.columns) - set(OUTPUT_COLUMNS)
    kinds = {"f": "f", "i": "iu", "b": "b", "U": "OUT"}
    for name in out.columns:
        dtype = out[name].to_numpy().dtype
        assert dtype.kind in kinds[OUTPUT_COLUMNS[name].kind], (name, dtype)


def test_evaluation_tables_follow_the_declared_columns_and_the_output_naming():
    import re

    from photozsom.evaluation.results import prediction_table
    from photozsom.pdf import MixturePDF
    from photozsom.schema import EVALUATION_COLUMNS, OUTPUT_COLUMNS

    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.full(200, 0.3), size=50)
    pdf = MixturePDF(w)
    z = rng.uniform(0.1, 1.0, 50)
    t = prediction_table(pdf, np.arange(50), z)
    # the declared columns, with the one point summary scored (the mean by default)
    assert list(t.columns) == [c for c in EVALUATION_COLUMNS if c not in ("Z_PHOT_MEDIAN", "Z_PHOT_MODE")]
    for name in t.columns:
        assert t[name].dtype.kind == EVALUATION_COLUMNS[name].kind, name
        if name in OUTPUT_COLUMNS:   # one naming: the same column means the same in user output
            assert EVALUATION_COLUMNS[name].unit == OUTPUT_COLUMNS[name].unit, name
    for level in (90, 99):
        lo, hi = pdf.interval(level / 100)
        np.testing.assert_allclose(t[f"Z_PHOT_L{level}"], lo)
        np.testing.assert_allclose(t[f"Z_PHOT_U{level}"], hi)
    # one naming: every interval column of either table is Z_PHOT_[LU]<percent>
    intervals = [c for c in [*EVALUATION_COLUMNS, *OUTPUT_COLUMNS] if re.match(r"Z_PHOT_[LU]", c)]
    assert intervals and all(re.fullmatch(r"Z_PHOT_[LU](68|90|95|99)", c) for c in intervals)


def test_point_column_names_the_scored_summary_and_refuses_a_table_without_one():
    from photozsom.evaluation.results import prediction_table
    from photozsom.pdf import MixturePDF
    from photozsom.schema import POINT_COLUMNS, point_column

    rng = np.random.default_rng(1)
    pdf = MixturePDF(rng.dirichlet(np.full(200, 0.3), size=20))
    z = rng.uniform(0.1, 1.0, 20)
    for point in ("mean", "median", "mode"):
        t = prediction_table(pdf, np.arange(20), z, point=point)
        name = point_column(t)
        assert name == f"Z_PHOT_{point.upper()}" and [c for c in t if c in POINT_COLUMNS] == [name]
        np.testing.assert_allclose(t[name], getattr(pdf, point)())
    # a predict output holds all three: the mean is the one the metrics score
    assert point_column(pd.DataFrame(columns=["Z_PHOT_MODE", "Z_PHOT_MEDIAN", "Z_PHOT_MEAN"])) == "Z_PHOT_MEAN"
    # any case, returned as the table spells it
    assert point_column(pd.DataFrame(columns=["z", "z_phot_median"])) == "z_phot_median"
    with pytest.raises(ValueError, match="no point photo-z column"):
        point_column(pd.DataFrame({"Z": [0.1], "Z_PHOT": [0.1]}))
