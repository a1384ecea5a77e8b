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
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from photozsom.artifacts import ArtifactError, read_json
from photozsom.features import feature_bands
from photozsom.io import (
    PDF_SUFFIXES,
    CatalogueWriter,
    PdfWriter,
    open_catalogue,
    output_kind,
    stale_partials,
    table_kind,
)
from photozsom.pdf import MixturePDF
from photozsom.schema import FLAG_OUTPUT

__all__ = ["OPTIONAL_COLUMNS", "PHOTOZ_COLUMNS", "check_job", "flag_file",
           "flag_table", "load_flagger_dir", "load_model", "model_columns", "predict_file",
           "predict_table"]

#: Columns appended by :func:`predict_table` (the DR10 photo-z catalogue's names), redshift.
PHOTOZ_COLUMNS: tuple[str, ...] = (
    "Z_PHOT_MEAN", "Z_PHOT_MEDIAN", "Z_PHOT_MODE", "Z_PHOT_STD",
    "Z_PHOT_L68", "Z_PHOT_U68", "Z_PHOT_L95", "Z_PHOT_U95",
)
def flag_table(catalogue: pd.DataFrame, flagger: Any) -> pd.DataFrame:
    """The flagger's columns for every row, under their ``PZ_*`` output names."""
    fl = flagger.flag(catalogue)
    fl.index = catalogue.index
    return fl.rename(columns=FLAG_OUTPUT)


#: Quantile levels of the median and the central 68% and 95% intervals, in the order of
#: :func:`_summaries`' columns 1, 4, 5, 6, 7.
_LEVELS = (0.5, 0.16, 0.84, 0.025, 0.975)


#: ``PZ_STATUS`` by code: 0 scored inside the training data, 1 outside it, 2 not scored.
_STATUS = np.array(["ok", "outside", "not scored"], dtype=object)


def _summaries(pdf: Any) -> np.ndarray:
    """The :data:`PHOTOZ_COLUMNS` of every P(z), shape (N, 8), redshift.

    Only public methods of the P(z) (``quantiles``, ``mode``, ``moments``), so a
    recalibrated P(z)'s own exact quantiles are used; the median and both central intervals
    come from one :meth:`~photozsom.pdf.MixturePDF.quantiles` call (within 1e-5 of ``ppf``).
    """
    out = np.empty((len(pdf), len(PHOTOZ_COLUMNS)))
    q = pdf.quantiles(_LEVELS)
    mean, std = pdf.moments()
    out[:, 0], out[:, 2], out[:, 3] = mean, pdf.mode(), std
    out[:, 1], out[:, 4:] = q[:, 0], q[:, 1:]
    return out


def _predict_batched(model: Any, catalogue: pd.DataFrame, cells: np.ndarray | None,
                     batch_rows: int, progress=None, *, z: np.ndarray | None = None,
                     keep_pdf: bool = False):
    """``model.predict_with_status`` in batches of rows, each summarised at once: the model's
    working memory (about 12 kB a row with a recalibration) is bounded by the batch, not by
    the chunk, and the P(z) are only concatenated when ``keep_pdf``.

    Returns ``(summaries (n_scored, 8), pit_crps (n_scored, 2) or None, pdf or None, ok,
    reason)``; ``pit_crps`` when ``z`` (the rows' redshifts) is given, NaN where ``z`` is not
    finite or outside the support.
    """

    n = len(catalogue)
    summ, scores, pdfs, oks, reasons = [], [], [], [], []
    for s in range(0, max(n, 1), max(1, batch_rows)):
        sl = slice(s, min(n, s + batch_rows))
        part = catalogue if (sl.start == 0 and sl.stop == n) else catalogue.iloc[sl]
        pdf, ok, reason = model.predict_with_status(
            part, cells=None if cells is None else cells[sl])
        if pdf is not None:
            summ.append(_summaries(pdf))
            if z is not None:
                zs = z[sl][ok]
                sc = np.full((len(zs), 2), np.nan)
                good = np.isfinite(zs) & (zs >= pdf.bounds[0]) & (zs <= pdf.bounds[1])
                if good.any():
                    sub = pdf[good]
                    sc[good, 0], sc[good, 1] = sub.pit(zs[good]), sub.crps(zs[good])
                scores.append(sc)
            if keep_pdf:
                pdfs.append(pdf)
        oks.append(ok)
        reasons.append(np.asarray(reason))
        if progress is not None and n > batch_rows:
            progress(sl.stop - sl.start)
    pdf = None
    if pdfs:
        pdf = pdfs[0] if len(pdfs) == 1 else MixturePDF.concatenate(pdfs)
    ok, reason = np.concatenate(oks), np.concatenate(reasons)
    summaries = np.concatenate(summ) if summ else np.empty((0, len(PHOTOZ_COLUMNS)))
    pit_crps = (np.concatenate(scores) if scores else np.empty((0, 2))) if z is not None else None
    return summaries, pit_crps, pdf, ok, reason


