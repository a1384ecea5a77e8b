"""Spectroscopic readers (hand-made DESI, SDSS and generic files) and the compilation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from photozsom.data import specz


def _desi_table(lower: bool = False) -> Table:
    """10 rows whose fate under the default cuts is known row by row."""
    t = Table()
    t["TARGETID"] = np.arange(10, dtype=np.int64) + 39627835576420141
    t["TARGET_RA"] = np.linspace(10.0, 11.0, 10)
    t["TARGET_DEC"] = np.linspace(-1.0, 1.0, 10)
    t["Z"] = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    t["ZERR"] = np.full(10, 1e-4, dtype=np.float32)
    #                     0  1  2  3  4  5  6  7  8  9
    t["ZWARN"] = np.array([0, 4, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.int64)
    t["DELTACHI2"] = np.array([30, 99, 10, 99, 99, 99, 99, 99, 25, 26], dtype=np.float64)
    t["SPECTYPE"] = np.array(["GALAXY", "GALAXY", "GALAXY", "STAR", "QSO", "GALAXY",
                              "GALAXY", "GALAXY", "GALAXY", "GALAXY"])
    t["COADD_FIBERSTATUS"] = np.array([0, 0, 0, 0, 0, 8, 0, 0, 0, 0], dtype=np.int32)
    t["ZCAT_PRIMARY"] = np.array([1, 1, 1, 1, 1, 1, 0, 1, 1, 1], dtype=bool)
    if lower:
        for c in list(t.colnames):
            t.rename_column(c, c.lower())
    return t


def _write_desi(path, **kw):
    t = _desi_table(**kw)
    t.meta["EXTNAME"] = "ZCATALOG"
    t.write(path, format="fits", overwrite=True)
    return t


def test_read_desi_applies_each_cut_and_counts_it(tmp_path):
    t = _write_desi(tmp_path / "zall.fits")
    df, rep = specz.read_desi(tmp_path / "zall.fits")
    # by hand: 1 ZWARN, 5 fibre, 3 STAR, 4 QSO, 2 and 8 DELTACHI2 <= 25, 6 not primary
    assert df["SPEC_ID"].tolist() == [str(t["TARGETID"][i]) for i in (0, 7, 9)]
    np.testing.assert_array_equal(df["Z"], [0.1, 0.8, 1.0])
    np.testing.assert_array_equal(df["RA"], t["TARGET_RA"][[0, 7, 9]])
    assert set(df.columns) == set(specz.SPECZ_OUTPUT_COLUMNS)
    assert (df["SURVEY"] == "DESI").all() and (df["QUALITY"] == 4).all()
    frame = rep.to_frame().set_index("cut")
    assert frame.loc["input", "remaining"] == 10
    assert frame.loc["ZCAT_PRIMARY", "removed"] == 1
    assert frame.loc["ZWARN == 0", "removed"] == 1
    assert frame.loc["COADD_FIBERSTATUS == 0", "removed"] == 1
    assert frame.loc["SPECTYPE == 'GALAXY'", "removed"] == 2
    assert frame.loc["DELTACHI2 > 25", "removed"] == 2
    assert rep.n_input - frame["removed"].sum() == rep.n_output == len(df) == 3


def test_read_desi_threshold_is_configurable_and_lower_case_columns_work(tmp_path):
    _write_desi(tmp_path / "z.fits", lower=True)
    df, rep = specz.read_desi(tmp_path / "z.fits", deltachi2_min=9.0, primary_only=False)
    # rows 2 (10 > 9) and 8 (25 > 9) now pass, and 6 (not primary) is kept
    np.testing.assert_array_equal(df["Z"], [0.1, 0.3, 0.7, 0.8, 0.9, 1.0])
    assert "ZCAT_PRIMARY" not in rep.to_frame()["cut"].tolist()


def test_read_desi_not_fits_names_the_file(tmp_path):
    p = tmp_path / "zcat.fits"
    p.write_text("TARGETID,Z\n1,0.5\n")
    with pytest.raises(ValueError, match=r"zcat\.fits is not a readable FITS file"):
        specz.read_desi(p)


def test_read_desi_missing_column_names_it(tmp_path):
    t = _desi_table()
    t.remove_column("DELTACHI2")
    t.write(tmp_path / "z.fits")
    with pytest.raises(ValueError, match=r"z\.fits lacks column\(s\) DELTACHI2"):
        specz.read_desi(tmp_path / "z.fits")


def test_read_desi_nan_coordinates_error_or_counted_drop(tmp_path):
    t = _desi_table()
    t["TARGET_DEC"][3] = np.nan
    t.write(tmp_path / "z.fits")
    with pytest.raises(ValueError, match=r"z\.fits: column TARGET_DEC has 1 .*first rows: \[3\]"):
        specz.read_desi(tmp_path / "z.fits")
    df, rep = specz.read_desi(tmp_path / "z.fits", drop_bad_coords=True)
    frame = rep.to_frame().set_index("cut")
    assert frame.loc["finite TARGET_RA/TARGET_DEC", "removed"] == 0  # row 3 already cut (STAR)
    assert len(df) == 3


def test_read_sdss_cuts(tmp_path):
    t = Table()
    t["PLUG_RA"] = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    t["PLUG_DEC"] = np.zeros(5)
    t["Z"] = np.array([0.1, 0.2, 0.3, 0.4, 0.5], dtype=np.float32)
    t["Z_ERR"] = np.full(5, 2e-5, dtype=np.float32)
    t["ZWARNING"] = np.array([0, 0, 4, 0, 0], dtype=np.int32)
    t["CLASS"] = np.array(["GALAXY", "STAR  ", "GALAXY", "QSO   ", "GALAXY"])  # padded
    t["SPECPRIMARY"] = np.array([1, 1, 1, 1, 0], dtype=np.int16)
    t["SPECOBJID"] = np.array(["a1", "a2", "a3", "a4", "a5"])
    t.write(tmp_path / "specObj-dr17.fits")
    df, rep = specz.read_sdss(tmp_path / "specObj-dr17.fits")
    assert df["SPEC_ID"].tolist() == ["a1"] and df["Z"].iloc[0] == pytest.approx(0.1)
    removed = rep.to_frame().set_index("cut")["removed"]
    assert removed["SPECPRIMARY == 1"] == 1 and removed["ZWARNING == 0"] == 1
    assert removed["CLASS == 'GALAXY'"] == 2


@pytest.mark.parametrize("fmt", ["csv", "parquet", "fits"])
def test_read_generic_column_mapping_all_formats(tmp_path, fmt):
    src = pd.DataFrame({"ra_deg": [1.0, 2.0, 3.0], "dec_deg": [0.0, 1.0, 2.0],
                        "zhelio": [0.1, 0.2, np.nan], "nq": [4, 2, 4], "ident": [11, 12, 13]})
    p = tmp_path / f"gama.{fmt}"
    if fmt == "csv":
        src.to_csv(p, index=False)
    elif fmt == "parquet":
        src.to_parquet(p)
    else:
        Table.from_pandas(src).write(p)
    df, rep = specz.read_generic(p, {"RA": "ra_deg", "DEC": "dec_deg", "Z": "zhelio",
                                     "QUALITY": "nq", "SPEC_ID": "ident"}, survey="GAMA")
    assert df["SPEC_ID"].tolist() == ["11"]  # nq=2 cut, NaN z cut
    assert df["QUALITY"].tolist() == [4.0] and np.isnan(df["Z_ERR"]).all()
    removed = rep.to_frame().set_index("cut")["removed"]
    assert removed["QUALITY >= 3"] == 1 and removed["finite ZHELIO"] == 1


def test_read_generic_bad_mapping_and_unknown_format(tmp_path):
    p = tmp_path / "x.csv"
    pd.DataFrame({"ra": [1.0], "dec": [0.0], "z": [0.1]}).to_csv(p, index=False)
    with pytest.raises(ValueError, match="columns must map 'Z'"):
        specz.read_generic(p, {"RA": "ra", "DEC": "dec"}, survey="X")
    with pytest.raises(ValueError, match=r"x\.csv lacks column\(s\) REDSHIFT"):
        specz.read_generic(p, {"RA": "ra", "DEC": "dec", "Z": "redshift"}, survey="X")
    q = tmp_path / "x.dat"
    q.write_text("1 2 3")
    with pytest.raises(ValueError, match="cannot tell the file format"):
        specz.read_generic(q, {"RA": "ra", "DEC": "dec", "Z": "z"}, survey="X")


# ---------------------------------------------------------------------------- compilation
def _offset(ra, dec, arcsec, pa_deg=45.0):
    c = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(pa_deg * u.deg, arcsec * u.arcsec)
    return c.ra.deg, c.dec.deg


def test_compile_dedup_rule_quality_then_zerr_then_priority():
    # galaxy A: DESI & SDSS at 0.5", equal quality, SDSS smaller Z_ERR -> SDSS wins
    # galaxy B: DESI & SDSS at 0.5", equal quality & Z_ERR -> DESI wins by priority
    # galaxy C: GAMA quality 4 vs DESI quality 3 -> GAMA wins despite priority
    # galaxy D: two measurements 1.5" apart -> both kept
    ra0 = np.array([10.0, 20.0, 30.0, 40.0])
    dec0 = np.zeros(4)
    ra_a, dec_a = _offset(ra0, dec0, 0.5)
    desi = pd.DataFrame({"RA": ra0, "DEC": dec0, "Z": [0.30, 0.40, 0.50, 0.60],
                         "Z_ERR": [1e-4, 1e-4, 1e-5, 1e-4], "SURVEY": "DESI",
                         "QUALITY": [4.0, 4.0, 3.0, 4.0], "SPEC_ID": ["dA", "dB", "dC", "dD"]})
    sdss = pd.DataFrame({"RA": ra_a[:2], "DEC": dec_a[:2], "Z": [0.31, 0.41],
                         "Z_ERR": [1e-5, 1e-4], "SURVEY": "SDSS", "QUALITY": 4.0,
                         "SPEC_ID": ["sA", "sB"]})
    ra_d, dec_d = _offset(ra0[3], dec0[3], 1.5)
    gama = pd.DataFrame({"RA": [ra_a[2], float(ra_d)], "DEC": [dec_a[2], float(dec_d)],
                         "Z": [0.51, 0.61], "Z_ERR": [np.nan, np.nan], "SURVEY": "GAMA",
                         "QUALITY": 4.0, "SPEC_ID": ["gC", "gD"]})
    out, counts = specz.compile_surveys([desi, sdss, gama])
    assert sorted(out["SPEC_ID"]) == ["dB", "dD", "gC", "gD", "sA"]
    assert out.set_index("SPEC_ID").loc[["sA", "dB", "gC", "dD", "gD"], "N_SPEC"].tolist() == [
        2, 2, 2, 1, 1]
    assert counts.loc["DESI"].tolist() == [4, 2, 0, 2]
    assert counts.loc["SDSS"].tolist() == [2, 1, 0, 1]
    assert counts.loc["GAMA"].tolist() == [2, 0, 0, 2]
    assert counts.loc["total"].tolist() == [8, 3, 0, 5]


def test_compile_priority_order_is_a_parameter():
    a = pd.DataFrame({"RA": [5.0], "DEC": [5.0], "Z": [0.2], "SURVEY": "DESI", "Z_ERR": [1e-4]})
    b = pd.DataFrame({"RA": [5.0], "DEC": [5.0], "Z": [0.21], "SURVEY": "SDSS", "Z_ERR": [1e-4]})
    out, _ = specz.compile_surveys([a, b])
    assert out["SURVEY"].tolist() == ["DESI"]
    out, _ = specz.compile_surveys([a, b], survey_priority=["SDSS", "DESI"])
    assert out["SURVEY"].tolist() == ["SDSS"]


def test_compile_redshift_range_after_dedup_and_counts_balance():
    rng = np.random.default_rng(3)
    n = 400
    ra = rng.uniform(0, 5, n)
    dec = rng.uniform(-2, 2, n)
    z = rng.uniform(-0.1, 2.0, n)
    desi = pd.DataFrame({"RA": ra, "DEC": dec, "Z": z, "Z_ERR": 1e-4, "SURVEY": "DESI",
                         "QUALITY": 4.0})
    # SDSS re-observes the first 100 at 0.3" with worse errors and an in-range z
    ra2, dec2 = _offset(ra[:100], dec[:100], 0.3)
    sdss = pd.DataFrame({"RA": ra2, "DEC": dec2, "Z": np.full(100, 0.5), "Z_ERR": 1e-3,
                         "SURVEY": "SDSS", "QUALITY": 4.0})
    out, counts = specz.compile_surveys([desi, sdss])
    # independent count: random positions this sparse have no other pair within 1"
    sep = SkyCoord(ra * u.deg, dec * u.deg).match_to_catalog_sky(
        SkyCoord(ra * u.deg, dec * u.deg), nthneighbor=2)[1].arcsec
    assert sep.min() > 1.0
    in_range = (z > 0) & (z < 1.6)
    assert len(out) == in_range.sum()  # SDSS lost every duplicate; DESI z decides the range
    assert (out["SURVEY"] == "DESI").all()
    assert counts.loc["SDSS", "duplicate"] == 100
    assert counts.loc["DESI", "z_range"] == (~in_range).sum()
    c = counts
    assert ((c["input"] - c["duplicate"] - c["z_range"]) == c["output"]).all()
    assert np.all((out["Z"] > 0) & (out["Z"] < 1.6))


def test_duplicate_groups_match_brute_force_friends_of_friends():
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(7)
    n = 300
    ra = rng.uniform(100, 100.05, n)  # dense enough for groups within 3"
    dec = rng.uniform(0, 0.05, n)
    labels = specz.duplicate_groups(ra, dec, 3.0, chunk_size=64)
    c = SkyCoord(ra * u.deg, dec * u.deg)
    sep = c[:, None].separation(c[None, :]).arcsec  # brute force [n, n]
    _, ref = connected_components((sep < 3.0).astype(np.int8), directed=False)
    # same partition: labels equal up to renaming
    pairs = pd.crosstab(labels, ref)
    assert ((pairs > 0).sum(axis=1) == 1).all() and ((pairs > 0).sum(axis=0) == 1).all()
    assert len(np.unique(labels)) < n  # the test really has groups


def test_compile_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        specz.compile_surveys([])
    with pytest.raises(ValueError, match=r"frames\[0\] lacks column\(s\) SURVEY"):
        specz.compile_surveys([pd.DataFrame({"RA": [1.0], "DEC": [1.0], "Z": [0.1]})])
    bad = pd.DataFrame({"RA": [1.0, np.nan], "DEC": [1.0, 1.0], "Z": [0.1, 0.2], "SURVEY": "X"})
    with pytest.raises(ValueError, match=r"frames\[0\]: column RA has 1 non-finite"):
        specz.compile_surveys([bad])


def test_compile_accepts_reader_pairs(tmp_path):
    _write_desi(tmp_path / "z.fits")
    out, counts = specz.compile_surveys([specz.read_desi(tmp_path / "z.fits")])
    assert len(out) == 3 and counts.loc["total", "input"] == 3
    table = specz.cut_table(specz.read_desi(tmp_path / "z.fits")[1])
    assert table["source"].unique().tolist() == ["z.fits"]
