"""The 20 spectroscopic surveys of the paper's appendix C, as target selections on the mock sky.

:data:`SURVEYS` is the one table: for each survey (and sub-programme) its selection rule in
words and as code, its share of the compilation, the parent magnitude limit used to draw
candidates, the redshift success model, the rate of wrong redshifts, the redshift error and
the reference the rule comes from.

The paper (appendix C) names 18 surveys: 2dF, 6dF, DESI DR1, ELVES, GAMA, HectoMAP,
HETDEX, LAMOST, OzDES, PRIMUS, SAGA, SDSS, SMUDGes, VIPERS, WiggleZ, DEEP2, DEEP3 and VVDS;
it counts 20. The two added here to make 20 are **our assumption**: zCOSMOS-bright and 2MRS,
both common in photo-z training compilations and with simple published selections.

Conventions
-----------
- Selections use each survey's *own* photometry, modelled as the galaxy's true,
  extinction-corrected magnitude in the survey's filter (SDSS ugriz, Bessell B R I for
  DEEP2's CFHT12K BRI, CFHT i, GALEX, 2MASS Ks) plus Gaussian photometric noise. DESI and
  eBOSS-ELG select on the Legacy Survey catalogue itself (noisy, blended, dereddened
  ``FLUX/MW_TRANSMISSION`` and the fibre fluxes), as the real targeting does.
- Redshift success is a probability from the spectrum's features: continuum S/N (a
  magnitude-dependent sigmoid) and emission lines (the line fluxes of the template mixture,
  observable only where the line falls inside the spectrograph's wavelength range).
  Failures are dropped, as a compilation keeps only secure redshifts.
- Wrong redshifts happen at the survey's published catastrophic rate (order of magnitude
  from the quality-flag reliability of each survey) by line confusion ([OII], Hbeta, [OIII],
  Halpha, Lyalpha swapped) or, for low-resolution / low-S/N surveys, a random template
  match. A further, physical, source of wrong redshifts is blending: when a neighbour inside
  the fibre outshines the target, the spectrum gives the neighbour's redshift.
- The compilation keeps ``0 < Z < 1.6``, the paper's redshift range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from photozsom.sim.bands import LS_GRID_BANDS, SELECTION_BANDS

__all__ = ["LINE_WAVELENGTHS", "SURVEYS", "Survey", "Targets", "assign_redshifts", "survey_table"]

C_KMS = 299792.458
#: Rest wavelengths (A) of the lines used for redshift measurement and confusion.
LINE_WAVELENGTHS = {"LYA": 1215.67, "OII": 3728.0, "HBETA": 4862.7, "OIII": 5008.2, "HALPHA": 6564.6}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


class Targets:
    """What a target selection can see of a batch of candidate galaxies.

    Parameters
    ----------
    t : dict
        Truth table with photometry (``flux_ls``, ``mag_sel``, ``line_*``, ``z``, shapes).
    cat : dict
        Legacy Survey catalogue columns of the same objects.
    rng : numpy.random.Generator
        For each survey's photometric noise.
    """

    def __init__(self, t: dict, cat: dict, rng: np.random.Generator):

        self.t, self.cat, self.rng = t, cat, rng
        self._ls_grid = LS_GRID_BANDS
        self._sel = SELECTION_BANDS
        self.z = t["z"]
        self.n = t["z"].size
        self.photsys = np.asarray(t["photsys"])
        self.r_half = t["r_half"]
        self.q = t["q"]

    def true(self, band: str) -> np.ndarray:
        """True AB magnitude (no Galactic extinction) in an SED-grid band."""
        if band in self._sel:
            return self.t["mag_sel"][:, self._sel.index(band)]
        f = self.t["flux_ls"][:, self._ls_grid.index(band)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return 22.5 - 2.5 * np.log10(f)

    def own(self, band: str, sigma: float = 0.03) -> np.ndarray:
        """The survey's own (extinction-corrected) photometry: true magnitude + noise."""
        return self.true(band) + sigma * self.rng.standard_normal(self.n)

    def ls(self, band: str) -> np.ndarray:
        """Legacy Survey catalogue magnitude, extinction-corrected (NaN for flux <= 0)."""
        f = self.cat[f"FLUX_{band}"] / self.cat[f"MW_TRANSMISSION_{band}"]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(f > 0, 22.5 - 2.5 * np.log10(f), np.nan)

    def fib(self, band: str) -> np.ndarray:
        """Legacy Survey fibre magnitude (1.5" diameter, 1" seeing), extinction-corrected."""
        f = self.cat[f"FIBERFLUX_{band}"] / self.cat[f"MW_TRANSMISSION_{band}"]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(f > 0, 22.5 - 2.5 * np.log10(f), np.nan)

    def line(self, name: str) -> np.ndarray:
        """Observed emission-line flux, erg s^-1 cm^-2 (after internal dust)."""
        if name == "LYA":  # intrinsic Lya/Halpha = 8.7 (case B) times an escape fraction of 10%
            return 0.87 * self.t["line_HALPHA"]
        return self.t[f"line_{name}"]

    def mu_mean(self, band: str) -> np.ndarray:
        """Mean surface brightness within the half-light ellipse, mag arcsec^-2."""
        return self.true(band) + 2.5 * np.log10(2 * np.pi * self.r_half**2 * self.q)

    def in_window(self, name: str, lo: float, hi: float) -> np.ndarray:
        """Whether a line is observed between ``lo`` and ``hi`` Angstrom."""
        lam = LINE_WAVELENGTHS[name] * (1 + self.z)
        return (lam > lo) & (lam < hi)

    def p_lines(self, lo: float, hi: float, threshold: float, pmax: float = 0.97,
                lines=("OII", "HBETA", "OIII", "HALPHA")) -> np.ndarray:
        """Probability of a redshift from emission lines inside [lo, hi] A above ``threshold``."""
        p_fail = np.ones(self.n)
        for name in lines:
            f = np.clip(self.line(name), 1e-30, None)
            p = pmax * _sigmoid((np.log10(f) - np.log10(threshold)) / 0.12) * self.in_window(name, lo, hi)
            p_fail *= 1 - p
        return 1 - p_fail

    def p_continuum(self, mag: np.ndarray, m_half: float, pmax: float = 0.99, width: float = 0.25,
                    hi: float = 1e9) -> np.ndarray:
        """Probability of an absorption-line redshift: sigmoid in magnitude; needs the 4000 A
        break (Ca H&K) below ``hi`` Angstrom."""
        ok = 3950.0 * (1 + self.z) < hi
        return pmax * _sigmoid((m_half - mag) / width) * ok


