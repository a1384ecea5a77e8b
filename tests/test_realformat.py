"""The real-data path end to end on small files written in the real formats.

A DESI ``zpix``-like FITS (ZCATALOG extension: ZWARN, DELTACHI2, SPECTYPE,
COADD_FIBERSTATUS), an SDSS ``specObj``-like FITS, a generic CSV with a column map, DR10-style
sweep FITS in the Legacy Survey directory layout (``dr10/south/sweep``, ``dr9/north/sweep``:
the north has no i-band columns), a mixed-footprint random-sample FITS with a ``PHOTSYS``
column, and cutouts answered by a local HTTP server the way the
cutout service answers (griz from the DR10 layer, grz from the DR9-north layer). Every stage
of :mod:`photozsom.workflow.pipeline` runs on them at the ``tiny`` scale, then ``photozsom predict``.

The expected row counts are computed here from how the files were made (which rows were
written to fail which cut, which spectra are duplicates, which lie off every sweep object),
and the cross-match is checked against a brute-force haversine nearest neighbour.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from _fits_server import FitsServer
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack

from photozsom.cli import main as cli_main
from photozsom.data import assemble, cutouts, legacysurvey
from photozsom.data.crossmatch import haversine_arcsec
from photozsom.embed.store import CutoutStore
from photozsom.model import PhotoZModel
from photozsom.workflow import pipeline

pytestmark = pytest.mark.slow

CUTOUT_SIZE = 32  # the local server's cutout side (the service honours size=; small for speed)
N_SOUTH, N_NORTH = 1800, 1200  # sweep rows: enough random-sample rows for the tiny maps


# ======================================================================================
# Sweeps
# ======================================================================================
def _galaxies(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Magnitudes (g, r, i, z, W1, W2; AB) with colours that redden with redshift, and z."""
    z = rng.uniform(0.05, 1.1, n)
    r = rng.uniform(17.5, 21.5, n)
    noise = 0.05 * rng.standard_normal((n, 5))
    g_r = 0.3 + 1.3 * z + noise[:, 0]
    r_i = 0.15 + 0.7 * z + noise[:, 1]
    i_z = 0.1 + 0.45 * z + noise[:, 2]
    z_w1 = 0.2 + 0.9 * z + noise[:, 3]
    w1_w2 = -0.4 + 0.35 * z + noise[:, 4]
    i = r - r_i
    zz = i - i_z
    w1 = zz - z_w1
    return {"G": r + g_r, "R": r, "I": i, "Z": zz, "W1": w1, "W2": w1 - w1_w2, "z": z}


def _grid(rng, n_ra, n_dec, ra0, dec0, jitter_arcsec=12.0):
    """Positions on a jittered grid inside one square degree (objects > 40" apart)."""
    ra, dec = np.meshgrid(ra0 + (np.arange(n_ra) + 0.5) / n_ra,
                          dec0 + (np.arange(n_dec) + 0.5) / n_dec, indexing="ij")
    ra, dec = ra.ravel(), dec.ravel()
    j = rng.uniform(-jitter_arcsec, jitter_arcsec, (2, ra.size)) / 3600.0
    return ra + j[0] / np.cos(np.radians(dec)), dec + j[1]


def _sweep(rng, ra, dec, *, north: bool) -> tuple[Table, np.ndarray]:
    """A DR10 sweep-like table (upper-case columns, FITS dtypes) and the true redshifts."""
    n = ra.size
    gal = _galaxies(rng, n)
    t = Table()
    t["RELEASE"] = np.full(n, 9011 if north else 10000, dtype=np.int16)
    # 0.25 deg bricks: BRICKID from the position, OBJID counts within a brick
    brick = (np.floor((ra - ra.min()) / 0.25) * 10 + np.floor((dec - dec.min()) / 0.25)).astype(int)
    t["BRICKID"] = (300_000 + brick).astype(np.int32)
    t["BRICKNAME"] = np.array([f"{r:04.0f}p{d:03.0f}" for r, d in zip(ra * 10, dec * 10,
                                                                          strict=True)], dtype="S8")
    t["OBJID"] = pd.Series(brick).groupby(brick).cumcount().to_numpy().astype(np.int32)
    t["BRICK_PRIMARY"] = np.ones(n, dtype=bool)
    t["RA"], t["DEC"] = ra, dec
    t["TYPE"] = np.array(rng.choice(["REX", "EXP", "DEV", "SER"], n), dtype="S4")
    t["EBV"] = rng.uniform(0.01, 0.05, n).astype(np.float32)
    t["SHAPE_R"] = rng.uniform(0.3, 2.5, n).astype(np.float32)
    t["SHAPE_E1"] = rng.normal(0, 0.1, n).astype(np.float32)
    t["SHAPE_E2"] = rng.normal(0, 0.1, n).astype(np.float32)
    t["SERSIC"] = rng.uniform(0.5, 4.0, n).astype(np.float32)
    t["MASKBITS"] = np.zeros(n, dtype=np.int32)
    for b in ("G", "R", "I", "Z", "W1", "W2"):
        if north and b == "I":
            continue  # BASS/MzLS: no i-band columns at all
        mw = np.full(n, 0.95, dtype=np.float32)
        flux = 10 ** ((22.5 - gal[b]) / 2.5) * mw
        err = 0.02 * flux + 0.02
        t[f"FLUX_{b}"] = (flux + err * rng.standard_normal(n)).astype(np.float32)
        t[f"FLUX_IVAR_{b}"] = (1.0 / err**2).astype(np.float32)
        t[f"MW_TRANSMISSION_{b}"] = mw
        if b in "GRIZ":
            t[f"NOBS_{b}"] = rng.integers(1, 6, n).astype(np.int16)
    t["DCHISQ"] = rng.normal(size=(n, 5)).astype(np.float32)  # vector column, not read
    return t, gal["z"]


