"""Nearest-neighbour sky cross-match of a spectroscopic list against Legacy Survey photometry.

Two entry points with the same output:

- :func:`crossmatch` — the photometry fits in memory. One KD-tree is built on it (astropy
  :meth:`SkyCoord.match_to_catalog_sky`, cached on the catalogue) and the spectroscopic rows
  are matched in chunks of ``chunk_size``, so the temporary arrays stay bounded however long
  the left-hand list is.
- :func:`crossmatch_stream` — the photometry comes in pieces (e.g. one DR10 sweep file after
  another from :func:`photozsom.data.legacysurvey.iter_catalogs`). A KD-tree is built once
  on the spectroscopic positions; each piece is searched against it with
  :func:`astropy.coordinates.search_around_sky` and a running "closest so far" is kept per
  spectroscopic row. Because the nearest neighbour in a union of pieces is the closest of the
  per-piece nearest neighbours, the result equals :func:`crossmatch` on the concatenated
  photometry (ties at exactly equal separation go to the earlier piece).

Output: the left (spectroscopic) rows in input order with their index, every left column,
the photometry columns joined (a name that already exists on the left gets ``suffix``,
default ``"_PHOT"``), ``MATCHED`` (bool) and ``SEP_ARCSEC`` (float64, arcsec, NaN when
unmatched). A row with no photometric object within the radius (outside the footprint) is kept
with ``MATCHED = False`` and missing photometry: NaN for floats, ``<NA>`` for integers
(pandas ``Int64``), booleans (``boolean``) and text (``string``). Photometry dtypes therefore
do not depend on whether anything failed to match.

Several spectroscopic rows can match the same photometric object (e.g. two spectra of one
galaxy that were not merged); :func:`photozsom.data.specz.compile_surveys` removes those
beforehand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from photozsom.schema import validate

__all__ = ["crossmatch", "crossmatch_stream", "haversine_arcsec", "output_names"]


def haversine_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation (arcsec) of positions in degrees, by the haversine formula.

    Accurate to well below a milliarcsecond for separations under a degree; used as an
    independent check of astropy's Vincenty separations.
    """
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(a, dtype=np.float64))
                            for a in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))) * 3600.0


def _skycoord(ra: np.ndarray, dec: np.ndarray):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    return SkyCoord(np.asarray(ra, np.float64) * u.deg, np.asarray(dec, np.float64) * u.deg,
                    frame="icrs")


def _check_positions(table, name: str, *, allow_empty: bool, left: bool = False) -> pd.DataFrame:
    df = validate(table, ["RA", "DEC"], name=name, allow_empty=allow_empty)
    taken = [c for c in ("MATCHED", "SEP_ARCSEC") if left and c in df.columns]
    if taken:
        raise ValueError(f"{name} already has column(s) {taken} (is it a cross-match output?); "
                         f"drop or rename them before matching again")
    dec = df["DEC"].to_numpy(dtype=np.float64)
    if len(dec) and np.abs(dec).max() > 90:
        bad = np.flatnonzero(np.abs(dec) > 90)
        raise ValueError(f"{name}: column DEC has {len(bad)} value(s) outside [-90, 90] deg "
                         f"(first rows: {bad[:5].tolist()}); DEC must be in degrees")
    return df


def _missing_array(values) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """The column's values in a dtype that can hold a missing value.

    float -> unchanged (NaN); int -> ``Int64``/``UInt64``; bool -> ``boolean``; bytes,
    unicode or object -> ``string``; pandas extension arrays are kept as they are.
    """
    arr = values
    if isinstance(arr, pd.arrays.NumpyExtensionArray):
        arr = arr.to_numpy()
    if not isinstance(arr, (np.ndarray, pd.api.extensions.ExtensionArray)):
        arr = np.asarray(arr)
    if isinstance(arr, np.ndarray):
        kind = arr.dtype.kind
        if kind == "f":
            return arr
        if kind == "i":
            return pd.array(arr.astype(np.int64), dtype="Int64")
        if kind == "u":
            return pd.array(arr.astype(np.uint64), dtype="UInt64")
        if kind == "b":
            return pd.array(arr, dtype="boolean")
        if kind in "SU":
            return pd.array(arr.astype(str), dtype="string")
        if kind == "O":
            return pd.array(arr, dtype="string")
    return arr


