"""The galaxy population of the simulated sky: luminosity functions, spectra, sizes, positions.

Model (every number is a module constant, with its source)
-----------------------------------------------------------
- **Luminosity functions.** Two Schechter functions in rest-frame DECam r (AB), one for a
  red and one for a blue population, with the parametrisation of Lin et al. (1999) /
  Loveday et al. (2012): ``M*(z) = M*_0 - Q (z - 0.1)`` and
  ``phi*(z) = phi*_0 10^(0.4 P (z - 0.1))``. Shapes (alpha, M*_0) are close to the GAMA
  r-band colour-split fits of Loveday et al. (2012) converted to h = 0.677; evolution as in
  Faber et al. (2007, DEEP2): both populations brighten with redshift, red galaxies were
  rarer in the past. The normalisations and Q, P were then adjusted (by us) so that the
  published target densities come out close; the blue population's evolution (Q = 1.0,
  P = -1.2) sets the density of the DESI ELG box (g_fibre < 24.1 blue galaxies at z ~ 1),
  which a stronger brightening had filled to ~2x the real 2400/deg^2. What the mock now
  gives against the published densities is printed by
  :func:`photozsom.data.summary.mock_density_table` (ELG ~1.1x, BGS Bright ~1x, LRG
  ~1.3x). Red and blue fractions depend on luminosity and
  redshift without being imposed.
- **Stars.** Main-sequence stars of the Milky Way (:class:`StarCounts`): the thin disc,
  thick disc and halo of Juric et al. (2008) filled with a solar-neighbourhood luminosity
  function; colours and absolute magnitudes along the mean dwarf sequence of Pecaut &
  Mamajek (2013) (:class:`photozsom.sim.sed.StarGrid`). They reach ~7,000/deg^2 to
  r = 22 over the footprint (Juric et al.: ~7,400/deg^2 in SDSS) and ~20% of the random sample.
- **Light cone.** Galaxies fill the comoving volume of Planck18 (astropy.cosmology) from
  z = 5e-4 to 3. Sampling to a flux limit uses the smallest K-correction of any template
  mixture (:meth:`SEDGrid.kcorr_min`) so that no galaxy that could pass the limit is lost;
  the exact cut is applied after the photometry is computed.
- **Spectra.** Non-negative mixtures of the five kcorrect templates: red galaxies are
  dominated by the old template 3, with intermediate-age (0), younger (2) and post-starburst
  (4) admixtures that grow with redshift (and, for 2, towards faint luminosities: a
  colour-magnitude relation); blue galaxies mix the star-forming templates 1, 2 and 4 with
  more starburst light in faint and distant galaxies and more bulge (3) and intermediate-age
  (0) light in bright ones. Mixture fractions are Dirichlet draws of the *rest-frame r-band
  light*. Emission lines: the templates' own, plus an extra line-only component (template 2's
  lines) of strength ``0.7 ((1+z)^2 - 1)`` for blue galaxies, because line equivalent widths
  grow with redshift like the specific star-formation rate (e.g. Khostovan et al. 2016);
  without it z ~ 1 [OII] fluxes would be ~2x below those DESI measures. Extra internal dust
  on top of the templates' own: Calzetti E(B-V), exponential with mean 0.02 for red galaxies,
  gamma-distributed with a mean ~0.05 rising with luminosity and inclination for blue ones.
- **Sizes and shapes.** Half-light radii from the r-band size-luminosity relations of Shen
  et al. (2003, SDSS; their eq. 14-16 and Table 1), with log-normal scatter, evolving as
  ``(1+z)^-1.0`` (red) and ``(1+z)^-0.6`` (blue) after van der Wel et al. (2014). Sersic
  index log-normal around 3.5 (red) and 1.1 (blue); axis ratios from a Beta distribution
  (red) and from randomly inclined thick discs with intrinsic thickness 0.2 (blue).
- **Sky.** The footprint is the Legacy Survey's: |b| > 20 deg; PHOTSYS 'N' at Dec > 32.375
  deg in the northern Galactic cap, 'S' elsewhere. E(B-V) follows a cosecant law in
  Galactic latitude (0.02 / sin|b|) modulated by a smooth random field (deterministic in
  the seed) with log-normal small-scale scatter, median ~0.03 like the SFD map at |b|>20.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from photozsom.sim.bands import LS_GRID_BANDS, SELECTION_BANDS
from photozsom.sim.sed import LINE_TEMPLATE, N_TEMPLATES, SEDGrid, get_star_grid

__all__ = [
    "DEC_NORTH",
    "GALAXY_MODEL",
    "POPULATIONS",
    "STAR_LF",
    "Z_MAX",
    "Z_MIN",
    "Cosmology",
    "LightCone",
    "Schechter",
    "StarCounts",
    "ebv_map",
    "get_star_counts",
    "morphology",
    "photometric_parallax",
    "sed_coefficients",
    "sky_positions",
]

Z_MIN: float = 5e-4
Z_MAX: float = 3.0
#: Strength of the redshift evolution of emission-line equivalent widths of blue galaxies.
LINE_BOOST: float = 0.7
#: Mean extra internal E(B-V) (Calzetti) of a blue galaxy at M_r = -20, face-on.
BLUE_DUST_MEAN: float = 0.05
#: Dec boundary between the BASS/MzLS north and the DECam south (DR9/DR10).
DEC_NORTH: float = 32.375


@dataclass(frozen=True)
class Schechter:
    """Evolving Schechter luminosity function in absolute magnitude.

    Attributes
    ----------
    phi_star : float
        Normalisation at ``z0``, Mpc^-3 mag^-1.
    m_star : float
        Characteristic absolute magnitude at ``z0`` (rest-frame DECam r, AB).
    alpha : float
        Faint-end slope.
    q : float
        Luminosity evolution, mag per unit redshift: ``M*(z) = m_star - q (z - z0)``.
    p : float
        Density evolution: ``phi*(z) = phi_star 10^(0.4 p (z - z0))``.
    z0 : float
        Reference redshift.
    """

    phi_star: float
    m_star: float
    alpha: float
    q: float
    p: float
    z0: float = 0.1

    def __call__(self, mag: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Number density per unit magnitude, Mpc^-3 mag^-1."""
        ms = self.m_star - self.q * (z - self.z0)
        phi = self.phi_star * 10 ** (0.4 * self.p * (z - self.z0))
        x = 10 ** (-0.4 * (mag - ms))
        return 0.4 * np.log(10) * phi * x ** (self.alpha + 1) * np.exp(-x)