@dataclass(frozen=True)
class Survey:
    """One spectroscopic survey (or programme) of the compilation.

    Attributes
    ----------
    name : str
        Value of the ``SURVEY`` column.
    program : str
        Value of the ``PROGRAM`` column (sub-sample).
    share : float
        Fraction of the spectroscopic compilation (relative sizes; DESI and SDSS dominate).
    rule : str
        The selection, in words.
    select : callable
        ``Targets -> bool array``.
    success : callable
        ``Targets -> probability array`` of a secure redshift.
    prelimit : dict
        Band -> magnitude: the parent catalogue drawn for this survey contains every galaxy
        that can be brighter than one of these (a superset of the selection).
    south_fraction : float
        Fraction of the survey's galaxies in the DECam (``PHOTSYS='S'``) footprint.
    wrong_rate : float
        Rate of catastrophically wrong redshifts among secure ones.
    wrong_kind : str
        ``"lines"`` (line confusion) or ``"random"`` (template mismatch) or ``"lya"``.
    sigma_v : float
        Redshift error, km/s (``Z_ERR = sigma_v / c (1 + z)``); PRIMUS uses 0.005(1+z).
    source : str
        Reference for the rule.
    z_range : tuple, optional
        Physical volume of the survey (distance-limited surveys and host-centred fields).
    """

    name: str
    program: str
    share: float
    rule: str
    select: Callable
    success: Callable
    prelimit: dict
    south_fraction: float
    wrong_rate: float
    wrong_kind: str
    sigma_v: float
    source: str
    z_range: tuple[float, float] | None = None
    zerr_frac: float = 0.0
    meta: dict = field(default_factory=dict)


# -- selections ---------------------------------------------------------------------------------
def _petro_offset(T: Targets) -> np.ndarray:
    # SDSS Petrosian magnitudes miss ~20% of a de Vaucouleurs galaxy's light, ~2% of an exponential
    return np.where(T.t["sersic"] > 2.5, 0.2, 0.02)


def _sdss_mgs(T):
    r = T.own("r_sdss") + _petro_offset(T)
    return (r < 17.77) & (T.mu_mean("r_sdss") < 24.5)


