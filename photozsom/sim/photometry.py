"""Observing the simulated galaxies: Legacy Survey DR10-like catalogue photometry.

What a galaxy goes through (all vectorised over galaxies)
--------------------------------------------------------
1. **True fluxes** through DECam g,r,i,z (``PHOTSYS='S'``) or BASS g,r + MzLS z
   (``PHOTSYS='N'``, no i-band) and WISE W1, W2 (:mod:`photozsom.sim.sed`).
2. **Galactic extinction**: ``MW_TRANSMISSION_b = 10^(-0.4 R_b EBV)`` with the DR9/DR10
   coefficients (:data:`R_EXT`; DECam and WISE from the Legacy Survey catalogue pages,
   BASS/MzLS from DESI's imaging bandpass table as used by ``desiutil.dust``).
3. **Seeing and depth** per object and band: the number of exposures ``NOBS`` (Poisson; a
   quarter of the south is DES-like with ~9 exposures), the seeing FWHM (log-normal around
   :data:`SEEING`) and the 5-sigma point-source depth
   ``m5 = DEPTH_PSF + 1.25 log10(NOBS / 3) - 2.5 log10(FWHM / FWHM_median) + N(0, 0.1)``.
   :data:`DEPTH_PSF` approximates the median ``PSFDEPTH`` of DR10 south (DECam) and DR9 north
   (BASS/MzLS) (legacysurvey.org/dr10/description, /dr9/description; Dey et al. 2019), and
   the unWISE/NEOWISE-R7 forced photometry for W1/W2. The sky noise per pixel follows from
   ``m5`` and the PSF's noise-equivalent area, and is what the image cutouts use.
4. **Blends**: every object has neighbours drawn from the same population (field galaxies at
   the population's surface density to r = 25, plus physical companions at the same
   redshift with a ``theta^-0.8`` excess). A neighbour at separation d contaminates the
   catalogue flux in band b by a fraction ``1 / (1 + (d / (0.8 FWHM_b))^6)`` (the Tractor
   fits unresolved pairs as one source); in WISE the scale is 2.5" (forced photometry at the
   optical positions leaves residual confusion). The same neighbours are drawn in the cutouts.
5. **Imaging artefacts** (``MASKBITS``): ~1.5% BRIGHT (bit 1) and ~2% MEDIUM (bit 11) star
   halos add a smooth background that biases the flux, ~3% WISEM1/2 (bits 8, 9) add flux in
   W1/W2, galaxies larger than 15" get GALAXY (bit 12).
6. **Noise**: Gaussian with the optimal-photometry error of the galaxy's PSF-convolved
   profile, ``sigma = sigma_psf sqrt(NEA_gal / NEA_psf)``; ``FLUX_IVAR = 1 / sigma^2``.
7. **Morphology as measured**: TYPE PSF when the measured size (true size, blend spread and
   a measurement error ~FWHM/(S/N)) is below what can be resolved at the source's S/N (and
   below 0.1" at any S/N), REX at low S/N, EXP/DEV by Sersic index and SER for bright
   well-measured intermediate profiles; SHAPE_R/E1/E2/SERSIC with noise shrinking as 1/S/N;
   blended pairs look larger. Stars (r_half = 0) therefore come out PSF ~90% of the time,
   REX or EXP when faint or blended, while most faint galaxies are PSF: the star-galaxy
   confusion the real TYPE column carries.
8. **Photon counts** (for the cutouts): :func:`electrons_per_nanomaggy`, the gain at which
   the sky noise is the photon noise of a sky of nominal brightness (:data:`SKY_BRIGHTNESS`).
"""

from __future__ import annotations

import numpy as np

from photozsom.sim import images as mock_images
from photozsom.sim.bands import LS_GRID_BANDS, SELECTION_BANDS
from photozsom.sim.population import ebv_map
from photozsom.sim.sed import SEDGrid

__all__ = [
    "DEPTH_PSF",
    "LS_GRID_BANDS",
    "R_EXT",
    "SEEING",
    "SELECTION_BANDS",
    "NeighbourPool",
    "add_photometry",
    "draw_neighbours",
    "electrons_per_nanomaggy",
    "observe",
    "region_fluxes",
]

#: Catalogue bands in output order.
BANDS: tuple[str, ...] = ("G", "R", "I", "Z", "W1", "W2")
_OPT = ("G", "R", "I", "Z")

