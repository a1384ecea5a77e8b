"""Apply a saved photo-z model (and flagger) to a catalogue: ``photozsom predict``.

:func:`predict_table` is the whole job for one table in memory: the P(z) summaries under the
names of the DR10 photo-z catalogue (Zhou et al.), the per-row PIT and CRPS when the table
has a spectroscopic ``Z``, and with a flagger the ``PZ_*`` flag columns. :func:`predict_file`
streams a FITS / Parquet / CSV catalogue of any size through it in chunks
(:func:`photozsom.io.open_catalogue`), keeping every row in order: a row that cannot be
scored gets NaN and a reason, never dropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from photozsom.io import CatalogueWriter, open_catalogue, table_kind

__all__ = ["FLAG_OUTPUT", "PHOTOZ_COLUMNS", "flag_file", "flag_table", "predict_file",
           "predict_table"]

#: Columns appended by :func:`predict_table` (the DR10 photo-z catalogue's names), redshift.
PHOTOZ_COLUMNS: tuple[str, ...] = (
    "Z_PHOT_MEAN", "Z_PHOT_MEDIAN", "Z_PHOT_MODE", "Z_PHOT_STD",
    "Z_PHOT_L68", "Z_PHOT_U68", "Z_PHOT_L95", "Z_PHOT_U95",
)
#: Names the flag columns get in an output catalogue.
FLAG_OUTPUT: dict[str, str] = {
    "som": "PZ_SOM",
    "cell": "PZ_SOM_CELL",
    "distance": "PZ_SOM_DISTANCE",
    "n_train": "PZ_N_TRAIN",
    "ood": "PZ_OOD",
    "underperforming": "PZ_UNDERPERFORMING",
    "flag": "PZ_FLAG",
    "reason": "PZ_FLAG_REASON",
}


def flag_table(catalogue: pd.DataFrame, flagger: Any) -> pd.DataFrame:
    """The flagger's columns for every row, under their ``PZ_*`` output names."""
    fl = flagger.flag(catalogue)
    fl.index = catalogue.index
    return fl.rename(columns=FLAG_OUTPUT)


def predict_table(catalogue: pd.DataFrame, model: Any, flagger: Any = None, *,
                  return_pdf: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, Any, np.ndarray]:
    """Photo-z summaries (and flags) of every row of a catalogue, in input order.

    Parameters
    ----------
    catalogue : DataFrame
        DR10 columns (fluxes in nanomaggies), plus ``EMB_*`` columns for an embedding model
        and optionally ``Z`` (spectroscopic redshift) for per-row PIT and CRPS.
    model : PhotoZModel
    flagger : Flagger or RegionalFlagger, optional
        Adds the ``PZ_*`` columns; with a per-cell recalibrated model its cells are used.
    return_pdf : bool
        Also return the P(z) of the scored rows and the scored mask.

    Returns
    -------
    DataFrame
        Same index as ``catalogue``: :data:`PHOTOZ_COLUMNS` (redshift; the 68% and 95%
        intervals are central), ``PZ_STATUS`` ("ok" / "outside" the training data / "not scored"),
        ``PZ_REASON``, ``PIT`` and ``CRPS`` when ``Z`` is present, then the flag columns.
    """
    n = len(catalogue)
    flags = flag_table(catalogue, flagger) if flagger is not None else None
    cells = None
    rc = getattr(model, "recalibrator_", None)
    if rc is not None and getattr(rc, "kind", None) == "cell":
        if flags is None:
            raise ValueError("this model recalibrates P(z) per SOM cell: pass the flagger "
                             "(--flagger DIR) whose map it was calibrated on")
        cells = flags["PZ_SOM_CELL"].to_numpy()
    pdf, ok, reason = model.predict_with_status(catalogue, cells=cells)
    out = {c: np.full(n, np.nan) for c in PHOTOZ_COLUMNS}
    if pdf is not None:
        l68, u68 = pdf.interval(0.68)
        l95, u95 = pdf.interval(0.95)
        for c, v in zip(PHOTOZ_COLUMNS, (pdf.mean(), pdf.median(), pdf.mode(), pdf.std(),
                                         l68, u68, l95, u95), strict=True):
            out[c][ok] = v
    status = np.where(~ok, "not scored", np.where(reason != "", "outside", "ok"))
    out["PZ_STATUS"] = pd.array(status.astype(str), dtype="str")
    out["PZ_REASON"] = pd.array(reason.astype(str), dtype="str")
    if "Z" in catalogue.columns:
        z = catalogue["Z"].to_numpy(dtype=np.float64)
        pit, crps = np.full(n, np.nan), np.full(n, np.nan)
        good = ok & np.isfinite(z)
        if pdf is not None and good.any():
            sub = good[ok]
            pit[good] = pdf[sub].pit(z[good])
            crps[good] = pdf[sub].crps(z[good])
        out["PIT"], out["CRPS"] = pit, crps
    result = pd.DataFrame(out, index=catalogue.index)
    if flags is not None:
        result = pd.concat([result, flags], axis=1)
    if return_pdf:
        return result, pdf, ok
    return result


def _check_paths(inp: str | os.PathLike, out: str | os.PathLike, overwrite: bool) -> None:
    inp, out = os.fspath(inp), os.fspath(out)
    if not os.path.isfile(inp):
        raise FileNotFoundError(f"input catalogue {inp} does not exist")
    if table_kind(out) == "hdf5":
        raise ValueError(f"{out}: write the output catalogue as .parquet, .fits or .csv")
    if os.path.exists(out):
        if os.path.samefile(inp, out):
            raise ValueError("output would overwrite the input catalogue: choose another -o")
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")