def _take(values, idx: np.ndarray):
    """``values[idx]`` with ``idx == -1`` giving a missing value."""
    return pd.api.extensions.take(_missing_array(values), idx, allow_fill=True)


def output_names(left_cols: Sequence[str], right_cols: Sequence[str], suffix: str) -> dict:
    """Output name of each right-table column: ``suffix`` appended while it clashes with a
    left column, ``MATCHED``, ``SEP_ARCSEC`` or an earlier output name."""
    reserved = set(left_cols) | {"MATCHED", "SEP_ARCSEC"}
    out = {}
    for c in right_cols:
        name = c
        while name in reserved or name in out.values():
            name = name + suffix
        out[c] = name
    return out


def _assemble(left: pd.DataFrame, right_cols: dict, matched: np.ndarray,
              sep: np.ndarray) -> pd.DataFrame:
    out = left.copy()
    for name, values in right_cols.items():
        out[name] = values
    out["MATCHED"] = matched
    out["SEP_ARCSEC"] = np.where(matched, sep, np.nan)
    return out


def crossmatch(
    spec,
    phot,
    radius_arcsec: float = 2.0,
    *,
    chunk_size: int = 100_000,
    columns: Sequence[str] | None = None,
    suffix: str = "_PHOT",
    progress: bool = True,
    spec_name: str = "spectroscopic catalogue",
    phot_name: str = "photometric catalogue",
) -> pd.DataFrame:
    """Nearest photometric object within ``radius_arcsec`` of every spectroscopic row.

    Parameters
    ----------
    spec : DataFrame or astropy Table
        Left table with ``RA, DEC`` (degrees, ICRS), N rows; all columns are kept.
    phot : DataFrame or astropy Table
        Right table with ``RA, DEC`` (degrees) and the photometry, M rows (may be empty).
    radius_arcsec : float
        Match radius, arcsec (the paper uses 2").
    chunk_size : int
        Left rows matched per step. Memory is the KD-tree and coordinates of ``phot``
        (about 100 bytes per row), temporaries of about 200 bytes per ``chunk_size`` row, and
        the output table; ``benchmarks/crossmatch.py`` measures it (about 240 MiB above the
        inputs for 10^6 x 10^6 rows with the default chunk).
    columns : sequence of str, optional
        Photometry columns to join (default: all of ``phot``).
    suffix : str
        Appended to a photometry column whose name exists on the left (e.g. ``RA_PHOT``).
    progress : bool
        Show a tqdm bar over chunks.
    spec_name, phot_name : str
        Names used in error messages.

    Returns
    -------
    DataFrame, N rows
        ``spec`` (same index and order) + joined photometry + ``MATCHED`` + ``SEP_ARCSEC``;
        see the module notes for the dtypes of unmatched rows.

    Raises
    ------
    ValueError
        Missing or non-numeric ``RA/DEC``, NaN coordinates, an empty ``spec``, a
        non-positive radius or chunk size, or an unknown column in ``columns``.

    Examples
    --------
    >>> out = crossmatch(spec_df, sweep_df, 2.0)                 # doctest: +SKIP
    >>> out.MATCHED.mean()                                       # doctest: +SKIP
    """
    from astropy import units as u
    from astropy.coordinates import match_coordinates_sky
    from tqdm.auto import tqdm

    if not radius_arcsec > 0:
        raise ValueError(f"radius_arcsec must be > 0, got {radius_arcsec}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    left = _check_positions(spec, spec_name, allow_empty=False, left=True)
    right = _check_positions(phot, phot_name, allow_empty=True)
    cols = list(right.columns) if columns is None else [c.upper() for c in columns]
    missing = [c for c in cols if c not in right.columns]
    if missing:
        raise ValueError(f"{phot_name} lacks column(s) {missing} requested in columns=")
    n = len(left)
    idx = np.full(n, -1, dtype=np.int64)
    sep = np.full(n, np.nan)
    if len(right):
        cat = _skycoord(right["RA"].to_numpy(), right["DEC"].to_numpy())
        ra = left["RA"].to_numpy(dtype=np.float64)
        dec = left["DEC"].to_numpy(dtype=np.float64)
        starts = range(0, n, chunk_size)
        for lo in tqdm(starts, desc="crossmatch", unit="chunk", disable=not progress or None,
                       total=len(starts)):
            hi = min(lo + chunk_size, n)
            # the KD-tree is built on the first call and cached in cat.cache
            j, d2d, _ = match_coordinates_sky(_skycoord(ra[lo:hi], dec[lo:hi]), cat,
                                              storekdtree="photozsom_xmatch")
            s = d2d.to_value(u.arcsec)
            ok = s <= radius_arcsec
            idx[lo:hi] = np.where(ok, j, -1)
            sep[lo:hi] = s
    matched = idx >= 0
    names = output_names(list(left.columns), cols, suffix)
    joined = {names[c]: _take(right[c].array, idx) for c in cols}
    return _assemble(left, joined, matched, sep)


def crossmatch_stream(
    spec,
    pieces: Iterable,
    radius_arcsec: float = 2.0,
    *,
    columns: Sequence[str] | None = None,
    suffix: str = "_PHOT",
    progress: bool = True,
    spec_name: str = "spectroscopic catalogue",
) -> pd.DataFrame:
    """Like :func:`crossmatch`, with the photometry read one piece at a time.

    Memory is bounded by the spectroscopic table, its KD-tree and one piece, so the full
    DR10 sweep set (billions of rows) can be matched file by file.

    Parameters
    ----------
    spec : DataFrame or astropy Table
        Left table with ``RA, DEC`` (degrees), N rows.
    pieces : iterable of DataFrame / astropy Table
        Photometry pieces with ``RA, DEC`` and the same columns (e.g.
        ``legacysurvey.iter_catalogs(paths)``). The first non-empty piece fixes the columns
        and their dtypes; a later piece lacking one of them is an error.
    radius_arcsec, columns, suffix, progress, spec_name
        As in :func:`crossmatch`.

    Returns
    -------
    DataFrame, N rows
        Same layout as :func:`crossmatch`.
    """
    from astropy import units as u
    from astropy.coordinates import search_around_sky
    from tqdm.auto import tqdm

    if not radius_arcsec > 0:
        raise ValueError(f"radius_arcsec must be > 0, got {radius_arcsec}")
    left = _check_positions(spec, spec_name, allow_empty=False, left=True)
    n = len(left)
    spec_coords = _skycoord(left["RA"].to_numpy(), left["DEC"].to_numpy())
    best = np.full(n, np.inf)
    out_cols: dict | None = None
    cols: list[str] | None = None
    lim = radius_arcsec * u.arcsec
    for k, piece in enumerate(tqdm(pieces, desc="crossmatch pieces", unit="piece",
                                   disable=not progress or None)):
        right = _check_positions(piece, f"photometry piece {k}", allow_empty=True)
        if cols is None:
            cols = list(right.columns) if columns is None else [c.upper() for c in columns]
        missing = [c for c in cols if c not in right.columns]
        if missing:
            raise ValueError(f"photometry piece {k} lacks column(s) {missing} that earlier "
                             f"pieces (or columns=) have")
        if out_cols is None:
            out_cols = {c: _take(right[c].array, np.full(n, -1, np.int64)) for c in cols}
        if len(right) == 0:
            continue
        pc = _skycoord(right["RA"].to_numpy(), right["DEC"].to_numpy())
        # tree on the spectroscopic positions is built once and cached in spec_coords.cache
        ip, il, d2d, _ = search_around_sky(pc, spec_coords, lim, storekdtree="photozsom_stream")
        if len(ip) == 0:
            continue
        s = d2d.to_value(u.arcsec)
        order = np.lexsort((ip, s, il))  # per left row: smallest separation, then first row
        il, ip, s = il[order], ip[order], s[order]
        first = np.ones(len(il), dtype=bool)
        first[1:] = il[1:] != il[:-1]
        il, ip, s = il[first], ip[first], s[first]
        better = s < best[il]
        il, ip, s = il[better], ip[better], s[better]
        best[il] = s
        for c in cols:
            out_cols[c][il] = _missing_array(right[c].array)[ip]
    if out_cols is None:  # no pieces at all
        out_cols = {}
        cols = []
    matched = np.isfinite(best)
    names = output_names(list(left.columns), cols, suffix)
    joined = {names[c]: out_cols[c] for c in cols}
    return _assemble(left, joined, matched, np.where(matched, best, np.nan))
