"""Tests of the simulated sky (photozsom.sim.sky and its mock_* modules).

Each test compares the generator against something it does not compute itself: speclite
run directly, analytic transforms, Monte-Carlo noise, the published selections, the DR10
extinction coefficients.
"""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from photozsom.data.summary import PUBLISHED_DENSITIES, mock_density_table, select_desi_targets
from photozsom.embed.store import CutoutStore
from photozsom.sim import images as mock_images
from photozsom.sim import photometry as mph
from photozsom.sim import population as mpop
from photozsom.sim import sky as mock
from photozsom.sim.sed import (
    GRID_FILTERS,
    get_grid,
    get_star_grid,
    load_templates,
    madau_transmission,
)

SIM = {"n_spec": 1500, "n_random": 20000, "n_random_cutouts": 60, "cutout_size": 16}


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    out = tmp_path_factory.mktemp("sky")
    paths = mock.simulate(out, scale=SIM, seed=11, progress=False)
    return paths, pd.read_parquet(paths["spec"]), pd.read_parquet(paths["random"])


@pytest.fixture(scope="module")
def settings(sky):
    return json.loads(sky[0]["settings"].read_text())


def _rmag(df):
    f = df["FLUX_R"].to_numpy() / df["MW_TRANSMISSION_R"].to_numpy()
    return 22.5 - 2.5 * np.log10(np.clip(f, 1e-3, None))


# -- spectra and photometry -------------------------------------------------------------------------
def test_grid_photometry_matches_speclite_at_off_grid_redshift():
    import speclite.filters

    grid = get_grid()
    wave, flux = load_templates()
    coeffs = np.array([[0.2, 0.0, 1.0, 3.0, 0.1, 0.0]])
    z = 0.5373
    bands = ["G_S", "R_S", "Z_S", "R_N", "W1"]
    mine = grid.maggies(coeffs, np.array([z]), np.array([0.0]), bands)[0]
    spec = (coeffs @ flux)[0]
    w = np.concatenate([[1.0, wave[0] - 1], wave])
    s = np.concatenate([[0.0, 0.0], spec])
    obs = w * (1 + z)
    filt = speclite.filters.load_filters(*[GRID_FILTERS[b] for b in bands])
    ref = filt.get_ab_maggies(s * madau_transmission(obs, z) / (1 + z), obs)
    ref = np.array([ref[GRID_FILTERS[b]][0] for b in bands])
    np.testing.assert_allclose(mine, ref, rtol=0.01)


def test_elliptical_colours_follow_the_4000A_break_through_the_bands():
    grid = get_grid()
    z = np.linspace(0.0, 1.2, 121)
    old = np.zeros((z.size, 6))
    old[:, 3] = 1.0  # kcorrect template 3: old population, strong 4000 A break
    m = -2.5 * np.log10(grid.maggies(old, z, np.zeros_like(z), ["G_S", "R_S", "Z_S"]))
    gr, rz = m[:, 0] - m[:, 1], m[:, 1] - m[:, 2]
    at = lambda c, zz: np.interp(zz, z, c)
    # the break (4000 A rest) leaves g for r near 4000 (1+z) ~ 5500 A (z ~ 0.4): g-r climbs
    # steeply to z ~ 0.4 and then flattens, while r-z is nearly flat until the break enters r
    assert at(gr, 0.4) - at(gr, 0.0) > 0.8
    assert abs(at(gr, 0.65) - at(gr, 0.45)) < 0.3
    assert at(rz, 0.4) - at(rz, 0.0) < 0.45
    assert at(rz, 1.0) - at(rz, 0.45) > 0.8
    # the break crosses g/r before r/z: the steepest rise of g-r (below z = 0.7, beyond which g
    # samples the near-UV fall-off) comes before the steepest rise of r-z
    early = z < 0.7
    assert z[early][np.argmax(np.gradient(gr, z)[early])] < 0.45 < z[np.argmax(np.gradient(rz, z))]


