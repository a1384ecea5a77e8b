"""Reading and writing catalogues: the one place that knows file formats.

Every module that reads or writes a table (spectroscopic catalogues, DR10 sweeps, cutout
FITS, the ``photozsom predict`` / ``flag`` commands) goes through these functions:

- :func:`table_kind` — FITS, Parquet, CSV or HDF5, from the file name (compression
  suffixes allowed);
- :func:`read_columns` — only the named columns of a table, case-insensitively;
- :func:`open_fits` — a FITS file with truncated or corrupt files turned into clear errors;
- :func:`open_catalogue` — a chunk iterator over a (possibly larger than memory) catalogue;
- :class:`CatalogueWriter` — chunks streamed to a temporary file renamed into place;
- :class:`PdfWriter` / :func:`read_pdf` — P(z) streamed chunk by chunk into a compact,
  qp-readable HDF5 file, and read back as a :class:`~photozsom.pdf.MixturePDF`;
- :func:`partial_path` / :func:`stale_partials` — the temporary names of the streamed
  writers, and the ones a killed run left behind;
- :func:`read_table` / :func:`write_table` — a whole table at once (atomic write).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.artifacts import atomic_path
from photozsom.pdf import MixturePDF, default_grid
from photozsom.schema import COLUMNS

__all__ = [
    "OUTPUT_SUFFIXES",
    "PDF_SUFFIXES",
    "CatalogueWriter",
    "PdfWriter",
    "column_map",
    "fits_table_hdu",
    "native",
    "open_catalogue",
    "open_fits",
    "output_kind",
    "partial_path",
    "read_columns",
    "read_pdf",
    "read_table",
    "stale_partials",
    "table_kind",
    "write_table",
]

_FITS_SUFFIXES = (".fits", ".fit", ".fts")
_CSV_SUFFIXES = (".csv", ".txt", ".ecsv")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
#: File names an output catalogue may have (compressed CSV/FITS allowed): the format follows.
OUTPUT_SUFFIXES: tuple[str, ...] = (".parquet", ".pq", ".parq", ".fits", ".fit", ".fts",
                                    ".fits.gz", ".csv", ".csv.gz", ".csv.bz2", ".csv.xz")
#: File names a P(z) file (:class:`PdfWriter`) may have.
PDF_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5", ".hdf")


def table_kind(path: str | os.PathLike, fmt: str | None = None) -> str:
    path = Path(path)
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in ("fits", "csv", "parquet", "hdf5"):
            raise ValueError(f"format must be 'fits', 'csv', 'parquet' or 'hdf5', got {fmt!r}")
        return fmt
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst", ".fz"):
        name = name.removesuffix(suffix)
    if name.endswith(_FITS_SUFFIXES):
        return "fits"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_HDF5_SUFFIXES):
        return "hdf5"
    raise ValueError(
        f"{path}: cannot tell the file format from its name; name it .parquet, .fits or .csv "
        f"(or .h5 for a pandas HDF5 table)"
    )


def output_kind(path: str | os.PathLike) -> str:
    """The format of an output catalogue from its name: 'parquet', 'fits' or 'csv'.

    Stricter than :func:`table_kind`: only names in :data:`OUTPUT_SUFFIXES` are accepted, so
    ``out.txt`` or ``out.ecsv`` (which would silently get plain CSV) and ``out.h5`` (an
    HDF5 table cannot be streamed) are refused with the names that work.
    """
    name = Path(path).name.lower()
    for suffix in sorted(OUTPUT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return table_kind(name)
    ext = "".join(Path(name).suffixes[-2:]) or "no extension"
    hint = (" (a P(z) file goes to --pdf FILE.h5)" if name.endswith(_HDF5_SUFFIXES) else "")
    raise ValueError(f"{path}: cannot tell the file format: {ext} is not an output catalogue "
                     f"format{hint}; name the output .parquet (fastest), .fits or .csv")


def partial_path(path: str | os.PathLike, pid: int | None = None) -> str:
    """The temporary name a streamed writer uses for ``path``: ``.partial-<pid>-<name>``
    beside it (same directory, so the final rename is atomic; same extension, so libraries
    choosing a format by extension still do)."""
    head, tail = os.path.split(os.fspath(path))
    return os.path.join(head, f".partial-{os.getpid() if pid is None else pid}-{tail}")


def stale_partials(path: str | os.PathLike) -> list[Path]:
    """Temporary files of writers to ``path`` whose process no longer runs.

    A run killed with SIGKILL (or a crash of the machine) cannot remove its
    ``.partial-<pid>-<name>``; the next run on the same output finds it here. A partial file
    of a process that is still alive (another run writing the same output) is not listed.
    """
    path = Path(path)
    out = []
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return out
    for p in parent.glob(f".partial-*-{path.name}"):
        pid_text = p.name[len(".partial-"):-(len(path.name) + 1)]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        alive = pid != os.getpid()
        if alive:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive or pid == os.getpid():
            out.append(p)
    return sorted(out)


# ``warnings.catch_warnings`` swaps process-wide state (the filter list and the function
# that shows warnings); two threads inside it at once restore each other's state and can
# leave every later warning of the process silenced. Downloads read FITS files from a
# thread pool, so the one place that catches warnings holds this lock.
_WARNINGS_LOCK = threading.Lock()
_ASTROPY_TRUNCATION = "File may have been truncated"


def open_fits(path: str | os.PathLike, *, memmap: bool = True):
    """Open a FITS file, turning astropy's errors and truncated files into ValueError.

    Truncation is decided from sizes, not from astropy's warning text: a file is truncated
    when an HDU's data block (with its FITS padding, as the standard requires) ends past
    the end of the file. That is also right for gzipped files, whose decompressed length
    astropy reports. Safe to call from several threads at once.
    """
    from astropy.io import fits

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(path, memmap=memmap)
            infos = [hdul.fileinfo(i) for i in range(len(hdul))]  # parses every header
        except (OSError, ValueError, TypeError, IndexError) as err:
            raise ValueError(
                f"{path} is not a readable FITS file ({err}); check that the download "
                f"finished and that the file really is FITS"
            ) from err
    size = infos[0]["file"].size if infos else 0
    if infos and getattr(infos[0]["file"], "compression", None):
        # astropy reports 0 bytes for a compressed file: measure the decompressed stream
        import bz2
        import gzip

        opener = {"gzip": gzip.open, "bzip2": bz2.open}.get(infos[0]["file"].compression)
        if opener is not None:
            try:
                with opener(path, "rb") as fh:
                    size = fh.seek(0, os.SEEK_END)
            except (OSError, EOFError) as err:
                hdul.close()
                raise ValueError(f"{path} is a truncated or corrupt compressed file ({err}); "
                                 f"delete it and download it again") from err
    end = max((i["datLoc"] + i["datSpan"] for i in infos), default=0)
    if end > size:
        hdul.close()
        raise ValueError(f"{path} is truncated ({size} bytes, the headers need {end}); delete "
                         f"it and download it again")
    for w in caught:  # pass on anything else astropy had to say
        if not str(w.message).startswith(_ASTROPY_TRUNCATION):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return hdul


def fits_table_hdu(hdul, path: Path, hdu: int | str | None):
    """The binary-table HDU ``hdu`` (name or index), or the first table HDU if None."""
    from astropy.io import fits

    if hdu is not None:
        try:
            ext = hdul[hdu]
        except (KeyError, IndexError) as err:
            names = [h.name for h in hdul]
            raise ValueError(f"{path} has no HDU {hdu!r}; its HDUs are {names}") from err
        if not isinstance(ext, (fits.BinTableHDU, fits.TableHDU)):
            raise ValueError(f"{path}: HDU {hdu!r} is not a table")
        return ext
    for ext in hdul:
        if isinstance(ext, (fits.BinTableHDU, fits.TableHDU)):
            return ext
    raise ValueError(f"{path} holds no table HDU; expected a FITS binary table")


def native(values: np.ndarray) -> np.ndarray:
    """Copy ``values`` to native byte order; strip and decode fixed-width strings."""
    values = np.asarray(values)
    if values.dtype.kind in "SU":
        if values.dtype.kind == "S":
            values = np.char.decode(values, "ascii", errors="replace")
        return np.char.strip(values.astype(str))
    if values.dtype.byteorder not in ("=", "|"):
        return values.astype(values.dtype.newbyteorder("="))
    return np.array(values, copy=True)


def column_map(available: Sequence[str]) -> dict[str, str]:
    """Map upper-case names to the file's spelling (so lower-case headers work)."""
    return {str(n).upper(): str(n) for n in available}