def _packed(t: Table) -> np.ndarray:
    """The unique OBJID the reader should make: RELEASE << 42 | BRICKID << 22 | OBJID."""
    return ((np.asarray(t["RELEASE"], np.int64) << 42) | (np.asarray(t["BRICKID"], np.int64) << 22)
            | np.asarray(t["OBJID"], np.int64))


def _offset(ra, dec, rng, lo_arcsec, hi_arcsec):
    c = SkyCoord(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg)
    c = c.directional_offset_by(rng.uniform(0, 360, len(c)) * u.deg,
                                rng.uniform(lo_arcsec, hi_arcsec, len(c)) * u.arcsec)
    return c.ra.deg, c.dec.deg


# ======================================================================================
# The sky: files written in the real formats, and what the pipeline should make of them
# ======================================================================================
def _write_sky(root: Path, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    ra_s, dec_s = _grid(rng, 45, 40, 150.0, 1.0)
    ra_n, dec_n = _grid(rng, 40, 30, 150.0, 40.0)
    south, z_s = _sweep(rng, ra_s, dec_s, north=False)
    north, z_n = _sweep(rng, ra_n, dec_n, north=True)
    ps = root / "dr10" / "south" / "sweep" / "10.1" / "sweep-150p000-155p005.fits"
    pn = root / "dr9" / "north" / "sweep" / "9.0" / "sweep-150p040-155p045.fits"
    for p, t in ((ps, south), (pn, north)):
        p.parent.mkdir(parents=True)
        t.write(p)
    # the random sample as one mixed-footprint file with a PHOTSYS column (the layout of DESI
    # target and random catalogues): north rows carry no-data i-band columns
    mixed = Table(south, copy=True)
    nn = Table(north, copy=True)
    for c, v in (("FLUX_I", 0.0), ("FLUX_IVAR_I", 0.0), ("MW_TRANSMISSION_I", 1.0)):
        nn[c] = np.full(len(nn), v, dtype=np.float32)
    nn["NOBS_I"] = np.zeros(len(nn), dtype=np.int16)
    mixed = vstack([mixed, nn[mixed.colnames]])
    mixed["PHOTSYS"] = np.array(["S"] * len(south) + ["N"] * len(north), dtype="S1")
    p_mixed = root / "random-mixed.fits"
    mixed.write(p_mixed)
    sweep = pd.DataFrame({
        "OBJID": np.r_[_packed(south), _packed(north)],
        "RA": np.r_[ra_s, ra_n], "DEC": np.r_[dec_s, dec_n],
        "PHOTSYS": np.r_[np.full(N_SOUTH, "S"), np.full(N_NORTH, "N")],
        "ZTRUE": np.r_[z_s, z_n],
    })
    assert len(sweep) == N_SOUTH + N_NORTH

    # which sweep objects get spectra: disjoint sets for each role
    obj = rng.permutation(len(sweep))
    desi_ok, desi_bad, sdss_ok, sdss_bad, myz_ok, rest = np.split(
        obj, np.cumsum([300, 60, 150, 60, 40]))
    dup = np.sort(desi_ok[:30])  # SDSS re-observations of DESI galaxies (duplicates)

    # ---------------- DESI zpix: 300 good, 60 failing one cut each, 10 off-footprint,
    # 5 with a redshift outside 0 < z < 1.6, 6 within 4" of an object but beyond 2"
    n_bad = {"ZWARN": 15, "COADD_FIBERSTATUS": 15, "STAR": 8, "QSO": 7, "DELTACHI2": 15}
    rows = np.r_[desi_ok, desi_bad]
    ra, dec = _offset(sweep.RA[rows], sweep.DEC[rows], rng, 0.0, 0.4)
    z = sweep.ZTRUE.to_numpy()[rows].copy()
    n_d = len(rows)
    zwarn = np.zeros(n_d, np.int64)
    fib = np.zeros(n_d, np.int32)
    stype = np.full(n_d, "GALAXY", dtype="U6")
    dchi2 = rng.uniform(40, 5000, n_d)
    k = len(desi_ok)
    for cut, m in n_bad.items():
        sl = slice(k, k + m)
        if cut == "ZWARN":
            zwarn[sl] = 4
        elif cut == "COADD_FIBERSTATUS":
            fib[sl] = 8
        elif cut == "DELTACHI2":
            dchi2[sl] = rng.uniform(0, 24, m)
        else:
            stype[sl] = cut
        k += m
    assert k == n_d
    # extra rows: off the footprint, far redshift, and near-misses (2" < sep < 4")
    off_ra, off_dec = rng.uniform(200, 201, 10), rng.uniform(-30, -29, 10)
    hi_rows = rng.choice(rest, 11, replace=False)
    hi_z_rows, near_rows = hi_rows[:5], hi_rows[5:]
    hz_ra, hz_dec = _offset(sweep.RA[hi_z_rows], sweep.DEC[hi_z_rows], rng, 0.0, 0.4)
    nr_ra, nr_dec = _offset(sweep.RA[near_rows], sweep.DEC[near_rows], rng, 2.6, 4.0)
    desi = Table()
    targetid = np.r_[sweep.OBJID.to_numpy()[rows], np.arange(10) + 10**15,
                     sweep.OBJID.to_numpy()[hi_z_rows], sweep.OBJID.to_numpy()[near_rows]]
    desi["TARGETID"] = targetid.astype(np.int64)
    desi["TARGET_RA"] = np.r_[ra, off_ra, hz_ra, nr_ra]
    desi["TARGET_DEC"] = np.r_[dec, off_dec, hz_dec, nr_dec]
    desi["Z"] = np.r_[z, rng.uniform(0.1, 1.0, 10), rng.uniform(1.7, 3.0, 5),
                      sweep.ZTRUE.to_numpy()[near_rows]]
    n_all = len(desi)
    desi["ZERR"] = np.full(n_all, 1e-4, dtype=np.float64)
    desi["ZWARN"] = np.r_[zwarn, np.zeros(n_all - n_d, np.int64)]
    desi["CHI2"] = rng.uniform(7000, 9000, n_all)
    desi["COEFF"] = rng.normal(size=(n_all, 10))  # vector column, as in zpix
    desi["DELTACHI2"] = np.r_[dchi2, rng.uniform(40, 5000, n_all - n_d)]
    desi["SPECTYPE"] = np.array(np.r_[stype, np.full(n_all - n_d, "GALAXY")], dtype="S6")
    desi["SUBTYPE"] = np.full(n_all, "", dtype="S20")
    desi["COADD_FIBERSTATUS"] = np.r_[fib, np.zeros(n_all - n_d, np.int32)]
    desi["SURVEY"] = np.full(n_all, "main", dtype="S7")  # DESI's own SURVEY column
    desi["PROGRAM"] = np.full(n_all, "dark", dtype="S6")
    p_desi = root / "zpix-main-dark.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(desi)]).writeto(p_desi)
    with fits.open(p_desi, mode="update") as h:
        h[1].name = "ZCATALOG"

    # ---------------- SDSS specObj: 150 good, 60 failing, 30 duplicates of DESI galaxies
    # (within 1"; larger Z_ERR, so DESI's measurement is kept)
    srows = np.r_[sdss_ok, sdss_bad, dup]
    s_ra, s_dec = _offset(sweep.RA[srows], sweep.DEC[srows], rng, 0.0, 0.4)
    n_sd = len(srows)
    prim = np.ones(n_sd, np.int32)
    zwarning = np.zeros(n_sd, np.int32)
    cls = np.full(n_sd, "GALAXY", dtype="U6")
    k = len(sdss_ok)
    prim[k:k + 20] = 0
    zwarning[k + 20:k + 40] = 4
    cls[k + 40:k + 60] = "STAR"
    sdss = Table()
    sdss["SPECOBJID"] = np.array([f"{299489677444933632 + i:19d}" for i in range(n_sd)], "S19")
    sdss["PLUG_RA"], sdss["PLUG_DEC"] = s_ra, s_dec
    sdss["Z"] = sweep.ZTRUE.to_numpy()[srows] + np.r_[np.zeros(n_sd - 30), np.full(30, 0.002)]
    sdss["Z_ERR"] = np.full(n_sd, 2e-4, dtype=np.float32)
    sdss["ZWARNING"] = zwarning
    sdss["CLASS"] = np.array(cls, dtype="S6")
    sdss["SUBCLASS"] = np.full(n_sd, "", dtype="S21")
    sdss["SPECPRIMARY"] = prim.astype(np.int16)
    p_sdss = root / "specObj-dr17.fits"
    Table(sdss).write(p_sdss)

    # ---------------- generic CSV: 40 good, 8 below the quality cut, 6 unmatched
    m_ra, m_dec = _offset(sweep.RA[myz_ok], sweep.DEC[myz_ok], rng, 0.0, 1.5)
    myz = pd.DataFrame({  # 40 on sweep objects, 8 with nq = 2, 6 off the footprint
        "ra": np.r_[m_ra, rng.uniform(230, 231, 14)],
        "dec": np.r_[m_dec, rng.uniform(-40, -39, 14)],
        "z": np.r_[sweep.ZTRUE.to_numpy()[myz_ok], rng.uniform(0.1, 1, 14)],
        "zerr": np.full(54, 3e-4),
        "nq": np.r_[np.full(40, 4), np.full(8, 2), np.full(6, 4)],
        "name": [f"g{i:03d}" for i in range(54)],
    })
    p_myz = root / "my_redshifts.csv"
    myz.to_csv(p_myz, index=False)

    # ---------------- what the pipeline should make of it (computed from the roles above)
    expect_z = {}
    for rws, zz in ((desi_ok, sweep.ZTRUE.to_numpy()[desi_ok]),
                    (sdss_ok, sweep.ZTRUE.to_numpy()[sdss_ok]),
                    (myz_ok, sweep.ZTRUE.to_numpy()[myz_ok])):
        for r_, z_ in zip(rws, zz, strict=True):
            expect_z[int(sweep.OBJID.iloc[r_])] = z_
    cuts = {
        "desi": {"input": n_all, "ZWARN == 0": 15, "COADD_FIBERSTATUS == 0": 15,
                 "SPECTYPE == 'GALAXY'": 15, "DELTACHI2 > 25": 15, "finite Z": 0},
        "sdss": {"input": n_sd, "SPECPRIMARY == 1": 20, "ZWARNING == 0": 20,
                 "CLASS == 'GALAXY'": 20, "finite Z": 0},
        "myz": {"input": 54, "QUALITY >= 3": 8, "finite Z": 0},
    }
    n_compiled = (n_all - 60 - 5) + (n_sd - 60 - 30) + (54 - 8)
    return {
        "sweeps": [ps, pn], "random_files": [p_mixed], "south": south, "north": north, "sweep": sweep,
        "spec_files": {"DESI": str(p_desi), "SDSS": str(p_sdss),
                       "MyZ": (str(p_myz), {"RA": "ra", "DEC": "dec", "Z": "z",
                                            "Z_ERR": "zerr", "QUALITY": "nq", "SPEC_ID": "name"})},
        "expect_z": expect_z, "cuts": cuts, "n_compiled": n_compiled,
        "n_duplicates": {"SDSS": 30}, "n_z_range": {"DESI": 5},
    }


# ======================================================================================
# A local cutout service
# ======================================================================================
class _CutoutService(FitsServer):
    """Answers /cutout.fits?ra=&dec=&layer=&bands= like the Legacy Survey viewer.

    The DR9-north layer has no i-band, so it returns g, r, z planes whatever was asked;
    DR10 returns the requested bands. Each plane: a round galaxy plus sky noise.
    """

    LAYER_BANDS: ClassVar[dict[str, str]] = {"ls-dr10": "griz", "ls-dr9-north": "grz"}

    def __init__(self):
        self.requests: list[dict[str, str]] = []
        super().__init__()

    def respond(self, q):
        with self.lock:
            self.requests.append(q)
        have = self.LAYER_BANDS.get(q.get("layer", ""))
        if have is None:
            return 400, "unknown layer"
        bands = "".join(b for b in q.get("bands", "griz") if b in have)
        return 200, self.fits_bytes(float(q["ra"]), float(q["dec"]), bands)

    @staticmethod
    def fits_bytes(ra: float, dec: float, bands: str) -> bytes:
        import io

        rng = np.random.default_rng(int(abs(ra * 1e6 + dec * 1e3)) % 2**32)
        yy, xx = np.mgrid[:CUTOUT_SIZE, :CUTOUT_SIZE] - (CUTOUT_SIZE - 1) / 2
        blob = np.exp(-(xx**2 + yy**2) / (2 * rng.uniform(1.5, 4.0) ** 2))
        planes = [rng.uniform(0.5, 3.0) * blob + rng.normal(0, 0.01, blob.shape) for _ in bands]
        hdu = fits.PrimaryHDU(np.array(planes, dtype=np.float32))
        hdu.header["BANDS"] = bands
        for i, b in enumerate(bands):
            hdu.header[f"BAND{i}"] = b
        buf = io.BytesIO()
        hdu.writeto(buf)
        return buf.getvalue()


# ======================================================================================
# The run
# ======================================================================================
@pytest.fixture(scope="module")
def data_run(tmp_path_factory):
    """Stages data (cutouts from the local service), som and embed on the real-format files."""
    root = tmp_path_factory.mktemp("realformat")
    sky = _write_sky(root / "input")
    service = _CutoutService()
    real_download = cutouts.download_cutouts

    def via_local_service(*args, **kwargs):
        # assemble.fetch_cutouts asks the public service; point it at the local one
        kwargs.update(base_url=service.url, backoff=0.001, timeout=10, progress=False)
        return real_download(*args, **kwargs)

    run = pipeline.Run(root / "run")
    out = {"sky": sky, "service": service, "cutout_dir": root / "cutouts", "root": root}
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cutouts, "download_cutouts", via_local_service)
            out["data"] = pipeline.run_data(
                run, scale="tiny", spec_files=sky["spec_files"],
                sweep_files=[str(p) for p in sky["sweeps"]],
                random_files=[str(p) for p in sky["random_files"]],
                cutout_dir=str(out["cutout_dir"]), download=True, progress=False)
        out["requests"] = list(service.requests)
        out["som"] = pipeline.run_som(run, scale="tiny", progress=False)
        out["embed"] = pipeline.run_embed(run, scale="tiny")
        yield run, out
    finally:
        service.close()


