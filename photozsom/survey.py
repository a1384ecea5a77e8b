"""Survey scale: the pipeline's stages over HATS catalogues with LSDB on Dask.

A HATS catalogue is a directory of Parquet files, one per HEALPix tile (``Norder=k/Dir=d/
Npix=p.parquet``), with a *margin cache*: for every tile, the rows of its neighbours that lie
within a few arcsec of its border. It is how Rubin, ZTF and Gaia catalogues are served;
`LSDB <https://docs.lsdb.io>`_ reads, cross-matches and maps them tile by tile on Dask, so the
same code runs in one process, on a laptop's cores (``workers=N``: a local Dask cluster of
N processes) or on a SLURM / Kubernetes Dask cluster (``scheduler="tcp://host:8786"``).

This module (``pip install 'photozsom[survey]'``) provides

- :func:`to_hats` — write a DataFrame (``lsdb.from_dataframe``) or catalogue files such as
  DR10 sweeps or a spec-z compilation (hats-import, FITS / Parquet / CSV) as a HATS
  catalogue with a margin cache; :func:`simulate_hats` does it for the simulated sky;
  :func:`open_hats` opens one with LSDB.
- :func:`crossmatch_hats` — the nearest photometric object within 2" of each spectroscopic
  row, tile by tile with the photometry's margin cache (pairs across tile borders are
  found); :func:`crossmatch_frame` returns the same rows, columns and order as the
  single-process :func:`photozsom.data.crossmatch.crossmatch`.
- :func:`map_hats` — any ``fn(DataFrame) -> DataFrame`` (one output row per input row) over
  the tiles of a catalogue, written as a new HATS catalogue that carries the input's ids;
  :func:`flag_hats` (the :class:`~photozsom.flags.Flagger`) and :func:`predict_hats`
  (``photozsom.predict.predict_table``) are built on it. Models are loaded from their
  directory once per worker process and reused for every tile it processes.
- :func:`embed_hats` — :func:`photozsom.embed.embed_to_file` tile by tile: the cutouts of a
  tile's objects go into a per-tile cutout store and an embedding file, both resumable.
- :func:`cli_main` — ``photozsom predict --hats IN -o OUT`` / ``photozsom flag --hats IN -o
  OUT`` with ``--workers N`` or ``--scheduler ADDR``.

Rows are never lost or duplicated: each row of a HATS catalogue lives in exactly one tile
(the one holding its ``_healpix_29`` index; a row on a tile border belongs to one side), the
margin cache is read only as the right-hand side of a cross-match, and :func:`map_hats`
checks that every tile's output has as many rows as its input.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.data.crossmatch import output_names
from photozsom.embed import Encoder, embed_to_file
from photozsom.embed.store import CutoutStore
from photozsom.flags import load_flagger
from photozsom.io import table_kind
from photozsom.model import PhotoZModel
from photozsom.predict import flag_table, predict_table
from photozsom.schema import validate

__all__ = [
    "ID_COLUMNS",
    "cli_main",
    "crossmatch_frame",
    "crossmatch_hats",
    "dask_client",
    "embed_hats",
    "flag_hats",
    "map_hats",
    "open_hats",
    "predict_hats",
    "read_hats_frame",
    "simulate_hats",
    "to_hats",
]

#: Input columns every output catalogue of :func:`map_hats` carries (those present).
ID_COLUMNS: tuple[str, ...] = ("OBJID", "RA", "DEC")
#: Default margin of a catalogue written by :func:`to_hats`, arcsec (covers a 2" match).
DEFAULT_MARGIN_ARCSEC: float = 5.0
_ROW = "_PZ_ROW"  # hidden input-order column used by crossmatch_frame


def _need_lsdb():
    try:
        import lsdb
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "photozsom.survey needs lsdb, hats, hats-import and dask[distributed]: "
            "pip install 'photozsom[survey]'"
        ) from err
    return lsdb


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence deprecation chatter of lsdb/nested-pandas under pandas 3 (not ours to fix)."""
    with warnings.catch_warnings():
        try:
            from pandas.errors import Pandas4Warning

            warnings.filterwarnings("ignore", category=Pandas4Warning)
        except ImportError:  # pragma: no cover - pandas < 3
            pass
        warnings.filterwarnings("ignore", message=".*margin_threshold because margin_order.*")
        warnings.filterwarnings("ignore", message=".*to_hats. will be removed.*")
        yield