def predict_table(catalogue: pd.DataFrame, model: Any, flagger: Any = None, *,
                  return_pdf: bool = False, batch_rows: int = 25_000, progress=None
                  ) -> pd.DataFrame | tuple[pd.DataFrame, Any, np.ndarray]:
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
    batch_rows : int
        Rows per call of the model (bounds its working memory; the results do not depend on
        it).
    progress : callable, optional
        Called with the number of rows after each batch of the model (progress reports).

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
    z = catalogue["Z"].to_numpy(dtype=np.float64) if "Z" in catalogue.columns else None
    summ, pit_crps, pdf, ok, reason = _predict_batched(
        model, catalogue, cells, int(batch_rows), progress, z=z, keep_pdf=return_pdf)
    vals = np.full((n, len(PHOTOZ_COLUMNS)), np.nan)
    vals[ok] = summ
    out: dict[str, Any] = {c: vals[:, i] for i, c in enumerate(PHOTOZ_COLUMNS)}
    # string columns straight from object arrays: a fixed-width unicode copy of the reasons
    # (as long as the longest, ~120 characters) cost ten times more than the columns
    reason = np.asarray(reason, dtype=object)
    code = np.where(ok, (reason != "").astype(np.int8), np.int8(2))
    out["PZ_STATUS"] = pd.array(_STATUS[code], dtype="str")
    out["PZ_REASON"] = pd.array(reason, dtype="str")
    if z is not None:
        sc = np.full((n, 2), np.nan)
        sc[ok] = pit_crps
        out["PIT"], out["CRPS"] = sc[:, 0], sc[:, 1]
    result = pd.DataFrame(out, index=catalogue.index)
    if flags is not None:
        result = pd.concat([result, flags], axis=1)
    if return_pdf:
        return result, pdf, ok
    return result


#: Columns a catalogue may carry that ``photozsom predict`` uses when present.
OPTIONAL_COLUMNS: dict[str, str] = {
    "FLUX_IVAR_<b>": "a band with FLUX_IVAR <= 0 counts as unmeasured and is imputed",
    "Z": "spectroscopic redshift: adds PIT and CRPS",
    "OBJID": "identifier carried into the --pdf file",
}


def model_columns(model_dir: str | os.PathLike) -> list[str]:
    """The catalogue columns a saved :class:`~photozsom.model.PhotoZModel` needs, read from
    its ``meta.json`` only (nothing heavy is loaded).

    Catalogue features need ``FLUX_<b>`` and ``MW_TRANSMISSION_<b>`` of every band they use
    (fluxes in nanomaggies; ``FLUX_IVAR_<b>`` optional), shape features ``SHAPE_R``,
    ``SHAPE_E1``, ``SHAPE_E2``, ``SERSIC``, embedding features the model's ``EMB_*`` columns.

    Raises
    ------
    ValueError
        ``model_dir`` is not a saved PhotoZModel.
    """

    d = Path(model_dir)
    if not (d / "meta.json").is_file():
        what = "is a file" if d.is_file() else "has no meta.json" if d.is_dir() else "does not exist"
        raise ValueError(f"--model {d}: {what}; no photozsom photoz_model there. Pass the "
                         f"directory written by PhotoZModel.save or photozsom train")
    try:
        meta = read_json(d / "meta.json")
    except ArtifactError as err:
        raise ValueError(f"--model {d}: the model file {d / 'meta.json'} is corrupt ({err}); "
                         f"re-save or copy the model again") from None
    if meta.get("format") != "photozsom.photoz_model":
        raise ValueError(f"--model {d}: holds {meta.get('format')!r}, no photozsom photoz_model "
                         f"(a flagger goes to --flagger)")
    cols: list[str] = []
    if meta.get("features") in ("catalog", "both"):
        names = meta.get("catalog_features_resolved", meta.get("catalog_features", []))
        names = [] if isinstance(names, str) else list(names)
        for b in feature_bands(names):
            cols += [f"FLUX_{b}", f"MW_TRANSMISSION_{b}"]
        if {"log10_shape_r", "axis_ratio", "sersic"} & set(names):
            cols += ["SHAPE_R", "SHAPE_E1", "SHAPE_E2", "SERSIC"]
    if meta.get("features") in ("embedding", "both"):
        cols += list(meta.get("embedding_columns", []))
    return cols


