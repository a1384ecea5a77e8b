"""photozsom inside DESC RAIL 2.x: an informer / estimator stage pair and one metric code.

Install with ``pip install "photozsom[rail]"`` (``pz-rail-base``). The stages follow RAIL's
conventions, so they run from RAIL's interactive API (``make_stage`` + ``inform`` /
``estimate``) and from a ceci pipeline file like any RAIL estimator:

* :class:`PhotoZInformer` (a ``CatInformer``) trains a :class:`photozsom.model.PhotoZModel`
  on a RAIL table: the paper's CRPS-trained mixture density network, early-stopped on a
  seeded ``valid_fraction`` of the training rows it holds out itself.
* :class:`PhotoZEstimator` (a ``CatEstimator``) writes a ``qp.Ensemble`` per chunk: the exact
  truncated P(z) tabulated on ``n_grid`` points over [0, 1.6] (``qp.interp``; or the
  untruncated Gaussian mixture, ``qp_kind="mixmod"``), with point estimates and interval
  ends in ``ancil`` (``zmean``, ``zmedian``, ``zmode``, ``z_lo68/z_hi68``,
  ``z_lo95/z_hi95``) and, when ``flagger`` names a directory written by
  :class:`photozsom.flags.Flagger`, the SOM flag (``pz_flag``, ``pz_ood``,
  ``pz_underperforming``: 0/1).

Input columns
-------------
Either DR10 columns (``FLUX_<B>`` in nanomaggies, optionally ``FLUX_IVAR_<B>``,
``MW_TRANSMISSION_<B>``, Tractor shapes): they are used as they are, exactly as
:class:`~photozsom.model.PhotoZModel` uses them; or RAIL-style AB magnitudes (``mag_g_lsst``,
...): ``band_columns`` maps each DR10 band photozsom knows (G, R, I, Z, W1, W2) to a magnitude
column, ``err_columns`` to its 1-sigma magnitude error column (optional). A magnitude becomes
``FLUX = 10**((22.5 - m) / 2.5)`` nanomaggies and its error ``FLUX_IVAR = (2.5 / (ln 10 FLUX
sigma_m))**2``; a magnitude equal to ``nondetect_val`` (RAIL's 99) or not finite becomes an
unmeasured band (``FLUX_IVAR = 0``), which the model imputes with the training median and
the flag marks. Magnitudes are taken as already corrected for Galactic extinction (RAIL's
tables usually are). Bands other than the six DR10 ones (LSST u, y) cannot be used: the
features (:mod:`photozsom.features`) are asinh magnitudes with DR10 softenings. The default
maps LSST g, r, i, z.

The model file
--------------
Not a pickle: the informer's ``model`` output is a zip archive of the
:meth:`PhotoZModel.save` directory (arrays + versioned JSON; RAIL passes models as single
files), written by :func:`write_model` and read by :func:`read_model`
(:class:`PhotoZModelHandle`).

Comparing codes
---------------
:func:`grid_summary` scores any set of P(z) tabulated on a common grid (every RAIL estimator's
``qp.Ensemble`` through :func:`ensemble_summary`) with :mod:`photozsom.evaluation.metrics`, so photozsom
and its peers are measured by one code (``benchmarks/peers.py``).

Examples
--------
>>> from photozsom.rail import PhotoZInformer, PhotoZEstimator     # doctest: +SKIP
>>> inf = PhotoZInformer.make_stage(name="inform_photozsom", model="pz.zip",
...                                 hdf5_groupname="", max_epochs=24)   # doctest: +SKIP
>>> inf.inform(training_table)                                      # doctest: +SKIP
>>> est = PhotoZEstimator.make_stage(name="estimate_photozsom", hdf5_groupname="",
...                                  model=inf.get_handle("model"))  # doctest: +SKIP
>>> ens = est.estimate(test_table).data  # qp.Ensemble; ens.ancil["zmean"]  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import qp
from ceci.config import StageParameter as Param
from rail.core.common_params import SharedParams
from rail.core.data import ModelHandle, TableHandle, TableLike
from rail.estimation.estimator import CatEstimator
from rail.estimation.informer import CatInformer

from photozsom.evaluation import metrics
from photozsom.features import SOFTENING, feature_bands
from photozsom.flags import load_flagger
from photozsom.model import PhotoZModel
from photozsom.schema import as_dataframe

__all__ = [
    "DEFAULT_BAND_COLUMNS",
    "DEFAULT_ERR_COLUMNS",
    "PhotoZEstimator",
    "PhotoZInformer",
    "PhotoZModelHandle",
    "default_features",
    "ensemble_summary",
    "grid_summary",
    "read_model",
    "to_dr10",
    "write_model",
]

#: DR10 band -> RAIL magnitude column: LSST g, r, i, z (RAIL's default test tables).
DEFAULT_BAND_COLUMNS: dict[str, str] = {b: f"mag_{b.lower()}_lsst" for b in ("G", "R", "I", "Z")}
#: DR10 band -> RAIL 1-sigma magnitude-error column.
DEFAULT_ERR_COLUMNS: dict[str, str] = {b: f"mag_err_{b.lower()}_lsst" for b in ("G", "R", "I", "Z")}
_LN10 = np.log(10.0)
#: The DR10 bands photozsom's features know, in wavelength order.
BAND_ORDER: tuple[str, ...] = tuple(SOFTENING)
#: Upper end of photozsom's redshift support.
Z_MAX = 1.6


# --------------------------------------------------------------------------- tables
def _as_frame(data: Any, groupname: str = "") -> pd.DataFrame:
    """A RAIL table (dict of arrays, DataFrame, astropy Table, hdf5 group dict) as a DataFrame."""
    if groupname and isinstance(data, dict) and groupname in data:
        data = data[groupname]
    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True)
    if isinstance(data, dict):
        return pd.DataFrame({k: np.asarray(v) for k, v in data.items()})

    return as_dataframe(data).reset_index(drop=True)


def _check_bands(band_columns: dict, err_columns: dict) -> None:
    bad = [b for b in list(band_columns) + list(err_columns) if str(b).upper() not in BAND_ORDER]
    if bad:
        raise ValueError(f"band_columns/err_columns keys must be DR10 bands {list(BAND_ORDER)}, "
                         f"got {bad}; photozsom cannot use other bands (e.g. LSST u, y)")


def to_dr10(data: Any, band_columns: dict[str, str] | None = None,
            err_columns: dict[str, str] | None = None, *, nondetect_val: float = 99.0,
            groupname: str = "") -> pd.DataFrame:
    """A RAIL table with DR10 flux columns added (``FLUX_<B>``, ``FLUX_IVAR_<B>``).

    Parameters
    ----------
    data : dict of arrays, DataFrame or astropy Table
        The table. When it already has ``FLUX_<B>`` for every band of ``band_columns`` those
        columns are kept as they are (a DR10 table).
    band_columns : dict, optional
        DR10 band (``"G"``, ``"R"``, ``"I"``, ``"Z"``, ``"W1"``, ``"W2"``) -> AB magnitude
        column. Default :data:`DEFAULT_BAND_COLUMNS` (LSST g, r, i, z).
    err_columns : dict, optional
        DR10 band -> 1-sigma magnitude-error column [mag]; bands without one get no
        ``FLUX_IVAR`` column (a finite magnitude then counts as measured). Default
        :data:`DEFAULT_ERR_COLUMNS` where the table has them.
    nondetect_val : float
        Magnitude that marks a non-detection (RAIL: 99); it and non-finite magnitudes become
        unmeasured bands (``FLUX_IVAR = 0``, or ``FLUX = NaN`` without an error column).
    groupname : str
        HDF5 group of the table in a dict of groups ("" for a flat table).

    Returns
    -------
    DataFrame
        All input columns plus ``FLUX_<B>`` [nanomaggies] and ``FLUX_IVAR_<B>``
        [nanomaggies^-2], one row per input row, in input order.
    """
    df = _as_frame(data, groupname)
    band_columns = dict(DEFAULT_BAND_COLUMNS if band_columns is None else band_columns)
    err_columns = dict(DEFAULT_ERR_COLUMNS if err_columns is None else err_columns)
    _check_bands(band_columns, err_columns)
    if len(df) == 0:
        raise ValueError("the RAIL table is empty (0 rows)")
    if all(f"FLUX_{b.upper()}" in df.columns for b in band_columns):
        return df
    missing = [c for c in band_columns.values() if c not in df.columns]
    if missing:
        raise ValueError(
            f"the table lacks magnitude column(s) {missing} named in band_columns and has no DR10 "
            f"FLUX_<B> columns; set band_columns={{'G': 'mag_g', ...}} to the table's columns "
            f"(present: {list(df.columns)[:12]})")
    out = {}
    for band, col in band_columns.items():
        b = band.upper()
        m = df[col].to_numpy(dtype=np.float64)
        det = np.isfinite(m) & (m != nondetect_val)
        with np.errstate(over="ignore", invalid="ignore"):
            flux = np.where(det, 10.0 ** ((22.5 - m) / 2.5), 0.0)
        ecol = err_columns.get(band) or err_columns.get(b)
        if ecol is not None and ecol in df.columns:
            e = df[ecol].to_numpy(dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                ivar = (2.5 / (_LN10 * flux * e)) ** 2
            ok = det & np.isfinite(ivar) & (e > 0)
            out[f"FLUX_{b}"] = flux
            out[f"FLUX_IVAR_{b}"] = np.where(ok, ivar, 0.0)
        else:
            out[f"FLUX_{b}"] = np.where(det, flux, np.nan)
    return pd.concat([df, pd.DataFrame(out, index=df.index)], axis=1)


def default_features(bands: Any) -> list[str]:
    """The catalogue recipe for a set of DR10 bands: the r (else first) magnitude and the
    colours of neighbouring bands in wavelength order, e.g. ``["r", "g-r", "r-i", "i-z"]``."""
    have = [b for b in BAND_ORDER if b in {str(x).upper() for x in bands}]
    if not have:
        raise ValueError(f"no DR10 band among {list(bands)}: use {list(BAND_ORDER)}")
    name = {"W1": "W1", "W2": "W2"}
    lab = [name.get(b, b.lower()) for b in have]
    ref = "r" if "r" in lab else lab[0]
    return [ref] + [f"{a}-{b}" for a, b in itertools.pairwise(lab)]


# --------------------------------------------------------------------------- model file
class PhotoZModelHandle(ModelHandle):
    """RAIL handle for a :class:`PhotoZModel`, no pickle: a zip archive of the
    :meth:`PhotoZModel.save` directory (arrays + versioned JSON).

    RAIL passes models as single files, so the directory is zipped; ``unzip`` gives back a
    directory :meth:`PhotoZModel.load` reads.
    """

    suffix = "zip"

    @classmethod
    def _open(cls, path: str, **kwargs: Any) -> Any:
        return cls._read(path)

    @classmethod
    def _read(cls, path: str, **kwargs: Any) -> PhotoZModel:
        return read_model(path)

    @classmethod
    def _write(cls, data: PhotoZModel, path: str, **kwargs: Any) -> None:
        write_model(data, path)


def write_model(model: PhotoZModel, path: str | os.PathLike) -> Path:
    """Write a fitted model as one zip file (the :meth:`PhotoZModel.save` directory, zipped).

    Parameters
    ----------
    model : PhotoZModel
    path : path
        The file to write (replaced if it exists).
    """
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model")
        part = path.with_name(path.name + ".part")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted((Path(tmp) / "model").rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(Path(tmp) / "model").as_posix())
        os.replace(part, path)
    return path


def read_model(path: str | os.PathLike) -> PhotoZModel:
    """Read a model written by :func:`write_model` (or a :meth:`PhotoZModel.save` directory)."""
    path = Path(path)
    if path.is_dir():
        return PhotoZModel.load(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a photozsom model file (a zip written by "
                         f"photozsom.rail.write_model, e.g. PhotoZInformer's 'model' output)")
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"{path}: unsafe member name {name!r}")
        zf.extractall(tmp)
        return PhotoZModel.load(tmp)


class _CeciCommand:
    """ceci runs a stage as ``python3 -m <top package> <Stage>``; photozsom's ``__main__`` is
    its own command line, so pipeline files run these stages through ceci's entry point."""

    @classmethod
    def generate_command(cls, *args: Any, **kwargs: Any) -> str:
        cmd = super().generate_command(*args, **kwargs)
        return cmd.replace(f"python3 -m photozsom {cls.name}",
                           f"python3 -m ceci {cls.get_module()}.{cls.name}", 1)


