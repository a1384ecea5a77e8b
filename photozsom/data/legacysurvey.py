"""Read DESI Legacy Survey DR10 sweep and tractor catalogues (FITS or Parquet) in row chunks.

Sweeps (``sweep-<radec>-<radec>.fits``) and tractor catalogues (``tractor-<brick>.fits``)
share the column names of :mod:`photozsom.schema` (tractor files spell them in lower
case; both spellings work). Files are memory-mapped and read ``chunk_size`` rows at a time,
and only the columns the project uses are converted, so a 5 GB sweep never sits in memory.

What the reader adds or fixes, documented so nothing happens behind the user's back:

- ``PHOTSYS`` when the file has none (sweeps and tractor files don't): ``'S'`` (DECam) or
  ``'N'`` (BASS/MzLS), from the ``photsys`` argument; ``"auto"`` reads it from a ``north`` or
  ``south`` directory in the path (the Legacy Survey layout ``.../dr9/north/sweep/...``).
- The i-band columns when the file has none (DR9 sweeps and the northern region have no
  i-band): ``FLUX_I = NaN``, ``FLUX_IVAR_I = 0`` (no data), ``MW_TRANSMISSION_I = NaN``,
  ``NOBS_I = 0``. :func:`photozsom.features.som_features` then marks those rows invalid.
- ``OBJID``: the DR10 ``OBJID`` is only unique within a brick. When ``RELEASE`` and
  ``BRICKID`` are present (``unique_objid=True``) it becomes
  ``OBJID = RELEASE * 2**42 + BRICKID * 2**22 + BRICK_OBJID``, the bit layout of the DESI
  ``TARGETID`` of Legacy Surveys sources, so it is unique across files and joins with DESI
  redshift catalogues; the brick-level number is kept as ``BRICK_OBJID``.
- ``TYPE`` and other text columns are decoded and stripped of FITS padding.
- Tractor catalogues also hold non-primary duplicates in brick overlaps; with
  ``primary_only=True`` rows with ``BRICK_PRIMARY == False`` are removed and counted in the
  ``report`` (sweeps hold primary objects only).

Every chunk is checked with :func:`photozsom.schema.validate`.

Photo-z columns (``Z_PHOT_*``) live in the row-matched DR10 photo-z sweeps
(``sweep-...-pz.fits``); pass that file as ``pz_path`` to join them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from photozsom.data.specz import CutReport
from photozsom.io import column_map, fits_table_hdu, native, open_fits, table_kind
from photozsom.schema import COLUMNS, validate

__all__ = [
    "EXTRA_COLUMNS",
    "PHOTOZ_COLUMNS",
    "SWEEP_COLUMNS",
    "iter_catalog",
    "iter_catalogs",
    "pack_objid",
    "read_catalog",
]

#: Photo-z columns of the DR10 photo-z sweeps (Zhou et al. 2023).
PHOTOZ_COLUMNS: list[str] = [c for c in COLUMNS if c.startswith("Z_PHOT_")]
#: Schema columns read from a sweep / tractor file by default (PHOTSYS is added if absent).
SWEEP_COLUMNS: list[str] = [
    c for c in COLUMNS if c not in PHOTOZ_COLUMNS and c not in ("Z", "Z_ERR", "SURVEY")
]
#: Read as well when present (bookkeeping, not required).
EXTRA_COLUMNS: list[str] = ["RELEASE", "BRICKID", "BRICKNAME", "BRICK_PRIMARY"]

_I_FILL = {"FLUX_I": np.nan, "FLUX_IVAR_I": 0.0, "MW_TRANSMISSION_I": np.nan, "NOBS_I": 0}
_NAN_OK = [c for c in COLUMNS if c.startswith(("FLUX_", "MW_TRANSMISSION_", "SHAPE_", "SERSIC"))]


def pack_objid(release: np.ndarray, brickid: np.ndarray, brick_objid: np.ndarray) -> np.ndarray:
    """``RELEASE * 2**42 + BRICKID * 2**22 + OBJID`` (int64), the DESI TARGETID layout.

    Parameters
    ----------
    release, brickid, brick_objid : ndarray of int, shape (N,)
        Legacy Survey ``RELEASE`` (< 2**16), ``BRICKID`` (< 2**20) and per-brick ``OBJID``
        (< 2**22).
    """
    release = np.asarray(release, dtype=np.int64)
    brickid = np.asarray(brickid, dtype=np.int64)
    obj = np.asarray(brick_objid, dtype=np.int64)
    for name, v, bits in (("RELEASE", release, 16), ("BRICKID", brickid, 20), ("OBJID", obj, 22)):
        if v.size and (v.min() < 0 or v.max() >= 2**bits):
            raise ValueError(f"{name} out of range [0, 2**{bits}) for packing into OBJID; "
                             f"pass unique_objid=False to keep the file's OBJID")
    return (release << 42) | (brickid << 22) | obj


def _infer_photsys(path: Path, photsys: str | None) -> str | None:
    if photsys is None:
        return None
    if photsys.lower() == "auto":
        parts = [p.lower() for p in path.resolve().parts]
        if "north" in parts and "south" not in parts:
            return "N"
        if "south" in parts and "north" not in parts:
            return "S"
        return None
    p = photsys.upper()
    if p not in ("N", "S"):
        raise ValueError(f"photsys must be 'N', 'S', 'auto' or None, got {photsys!r}")
    return p


def _text(series: pd.Series) -> np.ndarray:
    """Text column as stripped unicode (bytes are decoded as ASCII)."""
    v = series.to_numpy()
    if len(v) and isinstance(v[0], bytes):
        v = np.array([b.decode("ascii", errors="replace") for b in v], dtype=object)
    return np.char.strip(v.astype(str))


class _Source:
    """Row-chunked column access to one FITS table or Parquet file."""

    def __init__(self, path: Path, hdu, fmt: str | None):
        self.path = path
        self.kind = table_kind(path, fmt)
        if self.kind == "csv":
            raise ValueError(f"{path}: Legacy Survey catalogues are read from FITS or Parquet, "
                             f"not CSV; convert it with pandas.read_csv(...).to_parquet(...)")
        if self.kind == "fits":

            self._hdul = open_fits(path, memmap=True)
            try:
                ext = fits_table_hdu(self._hdul, path, hdu)
            except ValueError:
                self._hdul.close()
                raise
            self._data = ext.data
            self.names = list(ext.columns.names)
            self.nrows = int(ext.header.get("NAXIS2", 0))
        else:
            import pyarrow.parquet as pq

            try:
                self._pf = pq.ParquetFile(path)
            except Exception as err:
                raise ValueError(f"{path} is not a readable Parquet file ({err})") from err
            self.names = list(self._pf.schema_arrow.names)
            self.nrows = int(self._pf.metadata.num_rows)
        self.cmap = column_map(self.names)

    def chunks(self, cols: Sequence[str], chunk_size: int) -> Iterator[tuple[int, dict]]:
        """Yield ``(first_row, {COL: ndarray})`` for consecutive row blocks."""
        actual = [self.cmap[c] for c in cols]
        if self.kind == "fits":
            for lo in range(0, self.nrows, chunk_size):
                sub = self._data[lo:lo + chunk_size]  # slice rows first: converts only these
                out = {}
                for c, a in zip(cols, actual, strict=True):
                    v = sub.field(a)
                    if v.ndim > 1:
                        raise ValueError(f"{self.path}: column {c} has shape {v.shape[1:]} per "
                                         f"row; only scalar columns can be read")
                    out[c] = native(v)
                yield lo, out
        else:
            lo = 0
            for batch in self._pf.iter_batches(batch_size=chunk_size, columns=actual):
                df = batch.to_pandas()
                out = {c: _text(df[a]) if df[a].dtype.kind in "OSU" else df[a].to_numpy()
                       for c, a in zip(cols, actual, strict=True)}
                yield lo, out
                lo += len(df)

    def close(self) -> None:
        if self.kind == "fits":
            del self._data
            self._hdul.close()


def iter_catalog(
    path: str | os.PathLike,
    *,
    columns: Sequence[str] | None = None,
    chunk_size: int = 500_000,
    photsys: str | None = "auto",
    pz_path: str | os.PathLike | None = None,
    unique_objid: bool = True,
    primary_only: bool = True,
    fill_missing_i: bool = True,
    hdu: int | str | None = None,
    format: str | None = None,
    report: CutReport | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield a DR10 sweep / tractor catalogue as validated DataFrames of ``chunk_size`` rows.

    Parameters
    ----------
    path : str or Path
        FITS (``.fits``, ``.fits.gz``) or Parquet file; column names in any case.
    columns : sequence of str, optional
        Schema columns to read (default :data:`SWEEP_COLUMNS`); every one must be present
        (after the additions in the module notes). :data:`EXTRA_COLUMNS` that exist are read
        too.
    chunk_size : int
        Rows per yielded frame.
    photsys : {"auto", "N", "S"} or None
        ``PHOTSYS`` for a file without that column (see the module notes); ``None`` or an
        undecidable ``"auto"`` leaves it out, which is an error if ``PHOTSYS`` is requested.
    pz_path : str or Path, optional
        Row-matched photo-z sweep whose ``Z_PHOT_*`` columns are joined.
    unique_objid : bool
        Pack ``RELEASE/BRICKID/OBJID`` into a unique ``OBJID`` (module notes).
    primary_only : bool
        Drop (and count) ``BRICK_PRIMARY == False`` rows when that column exists.
    fill_missing_i : bool
        Add the no-data i-band columns when the file has no i-band at all.
    hdu : int or str, optional
        FITS table extension (default: the first table).
    format : {"fits", "parquet"}, optional
        Overrides the guess from the file name.
    report : CutReport, optional
        Receives the row counts (input rows, ``BRICK_PRIMARY`` cut), accumulated over chunks.
        Without one, removed rows are announced with a ``UserWarning`` once the file is read.

    Yields
    ------
    DataFrame
        Up to ``chunk_size`` rows: the requested columns (upper case, native dtypes, text
        stripped) plus any extras, ``PHOTSYS`` and ``BRICK_OBJID``.

    Raises
    ------
    ValueError
        Not FITS/Parquet, a missing column (naming it and the file), bad values found by
        :func:`~photozsom.schema.validate`, or a ``pz_path`` with another row count.
    """
    path = Path(path)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    wanted = [c.upper() for c in (SWEEP_COLUMNS if columns is None else columns)]
    src = _Source(path, hdu, format)
    pz = None
    own_report = report is None
    if own_report:
        report = CutReport(source=path.name)
    try:
        have = set(src.cmap)
        fill_i = fill_missing_i and not any(c in have for c in _I_FILL)
        psys = _infer_photsys(path, photsys) if "PHOTSYS" not in have else None
        pz_wanted: list[str] = []
        if pz_path is not None:
            pz = _Source(Path(pz_path), None, None)
            if pz.nrows != src.nrows:
                raise ValueError(f"{pz_path} has {pz.nrows} rows but {path} has {src.nrows}; "
                                 f"the photo-z sweep must be row-matched to the sweep")
            pz_wanted = [c for c in wanted if c in PHOTOZ_COLUMNS] or list(PHOTOZ_COLUMNS)
            miss = [c for c in pz_wanted if c not in pz.cmap]
            if miss:
                raise ValueError(f"{pz_path} lacks photo-z column(s) {', '.join(miss)}")
        added = set(_I_FILL) if fill_i else set()
        if psys is not None:
            added.add("PHOTSYS")
        file_cols = [c for c in wanted if c not in added and c not in pz_wanted]
        missing = [c for c in file_cols if c not in have]
        if missing:
            hint = ""
            if "PHOTSYS" in missing:
                hint = " (pass photsys='S' for DECam/south or 'N' for BASS/MzLS/north)"
            elif any(c in missing for c in PHOTOZ_COLUMNS):
                hint = " (photo-z columns are in the row-matched '-pz' sweep: pass pz_path=)"
            raise ValueError(f"{path} lacks column(s) {', '.join(missing)}{hint}; the file has "
                             f"{len(src.names)} columns, e.g. {', '.join(src.names[:12])}")
        extras = [c for c in EXTRA_COLUMNS if c in have and c not in file_cols]
        read = file_cols + extras
        pz_iter = pz.chunks(pz_wanted, chunk_size) if pz is not None else None
        for lo, cols in src.chunks(read, chunk_size):
            n = len(next(iter(cols.values()))) if cols else 0
            df = pd.DataFrame(cols)
            if pz_iter is not None:
                _, pcols = next(pz_iter)
                for c in pz_wanted:
                    df[c] = pcols[c]
            for c, v in _I_FILL.items():
                if fill_i and c in wanted:
                    df[c] = np.full(n, v, dtype=np.int16 if c.startswith("NOBS") else np.float32)
            if psys is not None and ("PHOTSYS" in wanted):
                df["PHOTSYS"] = psys
            if unique_objid and {"OBJID", "RELEASE", "BRICKID"} <= set(df.columns):
                df["BRICK_OBJID"] = df["OBJID"].to_numpy()
                df["OBJID"] = pack_objid(df["RELEASE"].to_numpy(), df["BRICKID"].to_numpy(),
                                         df["OBJID"].to_numpy())
            report.n_input += n
            if primary_only and "BRICK_PRIMARY" in df:
                keep = df["BRICK_PRIMARY"].to_numpy().astype(bool)
                _accumulate(report, "BRICK_PRIMARY", n - int(keep.sum()), report.n_input)
                if not keep.all():
                    df = df.loc[keep].reset_index(drop=True)
            if len(df) == 0:
                continue
            df = validate(df, wanted, name=f"{path.name} rows {lo}-{lo + n - 1}",
                          allow_nan=_NAN_OK)
            yield df
        removed = sum(s["removed"] for s in report.steps)
        if own_report and removed:
            warnings.warn(f"{path.name}: removed {removed} of {report.n_input} rows with "
                          f"BRICK_PRIMARY == False (duplicates in brick overlaps); pass "
                          f"report=CutReport(...) to record the counts instead, or "
                          f"primary_only=False to keep them", UserWarning, stacklevel=2)
    finally:
        src.close()
        if pz is not None:
            pz.close()