@pytest.fixture(scope="module")
def real_run(data_run):
    """The remaining stages: the MDN on embeddings, then on catalogue features (the model
    ``photozsom predict`` uses), the baseline, cells, calibration and flags."""
    run, out = data_run
    out = dict(out)
    out["mdn_embedding"] = pipeline.run_mdn(run, scale="tiny", inputs="embedding", cv_folds=0,
                                            progress=False)
    out["mdn"] = pipeline.run_mdn(run, scale="tiny", inputs="catalog", progress=False)
    out["baseline"] = pipeline.run_baseline(run, scale="tiny")
    out["cells"] = pipeline.run_cells(run, scale="tiny")
    out["calibrate"] = pipeline.run_calibrate(run, scale="tiny")
    out["flags"] = pipeline.run_flags(run, scale="tiny")
    return run, out


# ======================================================================================
# Tests
# ======================================================================================
def test_reader_cuts_are_counted_row_by_row(data_run):
    _, out = data_run
    cuts = out["data"]["cuts"]
    names = {"zpix-main-dark.fits": "desi", "specObj-dr17.fits": "sdss",
             "my_redshifts.csv": "myz"}
    for source, key in names.items():
        got = cuts[cuts["source"] == source].set_index("cut")
        want = out["sky"]["cuts"][key]
        assert got.loc["input", "remaining"] == want["input"], source
        for cut, removed in want.items():
            if cut != "input":
                assert got.loc[cut, "removed"] == removed, (source, cut)
        assert got["remaining"].iloc[-1] == want["input"] - sum(
            v for c, v in want.items() if c != "input")