#: Red and blue luminosity functions (see the module docstring for sources).
POPULATIONS: dict[str, Schechter] = {
    "red": Schechter(phi_star=3.2e-3, m_star=-21.45, alpha=-0.55, q=1.0, p=-1.2),
    "blue": Schechter(phi_star=5.0e-3, m_star=-21.0, alpha=-1.35, q=1.0, p=-1.2),
}


class Cosmology:
    """Distances and volumes of Planck18 tabulated for fast interpolation.

    Parameters
    ----------
    z_max : float
        Largest redshift tabulated.
    """

    def __init__(self, z_max: float = Z_MAX):
        from astropy.cosmology import Planck18

        self.cosmo = Planck18
        self.z = np.concatenate([[0.0], np.geomspace(1e-5, z_max, 4000)])
        dl = Planck18.luminosity_distance(self.z[1:]).to_value("pc")
        self._dm = np.concatenate([[-np.inf], 5 * np.log10(dl / 10.0)])
        self._da = np.concatenate([[0.0], Planck18.angular_diameter_distance(self.z[1:]).to_value("kpc")])
        self._dvdz = Planck18.differential_comoving_volume(self.z).to_value("Mpc3 / sr")

    def distmod(self, z: np.ndarray) -> np.ndarray:
        """Distance modulus, mag (interpolated in log z)."""
        z = np.clip(np.asarray(z, np.float64), 1e-5, self.z[-1])
        return np.interp(np.log(z), np.log(self.z[1:]), self._dm[1:])

    def kpc_per_arcsec(self, z: np.ndarray) -> np.ndarray:
        """Proper transverse kpc per arcsec."""
        z = np.clip(np.asarray(z, np.float64), 1e-5, self.z[-1])
        return np.interp(np.log(z), np.log(self.z[1:]), self._da[1:]) / 206264.806

    def dvdz(self, z: np.ndarray) -> np.ndarray:
        """Comoving volume per unit redshift per steradian, Mpc^3 sr^-1."""
        return np.interp(z, self.z, self._dvdz)