def _boss(T):
    g, r, i = T.own("g_sdss"), T.own("r_sdss"), T.own("i_sdss")
    cpar = 0.7 * (g - r) + 1.2 * (r - i - 0.18)
    cperp = (r - i) - (g - r) / 4.0 - 0.18
    dperp = (r - i) - (g - r) / 8.0
    lowz = (r < 13.5 + cpar / 0.3) & (np.abs(cperp) < 0.2) & (r > 16.0) & (r < 19.6)
    cmass = (i > 17.5) & (i < 19.9) & (r - i < 2.0) & (dperp > 0.55) & (i < 19.86 + 1.6 * (dperp - 0.8))
    return lowz | cmass


def _eboss_lrg(T):
    r, i, z = T.own("r_sdss", 0.05), T.own("i_sdss", 0.05), T.own("z_sdss", 0.08)
    w1_vega = T.own("W1", 0.1) - 2.699
    return (i > 19.9) & (i < 21.8) & (z < 19.95) & (r - i > 0.98) & (r - w1_vega > 2.0 * (r - i)) & (i - z > 0.625)


def _eboss_elg(T):
    g, r, z = T.ls("G"), T.ls("R"), T.ls("Z")
    gr, rz = g - r, r - z
    return ((T.photsys == "S") & (g > 21.825) & (g < 22.825) & (gr > -0.068 * rz + 0.457)
            & (gr < 0.112 * rz + 0.773) & (rz > 0.218 * gr + 0.571) & (rz < -0.555 * gr + 1.901))


def _desi_bgs(T):
    return (T.ls("R") < 19.5) & (T.fib("R") < 22.9)


def _desi_lrg(T):
    g, r, z, w1 = T.ls("G"), T.ls("R"), T.ls("Z"), T.ls("W1")
    zfib = T.fib("Z")
    return ((zfib < 21.61) & (z - w1 > 0.8 * (r - z) - 0.6) & ((g - w1 > 2.9) | (r - w1 > 1.8))
            & (((r - w1 > 1.8 * (w1 - 17.14)) & (r - w1 > w1 - 16.33)) | (r - w1 > 3.3)))


def _desi_elg(T):
    g, r, z = T.ls("G"), T.ls("R"), T.ls("Z")
    gfib = T.fib("G")
    rz, gr = r - z, g - r
    return (g > 20) & (gfib < 24.1) & (rz > 0.15) & (gr < 0.5 * rz + 0.1) & (gr < -1.2 * rz + 1.6)


def _twodf(T):
    g, r = T.own("g_sdss", 0.05), T.own("r_sdss", 0.05)
    bj = g + 0.15 + 0.13 * (g - r)
    return bj < 19.45


def _sixdf(T):
    return T.own("Ks", 0.05) < 12.65 + 1.85


def _twomrs(T):
    return T.own("Ks", 0.05) < 11.75 + 1.85


def _gama(T):
    return T.own("r_sdss") + _petro_offset(T) < 19.8


def _hectomap(T):
    g, r, i = T.own("g_sdss"), T.own("r_sdss"), T.own("i_sdss")
    return (r < 21.3) & (g - r > 1.0) & ((r < 20.5) | (r - i > 0.5))


def _hetdex(T):
    oii = T.in_window("OII", 3500, 5500) & (T.line("OII") > 5e-17)
    lya = T.in_window("LYA", 3500, 5500) & (T.line("LYA") > 5e-17)
    return oii | lya


def _lamost(T):
    return T.own("r_sdss", 0.05) + _petro_offset(T) < 17.8


def _ozdes(T):
    r = T.own("r_sdss", 0.05)
    return (r > 17.0) & (r < 22.5)


def _primus(T):
    return T.own("i_sdss", 0.05) < 23.0


def _saga(T):
    g, r, i = T.own("g_sdss", 0.05), T.own("r_sdss", 0.05), T.own("i_sdss", 0.05)
    mu = T.mu_mean("r_sdss")
    return (r < 20.75) & (g - r < 0.85) & (r - i < 0.55) & (mu > 18.5 + 0.7 * (r - 14.0))


def _smudges(T):
    return (T.mu_mean("g_sdss") > 25.1) & (T.r_half * np.sqrt(T.q) > 4.0) & (T.own("g_sdss", 0.1) < 21.5)


def _elves(T):
    g = T.own("g_sdss", 0.1)
    return (g > 12.0) & (g < 21.4) & (T.mu_mean("g_sdss") < 27.5)