def _artifact_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


def _broken_file(d: Path) -> tuple[Path, str] | None:
    """The first file of an artifact directory that cannot be read, and why."""
    import json
    import zipfile

    import numpy as np

    for f in _artifact_files(d):
        try:
            if f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix == ".npz":
                with np.load(f, allow_pickle=False) as z:
                    for k in z.files:
                        z[k]
            elif f.suffix == ".parquet":
                import pyarrow.parquet as pq

                pq.read_table(f)
            elif f.suffix == ".csv":
                pd.read_csv(f)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            return f, f"{type(err).__name__}: {err}"
    return None


def load_model(model_dir: str | os.PathLike, *, device: str | None = None):
    """:meth:`PhotoZModel.load` with a one-line error naming the broken file of a corrupt
    (truncated, half-copied) model directory."""
    # torch loads here, not when the command line imports this module: its input, output
    # and model checks (check_job, model_columns) answer in under a second
    from photozsom.model import PhotoZModel

    return _load_artifact_dir(lambda: PhotoZModel.load(model_dir, device=device), model_dir,
                              "--model")


def load_flagger_dir(flagger_dir: str | os.PathLike, *, device: str | None = None):
    """:func:`photozsom.flags.load_flagger` with the same one-line errors as :func:`load_model`."""
    from photozsom.flags import load_flagger  # torch: see load_model

    d = Path(flagger_dir)
    if not (d / "meta.json").is_file():
        what = "is a file" if d.is_file() else "has no meta.json" if d.is_dir() else "does not exist"
        raise ValueError(f"--flagger {d}: no photozsom flagger there ({what}); pass the "
                         f"directory written by Flagger.save (photozsom train writes it as "
                         f"MODEL_DIR/flagger)")
    return _load_artifact_dir(lambda: load_flagger(d, device=device), d, "--flagger")


def _load_artifact_dir(load, d, option: str):
    d = Path(d)
    try:
        return load()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:
        broken = _broken_file(d)
        if broken is not None:
            raise ValueError(f"{option} {d}: the file {broken[0]} is corrupt or truncated "
                             f"({broken[1][:160]}); re-save or copy the directory again") from None
        if isinstance(err, ValueError):
            raise
        raise ValueError(f"{option} {d} cannot be loaded ({type(err).__name__}: {err}); is it "
                         f"a complete directory written by this photozsom?") from None


def _check_input(inp: str | os.PathLike) -> str:
    inp = os.fspath(inp)
    if os.path.isdir(inp):
        raise ValueError(f"input {inp} is a directory; give one catalogue file (.parquet, "
                         f".fits, .csv), or --hats for a HATS catalogue directory")
    if not os.path.exists(inp):
        raise FileNotFoundError(f"input catalogue {inp} does not exist; check the path")
    if not os.access(inp, os.R_OK):
        raise ValueError(f"input catalogue {inp} is not readable (permissions)")
    return table_kind(inp)


def _check_output(path: str | os.PathLike, option: str, overwrite: bool,
                  inp: str | None) -> None:
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{option} {path} is a directory; give a file name inside it")
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path}: directory {os.path.dirname(path) or '.'} does not "
                         f"exist; create it (mkdir -p) or choose another {option}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: directory {os.path.dirname(path) or '.'} is not "
                         f"writable; choose another {option}")
    if os.path.exists(path):
        if inp is not None and os.path.exists(inp) and os.path.samefile(inp, path):
            raise ValueError(f"{option} {path} is the input catalogue; choose another {option}")
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose "
                                  f"another {option}")