@functools.lru_cache(maxsize=1)
def _cosmology() -> Cosmology:
    return Cosmology()


class LightCone:
    """Draw (z, M_r, population) of galaxies from the luminosity functions to a flux limit.

    Parameters
    ----------
    grid : SEDGrid
        The template photometry grid (for the K-correction bound).
    populations : dict of Schechter, optional
    m_range : (float, float)
        Brightest and faintest absolute magnitudes simulated.
    """

    def __init__(self, grid: SEDGrid, populations: dict[str, Schechter] | None = None,
                 m_range: tuple[float, float] = (-25.0, -8.0), n_z: int = 1500, dmag: float = 0.05):
        self.grid = grid
        self.pops = dict(POPULATIONS if populations is None else populations)
        self.cosmo = _cosmology()
        self.z_edges = np.geomspace(Z_MIN, min(Z_MAX, grid.z_max), n_z + 1)
        self.zc = 0.5 * (self.z_edges[1:] + self.z_edges[:-1])
        self.dz = np.diff(self.z_edges)
        self.m_edges = np.arange(m_range[0], m_range[1] + 0.5 * dmag, dmag)
        self.mc = 0.5 * (self.m_edges[1:] + self.m_edges[:-1])
        self.dmag = dmag
        self.dm_c = self.cosmo.distmod(self.zc)
        # dN per sr per cell, per population: (P, Z, M)
        vol = self.cosmo.dvdz(self.zc) * self.dz
        self.dens = np.stack([vol[:, None] * lf(self.mc[None, :], self.zc[:, None]) * dmag
                              for lf in self.pops.values()])
        self._kmin = {}
        self._cdfs = {}

    def kmin(self, band: str) -> np.ndarray:
        """Lower bound of the K-correction in ``band`` at the cell redshifts."""
        if band not in self._kmin:
            self._kmin[band] = np.interp(self.zc, self.grid.z, self.grid.kcorr_min(band))
        return self._kmin[band]

    def m_limit(self, limits: dict) -> np.ndarray:
        """Faintest absolute magnitude at each cell redshift that can pass any of ``limits``."""
        mlim = np.full(self.zc.size, -np.inf)
        for band, m in limits.items():
            mlim = np.maximum(mlim, m - self.dm_c - self.kmin(band))
        return mlim + 0.05

    def _cdf(self, key):
        if key in self._cdfs:
            return self._cdfs[key]
        limits, z_range = dict(key[0]), key[1]
        mlim = self.m_limit(limits)
        w = self.dens * (self.m_edges[None, None, :-1] < mlim[None, :, None])
        if z_range is not None:
            w = w * ((self.z_edges[1:] > z_range[0]) & (self.z_edges[:-1] < z_range[1]))[None, :, None]
        flat = w.ravel()
        total = flat.sum()
        if total <= 0:
            raise ValueError(f"no galaxies can pass limits {limits} in z range {z_range}")
        self._cdfs[key] = (np.cumsum(flat) / total, total)
        return self._cdfs[key]

    def expected_per_sr(self, limits: dict, z_range=None) -> float:
        """Expected number of candidate galaxies per steradian for ``limits``."""
        return float(self._cdf(self._key(limits, z_range))[1])

    @staticmethod
    def _key(limits, z_range):
        return (tuple(sorted((str(k), float(v)) for k, v in limits.items())),
                None if z_range is None else (float(z_range[0]), float(z_range[1])))

    def sample(self, rng: np.random.Generator, n: int, limits: dict,
               z_range: tuple[float, float] | None = None) -> dict:
        """Draw ``n`` candidates that may be brighter than ``limits``.

        Parameters
        ----------
        rng : numpy.random.Generator
        n : int
            Number of galaxies.
        limits : dict
            Band name (SED-grid band) -> apparent magnitude limit; a galaxy is a candidate if
            it can be brighter than the limit in *any* band.
        z_range : (float, float), optional
            Restrict the redshift range (a survey's physical volume).

        Returns
        -------
        dict
            ``z`` (N,), ``mag_abs`` (N,) rest-frame DECam r, ``red`` (N,) bool.
        """
        cdf, _ = self._cdf(self._key(limits, z_range))
        idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
        idx = np.minimum(idx, cdf.size - 1)
        n_z, n_m = self.zc.size, self.mc.size
        pop, rem = np.divmod(idx, n_z * n_m)
        iz, im = np.divmod(rem, n_m)
        lo, hi = self.z_edges[iz], self.z_edges[iz + 1]
        z = lo * (hi / lo) ** rng.random(n)
        mag = self.m_edges[im] + self.dmag * rng.random(n)
        names = list(self.pops)
        return {"z": z, "mag_abs": mag, "red": np.asarray([names[p] == "red" for p in range(len(names))])[pop]}


