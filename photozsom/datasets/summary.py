"""Summaries of a spectroscopic compilation (one row per survey)."""

from __future__ import annotations

import pandas as pd

from photozsom.datasets.schema import validate
from photozsom.features import magnitudes

__all__ = ["survey_summary"]


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