def check_job(inp: str | os.PathLike, out: str | os.PathLike, *,
              pdf_path: str | os.PathLike | None = None, overwrite: bool = False,
              model_dir: str | os.PathLike | None = None, report=None) -> None:
    """Check a ``predict`` / ``flag`` job before anything is loaded or computed.

    The input exists, is a file and has a known format; the output's format is one that can be
    streamed (:func:`photozsom.io.output_kind`), its directory exists and is writable, and it
    does not exist unless ``overwrite``; the same for ``pdf_path`` (``.h5`` / ``.hdf5``);
    with ``model_dir``, the input has every column the model needs (:func:`model_columns`,
    from the file's header only). Temporary files that a killed run left beside the outputs
    (:func:`photozsom.io.stale_partials`) are removed, each reported through ``report``.

    Raises
    ------
    ValueError, FileNotFoundError, FileExistsError
        With one line naming the problem and the fix.
    """
    inp = os.fspath(inp)
    _check_input(inp)
    output_kind(out)
    _check_output(out, "-o", overwrite, inp)
    if pdf_path is not None:
        if not os.fspath(pdf_path).lower().endswith(PDF_SUFFIXES):
            raise ValueError(f"--pdf {pdf_path}: the P(z) file is HDF5; name it .h5 or .hdf5")
        if os.path.abspath(pdf_path) == os.path.abspath(out):
            raise ValueError("--pdf and -o name the same file; choose two names")
        _check_output(pdf_path, "--pdf", overwrite, inp)
    if model_dir is not None:
        need = model_columns(model_dir)
        names, _, _ = open_catalogue(inp, 1)
        have = {str(c).upper() for c in names}
        missing = [c for c in need if c.upper() not in have]
        if missing:
            raise ValueError(
                f"{inp} lacks column(s) {', '.join(missing)} that the model {model_dir} needs "
                f"(it needs {', '.join(need)}); add them (fluxes in nanomaggies, "
                f"MW_TRANSMISSION_<b> = 1 for dereddened fluxes) or use a model trained on "
                f"the bands you have")
    for target in [out] + ([pdf_path] if pdf_path is not None else []):
        for stale in stale_partials(target):
            size = stale.stat().st_size / 1e6
            stale.unlink()
            if report is not None:
                report(f"removed {stale} ({size:.1f} MB), left by an interrupted run")