def _vipers(T):
    u, g, r, i = T.own("u_sdss", 0.1), T.own("g_sdss", 0.05), T.own("r_sdss", 0.05), T.own("i_cfht", 0.05)
    return (i > 17.5) & (i < 22.5) & (((r - i) > 0.5 * (u - g)) | ((r - i) > 0.7))


def _wigglez(T):
    r, nuv, fuv = T.own("r_sdss", 0.05), T.own("NUV", 0.2), T.own("FUV", 0.3)
    return (r > 20.0) & (r < 22.5) & (nuv < 22.8) & (nuv - r < 2.0) & ((fuv - nuv > 1.0) | ~np.isfinite(fuv))


def _deep2(T):
    b, r, i = T.own("B", 0.05), T.own("R", 0.05), T.own("I", 0.05)
    colour = (b - r < 2.35 * (r - i) - 0.45) | (r - i > 1.15) | (b - r < 0.5)
    return (r < 24.1) & colour


def _deep3(T):
    return T.own("R", 0.05) < 25.3


def _vvds(T):
    i = T.own("I", 0.05)
    return (i > 17.5) & (i < 24.0)


def _zcosmos(T):
    i = T.own("I", 0.03)
    return (i > 15.0) & (i < 22.5)


# -- redshift success -----------------------------------------------------------------------------
def _succ_sdss(T):
    return T.p_continuum(T.true("r_sdss"), 19.5, 0.995) + 0 * T.z


def _succ_boss(T):
    return 1 - (1 - T.p_continuum(T.true("i_sdss"), 20.6, 0.985, hi=10300)) * (1 - T.p_lines(3600, 10300, 2e-16))


def _succ_eboss_lrg(T):
    return 1 - (1 - T.p_continuum(T.true("i_sdss"), 21.6, 0.92, hi=10300)) * (1 - T.p_lines(3600, 10300, 2e-16))


def _succ_eboss_elg(T):
    return T.p_lines(3600, 10300, 8e-17, 0.93)


def _succ_bgs(T):
    return 1 - (1 - T.p_continuum(T.ls("R"), 21.0, 0.99)) * (1 - T.p_lines(3600, 9800, 5e-17))


def _succ_lrg(T):
    return 1 - (1 - T.p_continuum(T.fib("Z"), 22.2, 0.99, 0.2, hi=9800)) * (1 - T.p_lines(3600, 9800, 8e-17))


def _succ_elg(T):
    return T.p_lines(3600, 9800, 4.5e-17, 0.95)


def _succ_2df(T):
    return 1 - (1 - T.p_continuum(T.true("r_sdss"), 19.2, 0.92, 0.25, hi=8800)) * (1 - T.p_lines(3700, 8800, 3e-16))


def _succ_bright(p):
    return lambda T: p * np.ones(T.n)


def _succ_gama(T):
    return 1 - (1 - T.p_continuum(T.true("r_sdss"), 20.3, 0.97, 0.25, hi=8850)) * (1 - T.p_lines(3750, 8850, 1e-16))


def _succ_hectomap(T):
    return T.p_continuum(T.true("r_sdss"), 21.8, 0.98, 0.25, hi=9200)


def _succ_hetdex(T):
    return 0.9 * np.ones(T.n)


def _succ_lamost(T):
    return T.p_continuum(T.true("r_sdss"), 17.9, 0.9, 0.3, hi=9000)


def _succ_ozdes(T):
    return 1 - (1 - T.p_continuum(T.true("r_sdss"), 21.6, 0.9, 0.3, hi=8800)) * (1 - T.p_lines(3700, 8800, 6e-17, 0.9))


def _succ_primus(T):
    return T.p_continuum(T.true("i_sdss"), 23.3, 0.8, 0.3)


def _succ_saga(T):
    return 1 - (1 - T.p_continuum(T.true("r_sdss"), 20.8, 0.9, 0.3)) * (1 - T.p_lines(3700, 8800, 5e-17))


def _succ_vipers(T):
    return 1 - (1 - T.p_continuum(T.true("i_cfht"), 22.0, 0.85, 0.3, hi=9500)) * (1 - T.p_lines(5500, 9500, 4e-17, 0.9))


def _succ_wigglez(T):
    return T.p_lines(4700, 8800, 1.2e-16, 0.8)