def _accumulate(report: CutReport, cut: str, removed: int, n_input: int) -> None:
    """Add ``removed`` to the running step ``cut`` (one step per cut across chunks)."""
    for s in report.steps:
        if s["cut"] == cut:
            s["removed"] += removed
            s["remaining"] = n_input - s["removed"]
            return
    report.record(cut, removed, n_input - removed)


def read_catalog(path: str | os.PathLike, **kwargs) -> tuple[pd.DataFrame, CutReport]:
    """Read a whole sweep / tractor file (see :func:`iter_catalog` for the arguments).

    Returns
    -------
    catalog : DataFrame
        All chunks concatenated, index reset.
    report : CutReport
        Input rows and rows removed by the ``BRICK_PRIMARY`` cut.
    """
    report = kwargs.pop("report", None) or CutReport(source=Path(path).name)
    parts = list(iter_catalog(path, report=report, **kwargs))
    if not parts:
        raise ValueError(f"{path} has no rows to read (after {report.steps or 'no cuts'})")
    return pd.concat(parts, ignore_index=True), report


def iter_catalogs(
    paths: Iterable[str | os.PathLike],
    *,
    progress: bool = True,
    report: CutReport | None = None,
    **kwargs,
) -> Iterator[pd.DataFrame]:
    """Chunks of several sweep files in turn, e.g. for
    :func:`photozsom.data.crossmatch.crossmatch_stream`.

    Parameters
    ----------
    paths : iterable of str or Path
        Sweep / tractor files.
    progress : bool
        tqdm bar over files.
    report : CutReport, optional
        Accumulates the counts of all files.
    **kwargs
        Passed to :func:`iter_catalog`.
    """
    from tqdm.auto import tqdm

    paths = list(paths)
    for p in tqdm(paths, desc="sweeps", unit="file", disable=not progress or None):
        yield from iter_catalog(p, report=report, **kwargs)

