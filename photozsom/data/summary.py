"""Summaries of a sky: the spectroscopic compilation per survey, the simulated sky's settings,
and the surface densities a simulated sky matches against their published values."""

from __future__ import annotations

import numpy as np
import pandas as pd

from photozsom.features import magnitudes
from photozsom.schema import validate

__all__ = ["PUBLISHED_DENSITIES", "mock_density_table", "select_desi_targets", "sky_settings_table",
           "survey_summary"]


def survey_summary(spec) -> pd.DataFrame:
    """Per-survey size, median redshift, median r magnitude and southern fraction.

    Parameters
    ----------
    spec : DataFrame
        Spectroscopic compilation with ``Z``, ``SURVEY``, ``PHOTSYS`` and the r-band DR10
        flux columns.

    Returns
    -------
    DataFrame
        Indexed by survey, sorted by size: ``N``, ``fraction_%``, ``z_median``,
        ``r_median`` (extinction-corrected asinh AB mag), ``south_fraction``.
    """
    df = validate(spec, ["Z", "SURVEY", "PHOTSYS"], name="spectroscopic sample")
    r = magnitudes(df, ("R",), name="spectroscopic sample")["r"].to_numpy()
    tab = pd.DataFrame({"SURVEY": df["SURVEY"].astype(str).to_numpy(), "Z": df["Z"].to_numpy(),
                        "r": r, "south": (df["PHOTSYS"].astype(str) == "S").to_numpy()})
    out = tab.groupby("SURVEY").agg(N=("Z", "size"), z_median=("Z", "median"), r_median=("r", "median"),
                                    south_fraction=("south", "mean"))
    out["fraction_%"] = 100.0 * out["N"] / out["N"].sum()
    return out.sort_values("N", ascending=False)[["N", "fraction_%", "z_median", "r_median", "south_fraction"]]


#: The per-band settings of a simulated sky, with their units (``settings.json`` keys).
_PER_BAND = {"depth_psf_5sigma_ab": "5σ point-source depth [AB mag]",
             "seeing_fwhm_arcsec": "seeing FWHM [arcsec]",
             "extinction_coefficients": "extinction A/E(B-V)",
             "sky_brightness_ab_arcsec2": "sky brightness [AB mag/arcsec²]"}