def test_sersic_n1_transform_matches_analytic_exponential():
    u = np.array([0.0, 0.05, 0.1, 0.3, 0.6])
    h = 1 / 1.67835  # scale length of an exponential with unit half-light radius
    analytic = (1 + (2 * np.pi * h * u) ** 2) ** -1.5
    np.testing.assert_allclose(mock_images.sersic_ft(1.0, u), analytic, atol=0.015)


def test_moffat_transform_matches_numerical_hankel_transform():
    from scipy import integrate, special

    fwhm, beta = 1.3, mock_images.MOFFAT_BETA
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    prof = lambda r: (1 + (r / alpha) ** 2) ** -beta
    norm = integrate.quad(lambda r: prof(r) * 2 * np.pi * r, 0, np.inf)[0]
    for k in (0.2, 0.5, 1.0):
        ref = integrate.quad(lambda r, k=k: prof(r) * special.j0(2 * np.pi * k * r) * 2 * np.pi * r,
                             0, 60, limit=400)[0] / norm
        assert mock_images.moffat_ft(np.array([k]), fwhm)[0] == pytest.approx(ref, abs=2e-3)


# -- images and noise ------------------------------------------------------------------------------
@pytest.mark.parametrize("n, r_half", [(0.5, 0.0), (1.0, 0.6), (4.0, 0.5)])
def test_noiseless_cutout_sums_to_catalogue_flux(n, r_half):
    flux = np.array([[12.0, 20.0, np.nan, 35.0]])  # nanomaggies; i-band absent (north)
    img = mock_images.render_batch(64, np.array([0]), np.array([31.3]), np.array([32.2]), flux,
                                   np.array([n]), np.array([r_half]), np.array([0.6]), np.array([0.7]),
                                   np.array([[1.5, 1.3, 1.2, 1.2]]))
    sums = img[0].sum(axis=(1, 2))
    np.testing.assert_allclose(sums[[0, 1, 3]], flux[0, [0, 1, 3]], rtol=0.01)
    assert np.isnan(img[0, 2]).all()


def test_point_source_at_5sigma_depth_has_snr_5():
    rng = np.random.default_rng(3)
    fwhm, m5 = 1.3, mph.DEPTH_PSF["S"]["R"]
    f5 = 10 ** (-0.4 * (m5 - 22.5))  # nanomaggies
    sigma_pix = f5 / 5 / np.sqrt(mock_images.psf_nea(fwhm))
    snr = []
    for dx, dy in rng.uniform(-0.5, 0.5, (4, 2)):
        model = mock_images.render_batch(48, np.array([0]), np.array([23.5 + dx]), np.array([23.5 + dy]),
                                         np.array([[f5]]), np.array([1.0]), np.array([0.0]), np.array([1.0]),
                                         np.array([0.0]), np.array([[fwhm]]))[0, 0].astype(np.float64)
        p = model / model.sum()
        # Monte-Carlo: optimal (PSF-weighted) flux of noisy images of the source
        noisy = model[None] + sigma_pix * rng.standard_normal((600, 48, 48))
        f_hat = (noisy * p).sum(axis=(1, 2)) / (p**2).sum()
        snr.append(f5 / f_hat.std())
    assert np.mean(snr) == pytest.approx(5.0, rel=0.1)


def test_flux_ivar_matches_the_noise_in_the_catalogue():
    rng = np.random.default_rng(5)
    n = 4000
    t = {"z": np.full(n, 0.5), "flux_ls": np.tile([5.0, 8.0, 11.0, 14.0, 5.0, 8.0, 14.0, 30.0, 25.0], (n, 1)),
         "r_half": rng.uniform(0.0, 1.5, n), "q": rng.uniform(0.3, 1.0, n), "sersic": rng.uniform(0.5, 4, n),
         "phi": rng.uniform(0, np.pi, n), "photsys": np.where(rng.random(n) < 0.5, "S", "N"),
         "ra": rng.uniform(150, 200, n), "dec": rng.uniform(0, 30, n), "gal_b": rng.uniform(30, 80, n)}
    empty = {"owner": np.zeros(0, int), "dx": np.zeros(0), "dy": np.zeros(0), "pool": np.zeros(0, int),
             "companion": np.zeros(0, bool)}
    pool = mph.NeighbourPool({"z": np.array([0.3]), "flux_ls": np.ones((1, 9))}, 0.0)
    cat, _ = mph.observe(rng, t, empty, pool, seed=0)
    true = mph.region_fluxes(t["flux_ls"], t["photsys"])
    clean = cat["MASKBITS"] == 0
    for j, b in enumerate(("G", "R", "I", "Z", "W1", "W2")):
        pull = (cat[f"FLUX_{b}"] - cat[f"MW_TRANSMISSION_{b}"] * true[:, j]) * np.sqrt(cat[f"FLUX_IVAR_{b}"])
        pull = pull[clean & np.isfinite(pull)]
        assert pull.std() == pytest.approx(1.0, abs=0.06), b
        assert abs(pull.mean()) < 0.06, b