def test_compilation_counts_duplicates_and_redshift_range(data_run):
    _, out = data_run
    counts = out["data"]["counts"]
    assert counts.loc["SDSS", "duplicate"] == out["sky"]["n_duplicates"]["SDSS"]
    assert counts.loc["DESI", "duplicate"] == 0 and counts.loc["MyZ", "duplicate"] == 0
    assert counts.loc["DESI", "z_range"] == out["sky"]["n_z_range"]["DESI"]
    assert out["data"]["n_compiled"] == out["sky"]["n_compiled"] == counts.loc["total", "output"]


def test_match_keeps_exactly_the_spectra_within_2_arcsec(data_run):
    run, out = data_run
    sky = out["sky"]
    spec = run.spec()
    expect = sky["expect_z"]
    # the good spectra of sweep objects, and nothing else: off-footprint and 2-4" rows are out
    assert out["data"]["n_matched"] == len(spec) == len(expect)
    assert sorted(spec["OBJID"].astype(np.int64)) == sorted(expect)
    z_want = np.array([expect[int(o)] for o in spec["OBJID"]])
    # DESI's redshift where SDSS measured the same galaxy too (SDSS was written 0.002 higher)
    np.testing.assert_allclose(spec["Z"].to_numpy(float), z_want, atol=1e-12)
    # independent nearest neighbour (haversine over all sweep rows)
    sw = sky["sweep"]
    d = haversine_arcsec(spec["RA"].to_numpy(float)[:, None], spec["DEC"].to_numpy(float)[:, None],
                         sw["RA"].to_numpy()[None, :], sw["DEC"].to_numpy()[None, :])
    j = d.argmin(axis=1)
    np.testing.assert_array_equal(sw["OBJID"].to_numpy()[j], spec["OBJID"].astype(np.int64))
    np.testing.assert_allclose(spec["SEP_ARCSEC"].to_numpy(float), d[np.arange(len(j)), j],
                               atol=1e-6)
    assert spec["SEP_ARCSEC"].max() <= 2.0
    np.testing.assert_array_equal(spec["PHOTSYS"].astype(str), sw["PHOTSYS"].to_numpy()[j])
    assert set(spec["SURVEY"].astype(str)) == {"DESI", "SDSS", "MyZ"}