def _common_options() -> dict[str, Any]:
    return {
        "band_columns": Param(dict, DEFAULT_BAND_COLUMNS,
                              msg="DR10 band (G, R, I, Z, W1, W2) -> AB magnitude column; ignored "
                                  "for tables that already have FLUX_<B> columns"),
        "err_columns": Param(dict, DEFAULT_ERR_COLUMNS,
                             msg="DR10 band -> 1-sigma magnitude-error column"),
        "nondetect_val": SharedParams.copy_param("nondetect_val"),
    }


class PhotoZInformer(_CeciCommand, CatInformer):
    """Train a :class:`photozsom.model.PhotoZModel` (CRPS-trained MDN) on a RAIL table.

    Configuration parameters (besides RAIL's ``hdf5_groupname``, ``redshift_col``):
    ``band_columns`` / ``err_columns`` / ``nondetect_val`` (see :func:`to_dr10`);
    ``catalog_features`` (list; empty: :func:`default_features` of the mapped bands);
    ``estimator`` ("mdn" or "random_forest"); ``seed``; ``valid_fraction`` (share of the
    training rows held out, seeded, for early stopping and recalibration); ``recalibration``
    ("global", the default as in :class:`~photozsom.model.PhotoZModel`, or "none");
    ``max_epochs`` (0: the MDN's default); ``estimator_options`` (dict
    passed to the MDN / forest).
    """

    name = "PhotoZInformer"
    entrypoint_function = "inform"
    interactive_function = "photozsom_informer"
    config_options = CatInformer.config_options.copy()
    config_options.update(
        redshift_col=SharedParams.copy_param("redshift_col"),
        catalog_features=Param(list, [], msg="photozsom feature names ([]: r and neighbouring "
                                             "colours of the mapped bands)"),
        estimator=Param(str, "mdn", msg="'mdn' or 'random_forest'"),
        seed=Param(int, 0, msg="seed of the split and the estimator"),
        valid_fraction=Param(float, 0.1, msg="share of training rows held out for early stopping"),
        recalibration=Param(str, "global", msg="'global' (PIT recalibration on the held-out "
                                               "rows, as PhotoZModel does by default) or 'none'"),
        max_epochs=Param(int, 0, msg="MDN epochs (0: the MDN's default)"),
        estimator_options=Param(dict, {}, msg="more options of the MDN / forest"),
        **_common_options(),
    )
    outputs = [("model", PhotoZModelHandle)]  # noqa: RUF012 (RAIL declares stage I/O as lists)

    def features(self, table: pd.DataFrame) -> list[str]:
        """The feature recipe this stage trains on."""
        if self.config.catalog_features:
            return list(self.config.catalog_features)
        if all(f"FLUX_{b}" in table.columns for b in self.config.band_columns):
            return default_features(self.config.band_columns)
        return default_features([b for b in BAND_ORDER if f"FLUX_{b}" in table.columns])

    def run(self) -> None:
        cfg = self.config
        table = to_dr10(self.get_data("input"), cfg.band_columns, cfg.err_columns,
                        nondetect_val=cfg.nondetect_val, groupname=cfg.hdf5_groupname)
        if cfg.redshift_col not in table.columns:
            raise ValueError(f"the training table lacks the redshift column {cfg.redshift_col!r}; "
                             f"set redshift_col")
        if not 0 < cfg.valid_fraction < 1:
            raise ValueError(f"valid_fraction must lie in (0, 1), got {cfg.valid_fraction}")
        feats = self.features(table)
        feature_bands(feats)  # unknown names fail here, with the list of valid ones
        z = table[cfg.redshift_col].to_numpy(np.float64)
        rng = np.random.default_rng(cfg.seed)
        val = rng.random(len(table)) < cfg.valid_fraction
        if val.sum() < 2 or (~val).sum() < 2:
            raise ValueError(f"{len(table)} training rows are too few to hold out "
                             f"valid_fraction={cfg.valid_fraction} for early stopping")
        options = dict(cfg.estimator_options)
        if cfg.max_epochs > 0 and cfg.estimator == "mdn":
            options["max_epochs"] = int(cfg.max_epochs)
        recal = None if cfg.recalibration in ("none", "None", "") else cfg.recalibration
        model = PhotoZModel("catalog", seed=cfg.seed, estimator=cfg.estimator,
                            catalog_features=feats, recalibration=recal, **options)
        model.fit(table[~val], z[~val], table[val], z[val], progress=False)
        self.model = model
        self.add_data("model", model)