# -- the written sky -------------------------------------------------------------------------------
def test_spectroscopic_sample_is_brighter_than_random(sky):
    _, spec, rand = sky
    assert np.median(_rmag(spec)) < np.median(_rmag(rand)) - 1.5


def test_mw_transmission_uses_dr10_coefficients(sky):
    _, spec, _ = sky
    for ps, band, coeff in (("S", "G", 3.214), ("S", "I", 1.592), ("S", "W1", 0.184), ("N", "G", 3.258),
                            ("N", "Z", 1.199)):
        rows = spec[spec["PHOTSYS"] == ps]
        r = -2.5 * np.log10(rows[f"MW_TRANSMISSION_{band}"].to_numpy(np.float64)) / rows["EBV"].to_numpy(np.float64)
        np.testing.assert_allclose(r, coeff, rtol=1e-4)


def test_northern_rows_have_no_i_band(sky):
    paths, spec, rand = sky
    for df in (spec, rand):
        north = df["PHOTSYS"] == "N"
        assert north.any() and (~north).any()
        assert df.loc[north, "FLUX_I"].isna().all()
        assert (df.loc[north, "FLUX_IVAR_I"] == 0).all() and (df.loc[north, "NOBS_I"] == 0).all()
        assert np.isfinite(df.loc[~north, "FLUX_I"]).all() and (df.loc[~north, "FLUX_IVAR_I"] > 0).all()
    with CutoutStore(paths["cutouts"]) as store:
        rows = store.rows_of(spec["OBJID"].to_numpy())
        images, mask, _ = store.read(rows)
        sigma = store.sigma(rows)
    north = (spec["PHOTSYS"] == "N").to_numpy()
    assert not mask[north, 2].any() and mask[~north].all()
    assert np.isnan(images[north, 2]).all() and np.isfinite(images[~north]).all()
    assert np.isnan(sigma[north, 2]).all() and (sigma[~north] > 0).all()


def test_objids_unique_and_every_spectroscopic_galaxy_has_a_cutout(sky):
    paths, spec, rand = sky
    ids = np.concatenate([spec["OBJID"], rand["OBJID"]])
    assert np.unique(ids).size == ids.size
    with CutoutStore(paths["cutouts"]) as store:
        assert len(store) == len(spec) + int(rand["HAS_CUTOUT"].sum())
        store.rows_of(spec["OBJID"].to_numpy())
        store.rows_of(rand.loc[rand["HAS_CUTOUT"], "OBJID"].to_numpy())
    assert rand["HAS_CUTOUT"].sum() == SIM["n_random_cutouts"]
    assert len(spec) == SIM["n_spec"] and len(rand) == SIM["n_random"]


def test_cutout_noise_matches_stored_sigma(sky):
    paths, spec, _ = sky
    with CutoutStore(paths["cutouts"]) as store:
        images, mask, _ = store.read(slice(0, 200))
        sigma = store.sigma(slice(0, 200))
    # the outermost pixel ring is mostly sky: its robust spread is the sky noise
    ok = mask & (spec["Z"].to_numpy()[:200] > 0.3)[:, None]  # distant galaxies leave the edges to the sky
    ring = np.concatenate([images[:, :, 0, :], images[:, :, -1, :]], axis=-1)[ok]  # (K, 2W)
    mad = 1.4826 * np.median(np.abs(ring - np.median(ring, axis=-1, keepdims=True)), axis=-1)
    assert np.median(mad / sigma[ok]) == pytest.approx(1.0, abs=0.15)


