"""Column names, dtypes and units of the catalogues photozsom reads and writes.

The names are those of the DESI Legacy Survey DR10 sweep / tractor catalogues
(https://www.legacysurvey.org/dr10/catalogs/), so the same code reads real sweeps and
the simulated sky of :func:`photozsom.sim.simulate`. Fluxes are in nanomaggies
(AB magnitude ``22.5 - 2.5 log10(flux)``), inverse variances in nanomaggies^-2,
sizes in arcsec and coordinates in degrees (ICRS).

Every entry point that takes a catalogue calls :func:`validate`, which raises one
:class:`ValueError` naming the offending column and what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

__all__ = [
    "BANDS",
    "COLUMNS",
    "EVALUATION_COLUMNS",
    "FLAG_COLUMNS",
    "FLAG_OUTPUT",
    "NORTH_BANDS",
    "OPTICAL_BANDS",
    "OUTPUT_COLUMNS",
    "POINT_COLUMNS",
    "SOUTH_BANDS",
    "SPECZ_COLUMNS",
    "WISE_BANDS",
    "Column",
    "as_dataframe",
    "flux_columns",
    "footprints",
    "point_column",
    "validate",
]

#: Optical bands of DR10 (the north, BASS/MzLS, has no i-band).
OPTICAL_BANDS: tuple[str, ...] = ("G", "R", "I", "Z")
#: The WISE bands the project uses.
WISE_BANDS: tuple[str, ...] = ("W1", "W2")
#: All photometric bands, in order.
BANDS: tuple[str, ...] = OPTICAL_BANDS + WISE_BANDS
#: Optical bands with imaging in each region (``PHOTSYS`` 'S' = DECam, 'N' = BASS/MzLS).
SOUTH_BANDS: tuple[str, ...] = ("G", "R", "I", "Z")
NORTH_BANDS: tuple[str, ...] = ("G", "R", "Z")


@dataclass(frozen=True)
class Column:
    """One catalogue column.

    Attributes
    ----------
    name : str
        DR10 column name (upper case).
    kind : str
        numpy dtype kind accepted: 'f' float, 'i' integer, 'U' string, 'b' bool.
    unit : str
        Physical unit ('' for dimensionless).
    description : str
        What the column holds.
    nan_ok : bool
        Whether NaN is a legitimate value (e.g. a missing i-band in the north).
    """

    name: str
    kind: str
    unit: str
    description: str
    nan_ok: bool = False


def _interval_columns(*levels: int) -> list[Column]:
    """``Z_PHOT_L<level>``, ``Z_PHOT_U<level>``: the ends of central intervals of P(z)."""
    return [Column(f"Z_PHOT_{side}{lv}", "f", "", f"{end} end of the central {lv}% interval "
                   f"of P(z)", True) for lv in levels for side, end in (("L", "lower"), ("U", "upper"))]


def _band_columns() -> list[Column]:
    cols: list[Column] = []
    for b in BANDS:
        nan_ok = b == "I"  # northern rows have no i-band imaging
        cols += [
            Column(f"FLUX_{b}", "f", "nanomaggy", f"{b}-band model flux (not extinction corrected)", nan_ok),
            Column(f"FLUX_IVAR_{b}", "f", "nanomaggy^-2", f"inverse variance of FLUX_{b}; 0 = no data", nan_ok),
            Column(f"MW_TRANSMISSION_{b}", "f", "", f"Galactic transmission in {b}, 10**(-0.4 R_{b} EBV)", nan_ok),
        ]
        if b in OPTICAL_BANDS:
            cols.append(Column(f"NOBS_{b}", "i", "", f"number of {b}-band exposures", nan_ok))
    return cols


_COLS: list[Column] = [
    Column("OBJID", "i", "", "unique object identifier within the run"),
    Column("RA", "f", "deg", "right ascension (ICRS)"),
    Column("DEC", "f", "deg", "declination (ICRS)"),
    Column("PHOTSYS", "U", "", "photometric system: 'S' DECam (griz) or 'N' BASS/MzLS (grz)"),
    Column("TYPE", "U", "", "tractor morphological type: PSF, REX, EXP, DEV, SER"),
    Column("EBV", "f", "mag", "Galactic E(B-V) from Schlegel, Finkbeiner & Davis (1998)"),
    Column("SHAPE_R", "f", "arcsec", "half-light radius"),
    Column("SHAPE_E1", "f", "", "ellipticity component 1"),
    Column("SHAPE_E2", "f", "", "ellipticity component 2"),
    Column("SERSIC", "f", "", "Sersic index"),
    Column("MASKBITS", "i", "", "bitmask of imaging problems (DR10 MASKBITS)"),
    *_band_columns(),
    Column("Z_PHOT_MEDIAN", "f", "", "photo-z median (Zhou et al. 2023)", True),
    Column("Z_PHOT_STD", "f", "", "photo-z standard deviation", True),
    Column("Z_PHOT_L68", "f", "", "photo-z 16th percentile", True),
    Column("Z_PHOT_U68", "f", "", "photo-z 84th percentile", True),
    Column("Z_PHOT_L95", "f", "", "photo-z 2.5th percentile", True),
    Column("Z_PHOT_U95", "f", "", "photo-z 97.5th percentile", True),
]

#: Spectroscopic-compilation columns added to the photometry.
SPECZ_COLUMNS: list[Column] = [
    Column("Z", "f", "", "spectroscopic redshift"),
    Column("Z_ERR", "f", "", "redshift uncertainty", True),
    Column("SURVEY", "U", "", "name of the spectroscopic survey"),
]

#: Every known column, by name.
COLUMNS: dict[str, Column] = {c.name: c for c in _COLS + SPECZ_COLUMNS}

#: Columns of a flag frame (:meth:`photozsom.flags.Flagger.flag`), in order; an output
#: catalogue carries them under the names of :data:`FLAG_OUTPUT` (in :data:`OUTPUT_COLUMNS`).
FLAG_COLUMNS: dict[str, Column] = {c.name: c for c in (
    Column("som", "U", "", "the SOM (footprint: PHOTSYS, or '' for a single map) of the row"),
    Column("cell", "i", "", "SOM cell (-1: not mapped)"),
    Column("distance", "f", "", "distance to the cell's prototype (standardised feature "
           "units)", True),
    Column("n_train", "i", "", "training galaxies in the cell (-1: not mapped)"),
    Column("ood", "b", "", "out of distribution: thin cell, far from the prototype or not "
           "mapped"),
    Column("underperforming", "b", "", "in a cell significantly and materially worse than "
           "global"),
    Column("flag", "b", "", "ood or underperforming: do not trust this photo-z"),
    Column("reason", "U", "", "why the row is flagged ('' when not)"),
)}


#: Names the flag columns get in an output catalogue.
FLAG_OUTPUT: dict[str, str] = {
    "som": "PZ_SOM", "cell": "PZ_SOM_CELL", "distance": "PZ_SOM_DISTANCE",
    "n_train": "PZ_N_TRAIN", "ood": "PZ_OOD", "underperforming": "PZ_UNDERPERFORMING",
    "flag": "PZ_FLAG", "reason": "PZ_FLAG_REASON",
}

#: Columns photozsom writes into a user's catalogue (``photozsom predict`` / ``flag``,
#: :func:`photozsom.predict.predict_table`): the DR10 photo-z catalogue's names for P(z)
#: summaries (redshift, dimensionless), then the row's status and the flag (``PZ_*``).
OUTPUT_COLUMNS: dict[str, Column] = {c.name: c for c in (
    Column("Z_PHOT_MEAN", "f", "", "mean of P(z) (redshift)", True),
    Column("Z_PHOT_MEDIAN", "f", "", "median of P(z)", True),
    Column("Z_PHOT_MODE", "f", "", "mode of P(z)", True),
    Column("Z_PHOT_STD", "f", "", "standard deviation of P(z)", True),
    *_interval_columns(68, 95),
    Column("PZ_STATUS", "U", "", "'ok', 'outside' the model's training data, or 'not scored'"),
    Column("PZ_REASON", "U", "", "why a row is not scored or outside ('' when ok)"),
    Column("PIT", "f", "", "CDF of P(z) at Z (with a spectroscopic Z only)", True),
    Column("CRPS", "f", "", "continuous ranked probability score of P(z) at Z (redshift)", True),
    *(replace(c, name=FLAG_OUTPUT[c.name]) for c in FLAG_COLUMNS.values()),
)}

#: Point summaries of P(z), by the names :data:`OUTPUT_COLUMNS` gives them. An evaluation table
#: holds the one its metrics score (:func:`point_column`); a ``photozsom predict`` output holds
#: all three.
POINT_COLUMNS: tuple[str, ...] = ("Z_PHOT_MEAN", "Z_PHOT_MEDIAN", "Z_PHOT_MODE")

#: Columns of an evaluation table (:func:`photozsom.evaluation.results.prediction_table`: the
#: book's predictions of galaxies with a spectroscopic redshift). Photo-z columns have the
#: names of :data:`OUTPUT_COLUMNS`: the point value the metrics score is one of
#: :data:`POINT_COLUMNS` (``Z_PHOT_MEAN`` for the book's models, ``Z_PHOT_MEDIAN`` for a
#: published catalogue's own point value), intervals ``Z_PHOT_L<level>`` / ``Z_PHOT_U<level>``
#: at the levels the paper's metrics use.
EVALUATION_COLUMNS: dict[str, Column] = {c.name: c for c in (
    Column("OBJID", "i", "", "unique object id"),
    Column("Z", "f", "", "spectroscopic redshift"),
    *(replace(OUTPUT_COLUMNS[n], description=OUTPUT_COLUMNS[n].description
              + " (the point value scored; one of these per table)") for n in POINT_COLUMNS),
    *_interval_columns(90, 99),
    Column("PIT", "f", "", "CDF of P(z) at Z", True),
    Column("CRPS", "f", "", "continuous ranked probability score of P(z) at Z (redshift)", True),
)}


def point_column(table, name: str = "table") -> str:
    """The point photo-z column of ``table``: the first of :data:`POINT_COLUMNS` it holds
    (in any case; the name is returned as the table spells it).

    An evaluation table holds one (``Z_PHOT_MEAN`` for a model, ``Z_PHOT_MEDIAN`` for a
    published catalogue); a ``photozsom predict`` output holds all three and scores its mean.

    Raises
    ------
    ValueError
        When ``table`` holds none of them.
    """
    cols = list(getattr(table, "columns", getattr(table, "colnames", ())))
    upper = {str(c).upper(): c for c in reversed(cols)}     # the first spelling wins
    for c in POINT_COLUMNS:
        if c in upper:
            return upper[c]
    raise ValueError(f"{name} has no point photo-z column: add one of {list(POINT_COLUMNS)} "
                     f"(e.g. Z_PHOT_MEAN, the mean of P(z) in redshift); it has {cols}")


def flux_columns(bands: Iterable[str] = BANDS) -> list[str]:
    """Names of the flux columns of ``bands`` (e.g. ``['FLUX_G', ...]``)."""
    return [f"FLUX_{b.upper()}" for b in bands]


def as_dataframe(table) -> pd.DataFrame:
    """Return ``table`` (DataFrame, astropy Table, structured array or dict) as a DataFrame.

    Big-endian FITS columns are converted to native byte order; column names are
    upper-cased so lower-case FITS headers work too.
    """
    if isinstance(table, pd.DataFrame):
        df = table
    else:
        try:
            from astropy.table import Table
        except ImportError:  # pragma: no cover - astropy is a dependency
            Table = ()  # type: ignore[assignment]
        if isinstance(table, Table):
            names = [n for n in table.colnames if len(table[n].shape) <= 1]
            df = table[names].to_pandas()
        elif isinstance(table, np.ndarray) and table.dtype.names:
            df = pd.DataFrame({n: table[n] for n in table.dtype.names})
        elif isinstance(table, Mapping):
            df = pd.DataFrame(dict(table))
        else:
            raise ValueError(
                f"expected a catalogue (pandas DataFrame, astropy Table or structured array), "
                f"got {type(table).__name__}"
            )
    if any(n != n.upper() for n in map(str, df.columns)):
        df = df.rename(columns=lambda n: str(n).upper())
    for name in df.columns:
        dt = df[name].dtype
        if isinstance(dt, np.dtype) and dt.byteorder == ">":
            df[name] = df[name].to_numpy().astype(dt.newbyteorder("="))
    return df


def validate(
    table,
    required: Iterable[str],
    *,
    name: str = "catalogue",
    allow_nan: Iterable[str] = (),
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Check that ``table`` holds ``required`` columns with sensible dtypes and values.

    Parameters
    ----------
    table : DataFrame, astropy Table, structured ndarray or dict of arrays
        The catalogue.
    required : iterable of str
        Column names that must be present (DR10 names, case-insensitive).
    name : str
        How to call the table in error messages (e.g. a file name).
    allow_nan : iterable of str
        Columns where NaN is accepted in addition to those the schema marks ``nan_ok``
        (fluxes: a NaN flux is a row the caller will flag, not an error).
    allow_empty : bool
        Accept a table with no rows.

    Returns
    -------
    pandas.DataFrame
        The table as a DataFrame with upper-case, native-endian columns (no copy when
        nothing needed converting).

    Raises
    ------
    ValueError
        One error naming the first offending column: missing, wrong dtype (e.g. text in
        ``FLUX_G``), NaN where the schema forbids it (e.g. ``RA``), or an empty table.
    """
    df = as_dataframe(table)
    required = [r.upper() for r in required]
    allow_nan = {a.upper() for a in allow_nan}
    if len(df) == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (0 rows): nothing to process")
    missing = [r for r in required if r not in df.columns]
    if missing:
        if any(m.startswith(("FLUX_", "MW_TRANSMISSION_", "SHAPE_", "SERSIC")) for m in missing):
            raise ValueError(
                f"{name} lacks column(s) {', '.join(missing)}, which this feature recipe needs; "
                f"choose a recipe from the columns the table has (features='auto', or e.g. "
                f"catalog_features=['r', 'g-r', 'r-z']), or, if the table has them under other "
                f"names, rename them to the DR10 names (photozsom.schema.COLUMNS)"
            )
        raise ValueError(
            f"{name} lacks column(s) {', '.join(missing)}; DR10 sweeps have them — "
            f"rename your columns to the DR10 names (see photozsom.schema.COLUMNS)"
        )
    for r in required:
        col = COLUMNS.get(r)
        if col is None:
            continue
        values = df[r].to_numpy()
        kind = values.dtype.kind
        if col.kind == "f" and kind not in "fiu":
            raise ValueError(f"{name}: column {r} must be numeric ({col.unit or 'dimensionless'}), got dtype {values.dtype}")
        if col.kind == "i" and kind not in "iub":
            if kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
                continue
            raise ValueError(f"{name}: column {r} must be integer, got dtype {values.dtype}")
        if col.kind == "U" and kind not in "USO":
            raise ValueError(f"{name}: column {r} must be text, got dtype {values.dtype}")
        if col.kind == "f" and not (col.nan_ok or r in allow_nan) and kind == "f":
            bad = ~np.isfinite(values)
            if bad.any():
                idx = np.flatnonzero(bad)
                raise ValueError(
                    f"{name}: column {r} has {bad.sum()} non-finite value(s) (first rows: "
                    f"{idx[:5].tolist()}); remove or repair those rows before calling"
                )
    return df


def footprints(catalogue) -> np.ndarray | None:
    """Each row's DR10 photometric system (``PHOTSYS``), stripped and upper case.

    Returns None when the catalogue has no ``PHOTSYS`` column (then one map, one recipe
    serve every row). Missing values become ``""``.

    Examples
    --------
    >>> footprints(pd.DataFrame({"PHOTSYS": ["S", " n", None]})).tolist()
    ['S', 'N', '']
    >>> footprints(pd.DataFrame({"FLUX_G": [1.0]})) is None
    True
    """
    df = as_dataframe(catalogue)
    if "PHOTSYS" not in df.columns:
        return None
    col = df["PHOTSYS"]
    return col.where(col.notna(), "").astype(str).str.strip().str.upper().to_numpy(dtype=object)