def _succ_deep(T, m_half):
    return 1 - (1 - T.p_continuum(T.true("R"), m_half, 0.9, 0.3, hi=9100)) * (1 - T.p_lines(6500, 9100, 3e-17, 0.92))


def _succ_vvds(T):
    return 1 - (1 - T.p_continuum(T.true("I"), 22.5, 0.85, 0.35, hi=9350)) * (1 - T.p_lines(5500, 9350, 4e-17, 0.9))


def _succ_zcosmos(T):
    return 1 - (1 - T.p_continuum(T.true("I"), 22.0, 0.9, 0.3, hi=9400)) * (1 - T.p_lines(5550, 9400, 5e-17, 0.92))


_ALL = {"R_S": 26.0}

#: The spectroscopic surveys: rule, share, success, wrong-z rate, error and source.
SURVEYS: list[Survey] = [
    # ---- DESI DR1 (DESI Collaboration 2025) --------------------------------------------------------
    Survey("DESI", "BGS", 0.27, "LS r < 19.5 and r_fibre < 22.9 (BGS Bright)", _desi_bgs, _succ_bgs,
           {"R_S": 19.8, "R_N": 19.8}, 0.62, 0.003, "lines", 20.0, "Hahn et al. 2023, AJ 165, 253"),
    Survey("DESI", "LRG", 0.18, "LS z_fibre < 21.61; z-W1 > 0.8(r-z)-0.6; g-W1 > 2.9 or r-W1 > 1.8; "
           "r-W1 > 1.8(W1-17.14) and r-W1 > W1-16.33, or r-W1 > 3.3", _desi_lrg, _succ_lrg,
           {"Z_S": 21.7, "Z_N": 21.7}, 0.62, 0.005, "lines", 30.0, "Zhou et al. 2023, AJ 165, 58"),
    Survey("DESI", "ELG", 0.25, "LS g > 20, g_fibre < 24.1, r-z > 0.15, g-r < 0.5(r-z)+0.1, "
           "g-r < -1.2(r-z)+1.6 (LOP + VLO)", _desi_elg, _succ_elg,
           {"G_S": 24.2, "G_N": 24.2}, 0.62, 0.008, "lines", 20.0, "Raichoor et al. 2023, AJ 165, 126"),
    # ---- SDSS DR17/18 (Almeida et al. 2023) ---------------------------------------------------------
    Survey("SDSS", "MGS", 0.085, "r_Petrosian < 17.77, mu_50 < 24.5 (Main Galaxy Sample)", _sdss_mgs, _succ_sdss,
           {"r_sdss": 17.9}, 0.6, 0.002, "lines", 30.0, "Strauss et al. 2002, AJ 124, 1810"),
    Survey("SDSS", "BOSS", 0.05, "LOWZ: r < 13.5 + c_par/0.3, |c_perp| < 0.2, 16 < r < 19.6; CMASS: "
           "17.5 < i < 19.9, d_perp > 0.55, i < 19.86 + 1.6(d_perp - 0.8)", _boss, _succ_boss,
           {"i_sdss": 20.0, "r_sdss": 19.7}, 0.55, 0.005, "lines", 40.0, "Reid et al. 2016, MNRAS 455, 1553"),
    Survey("SDSS", "eBOSS-LRG", 0.0075, "19.9 < i < 21.8, z < 19.95, r-i > 0.98, r-W1(Vega) > 2(r-i), "
           "i-z > 0.625", _eboss_lrg, _succ_eboss_lrg, {"i_sdss": 21.9}, 0.55, 0.01, "lines", 40.0,
           "Prakash et al. 2016, ApJS 224, 34"),
    Survey("SDSS", "eBOSS-ELG", 0.0075, "DECaLS 21.825 < g < 22.825 with the grz box of Raichoor et al.",
           _eboss_elg, _succ_eboss_elg, {"G_S": 22.9}, 1.0, 0.01, "lines", 30.0,
           "Raichoor et al. 2017, MNRAS 471, 3955"),
    # ---- other surveys -------------------------------------------------------------------------------
    Survey("2dF", "2dFGRS", 0.018, "b_J < 19.45 (b_J = g + 0.15 + 0.13(g-r))", _twodf, _succ_2df,
           {"g_sdss": 19.6}, 1.0, 0.01, "lines", 85.0, "Colless et al. 2001, MNRAS 328, 1039; 2003"),
    Survey("6dF", "6dFGS", 0.01, "K_s(Vega) < 12.65 (2MASS)", _sixdf, _succ_bright(0.95),
           {"Ks": 14.6}, 1.0, 0.01, "lines", 55.0, "Jones et al. 2009, MNRAS 399, 683"),
    Survey("GAMA", "GAMA-II", 0.03, "r_Petrosian < 19.8", _gama, _succ_gama, {"r_sdss": 20.0}, 1.0, 0.005,
           "lines", 50.0, "Liske et al. 2015, MNRAS 452, 2087"),
    Survey("HectoMAP", "HectoMAP", 0.008, "r < 21.3 and g-r > 1.0 (r-i > 0.5 for r > 20.5)", _hectomap,
           _succ_hectomap, {"r_sdss": 21.4}, 0.0, 0.005, "lines", 40.0, "Sohn et al. 2023, ApJ 945, 94"),
    Survey("HETDEX", "HETDEX", 0.004, "blind IFU emission lines at 3500-5500 A above 5e-17 erg/s/cm^2 "
           "([OII] at z < 0.48, Lya at 1.9 < z < 3.5)", _hetdex, _succ_hetdex, {"G_N": 26.0}, 0.0,
           0.03, "lya", 60.0, "Mentuch Cooper et al. 2023, ApJ 943, 177"),
    Survey("LAMOST", "LAMOST-ExGal", 0.014, "r_Petrosian < 17.8", _lamost, _succ_lamost, {"r_sdss": 18.0}, 0.5,
           0.02, "random", 100.0, "Zhao et al. 2012, RAA 12, 723"),
    Survey("OzDES", "OzDES", 0.004, "17 < r < 22.5 in the DES supernova fields (hosts, fillers)", _ozdes,
           _succ_ozdes, {"r_sdss": 22.6}, 1.0, 0.02, "lines", 100.0, "Lidman et al. 2020, MNRAS 496, 19"),
    Survey("PRIMUS", "PRIMUS", 0.01, "i < 23 (prism, sigma_z = 0.005(1+z))", _primus, _succ_primus,
           {"i_sdss": 23.1}, 1.0, 0.03, "random", 0.0, "Coil et al. 2011, ApJ 741, 8; Cool et al. 2013",
           zerr_frac=0.005),
    Survey("SAGA", "SAGA-background", 0.0045, "r < 20.75, g-r < 0.85, r-i < 0.55, "
           "mu_eff > 18.5 + 0.7(r - 14)", _saga, _succ_saga, {"r_sdss": 20.9}, 0.6, 0.01, "lines", 30.0,
           "Mao et al. 2021, ApJ 907, 85; Mao et al. 2024"),
    Survey("SAGA", "SAGA-satellites", 0.0005, "as SAGA, in the hosts' volumes (25-40 Mpc)", _saga, _succ_saga,
           {"r_sdss": 20.9}, 0.6, 0.01, "lines", 30.0, "Mao et al. 2024, ApJ 976, 117", z_range=(0.0055, 0.0095)),
    Survey("SMUDGes", "SMUDGes", 0.001, "ultra-diffuse: <mu_g>_e > 25.1 (mu_0,g > 24), r_e > 4\", g < 21.5",
           _smudges, _succ_bright(0.6), {"g_sdss": 21.7}, 0.6, 0.03, "random", 50.0,
           "Zaritsky et al. 2019, ApJS 240, 1; 2023", z_range=(0.001, 0.06)),
    Survey("ELVES", "ELVES", 0.001, "Local Volume satellites: D < 12 Mpc, M_V < -9 (12 < g < 21.4; hosts excluded)", _elves,
           _succ_bright(0.7), {"g_sdss": 21.6}, 0.6, 0.01, "lines", 30.0,
           "Carlsten et al. 2022, ApJ 933, 47", z_range=(0.0005, 0.0028)),
    Survey("VIPERS", "VIPERS", 0.008, "17.5 < i < 22.5 and (r-i > 0.5(u-g) or r-i > 0.7)", _vipers,
           _succ_vipers, {"i_cfht": 22.6}, 1.0, 0.03, "lines", 141.0, "Scodeggio et al. 2018, A&A 609, A84"),
    Survey("WiggleZ", "WiggleZ", 0.014, "20 < r < 22.5, NUV < 22.8, NUV-r < 2, FUV-NUV > 1", _wigglez,
           _succ_wigglez, {"r_sdss": 22.6}, 1.0, 0.03, "lines", 100.0, "Drinkwater et al. 2010, MNRAS 401, 1429"),
    Survey("DEEP2", "DEEP2", 0.006, "R < 24.1 with the BRI pre-selection of z > 0.7 (fields 2-4; the EGS is under DEEP3)", _deep2,
           lambda T: _succ_deep(T, 23.0), {"R": 24.2}, 0.5, 0.015, "lines", 30.0,
           "Newman et al. 2013, ApJS 208, 5"),
    Survey("DEEP3", "DEEP3", 0.003, "R < 25.3 in the Extended Groth Strip", _deep3,
           lambda T: _succ_deep(T, 23.3), {"R": 25.4}, 0.0, 0.02, "lines", 30.0,
           "Cooper et al. 2011, ApJS 193, 14; 2012"),
    Survey("VVDS", "VVDS-Deep", 0.005, "17.5 < I < 24 (VVDS-Deep)", _vvds, _succ_vvds, {"I": 24.1}, 1.0, 0.04,
           "random", 276.0, "Le Fevre et al. 2013, A&A 559, A14"),
    Survey("zCOSMOS", "zCOSMOS-bright", 0.004, "15 < I(F814W) < 22.5", _zcosmos, _succ_zcosmos, {"I": 22.6},
           1.0, 0.01, "lines", 110.0, "Lilly et al. 2007, ApJS 172, 70; 2009"),
    Survey("2MRS", "2MRS", 0.005, "K_s(Vega) < 11.75 (2MASS)", _twomrs, _succ_bright(0.98), {"Ks": 13.7},
           0.7, 0.005, "lines", 40.0, "Huchra et al. 2012, ApJS 199, 26"),
]