def _stream(inp: str, out: str, chunk_size: int, desc: str, fn) -> dict[str, int]:
    """Read ``inp`` in chunks, append ``fn(chunk)`` columns, write ``out`` atomically."""
    if int(chunk_size) < 1:
        raise ValueError(f"--chunk-size must be >= 1, got {chunk_size}")
    _, n_rows, chunks = open_catalogue(inp, int(chunk_size))
    writer = CatalogueWriter(out)
    stats = {"rows": 0}
    bar = tqdm(total=n_rows, desc=desc, unit="row", disable=None)
    try:
        for df in chunks:
            if len(df) == 0:
                continue
            df = df.reset_index(drop=True)
            extra = fn(df, stats)
            clash = [c for c in extra.columns if c in df.columns]
            if clash:
                raise ValueError(f"{inp} already has column(s) {clash} (an earlier photozsom "
                                 f"output?); drop them first")
            writer.write(pd.concat([df, extra], axis=1))
            stats["rows"] += len(df)
            bar.update(len(df))
        if stats["rows"] == 0:
            raise ValueError(f"{inp} has no rows")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return stats


def predict_file(inp: str | os.PathLike, out: str | os.PathLike, model: Any, flagger: Any = None,
                 *, pdf_path: str | os.PathLike | None = None, chunk_size: int = 200_000,
                 overwrite: bool = False) -> dict[str, int]:
    """Stream a catalogue file through :func:`predict_table` into ``out``.

    Parameters
    ----------
    inp, out : path
        Input and output catalogues (FITS, Parquet or CSV, by extension); the output holds the
        input's columns plus the predicted ones, row for row. Written to a temporary file and
        renamed, so a failed run leaves no partial output.
    model, flagger : PhotoZModel, Flagger
    pdf_path : path, optional
        Also write the P(z) of the scored rows as a qp HDF5 file (``qp.read(path)``; qp's
        Gaussian-mixture parameterisation with the model's centres, width and weights, ancil
        ``row`` = input row and ``OBJID`` when present). Needs the ``qp`` extra.
    chunk_size : int
        Rows per chunk (memory ~ 2 kB per row for the P(z)).

    Returns
    -------
    dict
        ``rows``, ``scored``, ``flagged`` counts.
    """
    _check_paths(inp, out, overwrite)
    pdf_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    if pdf_path is not None:
        if Path(pdf_path).exists() and not overwrite:
            raise FileExistsError(f"{pdf_path} exists; pass --overwrite to replace it")
        try:
            import qp  # noqa: F401
        except ImportError as err:
            raise ValueError("--pdf writes a qp file and needs qp: pip install 'photozsom[qp]'") from err

    def fn(df: pd.DataFrame, stats: dict) -> pd.DataFrame:
        res, pdf, ok = predict_table(df, model, flagger, return_pdf=True)
        stats["scored"] = stats.get("scored", 0) + int(ok.sum())
        if "PZ_FLAG" in res:
            stats["flagged"] = stats.get("flagged", 0) + int(res["PZ_FLAG"].sum())
        if pdf_path is not None and pdf is not None:
            rows = stats["rows"] + np.flatnonzero(ok)
            ids = df["OBJID"].to_numpy()[ok] if "OBJID" in df.columns else None
            pdf_rows.append((np.asarray(pdf.weights, dtype=np.float32), rows, ids))
        return res

    stats = _stream(os.fspath(inp), os.fspath(out), chunk_size, "photozsom predict", fn)
    if pdf_path is not None:
        _write_qp(pdf_path, pdf_rows)
    return stats


def _write_qp(path: str | os.PathLike, parts: list) -> None:
    import qp

    from photozsom.artifacts import atomic_path
    from photozsom.pdf import default_grid

    g = default_grid()
    w = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, g.K), np.float32)
    w = w / w.sum(axis=1, keepdims=True)
    ens = qp.Ensemble(qp.mixmod, data={"means": np.broadcast_to(g.centres, w.shape).copy(),
                                       "stds": np.full(w.shape, g.sigma), "weights": w})
    ancil = {"row": np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)}
    if parts and all(p[2] is not None for p in parts):
        ancil["OBJID"] = np.concatenate([p[2] for p in parts])
    ens.set_ancil(ancil)
    with atomic_path(path) as tmp:
        ens.write_to(str(tmp))


def flag_file(inp: str | os.PathLike, out: str | os.PathLike, flagger: Any, *,
              chunk_size: int = 1_000_000, overwrite: bool = False) -> dict[str, int]:
    """Stream a catalogue file through a flagger (``photozsom flag``); same guarantees as
    :func:`predict_file`."""
    _check_paths(inp, out, overwrite)

    def fn(df: pd.DataFrame, stats: dict) -> pd.DataFrame:
        fl = flag_table(df, flagger)
        for k, c in (("flagged", "PZ_FLAG"), ("ood", "PZ_OOD"),
                     ("underperforming", "PZ_UNDERPERFORMING")):
            stats[k] = stats.get(k, 0) + int(fl[c].sum())
        stats["unmapped"] = stats.get("unmapped", 0) + int((fl["PZ_SOM_CELL"] < 0).sum())
        return fl

    return _stream(os.fspath(inp), os.fspath(out), chunk_size, "photozsom flag", fn)