# ---------------------------------------------------------------------- dask
@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None,
                *, threads_per_worker: int = 1, memory_limit: str | None = "auto") -> Iterator[Any]:
    """A Dask client for the duration of a ``with`` block.

    Parameters
    ----------
    workers : int, optional
        Start a :class:`distributed.LocalCluster` of this many worker *processes* (each with
        ``threads_per_worker`` threads) and close it at the end.
    scheduler : str, optional
        Address of a running Dask scheduler (``"tcp://host:8786"``, e.g. one started by
        ``dask-jobqueue`` on SLURM or by the Dask Helm chart on Kubernetes); its workers
        must have photozsom installed and see the input and output paths.
    threads_per_worker, memory_limit
        Passed to the local cluster.

    Yields
    ------
    distributed.Client or None
        ``None`` when neither argument is given: Dask's default scheduler (an existing client
        if one is active, else threads in this process) is used.
    """
    if workers is not None and scheduler is not None:
        raise ValueError("give either workers= (start a local cluster) or scheduler= "
                         "(use a running one), not both")
    if workers is None and scheduler is None:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with LocalCluster(n_workers=int(workers), threads_per_worker=int(threads_per_worker),
                      processes=True, dashboard_address=":0", memory_limit=memory_limit,
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield client


# ---------------------------------------------------------------------- writing / opening
def _from_dataframe(df: pd.DataFrame, *, ra_column: str, dec_column: str,
                    margin_arcsec: float | None, partition_rows: int, highest_order: int,
                    catalog_name: str | None = None):
    lsdb = _need_lsdb()
    for c in (ra_column, dec_column):
        if c not in df.columns:
            raise ValueError(f"table lacks position column {c!r}; pass ra_column=/dec_column=")
    if len(df) == 0:
        raise ValueError("table has no rows: nothing to write as a HATS catalogue")
    kw: dict[str, Any] = {}
    if margin_arcsec:
        # an explicit margin order two above the finest tile: a margin of whole order-k pixels
        # (a superset of the rows within margin_arcsec of each border). The default, derived
        # from the threshold, enumerates millions of tiny pixels and takes minutes.
        import hats.pixel_math.healpix_shim as hp

        order = highest_order + 2
        while hp.order2mindist(order) * 60.0 < margin_arcsec:
            order -= 1
        if order <= highest_order:
            raise ValueError(f"margin_arcsec={margin_arcsec} is too large for tiles of order "
                             f"{highest_order}; lower highest_order")
        kw["margin_order"] = order
    with _quiet():
        return lsdb.from_dataframe(
            df, ra_column=ra_column, dec_column=dec_column, highest_order=highest_order,
            partition_rows=int(partition_rows), margin_threshold=margin_arcsec,
            catalog_name=catalog_name, **kw)


def to_hats(
    data: pd.DataFrame | str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    *,
    ra_column: str = "RA",
    dec_column: str = "DEC",
    margin_arcsec: float | None = DEFAULT_MARGIN_ARCSEC,
    partition_rows: int = 1_000_000,
    highest_order: int = 7,
    file_format: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a table or catalogue files as a HATS catalogue (with a margin cache).

    Parameters
    ----------
    data : DataFrame, path or list of paths
        An in-memory table (written with ``lsdb.from_dataframe``), or catalogue files -- DR10
        sweeps (FITS), a spec-z compilation, any FITS / Parquet / CSV with ``ra_column`` and
        ``dec_column`` -- imported with the hats-import pipeline, which streams them and
        never holds the whole catalogue in memory.
    out_path : path
        Directory of the new catalogue (a HATS collection: the catalogue and its margin).
    ra_column, dec_column : str
        Position columns, degrees (ICRS).
    margin_arcsec : float or None
        Width of the margin cache, arcsec (at least the cross-match radius); ``None``: none.
        For a DataFrame the margin holds whole small HEALPix pixels along each border, a
        superset of the rows within ``margin_arcsec``.
    partition_rows : int
        Largest number of rows per tile.
    highest_order : int
        Finest HEALPix order of a tile (DataFrame input).
    file_format : {"fits", "parquet", "csv"}, optional
        Format of the files (default: from the first file's extension).
    workers, scheduler
        Dask cluster for the file import (see :func:`dask_client`); a local cluster of
        one process when neither is given.
    overwrite : bool
        Replace an existing ``out_path``.
    progress : bool
        Show progress bars.

    Returns
    -------
    Path
        ``out_path``.
    """
    out = Path(out_path)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
        shutil.rmtree(out)
    name = out.name
    if isinstance(data, pd.DataFrame):
        cat = _from_dataframe(data, ra_column=ra_column, dec_column=dec_column,
                              margin_arcsec=margin_arcsec, partition_rows=partition_rows,
                              highest_order=highest_order, catalog_name=name)
        with _quiet():
            cat.write_catalog(out, catalog_name=name, progress_bar=progress)
        return out
    files = [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(p) for p in data]
    if not files:
        raise ValueError("no input files given")
    for p in files:
        if not p.is_file():
            raise FileNotFoundError(f"input catalogue {p} does not exist")
    if file_format is None:

        file_format = table_kind(files[0])
    from hats_import.collection.arguments import CollectionArguments
    from hats_import.pipeline import pipeline_with_client

    args = CollectionArguments(output_artifact_name=name, output_path=str(out.parent),
                               progress_bar=progress, tmp_dir=str(out.parent / f".{name}-tmp"))
    args.catalog(input_file_list=[str(p) for p in files], file_reader=file_format,
                 ra_column=ra_column, dec_column=dec_column, pixel_threshold=int(partition_rows),
                 highest_healpix_order=max(int(highest_order), 7))
    if margin_arcsec:
        args.add_margin(margin_threshold=float(margin_arcsec), is_default=True)
    with dask_client(workers if workers or scheduler else 1, scheduler) as client, _quiet():
        pipeline_with_client(args, client)
    return out


def open_hats(path: str | os.PathLike, *, columns: Sequence[str] | None = None,
              margin: bool = True):
    """Open a HATS catalogue (or collection) lazily with ``lsdb.open_catalog``.

    Parameters
    ----------
    path : path
        Catalogue or collection directory.
    columns : sequence of str, optional
        Columns to read (default: all).
    margin : bool
        Load the collection's default margin cache (needed on the right-hand side of a
        cross-match).

    Returns
    -------
    lsdb.Catalog
    """
    lsdb = _need_lsdb()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"HATS catalogue {path} does not exist; write one with "
                                f"photozsom.survey.to_hats")
    with _quiet():
        cat = lsdb.open_catalog(path, columns=list(columns) if columns is not None else "all")
    if not margin:
        cat.margin = None
    return cat


def read_hats_frame(path: str | os.PathLike, *, columns: Sequence[str] | None = None,
                    sort_by: str | None = "OBJID") -> pd.DataFrame:
    """A (small) HATS catalogue in memory as a plain DataFrame with NumPy dtypes.

    Rows are sorted by ``sort_by`` (when present) and get a fresh ``RangeIndex``.
    """
    cat = open_hats(path, columns=columns, margin=False)
    with _quiet():
        df = cat.compute(progress_bar=False)
    df = _plain(df).reset_index(drop=True)
    if sort_by is not None and sort_by in df.columns:
        df = df.sort_values(sort_by, kind="stable").reset_index(drop=True)
    return df


def simulate_hats(sky_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                  margin_arcsec: float = DEFAULT_MARGIN_ARCSEC, partition_rows: int = 100_000,
                  overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
    """Write a simulated sky's ``random.parquet`` and ``spec.parquet`` as HATS catalogues.

    Parameters
    ----------
    sky_dir : path
        Directory written by :func:`photozsom.sim.simulate`.
    out_dir : path
        Directory receiving ``random/`` and ``spec/`` (HATS collections with margins).

    Returns
    -------
    dict
        ``{"random": Path, "spec": Path}``.
    """
    sky, out = Path(sky_dir), Path(out_dir)
    paths = {}
    for key in ("random", "spec"):
        src = sky / f"{key}.parquet"
        if not src.is_file():
            raise FileNotFoundError(f"{src} not found: run photozsom.sim.simulate first")
        paths[key] = to_hats(pd.read_parquet(src), out / key, margin_arcsec=margin_arcsec,
                             partition_rows=partition_rows, overwrite=overwrite,
                             progress=progress)
    return paths


# ---------------------------------------------------------------------- dtypes
def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """A partition with pyarrow dtypes as a plain DataFrame with NumPy dtypes.

    Numbers without missing values become NumPy arrays of the same width; with missing
    values, floats get NaN and integers / booleans pandas' nullable dtypes; text becomes
    pandas' string dtype. The index is kept.
    """
    cols = {}
    for c in df.columns:
        s = df[c]
        dt = s.dtype
        if isinstance(dt, pd.ArrowDtype):
            import pyarrow as pa

            t = dt.pyarrow_dtype
            has_na = bool(s.isna().any())
            if pa.types.is_floating(t):
                cols[c] = s.to_numpy(dtype=t.to_pandas_dtype(), na_value=np.nan)
            elif pa.types.is_integer(t):
                nullable = f"{'U' if pa.types.is_unsigned_integer(t) else ''}Int{t.bit_width}"
                cols[c] = s.astype(nullable) if has_na else s.to_numpy(dtype=t.to_pandas_dtype())
            elif pa.types.is_boolean(t):
                cols[c] = s.astype("boolean") if has_na else s.to_numpy(dtype=bool)
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                cols[c] = s.astype("str")
            else:
                cols[c] = s
        else:
            cols[c] = s
    return pd.DataFrame(cols, index=df.index)


# ---------------------------------------------------------------------- cross-match
def _as_catalog(x, *, margin_arcsec: float | None, partition_rows: int, name: str):
    lsdb = _need_lsdb()
    if isinstance(x, lsdb.Catalog):
        return x
    if isinstance(x, (str, os.PathLike)):
        return open_hats(x)
    if isinstance(x, pd.DataFrame):
        return _from_dataframe(x, ra_column="RA", dec_column="DEC", margin_arcsec=margin_arcsec,
                               partition_rows=partition_rows, highest_order=7, catalog_name=name)
    raise ValueError(f"{name}: expected an lsdb Catalog, a HATS path or a DataFrame, got "
                     f"{type(x).__name__}")


def _finish_xmatch(df: pd.DataFrame, rename: dict) -> pd.DataFrame:
    df = df.rename(columns=rename)
    sep = df["SEP_ARCSEC"]
    import pyarrow as pa

    df["MATCHED"] = sep.notna().astype(pd.ArrowDtype(pa.bool_()))
    cols = [c for c in df.columns if c not in ("MATCHED", "SEP_ARCSEC")]
    return df[[*cols, "MATCHED", "SEP_ARCSEC"]]


def crossmatch_hats(spec, phot, radius_arcsec: float = 2.0, *,
                    columns: Sequence[str] | None = None, suffix: str = "_PHOT",
                    partition_rows: int = 1_000_000):
    """Lazy nearest-neighbour cross-match of spectroscopic rows against photometry.

    Every spectroscopic row is kept (a left join): it gets the photometry of the nearest
    photometric object within ``radius_arcsec``, found in the row's tile *and* the
    photometry's margin cache, so a pair split by a tile border is found; unmatched rows
    get missing photometry. Columns are named as in
    :func:`photozsom.data.crossmatch.crossmatch`: the left columns, the photometry
    columns (``suffix`` appended to a name the left already has), ``MATCHED`` and
    ``SEP_ARCSEC`` (arcsec; missing when unmatched).

    Parameters
    ----------
    spec, phot : lsdb.Catalog, path to a HATS catalogue, or DataFrame
        Positions in ``RA, DEC`` (degrees). ``phot`` must carry a margin cache at least
        ``radius_arcsec`` wide (:func:`to_hats` writes one; a DataFrame gets one).
    radius_arcsec : float
        Match radius, arcsec.
    columns : sequence of str, optional
        Photometry columns to join (default: all).
    suffix : str
        Appended to a photometry column name the left side already has.
    partition_rows : int
        Rows per tile when a DataFrame is partitioned here.

    Returns
    -------
    lsdb.Catalog
        Lazy; ``.compute()``, ``.write_catalog(path)`` or :func:`crossmatch_frame`.
    """
    if not radius_arcsec > 0:
        raise ValueError(f"radius_arcsec must be > 0, got {radius_arcsec}")
    left = _as_catalog(spec, margin_arcsec=None, partition_rows=partition_rows, name="spec")
    right = _as_catalog(phot, margin_arcsec=max(DEFAULT_MARGIN_ARCSEC, 2 * radius_arcsec),
                        partition_rows=partition_rows, name="phot")
    if right.margin is None:
        raise ValueError("the photometry catalogue has no margin cache, so pairs across tile "
                         "borders would be missed; write it with to_hats(..., margin_arcsec="
                         f"{max(DEFAULT_MARGIN_ARCSEC, radius_arcsec)})")
    thr = right.margin.hc_structure.catalog_info.margin_threshold
    if thr is not None and thr < radius_arcsec:
        raise ValueError(f"the photometry's margin cache is {thr}\" wide, less than the match "
                         f"radius {radius_arcsec}\"; rebuild it with a wider margin_arcsec")
    taken = [c for c in ("MATCHED", "SEP_ARCSEC") if c in left.columns]
    if taken:
        raise ValueError(f"spectroscopic catalogue already has column(s) {taken} (is it a "
                         f"cross-match output?); drop or rename them before matching again")
    if columns is not None:
        cols = [c.upper() for c in columns]
        missing = [c for c in cols if c not in right.columns]
        if missing:
            raise ValueError(f"photometric catalogue lacks column(s) {missing} requested in "
                             f"columns=")
        keep = list(dict.fromkeys([right.hc_structure.catalog_info.ra_column,
                                   right.hc_structure.catalog_info.dec_column, *cols]))
        right = right[keep]
    else:
        cols = list(right.columns)
    names = output_names(list(left.columns), cols, suffix)
    with _quiet():
        x = left.crossmatch(right, radius_arcsec=float(radius_arcsec), n_neighbors=1,
                            how="left", suffixes=("", "__R"),
                            suffix_method="overlapping_columns", log_changes=False)
    # lsdb's names (suffix only on overlapping columns) -> ours
    overlap = set(left.columns) & set(right.columns)
    rename = {(c + "__R" if c in overlap else c): names[c] for c in right.columns}
    rename["_dist_arcsec"] = "SEP_ARCSEC"
    drop = [c for c in right.columns if c not in cols]
    with _quiet():
        out = x.map_partitions(_finish_xmatch, rename)
    if drop:
        out = out[[c for c in out.columns if c not in {names[d] for d in drop}]]
    return out


def crossmatch_frame(spec: pd.DataFrame, phot, radius_arcsec: float = 2.0, *,
                     columns: Sequence[str] | None = None, suffix: str = "_PHOT",
                     partition_rows: int = 1_000_000,
                     workers: int | None = None, scheduler: str | None = None) -> pd.DataFrame:
    """:func:`crossmatch_hats` computed, in the layout of the single-process cross-match.

    Returns the same table as :func:`photozsom.data.crossmatch.crossmatch` on the same
    inputs: ``spec``'s rows in its order and index, every column, the photometry (missing
    values as NaN for floats and pandas nullable dtypes for integers, booleans and text),
    ``MATCHED`` and ``SEP_ARCSEC``.

    Parameters
    ----------
    spec : DataFrame
        Spectroscopic rows with ``RA, DEC`` (degrees).
    phot : DataFrame, lsdb.Catalog or path to a HATS catalogue
        Photometry.
    radius_arcsec, columns, suffix, partition_rows
        As in :func:`crossmatch_hats`.
    workers, scheduler
        Dask cluster (:func:`dask_client`).
    """

    spec = validate(spec, ["RA", "DEC"], name="spectroscopic catalogue")
    if _ROW in spec.columns:
        raise ValueError(f"spectroscopic catalogue has a column {_ROW!r}; rename it")
    left = spec.reset_index(drop=True)
    left[_ROW] = np.arange(len(left), dtype=np.int64)
    x = crossmatch_hats(left, phot, radius_arcsec, columns=columns, suffix=suffix,
                        partition_rows=partition_rows)
    with dask_client(workers, scheduler), _quiet():
        df = x.compute(progress_bar=False)
        df = pd.DataFrame(df).sort_values(_ROW, kind="stable")
    rows = df[_ROW].to_numpy()
    if len(rows) != len(spec) or not np.array_equal(rows, np.arange(len(spec))):
        raise RuntimeError(f"cross-match returned {len(rows)} rows for {len(spec)} "
                           f"spectroscopic rows")  # a left join keeps each left row once
    df = _plain(df.drop(columns=[_ROW]).reset_index(drop=True))
    out = spec.copy()
    for c in df.columns:
        if c in spec.columns:
            continue
        v = df[c]
        if c == "MATCHED":
            out[c] = v.to_numpy(dtype=bool)
        elif c == "SEP_ARCSEC":
            out[c] = v.to_numpy(dtype=np.float64, na_value=np.nan)
        elif pd.api.types.is_bool_dtype(v.dtype):
            out[c] = v.astype("boolean").array
        elif pd.api.types.is_unsigned_integer_dtype(v.dtype):
            out[c] = v.astype("UInt64").array
        elif pd.api.types.is_integer_dtype(v.dtype):
            out[c] = v.astype("Int64").array
        elif isinstance(v.dtype, pd.StringDtype) or v.dtype == object:
            out[c] = v.astype("str").array
        else:
            out[c] = v.to_numpy() if isinstance(v.dtype, np.dtype) else v.array
    return out


# ---------------------------------------------------------------------- map / predict / flag
@functools.lru_cache(maxsize=8)
def _load(kind: str, path: str, device: str | None) -> Any:
    """A model loaded once per process (per worker) and reused for every tile."""
    if kind == "flagger":

        return load_flagger(path, device=device)
    if kind == "model":

        return PhotoZModel.load(path, device=device)
    if kind == "encoder":

        return Encoder.load(path, device=device)
    raise ValueError(f"unknown model kind {kind!r}")


def _flag_fn(df: pd.DataFrame, flagger_dir: str, device: str | None = None) -> pd.DataFrame:

    return flag_table(df, _load("flagger", flagger_dir, device))


def _predict_fn(df: pd.DataFrame, model_dir: str, flagger_dir: str | None = None,
                device: str | None = None) -> pd.DataFrame:

    model = _load("model", model_dir, device)
    flagger = None if flagger_dir is None else _load("flagger", flagger_dir, device)
    return predict_table(df, model, flagger=flagger)


def _apply(part: pd.DataFrame, fn: Callable, keep: Sequence[str] | None) -> pd.DataFrame:
    """Run ``fn`` on one tile and join its output to the tile's kept columns."""
    import pyarrow as pa

    plain = _plain(part)
    res = fn(plain)
    if not isinstance(res, pd.DataFrame):
        raise TypeError(f"the partition function must return a DataFrame, got "
                        f"{type(res).__name__}")
    if len(res) != len(part):
        raise ValueError(f"the partition function returned {len(res)} rows for a tile of "
                         f"{len(part)}; it must return one row per input row, in order")
    clash = [c for c in res.columns if c in (keep if keep is not None else part.columns)]
    if clash:
        raise ValueError(f"the partition function's output column(s) {clash} already exist "
                         f"in the input; rename them")
    res = res.set_axis(part.index)
    base = part if keep is None else part[list(keep)]
    arrow = pa.Table.from_pandas(res, preserve_index=False).to_pandas(types_mapper=pd.ArrowDtype)
    arrow.index = part.index
    return pd.concat([base, arrow], axis=1)


def map_hats(
    catalog,
    out_path: str | os.PathLike,
    fn: Callable[[pd.DataFrame], pd.DataFrame],
    *,
    keep: Sequence[str] | str | None = ID_COLUMNS,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    catalog_name: str | None = None,
) -> Path:
    """Apply ``fn`` to every tile of a HATS catalogue and write the result as a HATS catalogue.

    Parameters
    ----------
    catalog : path or lsdb.Catalog
        Input catalogue.
    out_path : path
        Output catalogue directory.
    fn : callable
        ``fn(df) -> DataFrame`` with one row per row of ``df``, in order. ``df`` is a plain
        pandas DataFrame (NumPy dtypes) of one tile. It must be picklable to run on
        workers (a module-level function or a ``functools.partial`` of one); load models
        inside it through a per-process cache so each worker loads them once.
    keep : sequence of str, "all" or None
        Input columns carried to the output before ``fn``'s columns: default the ids
        :data:`ID_COLUMNS` present in the input (``RA``/``DEC`` are always kept: a HATS
        catalogue needs its positions); ``"all"`` every input column.
    workers, scheduler
        Dask cluster (:func:`dask_client`).
    overwrite : bool
        Replace an existing ``out_path``.
    progress : bool
        Progress bar of the write.
    catalog_name : str, optional
        Name in the output's properties (default: the directory's name).

    Returns
    -------
    Path
        ``out_path``. Every input row appears exactly once in the output.
    """
    lsdb = _need_lsdb()
    cat = catalog if isinstance(catalog, lsdb.Catalog) else open_hats(catalog, margin=False)
    out = Path(out_path)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
        shutil.rmtree(out)
    info = cat.hc_structure.catalog_info
    ra, dec = info.ra_column, info.dec_column
    if keep is None or (isinstance(keep, str) and keep == "all"):
        keep_cols = None
    else:
        keep_cols = list(dict.fromkeys([c for c in keep if c in cat.columns] + [ra, dec]))
    # output schema from a few real rows (the first tile), computed in this process
    with _quiet():
        sample = cat.to_delayed()[0].compute(scheduler="sync")
    meta = _apply(sample.iloc[: min(len(sample), 16)], fn, keep_cols).iloc[:0]
    with _quiet():
        mapped = cat.map_partitions(_apply, fn, keep_cols, meta=meta)
        with dask_client(workers, scheduler):
            mapped.write_catalog(out, catalog_name=catalog_name or out.name,
                                 progress_bar=progress, overwrite=overwrite)
    return out


def flag_hats(in_path, out_path: str | os.PathLike, flagger_dir: str | os.PathLike, *,
              keep: Sequence[str] | str | None = ID_COLUMNS, workers: int | None = None,
              scheduler: str | None = None, device: str | None = None,
              overwrite: bool = False, progress: bool = True) -> Path:
    """Flag every row of a HATS catalogue with a saved :class:`~photozsom.flags.Flagger`.

    The output catalogue holds ``keep`` (the ids and positions by default) and the
    flag columns under the command line's names (:func:`photozsom.predict.flag_table`:
    ``PZ_SOM, PZ_SOM_CELL, PZ_SOM_DISTANCE, PZ_N_TRAIN, PZ_OOD, PZ_UNDERPERFORMING,
    PZ_FLAG, PZ_FLAG_REASON``), equal row for row to ``flagger.flag`` on the whole table
    in one process. The flagger is loaded from ``flagger_dir`` once per worker process.

    Parameters
    ----------
    in_path : path or lsdb.Catalog
        HATS catalogue with DR10 flux columns.
    out_path : path
        Output HATS catalogue.
    flagger_dir : path
        A saved :class:`~photozsom.flags.Flagger` or ``RegionalFlagger``
        (:func:`photozsom.flags.load_flagger`); workers must see it.
    keep, workers, scheduler, overwrite, progress
        As in :func:`map_hats`.
    device : str, optional
        Torch device of the SOM on each worker (default: CUDA where present).
    """
    fd = os.fspath(Path(flagger_dir).resolve())
    _load("flagger", fd, device)  # fail early, in this process, on a bad directory
    return map_hats(in_path, out_path, functools.partial(_flag_fn, flagger_dir=fd,
                                                         device=device),
                    keep=keep, workers=workers, scheduler=scheduler, overwrite=overwrite,
                    progress=progress)


def predict_hats(in_path, out_path: str | os.PathLike, model_dir: str | os.PathLike,
                 flagger_dir: str | os.PathLike | None = None, *,
                 keep: Sequence[str] | str | None = ID_COLUMNS, workers: int | None = None,
                 scheduler: str | None = None, device: str | None = None,
                 overwrite: bool = False, progress: bool = True) -> Path:
    """Photo-z (and flags) of every row of a HATS catalogue.

    Runs ``photozsom.predict.predict_table(tile, PhotoZModel.load(model_dir), flagger=...)``
    on every tile and writes ``keep`` plus the columns it appends (``Z_PHOT_MEAN,
    Z_PHOT_MEDIAN, ...`` and the ``PZ_*`` flags) as a HATS catalogue. Model and flagger are
    loaded once per worker process.

    Parameters
    ----------
    in_path : path or lsdb.Catalog
        HATS catalogue with the model's input columns.
    out_path : path
        Output HATS catalogue.
    model_dir : path
        Directory written by ``PhotoZModel.save``.
    flagger_dir : path, optional
        Directory written by ``Flagger.save``.
    keep, workers, scheduler, device, overwrite, progress
        As in :func:`flag_hats`.
    """
    md = os.fspath(Path(model_dir).resolve())
    fd = None if flagger_dir is None else os.fspath(Path(flagger_dir).resolve())
    _load("model", md, device)
    if fd is not None:
        _load("flagger", fd, device)
    return map_hats(in_path, out_path, functools.partial(_predict_fn, model_dir=md,
                                                         flagger_dir=fd, device=device),
                    keep=keep, workers=workers, scheduler=scheduler, overwrite=overwrite,
                    progress=progress)


# ---------------------------------------------------------------------- embeddings
def _embed_tile(part: pd.DataFrame, pixel, store_path: str, out_dir: str, encoder_dir: str,
                device: str | None, chunk: int, batch_size: int) -> pd.DataFrame:
    """Embed one tile's cutouts: a per-tile store, then ``embed_to_file`` (both resumable)."""

    tag = f"Norder={pixel.order}_Npix={pixel.pixel}"
    ids = np.asarray(part["OBJID"].to_numpy(), dtype=np.int64)
    shard = Path(out_dir) / "cutouts" / f"{tag}.h5"
    emb = Path(out_dir) / "embeddings" / f"{tag}.h5"
    n = len(ids)
    if n and not shard.exists():
        tmp = shard.with_name(f".partial-{os.getpid()}-{shard.name}")
        with CutoutStore(store_path) as src:
            rows = src.rows_of(ids)
            dst = CutoutStore.create(tmp, size=src.size, overwrite=True, pixscale=src.pixscale)
            try:
                for lo in range(0, n, chunk):
                    r = rows[lo:lo + chunk]
                    images, mask, objid = src.read(r)
                    dst.append(images, mask, objid, src.sigma(r))
            finally:
                dst.close()
        os.replace(tmp, shard)
    if n:
        encoder = _load("encoder", encoder_dir, device)
        embed_to_file(encoder, shard, emb, chunk=chunk, batch_size=batch_size, progress=False)
    return pd.DataFrame({"order": [pixel.order], "pixel": [pixel.pixel], "n_rows": [n],
                         "path": [str(emb) if n else ""]})


def embed_hats(catalog, store_path: str | os.PathLike, out_dir: str | os.PathLike,
               encoder_dir: str | os.PathLike, *, device: str | None = None,
               chunk: int = 4096, batch_size: int = 256, workers: int | None = None,
               scheduler: str | None = None) -> pd.DataFrame:
    """Embed the cutouts of a HATS catalogue's objects, tile by tile, resumably.

    For each tile, the cutouts of its objects (joined on ``OBJID``) are copied from
    ``store_path`` into ``out_dir/cutouts/Norder=k_Npix=p.h5`` (skipped when it exists) and
    embedded with :func:`photozsom.embed.embed_to_file` into
    ``out_dir/embeddings/Norder=k_Npix=p.h5``, which resumes at the first uncommitted chunk
    and skips a finished file. Rerunning after an interruption therefore redoes only the
    unfinished tiles' remaining chunks. The encoder is loaded once per worker process, on
    ``device`` (default: CUDA where the worker has it, else CPU; on a multi-GPU node run
    one worker per GPU with ``CUDA_VISIBLE_DEVICES`` set per worker).

    Parameters
    ----------
    catalog : path or lsdb.Catalog
        Objects to embed (``OBJID`` column); every OBJID must be in the store.
    store_path : path
        :class:`~photozsom.embed.store.CutoutStore` holding their cutouts (all workers
        must see it).
    out_dir : path
        Receives ``cutouts/`` and ``embeddings/``.
    encoder_dir : path
        A saved :class:`~photozsom.embed.Encoder` (``Encoder.save``).
    device, chunk, batch_size
        Passed to the encoder and to ``embed_to_file``.
    workers, scheduler
        Dask cluster (:func:`dask_client`).

    Returns
    -------
    DataFrame
        One row per tile: ``order, pixel, n_rows, path`` (the embedding file).
    """
    lsdb = _need_lsdb()
    cat = catalog if isinstance(catalog, lsdb.Catalog) else open_hats(catalog, margin=False)
    if "OBJID" not in cat.columns:
        raise ValueError("catalogue lacks OBJID, the key that joins it to the cutout store")
    cat = cat[["OBJID"] + [c for c in (cat.hc_structure.catalog_info.ra_column,
                                      cat.hc_structure.catalog_info.dec_column)]]
    out = Path(out_dir)
    (out / "cutouts").mkdir(parents=True, exist_ok=True)
    (out / "embeddings").mkdir(parents=True, exist_ok=True)
    ed = os.fspath(Path(encoder_dir).resolve())
    meta = pd.DataFrame({"order": pd.Series(dtype=np.int64), "pixel": pd.Series(dtype=np.int64),
                         "n_rows": pd.Series(dtype=np.int64), "path": pd.Series(dtype=object)})
    with _quiet():
        parts = cat.to_delayed()
        pixels = cat.get_healpix_pixels()
        import dask

        tasks = [dask.delayed(_embed_tile)(parts[i], pixels[i],
                                           os.fspath(Path(store_path).resolve()),
                                           os.fspath(out.resolve()), ed, device, int(chunk),
                                           int(batch_size))
                 for i in range(len(pixels))]
        with dask_client(workers, scheduler):
            parts = dask.compute(*tasks)
    res = pd.concat([meta, *parts], ignore_index=True) if parts else meta
    return res.astype({"order": np.int64, "pixel": np.int64, "n_rows": np.int64})


# ---------------------------------------------------------------------- command line
def cli_main(args: Any) -> int:
    """``photozsom predict|flag --hats IN -o OUT`` over a HATS catalogue.

    Reads from ``args``: ``input`` (HATS catalogue), ``output`` (new HATS catalogue),
    ``model`` (for ``flag``: a saved Flagger; for ``predict``: a saved PhotoZModel),
    ``flagger`` (predict only, optional), ``workers`` (int, optional), ``scheduler`` (str,
    optional), ``device`` (optional), ``keep_all`` (bool: carry every input column, as the
    single-file command does; default ids and positions only), ``overwrite`` (bool), and
    ``command`` (``"predict"`` or ``"flag"``).

    Returns
    -------
    int
        0 on success.
    """
    import sys
    import time

    cmd = getattr(args, "command", "flag")
    keep = "all" if getattr(args, "keep_all", False) else ID_COLUMNS
    kw = {"keep": keep, "workers": getattr(args, "workers", None),
          "scheduler": getattr(args, "scheduler", None), "device": getattr(args, "device", None),
          "overwrite": bool(getattr(args, "overwrite", False))}
    t0 = time.perf_counter()
    if cmd == "predict":
        out = predict_hats(args.input, args.output, args.model, getattr(args, "flagger", None),
                           **kw)
    elif cmd == "flag":
        out = flag_hats(args.input, args.output, args.model, **kw)
    else:
        raise ValueError(f"--hats works with 'predict' and 'flag', not {cmd!r}")
    cat = open_hats(out, margin=False)
    n = int(cat.hc_structure.catalog_info.total_rows or 0)
    dt = time.perf_counter() - t0
    print(f"photozsom {cmd} --hats: {n} rows in {len(cat.get_healpix_pixels())} tiles -> {out} "
          f"in {dt:.1f} s ({n / max(dt, 1e-9):,.0f} rows/s)", file=sys.stderr)
    return 0