def sed_coefficients(rng: np.random.Generator, grid: SEDGrid, z: np.ndarray, mag_abs: np.ndarray,
                     red: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Template coefficients and internal dust of each galaxy.

    Parameters
    ----------
    rng : numpy.random.Generator
    grid : SEDGrid
    z, mag_abs : ndarray, shape (N,)
        Redshift and rest-frame DECam r absolute magnitude (AB).
    red : ndarray, shape (N,), bool
        Population.
    q : ndarray, shape (N,)
        Axis ratio (for inclination-dependent dust of discs).

    Returns
    -------
    coeffs : ndarray, shape (N, 5)
        Non-negative template coefficients, scaled so that the galaxy has absolute magnitude
        ``mag_abs`` (dust included) at 10 pc in rest-frame DECam r.
    ebv : ndarray, shape (N,)
        Internal E(B-V), mag.
    """
    n = z.size
    lum = np.clip(mag_abs + 21.0, -4.0, 8.0)  # > 0: fainter than -21
    # Dirichlet concentrations of the r-band light fractions [t0, t1, t2, t3, t4]
    a_red = np.empty((n, 5))
    a_red[:, 0] = 0.4 * (1 + z)                        # intermediate-age (0.3-1 Gyr), metal-rich
    a_red[:, 1] = 0.02
    a_red[:, 2] = 0.35 * 10 ** (0.15 * lum) * (1 + z)  # younger populations in faint / distant reds
    a_red[:, 3] = 14.0                                 # old
    a_red[:, 4] = 0.25 * (1 + 2.5 * z)
    a_blue = np.empty((n, 5))
    lum_b = np.clip(mag_abs + 20.0, -5.0, 10.0)
    a_blue[:, 0] = 0.5 * 10 ** (-0.15 * lum_b)
    a_blue[:, 1] = 0.45 * 10 ** (0.12 * lum_b) * (1 + z) ** 1.5   # starbursts: faint, distant
    a_blue[:, 2] = 4.0
    a_blue[:, 3] = 0.7 * 10 ** (-0.2 * lum_b)                    # bulges of bright spirals
    a_blue[:, 4] = 0.8 * (1 + z)
    alpha = np.where(red[:, None], a_red, a_blue)
    gam = rng.standard_gamma(np.clip(alpha, 1e-3, None))
    frac = np.zeros((n, N_TEMPLATES))
    frac[:, :5] = gam / gam.sum(axis=1, keepdims=True)
    # internal dust
    ebv_red = rng.exponential(0.02, n)
    mean_blue = np.clip(BLUE_DUST_MEAN * 10 ** (-0.08 * lum_b), 0.4 * BLUE_DUST_MEAN, 3 * BLUE_DUST_MEAN) + 0.06 * (1 - q)
    ebv_blue = rng.gamma(2.0, mean_blue / 2.0)
    ebv = np.clip(np.where(red, ebv_red, ebv_blue), 0.0, grid.ebv[-1])
    # light fractions -> coefficients (dust-free rest r-band maggies of each template)
    rest = grid.template_maggies(np.zeros(1), np.zeros(1), ["R_S"])[0, :, 0]  # (T,)
    coeffs = frac / rest[None, :]
    # emission-line equivalent widths rise with redshift like the specific star-formation rate
    # (EW ~ (1+z)^2; e.g. Khostovan et al. 2016): extra lines in proportion to template 2
    boost = np.where(red, 0.0, LINE_BOOST * ((1 + z) ** 2 - 1))
    coeffs[:, LINE_TEMPLATE] = coeffs[:, 2] * boost
    # normalise to the absolute magnitude (with dust)
    m_now = grid.maggies(coeffs, np.zeros(n), ebv, ["R_S"])[:, 0]
    coeffs *= (10 ** (-0.4 * mag_abs) / m_now)[:, None]
    return coeffs, ebv


def morphology(rng: np.random.Generator, z: np.ndarray, mag_abs: np.ndarray,
               red: np.ndarray) -> dict:
    """True structural parameters.

    Returns
    -------
    dict
        ``r_half_kpc`` physical half-light radius along the major axis, ``r_half`` the
        same in arcsec, ``sersic`` index, ``q`` axis ratio, ``phi`` position angle (radian).
    """
    n = z.size
    mag = mag_abs
    m0 = -20.52
    # Shen et al. (2003) late-type: log R = -0.4 a M + (b - a) log(1 + 10^(-0.4 (M - M0))) + g
    a_l, b_l, g_l = 0.21, 0.53, -1.31
    log_late = -0.4 * a_l * mag + (b_l - a_l) * np.log10(1 + 10 ** (-0.4 * (mag - m0))) + g_l
    # early-type: log R = -0.4 a M + b  (a = 0.65, b = -5.06); bright end only
    log_early = -0.4 * 0.65 * mag - 5.06
    log_early = np.where(mag < m0, log_early, np.maximum(log_early, log_late - 0.15))
    s1_l, s2_l, s1_e, s2_e = 0.48, 0.25, 0.45, 0.27
    sig_l = s2_l + (s1_l - s2_l) / (1 + 10 ** (-0.8 * (mag - m0)))
    sig_e = s2_e + (s1_e - s2_e) / (1 + 10 ** (-0.8 * (mag - m0)))
    log_r = np.where(red, log_early, log_late)
    sig_ln = np.where(red, sig_e, sig_l)
    evol = np.where(red, -1.0, -0.6) * np.log10(1 + z)
    r_kpc = 10 ** (log_r + evol) * np.exp(sig_ln * rng.standard_normal(n))
    r_kpc = np.clip(r_kpc, 0.05, 60.0)
    sersic = np.where(red, 3.5 * np.exp(0.25 * rng.standard_normal(n)),
                      1.1 * np.exp(0.3 * rng.standard_normal(n)) + 0.25 * np.clip(-20.5 - mag, 0, 4))
    sersic = np.clip(sersic, 0.5, 6.0)
    # axis ratios
    q_red = np.clip(rng.beta(6.0, 2.5, n), 0.25, 1.0)
    cosi = rng.random(n)
    q0 = 0.2
    q_blue = np.sqrt(cosi**2 * (1 - q0**2) + q0**2)
    q = np.where(red, q_red, q_blue)
    phi = rng.uniform(0.0, np.pi, n)
    r_arcsec = r_kpc / _cosmology().kpc_per_arcsec(z)
    return {"r_half_kpc": r_kpc, "r_half": np.clip(r_arcsec, 0.01, 120.0), "sersic": sersic,
            "q": q, "phi": phi}


def _galactic_lat(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic
    return c.l.deg, c.b.deg


def sky_positions(rng: np.random.Generator, photsys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform positions in the Legacy Survey footprint of each region.

    Parameters
    ----------
    rng : numpy.random.Generator
    photsys : ndarray of str, shape (N,)
        'S' or 'N' per object.

    Returns
    -------
    ra, dec, b : ndarray, shape (N,)
        ICRS degrees and Galactic latitude (degrees).
    """
    photsys = np.asarray(photsys)
    n = photsys.size
    ra = np.empty(n)
    dec = np.empty(n)
    bb = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        m = todo.size
        r = rng.uniform(0, 360, 3 * m + 100)
        d = np.degrees(np.arcsin(rng.uniform(-1, 1, 3 * m + 100)))
        _, b = _galactic_lat(r, d)
        ok_s = (np.abs(b) > 20) & (d < DEC_NORTH) & (d > -70)
        ok_n = (b > 20) & (d > DEC_NORTH) & (d < 84)
        for want, ok in (("S", ok_s), ("N", ok_n)):
            need = todo[photsys[todo] == want]
            got = np.flatnonzero(ok)[: need.size]
            ra[need[: got.size]] = r[got]
            dec[need[: got.size]] = d[got]
            bb[need[: got.size]] = b[got]
            done = need[: got.size]
            todo = np.setdiff1d(todo, done, assume_unique=True)
    return ra, dec, bb


def ebv_map(ra: np.ndarray, dec: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """Galactic E(B-V) (SFD-like) at the given positions, deterministic in ``seed``.

    ``E = 0.02 / sin|b| * exp(0.35 G(x) + 0.1 e)`` where G is a smooth unit-variance random
    field on the sphere (30 random plane waves, coherence ~5 deg) and e per-object noise.
    """
    rng = np.random.default_rng([seed, 7])
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    xyz = np.stack([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)], axis=1)
    n_modes = 30
    dirs = rng.standard_normal((n_modes, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    kappa = rng.uniform(5.0, 20.0, n_modes)
    phase = rng.uniform(0, 2 * np.pi, n_modes)
    field = np.sqrt(2.0 / n_modes) * np.cos(xyz @ (dirs * kappa[:, None]).T + phase).sum(axis=1)
    jitter = np.random.default_rng([seed, 8, ra.size]).standard_normal(ra.size)
    ebv = 0.02 / np.sin(np.radians(np.clip(np.abs(b), 5.0, 90.0))) * np.exp(0.35 * field + 0.1 * jitter)
    return np.clip(ebv, 0.002, 0.5)


# ----------------------------------------------------------------------------------------------------
# stars
# ----------------------------------------------------------------------------------------------------
#: Galactic structure of Juric et al. (2008, ApJ 673, 864; binary-corrected fit): the Sun at
#: R = 8 kpc, 25 pc above the plane; thin and thick exponential discs (scale heights H and
#: lengths L in pc, thick/thin local ratio 12%); an oblate power-law halo (0.51% of the local
#: disc density, axis ratio 0.64, index 2.77).
GALAXY_MODEL: dict[str, float] = {
    "R_sun": 8000.0, "Z_sun": 25.0, "H_thin": 300.0, "L_thin": 2600.0, "H_thick": 900.0,
    "L_thick": 3600.0, "f_thick": 0.12, "f_halo": 0.0051, "q_halo": 0.64, "n_halo": 2.77,
}
#: Local luminosity function of main-sequence stars in the thin disc, a broken power law
#: ``log10 Phi(M_r) = a + b (M_r - 4)`` up to the peak at ``M_peak``, falling with slope ``c``
#: beyond [pc^-3 mag^-1]: ~1e-3 at M_r = 4, ~4e-3 at the M-dwarf peak near M_r = 11, ~6e-4 at
#: M7 -- the shape and level of the solar-neighbourhood function (Juric et al. 2008, Fig. 23;
#: Bochanski et al. 2010, AJ 139, 2679) to a factor ~1.5. Entries: (a, b, M_peak, c).
STAR_LF: tuple[float, float, float, float] = (-3.0, 0.085, 11.0, -0.15)
#: Width of the absolute-magnitude bins of the star-count integral, mag.
_DM_STAR: float = 0.15
#: Old populations (thick disc, halo) have no main-sequence stars brighter than the turn-off.
TURNOFF_MR: float = 3.5


def photometric_parallax(ri: np.ndarray) -> np.ndarray:
    """Absolute magnitude M_r of a main-sequence star from its SDSS r-i.

    The "bright" photometric parallax relation of Juric et al. (2008, eq. A7),
    ``M_r = 3.2 + 13.30 x - 11.50 x^2 + 5.40 x^3 - 0.70 x^4`` with ``x = r - i``, valid for
    0.1 < r-i < 1.4. Not used by the simulation (which takes M_r from the dwarf sequence): an
    independent check of it.
    """
    x = np.asarray(ri, np.float64)
    return 3.2 + 13.30 * x - 11.50 * x**2 + 5.40 * x**3 - 0.70 * x**4


class StarCounts:
    """Main-sequence stars of the Milky Way seen through the Legacy Survey footprint.

    Star counts follow from the three-component Galaxy of :data:`GALAXY_MODEL` and the
    luminosity function :data:`STAR_LF`, integrated on a grid of sky directions (the
    footprint, 70% DECam south), distances (10 pc - 200 kpc) and absolute magnitudes. A star's
    temperature and colours follow from its M_r along the mean dwarf sequence
    (:class:`~photozsom.sim.sed.StarGrid`, Pecaut & Mamajek 2013). Giants, white
    dwarfs, metallicity and binaries are not simulated.

    Parameters
    ----------
    star_grid : StarGrid
    n_dir : int
        Number of sky directions of the integration grid (fixed, seed-independent).
    south_fraction : float
        Fraction of the footprint in the DECam south.
    """

    def __init__(self, star_grid, n_dir: int = 400, south_fraction: float = 0.7):
        self.grid = star_grid
        rng = np.random.default_rng(20080201)
        n_s = round(south_fraction * n_dir)
        self.photsys = np.array(["S"] * n_s + ["N"] * (n_dir - n_s))
        self.ra, self.dec, self.b = sky_positions(rng, self.photsys)
        l_deg, _ = _galactic_lat(self.ra, self.dec)
        self.l = l_deg
        self.d_edges = np.geomspace(10.0, 2.0e5, 101)
        dc = np.sqrt(self.d_edges[1:] * self.d_edges[:-1])
        self.dc = dc
        self.m_edges = np.arange(float(self.grid.mr_abs.min()), float(self.grid.mr_abs.max()), _DM_STAR)
        mc = 0.5 * (self.m_edges[1:] + self.m_edges[:-1])
        self.mc = mc
        # densities along each line of sight, relative to the local thin disc: (K, D) per population
        g = GALAXY_MODEL
        lr, br = np.radians(self.l)[:, None], np.radians(self.b)[:, None]
        x = g["R_sun"] - dc[None, :] * np.cos(br) * np.cos(lr)
        y = -dc[None, :] * np.cos(br) * np.sin(lr)
        z = dc[None, :] * np.sin(br) + g["Z_sun"]
        r_cyl = np.hypot(x, y)
        thin = np.exp((g["R_sun"] - r_cyl) / g["L_thin"] - (np.abs(z) - g["Z_sun"]) / g["H_thin"])
        thick = g["f_thick"] * np.exp((g["R_sun"] - r_cyl) / g["L_thick"]
                                      - (np.abs(z) - g["Z_sun"]) / g["H_thick"])
        halo = g["f_halo"] * (g["R_sun"] / np.sqrt(r_cyl**2 + (z / g["q_halo"]) ** 2 + 1.0)) ** g["n_halo"]
        a, b, m_peak, c = STAR_LF
        log_phi = a + b * (np.minimum(mc, m_peak) - 4.0) + c * np.clip(mc - m_peak, 0.0, None)
        phi = 10**log_phi * _DM_STAR  # stars pc^-3 per M bin
        old = mc > TURNOFF_MR
        vol = dc**3 * np.log(self.d_edges[1:] / self.d_edges[:-1])  # pc^3 per sr per bin
        # (K, D, M) stars per steradian in each cell (per direction's share of the sky)
        self.dens = (thin[:, :, None] * phi[None, None, :]
                     + (thick + halo)[:, :, None] * (phi * old)[None, None, :]) * vol[None, :, None]
        self.dm = 5.0 * np.log10(dc / 10.0)
        self.temp_m = self.grid.temp_of_mr(mc)
        self._cdfs = {}

    def _cdf(self, limits: dict):
        key = tuple(sorted((str(k), float(v)) for k, v in limits.items()))
        if key not in self._cdfs:
            bands = list(limits)
            col = self.grid.colours(self.temp_m, bands)  # (M, B)
            ok = np.zeros((self.dc.size, self.mc.size), bool)
            for j, b in enumerate(bands):
                ok |= (self.mc[None, :] + self.dm[:, None] + col[None, :, j]) < limits[b]
            w = (self.dens * ok[None]).ravel()
            total = w.sum() / len(self.photsys)
            self._cdfs[key] = (np.cumsum(w) / w.sum(), total)
        return self._cdfs[key]

    def expected_per_sr(self, limits: dict) -> float:
        """Stars per steradian of the footprint that can be brighter than one of ``limits``."""
        return float(self._cdf(limits)[1])

    def sample(self, rng: np.random.Generator, n: int, limits: dict) -> dict:
        """Draw ``n`` stars that may be brighter than ``limits`` (SED-grid band -> AB mag).

        Returns
        -------
        dict
            A truth table with the keys of a galaxy's (``z`` = 0, ``r_half`` = 0, template
            coefficients 0) plus ``is_star`` True, ``temp`` (K), ``dist_pc``; positions
            ``ra``, ``dec``, ``gal_b`` within ~2 deg of the grid direction drawn; true
            photometry ``flux_ls`` (nanomaggies) and ``mag_sel`` (AB).
        """

        cdf, _ = self._cdf(limits)
        idx = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), cdf.size - 1)
        n_d, n_m = self.dc.size, self.mc.size
        k, rem = np.divmod(idx, n_d * n_m)
        i_d, i_m = np.divmod(rem, n_m)
        lo, hi = self.d_edges[i_d], self.d_edges[i_d + 1]
        dist = lo * (hi / lo) ** rng.random(n)
        mr = self.m_edges[i_m] + _DM_STAR * rng.random(n)
        temp = self.grid.temp_of_mr(mr)
        r_sdss = mr + 5.0 * np.log10(dist / 10.0)
        ls = r_sdss[:, None] + self.grid.colours(temp, LS_GRID_BANDS)
        sel = r_sdss[:, None] + self.grid.colours(temp, SELECTION_BANDS)
        dec = np.clip(self.dec[k] + rng.uniform(-2, 2, n), -89.9, 89.9)
        ra = (self.ra[k] + rng.uniform(-2, 2, n) / np.cos(np.radians(dec))) % 360.0
        zeros = np.zeros(n)
        t = {"z": zeros.copy(), "mag_abs": mr, "red": np.zeros(n, bool), "r_half_kpc": zeros.copy(),
             "r_half": zeros.copy(), "sersic": np.ones(n), "q": np.ones(n), "phi": zeros.copy(),
             "coeffs": np.zeros((n, N_TEMPLATES)), "ebv_int": zeros.copy(), "photsys": self.photsys[k],
             "flux_ls": 10 ** (-0.4 * (ls - 22.5)), "mag_sel": sel, "ra": ra, "dec": dec,
             "gal_b": self.b[k], "is_star": np.ones(n, bool), "temp": temp, "dist_pc": dist}
        for name in ("OII", "HBETA", "OIII", "HALPHA"):
            t[f"line_{name}"] = zeros.copy()
        return t


@functools.lru_cache(maxsize=1)
def get_star_counts() -> StarCounts:
    """The star-count model, built once per process and cached."""

    return StarCounts(get_star_grid())
