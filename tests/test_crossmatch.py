"""Sky cross-match (against astropy separations and brute-force haversine) and the sweep reader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from photozsom.data import legacysurvey
from photozsom.data.crossmatch import crossmatch, crossmatch_stream, haversine_arcsec
from photozsom.data.specz import CutReport
from photozsom.schema import COLUMNS, validate


def _random_sky(rng, n, ra=(150.0, 150.2), dec=(1.0, 1.2)):
    return rng.uniform(*ra, n), rng.uniform(*dec, n)


def _phot(rng, m):
    ra, dec = _random_sky(rng, m)
    return pd.DataFrame({
        "RA": ra, "DEC": dec,
        "FLUX_G": rng.normal(1, 0.3, m).astype(np.float32),
        "MASKBITS": rng.integers(0, 4, m).astype(np.int32),
        "TYPE": rng.choice(["PSF", "REX", "EXP"], m),
        "OBJID": np.arange(m, dtype=np.int64) * 7,
    })


def _spec(rng, phot, n_near, n_far):
    """n_near rows within ~1" of a photometric object, n_far rows anywhere."""
    k = rng.choice(len(phot), n_near, replace=False)
    c = SkyCoord(phot.RA.to_numpy()[k] * u.deg, phot.DEC.to_numpy()[k] * u.deg)
    c = c.directional_offset_by(rng.uniform(0, 360, n_near) * u.deg,
                                rng.uniform(0, 1.2, n_near) * u.arcsec)
    ra_f, dec_f = _random_sky(rng, n_far)
    return pd.DataFrame({"RA": np.r_[c.ra.deg, ra_f], "DEC": np.r_[c.dec.deg, dec_f],
                         "Z": rng.uniform(0, 1.5, n_near + n_far)},
                        index=pd.RangeIndex(1000, 1000 + n_near + n_far))


def _brute_force(spec, phot, radius):
    """Nearest neighbour by haversine over all pairs (numpy, no tree)."""
    d = haversine_arcsec(spec.RA.to_numpy()[:, None], spec.DEC.to_numpy()[:, None],
                         phot.RA.to_numpy()[None, :], phot.DEC.to_numpy()[None, :])
    j = d.argmin(axis=1)
    s = d[np.arange(len(spec)), j]
    return np.where(s <= radius, j, -1), s


def test_haversine_agrees_with_astropy_separation():
    rng = np.random.default_rng(0)
    ra1, dec1 = rng.uniform(0, 360, 500), rng.uniform(-89, 89, 500)
    ra2 = ra1 + rng.normal(0, 1e-3, 500)
    dec2 = np.clip(dec1 + rng.normal(0, 1e-3, 500), -90, 90)
    ref = SkyCoord(ra1 * u.deg, dec1 * u.deg).separation(SkyCoord(ra2 * u.deg, dec2 * u.deg))
    np.testing.assert_allclose(haversine_arcsec(ra1, dec1, ra2, dec2), ref.arcsec,
                               rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 37, 10_000])
def test_crossmatch_equals_brute_force_nearest_neighbour(chunk_size):
    rng = np.random.default_rng(1)
    phot = _phot(rng, 1500)
    spec = _spec(rng, phot, 150, 100)
    out = crossmatch(spec, phot, 2.0, chunk_size=chunk_size, progress=False)
    j, s = _brute_force(spec, phot, 2.0)
    assert out.index.equals(spec.index)  # input order and index kept
    np.testing.assert_array_equal(out["MATCHED"].to_numpy(), j >= 0)
    m = j >= 0
    assert 150 <= m.sum() < 250  # the near rows match; most far rows don't
    np.testing.assert_array_equal(out["OBJID"].to_numpy(dtype=float)[m],
                                  phot.OBJID.to_numpy()[j[m]])
    np.testing.assert_allclose(out["SEP_ARCSEC"].to_numpy()[m], s[m], atol=1e-6)
    # astropy's own separation of each matched pair
    ref = SkyCoord(out.RA[m].to_numpy() * u.deg, out.DEC[m].to_numpy() * u.deg).separation(
        SkyCoord(out.RA_PHOT[m].to_numpy() * u.deg, out.DEC_PHOT[m].to_numpy() * u.deg))
    np.testing.assert_allclose(out["SEP_ARCSEC"].to_numpy()[m], ref.arcsec, rtol=1e-10)
    # left columns untouched
    pd.testing.assert_frame_equal(out[["RA", "DEC", "Z"]], spec)