def test_sweep_rows_become_the_random_sample(data_run):
    run, out = data_run
    sky = out["sky"]
    rnd = run.random()
    assert len(rnd) == N_SOUTH + N_NORTH == out["data"]["n_random"]
    np.testing.assert_array_equal(rnd["OBJID"].to_numpy(np.int64), sky["sweep"]["OBJID"])
    assert (rnd["PHOTSYS"].iloc[:N_SOUTH] == "S").all()
    assert (rnd["PHOTSYS"].iloc[N_SOUTH:] == "N").all()  # from the file's PHOTSYS column
    north = rnd.iloc[N_SOUTH:]
    assert (north["FLUX_IVAR_I"] == 0).all()
    np.testing.assert_array_equal(north["FLUX_R"], sky["north"]["FLUX_R"])
    # the sweeps' PHOTSYS comes from the directory layout: the spectra's footprint (checked
    # against the sweep rows in the match test) and the north's missing i-band
    spec = run.spec()
    sn = spec[spec["PHOTSYS"] == "N"]
    assert len(sn) > 20 and np.isnan(sn["FLUX_I"]).all() and (sn["FLUX_IVAR_I"] == 0).all()


def test_north_rows_get_north_layer_cutouts(data_run):
    run, out = data_run
    spec = run.spec()
    status = out["data"]["cutouts"]
    assert len(status) == len(spec) and (status["STATUS"] == "downloaded").all()
    assert len(out["requests"]) == len(spec)  # one request per galaxy, none repeated
    ps = spec.set_index(spec["OBJID"].astype(np.int64))["PHOTSYS"].astype(str)
    st = status.set_index("OBJID")
    for region, (layer, bands) in (("N", ("ls-dr9-north", "grz")), ("S", ("ls-dr10", "griz"))):
        ids = ps.index[ps == region]
        assert len(ids) > 20
        urls = st.loc[ids, "URL"]
        assert urls.str.contains(f"layer={layer}&").all(), region
        assert urls.str.contains(f"bands={bands}$").all(), region
        assert (st.loc[ids, "LAYER"] == layer).all()
    q = pd.DataFrame(out["requests"])
    assert sorted(q["layer"].value_counts().to_dict().items()) == sorted(
        {"ls-dr10": int((ps == "S").sum()), "ls-dr9-north": int((ps == "N").sum())}.items())
    # the store: every galaxy, the north without an i-band plane
    with CutoutStore(run.root / "sky" / "cutouts.h5") as store:
        ids = store.objid
        masks = store.read(slice(None))[1]
    assert sorted(ids.tolist()) == sorted(ps.index.tolist())
    north = ps.reindex(ids).to_numpy() == "N"
    assert (masks[north] == [True, True, False, True]).all()
    assert masks[~north].all()


