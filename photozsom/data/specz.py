"""Spectroscopic redshift catalogues: readers with quality cuts, and a de-duplicated compilation.

Every reader returns ``(frame, report)``: a :class:`pandas.DataFrame` with the columns of
:data:`SPECZ_OUTPUT_COLUMNS` and a :class:`CutReport` that records how many rows each quality
cut removed, so no row disappears without being counted.

Output columns
--------------
``RA, DEC``
    ICRS position, degrees (float64).
``Z, Z_ERR``
    Spectroscopic redshift and its 1-sigma uncertainty (float64; ``Z_ERR`` may be NaN when a
    survey gives none).
``SURVEY``
    Name of the survey (text).
``QUALITY``
    Redshift-confidence score on the 0-4 scale used by most redshift surveys (GAMA ``NQ``,
    2dF/6dF quality, DEEP2 ``ZQUALITY``): 4 = secure (> 99 % confidence), 3 = probable
    (> 95 %), lower values are not secure. Rows that pass the recommended cuts of DESI
    (:func:`read_desi`) or SDSS (:func:`read_sdss`) get 4. For other surveys
    (:func:`read_generic`) map the survey's own flag onto this scale or give a constant.
    :func:`compile_surveys` uses it to choose between duplicate measurements.
``SPEC_ID``
    The survey's own identifier of the spectrum (DESI ``TARGETID``, SDSS ``SPECOBJID``, or a
    mapped column), as text, so every row traces back to its source file.

Duplicate rule (:func:`compile_surveys`)
----------------------------------------
Measurements within ``dedup_radius_arcsec`` (1 arcsec) of each other are one galaxy
(friends-of-friends groups, so a chain of close pairs forms one group). Of each group the
compilation keeps one row, chosen by, in order:

1. higher ``QUALITY``;
2. smaller ``Z_ERR`` (NaN counts as the largest error);
3. higher survey priority (:data:`SURVEY_PRIORITY`, earlier = preferred; surveys not listed
   rank after the listed ones, alphabetically);
4. earlier position in the input (first frame first), so the result is deterministic.

The duplicate rule is applied before the redshift range, so a galaxy whose best measurement
lies outside the range is removed rather than replaced by a worse measurement inside it.

References
----------
DESI DR1 redshift catalogues (``zall-pix-iron.fits`` / ``zpix-*.fits``; columns and
recommended cuts ``ZWARN == 0``, ``COADD_FIBERSTATUS == 0``, ``SPECTYPE`` and a
``DELTACHI2`` threshold): https://data.desi.lbl.gov/doc/releases/dr1/ and the data model
https://desidatamodel.readthedocs.io/en/latest/DESI_SPECTRO_REDUX/SPECPROD/zcatalog/ ;
DESI Collaboration et al. (2025, arXiv:2503.14745).
SDSS DR17 ``specObj`` (``PLUG_RA, PLUG_DEC, Z, Z_ERR, ZWARNING, CLASS, SPECPRIMARY``):
https://data.sdss.org/datamodel/files/SPECTRO_REDUX/specObj.html ; Abdurro'uf et al. (2022).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from photozsom.io import open_fits, read_columns, table_kind
from photozsom.schema import validate

__all__ = [
    "SPECZ_OUTPUT_COLUMNS",
    "SURVEY_PRIORITY",
    "CutReport",
    "compile_surveys",
    "cut_table",
    "duplicate_groups",
    "read_columns",
    "read_desi",
    "read_generic",
    "read_sdss",
]

#: Columns of every reader's output, in order.
SPECZ_OUTPUT_COLUMNS: list[str] = ["RA", "DEC", "Z", "Z_ERR", "SURVEY", "QUALITY", "SPEC_ID"]

#: Default preference between surveys for duplicate measurements of equal QUALITY and Z_ERR
#: (earlier = preferred): DESI DR1 first (newest reduction, Redrock templates tuned for these
#: galaxies), then SDSS, then the smaller surveys of the paper's appendix.
SURVEY_PRIORITY: tuple[str, ...] = (
    "DESI", "SDSS", "GAMA", "2DF", "6DF", "VIPERS", "DEEP2", "DEEP3", "VVDS", "WIGGLEZ",
    "HECTOMAP", "SAGA", "ELVES", "HETDEX", "SMUDGES",
)



# --------------------------------------------------------------------------------------
# Cut bookkeeping
# --------------------------------------------------------------------------------------
@dataclass
class CutReport:
    """Row counts of a sequence of cuts applied to one input.

    Cuts are applied in order; ``removed`` of a step counts the rows that step removed among
    the rows that survived all earlier steps, so ``n_input - sum(removed) == n_output``.

    Attributes
    ----------
    source : str
        What was cut (a file name, or ``"compilation"``).
    n_input : int
        Rows before any cut.
    steps : list of dict
        One ``{"cut": str, "removed": int, "remaining": int}`` per cut.
    """

    source: str
    n_input: int = 0
    steps: list[dict] = field(default_factory=list)

    def apply(self, cut: str, keep: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """Record cut ``cut`` and return ``keep & condition``.

        Parameters
        ----------
        cut : str
            Human-readable description of the cut (e.g. ``"ZWARN == 0"``).
        keep : ndarray of bool, shape (N,)
            Rows still kept before this cut.
        condition : ndarray of bool, shape (N,)
            Rows that pass this cut.
        """
        new = keep & np.asarray(condition, dtype=bool)
        self.record(cut, int(keep.sum() - new.sum()), int(new.sum()))
        return new

    def record(self, cut: str, removed: int, remaining: int) -> None:
        """Append one step with explicit counts."""
        self.steps.append({"cut": cut, "removed": int(removed), "remaining": int(remaining)})

    @property
    def n_output(self) -> int:
        """Rows left after the last cut."""
        return self.steps[-1]["remaining"] if self.steps else self.n_input

    def to_frame(self) -> pd.DataFrame:
        """The report as a table with columns ``source, cut, removed, remaining``.

        The first row is ``cut == "input"`` with the input row count.
        """
        rows = [{"source": self.source, "cut": "input", "removed": 0, "remaining": self.n_input}]
        rows += [{"source": self.source, **s} for s in self.steps]
        return pd.DataFrame(rows, columns=["source", "cut", "removed", "remaining"])

    def __str__(self) -> str:
        return self.to_frame().to_string(index=False)


def cut_table(*reports: CutReport) -> pd.DataFrame:
    """Stack several :class:`CutReport` tables into one (``source, cut, removed, remaining``)."""
    if not reports:
        return pd.DataFrame(columns=["source", "cut", "removed", "remaining"])
    return pd.concat([r.to_frame() for r in reports], ignore_index=True)


# --------------------------------------------------------------------------------------
# Shared tail of all readers
# --------------------------------------------------------------------------------------
def _finish(
    raw: pd.DataFrame,
    path: Path,
    *,
    ra: str,
    dec: str,
    z: str,
    z_err: str | None,
    spec_id: str | None,
    survey: str,
    quality: np.ndarray | float,
    keep: np.ndarray,
    report: CutReport,
    drop_bad_coords: bool,
) -> tuple[pd.DataFrame, CutReport]:
    """Check coordinates, cut non-finite Z, build the standard output frame."""
    ra_v = pd.to_numeric(raw[ra], errors="coerce").to_numpy(dtype=np.float64)
    dec_v = pd.to_numeric(raw[dec], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(ra_v) & np.isfinite(dec_v) & (np.abs(dec_v) <= 90.0))
    if bad.any():
        if not drop_bad_coords:
            rows = np.flatnonzero(bad)[:5].tolist()
            col = ra if not np.all(np.isfinite(ra_v)) else dec
            raise ValueError(
                f"{path}: column {col} has {int(bad.sum())} missing or invalid coordinate(s) "
                f"(first rows: {rows}); repair the file or pass drop_bad_coords=True to remove "
                f"(and count) those rows"
            )
        keep = report.apply(f"finite {ra}/{dec}", keep, ~bad)
    z_v = pd.to_numeric(raw[z], errors="coerce").to_numpy(dtype=np.float64)
    keep = report.apply(f"finite {z}", keep, np.isfinite(z_v))
    if z_err is not None:
        zerr_v = pd.to_numeric(raw[z_err], errors="coerce").to_numpy(dtype=np.float64)
    else:
        zerr_v = np.full(len(raw), np.nan)
    q = np.broadcast_to(np.asarray(quality, dtype=np.float64), (len(raw),))
    if spec_id is not None:
        ids = raw[spec_id].to_numpy()[keep]
        ids = pd.array(np.asarray(ids).astype(str), dtype="string")
    else:
        ids = pd.array([f"{path.name}:{i}" for i in np.flatnonzero(keep)], dtype="string")
    out = pd.DataFrame(
        {
            "RA": ra_v[keep],
            "DEC": dec_v[keep],
            "Z": z_v[keep],
            "Z_ERR": zerr_v[keep],
            "SURVEY": pd.array(np.full(int(keep.sum()), survey, dtype=object), dtype="string"),
            "QUALITY": np.array(q[keep], dtype=np.float64),
            "SPEC_ID": ids,
        }
    )
    return out, report


def read_desi(
    path: str | os.PathLike,
    *,
    deltachi2_min: float = 25.0,
    spectype: str | None = "GALAXY",
    primary_only: bool = True,
    hdu: int | str | None = None,
    survey: str = "DESI",
    drop_bad_coords: bool = False,
) -> tuple[pd.DataFrame, CutReport]:
    """Read a DESI redshift catalogue (DR1 ``zall-pix`` / ``zpix`` / ``ztile`` FITS) with cuts.

    Parameters
    ----------
    path : str or Path
        FITS file with columns ``TARGETID, TARGET_RA, TARGET_DEC, Z, ZERR, ZWARN, DELTACHI2,
        SPECTYPE, COADD_FIBERSTATUS`` (any case); ``ZCAT_PRIMARY`` is used when present.
    deltachi2_min : float
        Keep ``DELTACHI2 > deltachi2_min`` (chi^2 difference between the best and the
        second-best Redrock fit). 25 is the general-purpose threshold of the DESI DR1
        documentation; BGS analyses use 40.
    spectype : str or None
        Keep rows with this Redrock ``SPECTYPE`` (``None``: no cut).
    primary_only : bool
        When the file has ``ZCAT_PRIMARY`` (the ``zall`` files), keep only the best spectrum
        of each target, as DESI recommends.
    hdu : int or str, optional
        Table extension (default ``ZCATALOG`` if present, else the first table).
    survey : str
        Value of the ``SURVEY`` column.
    drop_bad_coords : bool
        Remove (and count) rows with non-finite coordinates instead of raising.

    Returns
    -------
    frame : DataFrame
        :data:`SPECZ_OUTPUT_COLUMNS`; ``QUALITY = 4`` (secure) for every kept row,
        ``SPEC_ID = TARGETID``.
    report : CutReport
        Rows removed by each cut, in the order ``ZCAT_PRIMARY``, ``ZWARN == 0``,
        ``COADD_FIBERSTATUS == 0``, ``SPECTYPE``, ``DELTACHI2``, finite ``Z``.

    Raises
    ------
    ValueError
        Not a FITS file, a missing column, or NaN coordinates (naming the file and column).
    """
    path = Path(path)
    need = ["TARGETID", "TARGET_RA", "TARGET_DEC", "Z", "ZERR", "ZWARN", "DELTACHI2",
            "SPECTYPE", "COADD_FIBERSTATUS"]
    if hdu is None and table_kind(path, None) == "fits":
        with open_fits(path) as hdul:
            hdu = "ZCATALOG" if "ZCATALOG" in [h.name for h in hdul] else None
    raw = read_columns(path, need, optional=["ZCAT_PRIMARY"], hdu=hdu,
                       what="a DESI redshift catalogue")
    report = CutReport(source=path.name, n_input=len(raw))
    keep = np.ones(len(raw), dtype=bool)
    if primary_only and "ZCAT_PRIMARY" in raw:
        keep = report.apply("ZCAT_PRIMARY", keep, raw["ZCAT_PRIMARY"].to_numpy().astype(bool))
    keep = report.apply("ZWARN == 0", keep, raw["ZWARN"].to_numpy() == 0)
    keep = report.apply("COADD_FIBERSTATUS == 0", keep, raw["COADD_FIBERSTATUS"].to_numpy() == 0)
    if spectype is not None:
        st = np.char.upper(raw["SPECTYPE"].to_numpy().astype(str))
        keep = report.apply(f"SPECTYPE == {spectype.upper()!r}", keep, st == spectype.upper())
    dchi2 = raw["DELTACHI2"].to_numpy(dtype=np.float64)
    keep = report.apply(f"DELTACHI2 > {deltachi2_min:g}", keep, dchi2 > deltachi2_min)
    return _finish(raw, path, ra="TARGET_RA", dec="TARGET_DEC", z="Z", z_err="ZERR",
                   spec_id="TARGETID", survey=survey, quality=4.0, keep=keep, report=report,
                   drop_bad_coords=drop_bad_coords)


def read_sdss(
    path: str | os.PathLike,
    *,
    cls: str | None = "GALAXY",
    primary_only: bool = True,
    hdu: int | str | None = None,
    survey: str = "SDSS",
    drop_bad_coords: bool = False,
) -> tuple[pd.DataFrame, CutReport]:
    """Read an SDSS ``specObj`` file (DR12-DR17 FITS) with the standard quality cuts.

    Parameters
    ----------
    path : str or Path
        FITS file with ``PLUG_RA, PLUG_DEC, Z, Z_ERR, ZWARNING, CLASS`` (any case);
        ``SPECPRIMARY`` and ``SPECOBJID`` are used when present.
    cls : str or None
        Keep rows of this spectroscopic ``CLASS`` (``None``: no cut).
    primary_only : bool
        When ``SPECPRIMARY`` exists, keep only the best spectrum of each object.
    hdu, survey, drop_bad_coords
        As in :func:`read_desi`.

    Returns
    -------
    frame : DataFrame
        :data:`SPECZ_OUTPUT_COLUMNS`; ``QUALITY = 4`` for every kept row.
    report : CutReport
        Rows removed by ``SPECPRIMARY``, ``ZWARNING == 0``, ``CLASS``, finite ``Z``.
    """
    path = Path(path)
    need = ["PLUG_RA", "PLUG_DEC", "Z", "Z_ERR", "ZWARNING", "CLASS"]
    raw = read_columns(path, need, optional=["SPECPRIMARY", "SPECOBJID"], hdu=hdu,
                       what="an SDSS specObj catalogue")
    report = CutReport(source=path.name, n_input=len(raw))
    keep = np.ones(len(raw), dtype=bool)
    if primary_only and "SPECPRIMARY" in raw:
        keep = report.apply("SPECPRIMARY == 1", keep, raw["SPECPRIMARY"].to_numpy() == 1)
    keep = report.apply("ZWARNING == 0", keep, raw["ZWARNING"].to_numpy() == 0)
    if cls is not None:
        c = np.char.upper(raw["CLASS"].to_numpy().astype(str))
        keep = report.apply(f"CLASS == {cls.upper()!r}", keep, c == cls.upper())
    return _finish(raw, path, ra="PLUG_RA", dec="PLUG_DEC", z="Z", z_err="Z_ERR",
                   spec_id="SPECOBJID" if "SPECOBJID" in raw else None, survey=survey,
                   quality=4.0, keep=keep, report=report, drop_bad_coords=drop_bad_coords)


def read_generic(
    path: str | os.PathLike,
    columns: Mapping[str, str],
    survey: str,
    *,
    quality: float = 4.0,
    min_quality: float = 3.0,
    format: str | None = None,
    hdu: int | str | None = None,
    drop_bad_coords: bool = False,
) -> tuple[pd.DataFrame, CutReport]:
    """Read any FITS / CSV / Parquet redshift table through a column mapping.

    Parameters
    ----------
    path : str or Path
        The table.
    columns : mapping
        Output name -> name in the file. ``RA``, ``DEC`` (degrees) and ``Z`` are required;
        ``Z_ERR``, ``QUALITY`` (already on the 0-4 scale, see the module notes) and
        ``SPEC_ID`` are optional. E.g. ``{"RA": "ra", "DEC": "dec", "Z": "z_helio",
        "QUALITY": "NQ"}``.
    survey : str
        Value of the ``SURVEY`` column.
    quality : float
        ``QUALITY`` of every row when ``columns`` has no ``QUALITY`` entry.
    min_quality : float
        Keep rows with ``QUALITY >= min_quality`` (recorded as a cut).
    format : {"fits", "csv", "parquet"}, optional
        Overrides the guess from the file suffix.
    hdu, drop_bad_coords
        As in :func:`read_desi`.

    Returns
    -------
    frame : DataFrame
        :data:`SPECZ_OUTPUT_COLUMNS`.
    report : CutReport
    """
    path = Path(path)
    cols = {str(k).upper(): str(v) for k, v in dict(columns).items()}
    unknown = set(cols) - {"RA", "DEC", "Z", "Z_ERR", "QUALITY", "SPEC_ID"}
    if unknown:
        raise ValueError(f"columns has unknown output name(s) {sorted(unknown)}; allowed: "
                         f"RA, DEC, Z, Z_ERR, QUALITY, SPEC_ID")
    for req in ("RA", "DEC", "Z"):
        if req not in cols:
            raise ValueError(f"columns must map {req!r} to a column of {path.name}, e.g. "
                             f"columns={{'RA': 'ra', 'DEC': 'dec', 'Z': 'z'}}")
    src = {k: v.upper() for k, v in cols.items()}
    raw = read_columns(path, list(dict.fromkeys(src.values())), hdu=hdu, format=format,
                       what=f"the mapping {cols}")
    report = CutReport(source=path.name, n_input=len(raw))
    keep = np.ones(len(raw), dtype=bool)
    if "QUALITY" in src:
        q = pd.to_numeric(raw[src["QUALITY"]], errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(q).all() and len(q):
            raise ValueError(f"{path}: quality column {cols['QUALITY']} is not numeric")
    else:
        q = np.full(len(raw), float(quality))
    with np.errstate(invalid="ignore"):
        keep = report.apply(f"QUALITY >= {min_quality:g}", keep, q >= min_quality)
    return _finish(raw, path, ra=src["RA"], dec=src["DEC"], z=src["Z"],
                   z_err=src.get("Z_ERR"), spec_id=src.get("SPEC_ID"), survey=survey,
                   quality=q, keep=keep, report=report, drop_bad_coords=drop_bad_coords)


# --------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------
def _priority_rank(surveys: np.ndarray, priority: Sequence[str]) -> np.ndarray:
    """Integer rank of each survey name (0 = most preferred)."""
    prio = [p.upper() for p in priority]
    names = np.asarray(surveys).astype(str)
    uniq = np.unique(names)
    unlisted = sorted(u for u in uniq if u.upper() not in prio)
    rank_of = {u: prio.index(u.upper()) for u in uniq if u.upper() in prio}
    rank_of.update({u: len(prio) + i for i, u in enumerate(unlisted)})
    codes = np.searchsorted(uniq, names)
    lut = np.array([rank_of[u] for u in uniq], dtype=np.int64)
    return lut[codes]


def duplicate_groups(
    ra: np.ndarray,
    dec: np.ndarray,
    radius_arcsec: float = 1.0,
    *,
    chunk_size: int = 1_000_000,
) -> np.ndarray:
    """Friends-of-friends group label of each position (pairs closer than ``radius_arcsec``).

    Pairs are found with :func:`astropy.coordinates.search_around_sky`, chunked over the
    first argument against one KD-tree of all positions; the groups are the connected
    components (:func:`scipy.sparse.csgraph.connected_components`) of the pair graph.

    Parameters
    ----------
    ra, dec : ndarray, shape (N,)
        Degrees.
    radius_arcsec : float
        Linking length, arcsec.
    chunk_size : int
        Positions per query chunk.

    Returns
    -------
    ndarray of int, shape (N,)
        Group label; rows with no neighbour have a label of their own.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord, search_around_sky
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(ra)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    coords = SkyCoord(np.asarray(ra, float) * u.deg, np.asarray(dec, float) * u.deg)
    lim = radius_arcsec * u.arcsec
    ii, jj = [], []
    for lo in range(0, n, chunk_size):
        i, j, _, _ = search_around_sky(coords[lo:lo + chunk_size], coords, lim,
                                       storekdtree="photozsom_dedup")
        i = i + lo
        sel = i < j
        ii.append(i[sel])
        jj.append(j[sel])
    i = np.concatenate(ii)
    j = np.concatenate(jj)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def compile_surveys(
    frames: Sequence[pd.DataFrame],
    *,
    dedup_radius_arcsec: float = 1.0,
    zmin: float = 0.0,
    zmax: float = 1.6,
    survey_priority: Sequence[str] = SURVEY_PRIORITY,
    chunk_size: int = 1_000_000,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stack surveys, merge duplicate measurements of a galaxy, keep ``zmin < Z < zmax``.

    Parameters
    ----------
    frames : sequence of DataFrame
        Reader outputs (:func:`read_desi`, :func:`read_sdss`, :func:`read_generic`; either
        the frame or the whole ``(frame, report)`` pair), or any
        frames with ``RA, DEC, Z, SURVEY`` (``Z_ERR``, ``QUALITY``, ``SPEC_ID`` optional:
        NaN, 4 and row labels are filled in).
    dedup_radius_arcsec : float
        Measurements closer than this (arcsec) are the same galaxy; see the module notes
        for which one is kept.
    zmin, zmax : float
        Redshift range kept, exclusive at both ends (default ``0 < z < 1.6``, the support of
        the photo-z PDFs).
    survey_priority : sequence of str
        Survey preference used after QUALITY and Z_ERR (earlier = preferred).
    chunk_size : int
        Positions per pair-search chunk (bounds memory).

    Returns
    -------
    compilation : DataFrame
        :data:`SPECZ_OUTPUT_COLUMNS` plus ``N_SPEC``, the number of measurements merged into
        the row (1 = no duplicate). Rows in input order, index reset.
    counts : DataFrame
        Indexed by survey (plus ``"total"``) with columns ``input``, ``duplicate`` (rows
        dropped as a worse measurement of a galaxy kept from any survey), ``z_range`` and
        ``output``; ``input - duplicate - z_range == output`` on every row.

    Raises
    ------
    ValueError
        No frames, a frame lacking ``RA/DEC/Z/SURVEY``, or NaN coordinates.
    """
    if len(frames) == 0:
        raise ValueError("compile_surveys needs at least one survey frame")
    if not (zmax > zmin):
        raise ValueError(f"zmax must be > zmin, got zmin={zmin}, zmax={zmax}")
    parts = []
    for k, f in enumerate(frames):
        if isinstance(f, tuple) and len(f) == 2 and isinstance(f[1], CutReport):
            f = f[0]  # a reader's (frame, report) result
        df = validate(f, ["RA", "DEC", "Z", "SURVEY"], name=f"frames[{k}]",
                      allow_nan=["Z"], allow_empty=True)
        df = df.copy()
        if "Z_ERR" not in df:
            df["Z_ERR"] = np.nan
        if "QUALITY" not in df:
            df["QUALITY"] = 4.0
        if "SPEC_ID" not in df:
            df["SPEC_ID"] = [f"frames[{k}]:{i}" for i in range(len(df))]
        parts.append(df[SPECZ_OUTPUT_COLUMNS])
    allf = pd.concat(parts, ignore_index=True)
    allf["SURVEY"] = allf["SURVEY"].astype("string")
    allf["SPEC_ID"] = allf["SPEC_ID"].astype("string")
    n = len(allf)
    survey = allf["SURVEY"].to_numpy(dtype=object).astype(str)

    labels = duplicate_groups(allf["RA"].to_numpy(float), allf["DEC"].to_numpy(float),
                              dedup_radius_arcsec, chunk_size=chunk_size)
    quality = allf["QUALITY"].to_numpy(dtype=np.float64)
    zerr = allf["Z_ERR"].to_numpy(dtype=np.float64)
    zerr_key = np.where(np.isfinite(zerr), zerr, np.inf)
    qual_key = -np.where(np.isfinite(quality), quality, -np.inf)
    rank = _priority_rank(survey, survey_priority) if n else np.zeros(0, np.int64)
    order = np.lexsort((np.arange(n), rank, zerr_key, qual_key, labels))
    first = np.ones(n, dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    best = np.zeros(n, dtype=bool)
    best[order[first]] = True
    n_spec = np.bincount(labels, minlength=labels.max() + 1 if n else 0)[labels] if n else labels

    z = allf["Z"].to_numpy(dtype=np.float64)
    in_range = (z > zmin) & (z < zmax)
    kept = best & in_range

    uniq = list(dict.fromkeys(survey.tolist()))
    rows = {}
    for s in uniq:
        m = survey == s
        rows[s] = {"input": int(m.sum()), "duplicate": int((m & ~best).sum()),
                   "z_range": int((m & best & ~in_range).sum()), "output": int((m & kept).sum())}
    counts = pd.DataFrame.from_dict(rows, orient="index",
                                    columns=["input", "duplicate", "z_range", "output"])
    counts.loc["total"] = counts.sum(axis=0) if len(counts) else [0, 0, 0, 0]
    counts.index.name = "survey"

    out = allf.loc[kept].reset_index(drop=True)
    out["N_SPEC"] = np.asarray(n_spec)[kept].astype(np.int64)
    return out, counts