def sky_settings_table(settings: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The main settings of a simulated sky (``settings.json`` of :func:`simulate`) as two tables.

    Returns
    -------
    sizes : DataFrame
        One row per scalar setting (sample sizes, cutout size, pixel scale, ...).
    per_band : DataFrame
        Rows (quantity, region S/N), columns the bands G, R, I, Z, W1, W2 (NaN: no such
        band in that region, e.g. no i in the north).
    """
    scalars = {k: v for k, v in settings.items()
               if k != "request" and isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    if "z_spec_range" in settings:
        scalars["z_spec_range"] = "{} - {}".format(*settings["z_spec_range"])
    sizes = pd.DataFrame({"value": pd.Series(scalars, dtype=object)})
    rows = {}
    for key, label in _PER_BAND.items():
        for region, bands in settings.get(key, {}).items():
            rows[(label, region)] = bands
    per_band = pd.DataFrame.from_dict(rows, orient="index")
    per_band.index = pd.MultiIndex.from_tuples(per_band.index, names=["quantity", "region"])
    return sizes, per_band


#: Published surface densities the simulated sky is compared with: name -> (selection in
#: words, density per deg^2, reference).
PUBLISHED_DENSITIES: dict[str, tuple[str, float, str]] = {
    "DESI BGS Bright": ("r < 19.5, r_fibre < 22.9, not a point source", 864.0,
                        "Hahn et al. 2023, AJ 165, 253"),
    "DESI LRG": ("z_fibre < 21.61 and the optical + W1 colour cuts", 605.0,
                 "Zhou et al. 2023, AJ 165, 58"),
    "DESI ELG (LOP + VLO)": (("g > 20, g_fibre < 24.1, r-z > 0.15, g-r < 0.5(r-z)+0.1, "
                              "g-r < -1.2(r-z)+1.6"), 2400.0, "Raichoor et al. 2023, AJ 165, 126"),
    "stars, r < 22": ("true stars (IS_STAR) with r < 22 (SDSS footprint, mostly |b| > 25 deg)", 48e6 / 6500.0,
                      "Juric et al. 2008, ApJ 673, 864: 48 million stars in 6,500 deg^2"),
}


def _mag(df, col: str, band: str) -> np.ndarray:
    f = df[f"{col}_{band}"].to_numpy(np.float64) / df[f"MW_TRANSMISSION_{band}"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, 22.5 - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)


def select_desi_targets(cat) -> pd.DataFrame:
    """DESI main-survey target selections applied to Legacy Survey DR10 catalogue columns.

    The cuts of desitarget (main survey) on extinction-corrected fluxes: BGS Bright
    (Hahn et al. 2023; star rejection by ``TYPE != 'PSF'`` instead of Gaia), LRG (Zhou et
    al. 2023; positive r, z, z-fibre and W1 fluxes, no BRIGHT/GALAXY/CLUSTER mask bits) and
    ELG LOP + VLO (Raichoor et al. 2023; positive g, r, z fluxes, same mask bits).

    Parameters
    ----------
    cat : DataFrame
        ``FLUX_G/R/Z/W1``, ``FLUX_IVAR_*``, ``FIBERFLUX_G/R/Z``, ``MW_TRANSMISSION_*``,
        ``TYPE``, ``MASKBITS``.

    Returns
    -------
    DataFrame
        Boolean columns ``BGS_BRIGHT``, ``LRG``, ``ELG`` in the row order of ``cat``.
    """
    need = ["FLUX_G", "FLUX_R", "FLUX_Z", "FLUX_W1", "FIBERFLUX_G", "FIBERFLUX_R", "FIBERFLUX_Z",
            "MW_TRANSMISSION_G", "MW_TRANSMISSION_R", "MW_TRANSMISSION_Z", "MW_TRANSMISSION_W1", "TYPE",
            "MASKBITS"]
    df = validate(cat, need, name="catalogue")
    g, r, z, w1 = (_mag(df, "FLUX", b) for b in ("G", "R", "Z", "W1"))
    gfib, rfib, zfib = (_mag(df, "FIBERFLUX", b) for b in ("G", "R", "Z"))
    bits = df["MASKBITS"].to_numpy()
    clean = (bits & ((1 << 1) | (1 << 12) | (1 << 13))) == 0
    with np.errstate(invalid="ignore"):
        bgs = (r < 19.5) & (rfib < 22.9) & (df["TYPE"].astype(str).to_numpy() != "PSF") & clean
        lrg = (np.isfinite(r) & np.isfinite(z) & np.isfinite(zfib) & np.isfinite(w1) & clean
               & (zfib < 21.61) & (z - w1 > 0.8 * (r - z) - 0.6) & ((g - w1 > 2.9) | (r - w1 > 1.8))
               & (((r - w1 > 1.8 * (w1 - 17.14)) & (r - w1 > w1 - 16.33)) | (r - w1 > 3.3)))
        elg = (np.isfinite(g) & np.isfinite(r) & np.isfinite(z) & clean & (g > 20) & (gfib < 24.1)
               & (r - z > 0.15) & (g - r < 0.5 * (r - z) + 0.1) & (g - r < -1.2 * (r - z) + 1.6))
    return pd.DataFrame({"BGS_BRIGHT": bgs, "LRG": lrg, "ELG": elg}, index=df.index)


def mock_density_table(random, settings: dict) -> pd.DataFrame:
    """Surface densities of the simulated sky beside the published values it is built to match.

    The random sample is every detected source in an area ``settings['random_area_deg2']``
    (its size over the simulated surface density of detections), so a selection's density is
    its count in the random sample over that area. Counting errors are Poisson.

    Parameters
    ----------
    random : DataFrame
        ``random.parquet`` of :func:`photozsom.sim.simulate` (needs ``IS_STAR`` for the
        star row).
    settings : dict
        Its ``settings.json`` (``random_area_deg2``).

    Returns
    -------
    DataFrame
        Indexed by sample: ``selection``, ``N`` (count in the random sample),
        ``mock [deg^-2]``, ``± [deg^-2]``, ``published [deg^-2]``, ``mock / published``,
        ``reference``.

    Raises
    ------
    ValueError
        ``settings`` has no ``random_area_deg2`` (a simulation older than the density bookkeeping).
    """
    if "random_area_deg2" not in settings:
        raise ValueError("settings has no 'random_area_deg2': re-run photozsom simulate (with "
                         "overwrite=True) to write a simulation that records its area")
    area = float(settings["random_area_deg2"])
    sel = select_desi_targets(random)
    counts = {"DESI BGS Bright": int(sel["BGS_BRIGHT"].sum()), "DESI LRG": int(sel["LRG"].sum()),
              "DESI ELG (LOP + VLO)": int(sel["ELG"].sum())}
    if "IS_STAR" in random:
        r = _mag(random, "FLUX", "R")
        with np.errstate(invalid="ignore"):
            counts["stars, r < 22"] = int((random["IS_STAR"].to_numpy(bool) & (r < 22)).sum())
    rows = []
    for name, n in counts.items():
        words, pub, ref = PUBLISHED_DENSITIES[name]
        rows.append({"sample": name, "selection": words, "N": n, "mock [deg^-2]": n / area,
                     "± [deg^-2]": np.sqrt(max(n, 1)) / area, "published [deg^-2]": pub,
                     "mock / published": n / area / pub, "reference": ref})
    return pd.DataFrame(rows).set_index("sample")