def test_every_stage_output_exists_and_provenance_is_consistent(real_run):
    run, out = real_run
    for stage in pipeline.STAGES.values():
        for rel in stage.outputs:
            assert (run.root / rel).exists(), rel
    assert pipeline.check(run) == {}
    assert set(out["som"]["maps"]) == {"S", "N"}
    sc = out["som"]["spec_cells"]
    spec = run.spec()
    np.testing.assert_array_equal(sc["SOM"].to_numpy(), spec["PHOTSYS"].astype(str).to_numpy())
    assert (sc["CELL"] >= 0).all()  # every spectrum has all features of its footprint
    # one embedding per galaxy, finite (every galaxy has a cutout)
    from photozsom.embed import load_embeddings

    emb, ids = load_embeddings(run.root / "embed" / "embeddings.h5")
    assert sorted(ids.tolist()) == sorted(spec["OBJID"].astype(np.int64).tolist())
    assert np.isfinite(emb).all()
    # the paper's MDN on embeddings scored every test galaxy (all have cutouts)
    assert out["mdn_embedding"]["n_test_unscored"] == 0
    split = run.split()
    assert len(out["mdn"]["predictions"]) == int((split == "test").sum())
    assert len(out["mdn"]["oof"]) == int(split.isin(["train", "val"]).sum())
    # colours carry redshift here: the catalogue models beat a constant guess
    pred = out["baseline"]["rf"]["predictions"]
    zt, zp = pred["Z"].to_numpy(), pred["Z_PHOT_MEAN"].to_numpy()
    assert np.median(np.abs(zp - zt)) < 0.5 * np.median(np.abs(zt - np.median(zt)))