def _missing_error(path, missing: Sequence[str], available: Sequence[str], what: str) -> ValueError:
    return ValueError(
        f"{path} lacks column(s) {', '.join(missing)} needed for {what}; the file has "
        f"{', '.join(list(available)[:30])}{' ...' if len(available) > 30 else ''}. "
        f"Check the file type or use read_generic(path, columns={{...}}) with your names"
    )


def read_columns(
    path: str | os.PathLike,
    columns: Sequence[str],
    *,
    optional: Sequence[str] = (),
    hdu: int | str | None = None,
    format: str | None = None,
    what: str = "this reader",
) -> pd.DataFrame:
    """Read only ``columns`` (plus any of ``optional`` that exist) from a FITS/CSV/Parquet table.

    Names are matched case-insensitively and returned upper-case, native-endian, with
    fixed-width strings decoded and stripped.

    Parameters
    ----------
    path : str or Path
        The table file.
    columns : sequence of str
        Required column names.
    optional : sequence of str
        Columns read when present.
    hdu : int or str, optional
        FITS extension (default: the first binary table).
    format : {"fits", "csv", "parquet"}, optional
        Overrides the guess from the file name.
    what : str
        Used in the error message for missing columns.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not a readable file of that format, or a required column is missing.
    """
    path = Path(path)
    kind = table_kind(path, format)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if kind == "hdf5":
        df = read_table(path)
        cmap = column_map(df.columns)
        missing = [c.upper() for c in columns if c.upper() not in cmap]
        if missing:
            raise _missing_error(path, missing, list(df.columns), what)
        sel = [cmap[c.upper()] for c in columns] + [cmap[c.upper()] for c in optional
                                                    if c.upper() in cmap]
        return df[sel].rename(columns=lambda n: str(n).upper())
    wanted = [c.upper() for c in columns]
    opt = [c.upper() for c in optional if c.upper() not in wanted]
    if kind == "fits":
        with open_fits(path) as hdul:
            ext = fits_table_hdu(hdul, path, hdu)
            cmap = column_map(ext.columns.names)
            missing = [c for c in wanted if c not in cmap]
            if missing:
                raise _missing_error(path, missing, ext.columns.names, what)
            data = ext.data
            out = {}
            for c in wanted + [o for o in opt if o in cmap]:
                col = data.field(cmap[c])
                if col.ndim > 1:
                    raise ValueError(f"{path}: column {c} is multi-dimensional {col.shape}; "
                                     f"expected one value per row")
                out[c] = native(col)
            del data
        return pd.DataFrame(out)
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError
            raise ValueError(f"{path} is not a readable Parquet file ({err})") from err
        names = pf.schema_arrow.names
        cmap = column_map(names)
        missing = [c for c in wanted if c not in cmap]
        if missing:
            raise _missing_error(path, missing, names, what)
        sel = [cmap[c] for c in wanted + [o for o in opt if o in cmap]]
        df = pf.read(columns=sel).to_pandas()
        return df.rename(columns=lambda n: str(n).upper())
    # csv
    try:
        header = pd.read_csv(path, nrows=0)
    except Exception as err:
        raise ValueError(f"{path} is not a readable CSV file ({err})") from err
    names = list(header.columns)
    cmap = column_map(names)
    missing = [c for c in wanted if c not in cmap]
    if missing:
        raise _missing_error(path, missing, names, what)
    sel = [cmap[c] for c in wanted + [o for o in opt if o in cmap]]
    df = pd.read_csv(path, usecols=sel)
    return df.rename(columns=lambda n: str(n).upper())