def test_unmatched_rows_are_kept_with_missing_photometry():
    rng = np.random.default_rng(2)
    phot = _phot(rng, 200)
    far = pd.DataFrame({"RA": [10.0, 151.0], "DEC": [-30.0, 1.1], "Z": [0.1, 0.2]})
    out = crossmatch(far, phot, 2.0, progress=False)
    assert len(out) == 2 and not out["MATCHED"].any() and out["SEP_ARCSEC"].isna().all()
    assert out["FLUX_G"].isna().all() and out["MASKBITS"].isna().all()
    assert out["TYPE"].isna().all()
    # dtypes can hold missing values and do not depend on the data
    assert str(out["MASKBITS"].dtype) == "Int64" and out["FLUX_G"].dtype == np.float32
    full = crossmatch(phot.iloc[:5], phot, 2.0, progress=False)
    assert str(full["MASKBITS_PHOT"].dtype) == "Int64" and full["MATCHED"].all()  # suffixed
    np.testing.assert_array_equal(full["SEP_ARCSEC"], 0.0)


def test_radius_boundary_and_empty_photometry():
    base = SkyCoord(30 * u.deg, 0 * u.deg)
    inside = base.directional_offset_by(0 * u.deg, 1.99 * u.arcsec)
    outside = base.directional_offset_by(0 * u.deg, 2.01 * u.arcsec)
    phot = pd.DataFrame({"RA": [30.0], "DEC": [0.0], "FLUX_R": [3.0]})
    spec = pd.DataFrame({"RA": [inside.ra.deg, outside.ra.deg],
                         "DEC": [inside.dec.deg, outside.dec.deg]})
    out = crossmatch(spec, phot, 2.0, progress=False)
    assert out["MATCHED"].tolist() == [True, False]
    assert out["FLUX_R"].iloc[0] == 3.0 and np.isnan(out["FLUX_R"].iloc[1])
    empty = crossmatch(spec, phot.iloc[:0], 2.0, progress=False)
    assert not empty["MATCHED"].any() and "FLUX_R" in empty


def test_crossmatch_bad_input():
    phot = pd.DataFrame({"RA": [1.0], "DEC": [1.0]})
    with pytest.raises(ValueError, match="spectroscopic catalogue lacks column"):
        crossmatch(pd.DataFrame({"ra_deg": [1.0]}), phot, progress=False)
    with pytest.raises(ValueError, match="column RA has 1 non-finite"):
        crossmatch(pd.DataFrame({"RA": [np.nan], "DEC": [1.0]}), phot, progress=False)
    with pytest.raises(ValueError, match="is empty"):
        crossmatch(phot.iloc[:0], phot, progress=False)
    with pytest.raises(ValueError, match="DEC has 1 value"):
        crossmatch(pd.DataFrame({"RA": [1.0], "DEC": [120.0]}), phot, progress=False)
    with pytest.raises(ValueError, match="radius_arcsec"):
        crossmatch(phot, phot, 0.0, progress=False)
    done = crossmatch(phot, phot, progress=False)
    with pytest.raises(ValueError, match=r"already has column\(s\) \['MATCHED', 'SEP_ARCSEC'\]"):
        crossmatch(done, phot, progress=False)


def test_stream_equals_in_memory_match():
    rng = np.random.default_rng(3)
    phot = _phot(rng, 3000)
    spec = _spec(rng, phot, 300, 200)
    # two photometric objects 0.5" apart in different pieces: the closer one must win
    ref = crossmatch(spec, phot, 2.0, chunk_size=128, progress=False)
    pieces = [phot.iloc[i:i + 700] for i in range(0, len(phot), 700)][::-1]  # any order
    got = crossmatch_stream(spec, iter(pieces), 2.0, progress=False)
    pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-12)