def _text(col) -> np.ndarray:
    return np.char.strip(np.asarray(col).astype(str))


def test_photozsom_predict_on_a_user_catalogue(real_run, tmp_path):
    from photozsom.flags import load_flagger

    run, out = real_run
    sky = out["sky"]
    # a user's catalogue: sweep rows of both footprints with PHOTSYS and a spectroscopic Z,
    # shuffled, one row without an r-band measurement
    cat = pd.concat(list(legacysurvey.iter_catalogs(sky["sweeps"], progress=False)),
                    ignore_index=True)
    rng = np.random.default_rng(3)
    cat = cat.iloc[rng.choice(len(cat), 400, replace=False)].reset_index(drop=True)
    cat["Z"] = sky["sweep"].set_index("OBJID").loc[cat["OBJID"], "ZTRUE"].to_numpy()
    cat.loc[5, ["FLUX_R", "FLUX_IVAR_R"]] = [np.nan, 0.0]
    inp, res = tmp_path / "mine.fits", tmp_path / "mine_pz.fits"
    Table.from_pandas(cat).write(inp)
    model_dir, flagger_dir = run.root / "mdn" / "model", run.root / "flags" / "flagger"
    rc = cli_main(["predict", str(inp), "-o", str(res), "--model", str(model_dir),
                   "--flagger", str(flagger_dir), "--chunk-size", "150"])
    assert rc == 0
    got = Table.read(res)
    assert len(got) == len(cat)
    np.testing.assert_array_equal(np.asarray(got["OBJID"]), cat["OBJID"].to_numpy())
    # the same numbers as the model and flagger applied in memory, row for row
    pdf, ok, reason = PhotoZModel.load(model_dir).predict_with_status(cat)
    assert not ok[5] and ok.mean() > 0.9   # the row without r is not scored, and kept
    np.testing.assert_allclose(np.asarray(got["Z_PHOT_MEDIAN"])[ok], pdf.median(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got["Z_PHOT_MEAN"])[ok], pdf.mean(), rtol=1e-5)
    assert np.isnan(np.asarray(got["Z_PHOT_MEAN"])[~ok]).all()
    status = _text(got["PZ_STATUS"])
    assert status[5] == "not scored" and "r" in _text(got["PZ_REASON"])[5]
    expected = np.where(~ok, "not scored", np.where(reason == "", "ok", "outside"))
    np.testing.assert_array_equal(status, expected)
    pit, crps = np.asarray(got["PIT"])[ok], np.asarray(got["CRPS"])[ok]
    assert ((pit >= 0) & (pit <= 1)).all() and (crps >= 0).all()
    fl = load_flagger(flagger_dir).flag(cat)
    np.testing.assert_array_equal(np.asarray(got["PZ_SOM_CELL"]), fl["cell"].to_numpy())
    np.testing.assert_array_equal(np.asarray(got["PZ_FLAG"]), fl["flag"].to_numpy())
    som = _text(got["PZ_SOM"])
    assert (np.delete(som, 5) == np.delete(cat["PHOTSYS"].to_numpy(str), 5)).all()
    assert got["PZ_SOM_CELL"][5] == -1 and got["PZ_FLAG"][5]  # no SOM features: flagged


def test_photozsom_predict_on_a_raw_sweep_file(real_run, tmp_path):
    """A DR10 sweep as it comes (no PHOTSYS, per-brick OBJID, a vector column) is scored row
    for row by a catalogue-feature model."""
    run, out = real_run
    path = out["sky"]["sweeps"][0]
    res = tmp_path / "sweep_pz.parquet"
    rc = cli_main(["predict", str(path), "-o", str(res), "--model",
                   str(run.root / "mdn" / "model")])
    assert rc == 0
    got = pd.read_parquet(res)
    south = out["sky"]["south"]
    assert len(got) == len(south) == N_SOUTH
    np.testing.assert_array_equal(got["RA"].to_numpy(), np.asarray(south["RA"]))
    np.testing.assert_array_equal(got["OBJID"].to_numpy(), np.asarray(south["OBJID"]))
    assert np.isfinite(got["Z_PHOT_MEDIAN"]).all()           # every row scored ...
    status = got["PZ_STATUS"].astype(str)
    # ... inside the model's training support, or said to be outside it (the same rule as
    # the model applied in memory)
    _, ok, reason = PhotoZModel.load(run.root / "mdn" / "model").predict_with_status(
        pd.read_parquet(res))
    assert ok.all()
    np.testing.assert_array_equal(status, np.where(reason == "", "ok", "outside"))
    print(f"outside the support: {(status == 'outside').mean():.1%}")