#: Where each survey's selection puts its redshifts: (lowest, highest) allowed median Z.
EXPECTED_MEDIAN_Z = {
    ("SDSS", "MGS"): (0.06, 0.13),       # r < 17.77: median z ~ 0.1 (Strauss et al. 2002)
    ("DESI", "BGS"): (0.12, 0.26),       # r < 19.5: median z ~ 0.2 (Hahn et al. 2023)
    ("DESI", "LRG"): (0.55, 0.9),        # 0.4 < z < 1.0 by the colour cuts (Zhou et al. 2023)
    ("DESI", "ELG"): (0.75, 1.4),        # 0.6 < z < 1.6 by the colour box (Raichoor et al. 2023)
    ("SDSS", "BOSS"): (0.3, 0.6),        # LOWZ ~0.3, CMASS ~0.55 (Reid et al. 2016)
    ("2dF", "2dFGRS"): (0.05, 0.16),     # b_J < 19.45: median 0.11 (Colless et al. 2001)
    ("6dF", "6dFGS"): (0.02, 0.09),      # K < 12.65: median 0.05 (Jones et al. 2009)
    ("2MRS", "2MRS"): (0.01, 0.06),      # K < 11.75: median 0.03 (Huchra et al. 2012)
    ("GAMA", "GAMA-II"): (0.12, 0.3),    # r < 19.8: median 0.2 (Liske et al. 2015)
    ("LAMOST", "LAMOST-ExGal"): (0.04, 0.16),
    ("HectoMAP", "HectoMAP"): (0.25, 0.55),  # red, r < 21.3: median 0.3-0.4 (Sohn et al. 2023)
    ("WiggleZ", "WiggleZ"): (0.4, 0.9),  # UV-selected, median 0.6 (Drinkwater et al. 2010)
    ("DEEP2", "DEEP2"): (0.6, 1.3),      # BRI pre-selected z > 0.7 (Newman et al. 2013)
    ("VIPERS", "VIPERS"): (0.45, 1.0),   # ugri pre-selected z > 0.5 (Guzzo et al. 2014)
}


def test_each_survey_redshift_distribution_lies_where_its_selection_puts_it(sky):
    _, spec, _ = sky
    med = spec.groupby(["SURVEY", "PROGRAM"])["Z"].median()
    for key, (lo, hi) in EXPECTED_MEDIAN_Z.items():
        assert lo <= med[key] <= hi, (key, med[key])
    z_true = spec.groupby(["SURVEY", "PROGRAM"])["Z_TRUE"]
    assert z_true.max()[("ELVES", "ELVES")] < 0.003          # D < 12 Mpc
    assert z_true.max()[("SAGA", "SAGA-satellites")] < 0.01  # hosts at 25-40 Mpc
    hetdex = spec[spec["SURVEY"] == "HETDEX"]
    right = np.abs(hetdex["Z"] - hetdex["Z_TRUE"]) < 0.01
    assert right.mean() > 0.7 and hetdex.loc[right, "Z"].max() < 0.48  # [OII] below 5500 A
    assert set(spec["SURVEY"]) == {s.name for s in mock.SURVEYS} and len(set(spec["SURVEY"])) == 20
    # DESI and SDSS dominate the compilation
    share = spec["SURVEY"].value_counts(normalize=True)
    assert share.index[0] == "DESI" and share.index[1] == "SDSS" and share["DESI"] + share["SDSS"] > 0.75
    # rare catastrophically wrong redshifts exist, no more than a few per cent
    wrong = np.abs(spec["Z"] - spec["Z_TRUE"]) / (1 + spec["Z_TRUE"]) > 0.15
    assert 0 < wrong.mean() < 0.05
    assert spec["Z"].between(0, 1.6).all() and (spec["Z_ERR"] > 0).all()