class PhotoZEstimator(_CeciCommand, CatEstimator):
    """P(z) from a :class:`PhotoZModel` (and optionally the SOM flag) as a ``qp.Ensemble``.

    Configuration parameters (besides RAIL's ``model``, ``hdf5_groupname``, ``chunk_size``,
    ``id_col``, ``redshift_col``): ``band_columns`` / ``err_columns`` / ``nondetect_val``
    (as the informer's); ``qp_kind`` ("interp": the exact truncated density on ``n_grid``
    points over [0, 1.6]; "mixmod": qp's Gaussian mixture, compact but not truncated);
    ``n_grid``; ``flagger`` (a flagger directory, or "None"); ``photsys`` (PHOTSYS given to
    rows of a table without that column, for a two-map flagger).

    ``ancil`` holds ``zmean``, ``zmedian``, ``zmode``, ``z_lo68``, ``z_hi68``, ``z_lo95``,
    ``z_hi95`` (exact, from the mixture) and with a flagger ``pz_flag``, ``pz_ood``,
    ``pz_underperforming`` (int8, 1 = flagged) and ``pz_cell``.
    """

    name = "PhotoZEstimator"
    entrypoint_function = "estimate"
    interactive_function = "photozsom_estimator"
    config_options = CatEstimator.config_options.copy()
    config_options.update(
        qp_kind=Param(str, "interp", msg="'interp' (exact truncated density on a grid) or 'mixmod'"),
        n_grid=Param(int, 1601, msg="grid points on [0, 1.6] for qp_kind='interp'"),
        flagger=Param(str, "None", msg="photozsom flagger directory, or 'None'"),
        photsys=Param(str, "", msg="PHOTSYS ('N'/'S') for tables without it (two-map flagger)"),
        **_common_options(),
    )
    inputs = [("model", PhotoZModelHandle), ("input", TableHandle)]  # noqa: RUF012

    def __init__(self, args: Any, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self._flagger = None

    def open_model(self, **kwargs: Any) -> Any:
        model = super().open_model(**kwargs)
        if model is not None and not isinstance(model, PhotoZModel):
            raise ValueError(f"model must be a PhotoZModel or its directory, got "
                             f"{type(model).__name__}")
        if self.config.flagger not in ("None", "", None):

            self._flagger = load_flagger(self.config.flagger)
        return model

    def _process_chunk(self, start: int, end: int, data: TableLike, first: bool) -> None:
        cfg = self.config
        table = to_dr10(data, cfg.band_columns, cfg.err_columns, nondetect_val=cfg.nondetect_val)
        pdf = self.model.predict(table)
        if cfg.qp_kind == "interp":
            ens = pdf.to_qp("interp", n_grid=int(cfg.n_grid))
        elif cfg.qp_kind == "mixmod":
            ens = pdf.to_qp("mixmod")
        else:
            raise ValueError(f"qp_kind must be 'interp' or 'mixmod', got {cfg.qp_kind!r}")
        lo68, hi68 = pdf.interval(0.68)
        lo95, hi95 = pdf.interval(0.95)
        ancil = {"zmean": pdf.mean(), "zmedian": pdf.median(), "zmode": pdf.mode(),
                 "z_lo68": lo68, "z_hi68": hi68, "z_lo95": lo95, "z_hi95": hi95}
        if self._flagger is not None:
            if cfg.photsys and "PHOTSYS" not in table.columns:
                table = table.assign(PHOTSYS=cfg.photsys)
            fl = self._flagger.flag(table)
            ancil.update(pz_flag=fl["flag"].to_numpy().astype(np.int8),
                         pz_ood=fl["ood"].to_numpy().astype(np.int8),
                         pz_underperforming=fl["underperforming"].to_numpy().astype(np.int8),
                         pz_cell=fl["cell"].to_numpy().astype(np.int64))
        ens.set_ancil({k: np.asarray(v) for k, v in ancil.items()})
        self._do_chunk_output(ens, start, end, first, data=data)


# --------------------------------------------------------------------------- one metric code
def _segment_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integral over a unit-width segment of the square of a linear function from a to b."""
    return (a * a + a * b + b * b) / 3.0


def grid_summary(pdf_values: np.ndarray, z_grid: np.ndarray, z_true: np.ndarray, *,
                 level: float = 0.99, chunk: int = 2000) -> dict[str, float]:
    """Metrics of P(z) tabulated on a common redshift grid, with :mod:`photozsom.evaluation.metrics`.

    Each row is clipped at 0 and normalised on the grid (so P(z) is truncated to the grid's
    range), its CDF is the trapezoid integral (piecewise linear between nodes), the point
    estimate is the median (the CDF's 0.5 crossing), PIT = CDF(z_true), and the CRPS is
    ``int (F(z) - 1{z >= z_true})^2 dz`` integrated exactly for the piecewise-linear CDF.

    Parameters
    ----------
    pdf_values : ndarray, shape (N, G)
        Densities [1/redshift] at ``z_grid``.
    z_grid : ndarray, shape (G,)
        Increasing redshifts covering every ``z_true``.
    z_true : ndarray, shape (N,)
        Spectroscopic redshifts.
    level : float
        Central credible level of PCO.
    chunk : int
        Rows per block (memory).

    Returns
    -------
    dict
        ``n``, ``n_bad`` (rows with no finite positive density: scored as PIT 0.5 at the
        grid's midpoint and counted here, never dropped), ``nmad``, ``eta``, ``bias``,
        ``pco``, ``pit_ks`` (NaN for one galaxy), ``crps`` (mean), ``z_point`` (ndarray, the medians), ``pit`` (ndarray).
    """
    p = np.asarray(pdf_values, dtype=np.float64)
    g = np.asarray(z_grid, dtype=np.float64)
    zt = np.asarray(z_true, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != g.size or p.shape[0] != zt.size:
        raise ValueError(f"pdf_values must have shape (N={zt.size}, G={g.size}), got {p.shape}")
    if g.size < 2 or np.any(np.diff(g) <= 0):
        raise ValueError("z_grid must be increasing with at least 2 points")
    if np.any((zt < g[0]) | (zt > g[-1])):
        raise ValueError(f"z_true must lie inside the grid [{g[0]}, {g[-1]}]")
    n = zt.size
    h = np.diff(g)
    zp, pit, crps = np.empty(n), np.empty(n), np.empty(n)
    n_bad = 0
    for s in range(0, n, chunk):
        q = np.nan_to_num(p[s:s + chunk], nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
        cdf = np.concatenate([np.zeros((len(q), 1)),
                              np.cumsum(0.5 * (q[:, 1:] + q[:, :-1]) * h, axis=1)], axis=1)
        tot = cdf[:, -1:]
        bad = ~(tot[:, 0] > 0)
        n_bad += int(bad.sum())
        cdf = np.where(bad[:, None], (g - g[0]) / (g[-1] - g[0]), cdf / np.where(bad, 1, tot[:, 0])[:, None])
        y = zt[s:s + chunk]
        rows = np.arange(len(q))
        # median: first node where the CDF reaches 0.5, linear inside the cell
        j = np.clip(np.argmax(cdf >= 0.5, axis=1), 1, g.size - 1)
        c0, c1 = cdf[rows, j - 1], cdf[rows, j]
        t = np.where(c1 > c0, (0.5 - c0) / np.where(c1 > c0, c1 - c0, 1), 0.5)
        zp[s:s + chunk] = g[j - 1] + np.clip(t, 0, 1) * h[j - 1]
        # PIT and CRPS: cell k = [g_k, g_k+1] holding y
        k = np.clip(np.searchsorted(g, y, side="right") - 1, 0, g.size - 2)
        u = (y - g[k]) / h[k]
        fy = cdf[rows, k] + u * (cdf[rows, k + 1] - cdf[rows, k])
        pit[s:s + chunk] = fy
        left = _segment_sq(cdf[:, :-1], cdf[:, 1:]) * h              # int F^2 per cell
        right = _segment_sq(1 - cdf[:, :-1], 1 - cdf[:, 1:]) * h      # int (1-F)^2 per cell
        cl = np.concatenate([np.zeros((len(q), 1)), np.cumsum(left, axis=1)], axis=1)
        cr = np.concatenate([np.cumsum(right[:, ::-1], axis=1)[:, ::-1], np.zeros((len(q), 1))],
                            axis=1)
        part = (h[k] * u * _segment_sq(cdf[rows, k], fy)
                + h[k] * (1 - u) * _segment_sq(1 - fy, 1 - cdf[rows, k + 1]))
        crps[s:s + chunk] = cl[rows, k] + cr[rows, k + 1] + part
    pit = np.clip(pit, 0.0, 1.0)
    return {
        "n": int(n),
        "n_bad": n_bad,
        "nmad": metrics.nmad(zt, zp),
        "eta": metrics.outlier_fraction(zt, zp),
        "bias": metrics.bias(zt, zp),
        "pco": metrics.pco_fraction(pit, level),
        "pit_ks": metrics.pit_stats(pit)["ks"] if n >= 2 else float("nan"),
        "crps": float(np.mean(crps)),
        "z_point": zp,
        "pit": pit,
    }


def ensemble_summary(ensemble: qp.Ensemble, z_true: np.ndarray, z_grid: np.ndarray | None = None,
                     **kwargs: Any) -> dict[str, float]:
    """:func:`grid_summary` of a ``qp.Ensemble`` evaluated on ``z_grid`` (default: 1601
    points on [0, 1.6], spacing 0.001)."""
    grid = np.linspace(0.0, Z_MAX, 1601) if z_grid is None else np.asarray(z_grid, np.float64)
    return grid_summary(ensemble.pdf(grid), grid, z_true, **kwargs)