def survey_table() -> pandas.DataFrame:  # noqa: F821
    """:data:`SURVEYS` as a DataFrame (name, program, share, rule, wrong-z rate, errors, source)."""
    import pandas as pd

    return pd.DataFrame([{
        "SURVEY": s.name, "PROGRAM": s.program, "share": s.share, "rule": s.rule,
        "south_fraction": s.south_fraction, "wrong_z_rate": s.wrong_rate,
        "sigma_v_kms": s.sigma_v if s.zerr_frac == 0 else np.nan, "source": s.source,
    } for s in SURVEYS])


def assign_redshifts(rng: np.random.Generator, survey: Survey, z: np.ndarray,
                     z_neighbour: np.ndarray | None = None,
                     neighbour_dominates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Measured redshifts and errors of securely measured targets.

    Parameters
    ----------
    rng : numpy.random.Generator
    survey : Survey
    z : ndarray, shape (N,)
        True redshift.
    z_neighbour : ndarray, shape (N,), optional
        Redshift of the brightest neighbour inside the fibre.
    neighbour_dominates : ndarray, shape (N,), bool, optional
        True where that neighbour outshines the target inside the fibre.

    Returns
    -------
    z_meas, z_err : ndarray, shape (N,)
    """
    n = z.size
    z_err = (survey.zerr_frac if survey.zerr_frac > 0 else survey.sigma_v / C_KMS) * (1 + z)
    z_meas = z + z_err * rng.standard_normal(n)
    wrong = rng.random(n) < survey.wrong_rate
    if wrong.any():
        k = int(wrong.sum())
        if survey.wrong_kind == "lya":
            # Lya emitters taken for [OII] (and [OII] for Lya)
            lam_true = np.where(z[wrong] > 1.5, LINE_WAVELENGTHS["LYA"], LINE_WAVELENGTHS["OII"])
            lam_assumed = np.where(z[wrong] > 1.5, LINE_WAVELENGTHS["OII"], LINE_WAVELENGTHS["LYA"])
            zw = (1 + z[wrong]) * lam_true / lam_assumed - 1
        else:
            names = ["OII", "HBETA", "OIII", "HALPHA"]
            a = rng.integers(0, 4, k)
            b = (a + rng.integers(1, 4, k)) % 4
            lam = np.array([LINE_WAVELENGTHS[m] for m in names])
            zw = (1 + z[wrong]) * lam[a] / lam[b] - 1
            rnd = (rng.random(k) < 0.3) | (survey.wrong_kind == "random")
            zw = np.where(rnd, rng.uniform(0.0, 1.6, k), zw)
        z_meas[wrong] = zw
    if neighbour_dominates is not None and z_neighbour is not None:
        z_meas = np.where(neighbour_dominates, z_neighbour + z_err * rng.standard_normal(n), z_meas)
    return z_meas, z_err