def test_stream_keeps_the_closest_across_pieces():
    spec = pd.DataFrame({"RA": [45.0], "DEC": [10.0]})
    c = SkyCoord(45 * u.deg, 10 * u.deg)
    a = c.directional_offset_by(90 * u.deg, 1.5 * u.arcsec)
    b = c.directional_offset_by(0 * u.deg, 0.5 * u.arcsec)
    p1 = pd.DataFrame({"RA": [a.ra.deg], "DEC": [a.dec.deg], "OBJID": [1]})
    p2 = pd.DataFrame({"RA": [b.ra.deg], "DEC": [b.dec.deg], "OBJID": [2]})
    for order in ([p1, p2], [p2, p1]):
        out = crossmatch_stream(spec, order, 2.0, progress=False)
        assert out["OBJID"].tolist() == [2]
        assert out["SEP_ARCSEC"].iloc[0] == pytest.approx(0.5, abs=1e-6)


# ---------------------------------------------------------------------------- sweep reader
def _sweep_table(rng, n, *, north=False, lower=False) -> Table:
    t = Table()
    ra, dec = _random_sky(rng, n)
    t["RELEASE"] = np.full(n, 9011 if north else 10000, dtype=np.int16)
    t["BRICKID"] = rng.integers(1, 600_000, n).astype(np.int32)
    t["OBJID"] = np.arange(n, dtype=np.int32)
    t["BRICK_PRIMARY"] = np.ones(n, dtype=bool)
    t["RA"], t["DEC"] = ra, dec
    t["TYPE"] = np.array(rng.choice(["PSF", "REX", "SER", "DEV", "EXP"], n), dtype="S3")
    t["EBV"] = rng.uniform(0, 0.1, n).astype(np.float32)
    for c in ("SHAPE_R", "SHAPE_E1", "SHAPE_E2", "SERSIC"):
        t[c] = rng.uniform(0, 1, n).astype(np.float32)
    t["MASKBITS"] = rng.integers(0, 2**12, n).astype(np.int32)
    for b in ("G", "R", "I", "Z", "W1", "W2"):
        if north and b == "I":
            continue
        t[f"FLUX_{b}"] = rng.normal(5, 2, n).astype(np.float32)
        t[f"FLUX_IVAR_{b}"] = rng.uniform(1, 100, n).astype(np.float32)
        t[f"MW_TRANSMISSION_{b}"] = rng.uniform(0.8, 1, n).astype(np.float32)
        if b in "GRIZ":
            t[f"NOBS_{b}"] = rng.integers(0, 9, n).astype(np.int16)
    t["DCHISQ"] = rng.normal(size=(n, 5)).astype(np.float32)  # a vector column to ignore
    if lower:
        for c in list(t.colnames):
            t.rename_column(c, c.lower())
    return t


def test_sweep_reader_chunks_and_values_match_the_file(tmp_path):
    rng = np.random.default_rng(4)
    t = _sweep_table(rng, 1050)
    p = tmp_path / "south" / "sweep-150p000-160p005.fits"
    p.parent.mkdir()
    t.write(p)
    chunks = list(legacysurvey.iter_catalog(p, chunk_size=400))
    assert [len(c) for c in chunks] == [400, 400, 250]
    df = pd.concat(chunks, ignore_index=True)
    np.testing.assert_array_equal(df["FLUX_G"], t["FLUX_G"])
    np.testing.assert_array_equal(df["RA"], t["RA"])
    assert df["TYPE"].tolist() == [str(s) for s in t["TYPE"]]  # decoded, padding stripped
    assert (df["PHOTSYS"] == "S").all()  # from the 'south' directory
    expected_id = (10000 << 42) + (t["BRICKID"].astype(np.int64) << 22) + t["OBJID"]
    np.testing.assert_array_equal(df["OBJID"], expected_id)
    np.testing.assert_array_equal(df["BRICK_OBJID"], t["OBJID"])
    assert "DCHISQ" not in df
    validate(df, list(legacysurvey.SWEEP_COLUMNS))  # passes the schema as a whole


