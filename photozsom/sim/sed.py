"""Galaxy spectra and synthetic photometry for the simulated sky.

Spectra are non-negative combinations of the five kcorrect v4 templates (Blanton & Roweis
2007, ``kcorrect-default-v4.fits`` shipped with the ``kcorrect`` package). The templates
are Bruzual & Charlot population-synthesis spectra and already carry nebular emission lines
(template 1 is a line-dominated starburst, templates 0 and 2 show [OII], template 3 is an old
population with a strong 4000 A break). On top of them each galaxy gets internal dust with the
Calzetti et al. (2000) attenuation curve, and the observed spectrum is dimmed blueward of
Lyman-alpha by the mean intergalactic transmission of Madau (1995).

Band fluxes go through the real filter curves shipped by ``speclite``: DECam g,r,i,z
(the southern Legacy Survey, ``PHOTSYS='S'``), BASS g,r and MzLS z (the north,
``PHOTSYS='N'``), WISE W1, W2 and, for the spectroscopic selections only, SDSS ugriz,
GALEX FUV/NUV, 2MASS Ks, Bessell B,R,I and CFHT MegaCam i.

speclite is called once per redshift of a grid (:class:`SEDGrid`), for every template and
dust value; a galaxy's photometry is then a vectorised interpolation of that grid
(linear in ``ln(1+z)`` and in E(B-V) of the log flux) followed by the linear combination of
its template coefficients. Fluxes in the grid are AB maggies of the template placed at
10 pc, so ``m = -2.5 log10(maggies) + DM(z)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "GRID_FILTERS",
    "LINES",
    "LINE_TEMPLATE",
    "N_TEMPLATES",
    "SEDGrid",
    "StarGrid",
    "calzetti_k",
    "get_grid",
    "get_star_grid",
    "juric_locus_gr",
    "line_strengths",
    "load_templates",
    "madau_transmission",
    "template_path",
]

#: Number of spectral components: the five kcorrect templates and one emission-line spectrum.
N_TEMPLATES: int = 6
#: Index of the emission-line component (the continuum-subtracted lines of kcorrect template 2).
LINE_TEMPLATE: int = 5
#: Rest wavelengths (A) around which the line component keeps the template's emission.
_LINE_CENTRES = (1215.7, 3727.1, 3729.9, 3869.8, 4102.9, 4341.7, 4862.7, 4960.3, 5008.2, 6549.9,
                 6564.6, 6585.3, 6718.3, 6732.7, 9071.1, 9533.2)

#: Grid band name -> speclite filter name. ``*_S``: DECam (south); ``*_N``: BASS/MzLS (north).
GRID_FILTERS: dict[str, str] = {
    "G_S": "decam2014-g",
    "R_S": "decam2014-r",
    "I_S": "decam2014-i",
    "Z_S": "decam2014-z",
    "G_N": "BASS-g",
    "R_N": "BASS-r",
    "Z_N": "MzLS-z",
    "W1": "wise2010-W1",
    "W2": "wise2010-W2",
    # bands used only by the spectroscopic target selections (their own imaging)
    "u_sdss": "sdss2010-u",
    "g_sdss": "sdss2010-g",
    "r_sdss": "sdss2010-r",
    "i_sdss": "sdss2010-i",
    "z_sdss": "sdss2010-z",
    "FUV": "galex-fuv",
    "NUV": "galex-nuv",
    "Ks": "twomass-Ks",
    "B": "bessell-B",
    "R": "bessell-R",
    "I": "bessell-I",
    "i_cfht": "cfht_megacam-i",
}

#: Emission lines measured from the templates: name -> (rest wavelength, integration half-width), A.
LINES: dict[str, tuple[float, float]] = {
    "OII": (3728.0, 12.0),
    "HBETA": (4862.7, 10.0),
    "OIII": (5008.2, 10.0),
    "HALPHA": (6564.6, 14.0),
}

_TEMPLATE_FILE = "kcorrect-default-v4.fits"


def template_path() -> Path:
    """Path of the kcorrect v4 default templates inside the installed ``kcorrect`` package."""
    import kcorrect

    path = Path(kcorrect.__file__).parent / "data" / "templates" / _TEMPLATE_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"kcorrect templates not found at {path}; install the 'kcorrect' package (pip install kcorrect)"
        )
    return path


@functools.lru_cache(maxsize=1)
def load_templates() -> tuple[np.ndarray, np.ndarray]:
    """Rest-frame wavelengths and fluxes of the spectral components.

    Components 0-4 are the kcorrect v4 templates as shipped. Component 5
    (:data:`LINE_TEMPLATE`) holds only the nebular emission lines of template 2 (its
    continuum removed with a running median), so that a galaxy's line equivalent widths can
    grow with redshift like its specific star-formation rate (see
    :func:`photozsom.sim.population.sed_coefficients`).

    Returns
    -------
    wave : ndarray, shape (L,)
        Rest-frame wavelength, Angstrom (600 A to 320 micron).
    flux : ndarray, shape (6, L)
        Flux density f_lambda, erg s^-1 cm^-2 A^-1 (per unit stellar mass at 10 pc in
        kcorrect's normalisation; only ratios matter here).
    """
    from astropy.io import fits
    from scipy.ndimage import median_filter

    with fits.open(template_path()) as hdul:
        wave = np.asarray(hdul["FLUX"].data["wave"][0], dtype=np.float64)
        flux = np.asarray(hdul["FLUX"].data["flux"][0], dtype=np.float64)
    if flux.shape != (5, wave.size):
        raise ValueError(f"unexpected template shape {flux.shape} in {_TEMPLATE_FILE}")
    # emission lines of template 2: spectrum minus a running median (~+-60 A at 5000 A),
    # kept within +-15 A (x lambda/5000) of the strong nebular lines
    cont = median_filter(flux[2], size=81, mode="nearest")
    lines = np.clip(flux[2] - cont, 0.0, None)
    near = np.zeros(wave.size, bool)
    for lam in _LINE_CENTRES:
        near |= np.abs(wave - lam) < 15.0 * lam / 5000.0
    lines[~near] = 0.0
    return wave, np.vstack([flux, lines])


def calzetti_k(wave: np.ndarray) -> np.ndarray:
    """Calzetti et al. (2000) starburst attenuation curve k(lambda) = A_lambda / E_s(B-V).

    Parameters
    ----------
    wave : ndarray
        Rest-frame wavelength, Angstrom.

    Returns
    -------
    ndarray
        k(lambda) with R_V = 4.05; extrapolated linearly in 1/lambda below 1200 A and
        above 2.2 micron (clipped at zero).
    """
    lam = np.asarray(wave, dtype=np.float64) / 1e4  # micron
    x = 1.0 / np.clip(lam, 0.09, None)
    blue = 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + 4.05
    red = 2.659 * (-1.857 + 1.040 * x) + 4.05
    k = np.where(lam < 0.63, blue, red)
    # linear extrapolation below 0.12 micron, continuing the slope at 0.12
    x12 = 1 / 0.12
    k12 = 2.659 * (-2.156 + 1.509 * x12 - 0.198 * x12**2 + 0.011 * x12**3) + 4.05
    slope = 2.659 * (1.509 - 2 * 0.198 * x12 + 3 * 0.011 * x12**2)
    k = np.where(lam < 0.12, k12 + slope * (x - x12), k)
    return np.clip(k, 0.0, None)


def madau_transmission(wave_obs: np.ndarray, z: float) -> np.ndarray:
    """Mean intergalactic transmission of Madau (1995) (Lyman series + Lyman continuum).

    Parameters
    ----------
    wave_obs : ndarray
        Observed-frame wavelength, Angstrom.
    z : float
        Source redshift.

    Returns
    -------
    ndarray
        Transmission in [0, 1].
    """
    lam = np.asarray(wave_obs, dtype=np.float64)
    tau = np.zeros_like(lam)
    series = ((1215.67, 3.6e-3), (1025.72, 1.7e-3), (972.54, 1.2e-3), (949.74, 9.3e-4))
    for lam_j, a_j in series:
        hit = lam < lam_j * (1 + z)
        tau[hit] += a_j * (lam[hit] / lam_j) ** 3.46
    # Lyman continuum: essentially opaque for the redshifts simulated (z <= 3)
    tau[lam < 911.75 * (1 + z)] += 3.0
    return np.exp(-tau)


def line_strengths(wave: np.ndarray, flux: np.ndarray) -> dict[str, np.ndarray]:
    """Continuum-subtracted emission-line fluxes of each template.

    Parameters
    ----------
    wave : ndarray, shape (L,)
        Rest wavelength, Angstrom.
    flux : ndarray, shape (T, L)
        Template f_lambda.

    Returns
    -------
    dict
        Line name (:data:`LINES`) -> ndarray (T,) of integrated line flux in the template's
        units times Angstrom (>= 0). The continuum is a straight line through the median
        flux in two side bands just outside the integration window.
    """
    out = {}
    for name, (lam0, hw) in LINES.items():
        inner = (wave > lam0 - hw) & (wave < lam0 + hw)
        left = (wave > lam0 - 3 * hw) & (wave < lam0 - 1.5 * hw)
        right = (wave > lam0 + 1.5 * hw) & (wave < lam0 + 3 * hw)
        cl = np.median(flux[:, left], axis=1)
        cr = np.median(flux[:, right], axis=1)
        wl, wr = np.median(wave[left]), np.median(wave[right])
        cont = cl[:, None] + (cr - cl)[:, None] * (wave[inner] - wl) / (wr - wl)
        excess = flux[:, inner] - cont
        out[name] = np.clip(np.trapezoid(excess, wave[inner], axis=1), 0.0, None)
    return out


@dataclass
class SEDGrid:
    """Template band fluxes tabulated against redshift and internal dust.

    Attributes
    ----------
    lnz1 : ndarray, shape (Z,)
        Grid of ``ln(1 + z)``, uniform from 0.
    ebv : ndarray, shape (D,)
        Grid of internal E(B-V), mag (Calzetti), uniform from 0.
    bands : list of str
        Band names (keys of :data:`GRID_FILTERS`).
    logflux : ndarray, shape (T, D, Z, B)
        Natural log of the AB maggies of each template, attenuated by dust ``ebv``, placed at
        redshift ``z`` and 10 pc (no distance dimming): ``m = -2.5 log10(exp(logflux)) + DM``.
    lines : dict of str -> ndarray (T,)
        Emission-line fluxes of each template at 10 pc, erg s^-1 cm^-2, before dust.
    line_k : dict of str -> float
        Calzetti k(lambda) at each line.
    """

    lnz1: np.ndarray
    ebv: np.ndarray
    bands: list
    logflux: np.ndarray
    lines: dict
    line_k: dict

    @property
    def z(self) -> np.ndarray:
        """Redshift grid, shape (Z,)."""
        return np.expm1(self.lnz1)

    @property
    def z_max(self) -> float:
        return float(self.z[-1])

    def band_index(self, bands) -> np.ndarray:
        """Indices of ``bands`` in the grid; ValueError naming an unknown band."""
        idx = []
        for b in bands:
            if b not in self.bands:
                raise ValueError(f"unknown band {b!r}; the SED grid has {self.bands}")
            idx.append(self.bands.index(b))
        return np.asarray(idx, dtype=np.intp)

    @classmethod
    def build(cls, z_max: float = 3.0, dlnz: float = 0.005, ebv_max: float = 0.8,
              debv: float = 0.05) -> SEDGrid:
        """Compute the grid with speclite (a few seconds).

        Parameters
        ----------
        z_max : float
            Largest redshift.
        dlnz : float
            Step in ``ln(1+z)``.
        ebv_max, debv : float
            Range and step of the internal E(B-V) grid, mag.
        """
        import speclite.filters

        wave, flux = load_templates()
        # Zero flux below the template range (physically: the Lyman continuum is absorbed)
        wave = np.concatenate([[1.0, wave[0] - 1.0], wave])
        flux = np.concatenate([np.zeros((N_TEMPLATES, 2)), flux], axis=1)
        bands = list(GRID_FILTERS)
        filters = speclite.filters.load_filters(*[GRID_FILTERS[b] for b in bands])
        names = [GRID_FILTERS[b] for b in bands]
        lnz1 = np.arange(0.0, np.log1p(z_max) + 0.5 * dlnz, dlnz)
        ebv = np.arange(0.0, ebv_max + 0.5 * debv, debv)
        kcal = calzetti_k(wave)
        # spectra[t, d, lambda]
        spectra = flux[:, None, :] * 10.0 ** (-0.4 * kcal[None, None, :] * ebv[None, :, None])
        spectra = spectra.reshape(-1, wave.size)
        logflux = np.empty((N_TEMPLATES * ebv.size, lnz1.size, len(bands)))
        for iz, u in enumerate(lnz1):
            z = np.expm1(u)
            obs = wave * (1 + z)
            spec = spectra * (madau_transmission(obs, z) / (1 + z))[None, :]
            table = filters.get_ab_maggies(spec, obs)
            for ib, name in enumerate(names):
                logflux[:, iz, ib] = np.log(np.clip(np.asarray(table[name], float), 1e-300, None))
        logflux = logflux.reshape(N_TEMPLATES, ebv.size, lnz1.size, len(bands))
        raw = line_strengths(wave, flux)
        lines = {k: v for k, v in raw.items()}
        line_k = {k: float(calzetti_k(np.array([LINES[k][0]]))[0]) for k in LINES}
        return cls(lnz1=lnz1, ebv=ebv, bands=bands, logflux=logflux.astype(np.float64),
                   lines=lines, line_k=line_k)

    # -- interpolation ---------------------------------------------------------------------
    def _weights(self, z: np.ndarray, ebv: np.ndarray):
        u = np.log1p(np.clip(np.asarray(z, np.float64), 0.0, self.z_max))
        fu = u / (self.lnz1[1] - self.lnz1[0])
        iz = np.clip(np.floor(fu).astype(np.intp), 0, self.lnz1.size - 2)
        wz = np.clip(fu - iz, 0.0, 1.0)
        e = np.clip(np.asarray(ebv, np.float64), 0.0, self.ebv[-1])
        fe = e / (self.ebv[1] - self.ebv[0])
        ie = np.clip(np.floor(fe).astype(np.intp), 0, self.ebv.size - 2)
        we = np.clip(fe - ie, 0.0, 1.0)
        return iz, wz, ie, we

    def template_maggies(self, z: np.ndarray, ebv: np.ndarray, bands) -> np.ndarray:
        """Band maggies of each template for each galaxy (at 10 pc).

        Parameters
        ----------
        z : ndarray, shape (N,)
            Redshift (clipped to the grid).
        ebv : ndarray, shape (N,)
            Internal E(B-V), mag.
        bands : sequence of str
            Band names.

        Returns
        -------
        ndarray, shape (N, T, B)
            AB maggies at 10 pc, interpolated bilinearly in (ln(1+z), E(B-V)) in log flux.
        """
        ib = self.band_index(bands)
        iz, wz, ie, we = self._weights(z, ebv)
        lf = self.logflux[:, :, :, ib]  # (T, D, Z, B)
        # gather the four corners -> (N, T, B)
        c00 = lf[:, ie, iz, :]
        c01 = lf[:, ie, iz + 1, :]
        c10 = lf[:, ie + 1, iz, :]
        c11 = lf[:, ie + 1, iz + 1, :]
        wz_ = wz[None, :, None]
        we_ = we[None, :, None]
        val = (1 - we_) * ((1 - wz_) * c00 + wz_ * c01) + we_ * ((1 - wz_) * c10 + wz_ * c11)
        return np.exp(np.moveaxis(val, 0, 1))

    def maggies(self, coeffs: np.ndarray, z: np.ndarray, ebv: np.ndarray, bands) -> np.ndarray:
        """Band maggies at 10 pc of galaxies with template ``coeffs``.

        Parameters
        ----------
        coeffs : ndarray, shape (N, T)
            Non-negative template coefficients.
        z, ebv : ndarray, shape (N,)
            Redshift and internal E(B-V).
        bands : sequence of str

        Returns
        -------
        ndarray, shape (N, B)
        """
        coeffs = np.asarray(coeffs, np.float64)
        if np.any(coeffs < 0):
            raise ValueError("template coefficients must be non-negative")
        return np.einsum("nt,ntb->nb", coeffs, self.template_maggies(z, ebv, bands))

    def line_fluxes(self, coeffs: np.ndarray, ebv: np.ndarray, gas_factor: float = 1.0) -> dict:
        """Emission-line fluxes at 10 pc after internal dust, erg s^-1 cm^-2.

        The templates already carry the dust of the galaxies they were fitted to; the extra
        internal E(B-V) attenuates lines and continuum alike unless ``gas_factor`` (the
        nebular-to-stellar reddening ratio; 1/0.44 in Calzetti 2000) says otherwise.
        """
        coeffs = np.asarray(coeffs, np.float64)
        ebv = np.asarray(ebv, np.float64)
        return {k: (coeffs @ v) * 10.0 ** (-0.4 * self.line_k[k] * gas_factor * ebv)
                for k, v in self.lines.items()}

    def kcorr_min(self, band: str, rest_band: str = "R_S") -> np.ndarray:
        """Smallest K-correction over templates and dust at each grid redshift.

        ``K = m_band(z) - M_rest - DM(z)``; any non-negative template mixture with any dust on
        the grid has ``K >= kcorr_min`` (the mixture's flux ratio is a weighted mean of the
        templates' ratios). Used to bound absolute magnitudes when sampling to a flux limit.

        Returns
        -------
        ndarray, shape (Z,)
        """
        ib = self.band_index([band])[0]
        ir = self.band_index([rest_band])[0]
        cont = [t for t in range(N_TEMPLATES) if t != LINE_TEMPLATE]  # lines never come alone
        k = -2.5 / np.log(10) * (self.logflux[cont, :, :, ib] - self.logflux[cont, :, :1, ir])
        return k.min(axis=(0, 1))


@functools.lru_cache(maxsize=2)
def get_grid(z_max: float = 3.0, dlnz: float = 0.005) -> SEDGrid:
    """The SED grid, built once per process (a few seconds) and cached."""
    return SEDGrid.build(z_max=z_max, dlnz=dlnz)


# ----------------------------------------------------------------------------------------------------
# stars
# ----------------------------------------------------------------------------------------------------
#: The mean main-sequence (dwarf) sequence of Pecaut & Mamajek (2013, ApJS 208, 9; Mamajek's
#: table version 2022.04.16 as shipped by the MeanStars package), A0V to M7V. Columns: Teff [K],
#: M_V, B-V, V-Rc, V-Ic, V-Ks, Ks-W1, W1-W2 (Vega; NaN where the table has none).
DWARF_SEQUENCE: np.ndarray = np.array([
    # Teff    M_V    B-V    V-Rc   V-Ic   V-Ks   Ks-W1   W1-W2
    [9700.0, 0.99, 0.000, 0.001, 0.004, 0.041, 0.042, -0.041],   # A0V
    [8100.0, 2.01, 0.160, 0.089, 0.186, 0.403, 0.046, -0.030],   # A5V
    [7220.0, 2.57, 0.295, 0.166, 0.339, 0.734, 0.049, -0.026],   # F0V
    [6550.0, 3.37, 0.440, 0.252, 0.506, 1.079, 0.052, -0.030],   # F5V
    [5930.0, 4.48, 0.595, 0.341, 0.673, 1.437, 0.058, -0.043],   # G0V
    [5660.0, 4.98, 0.680, 0.377, 0.738, 1.635, 0.062, -0.052],   # G5V
    [5270.0, 5.78, 0.816, 0.443, 0.853, 1.953, 0.070, -0.063],   # K0V
    [5100.0, 6.07, 0.884, 0.482, 0.920, 2.130, 0.073, -0.068],   # K2V
    [4600.0, 6.98, 1.090, 0.635, 1.182, 2.700, 0.087, -0.072],   # K4V
    [4440.0, 7.28, 1.150, 0.685, 1.272, 2.880, 0.092, -0.073],   # K5V
    [4100.0, 8.16, 1.340, 0.802, 1.519, 3.350, 0.110, np.nan],   # K7V
    [3850.0, 8.80, 1.420, 0.889, 1.766, 3.650, 0.120, np.nan],   # M0V
    [3660.0, 9.64, 1.485, 0.956, 2.005, 4.000, 0.130, np.nan],   # M1V
    [3560.0, 10.21, 1.505, 1.001, 2.173, 4.230, 0.140, np.nan],  # M2V
    [3430.0, 11.15, 1.530, 1.079, 2.420, 4.600, 0.150, np.nan],  # M3V
    [3210.0, 12.61, 1.650, 1.241, 2.831, 5.250, 0.180, np.nan],  # M4V
    [3060.0, 14.15, 1.830, 1.446, 3.278, 5.950, 0.210, 0.170],   # M5V
    [2810.0, 16.32, 2.010, 1.950, 4.100, 7.100, 0.225, 0.210],   # M6V
    [2680.0, 17.70, 2.120, 2.180, 4.500, 8.000, 0.240, 0.240],   # M7V
])
#: AB - Vega offsets of the anchor bands: Bessell B, V, R, Cousins I, 2MASS Ks (Blanton & Roweis
#: 2007, AJ 133, 734, Table 1) and WISE W1, W2 (Jarrett et al. 2011, ApJ 735, 112).
VEGA_TO_AB: dict[str, float] = {"B": -0.09, "V": 0.02, "R": 0.21, "I": 0.45, "Ks": 1.85, "W1": 2.699,
                                 "W2": 3.339}
_ANCHOR_FILTERS = {"B": "bessell-B", "V": "bessell-V", "R": "bessell-R", "I": "bessell-I", "Ks": "twomass-Ks",
                   "W1": "wise2010-W1", "W2": "wise2010-W2"}


def _ab_weights(filters, wave: np.ndarray) -> np.ndarray:
    """Matrix W (L, F) such that ``f_lambda @ W`` are AB maggies (f_lambda in erg/s/cm^2/A)."""
    dl = np.gradient(wave)
    out = np.empty((wave.size, len(filters)))
    for j, f in enumerate(filters):
        resp = np.interp(wave, f.wavelength, f.response, left=0.0, right=0.0)
        num = resp * wave * dl
        den = np.sum(resp * 3631e-23 * 2.99792458e18 / wave * dl)
        out[:, j] = num / den
    return out


def juric_locus_gr(ri: np.ndarray) -> np.ndarray:
    """SDSS g-r of the median stellar locus at SDSS r-i (Juric et al. 2008, ApJ 673, 864, eq. 2).

    ``g - r = 1.39 (1 - exp(-4.9 x^3 - 2.45 x^2 - 1.68 x - 0.050))`` with ``x = r - i``.
    """
    x = np.asarray(ri, np.float64)
    return 1.39 * (1.0 - np.exp(-4.9 * x**3 - 2.45 * x**2 - 1.68 * x - 0.050))


def _dwarf_anchors(temp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """M_V (Vega) and AB magnitudes minus V_AB in the anchor bands at temperatures ``temp``."""
    seq = DWARF_SEQUENCE[np.argsort(DWARF_SEQUENCE[:, 0])]
    lt = np.log(seq[:, 0])
    cols = []
    for j in range(1, seq.shape[1]):
        ok = np.isfinite(seq[:, j])
        cols.append(np.interp(np.log(temp), lt[ok], seq[ok, j]))
    mv, bv, vr, vi, vk, kw1, w12 = cols
    vega = {"B": bv, "V": np.zeros_like(mv), "R": -vr, "I": -vi, "Ks": -vk, "W1": -vk - kw1, "W2": -vk - kw1 - w12}
    rel = np.stack([vega[b] + VEGA_TO_AB[b] - VEGA_TO_AB["V"] for b in _ANCHOR_FILTERS], axis=1)
    return mv, rel


@dataclass
class StarGrid:
    """Colours and luminosities of main-sequence stars against effective temperature.

    Model: at each temperature, a Planck spectrum warped (by a smooth function of log
    wavelength through the Bessell B, V, R, Cousins I, 2MASS Ks and WISE W1, W2 bands) until its
    colours equal the mean dwarf sequence of Pecaut & Mamajek (2013) (:data:`DWARF_SEQUENCE`);
    absolute magnitudes from the same table's M_V. All other bands (DECam, BASS, MzLS, SDSS,
    GALEX, ...) are integrated over the warped spectrum through speclite's filter curves, so that colours between
    anchors (g, r, z) are interpolations of the real spectral energy distribution.

    Attributes
    ----------
    temp : ndarray, shape (T,)
        Effective temperature, K (log-spaced from M7V to A0V).
    bands : list of str
        Band names (keys of :data:`GRID_FILTERS`).
    colour : ndarray, shape (T, B)
        ``m_band - m_r(SDSS)``, AB mag.
    mr_abs : ndarray, shape (T,)
        Absolute SDSS r magnitude, AB (increasing as the temperature falls).
    """

    temp: np.ndarray
    bands: list
    colour: np.ndarray
    mr_abs: np.ndarray

    @classmethod
    def build(cls, n_temp: int = 80, n_iter: int = 4) -> StarGrid:
        import speclite.filters

        bands = list(GRID_FILTERS)
        names = [GRID_FILTERS[b] for b in bands]
        wave = np.geomspace(900.0, 1.2e5, 4000)  # Angstrom: GALEX FUV to WISE W2
        w_bands = _ab_weights(speclite.filters.load_filters(*names), wave)
        anchor_filters = speclite.filters.load_filters(*_ANCHOR_FILTERS.values())
        w_anchor = _ab_weights(anchor_filters, wave)
        lam_anchor = np.log(np.array([f.effective_wavelength.value for f in anchor_filters]))
        temp = np.geomspace(DWARF_SEQUENCE[:, 0].min(), DWARF_SEQUENCE[:, 0].max(), n_temp)
        mv, target = _dwarf_anchors(temp)
        planck = wave[None, :] ** -5 / np.expm1(1.438777e8 / (wave[None, :] * temp[:, None]))
        planck = planck / planck.max(axis=1, keepdims=True) * 1e-15
        delta = np.zeros((n_temp, lam_anchor.size))  # magnitude warp at each anchor

        def spectra(d):
            warp = np.stack([np.interp(np.log(wave), lam_anchor, row) for row in d])
            return planck * 10 ** (-0.4 * warp)

        def anchor_mags(spec):
            m = -2.5 * np.log10(spec @ w_anchor)
            return m - m[:, 1:2]  # relative to V

        for _ in range(n_iter):
            delta += target - anchor_mags(spectra(delta))
            delta -= delta[:, 1:2]
        spec = spectra(delta)
        mag = -2.5 * np.log10(spec @ w_bands)
        v_ab = -2.5 * np.log10(spec @ w_anchor[:, 1])
        ir = bands.index("r_sdss")
        mr_abs = mv + VEGA_TO_AB["V"] + (mag[:, ir] - v_ab)
        return cls(temp=temp, bands=bands, colour=mag - mag[:, ir:ir + 1], mr_abs=mr_abs)

    def colours(self, temp: np.ndarray, bands) -> np.ndarray:
        """``m_band - m_r(SDSS)`` of stars at temperatures ``temp``, shape (N, len(bands))."""
        t = np.clip(np.asarray(temp, np.float64), self.temp[0], self.temp[-1])
        out = np.empty((t.size, len(bands)))
        lt = np.log(self.temp)
        for j, b in enumerate(bands):
            if b not in self.bands:
                raise ValueError(f"unknown band {b!r}; the star grid has {self.bands}")
            out[:, j] = np.interp(np.log(t), lt, self.colour[:, self.bands.index(b)])
        return out

    def temp_of_mr(self, mr: np.ndarray) -> np.ndarray:
        """Temperature of the main-sequence star of absolute SDSS r magnitude ``mr``, K."""
        order = np.argsort(self.mr_abs)
        return np.exp(np.interp(mr, self.mr_abs[order], np.log(self.temp)[order]))


@functools.lru_cache(maxsize=1)
def get_star_grid() -> StarGrid:
    """The stellar colour grid, built once per process and cached."""
    return StarGrid.build()