def test_same_seed_gives_byte_identical_files(tmp_path):
    small = {"n_spec": 120, "n_random": 500, "n_random_cutouts": 10, "cutout_size": 12}
    a = mock.simulate(tmp_path / "a", scale=small, seed=4, progress=False)
    # the second run goes through the command line
    from photozsom.cli import build_parser

    args = build_parser().parse_args(["simulate", str(tmp_path / "b"), "--scale", "120", "--seed", "4",
                                      "--cutout-size", "12"])
    args.scale = small  # the CLI takes numbers; use the same explicit sizes
    assert mock.cli_main(args) == 0
    c = mock.simulate(tmp_path / "c", scale=small, seed=5, progress=False)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    for name in ("random", "spec"):
        assert digest(a[name]) == digest(tmp_path / "b" / mock.FILES[name])
        assert digest(a[name]) != digest(c[name])
    with CutoutStore(a["cutouts"]) as sa, CutoutStore(tmp_path / "b" / "cutouts.h5") as sb:
        ia, ma, oa = sa.read(slice(None))
        ib, mb, ob = sb.read(slice(None))
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ma, mb)
        np.testing.assert_array_equal(ia, ib)


def test_existing_different_simulation_is_not_overwritten(tmp_path):
    small = {"n_spec": 60, "n_random": 200, "n_random_cutouts": 5, "cutout_size": 12}
    first = mock.simulate(tmp_path, scale=small, seed=1, progress=False)
    stamp = first["spec"].stat().st_mtime_ns
    assert mock.simulate(tmp_path, scale=small, seed=1, progress=False) == first  # same request: skip
    assert first["spec"].stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="overwrite=True"):
        mock.simulate(tmp_path, scale=small, seed=2, progress=False)


@pytest.mark.parametrize("bad", ["huge", {"n_spek": 10}, 5])
def test_bad_scale_raises_a_clear_error(bad):
    with pytest.raises(ValueError, match="scale|n_spec|n_spek"):
        mock.resolve_scale(bad)
    with pytest.raises(TypeError, match="name, a number or a dict"):
        mock.resolve_scale(-3.5)


def test_cli_reports_bad_scale(tmp_path, capsys):
    args = argparse.Namespace(out_dir=str(tmp_path), scale="lots", seed=0, cutout_size=None, overwrite=False)
    assert mock.cli_main(args) == 2
    assert "unknown scale" in capsys.readouterr().out


# -- realism: target densities, stars, photon noise -------------------------------------------------
def test_desi_target_densities_match_the_published_ones(sky, settings):
    _, _, rand = sky
    tab = mock_density_table(rand, settings)
    # ELG (LOP + VLO) ~2400 deg^-2 (Raichoor et al. 2023); the count error here is ~5%
    elg = tab.loc["DESI ELG (LOP + VLO)"]
    assert elg["published [deg^-2]"] == 2400.0
    assert 0.8 < elg["mock / published"] < 1.25, elg
    # BGS Bright ~864 deg^-2 (Hahn et al. 2023); ~8% counting error
    assert 0.7 < tab.loc["DESI BGS Bright", "mock / published"] < 1.4
    # LRG ~605 deg^-2 (Zhou et al. 2023): within a factor 2 (the mock holds ~1.3x, see the docs)
    assert 0.5 < tab.loc["DESI LRG", "mock / published"] < 2.0
    # stars ~7,400 deg^-2 to r = 22 (Juric et al. 2008)
    assert 0.7 < tab.loc["stars, r < 22", "mock / published"] < 1.4
    # the area is the sample size over the simulated density of detections
    dens = settings["random_density_per_deg2"]
    assert settings["random_area_deg2"] == pytest.approx(len(rand) / (dens["galaxies"] + dens["stars"]), rel=1e-4)
    assert set(tab.index) == set(PUBLISHED_DENSITIES)