def _flatten_table(t) -> pd.DataFrame:
    """astropy Table chunk -> DataFrame; multi-dimensional columns become NAME_0, NAME_1, ..."""
    cols: dict[str, Any] = {}
    flat = [n for n in t.colnames if t[n].ndim <= 1]
    df1 = t[flat].to_pandas() if flat else pd.DataFrame(index=range(len(t)))
    for n in t.colnames:
        if t[n].ndim <= 1:
            cols[n] = df1[n]
        else:
            a = native(np.asarray(t[n])).reshape(len(t), -1)  # FITS vectors are big-endian
            for j in range(a.shape[1]):
                cols[f"{n}_{j}"] = a[:, j]
    return pd.DataFrame(cols, index=pd.RangeIndex(len(t)))


def open_catalogue(path: str | os.PathLike, chunk: int = 1_000_000) -> tuple[list[str], int | None, Iterator[pd.DataFrame]]:
    """Column names, number of rows (None if unknown) and a chunk iterator of ``path``.

    FITS tables are memory-mapped and cut into ``chunk`` rows (multi-dimensional columns
    become ``NAME_0, NAME_1, ...``), Parquet is read in row batches, CSV in chunks with DR10
    float columns read as float64. Unreadable files raise :class:`ValueError`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input catalogue {path} does not exist")
    kind = table_kind(path)
    if kind == "hdf5":
        df = read_table(path)

        def it_h5():
            for s in range(0, len(df), chunk):
                yield df.iloc[s : s + chunk].reset_index(drop=True)

        return list(df.columns), len(df), it_h5()
    if kind == "fits":
        from astropy.io import fits
        from astropy.table import Table

        try:
            with fits.open(path, memmap=True) as hdul:
                idx = next(
                    (
                        i
                        for i, h in enumerate(hdul)
                        if isinstance(h, (fits.BinTableHDU, fits.TableHDU))
                    ),
                    None,
                )
                if idx is None:
                    raise ValueError(
                        f"{path} has no table HDU: expected a FITS binary table of DR10 columns"
                    )
                names = list(hdul[idx].columns.names)
                n = int(hdul[idx].header.get("NAXIS2", 0))
        except (OSError, TypeError) as err:
            raise ValueError(f"{path} is not a readable FITS file ({err})") from None

        def it():
            t = Table.read(path, format="fits", hdu=idx, memmap=True, character_as_bytes=False)
            for s in range(0, len(t), chunk):
                yield _flatten_table(t[s : s + chunk])

        return names, n, it()
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"{path} is not a readable Parquet file ({err})") from None

        def it():
            for batch in pf.iter_batches(batch_size=chunk):
                yield batch.to_pandas()

        return list(pf.schema_arrow.names), int(pf.metadata.num_rows), it()
    try:
        names = list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV file ({err})") from None
    dtypes = {
        c: np.float64
        for c in names
        if COLUMNS.get(c.upper()) is not None and COLUMNS[c.upper()].kind == "f"
    }

    def it():
        try:
            yield from pd.read_csv(path, chunksize=chunk, dtype=dtypes)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
            raise ValueError(f"{path}: cannot parse CSV ({err})") from None

    return names, None, it()


class CatalogueWriter:
    """Streamed Parquet/CSV writer (FITS collected and written at close) into a temp file.

    Chunks go to a temporary file beside ``path`` (same extension), renamed onto ``path``
    by :meth:`close`; :meth:`abort` removes it, so a failed run leaves no partial output.
    """

    def __init__(self, path: str | os.PathLike):
        path = os.fspath(path)
        self.path = path
        self.kind = table_kind(path)
        if self.kind == "hdf5":
            raise ValueError(f"{path}: write catalogues as .parquet, .fits or .csv")
        # same directory (atomic rename) and same extension (pandas/astropy compress by it)
        self.tmp = partial_path(path)
        self._pq = None
        self._schema = None
        self._tables: list[Any] = []
        self._first = True

    def write(self, df: pd.DataFrame) -> None:
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._pq is None:
                table = pa.Table.from_pandas(df, preserve_index=False)
                self._schema = table.schema
                self._pq = pq.ParquetWriter(self.tmp, self._schema)
            else:
                try:
                    table = pa.Table.from_pandas(df, schema=self._schema, preserve_index=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
                    raise ValueError(
                        f"a column changed type between chunks ({err}); convert the "
                        f"input or raise --chunk-size"
                    ) from None
            self._pq.write_table(table)
        elif self.kind == "csv":
            df.to_csv(self.tmp, mode="w" if self._first else "a", header=self._first, index=False)
        else:
            from astropy.table import Table

            obj = {
                c: df[c].astype(object) if isinstance(df[c].dtype, pd.StringDtype) else df[c]
                for c in df.columns
            }
            for c, v in obj.items():
                if v.dtype == object:
                    obj[c] = np.asarray(v.fillna("").astype(str).to_numpy(), dtype=str)
            self._tables.append(Table({c: np.asarray(v) for c, v in obj.items()}))
        self._first = False

    def close(self) -> None:
        if self.kind == "parquet" and self._pq is not None:
            self._pq.close()
        elif self.kind == "fits":
            from astropy.table import vstack

            vstack(self._tables, join_type="exact").write(self.tmp, format="fits", overwrite=True)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._pq is not None:
            with contextlib.suppress(Exception):  # best-effort cleanup after an error
                self._pq.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def read_table(path: str | os.PathLike, *, columns: Sequence[str] | None = None,
               key: str = "catalogue") -> pd.DataFrame:
    """Read a whole FITS / Parquet / CSV / HDF5 table into a DataFrame.

    Parameters
    ----------
    path : path
        The file; its format comes from the extension.
    columns : sequence of str, optional
        Only these columns (matched case-insensitively and returned upper-case for FITS,
        CSV and Parquet, through :func:`read_columns`).
    key : str
        HDF5 only: the pandas key (``DataFrame.to_hdf(path, key=...)``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    kind = table_kind(path)
    if columns is not None and kind != "hdf5":
        return read_columns(path, columns)
    if kind == "hdf5":
        try:
            df = pd.read_hdf(path, key=key)
        except (KeyError, OSError, ValueError) as err:
            raise ValueError(f"{path}: no readable pandas table under key {key!r} ({err})") from err
        return df if columns is None else df[list(columns)]
    names, _, chunks = open_catalogue(path)
    parts = list(chunks)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=names)


