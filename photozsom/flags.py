"""Flag a user's galaxies where training data is thin or the photo-z model under-performs.

The paper's proposal (its Discussion): map a galaxy onto the SOM trained on a random,
representative sample of DR10 colours, and warn the user when it falls

- where the spectroscopic training set is **thin**: its cell holds fewer than
  ``min_count`` training galaxies, or the galaxy lies farther from its cell's prototype
  than the ``distance_quantile`` of the training galaxies' distances (a colour the
  training set does not sample) — together "out of distribution", ``ood``;
- in a cell where the model is known to **under-perform**: the test sample's metric in
  the cell is significantly worse than the global value after the Benjamini-Hochberg
  correction of :func:`photozsom.cells.report` (``<metric>_worse``), for the metrics the
  user picks.

:class:`Flagger` holds the SOM, the per-cell report and the thresholds; :meth:`Flagger.flag`
returns one row per input row in input order, never dropping one: a row whose SOM features
cannot be computed (no i-band in the north, zero inverse variance, NaN flux) gets
``flag=True`` and a reason. :func:`threshold_curve` shows, for a range of thresholds, which
fraction of a sample is kept and the MAD, bias, η and PCO expected of what is kept, so a
user can choose thresholds for their own analysis (the paper leaves this as future work).

``photozsom flag INPUT -o OUTPUT --model DIR`` (:func:`cli_main`) flags a FITS, Parquet or
CSV catalogue with DR10 columns, streaming it in chunks.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from photozsom.som import SOM
>>> from photozsom import cells, flags
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(3000, 2)); z = rng.uniform(0.1, 1, 3000)
>>> som = SOM((4, 4), n_features=2, seed=0).fit(X, epochs=3, progress=False)
>>> cell, dist = som.predict_with_distances(X)
>>> rep = cells.report(cell, z, z + 0.02 * rng.standard_normal(3000), None, som.n_cells,
...                    np.bincount(cell, minlength=16), n_boot=50)
>>> fl = flags.Flagger(som, rep, train_distances=dist)
>>> out = fl.flag(np.array([[0.0, 0.0], [50.0, 50.0], [np.nan, 0.0]]))
>>> out["ood"].tolist(), out["flag"].tolist()
([False, True, True], [False, True, True])
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from photozsom.cells import METRICS
from photozsom.datasets.schema import BANDS, COLUMNS, as_dataframe
from photozsom.features import SOM_FEATURES, magnitudes, som_features
from photozsom.metrics import MAD_SCALE, OUTLIER_THRESHOLD, pco_mask

__all__ = ["CLI_COLUMNS", "FLAG_COLUMNS", "Flagger", "cli_main", "threshold_curve"]

#: Columns of :meth:`Flagger.flag`, in order.
FLAG_COLUMNS: tuple[str, ...] = (
    "cell",
    "distance",
    "n_train",
    "ood",
    "underperforming",
    "flag",
    "reason",
)
#: Names the command line gives the flag columns in the output catalogue.
CLI_COLUMNS: dict[str, str] = {
    "cell": "PZ_SOM_CELL",
    "distance": "PZ_SOM_DISTANCE",
    "n_train": "PZ_N_TRAIN",
    "ood": "PZ_OOD",
    "underperforming": "PZ_UNDERPERFORMING",
    "flag": "PZ_FLAG",
    "reason": "PZ_FLAG_REASON",
}

_FORMAT_VERSION = 1
_LABELS = {"mad": "MAD", "bias": "bias", "eta": "eta", "pco": "PCO"}
_PERCENT = {"eta", "pco"}
_SOM_BAND_COLUMNS = [f"{p}_{b}" for b in BANDS for p in ("FLUX", "FLUX_IVAR", "MW_TRANSMISSION")]


def _fmt(metric: str, value: float) -> str:
    return f"{100 * value:.2g}%" if metric in _PERCENT else f"{value:.3g}"


class Flagger:
    """Out-of-distribution and under-performing-cell flags for a fitted SOM.

    Parameters
    ----------
    som : photozsom.som.SOM
        The trained map (anything with ``n_cells`` and ``predict_with_distances(X)``).
    report : DataFrame
        :func:`photozsom.cells.report` of the test sample on this map (one row per cell,
        columns ``<metric>_worse``).
    train_counts : array_like of int, shape (n_cells,), optional
        Training (spectroscopic) galaxies per cell. Default: the report's ``n_train``.
    min_count : int
        A cell with fewer training galaxies is "thin" and its galaxies are ``ood``
        (default 10).
    distance_quantile : float
        Quantile of ``train_distances`` beyond which a galaxy is ``ood`` (default 0.99: 1 %
        of the training galaxies themselves lie beyond it).
    train_distances : array_like, shape (N_train,), optional
        Distances of the training galaxies to their prototypes
        (``som.distances(X_train)``, standardised feature units). Without it and without
        ``max_distance`` the distance criterion is off.
    max_distance : float, optional
        Explicit distance threshold (standardised units); overrides ``distance_quantile``.
    metrics : sequence of str
        Which of ``mad, bias, eta, pco`` make a cell under-performing when significantly
        worse than global (default all four).
    fdr : float, optional
        False discovery rate for calling a cell under-performing. Default: the one the
        report was built with (its ``<metric>_worse`` columns); a value here re-applies the
        Benjamini-Hochberg threshold to the report's adjusted p-values ``<metric>_q``
        (stricter: smaller ``fdr``).

    Attributes
    ----------
    distance_threshold : float
        The distance beyond which a galaxy is ``ood`` (``inf`` when the criterion is off).
    thin : ndarray of bool, shape (n_cells,)
        Cells with fewer than ``min_count`` training galaxies.
    underperforming_cells : ndarray of bool, shape (n_cells,)
        Cells significantly worse than global on one of ``metrics``.
    """

    def __init__(
        self,
        som: Any,
        report: pd.DataFrame,
        train_counts: np.ndarray | None = None,
        *,
        min_count: int = 10,
        distance_quantile: float = 0.99,
        train_distances: np.ndarray | None = None,
        max_distance: float | None = None,
        metrics: Sequence[str] = ("mad", "eta", "pco", "bias"),
        fdr: float | None = None,
    ) -> None:
        n_cells = int(som.n_cells)
        if len(report) != n_cells:
            raise ValueError(
                f"report has {len(report)} rows but the SOM has {n_cells} cells; "
                f"build the report with n_cells=som.n_cells"
            )
        metrics = tuple(metrics)
        bad = [m for m in metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; choose from {list(METRICS)}")
        missing = [f"{m}_worse" for m in metrics if f"{m}_worse" not in report]
        if missing:
            raise ValueError(f"report lacks {missing}: build it with photozsom.cells.report")
        if train_counts is None:
            if "n_train" not in report or not np.isfinite(report["n_train"].to_numpy(float)).all():
                raise ValueError(
                    "pass train_counts (training galaxies per cell) or a report "
                    "built with train_counts="
                )
            train_counts = report["n_train"].to_numpy()
        train_counts = np.asarray(train_counts)
        if train_counts.shape != (n_cells,) or np.any(train_counts < 0):
            raise ValueError(
                f"train_counts must hold {n_cells} non-negative counts, got shape "
                f"{train_counts.shape}"
            )
        if not (int(min_count) == min_count and min_count >= 0):
            raise ValueError(f"min_count must be a non-negative integer, got {min_count}")
        if not 0 < distance_quantile <= 1:
            raise ValueError(f"distance_quantile must lie in (0, 1], got {distance_quantile}")
        self.som = som
        self.train_counts = train_counts.astype(np.int64)
        self.report = report.copy()
        self.report.attrs = dict(report.attrs)
        self.report["n_train"] = self.train_counts
        self.min_count = int(min_count)
        self.distance_quantile = float(distance_quantile)
        self.metrics = metrics
        if max_distance is not None:
            if not max_distance > 0:
                raise ValueError(f"max_distance must be > 0, got {max_distance}")
            self.distance_threshold = float(max_distance)
        elif train_distances is not None:
            d = np.asarray(train_distances, dtype=np.float64).ravel()
            d = d[np.isfinite(d)]
            if d.size == 0:
                raise ValueError("train_distances has no finite value")
            self.distance_threshold = float(np.quantile(d, self.distance_quantile))
        else:
            self.distance_threshold = float("inf")
        self.thin = self.train_counts < self.min_count
        if fdr is not None and not 0 < fdr < 1:
            raise ValueError(f"fdr must lie in (0, 1), got {fdr}")
        self.fdr = None if fdr is None else float(fdr)
        glob = self.report.attrs.get("global", {})
        self._metric_worse: dict[str, np.ndarray] = {}
        worse = np.zeros(n_cells, dtype=bool)
        for m in metrics:
            if self.fdr is None:
                mw = self.report[f"{m}_worse"].to_numpy(dtype=bool)
            else:
                if f"{m}_q" not in self.report or m not in glob:
                    raise ValueError(
                        f"report lacks {m}_q or the global {m}: build it with cells.report"
                    )
                v = self.report[m].to_numpy(dtype=float)
                g = float(glob[m])
                with np.errstate(invalid="ignore"):
                    direction = np.abs(v) > abs(g) if m == "bias" else v > g
                q = np.nan_to_num(self.report[f"{m}_q"].to_numpy(dtype=float), nan=1.0)
                mw = (q <= self.fdr) & direction
            self._metric_worse[m] = mw
            worse |= mw
        self.underperforming_cells = worse
        self._cell_reasons = self._build_cell_reasons()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_training(cls, som: Any, X_train: Any, report: pd.DataFrame, **kwargs: Any) -> Flagger:
        """A flagger whose training counts and distance threshold come from the training set.

        Parameters
        ----------
        som : photozsom.som.SOM
        X_train : DataFrame, astropy Table or ndarray
            The training (spectroscopic) sample: a DR10 catalogue or its SOM feature matrix.
            Rows without valid features are not counted.
        report : DataFrame
            :func:`photozsom.cells.report` of the test sample.
        **kwargs
            Passed to :class:`Flagger` (``min_count``, ``distance_quantile``, ``metrics``).
        """
        X, valid, _ = _features(X_train, int(getattr(som, "n_features", len(SOM_FEATURES))))
        cell, dist = som.predict_with_distances(X[valid])
        counts = np.bincount(cell, minlength=int(som.n_cells))
        return cls(som, report, counts, train_distances=dist, **kwargs)

    def _build_cell_reasons(self) -> np.ndarray:
        """Reason text per (cell, far-from-prototype) combination: object array (n_cells, 2)."""
        glob = self.report.attrs.get("global", {})
        n_cells = len(self.train_counts)
        tab = np.empty((n_cells, 2), dtype=object)
        far = (
            f"outside the training colours: distance to the prototype > "
            f"{self.distance_threshold:.3g} (the {self.distance_quantile:.3g} quantile of the "
            f"training galaxies)"
        )
        rep = self.report
        for c in range(n_cells):  # once per cell at construction, not per galaxy
            parts = []
            if self.thin[c]:
                parts.append(
                    f"thin training data: cell {c} holds {self.train_counts[c]} training "
                    f"galaxies (< min_count={self.min_count})"
                )
            if self.underperforming_cells[c]:
                bad = [
                    f"{_LABELS[m]} {_fmt(m, rep[m].iat[c])} vs global "
                    f"{_fmt(m, glob.get(m, np.nan))}"
                    for m in self.metrics
                    if self._metric_worse[m][c]
                ]
                parts.append(f"under-performing cell {c}: " + ", ".join(bad))
            tab[c, 0] = "; ".join(parts)
            tab[c, 1] = "; ".join([far] + parts)
        return tab

    # ------------------------------------------------------------------ flagging
    def flag(self, data: Any, *, progress: bool = False) -> pd.DataFrame:
        """Flag every row of a catalogue or SOM feature matrix.

        Parameters
        ----------
        data : DataFrame, astropy Table, structured array, or ndarray of shape (N, D)
            A DR10 catalogue (fluxes in nanomaggies; its SOM features are computed with
            :func:`photozsom.features.som_features`) or the feature matrix itself. A
            catalogue without any i-band column (northern sweeps) is accepted: its rows are
            flagged "no i-band".
        progress : bool
            Progress bar of the SOM mapping.

        Returns
        -------
        DataFrame
            One row per input row, in input order (the input's index for a DataFrame):

            - ``cell`` (int64; -1 where no SOM feature could be computed),
            - ``distance`` (to the cell's prototype, standardised feature units; NaN when
              not mapped),
            - ``n_train`` (training galaxies in the cell; -1 when not mapped),
            - ``ood`` (thin cell, far from the prototype, or not mapped),
            - ``underperforming`` (cell significantly worse than global on ``metrics``),
            - ``flag`` (``ood | underperforming``),
            - ``reason`` (why, in words; empty when not flagged).
        """
        n_feat = int(getattr(self.som, "n_features", len(SOM_FEATURES)))
        X, valid, bad_reason = _features(data, n_feat)
        n = len(X)
        cell = np.full(n, -1, dtype=np.int64)
        dist = np.full(n, np.nan, dtype=np.float64)
        if valid.any():
            c, d = self.som.predict_with_distances(X[valid], progress=progress)
            cell[valid], dist[valid] = c, d
        far = valid & (dist > self.distance_threshold)
        safe = np.where(valid, cell, 0)
        n_train = np.where(valid, self.train_counts[safe], -1)
        ood = ~valid | far | (valid & self.thin[safe])
        under = valid & self.underperforming_cells[safe]
        flag = ood | under
        reason = np.empty(n, dtype=object)
        reason[valid] = self._cell_reasons[cell[valid], far[valid].astype(np.intp)]
        reason[~valid] = bad_reason
        index = data.index if isinstance(data, pd.DataFrame) else pd.RangeIndex(n)
        return pd.DataFrame(
            {
                "cell": cell,
                "distance": dist,
                "n_train": n_train.astype(np.int64),
                "ood": ood,
                "underperforming": under,
                "flag": flag,
                "reason": pd.array(reason, dtype="str"),
            },
            index=index,
        )

    def threshold_curve(
        self,
        cell: np.ndarray,
        z_true: np.ndarray,
        z_pred: np.ndarray,
        pit_values: np.ndarray | None = None,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """:func:`threshold_curve` with this flagger's report (training counts included)."""
        return threshold_curve(self.report, cell, z_true, z_pred, pit_values, **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the flagger to a directory: ``som.npz``, ``report.parquet``, ``flagger.json``.

        Returns
        -------
        Path
            The directory.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(
                f"{path} exists and is not a directory; Flagger.save writes a directory"
            )
        path.mkdir(parents=True, exist_ok=True)
        self.som.save(path / "som.npz")
        rep = self.report.copy()
        rep.attrs = {}
        rep.to_parquet(path / "report.parquet")
        thr = self.distance_threshold
        config = {
            "format_version": _FORMAT_VERSION,
            "min_count": self.min_count,
            "distance_quantile": self.distance_quantile,
            "distance_threshold": None if not np.isfinite(thr) else thr,
            "metrics": list(self.metrics),
            "fdr": self.fdr,
            "train_counts": self.train_counts.tolist(),
            "global": {
                k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in self.report.attrs.get("global", {}).items()
            },
        }
        (path / "flagger.json").write_text(json.dumps(config, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> Flagger:
        """Read a flagger written by :meth:`save` (the SOM with :meth:`photozsom.som.SOM.load`)."""
        from photozsom.som import SOM

        path = Path(path)
        cfg_path = path / "flagger.json"
        if not cfg_path.is_file():
            raise ValueError(
                f"{path} is not a saved Flagger (no flagger.json); write one with "
                f"Flagger.save(directory)"
            )
        config = json.loads(cfg_path.read_text())
        if config.get("format_version", 0) > _FORMAT_VERSION:
            raise ValueError(
                f"{path} was written by a newer photozsom (flagger format "
                f"{config['format_version']}); upgrade photozsom"
            )
        som = SOM.load(path / "som.npz", device=device)
        rep = pd.read_parquet(path / "report.parquet")
        rep.attrs = {
            "global": {k: (np.nan if v is None else v) for k, v in config.get("global", {}).items()}
        }
        thr = config["distance_threshold"]
        return cls(
            som,
            rep,
            np.asarray(config["train_counts"]),
            min_count=config["min_count"],
            distance_quantile=config["distance_quantile"],
            max_distance=None if thr is None else float(thr),
            metrics=config["metrics"],
            fdr=config.get("fdr"),
        )

    def __repr__(self) -> str:
        return (
            f"Flagger(n_cells={len(self.train_counts)}, min_count={self.min_count}, "
            f"distance_threshold={self.distance_threshold:.3g}, metrics={list(self.metrics)}, "
            f"thin cells={int(self.thin.sum())}, under-performing cells="
            f"{int(self.underperforming_cells.sum())})"
        )


def _features(data: Any, n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOM features of a catalogue or matrix, the valid-row mask and reasons for invalid rows."""
    is_matrix = isinstance(data, np.ndarray) and data.dtype.names is None
    if is_matrix:
        X = np.asarray(data, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != n_features:
            raise ValueError(f"feature matrix must have shape (N, {n_features}), got {X.shape}")
        if len(X) == 0:
            raise ValueError("feature matrix is empty (0 rows): nothing to flag")
        bad = ~np.isfinite(X)
        valid = ~bad.any(axis=1)
        names = (
            SOM_FEATURES
            if n_features == len(SOM_FEATURES)
            else [f"x{i}" for i in range(n_features)]
        )
        reasons = _mask_reasons(bad[~valid], names, "no SOM features: non-finite feature(s) {}")
        return X, valid, reasons
    if n_features != len(SOM_FEATURES):
        raise ValueError(
            f"this SOM has {n_features} features, not the {len(SOM_FEATURES)} catalogue "
            f"SOM features {SOM_FEATURES}: pass its feature matrix instead of a catalogue"
        )
    df = as_dataframe(data)
    if len(df) == 0:
        raise ValueError("catalogue is empty (0 rows): nothing to flag")
    i_cols = ["FLUX_I", "FLUX_IVAR_I", "MW_TRANSMISSION_I"]
    if not any(c in df.columns for c in i_cols):  # a northern catalogue: no i-band at all
        df = df.assign(FLUX_I=np.nan, FLUX_IVAR_I=0.0, MW_TRANSMISSION_I=1.0)
    X, valid = som_features(df)
    reasons = np.empty(0, dtype=object)
    if not valid.all():
        mags = magnitudes(df.iloc[np.flatnonzero(~valid)])
        bad = ~np.isfinite(mags.to_numpy())
        reasons = _mask_reasons(
            bad,
            list(BANDS),
            "no SOM features: no valid flux in band(s) {} (FLUX_IVAR <= 0, non-finite FLUX or "
            "MW_TRANSMISSION <= 0; northern BASS/MzLS rows have no i-band)",
        )
    return X.astype(np.float64), valid, reasons


def _mask_reasons(bad: np.ndarray, names: Sequence[str], template: str) -> np.ndarray:
    """One reason string per row of a boolean mask (unique patterns formatted once)."""
    if len(bad) == 0:
        return np.empty(0, dtype=object)
    patterns, inverse = np.unique(bad, axis=0, return_inverse=True)
    texts = np.array(
        [
            template.format(", ".join(n for n, b in zip(names, p, strict=True) if b))
            if p.any()
            else "no SOM features"
            for p in patterns
        ],
        dtype=object,
    )
    return texts[np.ravel(inverse)]


# ---------------------------------------------------------------------- threshold curve
def _weighted_median(sorted_x: np.ndarray, w: np.ndarray) -> float:
    """Weighted median of sorted values; equals :func:`numpy.median` for equal weights."""
    cw = np.cumsum(w)
    if cw[-1] <= 0:
        return float("nan")
    half, tol = 0.5 * cw[-1], 1e-9 * cw[-1]
    i = int(np.searchsorted(cw, half - tol, side="left"))
    if cw[i] <= half + tol:  # the half-way point falls between two values: average them
        j = min(int(np.searchsorted(cw, cw[i] + tol, side="right")), len(cw) - 1)
        return float(0.5 * (sorted_x[i] + sorted_x[j]))
    return float(sorted_x[i])


def threshold_curve(
    report: pd.DataFrame,
    cell: np.ndarray,
    z_true: np.ndarray,
    z_pred: np.ndarray,
    pit_values: np.ndarray | None = None,
    *,
    criterion: str = "n_train",
    thresholds: np.ndarray | None = None,
    distance: np.ndarray | None = None,
    sample_cell: np.ndarray | None = None,
    sample_distance: np.ndarray | None = None,
    level: float = 0.99,
    outlier_threshold: float = OUTLIER_THRESHOLD,
) -> pd.DataFrame:
    """Fraction of a sample kept, and the metrics of what is kept, against a flag threshold.

    The metrics are measured on the labelled test sample (``cell``, ``z_true``, ``z_pred``).
    With ``sample_cell`` (the cells of a user's unlabelled sample) the fraction kept is the
    user's, and the test galaxies are reweighted cell by cell to the user's cell occupancy
    (weight ``f_user(c) / f_test(c)``), giving the performance expected for the user's kept
    galaxies if performance within a cell transfers. User galaxies in cells without test
    galaxies are counted as kept or not but cannot contribute to the expected metrics.

    Parameters
    ----------
    report : DataFrame
        :func:`photozsom.cells.report` with ``n_train`` (e.g. ``Flagger.report``).
    cell : array_like of int, shape (N,)
        SOM cells of the test galaxies (-1 = unmapped: never kept).
    z_true, z_pred : array_like, shape (N,)
        Spectroscopic redshift and point estimate of the test galaxies.
    pit_values : array_like, shape (N,), optional
        PIT values (for the PCO column; NaN without).
    criterion : str
        What is thresholded; a galaxy is kept when

        - ``"n_train"``: its cell holds ``>= t`` training galaxies (``min_count``);
        - ``"distance"``: its distance to the prototype is ``<= t`` (needs ``distance`` and,
          with ``sample_cell``, ``sample_distance``);
        - ``"mad"``, ``"eta"``, ``"pco"``, ``"bias"``: its cell's test value (``|bias|``) is
          ``<= t`` (cells without a value are not kept).
    thresholds : array_like, optional
        Values of ``t``. Default: 30 values spanning the criterion's range (log-spaced
        training counts; quantiles otherwise).
    distance, sample_distance : array_like, optional
        Distances to the prototype of the test and user galaxies (criterion "distance").
    sample_cell : array_like of int, optional
        Cells of the user's sample.
    level, outlier_threshold : float
        PCO level and η threshold.

    Returns
    -------
    DataFrame
        One row per threshold: ``threshold``, ``n_kept`` and ``fraction_kept`` (of the user's
        sample, else the test sample), ``n_test_kept``, and the (reweighted) ``mad``,
        ``bias``, ``eta`` (fraction), ``pco`` (fraction) of the kept test galaxies.
    """
    cell = np.asarray(cell)
    z_true = np.asarray(z_true, dtype=np.float64)
    z_pred = np.asarray(z_pred, dtype=np.float64)
    n_cells = len(report)
    if cell.ndim != 1 or cell.shape != z_true.shape or cell.shape != z_pred.shape or cell.size == 0:
        raise ValueError("cell, z_true and z_pred must be non-empty 1-D arrays of equal length")
    if cell.min() < -1 or cell.max() >= n_cells:
        raise ValueError(f"cell indices must lie in [-1, {n_cells})")
    ok = (cell >= 0) & np.isfinite(z_true) & np.isfinite(z_pred)
    dz = np.where(ok, (z_pred - z_true) / (1.0 + z_true), 0.0)
    adz = np.abs(dz)
    outl = adz > outlier_threshold
    pco = None
    if pit_values is not None:
        pit = np.asarray(pit_values, dtype=np.float64)
        pco = pco_mask(np.clip(np.where(np.isfinite(pit), pit, 0.5), 0, 1), level)
    safe = np.where(cell >= 0, cell, 0)

    # per-galaxy score that is compared with the threshold (keep if score satisfies t)
    def cell_score(values: np.ndarray, c: np.ndarray) -> np.ndarray:
        s = np.where(c >= 0, values[np.where(c >= 0, c, 0)], np.nan)
        return s

    if criterion == "n_train":
        if "n_train" not in report:
            raise ValueError(
                "report has no n_train: build it with train_counts or use Flagger.report"
            )
        per_cell = report["n_train"].to_numpy(dtype=np.float64)
        larger_keeps = True
    elif criterion == "distance":
        if distance is None:
            raise ValueError("criterion='distance' needs distance= (test galaxies' distances)")
        if sample_cell is not None and sample_distance is None:
            raise ValueError("criterion='distance' with sample_cell needs sample_distance=")
        per_cell = None
        larger_keeps = False
    elif criterion in METRICS:
        per_cell = report[criterion].to_numpy(dtype=np.float64)
        if criterion == "bias":
            per_cell = np.abs(per_cell)
        larger_keeps = False
    else:
        raise ValueError(
            f"criterion must be 'n_train', 'distance' or one of {list(METRICS)}, got {criterion!r}"
        )

    if per_cell is not None:
        score = cell_score(per_cell, cell)
        s_score = None if sample_cell is None else cell_score(per_cell, np.asarray(sample_cell))
    else:
        score = np.where(cell >= 0, np.asarray(distance, dtype=np.float64), np.nan)
        s_score = (
            None
            if sample_cell is None
            else np.where(
                np.asarray(sample_cell) >= 0, np.asarray(sample_distance, dtype=np.float64), np.nan
            )
        )
    ref_score = score if s_score is None else s_score

    if thresholds is None:
        fin = ref_score[np.isfinite(ref_score)]
        if criterion == "n_train":
            hi = max(float(fin.max()) if fin.size else 1.0, 1.0)
            thresholds = np.unique(np.concatenate([[0.0], np.round(np.geomspace(1, hi, 29))]))
        else:
            thresholds = (
                np.unique(np.quantile(fin, np.linspace(0.05, 1.0, 30))) if fin.size else [0.0]
            )
    thresholds = np.asarray(thresholds, dtype=np.float64)

    # weights: reweight test galaxies to the user's cell occupancy
    w = ok.astype(np.float64)
    if sample_cell is not None:
        sc = np.asarray(sample_cell)
        f_user = np.bincount(sc[sc >= 0], minlength=n_cells) / max(sc.size, 1)
        f_test = np.bincount(cell[ok], minlength=n_cells) / max(ok.sum(), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(f_test > 0, f_user / f_test, 0.0)
        w = w * ratio[safe]
    order = np.argsort(adz)
    adz_s, w_s = adz[order], w[order]
    rows = []
    with np.errstate(invalid="ignore"):
        for t in thresholds:  # a few dozen thresholds, each vectorised over galaxies
            keep = (score >= t) if larger_keeps else (score <= t)
            keep &= np.isfinite(score)
            kw = w * keep
            tot = kw.sum()
            if s_score is None:
                n_kept = int((keep & ok).sum())
                frac = n_kept / max(int(ok.sum()), 1)
            else:
                sk = ((s_score >= t) if larger_keeps else (s_score <= t)) & np.isfinite(s_score)
                n_kept = int(sk.sum())
                frac = n_kept / s_score.size
            rows.append(
                {
                    "threshold": float(t),
                    "n_kept": n_kept,
                    "fraction_kept": frac,
                    "n_test_kept": int((keep & ok).sum()),
                    "mad": MAD_SCALE * _weighted_median(adz_s, w_s * keep[order])
                    if tot > 0
                    else np.nan,
                    "bias": float((kw * dz).sum() / tot) if tot > 0 else np.nan,
                    "eta": float((kw * outl).sum() / tot) if tot > 0 else np.nan,
                    "pco": float((kw * pco).sum() / tot)
                    if (tot > 0 and pco is not None)
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- command line
def _kind(path: str) -> str:
    name = os.path.basename(str(path)).lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith((".fits", ".fit", ".fts")):
        return "fits"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".txt")):
        return "csv"
    raise ValueError(
        f"cannot tell the format of {path} from its extension: use .fits, .parquet or .csv"
    )


def _flatten_table(t) -> pd.DataFrame:
    """astropy Table chunk -> DataFrame; multi-dimensional columns become NAME_0, NAME_1, ..."""
    cols: dict[str, Any] = {}
    flat = [n for n in t.colnames if t[n].ndim <= 1]
    df1 = t[flat].to_pandas() if flat else pd.DataFrame(index=range(len(t)))
    for n in t.colnames:
        if t[n].ndim <= 1:
            cols[n] = df1[n]
        else:
            a = np.asarray(t[n]).reshape(len(t), -1)
            for j in range(a.shape[1]):
                cols[f"{n}_{j}"] = a[:, j]
    return pd.DataFrame(cols, index=pd.RangeIndex(len(t)))


def _open_reader(path: str, chunk: int) -> tuple[list[str], int | None, Iterator[pd.DataFrame]]:
    """Column names, number of rows (None if unknown) and a chunk iterator of ``path``."""
    kind = _kind(path)
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


class _Writer:
    """Streamed Parquet/CSV writer (FITS collected and written at close) into a temp file."""

    def __init__(self, path: str):
        self.path = path
        self.kind = _kind(path)
        # same directory (atomic rename) and same extension (pandas/astropy compress by it)
        head, tail = os.path.split(path)
        self.tmp = os.path.join(head, f".partial-{os.getpid()}-{tail}")
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


def cli_main(args: Any) -> int:
    """``photozsom flag INPUT -o OUTPUT --model DIR [--chunk-size N] [--overwrite]``.

    Reads a FITS (memory-mapped), Parquet (row batches) or CSV (chunks) catalogue with DR10
    columns, flags every row with the saved :class:`Flagger` and writes the input columns
    plus :data:`CLI_COLUMNS` to ``OUTPUT`` (format from the extension), keeping every row
    in order. Parquet and CSV outputs are streamed; a FITS output is assembled in memory
    and written at the end. Output goes to a temporary file renamed on success, so a failed
    run leaves no partial output. Multi-dimensional FITS columns are written as
    ``NAME_0, NAME_1, ...``.

    Returns
    -------
    int
        0 on success. Bad input raises ``ValueError`` / ``FileExistsError``, which the
        ``photozsom`` command prints as an error.
    """
    inp, out = os.fspath(args.input), os.fspath(args.output)
    chunk = int(getattr(args, "chunk_size", 1_000_000) or 1_000_000)
    if chunk < 1:
        raise ValueError(f"--chunk-size must be >= 1, got {chunk}")
    if not os.path.isfile(inp):
        raise FileNotFoundError(f"input catalogue {inp} does not exist")
    _kind(out)
    if os.path.exists(out):
        if os.path.exists(inp) and os.path.samefile(inp, out):
            raise ValueError("output would overwrite the input catalogue: choose another -o")
        if not getattr(args, "overwrite", False):
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    flagger = Flagger.load(args.model)
    names, n_rows, chunks = _open_reader(inp, chunk)
    upper = {n.upper() for n in names}
    need = [c for c in _SOM_BAND_COLUMNS if not c.endswith("_I")]
    if any(c in upper for c in ("FLUX_I", "FLUX_IVAR_I", "MW_TRANSMISSION_I")):
        need = _SOM_BAND_COLUMNS
    missing = [c for c in need if c not in upper]
    if missing:
        raise ValueError(
            f"{inp} lacks DR10 column(s) {', '.join(missing)}: photozsom flag needs "
            f"FLUX_<b> (nanomaggies), FLUX_IVAR_<b> and MW_TRANSMISSION_<b> for "
            f"b = G, R, I, Z, W1, W2 (I may be absent in the north)"
        )
    clash = [v for v in CLI_COLUMNS.values() if v.upper() in upper]
    if clash:
        raise ValueError(
            f"{inp} already has column(s) {clash} (an earlier photozsom flag output?); "
            f"drop them first"
        )
    writer = _Writer(out)
    t0 = time.perf_counter()
    n_done = n_flag = n_ood = n_under = n_unmapped = 0
    bar = tqdm(total=n_rows, desc="photozsom flag", unit="row", disable=None)
    try:
        for df in chunks:
            if len(df) == 0:
                continue
            df = df.reset_index(drop=True)
            fl = flagger.flag(df)
            fl.index = df.index
            outdf = pd.concat([df, fl.rename(columns=CLI_COLUMNS)], axis=1)
            writer.write(outdf)
            n_done += len(df)
            n_flag += int(fl["flag"].sum())
            n_ood += int(fl["ood"].sum())
            n_under += int(fl["underperforming"].sum())
            n_unmapped += int((fl["cell"] < 0).sum())
            bar.update(len(df))
        if n_done == 0:
            raise ValueError(f"{inp} has no rows: nothing to flag")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    dt = time.perf_counter() - t0
    print(
        f"photozsom flag: {n_done} rows -> {out}: {n_flag} flagged ({n_flag / n_done:.1%}; "
        f"{n_ood} out of distribution, {n_under} in under-performing cells, {n_unmapped} "
        f"without SOM features) in {dt:.1f} s ({n_done / max(dt, 1e-9):,.0f} rows/s)",
        file=sys.stderr,
    )
    return 0