#: Median 5-sigma point-source depth, AB mag (see the module docstring for the sources).
DEPTH_PSF: dict[str, dict[str, float]] = {
    "S": {"G": 24.7, "R": 24.2, "I": 23.8, "Z": 23.3, "W1": 21.0, "W2": 20.3},
    "N": {"G": 24.2, "R": 23.7, "Z": 23.3, "W1": 21.0, "W2": 20.3},
}
#: Median seeing FWHM, arcsec (DECam DR10; BASS, MzLS DR9; Dey et al. 2019), and unWISE PSF.
SEEING: dict[str, dict[str, float]] = {
    "S": {"G": 1.45, "R": 1.30, "I": 1.20, "Z": 1.20, "W1": 6.1, "W2": 6.4},
    "N": {"G": 1.70, "R": 1.55, "Z": 1.20, "W1": 6.1, "W2": 6.4},
}
#: A_b / E(B-V) of the catalogue's MW_TRANSMISSION columns.
R_EXT: dict[str, dict[str, float]] = {
    "S": {"G": 3.214, "R": 2.165, "I": 1.592, "Z": 1.211, "W1": 0.184, "W2": 0.113},
    "N": {"G": 3.258, "R": 2.176, "Z": 1.199, "W1": 0.184, "W2": 0.113},
}
#: Mean number of exposures per band: DECaLS/DELVE-like south, DES-like south, BASS/MzLS north.
_NOBS_MEAN = {"S": {"G": 3.5, "R": 3.5, "I": 2.5, "Z": 3.5}, "DES": 9.0,
              "N": {"G": 3.0, "R": 3.0, "Z": 3.0}}
_DES_FRACTION = 0.25
#: Blending scale in units of the seeing FWHM (optical) and in arcsec (WISE).
BLEND_SCALE_FWHM: float = 0.8
BLEND_SCALE_WISE: float = 2.5
#: Radius within which neighbours are drawn for the catalogue, arcsec.
NEIGHBOUR_RADIUS: float = 6.0
#: Mean number of physical companions within NEIGHBOUR_RADIUS (small-scale clustering).
COMPANION_RATE: float = 0.15
#: Smallest circularised size the Tractor tells from a point source at any S/N, arcsec.
MIN_RESOLVED_ARCSEC: float = 0.1
#: Nominal dark-sky surface brightness, AB mag/arcsec^2: the DECam and Mosaic nominal
#: calibration of the DESI observing scripts (obsbot: g 22.04, r 20.91, z 18.46), used for the
#: north as well; i (19.9) interpolated by us between r and z.
SKY_BRIGHTNESS: dict[str, float] = {"G": 22.04, "R": 20.91, "I": 19.9, "Z": 18.46}
#: Faintest neighbour simulated (r, AB).
NEIGHBOUR_MAG_LIMIT: float = 25.0


def electrons_per_nanomaggy(sigma_pix: np.ndarray, pixscale: float = mock_images.PIXSCALE) -> np.ndarray:
    """Photo-electrons per nanomaggy implied by a sky-limited noise level.

    The sky noise of a stacked image is the photon noise of the sky:
    ``sigma_pix^2 = S / gain`` with ``S`` the sky per pixel in nanomaggies
    (:data:`SKY_BRIGHTNESS` times the pixel area), so ``gain = S / sigma_pix^2``. A deeper
    image (more exposures, better seeing) has a smaller ``sigma_pix`` and collected more
    electrons per nanomaggy.

    Parameters
    ----------
    sigma_pix : ndarray, shape (N, 4)
        Sky noise per pixel in g, r, i, z, nanomaggies (NaN where a band does not exist).
    pixscale : float
        arcsec per pixel.

    Returns
    -------
    ndarray, shape (N, 4)
        e- per nanomaggy (NaN where ``sigma_pix`` is NaN).
    """
    sky = np.array([10 ** (-0.4 * (SKY_BRIGHTNESS[b] - 22.5)) * pixscale**2 for b in _OPT])
    with np.errstate(divide="ignore", invalid="ignore"):
        return sky[None, :] / np.asarray(sigma_pix, np.float64) ** 2


def grid_band(photsys: str, band: str) -> str:
    """SED-grid band of a catalogue band in a region ('W1' for WISE, 'G_S', 'Z_N', ...)."""
    return band if band.startswith("W") else f"{band}_{photsys}"