def write_table(df: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = True,
                key: str = "catalogue") -> Path:
    """Write a DataFrame by extension (Parquet, FITS, CSV, HDF5) atomically.

    The table goes to a temporary file beside ``path`` and is renamed into place, so an
    interrupted write never leaves a half-written file under ``path``.
    """

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    kind = table_kind(path)
    with atomic_path(path) as tmp:
        if kind == "hdf5":
            df.to_hdf(tmp, key=key, mode="w")
        else:
            w = CatalogueWriter(tmp)
            try:
                w.write(df.reset_index(drop=True))
                w.close()
            except BaseException:
                w.abort()
                raise
    return path


class PdfWriter:
    """Stream P(z) into a compact HDF5 file that qp reads, chunk by chunk, in bounded memory.

    The file is a qp ``mixmod`` ensemble (``qp.read(path, fmt="hdf5")``; the ``fmt`` is needed
    for a ``.h5`` name, which qp's reader otherwise takes for a pandas table, and
    ``read_slice=slice(i, j)`` reads a piece of a large file): for each galaxy the ``k``
    mixture components of largest weight -- ``data/means``, ``data/stds``, ``data/weights``,
    shape (N, k), float32, the weights renormalised to sum to 1 -- plus ``ancil/row`` (the
    input row), ``ancil/OBJID`` when given, and ``ancil/PZ_PDF_DROPPED``: the weight of the
    components left out (before renormalising), so every file states its own accuracy. The
    datasets are chunked (all but the weights shuffled and gzip-compressed) and grow with
    each :meth:`write`, so memory does not depend on the number of rows. With the default ``k = 64`` a row takes
    at most ``64 * 12 + 20 = 788`` bytes before compression (about 280 on disk).

    Accuracy: the mixture read back (:func:`read_pdf`) differs from the written one by the
    dropped weight ``d`` only, so every CDF value differs by at most ``d`` (``|F - F'| <= d``
    for all z); it is 0 for a PDF with at most ``k`` non-negligible components. Measured on
    the shipped DESI sample with a 3-epoch catalogue model, k = 64: the raw network P(z)
    drop a median 4e-6 (99th percentile 6e-3); after the default global recalibration, which
    spreads a little weight over every component, a median 8e-3 (largest 4e-2). Raise
    ``k`` (``--pdf-components``) for a tighter bound: 100 gives a median 3e-3, largest 9e-3.

    qp evaluates a mixture by broadcasting (galaxies x components x points): evaluate in
    slices (``ens[i:i + 10000].pdf(grid)``), which costs ``k / 200`` of the full mixture.

    Parameters
    ----------
    path : path
        ``.h5``, ``.hdf5`` or ``.hdf``. Written to :func:`partial_path` and renamed into
        place by :meth:`close`; :meth:`abort` removes the partial file.
    n_components : int
        ``k``, the components kept per galaxy (1..K).
    with_ids : bool
        Whether :meth:`write` receives identifiers (``ancil/OBJID``).
    """

    def __init__(self, path: str | os.PathLike, n_components: int = 64, *,
                 with_ids: bool = False) -> None:
        self.path = os.fspath(path)
        if not self.path.lower().endswith(PDF_SUFFIXES):
            raise ValueError(f"{self.path}: a P(z) file is HDF5; name it .h5 or .hdf5")
        self.k = int(n_components)
        if self.k < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        self.with_ids = bool(with_ids)
        self.tmp = partial_path(self.path)
        self._f = None
        self.n = 0
        self.max_dropped = 0.0

    def _open(self, k: int, id_dtype) -> None:
        import h5py

        self._f = f = h5py.File(self.tmp, "w")
        meta = f.create_group("meta")
        meta["pdf_name"] = np.array([b"mixmod"])
        meta["pdf_version"] = np.array([0], dtype=np.int64)
        opts = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        rows = max(1, 65536 // k)
        data = f.create_group("data")
        for name in ("means", "stds", "weights"):
            # means and stds repeat the grid (compressed to almost nothing); the weights do
            # not compress much and are stored plain (4x faster to write)
            data.create_dataset(name, shape=(0, k), maxshape=(None, k), dtype=np.float32,
                                chunks=(rows, k), **(opts if name != "weights" else {}))
        anc = f.create_group("ancil")
        anc.create_dataset("row", shape=(0,), maxshape=(None,), dtype=np.int64,
                           chunks=(65536,), **opts)
        anc.create_dataset("PZ_PDF_DROPPED", shape=(0,), maxshape=(None,), dtype=np.float32,
                           chunks=(65536,), **opts)
        if self.with_ids:
            anc.create_dataset("OBJID", shape=(0,), maxshape=(None,), dtype=id_dtype,
                               chunks=(65536,), **opts)
        f.attrs["format"] = "photozsom.pdf_topk"
        f.attrs["format_version"] = 1

    def write(self, pdf: Any, rows: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Append the PDFs of one chunk.

        Parameters
        ----------
        pdf : MixturePDF
            N PDFs.
        rows : ndarray of int, shape (N,)
            Their rows in the input catalogue.
        ids : ndarray, shape (N,), optional
            Their identifiers (integers or strings), required when ``with_ids``.
        """
        w = np.asarray(pdf.weights, dtype=np.float32)
        n, K = w.shape
        k = min(self.k, K)
        if ids is not None:
            ids = np.asarray(ids)
            if ids.dtype.kind not in "iu":           # string identifiers: variable-length UTF-8
                ids = ids.astype(str).astype(object)
        if self._f is None:
            import h5py

            id_dtype = np.int64 if ids is None else (
                ids.dtype if ids.dtype.kind in "iu" else h5py.string_dtype())
            self._open(k, id_dtype)
            self.grid = pdf.grid
        if pdf.grid != self.grid:
            raise ValueError("every chunk of a P(z) file must be on the same grid")
        if len(rows) != n or (self.with_ids and (ids is None or len(ids) != n)):
            raise ValueError(f"rows/ids must have one entry per PDF ({n})")
        top = np.argpartition(w, K - k, axis=1)[:, K - k:] if k < K else np.tile(np.arange(K), (n, 1))
        top.sort(axis=1)
        wk = np.take_along_axis(w, top, axis=1).astype(np.float64)
        total = w.sum(axis=1, dtype=np.float64)
        kept = wk.sum(axis=1)
        dropped = np.clip(1.0 - kept / total, 0.0, 1.0)
        wk /= kept[:, None]
        self.max_dropped = max(self.max_dropped, float(dropped.max(initial=0.0)))
        g = self.grid
        new = {"data/means": g.centres.astype(np.float32)[top],
               "data/stds": np.full((n, k), g.sigma, dtype=np.float32),
               "data/weights": wk.astype(np.float32),
               "ancil/row": np.asarray(rows, dtype=np.int64),
               "ancil/PZ_PDF_DROPPED": dropped.astype(np.float32)}
        if self.with_ids:
            new["ancil/OBJID"] = np.asarray(ids)
        for name, a in new.items():
            d = self._f[name]
            d.resize(self.n + n, axis=0)
            d[self.n:self.n + n] = a
        self.n += n

    def close(self) -> None:
        """Finish the file and rename it into place (an empty file when nothing was written)."""
        if self._f is None:

            self.grid = default_grid()
            self._open(min(self.k, self.grid.K), np.int64)
        g = self.grid
        self._f.attrs["centres"] = g.centres
        self._f.attrs["sigma"] = g.sigma
        self._f.attrs["bounds"] = np.array([g.lo, g.hi])
        self._f.attrs["max_dropped_weight"] = self.max_dropped
        self._f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Close and remove the partial file."""
        if self._f is not None:
            with contextlib.suppress(Exception):
                self._f.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp)


def read_pdf(path: str | os.PathLike, rows: slice | np.ndarray | None = None) -> Any:
    """Read a P(z) file written by :class:`PdfWriter` (``photozsom predict --pdf``).

    Parameters
    ----------
    path : path
        The ``.h5`` / ``.hdf5`` file.
    rows : slice or ndarray of int, optional
        Only these galaxies (file order), so a large file can be read in pieces.

    Returns
    -------
    MixturePDF
        The stored components scattered back onto the full grid (the others have weight 0),
        with ``ids`` = ``ancil/OBJID`` when present, else the input ``row``.
    """
    import h5py


    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no P(z) file at {path}")
    sel = slice(None) if rows is None else rows
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != "photozsom.pdf_topk":
                raise ValueError(f"{path} is not a P(z) file written by photozsom predict --pdf")
            centres = np.asarray(f.attrs["centres"])
            sigma = float(f.attrs["sigma"])
            bounds = tuple(np.asarray(f.attrs["bounds"]).tolist())
            means = f["data/means"][sel]
            weights = f["data/weights"][sel].astype(np.float64)
            anc = f["ancil"]
            ids = anc["OBJID"][sel] if "OBJID" in anc else anc["row"][sel]
            if ids.dtype.kind in "OS":
                ids = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in ids])
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file ({err}); was the run that wrote "
                         f"it interrupted?") from None
    # the nearest centre of each stored (float32) mean
    hi = np.clip(np.searchsorted(centres, means), 1, centres.size - 1)
    idx = np.where(np.abs(means - centres[hi - 1]) <= np.abs(centres[hi] - means), hi - 1, hi)
    w = np.zeros((len(means), centres.size))
    np.put_along_axis(w, idx, weights, axis=1)
    w /= np.where(w.sum(axis=1, keepdims=True) > 0, w.sum(axis=1, keepdims=True), 1.0)
    return MixturePDF(w, centres=centres, sigma=sigma, bounds=bounds, ids=ids)