def test_desi_selections_match_the_mock_survey_rules_on_noiseless_examples():
    # three hand-made sources, each built to pass exactly one selection
    def row(g, r, z, w1, typ="REX"):
        f = lambda m: 10 ** (-0.4 * (m - 22.5))
        return {"FLUX_G": f(g), "FLUX_R": f(r), "FLUX_Z": f(z), "FLUX_W1": f(w1), "FIBERFLUX_G": f(g + 0.7),
                "FIBERFLUX_R": f(r + 0.7), "FIBERFLUX_Z": f(z + 0.7), "MW_TRANSMISSION_G": 1.0,
                "MW_TRANSMISSION_R": 1.0, "MW_TRANSMISSION_Z": 1.0, "MW_TRANSMISSION_W1": 1.0,
                "TYPE": typ, "MASKBITS": 0}
    cat = pd.DataFrame([row(19.6, 18.9, 18.5, 19.5),       # BGS: bright, blue-ish, low z
                        row(23.0, 21.5, 20.2, 18.0),       # LRG: red in r-z, z-W1 and r-W1 > 3.3
                        row(23.2, 23.0, 22.5, 22.5),       # ELG: faint, blue in g-r, r-z = 0.5
                        row(17.0, 16.4, 16.2, 17.6, "PSF")])  # a G star: none
    sel = select_desi_targets(cat)
    np.testing.assert_array_equal(sel.to_numpy(), [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])


def test_star_colours_match_published_loci_and_avoid_the_galaxy_target_boxes():
    grid = get_star_grid()
    sdss = lambda t: grid.colours(np.atleast_1d(np.asarray(t, float)), ["g_sdss", "r_sdss", "i_sdss", "z_sdss"])
    # the Sun (T = 5772 K): SDSS g-r = 0.46, r-i = 0.12 (AB; Willmer 2018, ApJS 236, 47)
    c = sdss(5772.0)[0]
    assert c[0] - c[1] == pytest.approx(0.46, abs=0.05)
    assert c[1] - c[2] == pytest.approx(0.12, abs=0.05)
    # SDSS g-r of G0V-K7V (Pecaut & Mamajek 2013 table; a column the model is not fitted to)
    for temp, gr in ((5930, 0.42), (5270, 0.62), (4440, 1.04), (4100, 1.26)):
        c = sdss(temp)[0]
        assert c[0] - c[1] == pytest.approx(gr, abs=0.08), temp
    # SDSS i-z of M0V-M4V (same table, not fitted)
    for temp, iz in ((3850, 0.33), (3560, 0.53), (3430, 0.61), (3210, 0.71)):
        c = sdss(temp)[0]
        assert c[2] - c[3] == pytest.approx(iz, abs=0.13), temp
    # the SDSS stellar locus of Juric et al. (2008, eq. 2) for late-K and early-M dwarfs (hotter
    # stars sit on its steep part, where a 0.04 mag offset in r-i moves g-r by 0.1)
    temps = np.geomspace(3450.0, 4500.0, 10)
    c = sdss(temps)
    from photozsom.sim.sed import juric_locus_gr
    np.testing.assert_allclose(c[:, 0] - c[:, 1], juric_locus_gr(c[:, 1] - c[:, 2]), atol=0.12)
    # ... and their photometric parallax relation (Juric et al. 2008) for 0.1 < r-i < 1.2
    ri = c[:, 1] - c[:, 2]
    mr = np.interp(np.log(temps), np.log(grid.temp), grid.mr_abs)
    np.testing.assert_allclose(mr, mpop.photometric_parallax(ri), atol=0.5)
    # DESI cuts built to reject the stellar locus: ELG g-r < 0.5(r-z) + 0.1 (Raichoor et al.
    # 2023) and the LRG non-stellar cut z-W1 > 0.8(r-z) - 0.6 (Zhou et al. 2023)
    col = grid.colours(grid.temp, ["G_S", "R_S", "Z_S", "W1"])
    gr, rz, zw1 = col[:, 0] - col[:, 1], col[:, 1] - col[:, 2], col[:, 2] - col[:, 3]
    assert not ((rz > 0.15) & (gr < 0.5 * rz + 0.1) & (gr < -1.2 * rz + 1.6)).any()
    assert (zw1 < 0.8 * rz - 0.6 - 0.2).all()