def add_photometry(grid: SEDGrid, cosmo, t: dict) -> dict:
    """Add true (noiseless, not extinguished) photometry and line fluxes to a truth table.

    Parameters
    ----------
    grid : SEDGrid
    cosmo : mock_population.Cosmology
    t : dict
        Needs ``z``, ``coeffs`` (N, 5), ``ebv_int``.

    Returns
    -------
    dict
        ``t`` with ``flux_ls`` (N, 9) nanomaggies in :data:`LS_GRID_BANDS`, ``mag_sel``
        (N, len(SELECTION_BANDS)) AB mag, and ``line_<NAME>`` erg s^-1 cm^-2.
    """
    dm = cosmo.distmod(t["z"])
    scale = 10 ** (-0.4 * dm)
    ls = grid.maggies(t["coeffs"], t["z"], t["ebv_int"], LS_GRID_BANDS) * scale[:, None]
    t["flux_ls"] = (ls * 1e9).astype(np.float64)
    sel = grid.maggies(t["coeffs"], t["z"], t["ebv_int"], SELECTION_BANDS) * scale[:, None]
    with np.errstate(divide="ignore"):
        t["mag_sel"] = -2.5 * np.log10(np.clip(sel, 1e-40, None))
    for name, val in grid.line_fluxes(t["coeffs"], t["ebv_int"]).items():
        t[f"line_{name}"] = val * scale
    return t


def region_fluxes(flux_ls: np.ndarray, photsys: np.ndarray) -> np.ndarray:
    """Pick each object's bands: (N, 9) grid fluxes -> (N, 6) catalogue g,r,i,z,W1,W2.

    The north has no i-band: NaN.
    """
    south = np.asarray(photsys) == "S"
    out = np.empty((flux_ls.shape[0], 6), flux_ls.dtype)
    out[:, 0] = np.where(south, flux_ls[:, 0], flux_ls[:, 4])
    out[:, 1] = np.where(south, flux_ls[:, 1], flux_ls[:, 5])
    out[:, 2] = np.where(south, flux_ls[:, 2], np.nan)
    out[:, 3] = np.where(south, flux_ls[:, 3], flux_ls[:, 6])
    out[:, 4] = flux_ls[:, 7]
    out[:, 5] = flux_ls[:, 8]
    return out


class NeighbourPool:
    """Galaxies that can appear next to any object of the sky (to r = 25).

    Parameters
    ----------
    t : dict
        Truth table (with photometry) of galaxies drawn to r < 25 in either region's r band.
    density_per_arcsec2 : float
        Surface density of galaxies brighter than :data:`NEIGHBOUR_MAG_LIMIT`, arcsec^-2.
    """

    def __init__(self, t: dict, density_per_arcsec2: float):
        order = np.argsort(t["z"], kind="stable")
        self.t = {k: v[order] for k, v in t.items()}
        self.density = float(density_per_arcsec2)

    def __len__(self) -> int:
        return int(self.t["z"].size)