def test_a_folder_of_service_cutouts_becomes_a_store(data_run, tmp_path):
    """``folder_to_store`` on the files the service answered (south griz, north grz): every
    galaxy with a readable file is stored with the file's pixels; a missing and a truncated
    file are listed, not dropped silently."""
    import shutil

    run, out = data_run
    spec = run.spec()
    north_ids = spec.loc[spec["PHOTSYS"] == "N", "OBJID"].to_numpy(np.int64)
    folder = tmp_path / "N"
    shutil.copytree(out["cutout_dir"] / "N", folder)
    (folder / f"{north_ids[0]}.fits").unlink()
    trunc = folder / f"{north_ids[1]}.fits"
    trunc.write_bytes(trunc.read_bytes()[:-1500])
    with pytest.warns(UserWarning, match=f"2 of {len(north_ids)} objects have no usable cutout"):
        table = cutouts.folder_to_store(north_ids, folder, tmp_path / "n.h5", progress=False)
    st = table.set_index("OBJID")["STATUS"]
    assert st[north_ids[0]] == "missing" and st[north_ids[1]] == "unreadable"
    assert (st.drop(north_ids[:2]) == "stored").all()
    good = north_ids[2:]
    with CutoutStore(tmp_path / "n.h5") as store:
        assert store.objid.tolist() == good.tolist()
        img, mask, _ = store.read(slice(None))
    ref, ref_mask = cutouts.read_cutouts(cutouts.cached_paths(good, folder))
    np.testing.assert_array_equal(img, ref)
    np.testing.assert_array_equal(mask, ref_mask)
    assert (mask == [True, True, False, True]).all()  # grz from the north layer
    # appending the same galaxies again is refused, not stored twice
    with pytest.raises(ValueError, match="already holds"):
        cutouts.folder_to_store(good, folder, tmp_path / "n.h5", progress=False)


# --------------------------------------------------------------------------------------
# Cutout positions, cutouts without download, re-runs, provenance of the real-file inputs
# --------------------------------------------------------------------------------------
def test_cutouts_are_centred_on_the_photometric_position(data_run):
    run, out = data_run
    spec = run.spec()
    q = pd.DataFrame(out["requests"]).astype({"ra": float, "dec": float})
    sep = haversine_arcsec(q["ra"].to_numpy()[:, None], q["dec"].to_numpy()[:, None],
                           spec["RA_PHOT"].to_numpy(float)[None, :],
                           spec["DEC_PHOT"].to_numpy(float)[None, :]).min(axis=1)
    assert sep.max() < 1e-3  # the URL's 7 decimals: 0.4 mas


def test_a_folder_of_cutouts_enters_without_download(data_run, tmp_path, monkeypatch):
    import shutil

    _, out = data_run
    sky = out["sky"]

    def no_network(*args, **kwargs):
        raise AssertionError("download=False must not download")

    monkeypatch.setattr(cutouts, "download_cutouts", no_network)
    shutil.copytree(out["cutout_dir"], tmp_path / "cutouts")
    run2 = pipeline.Run(tmp_path / "run")
    info = pipeline.run_data(run2, scale="tiny", spec_files=sky["spec_files"],
                             sweep_files=[str(p) for p in sky["sweeps"]],
                             cutout_dir=str(tmp_path / "cutouts"), download=False, progress=False)
    assert (info["cutouts"]["STATUS"] == "stored").all()
    with CutoutStore(run2.root / "sky" / "cutouts.h5") as store:
        assert sorted(store.objid.tolist()) == sorted(run2.spec()["OBJID"].astype(np.int64))


def test_fetching_again_keeps_one_cutout_per_galaxy(data_run, tmp_path, monkeypatch):
    run, out = data_run

    def no_network(*args, **kwargs):  # every file is cached: nothing may be requested
        kwargs.update(base_url="http://127.0.0.1:9/unreachable", retries=0, progress=False)
        return real(*args, **kwargs)

    real = cutouts.download_cutouts
    monkeypatch.setattr(cutouts, "download_cutouts", no_network)
    spec = run.spec()
    store = tmp_path / "c.h5"
    for _ in range(2):
        status = assemble.fetch_cutouts(spec, out["cutout_dir"], store)
        assert (status["STATUS"] == "cached").all()
    with CutoutStore(store) as s:
        assert len(s) == len(spec)


def test_other_sweep_files_make_another_data_run(data_run, tmp_path):
    """The sweep files are an input of the data stage: running it on other ones must change
    its fingerprint, so the stages that read the old sample become stale."""
    _, out = data_run
    sky = out["sky"]
    run = pipeline.Run(tmp_path / "run")
    prints = []
    for sweeps in (sky["sweeps"], sky["sweeps"][:1]):
        pipeline.run_data(run, scale="tiny", spec_files=sky["spec_files"],
                          sweep_files=[str(p) for p in sweeps], progress=False)
        prints.append(run.provenance("data")["fingerprint"])
    assert prints[0] != prints[1]