class _Progress:
    """tqdm bar on a terminal; otherwise one line every ``every`` seconds (batch logs)."""

    def __init__(self, total: int | None, desc: str, every: float = 5.0) -> None:
        self.total, self.desc, self.every = total, desc, float(every)
        self.done = 0
        self.t0 = self.last = time.monotonic()
        tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, unit="row") if tty else None

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            if self.total:
                eta = (self.total - self.done) / max(rate, 1e-9)
                print(f"{self.desc}: {self.done:,} / {self.total:,} rows "
                      f"({self.done / self.total:.0%}), {rate:,.0f} rows/s, {eta:,.0f} s left",
                      file=sys.stderr, flush=True)
            else:
                print(f"{self.desc}: {self.done:,} rows, {rate:,.0f} rows/s", file=sys.stderr,
                      flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _stream(inp: str, out: str, chunk_size: int, desc: str, fn, *, extra_writers=(),
            progress_every: float = 5.0) -> dict[str, int]:
    """Read ``inp`` in chunks, append ``fn(chunk)`` columns, write ``out`` atomically.

    On any exception or signal (the command line turns SIGTERM/SIGHUP into exceptions) the
    partial output and the ``extra_writers`` are aborted -- their temporary files removed --
    and the exception is re-raised.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"--chunk-size must be >= 1, got {chunk_size}")
    writers = [CatalogueWriter(out), *extra_writers]
    bar = None
    try:
        _, n_rows, chunks = open_catalogue(inp, int(chunk_size))
        bar = _Progress(n_rows, desc, progress_every)
        stats = {"rows": 0}
        for df in chunks:
            if len(df) == 0:
                continue
            df = df.reset_index(drop=True)
            ticked = [0]

            def tick(k: int, ticked=ticked) -> None:   # progress inside a chunk
                ticked[0] += k
                bar.update(k)

            extra = fn(df, stats, tick)
            clash = [c for c in extra.columns if c in df.columns]
            if clash:
                raise ValueError(f"{inp} already has column(s) {clash} (an earlier photozsom "
                                 f"output?); drop them first")
            writers[0].write(pd.concat([df, extra], axis=1))
            stats["rows"] += len(df)
            bar.update(len(df) - ticked[0])
        if stats["rows"] == 0:
            raise ValueError(f"{inp} has no rows")
        for w in writers[1:]:
            w.close()
        writers[0].close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return stats


def predict_file(inp: str | os.PathLike, out: str | os.PathLike, model: Any, flagger: Any = None,
                 *, pdf_path: str | os.PathLike | None = None, chunk_size: int = 50_000,
                 overwrite: bool = False, pdf_components: int = 64,
                 progress_every: float = 5.0) -> dict[str, int]:
    """Stream a catalogue file through :func:`predict_table` into ``out``.

    Parameters
    ----------
    inp, out : path
        Input and output catalogues (FITS, Parquet or CSV, by extension); the output holds the
        input's columns plus the predicted ones, row for row. Written to a temporary file and
        renamed, so a failed or interrupted run leaves no partial output.
    model, flagger : PhotoZModel, Flagger
    pdf_path : path, optional
        Also stream the P(z) of the scored rows into this ``.h5`` / ``.hdf5`` file
        (:class:`photozsom.io.PdfWriter`: a qp ``mixmod`` ensemble of the ``pdf_components``
        largest components per galaxy, ancil ``row`` = input row, ``OBJID`` when present and
        ``PZ_PDF_DROPPED``; ``qp.read(path)`` or :func:`photozsom.io.read_pdf`).
    chunk_size : int
        Rows per chunk: memory grows by about 8 kB per row of a chunk (the model works in
        batches of at most 25,000 rows).
    pdf_components : int
        Components kept per galaxy in the P(z) file (at most 12 bytes each).
    progress_every : float
        Seconds between progress lines when stderr is not a terminal.

    Returns
    -------
    dict
        ``rows``, ``scored``, ``flagged`` counts (and ``pdf_max_dropped`` with a P(z) file).
    """
    check_job(inp, out, pdf_path=pdf_path, overwrite=overwrite)
    has_ids = "OBJID" in {str(c).upper() for c in open_catalogue(inp, 1)[0]}
    pdf_writer = (PdfWriter(pdf_path, pdf_components, with_ids=has_ids)
                  if pdf_path is not None else None)

    def fn(df: pd.DataFrame, stats: dict, tick) -> pd.DataFrame:
        batch = min(25_000, max(1, len(df) // 4))
        if pdf_writer is not None:
            res, pdf, ok = predict_table(df, model, flagger, return_pdf=True, batch_rows=batch,
                                         progress=tick)
        else:
            res = predict_table(df, model, flagger, batch_rows=batch, progress=tick)
            pdf, ok = None, (res["PZ_STATUS"] != "not scored").to_numpy()
        stats["scored"] = stats.get("scored", 0) + int(ok.sum())
        if "PZ_FLAG" in res:
            stats["flagged"] = stats.get("flagged", 0) + int(res["PZ_FLAG"].sum())
        if pdf_writer is not None and pdf is not None:
            rows = stats["rows"] + np.flatnonzero(ok)
            ids = None
            if has_ids:
                col = next(c for c in df.columns if str(c).upper() == "OBJID")
                ids = df[col].to_numpy()[ok]
            pdf_writer.write(pdf, rows, ids)
        return res

    stats = _stream(os.fspath(inp), os.fspath(out), chunk_size, "photozsom predict", fn,
                    extra_writers=[pdf_writer] if pdf_writer is not None else [],
                    progress_every=progress_every)
    if pdf_writer is not None:
        stats["pdf_max_dropped"] = pdf_writer.max_dropped
    return stats


def flag_file(inp: str | os.PathLike, out: str | os.PathLike, flagger: Any, *,
              chunk_size: int = 1_000_000, overwrite: bool = False,
              progress_every: float = 5.0) -> dict[str, int]:
    """Stream a catalogue file through a flagger (``photozsom flag``); same guarantees as
    :func:`predict_file`."""
    check_job(inp, out, overwrite=overwrite)

    def fn(df: pd.DataFrame, stats: dict, tick) -> pd.DataFrame:
        fl = flag_table(df, flagger)
        for k, c in (("flagged", "PZ_FLAG"), ("ood", "PZ_OOD"),
                     ("underperforming", "PZ_UNDERPERFORMING")):
            stats[k] = stats.get(k, 0) + int(fl[c].sum())
        stats["unmapped"] = stats.get("unmapped", 0) + int((fl["PZ_SOM_CELL"] < 0).sum())
        return fl

    return _stream(os.fspath(inp), os.fspath(out), chunk_size, "photozsom flag", fn,
                   progress_every=progress_every)
