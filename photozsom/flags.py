"""Flag a user's galaxies where training data is thin or the photo-z model under-performs.

The paper's proposal (its Discussion): map a galaxy onto the SOM trained on a random,
representative sample of DR10 colours, and warn the user when it falls

- where the spectroscopic training set is **thin**: its cell holds fewer than
  ``min_count`` training galaxies, or the galaxy lies farther from its cell's prototype
  than the ``distance_quantile`` of the SOM's own training sample (a colour the map was
  not trained on) — together "out of distribution", ``ood``;
- in a cell where the model is known to **under-perform**: the cell's metric is
  significantly worse than the global value (:class:`photozsom.evaluation.cells.CellReport`,
  ``<metric>_worse``) and at least ``1 + min_effect`` times as bad
  (:func:`photozsom.evaluation.cells.material`), for the metrics the user picks.

:class:`Flagger` is a small object holding one SOM, its :class:`~photozsom.evaluation.cells.CellReport`
and the thresholds; :meth:`Flagger.flag` returns one row per input row in input order,
never dropping one: a row whose SOM features cannot be computed gets ``flag=True`` and a
reason.

The two out-of-distribution thresholds need not be set by hand: :func:`choose_thresholds`
scans a grid of ``min_count`` and ``distance_quantile`` on the labelled galaxies (their
out-of-fold photo-z) and picks, by a stated rule, the pair whose out-of-distribution flag
best separates catastrophic outliers from the rest while flagging the least of the user's
sample. The northern (BASS/MzLS) footprint has no i-band, so it gets its own map on the
bands it has; :class:`RegionalFlagger` holds one :class:`Flagger` per ``PHOTSYS`` and routes
each row to its region's map. :func:`load_flagger` reads either.

Examples
--------
>>> import numpy as np
>>> from photozsom.som import SOM
>>> from photozsom import cells, flags
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(3000, 2)); z = rng.uniform(0.1, 1, 3000)
>>> som = SOM((4, 4), n_features=2, seed=0).fit(X, progress=False)
>>> cell = som.predict(X)
>>> rep = cells.report(cell, z, z + 0.02 * rng.standard_normal(3000), None, som.n_cells,
...                    np.bincount(cell, minlength=16), n_boot=50)
>>> fl = flags.Flagger(som, rep)
>>> out = fl.flag(np.array([[0.0, 0.0], [50.0, 50.0], [np.nan, 0.0]]))
>>> out["ood"].tolist(), out["flag"].tolist()
([False, True, True], [False, True, True])
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom import schema
from photozsom.artifacts import load_artifact, read_json, save_artifact
from photozsom.evaluation.cells import METRICS, MIN_EFFECT, CellReport, material, report
from photozsom.evaluation.thresholds import (
    MIN_COUNT_GRID,
    QUANTILE_GRID,
    ThresholdChoice,
    choose_thresholds,
    out_of_distribution,
    training_distance_threshold,
)
from photozsom.features import feature_bands, feature_matrix, magnitudes, resolve_features
from photozsom.schema import as_dataframe, footprints
from photozsom.som import SOM

__all__ = ["ALL", "FLAG_COLUMNS", "MIN_EFFECT", "Flagger", "RegionalFlagger", "SOMFlagger", "ThresholdChoice",
           "auto_shape", "cell_reports", "choose_thresholds", "load_flagger", "locate", "map_rows",
           "out_of_distribution", "train_map"]

#: Columns of :meth:`Flagger.flag`, in order (described in :data:`photozsom.schema.FLAG_COLUMNS`).
FLAG_COLUMNS: tuple[str, ...] = tuple(schema.FLAG_COLUMNS)

_LABELS = {"mad": "MAD", "bias": "bias", "eta": "eta", "pco": "PCO"}
_PERCENT = {"eta", "pco"}


def _fmt(metric: str, value: float) -> str:
    return f"{100 * value:.2g}%" if metric in _PERCENT else f"{value:.3g}"


class Flagger:
    """Out-of-distribution and under-performing-cell flags for one fitted SOM.

    Parameters
    ----------
    som : photozsom.som.SOM
        The trained map. Its ``feature_names`` (e.g. ``g-r, r-i, ..., r``) say which
        features :meth:`flag` computes from a catalogue (:func:`photozsom.features.feature_matrix`).
    report : CellReport
        :func:`photozsom.evaluation.cells.report` of the evaluated galaxies on this map.
    train_counts : array_like of int, shape (n_cells,), optional
        Training (spectroscopic) galaxies per cell. Default: the report's ``n_train``.
    min_count : int
        A cell with fewer training galaxies is "thin" and its galaxies are ``ood``
        (default 10).
    distance_quantile : float
        A galaxy farther from its prototype than this quantile of the distances of the
        SOM's own training sample (recorded by ``SOM.fit``) is ``ood`` (default 0.99).
    train_distances : array_like, shape (N,), optional
        Distances of another reference sample (standardised feature units) whose
        ``distance_quantile`` replaces the SOM's own.
    max_distance : float, optional
        Explicit distance threshold (standardised units); overrides both.
    metrics : sequence of str
        Which of ``mad, bias, eta, pco`` make a cell under-performing when significantly
        worse than global (default all four).
    min_effect : float
        Effect-size floor of an under-performing cell: besides being significant, the
        cell's metric must be worse than global by at least this relative amount
        (:func:`photozsom.evaluation.cells.material`; default :data:`MIN_EFFECT`). With
        many labelled galaxies per cell, significance alone marks cells only slightly worse.
    photsys : str, optional
        The footprint this map is for (``"S"``, ``"N"``); reported in the ``som`` column.

    Attributes
    ----------
    distance_threshold : float
        The distance beyond which a galaxy is ``ood`` (``inf`` only when the SOM recorded no
        training distances and none were given).
    thin : ndarray of bool, shape (n_cells,)
        Cells with fewer than ``min_count`` training galaxies.
    underperforming_cells : ndarray of bool, shape (n_cells,)
        Cells significantly and materially worse than global on one of ``metrics``.
    """

    def __init__(
        self,
        som: Any,
        report: CellReport,
        train_counts: np.ndarray | None = None,
        *,
        min_count: int = 10,
        distance_quantile: float = 0.99,
        train_distances: np.ndarray | None = None,
        max_distance: float | None = None,
        metrics: Sequence[str] = ("mad", "eta", "pco", "bias"),
        min_effect: float = MIN_EFFECT,
        photsys: str | None = None,
    ) -> None:
        if not isinstance(report, CellReport):
            raise TypeError("report must be a photozsom.evaluation.cells.CellReport (cells.report(...))")
        n_cells = int(som.n_cells)
        if report.n_cells != n_cells:
            raise ValueError(
                f"report has {report.n_cells} cells but the SOM has {n_cells}; build the "
                f"report with n_cells=som.n_cells"
            )
        metrics = tuple(metrics)
        bad = [m for m in metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; choose from {list(METRICS)}")
        table = report.table
        if train_counts is None:
            if "n_train" not in table or not np.isfinite(table["n_train"].to_numpy(float)).all():
                raise ValueError(
                    "pass train_counts (training galaxies per cell) or a report "
                    "built with train_counts="
                )
            train_counts = table["n_train"].to_numpy()
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
        self.report = report
        self.train_counts = train_counts.astype(np.int64)
        self.min_count = int(min_count)
        self.distance_quantile = float(distance_quantile)
        self.metrics = metrics
        if not (np.isfinite(min_effect) and min_effect >= 0):
            raise ValueError(f"min_effect must be a finite number >= 0, got {min_effect}")
        self.min_effect = float(min_effect)
        self.photsys = None if photsys is None else str(photsys)
        if max_distance is not None:
            if not max_distance > 0:
                raise ValueError(f"max_distance must be > 0, got {max_distance}")
            self.distance_threshold = float(max_distance)
            self._distance_source = "max_distance"
        elif train_distances is not None:
            d = np.asarray(train_distances, dtype=np.float64).ravel()
            d = d[np.isfinite(d)]
            if d.size == 0:
                raise ValueError("train_distances has no finite value")
            self.distance_threshold = float(np.quantile(d, self.distance_quantile))
            self._distance_source = "train_distances"
        else:
            self.distance_threshold = training_distance_threshold(som, self.distance_quantile)
            self._distance_source = "the SOM's training sample"
        self.thin = self.train_counts < self.min_count
        self.underperforming_cells = report.worse(metrics, min_effect=self.min_effect)
        self._cell_reasons = self._build_cell_reasons()

    @property
    def feature_names(self) -> list[str]:
        """The SOM's features, computed from a catalogue by :meth:`flag`."""
        return list(self.som.feature_names)

    def _build_cell_reasons(self) -> np.ndarray:
        """Reason text per (cell, far-from-prototype) combination: object array (n_cells, 2)."""
        glob = self.report.global_
        table = self.report.table
        n_cells = len(self.train_counts)
        tab = np.empty((n_cells, 2), dtype=object)
        far = (
            f"outside the training colours: distance to the prototype > "
            f"{self.distance_threshold:.3g} (the {self.distance_quantile:.3g} quantile of "
            f"{self._distance_source})"
        )
        worse = {m: table[f"{m}_worse"].to_numpy(dtype=bool)
                 & material(m, table[m].to_numpy(), glob, self.min_effect) for m in self.metrics}
        for c in range(n_cells):  # once per cell at construction, not per galaxy
            parts = []
            if self.thin[c]:
                parts.append(
                    f"thin training data: cell {c} holds {self.train_counts[c]} training "
                    f"galaxies (< min_count={self.min_count})"
                )
            if self.underperforming_cells[c]:
                bad = [
                    f"{_LABELS[m]} {_fmt(m, table[m].iat[c])} vs global "
                    f"{_fmt(m, glob.get(m, np.nan))}"
                    for m in self.metrics
                    if worse[m][c]
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
            A DR10 catalogue (fluxes in nanomaggies; the SOM's features are computed with
            :func:`photozsom.features.feature_matrix`) or the feature matrix itself. Bands
            the catalogue lacks entirely (the i-band of northern sweeps) are accepted: rows
            that need them are flagged with the reason.
        progress : bool
            Progress bar of the SOM mapping.

        Returns
        -------
        DataFrame
            One row per input row, in input order (the input's index for a DataFrame):
            ``som`` (the map's PHOTSYS, or ""), ``cell`` (int64; -1 where no SOM feature could
            be computed), ``distance`` (to the cell's prototype, standardised feature units;
            NaN when not mapped), ``n_train`` (training galaxies in the cell; -1 when not
            mapped), ``ood`` (thin cell, far from the prototype, or not mapped),
            ``underperforming`` (cell significantly and materially worse than global on
            ``metrics``),
            ``flag`` (``ood | underperforming``) and ``reason`` (empty when not flagged).
        """
        X, valid, bad_reason = _features(data, self.feature_names)
        n = len(X)
        cell = np.full(n, -1, dtype=np.int64)
        dist = np.full(n, np.nan, dtype=np.float64)
        if valid.any():
            c, d = self.som.predict_with_distances(X[valid], progress=progress)
            cell[valid], dist[valid] = c, d
        far = valid & (dist > self.distance_threshold)
        safe = np.where(valid, cell, 0)
        n_train = np.where(valid, self.train_counts[safe], -1)
        ood = ~valid | (valid & out_of_distribution(self.train_counts[safe], dist, self.min_count,
                                                    self.distance_threshold))
        under = valid & self.underperforming_cells[safe]
        reason = np.empty(n, dtype=object)
        reason[valid] = self._cell_reasons[cell[valid], far[valid].astype(np.intp)]
        reason[~valid] = bad_reason
        index = data.index if isinstance(data, pd.DataFrame) else pd.RangeIndex(n)
        return pd.DataFrame(
            {
                "som": pd.array(np.full(n, self.photsys or "", dtype=object), dtype="str"),
                "cell": cell,
                "distance": dist,
                "n_train": n_train.astype(np.int64),
                "ood": ood,
                "underperforming": under,
                "flag": ood | under,
                "reason": pd.array(reason, dtype="str"),
            },
            index=index,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the flagger as an artifact directory: ``meta.json``, ``som/``, ``report/``."""
        thr = self.distance_threshold
        meta = {
            "min_count": self.min_count,
            "distance_quantile": self.distance_quantile,
            "distance_threshold": None if not np.isfinite(thr) else thr,
            "distance_source": self._distance_source,
            "metrics": list(self.metrics),
            "min_effect": self.min_effect,
            "photsys": self.photsys,
        }
        return save_artifact(
            path, "flagger", {"train_counts": self.train_counts}, meta,
            extra={"som": self.som.save, "report": self.report.save},
        )

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> Flagger:
        """Read a flagger written by :meth:`save`."""

        arrays, meta = load_artifact(path, "flagger")
        path = Path(path)
        som = SOM.load(path / "som", device=device)
        flagger = cls(
            som,
            CellReport.load(path / "report"),
            arrays["train_counts"],
            min_count=meta["min_count"],
            distance_quantile=meta["distance_quantile"],
            max_distance=meta["distance_threshold"],
            metrics=meta["metrics"],
            min_effect=meta.get("min_effect", 0.0),  # flaggers saved before the floor had none
            photsys=meta.get("photsys"),
        )
        flagger._distance_source = meta.get("distance_source", "max_distance")
        flagger._cell_reasons = flagger._build_cell_reasons()
        return flagger

    def __repr__(self) -> str:
        return (
            f"Flagger(photsys={self.photsys!r}, n_cells={len(self.train_counts)}, "
            f"features={self.feature_names}, min_count={self.min_count}, "
            f"distance_threshold={self.distance_threshold:.3g}, metrics={list(self.metrics)}, "
            f"min_effect={self.min_effect:g}, "
            f"thin cells={int(self.thin.sum())}, under-performing cells="
            f"{int(self.underperforming_cells.sum())})"
        )


class RegionalFlagger:
    """One :class:`Flagger` per footprint, chosen row by row from the ``PHOTSYS`` column.

    DR10 has two photometric systems: ``"S"`` (DECam, with i-band) and ``"N"`` (BASS/MzLS,
    no i-band). Each gets a SOM on the bands it has; a catalogue row goes to the map of its
    ``PHOTSYS``. Rows of a footprint without a map (or without ``PHOTSYS``) are flagged with
    that reason, never dropped.

    Parameters
    ----------
    flaggers : mapping of str to Flagger
        ``{"S": flagger_south, "N": flagger_north}``.
    """

    def __init__(self, flaggers: Mapping[str, Flagger]) -> None:
        if not flaggers:
            raise ValueError("RegionalFlagger needs at least one Flagger, e.g. {'S': ...}")
        self.flaggers = {str(k).upper(): f for k, f in flaggers.items()}
        for k, f in self.flaggers.items():
            if not isinstance(f, Flagger):
                raise TypeError(f"flaggers[{k!r}] is not a Flagger")
            f.photsys = k

    def flag(self, data: Any, *, progress: bool = False) -> pd.DataFrame:
        """:meth:`Flagger.flag` of each row with the map of its ``PHOTSYS`` (same columns)."""
        df = as_dataframe(data)
        if len(df) == 0:
            raise ValueError("catalogue is empty (0 rows): nothing to flag")
        if "PHOTSYS" not in df.columns:
            raise ValueError(
                "catalogue lacks PHOTSYS ('S' DECam / 'N' BASS-MzLS), which picks the SOM; "
                f"add it, or flag with one map: load_flagger(dir).flaggers[{next(iter(self.flaggers))!r}]"
            )
        ps = df["PHOTSYS"].astype(str).str.strip().str.upper().to_numpy()
        n = len(df)
        cols: dict[str, np.ndarray] = {
            "som": np.full(n, "", dtype=object),
            "cell": np.full(n, -1, dtype=np.int64),
            "distance": np.full(n, np.nan),
            "n_train": np.full(n, -1, dtype=np.int64),
            "ood": np.ones(n, dtype=bool),
            "underperforming": np.zeros(n, dtype=bool),
            "flag": np.ones(n, dtype=bool),
            "reason": np.array([f"no SOM for PHOTSYS={p!r} (maps: {sorted(self.flaggers)})"
                                for p in ps], dtype=object),
        }
        for key, fl in self.flaggers.items():
            rows = np.flatnonzero(ps == key)
            if rows.size:
                part = fl.flag(df.iloc[rows], progress=progress)
                for c in FLAG_COLUMNS:
                    cols[c][rows] = part[c].to_numpy()
        for c in ("som", "reason"):
            cols[c] = pd.array(cols[c].astype(str), dtype="str")
        return pd.DataFrame(cols, index=df.index)

    def save(self, path: str | os.PathLike) -> Path:
        """A directory with one saved :class:`Flagger` per region (``S/``, ``N/``)."""
        return save_artifact(
            path, "regional_flagger", None, {"regions": sorted(self.flaggers)},
            extra={k: f.save for k, f in self.flaggers.items()},
        )

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> RegionalFlagger:
        """Read a regional flagger written by :meth:`save`."""
        _, meta = load_artifact(path, "regional_flagger")
        return cls({k: Flagger.load(Path(path) / k, device=device) for k in meta["regions"]})

    def __repr__(self) -> str:
        return "RegionalFlagger(" + ", ".join(f"{k}: {f!r}" for k, f in self.flaggers.items()) + ")"


def load_flagger(path: str | os.PathLike, *, device: str | None = None
                 ) -> Flagger | RegionalFlagger | SOMFlagger:
    """Read a :class:`SOMFlagger`, :class:`Flagger` or :class:`RegionalFlagger` directory,
    whichever it holds (each has ``flag(catalogue)``)."""
    meta_path = Path(path) / "meta.json"
    meta = read_json(meta_path) if meta_path.is_file() else {}
    if meta.get("format") == "photozsom.regional_flagger":
        return RegionalFlagger.load(path, device=device)
    if meta.get("format") == "photozsom.som_flagger":
        return SOMFlagger.load(path, device=device)
    return Flagger.load(path, device=device)


# ---------------------------------------------------------------------- the estimator
#: Key of the single map of a catalogue without ``PHOTSYS``.
ALL = "ALL"


def auto_shape(n_labelled: int, n_random: int, *, per_cell: int = 20, min_train: int = 10,
               smallest: int = 4, largest: int = 32) -> tuple[int, int]:
    """The square map size of ``SOMFlagger(shape="auto")``.

    The rule: ``side = floor(sqrt(n_labelled / per_cell))``, so an occupied cell holds about
    ``per_cell`` labelled galaxies on average (enough for the per-cell bootstrap tests),
    capped so the random sample gives every cell ``min_train`` galaxies
    (``side <= sqrt(n_random / min_train)``) and clipped to ``[smallest, largest]``.

    Examples
    --------
    >>> auto_shape(80_000, 200_000), auto_shape(5_000, 200_000), auto_shape(100, 100)
    ((32, 32), (15, 15), (4, 4))
    """
    side = int(np.floor(np.sqrt(max(n_labelled, 1) / per_cell)))
    side = min(side, int(np.floor(np.sqrt(max(n_random, 1) / min_train))))
    side = int(np.clip(side, smallest, largest))
    return side, side


def train_map(catalogue: Any, features: Sequence[str], shape: Sequence[int], *, seed: int = 0,
              epochs: int | None = None, backend: str = "torch", min_train: int = 10,
              progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """Train one SOM on a sample's features (the random sample of one footprint).

    Parameters
    ----------
    catalogue : DataFrame
        DR10 columns (fluxes in nanomaggies); rows without every feature are left out.
    features : sequence of str
        :func:`photozsom.features.feature_matrix` names, e.g. :data:`~photozsom.features.SOM_FEATURES`.
    shape : (int, int)
        Map size.
    seed, epochs, backend, progress
        Passed to :class:`photozsom.som.SOM`.
    min_train : int
        Fewest usable galaxies per cell; with fewer the map is not trained.

    Returns
    -------
    som : SOM or None
        None when the sample has fewer than ``min_train * n_cells`` usable galaxies.
    info : dict
        ``trained``, ``n_train`` and, when trained, ``shape``, ``features`` and the
        quantisation and topographic errors on the training sample.
    """
    names = list(features)
    shape = tuple(int(v) for v in shape)
    need = min_train * shape[0] * shape[1]
    if len(catalogue) < need:
        return None, {"trained": False, "n_train": len(catalogue)}
    X, ok = feature_matrix(catalogue, names, name="random sample")
    X = X[ok]
    if len(X) < need:
        return None, {"trained": False, "n_train": len(X)}
    som = SOM(shape=shape, n_features=len(names), backend=backend, feature_names=names, seed=seed)
    som.fit(X, **({"progress": progress} if epochs is None else {"epochs": epochs, "progress": progress}))
    return som, {"trained": True, "n_train": len(X), "shape": shape, "features": names,
                 "quantization_error": som.quantization_error(X),
                 "topographic_error": som.topographic_error(X)}


def map_rows(catalogue: Any, region: str) -> np.ndarray:
    """Rows of ``catalogue`` that the map ``region`` serves (all rows for :data:`ALL`)."""
    ps = footprints(catalogue)
    if region == ALL:
        return np.ones(len(as_dataframe(catalogue)), dtype=bool)
    if ps is None:
        raise ValueError(f"the catalogue lacks PHOTSYS ('S' DECam / 'N' BASS-MzLS), which picks "
                         f"the SOM of each galaxy (map {region!r})")
    return ps == region


def locate(catalogue: Any, maps: Mapping[str, Any]) -> pd.DataFrame:
    """The map, cell and prototype distance of every row (one map per footprint).

    Returns
    -------
    DataFrame
        ``SOM`` (the map's key: ``PHOTSYS`` or :data:`ALL`; "" without a map), ``CELL``
        (-1 where the row has no map or no valid features) and ``DIST`` (standardised SOM
        units; NaN where unmapped), in input order, with the input's index.
    """
    df = as_dataframe(catalogue)
    n = len(df)
    som_col = np.full(n, "", dtype=object)
    cell = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.nan)
    for region, som in maps.items():
        rows = np.flatnonzero(map_rows(df, region))
        if rows.size == 0:
            continue
        X, ok = feature_matrix(df.iloc[rows], som.feature_names)
        som_col[rows] = region
        if ok.any():
            c, d = som.predict_with_distances(X[ok])
            cell[rows[ok]], dist[rows[ok]] = c, d
    return pd.DataFrame({"SOM": som_col.astype(str), "CELL": cell, "DIST": dist}, index=df.index)


def cell_reports(located: pd.DataFrame, z_true: Any, z_pred: Any, pit: Any, in_train: Any,
                 maps: Mapping[str, Any], *, n_boot: int = 1000, seed: int = 0,
                 fdr: float = 0.05, evaluate: Any = None) -> dict[str, CellReport]:
    """One :class:`~photozsom.evaluation.cells.CellReport` per map from labelled galaxies.

    Parameters
    ----------
    located : DataFrame
        :func:`locate` of the labelled galaxies (``SOM``, ``CELL``).
    z_true, z_pred, pit : array_like, shape (N,)
        Spectroscopic redshift, out-of-fold point photo-z and PIT (``pit`` may be None).
    in_train : array_like of bool, shape (N,)
        Galaxies in the photo-z model's training set: the report's training counts.
    maps : mapping
        The SOMs by key.
    evaluate : array_like of bool, shape (N,), optional
        Galaxies whose photo-z are scored (default all).

    A map with fewer than two evaluated galaxies gets no report.
    """
    som_key = located["SOM"].to_numpy()
    cell = located["CELL"].to_numpy().astype(np.int64)
    z_true, z_pred = np.asarray(z_true, dtype=np.float64), np.asarray(z_pred, dtype=np.float64)
    pit = None if pit is None else np.asarray(pit, dtype=np.float64)
    in_train = np.asarray(in_train, dtype=bool)
    evaluate = np.ones(len(cell), dtype=bool) if evaluate is None else np.asarray(evaluate, bool)
    reports = {}
    for region, som in maps.items():
        mapped = (som_key == region) & (cell >= 0)
        counts = np.bincount(cell[mapped & in_train], minlength=som.n_cells)
        sel = mapped & evaluate
        if sel.sum() < 2:
            continue
        reports[region] = report(cell[sel], z_true[sel], z_pred[sel],
                                 None if pit is None else pit[sel], som.n_cells, counts,
                                 n_boot=n_boot, seed=seed, fdr=fdr)
    return reports


class SOMFlagger:
    """The paper's flag as an estimator: fit on your own sample, flag any catalogue.

    ``fit`` trains a SOM of colours on a representative random sample (one map per
    footprint when the catalogue has ``PHOTSYS``, one map when it does not), places the
    labelled (spectroscopic) galaxies on it, measures per cell how the photo-z model does on
    them (their out-of-fold predictions: :func:`photozsom.evaluation.cells.report`, bootstrap errors,
    Benjamini-Hochberg significance against the global value) and chooses the
    out-of-distribution thresholds from the data (:func:`choose_thresholds`). ``flag`` then
    marks a galaxy when its cell holds too few training galaxies or it lies far from its
    prototype (:func:`out_of_distribution`), or when its cell is significantly and
    materially (``min_effect``) worse than global on one of ``metrics``.

    Parameters
    ----------
    shape : "auto", (int, int) or mapping of footprint to (int, int)
        Map size; ``"auto"`` follows :func:`auto_shape` (about 20 labelled galaxies per cell,
        at most 32 x 32).
    features : "auto", sequence of str, or mapping of footprint to either
        SOM features; ``"auto"`` takes the colours of the bands the random sample measures in
        that footprint and the r magnitude (:func:`photozsom.features.auto_features`: DR10
        south gives :data:`~photozsom.features.SOM_FEATURES`).
    min_count : "auto" or int
        Fewest training galaxies a cell needs (``"auto"``: chosen by :func:`choose_thresholds`).
    distance_quantile : "auto" or float
        Quantile of the map's own training distances beyond which a galaxy is out of
        distribution (``"auto"``: chosen).
    metrics : sequence of str
        Which of ``mad, bias, eta, pco`` make a cell under-performing.
    min_effect : float
        Effect-size floor of an under-performing cell (:class:`Flagger`): significantly
        worse *and* worse by at least this relative amount.
    fdr : float
        False-discovery rate of the per-cell tests (over the cell x metric tests of a map).
    n_boot : int
        Bootstrap resamples per cell.
    target : {"outlier", "pit_tail"}
        What the threshold choice treats as a bad photo-z.
    fallback : (int, float)
        ``(min_count, distance_quantile)`` used, with a warning, when a map has too few bad
        photo-z to choose from.
    seed : int
        Seed of the maps and of the bootstrap.
    epochs, backend : passed to :class:`photozsom.som.SOM`.
    progress : bool
        Progress bars.

    Attributes
    ----------
    maps_ : dict of str to SOM
    reports_ : dict of str to CellReport
    thresholds_ : dict of str to (int, float)
        Chosen ``(min_count, distance_quantile)`` per map.
    threshold_choice_ : DataFrame
        The scan of each map's choice (empty when both thresholds were fixed).
    flagger_ : Flagger or RegionalFlagger

    Examples
    --------
    >>> fl = SOMFlagger(seed=0).fit(random, labelled, z_spec, z_oof, pit=pit_oof)  # doctest: +SKIP
    >>> fl.flag(my_catalogue)[["flag", "reason"]]                                 # doctest: +SKIP
    >>> fl.save("my_flagger"); SOMFlagger.load("my_flagger")                       # doctest: +SKIP
    """

    def __init__(self, shape: Any = "auto", features: Any = "auto", min_count: int | str = "auto",
                 distance_quantile: float | str = "auto",
                 metrics: Sequence[str] = ("mad", "eta", "pco", "bias"),
                 min_effect: float = MIN_EFFECT, fdr: float = 0.05,
                 n_boot: int = 1000, target: str = "outlier",
                 fallback: tuple[int, float] = (10, 0.99), seed: int = 0,
                 epochs: int | None = None, backend: str = "torch", progress: bool = True) -> None:
        self.shape = shape
        self.features = features
        self.min_count = min_count
        self.distance_quantile = distance_quantile
        self.metrics = tuple(metrics)
        self.min_effect = min_effect
        self.fdr = fdr
        self.n_boot = n_boot
        self.target = target
        self.fallback = tuple(fallback)
        self.seed = seed
        self.epochs = epochs
        self.backend = backend
        self.progress = progress

    def _check_params(self) -> None:
        for name, v in (("min_count", self.min_count), ("distance_quantile", self.distance_quantile)):
            if isinstance(v, str) and v != "auto":
                raise ValueError(f'{name} must be a number or "auto", got {v!r}')
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; choose from {list(METRICS)}")

    @staticmethod
    def _per_map(value: Any, region: str) -> Any:
        return value[region] if isinstance(value, Mapping) else value

    def fit(self, random: Any, labelled: Any, z_true: Any, z_pred: Any, pit: Any = None, *,
            in_train: Any = None, maps: Mapping[str, Any] | None = None,
            reports: Mapping[str, CellReport] | None = None) -> SOMFlagger:
        """Train the maps, measure the cells and choose the thresholds.

        Parameters
        ----------
        random : DataFrame or astropy Table, or None
            A representative random sample of the catalogue to flag (DR10 columns, fluxes in
            nanomaggies): the maps are trained on it and the thresholds are chosen to flag
            little of it. None trains on ``labelled`` instead, with a warning: a map of the
            spectroscopic sample's colours cannot see where that sample is thin.
        labelled : DataFrame or astropy Table
            The galaxies with spectroscopic redshifts and out-of-fold photo-z.
        z_true, z_pred : array_like, shape (N,)
            Their spectroscopic redshifts and out-of-fold point photo-z. A NaN ``z_pred``
            (a training galaxy the model could not score) leaves the galaxy out of the
            per-cell metrics and the threshold choice, but it still counts in its cell's
            training count when ``in_train``.
        pit : array_like, shape (N,), optional
            Their out-of-fold PIT values (without them the PCO test is skipped).
        in_train : array_like of bool, shape (N,), optional
            Which labelled galaxies the photo-z model was trained on (the cells' training
            counts; default: all). Their own cell's count leaves them out when thresholds are
            chosen (leave-one-out).
        maps, reports : mappings, optional
            Already trained maps (by footprint key) and their cell reports, to skip those
            steps (the pipeline's SOM and cells stages).
        """
        self._check_params()
        lab = as_dataframe(labelled)
        n = len(lab)
        if n == 0:
            raise ValueError("labelled is empty (0 rows)")
        z_true = _vector(z_true, n, "z_true")
        z_pred = _vector(z_pred, n, "z_pred", finite=False)
        scored = np.isfinite(z_pred)
        if not scored.any():
            raise ValueError("z_pred has no finite value: no labelled galaxy has a photo-z")
        pit = None if pit is None else _vector(pit, n, "pit", finite=False)
        in_train = np.ones(n, dtype=bool) if in_train is None else np.asarray(in_train, dtype=bool)
        if in_train.shape != (n,):
            raise ValueError(f"in_train must have one value per labelled galaxy ({n})")
        if random is None:
            warnings.warn("random=None: the maps are trained on the labelled sample itself, so "
                          "they cannot show where it is thin; pass a random sample of the "
                          "catalogue you will flag", stacklevel=2)
            rnd = lab
        else:
            rnd = as_dataframe(random)
            if len(rnd) == 0:
                raise ValueError("random is empty (0 rows)")
        self.trained_on_ = "labelled" if random is None else "random"
        if maps is None:
            maps = self._fit_maps(rnd, lab)
        self.maps_ = dict(maps)
        where = locate(lab, self.maps_)
        if reports is None:
            reports = cell_reports(where, z_true, z_pred, pit, in_train, self.maps_,
                                   n_boot=self.n_boot, seed=self.seed, fdr=self.fdr,
                                   evaluate=scored)
        if not reports:
            raise ValueError("no map has two or more labelled galaxies with valid features: "
                             "nothing to measure the cells with")
        self.reports_ = dict(reports)
        sample = locate(rnd, self.maps_)
        self.thresholds_, scans = {}, []
        for r in self.reports_:
            self.thresholds_[r], scan = self._choose(r, where, sample, z_true, z_pred, pit,
                                                     in_train, scored)
            if scan is not None:
                scans.append(scan)
        self.threshold_choice_ = pd.concat(scans, ignore_index=True) if scans else pd.DataFrame()
        flaggers = {r: Flagger(self.maps_[r], self.reports_[r], min_count=m, distance_quantile=q,
                               metrics=self.metrics, min_effect=self.min_effect,
                               photsys=None if r == ALL else r)
                    for r, (m, q) in self.thresholds_.items()}
        self.flagger_ = flaggers[ALL] if ALL in flaggers else RegionalFlagger(flaggers)
        return self

    def _fit_maps(self, rnd: pd.DataFrame, lab: pd.DataFrame) -> dict[str, Any]:
        ps_r, ps_l = footprints(rnd), footprints(lab)
        if ps_r is None or ps_l is None:
            regions = {ALL: (np.ones(len(rnd), bool), np.ones(len(lab), bool))}
        else:
            regions = {k: (ps_r == k, ps_l == k) for k in sorted(set(ps_r) - {""})}
        maps, skipped = {}, {}
        for region, (in_r, in_l) in regions.items():
            sub = rnd[in_r]
            if len(sub) == 0:
                continue
            try:
                feats = resolve_features(self._per_map(self.features, region), sub, "som")
            except ValueError as err:
                skipped[region] = str(err)
                continue
            shape = self._per_map(self.shape, region)
            if isinstance(shape, str):
                if shape != "auto":
                    raise ValueError(f'shape must be "auto" or (rows, columns), got {shape!r}')
                shape = auto_shape(int(in_l.sum()), len(sub))
            som, info = train_map(sub, feats, shape, seed=self.seed, epochs=self.epochs,
                                  backend=self.backend, progress=self.progress)
            if som is None:
                skipped[region] = (f"{info['n_train']} usable galaxies, fewer than 10 per cell "
                                   f"of a {shape[0]}x{shape[1]} map")
                continue
            maps[region] = som
        if not maps:
            raise ValueError("no footprint has enough galaxies with valid features for a SOM: "
                             + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
        if skipped:
            warnings.warn("no map for " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
                          + " (those rows are flagged 'no SOM')", stacklevel=3)
        return maps

    def _choose(self, region: str, where: pd.DataFrame, sample: pd.DataFrame, z_true: np.ndarray,
                z_pred: np.ndarray, pit: np.ndarray | None, in_train: np.ndarray,
                scored: np.ndarray) -> tuple[tuple[int, float], pd.DataFrame | None]:
        auto_m, auto_q = self.min_count == "auto", self.distance_quantile == "auto"
        fixed = (self.fallback[0] if auto_m else int(self.min_count),
                 self.fallback[1] if auto_q else float(self.distance_quantile))
        if not (auto_m or auto_q):
            return fixed, None
        e = (where["SOM"] == region).to_numpy() & scored
        u = (sample["SOM"] == region).to_numpy()
        try:
            ch = choose_thresholds(
                self.maps_[region], self.reports_[region].table["n_train"].to_numpy(),
                where["CELL"].to_numpy()[e], where["DIST"].to_numpy()[e], z_true[e], z_pred[e],
                in_train=in_train[e], pit_values=None if pit is None else pit[e],
                sample_cell=sample["CELL"].to_numpy()[u], sample_distance=sample["DIST"].to_numpy()[u],
                target=self.target, min_counts=MIN_COUNT_GRID if auto_m else [fixed[0]],
                quantiles=QUANTILE_GRID if auto_q else [fixed[1]])
        except ValueError as err:
            warnings.warn(f"map {region}: thresholds not chosen ({err}); using min_count="
                          f"{fixed[0]}, distance_quantile {fixed[1]}", stacklevel=3)
            return fixed, None
        scan = ch.table.assign(som=region, n_bad=ch.n_bad, n_good=ch.n_good, rule=ch.rule)
        return (ch.min_count, ch.distance_quantile), scan

    # ------------------------------------------------------------------ use
    def _check_fitted(self) -> None:
        if not hasattr(self, "flagger_"):
            raise ValueError("this SOMFlagger is not fitted: call fit(...) or SOMFlagger.load(dir)")

    def flag(self, catalogue: Any, *, progress: bool = False) -> pd.DataFrame:
        """Flag every row (columns :data:`FLAG_COLUMNS`, input order, nothing dropped)."""
        self._check_fitted()
        return self.flagger_.flag(catalogue, progress=progress)

    @property
    def flaggers(self) -> dict[str, Flagger]:
        """The per-map :class:`Flagger` objects."""
        self._check_fitted()
        f = self.flagger_
        return dict(f.flaggers) if isinstance(f, RegionalFlagger) else {ALL: f}

    def get_params(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in vars(self).items()
                if not k.endswith("_") and not k.startswith("_")}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``meta.json`` (settings, chosen thresholds), ``flagger/`` and the scan."""
        self._check_fitted()
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()}
        meta = {"params": params, "trained_on": self.trained_on_,
                "thresholds": {r: list(v) for r, v in self.thresholds_.items()}}
        scan = self.threshold_choice_
        return save_artifact(path, "som_flagger", None, meta, extra={
            "flagger": self.flagger_.save,
            "threshold_choice.csv": lambda p: scan.to_csv(p, index=False)})

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> SOMFlagger:
        """Read a flagger written by :meth:`save`."""
        _, meta = load_artifact(path, "som_flagger")
        path = Path(path)
        fl = cls(**{"min_effect": 0.0, **meta["params"]})  # saved before the floor: none
        fl.trained_on_ = meta["trained_on"]
        fl.thresholds_ = {r: (int(v[0]), float(v[1])) for r, v in meta["thresholds"].items()}
        fl.flagger_ = load_flagger(path / "flagger", device=device)
        fl.maps_ = {r: f.som for r, f in fl.flaggers.items()}
        fl.reports_ = {r: f.report for r, f in fl.flaggers.items()}
        try:
            fl.threshold_choice_ = pd.read_csv(path / "threshold_choice.csv")
        except pd.errors.EmptyDataError:
            fl.threshold_choice_ = pd.DataFrame()
        return fl

    def __repr__(self) -> str:
        if not hasattr(self, "flagger_"):
            return f"SOMFlagger(unfitted, shape={self.shape!r}, features={self.features!r})"
        return (f"SOMFlagger(maps={ {r: tuple(m.shape) for r, m in self.maps_.items()} }, "
                f"thresholds={self.thresholds_})")


def _vector(a: Any, n: int, name: str, *, finite: bool = True) -> np.ndarray:
    v = np.asarray(a, dtype=np.float64).ravel()
    if v.shape != (n,):
        raise ValueError(f"{name} must have one value per labelled galaxy ({n}), got {v.shape}")
    if finite and not np.isfinite(v).all():
        bad = np.flatnonzero(~np.isfinite(v))
        raise ValueError(f"{name} has {bad.size} non-finite value(s) (first rows {bad[:5].tolist()}); "
                         f"pass only galaxies with a redshift and a photo-z")
    return v


def _features(data: Any, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOM features of a catalogue or matrix, the valid-row mask and reasons for invalid rows."""
    names = list(names)
    if isinstance(data, np.ndarray) and data.dtype.names is None:
        X = np.asarray(data, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(names):
            raise ValueError(f"feature matrix must have shape (N, {len(names)}) for the "
                             f"features {names}, got {X.shape}")
        if len(X) == 0:
            raise ValueError("feature matrix is empty (0 rows): nothing to flag")
        bad = ~np.isfinite(X)
        valid = ~bad.any(axis=1)
        reasons = _mask_reasons(bad[~valid], names, "no SOM features: non-finite feature(s) {}")
        return X, valid, reasons
    df = as_dataframe(data)
    if len(df) == 0:
        raise ValueError("catalogue is empty (0 rows): nothing to flag")
    try:
        bands = feature_bands(names)
    except ValueError as err:
        raise ValueError(
            f"this SOM's features {names} are not a catalogue recipe ({err}); train the SOM "
            f"with feature_names=photozsom.features.SOM_FEATURES (or NORTH_SOM_FEATURES), or "
            f"flag its feature matrix instead of a catalogue"
        ) from None
    has_mw = any(str(c).startswith("MW_TRANSMISSION_") for c in df.columns)
    for b in bands:  # a band absent from the whole file (northern i): every row lacks it
        cols = [f"FLUX_{b}", f"FLUX_IVAR_{b}", f"MW_TRANSMISSION_{b}"]
        if not any(c in df.columns for c in cols):
            df = df.assign(**{cols[0]: np.nan, cols[1]: 0.0, **({cols[2]: 1.0} if has_mw else {})})
    X, valid = feature_matrix(df, names)
    reasons = np.empty(0, dtype=object)
    if not valid.all():
        mags = magnitudes(df.iloc[np.flatnonzero(~valid)], bands)
        bad = ~np.isfinite(mags.to_numpy())
        reasons = _mask_reasons(
            bad,
            list(bands),
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