def draw_neighbours(rng: np.random.Generator, z: np.ndarray, pool: NeighbourPool,
                    radius: float = NEIGHBOUR_RADIUS, annulus: tuple[float, float] | None = None) -> dict:
    """Neighbours of each object: field galaxies and same-redshift companions.

    Parameters
    ----------
    rng : numpy.random.Generator
    z : ndarray, shape (N,)
        Redshift of each object (for companions).
    pool : NeighbourPool
    radius : float
        Field neighbours are drawn uniformly within this radius (arcsec) ...
    annulus : (float, float), optional
        ... or, when given, uniformly in the square of half-side ``annulus[1]`` but outside
        the disc of radius ``annulus[0]`` (extra neighbours for an image; no companions).

    Returns
    -------
    dict
        ``owner`` (K,) index of the object, sorted; ``dx``, ``dy`` arcsec; ``pool`` index;
        ``companion`` bool.
    """
    n = z.size
    if annulus is None:
        n_field = rng.poisson(pool.density * np.pi * radius**2, n)
        k = int(n_field.sum())
        r = radius * np.sqrt(rng.random(k))
        ang = rng.uniform(0, 2 * np.pi, k)
        dx, dy = r * np.cos(ang), r * np.sin(ang)
        owner_f = np.repeat(np.arange(n), n_field)
        pool_f = rng.integers(0, len(pool), k)
        # companions: density excess ~ theta^-0.8 between 0.5" and radius
        n_comp = rng.poisson(COMPANION_RATE, n)
        kc = int(n_comp.sum())
        owner_c = np.repeat(np.arange(n), n_comp)
        lo, hi = 0.5 ** 1.2, radius ** 1.2
        rc = (lo + (hi - lo) * rng.random(kc)) ** (1 / 1.2)
        angc = rng.uniform(0, 2 * np.pi, kc)
        pos = np.searchsorted(pool.t["z"], z[owner_c]) + rng.integers(-3, 4, kc)
        pool_c = np.clip(pos, 0, len(pool) - 1)
        out = {
            "owner": np.concatenate([owner_f, owner_c]),
            "dx": np.concatenate([dx, rc * np.cos(angc)]),
            "dy": np.concatenate([dy, rc * np.sin(angc)]),
            "pool": np.concatenate([pool_f, pool_c]),
            "companion": np.concatenate([np.zeros(k, bool), np.ones(kc, bool)]),
        }
    else:
        r_in, half = annulus
        n_all = rng.poisson(pool.density * (2 * half) ** 2, n)
        k = int(n_all.sum())
        dx = rng.uniform(-half, half, k)
        dy = rng.uniform(-half, half, k)
        keep = np.hypot(dx, dy) > r_in
        owner = np.repeat(np.arange(n), n_all)
        pool_i = rng.integers(0, len(pool), k)
        out = {"owner": owner[keep], "dx": dx[keep], "dy": dy[keep], "pool": pool_i[keep],
               "companion": np.zeros(int(keep.sum()), bool)}
    order = np.argsort(out["owner"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def subset_neighbours(nb: dict, keep: np.ndarray, n_old: int) -> dict:
    """Neighbours of the objects ``keep`` (indices into the ``n_old`` old objects), re-indexed."""
    new_index = np.full(n_old, -1, dtype=np.int64)
    new_index[np.asarray(keep)] = np.arange(len(keep))
    mapped = new_index[nb["owner"]]
    sel = mapped >= 0
    out = {k: v[sel] for k, v in nb.items()}
    out["owner"] = mapped[sel]
    order = np.argsort(out["owner"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def _blend_fraction(d: np.ndarray, fwhm: np.ndarray, band: str) -> np.ndarray:
    scale = BLEND_SCALE_WISE if band.startswith("W") else BLEND_SCALE_FWHM * fwhm
    return 1.0 / (1.0 + (d / scale) ** 6)


def observe(rng: np.random.Generator, t: dict, nb: dict, pool: NeighbourPool, seed: int) -> tuple[dict, dict]:
    """Catalogue photometry of the objects of truth table ``t`` with neighbours ``nb``.

    Parameters
    ----------
    rng : numpy.random.Generator
    t : dict
        Truth table with photometry (:func:`add_photometry`) and ``photsys``, ``ra``,
        ``dec``, ``gal_b``.
    nb : dict
        Neighbours (:func:`draw_neighbours`).
    pool : NeighbourPool
    seed : int
        Seed of the Galactic extinction map.

    Returns
    -------
    cat : dict
        DR10 columns (``FLUX_*``, ``FLUX_IVAR_*``, ``MW_TRANSMISSION_*``, ``NOBS_*``,
        ``EBV``, ``TYPE``, ``SHAPE_*``, ``SERSIC``, ``MASKBITS``, ``PSFSIZE_*``,
        ``PSFDEPTH_*``, ``FIBERFLUX_G/R/Z``) plus ``BLEND_FRAC_TRUE`` (fraction of the
        r-band catalogue flux that comes from neighbours).
    obs : dict
        What the cutouts need: ``fwhm`` (N, 6) arcsec, ``sigma_pix`` (N, 6) nanomaggies,
        ``mw`` (N, 6), ``halo`` (N, 6) nanomaggies/pixel, ``halo_grad`` (N, 2).
    """

    n = t["z"].size
    photsys = np.asarray(t["photsys"])
    south = photsys == "S"
    true = region_fluxes(t["flux_ls"], photsys)  # (N, 6)
    ebv = ebv_map(t["ra"], t["dec"], t["gal_b"], seed)
    cat: dict = {"EBV": ebv.astype(np.float32)}
    # -- extinction, seeing, depth ----------------------------------------------------------
    mw = np.empty((n, 6))
    fwhm = np.empty((n, 6))
    m5 = np.empty((n, 6))
    nobs = np.zeros((n, 4), np.int16)
    des = south & (rng.random(n) < _DES_FRACTION)
    for j, b in enumerate(BANDS):
        r_s, r_n = R_EXT["S"][b], R_EXT["N"].get(b, np.nan)
        mw[:, j] = 10 ** (-0.4 * np.where(south, r_s, r_n) * ebv)
        med = np.where(south, SEEING["S"][b], SEEING["N"].get(b, np.nan))
        fwhm[:, j] = med * np.exp((0.18 if j < 4 else 0.03) * rng.standard_normal(n))
        depth = np.where(south, DEPTH_PSF["S"][b], DEPTH_PSF["N"].get(b, np.nan))
        if j < 4:
            lam = np.where(south, _NOBS_MEAN["S"][b], _NOBS_MEAN["N"].get(b, 1.0))
            lam = np.where(des, _NOBS_MEAN["DES"], lam)
            nb_exp = 1 + rng.poisson(lam - 1.0)
            nobs[:, j] = nb_exp
            m5[:, j] = (depth + 1.25 * np.log10(nb_exp / 3.0) - 2.5 * np.log10(fwhm[:, j] / med)
                        + 0.1 * rng.standard_normal(n))
        else:
            m5[:, j] = depth + 0.25 * rng.standard_normal(n)
    mw[~south, 2] = np.nan
    fwhm[~south, 2] = np.nan
    m5[~south, 2] = np.nan
    nobs[~south, 2] = 0
    sig_psf = 10 ** (-0.4 * (m5 - 22.5)) / 5.0  # nanomaggies
    nea_psf = mock_images.psf_nea(np.where(np.isfinite(fwhm), fwhm, 1.0))
    nea_psf[:, 4:] = mock_images.psf_nea(fwhm[:, 4:] * mock_images.PIXSCALE / 2.75, mock_images.PIXSCALE)
    sigma_pix = sig_psf / np.sqrt(nea_psf)
    # -- blends -------------------------------------------------------------------------------
    owner = nb["owner"]
    d = np.hypot(nb["dx"], nb["dy"])
    pool_flux = region_fluxes(pool.t["flux_ls"][nb["pool"]], photsys[owner])  # (K, 6)
    contam = np.zeros((n, 6))
    for j, b in enumerate(BANDS):
        frac = _blend_fraction(d, fwhm[owner, j], b)
        contam[:, j] = np.bincount(owner, weights=np.nan_to_num(pool_flux[:, j]) * frac, minlength=n)
    contam[~south, 2] = np.nan
    # -- artefacts ------------------------------------------------------------------------------
    maskbits = np.zeros(n, np.int32)
    u = rng.random(n)
    bright = u < 0.015
    medium = (u >= 0.015) & (u < 0.035)
    wisem = rng.random(n) < 0.03
    maskbits[bright] |= 1 << 1
    maskbits[medium] |= 1 << 11
    maskbits[wisem] |= (1 << 8) | (1 << 9)
    maskbits[t["r_half"] > 15.0] |= 1 << 12
    halo = np.zeros((n, 6))
    star_colour = np.array([1.0, 1.3, 1.5, 1.6, 0.0, 0.0])
    level = np.where(bright, rng.uniform(0.5, 2.5, n), np.where(medium, rng.uniform(0.2, 1.0, n), 0.0))
    halo[:, :4] = level[:, None] * star_colour[None, :4] * sigma_pix[:, 1:2]
    halo[~south, 2] = np.nan
    halo_grad = rng.normal(0.0, 0.5, (n, 2)) * (level > 0)[:, None]
    wise_extra = np.zeros((n, 2))
    wise_extra[wisem] = rng.uniform(1.0, 5.0, (int(wisem.sum()), 2)) * sig_psf[wisem, 4:]
    # -- noise with the galaxy's noise-equivalent area ------------------------------------------------
    r_circ = t["r_half"] * np.sqrt(t["q"])
    ratio = np.ones((n, 6))
    for j in range(6):
        fw = np.where(np.isfinite(fwhm[:, j]), fwhm[:, j], 1.0)
        ratio[:, j] = mock_images.nea_ratio(t["sersic"], r_circ, fw)
    sigma = sig_psf * np.sqrt(ratio)
    signal = mw * (true + contam)
    signal[:, :4] += halo[:, :4] * nea_psf[:, :4] * ratio[:, :4]
    signal[:, 4:] += wise_extra
    flux = signal + sigma * rng.standard_normal((n, 6))
    flux[~south, 2] = np.nan
    ivar = 1.0 / sigma**2
    ivar[~south, 2] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        cat["BLEND_FRAC_TRUE"] = (contam[:, 1] / (true[:, 1] + contam[:, 1])).astype(np.float32)
    # -- morphology as measured -------------------------------------------------------------------
    snr = np.sqrt(np.nansum(np.clip(true[:, :4] * mw[:, :4] / sigma[:, :4], 0, None) ** 2, axis=1))
    blend_r = np.clip(np.nan_to_num(cat["BLEND_FRAC_TRUE"]), 0, 1)
    # a merged pair looks larger: add the flux-weighted offset of contaminating neighbours
    w_nb = _blend_fraction(d, fwhm[owner, 1], "R") * np.nan_to_num(pool_flux[:, 1])
    spread = np.sqrt(np.bincount(owner, weights=w_nb * d**2, minlength=n)
                     / np.maximum(true[:, 1] + np.bincount(owner, weights=w_nb, minlength=n), 1e-12))
    r_meas = np.sqrt(t["r_half"] ** 2 + spread**2) * np.exp(2.0 / np.maximum(snr, 1) * rng.standard_normal(n))
    # a size is measured to ~FWHM / (S/N): faint point sources can come out extended (REX)
    r_meas = np.abs(r_meas + fwhm[:, 1] / np.maximum(snr, 1) * rng.standard_normal(n))
    r_min = np.maximum(0.15 * fwhm[:, 1] * np.sqrt(25.0 / np.maximum(snr, 1.0)), MIN_RESOLVED_ARCSEC)
    resolved = r_meas * np.sqrt(t["q"]) > r_min
    n_meas = t["sersic"] * np.exp((0.1 + 3.0 / np.maximum(snr, 1)) * rng.standard_normal(n))
    e_true = (1 - t["q"]) / (1 + t["q"])
    e1 = e_true * np.cos(2 * t["phi"]) + 1.5 / np.maximum(snr, 1) * rng.standard_normal(n)
    e2 = e_true * np.sin(2 * t["phi"]) + 1.5 / np.maximum(snr, 1) * rng.standard_normal(n)
    e_mod = np.hypot(e1, e2)
    shrink = np.where(e_mod > 0.9, 0.9 / np.maximum(e_mod, 1e-9), 1.0)
    e1, e2 = e1 * shrink, e2 * shrink
    types = np.where(~resolved, "PSF", np.where(snr < 40, "REX", np.where(n_meas < 2.3, "EXP", "DEV")))
    ser = resolved & (snr > 150) & (n_meas > 1.5) & (n_meas < 3.3)
    types = np.where(ser, "SER", types)
    sersic_col = np.select([types == "PSF", types == "REX", types == "EXP", types == "DEV"],
                           [0.0, 1.0, 1.0, 4.0], np.clip(n_meas, 0.5, 6.0))
    rex = types == "REX"
    shape_r = np.where(types == "PSF", 0.0, np.where(rex, r_meas * np.sqrt(t["q"]), r_meas))
    e1 = np.where((types == "PSF") | rex, 0.0, e1)
    e2 = np.where((types == "PSF") | rex, 0.0, e2)
    # -- fibre fluxes (DESI targeting): 1.5" diameter, 1" seeing ----------------------------------
    fib = mock_images.aperture_fraction(t["sersic"], r_circ)
    # -- assemble -----------------------------------------------------------------------------------
    cat.update({
        "TYPE": types.astype(object),
        "SHAPE_R": shape_r.astype(np.float32),
        "SHAPE_E1": e1.astype(np.float32),
        "SHAPE_E2": e2.astype(np.float32),
        "SERSIC": sersic_col.astype(np.float32),
        "MASKBITS": maskbits,
    })
    for j, b in enumerate(BANDS):
        cat[f"FLUX_{b}"] = flux[:, j].astype(np.float32)
        cat[f"FLUX_IVAR_{b}"] = ivar[:, j].astype(np.float32)
        cat[f"MW_TRANSMISSION_{b}"] = mw[:, j].astype(np.float32)
    for j, b in enumerate(_OPT):
        cat[f"NOBS_{b}"] = nobs[:, j]
    for j, b in enumerate(_OPT):
        cat[f"PSFSIZE_{b}"] = np.where(np.isfinite(fwhm[:, j]), fwhm[:, j], 0.0).astype(np.float32)
        cat[f"PSFDEPTH_{b}"] = np.where(np.isfinite(sig_psf[:, j]), 1 / sig_psf[:, j] ** 2, 0.0).astype(np.float32)
    for j, b in ((0, "G"), (1, "R"), (3, "Z")):
        cat[f"FIBERFLUX_{b}"] = (mw[:, j] * true[:, j] * fib).astype(np.float32)
    obs = {"fwhm": fwhm, "sigma_pix": sigma_pix, "mw": mw, "halo": halo, "halo_grad": halo_grad,
           "snr": snr, "contam": contam, "blend_r": blend_r}
    return cat, obs