def test_sweep_reader_lower_case_tractor_north_parquet(tmp_path):
    rng = np.random.default_rng(5)
    t = _sweep_table(rng, 300, north=True, lower=True)
    t["brick_primary"][:10] = False
    t.write(tmp_path / "tractor.fits")
    rep = CutReport("tractor.fits")
    df, rep = legacysurvey.read_catalog(tmp_path / "tractor.fits", photsys="N", report=rep)
    assert len(df) == 290 and rep.to_frame().set_index("cut").loc["BRICK_PRIMARY", "removed"] == 10
    assert (df["PHOTSYS"] == "N").all()
    assert np.isnan(df["FLUX_I"]).all() and (df["FLUX_IVAR_I"] == 0).all()  # no i-band
    np.testing.assert_array_equal(df["FLUX_R"], t["flux_r"][10:])
    with pytest.warns(UserWarning, match="removed 10 of 300 rows with BRICK_PRIMARY == False"):
        chunks = list(legacysurvey.iter_catalog(tmp_path / "tractor.fits", photsys="N"))
    assert sum(map(len, chunks)) == 290
    # the same table as Parquet reads identically
    pq = t.copy()
    pq.remove_column("dchisq")
    pq.to_pandas().to_parquet(tmp_path / "tractor.parquet")  # TYPE stored as bytes
    df2, _ = legacysurvey.read_catalog(tmp_path / "tractor.parquet", photsys="N", chunk_size=64)
    pd.testing.assert_frame_equal(df.drop(columns="TYPE"), df2.drop(columns="TYPE"),
                                  check_dtype=False)
    assert df["TYPE"].tolist() == df2["TYPE"].tolist()


def test_sweep_reader_errors_name_file_and_column(tmp_path):
    rng = np.random.default_rng(6)
    t = _sweep_table(rng, 20)
    t.remove_column("FLUX_W1")
    t.write(tmp_path / "s.fits")
    with pytest.raises(ValueError, match=r"s\.fits lacks column\(s\) FLUX_W1"):
        next(legacysurvey.iter_catalog(tmp_path / "s.fits", photsys="S"))
    t = _sweep_table(rng, 20)
    t.write(tmp_path / "nophotsys.fits")
    with pytest.raises(ValueError, match=r"PHOTSYS.*photsys=.S."):
        next(legacysurvey.iter_catalog(tmp_path / "nophotsys.fits"))  # no north/south in path
    t["RA"][5] = np.nan
    t.write(tmp_path / "nan.fits")
    with pytest.raises(ValueError, match=r"nan\.fits rows 0-19: column RA has 1 non-finite"):
        next(legacysurvey.iter_catalog(tmp_path / "nan.fits", photsys="S"))
    (tmp_path / "junk.fits").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"junk\.fits is not a readable FITS file"):
        next(legacysurvey.iter_catalog(tmp_path / "junk.fits", photsys="S"))


def test_photoz_sweep_is_joined_row_by_row(tmp_path):
    rng = np.random.default_rng(7)
    t = _sweep_table(rng, 50)
    t.write(tmp_path / "sweep.fits")
    pz = Table({c: rng.uniform(0, 1, 50).astype(np.float32)
                for c in legacysurvey.PHOTOZ_COLUMNS})
    pz.write(tmp_path / "sweep-pz.fits")
    df, _ = legacysurvey.read_catalog(tmp_path / "sweep.fits", photsys="S",
                                      pz_path=tmp_path / "sweep-pz.fits", chunk_size=16)
    for c in legacysurvey.PHOTOZ_COLUMNS:
        np.testing.assert_array_equal(df[c], pz[c])
    pz[:49].write(tmp_path / "short-pz.fits")
    with pytest.raises(ValueError, match="row-matched"):
        next(legacysurvey.iter_catalog(tmp_path / "sweep.fits", photsys="S",
                                       pz_path=tmp_path / "short-pz.fits"))


def test_crossmatch_stream_over_sweep_files(tmp_path):
    rng = np.random.default_rng(8)
    paths, tables = [], []
    for k in range(3):
        t = _sweep_table(rng, 400)
        t["OBJID"] = np.arange(400, dtype=np.int32) + 1000 * k
        p = tmp_path / f"sweep{k}.fits"
        t.write(p)
        paths.append(p)
        tables.append(t)
    allphot = pd.concat([legacysurvey.read_catalog(p, photsys="S")[0] for p in paths],
                        ignore_index=True)
    spec = _spec(rng, allphot, 120, 40)
    ref = crossmatch(spec, allphot, 2.0, progress=False)
    got = crossmatch_stream(spec, legacysurvey.iter_catalogs(paths, photsys="S", chunk_size=150,
                                                            progress=False), 2.0, progress=False)
    pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-12)
    assert got["MATCHED"].sum() >= 120
    assert set(COLUMNS) - set(got.columns) == {"Z_ERR", "SURVEY", *legacysurvey.PHOTOZ_COLUMNS}
