"""Summaries of a spectroscopic compilation (one row per survey)."""

from __future__ import annotations

import pandas as pd

from photozsom.datasets.schema import validate
from photozsom.features import magnitudes

__all__ = ["sky_settings_table", "survey_summary"]


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
             "extinction_coefficients": "extinction A/E(B-V)"}


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