def test_star_counts_match_sdss_and_fall_with_galactic_latitude():
    sc = mpop.get_star_counts()
    per_deg2 = sc.expected_per_sr({"r_sdss": 22.0}) * (np.pi / 180) ** 2
    # Juric et al. (2008): ~48 million stars to r ~ 22 in 6,500 deg^2, mostly at |b| > 25 deg
    assert 0.6 < per_deg2 / (48e6 / 6500) < 1.5
    col = sc.grid.colours(sc.temp_m, ["r_sdss"])[:, 0]
    bright = (sc.mc[None, :] + sc.dm[:, None] + col[None, :]) < 22.0
    per_dir = (sc.dens * bright[None]).sum(axis=(1, 2))
    b = np.abs(sc.b)
    assert per_dir[b > 60].mean() < 0.5 * per_dir[b < 30].mean()


def test_random_sample_holds_stars_mostly_typed_psf(sky, settings):
    _, spec, rand = sky
    star = rand["IS_STAR"].to_numpy()
    dens = settings["random_density_per_deg2"]
    expected = dens["stars"] / (dens["stars"] + dens["galaxies"])
    assert star.mean() == pytest.approx(expected, abs=3 * np.sqrt(expected * (1 - expected) / star.size) + 1e-3)
    assert 0.03 < star.mean() < 0.4
    assert (rand.loc[star, "Z_TRUE"] == 0).all() and (rand.loc[~star, "Z_TRUE"] > 0).all()
    typ = rand["TYPE"].to_numpy()
    assert (typ[star] == "PSF").mean() > 0.8            # stars are point sources ...
    assert 0.01 < (typ[star] != "PSF").mean() < 0.2     # ... except for noise and blends
    faint = _rmag(rand) > 23
    assert (typ[faint & ~star] == "PSF").mean() > 0.2   # faint galaxies are unresolved
    # the compilation keeps galaxy redshifts only (SPECTYPE STAR and Z ~ 0 removed)
    assert not spec["IS_STAR"].any()


def test_photon_noise_variance_equals_source_flux_over_gain():
    rng = np.random.default_rng(8)
    img = mock_images.render_batch(40, np.array([0]), np.array([19.3]), np.array([20.1]),
                                   np.array([[400.0, 900.0]]), np.array([1.0]), np.array([0.8]),
                                   np.array([0.7]), np.array([0.3]), np.array([[1.4, 1.2]]))
    sky_sigma = np.array([[0.01, 0.02]])
    gain = np.array([[250.0, 3000.0]])
    noisy = np.stack([mock_images.add_noise(rng, img, sky_sigma, gain)[0] for _ in range(800)])  # (R, NB, H, W)
    var = noisy.astype(np.float64).var(axis=0, ddof=1)
    for b in range(2):
        excess = (var[b] - sky_sigma[0, b] ** 2).sum()
        model = np.clip(img[0, b], 0, None).sum() / gain[0, b]
        # the summed excess variance is a sum of ~1600 pixel variances, each known to 5%
        assert excess == pytest.approx(model, rel=0.05), b
        assert noisy[:, b].mean(axis=0) == pytest.approx(img[0, b], abs=4 * np.sqrt(var[b].max() / 800))


def test_photon_gain_implies_legacy_survey_exposure_times(sky):
    paths, spec, _ = sky
    with CutoutStore(paths["cutouts"]) as store:
        sigma = store.sigma(store.rows_of(spec["OBJID"].to_numpy()))
    south = (spec["PHOTSYS"] == "S").to_numpy()
    gain = mph.electrons_per_nanomaggy(sigma[south])
    # the sky noise is the sky's photon noise: sigma^2 * gain = sky per pixel
    r_sky = 10 ** (-0.4 * (mph.SKY_BRIGHTNESS["R"] - 22.5)) * mock_images.PIXSCALE**2
    np.testing.assert_allclose(sigma[south, 1] ** 2 * gain[:, 1], r_sky, rtol=1e-5)
    # seconds of DECam r exposure those electrons need at the nominal DECam zero point of the
    # DESI observing scripts (26.818 mag for 1 e-/s): DECaLS takes 3-4 exposures of 50-100 s,
    # DES 10 of 90 s
    seconds = gain[:, 1] / 10 ** (0.4 * (26.818 - 22.5))
    assert 50 < np.median(seconds) < 600
    assert np.isnan(mph.electrons_per_nanomaggy(np.array([[0.01, 0.01, np.nan, 0.02]]))[0, 2])
