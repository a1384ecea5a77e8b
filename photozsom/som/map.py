"""Self-organizing map: one :class:`SOM` façade over a torch batch backend and a minisom adapter.

The paper trains a SOM on the catalogue colours of a random, representative sample of
DR10-south galaxies and maps any other sample (the spectroscopic one, a user's catalogue)
into its cells. :class:`SOM` does both on any ``[N, D]`` float array: the six
:data:`photozsom.features.SOM_FEATURES` (``g-r, r-i, i-z, z-W1, W1-W2, r``, AB mag) or an
embedding (``D = 256`` feature vectors work the same way).

The façade validates and standardises inputs, streams them in chunks, handles missing
values, measures map quality, records the training distances and saves the map. The
training and the best-matching-unit (BMU) search belong to a backend
(:class:`~photozsom.som.base.SOMBackend`):

``backend="torch"`` (default): :class:`~photozsom.som.torch_batch.TorchBatchSOM`
    Kohonen's batch map, on CUDA when present. Its default schedule (``epochs=None``):
    8 steps on small subsamples while the neighbourhood width falls geometrically from
    ``sigma`` (default ``max(rows, cols) / 2``) to ``sigma_final`` (default 1 cell), 8
    steps on subsamples of up to ``batch_size`` rows (default ``max(10,000, 10 * n_cells)``)
    at ``sigma_final``, then passes at ``sigma_final`` over all rows (at most
    ``max(50,000, 50 * n_cells)`` of them) until the quantization error improves by less
    than 0.5%. ``epochs=E`` makes exactly ``E`` passes over all rows instead. Details in
    :mod:`photozsom.som.torch_batch`.

``backend="minisom"``: :class:`~photozsom.som.minisom_adapter.MiniSomBackend`
    :class:`minisom.MiniSom` (Vettigli 2018), the online SOM astronomers know: one random
    pass of online updates (``epochs=None``) or ``epochs`` ordered passes, sigma decaying to
    1 and the learning rate (default 0.5) to 0, from the same initial prototypes. Mapping
    uses minisom's float64 numpy distances: the reference the torch backend is tested
    against, and far slower to train.

Both support ``topology="rectangular"`` and ``"hexagonal"`` with minisom's geometry
(:class:`~photozsom.som.grid.Grid`). Cells are numbered ``k = i * cols + j`` for row ``i``
and column ``j``, so ``counts.reshape(rows, cols)`` is the map as an image.

Inputs are standardised with :class:`photozsom.features.Standardizer` statistics fitted on
the training data and stored with the map, so every catalogue mapped later goes through
the same transform. Prototypes and distances are in those standardised units.

At :meth:`SOM.fit` the map records the distribution of its own training rows' distances
to their best prototype (torch: of the rows of its last pass, at most ``max(50,000, 50 * n_cells)``), as 1001
quantiles (:attr:`SOM.distance_quantiles_`);
:meth:`SOM.distance_threshold` reads a quantile back (``som.distance_threshold(0.99)``)
and :meth:`SOM.distance_quantile` places new distances in it, so an input far outside
the training colours can be recognised without keeping the training sample.

Rows with a NaN or infinite feature are never dropped silently: ``nan_policy="raise"``
refuses them (naming the first row indices), ``nan_policy="mark"`` maps them to cell
``-1`` ("no cell") with distance NaN.

A trained map is saved as an artifact directory (:mod:`photozsom.artifacts`:
``meta.json`` + ``arrays.npz``, no pickle) by :meth:`SOM.save` and read by
:meth:`SOM.load`, which also reads the single-file ``.npz`` maps of earlier versions.

Examples
--------
>>> import numpy as np
>>> from photozsom.som import SOM
>>> X = np.random.default_rng(0).normal(size=(2000, 3))
>>> som = SOM(shape=(6, 5), n_features=3, seed=0).fit(X, progress=False)
>>> cells, dist = som.predict_with_distances(X)
>>> cells.shape, int(cells.min()) >= 0, int(cells.max()) < som.n_cells
((2000,), True, True)
>>> bool(np.mean(dist <= som.distance_threshold(0.9)) > 0.89)
True
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from photozsom.artifacts import load_artifact, save_artifact
from photozsom.features import SOM_FEATURES, Standardizer, som_features
from photozsom.som.base import FitResult, SOMBackend, pca_prototypes, random_prototypes
from photozsom.som.grid import TOPOLOGIES, Grid
from photozsom.som.minisom_adapter import MiniSomBackend
from photozsom.som.torch_batch import TorchBatchSOM

__all__ = ["ARTIFACT_VERSION", "BACKENDS", "SOM"]  # the package re-exports these and the backends

#: The backends ``SOM(backend=...)`` accepts.
BACKENDS: dict[str, type[SOMBackend]] = {"torch": TorchBatchSOM, "minisom": MiniSomBackend}
#: Version of the ``photozsom.som`` artifact written by :meth:`SOM.save`.
ARTIFACT_VERSION = 1
#: Levels of the stored training-distance quantiles.
DISTANCE_LEVELS = np.linspace(0.0, 1.0, 1001)

_INITS = ("pca", "random")
_NAN_POLICIES = ("raise", "mark")


def _first_indices(mask: np.ndarray, offset: int = 0, n: int = 10) -> list[int]:
    return [int(k) + offset for k in np.flatnonzero(mask)[:n]]


class SOM:
    """Self-organizing map of ``rows x cols`` cells on ``n_features``-dimensional data.

    Parameters
    ----------
    shape : (int, int)
        ``(rows, cols)`` of the map; the paper's map is ``(32, 32)``.
    n_features : int
        Number of input features ``D`` (6 for :func:`photozsom.features.som_features`).
    backend : {"torch", "minisom"}
        Training and mapping engine (see the module docstring).
    topology : {"rectangular", "hexagonal"}
        Grid geometry (minisom's, for both backends).
    sigma : float, optional
        Initial neighbourhood width, cells; default ``max(rows, cols) / 2``.
    learning_rate : float, optional
        Torch: fraction in ``(0, 1]`` of the step to the neighbourhood mean (default 1, the
        batch map). Minisom: initial online learning rate, decaying linearly to 0 (default 0.5).
    standardize : bool
        Fit a :class:`~photozsom.features.Standardizer` on the training data and apply it
        to every input (default). If False, prototypes and distances are in input units.
    feature_names : sequence of str, optional
        Names of the ``D`` features, stored with the map and checked by :meth:`load`;
        default ``x0, x1, ...``.
    seed : int
        Seed of every random choice (subsamples, random initialisation, PCA subsample,
        minisom's visiting order).
    device : str, optional
        Torch device; default :func:`photozsom.device.default_device` (CUDA when present).
        The minisom backend runs on the CPU.
    sigma_final : float
        Torch: neighbourhood width of the final phases, cells (default 1; minisom always
        decays to 1).
    init : {"pca", "random"} or ndarray
        Initial prototypes: the plane of the first two principal components (``+-2``
        standard deviations, deterministic), randomly drawn rows (seeded), or given
        prototypes of shape ``(n_cells, D)`` in standardised units.
    batch_size : int, optional
        Torch: the most rows per settling step, ordering steps taking half as many
        (default ``max(10000, 10 * n_cells)``; see :mod:`photozsom.som.torch_batch`).

    Attributes
    ----------
    standardizer : Standardizer or None
        Statistics of the training data (None before :meth:`fit` or if not standardising).
    history : list of dict
        One dict per training step (torch: ``step``, ``phase``, ``rows``, ``sigma``, ``qe``
        = mean BMU distance of the step's rows before its update, ``updated``).
    epochs_trained : int
        Full passes over the training rows.
    initial_prototypes_ : ndarray, shape (n_cells, D)
        The prototypes training started from (standardised units).
    distance_quantiles_ : ndarray, shape (1001,)
        Quantiles at levels ``0, 0.001, ..., 1`` of the training rows' distances to their
        best prototype (standardised units); see :meth:`distance_threshold`.
    """

    def __init__(
        self,
        shape: tuple[int, int] = (32, 32),
        n_features: int = 6,
        backend: str = "torch",
        topology: str = "rectangular",
        sigma: float | None = None,
        learning_rate: float | None = None,
        standardize: bool = True,
        feature_names: Sequence[str] | None = None,
        seed: int = 0,
        device: str | None = None,
        *,
        sigma_final: float = 1.0,
        init: str | np.ndarray = "pca",
        batch_size: int | None = None,
    ) -> None:
        try:
            rows, cols = (int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape must be (rows, cols), got {shape!r}") from None
        if rows < 1 or cols < 1 or rows * cols < 2:
            raise ValueError(f"shape must have rows, cols >= 1 and at least 2 cells, got {shape!r}")
        if int(n_features) < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {tuple(BACKENDS)}, got {backend!r}")
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")
        self.grid = Grid(rows, cols, topology)
        self.n_features = int(n_features)
        if isinstance(init, str):
            if init not in _INITS:
                raise ValueError(f"init must be one of {_INITS} or an array, got {init!r}")
        else:
            init = np.array(init, dtype=np.float64)
            if init.shape != (rows * cols, self.n_features) or not np.isfinite(init).all():
                raise ValueError(f"init as an array must be finite prototypes of shape "
                                 f"(rows*cols, n_features) = ({rows * cols}, {n_features}), got "
                                 f"{init.shape}")
        self.init = init
        self.sigma = float(sigma) if sigma is not None else max(rows, cols) / 2.0
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 cells, got {sigma}")
        if not float(sigma_final) > 0:
            raise ValueError(f"sigma_final must be > 0 cells, got {sigma_final}")
        self.sigma_final = float(min(sigma_final, self.sigma))
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1 rows, got {batch_size}")
        self.standardize = bool(standardize)
        if feature_names is None:
            feature_names = [f"x{i}" for i in range(self.n_features)]
        feature_names = [str(f) for f in feature_names]
        if len(feature_names) != self.n_features:
            raise ValueError(f"feature_names has {len(feature_names)} names for n_features="
                             f"{self.n_features}")
        self.feature_names = feature_names
        self.seed = int(seed)
        self.backend = backend
        self._engine: SOMBackend = BACKENDS[backend](
            self.grid, self.n_features, sigma=self.sigma, sigma_final=self.sigma_final,
            learning_rate=learning_rate, batch_size=batch_size, seed=self.seed, device=device)
        self.standardizer: Standardizer | None = None
        self.history: list[dict] = []
        self.epochs_trained = 0
        self.initial_prototypes_: np.ndarray | None = None
        self.distance_quantiles_: np.ndarray | None = None

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the map."""
        return self.grid.shape

    @property
    def n_cells(self) -> int:
        """Number of cells ``rows * cols``."""
        return self.grid.n_cells

    @property
    def topology(self) -> str:
        return self.grid.topology

    @property
    def engine(self) -> SOMBackend:
        """The backend object that trains and maps."""
        return self._engine

    @property
    def learning_rate(self) -> float:
        return self._engine.learning_rate

    @property
    def batch_size(self) -> int | None:
        return getattr(self._engine, "batch_size", None)

    @property
    def device(self) -> str:
        return self._engine.device

    @property
    def grid_positions(self) -> np.ndarray:
        """Positions ``(x, y)`` of the cells on the grid, shape ``(n_cells, 2)``, in cells.

        ``x`` runs along columns and ``y`` along rows. On a hexagonal map columns are
        ``sqrt(3)/2`` apart and alternate columns are shifted by half a cell (minisom's
        geometry); neighbours are 1 apart.
        """
        return self.grid.positions.copy()

    @property
    def is_fitted(self) -> bool:
        return self._engine.prototypes is not None

    @property
    def prototypes(self) -> np.ndarray:
        """Prototype (codebook) vectors, shape ``(n_cells, D)``, standardised units."""
        self._check_fitted()
        return self._engine.prototypes

    @property
    def prototypes_raw(self) -> np.ndarray:
        """Prototypes in the input units (the standardisation undone), shape ``(n_cells, D)``."""
        w = self.prototypes
        return self.standardizer.inverse_transform(w) if self.standardizer is not None else w

    def __repr__(self) -> str:
        return (f"SOM(shape={self.shape}, n_features={self.n_features}, backend={self.backend!r}, "
                f"topology={self.topology!r}, fitted={self.is_fitted}, "
                f"epochs_trained={self.epochs_trained})")

    # ------------------------------------------------------------------ input checks
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("the SOM is not trained: call fit(X) or SOM.load(path) first")

    def _as_array(self, X: Any, name: str = "X") -> np.ndarray:
        """``X`` as a 2-D float array of ``n_features`` columns (no copy when possible).

        A DataFrame holding every feature name has those columns taken, in the model's
        order; otherwise its columns are used as they are."""
        if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor
            X = X.detach().cpu().numpy()
        try:
            if hasattr(X, "columns") and hasattr(X, "to_numpy"):
                if all(f in X.columns for f in self.feature_names):
                    X = X[self.feature_names]
                X = X.to_numpy(dtype=np.float64)
            X = np.asarray(X)
            if X.dtype.kind not in "fiub":
                raise TypeError
            if X.dtype.kind != "f":
                X = X.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a numeric [N, {self.n_features}] array") from None
        if X.ndim == 1 and self.n_features == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise ValueError(f"{name} must be a 2-D [N, {self.n_features}] array, got shape "
                             f"{X.shape}")
        if X.shape[1] != self.n_features:
            raise ValueError(f"{name} has {X.shape[1]} features but this SOM was built for "
                             f"{self.n_features} ({', '.join(self.feature_names)}); pass the same "
                             f"features, in the same order, as in training")
        if X.shape[0] == 0:
            raise ValueError(f"{name} is empty (0 rows); pass at least one row")
        return X

    def _check_nan(self, X: np.ndarray, nan_policy: str, chunk: int,
                   name: str = "X") -> np.ndarray | None:
        """None if every row is finite, else the boolean mask of finite rows ("mark")."""
        if nan_policy not in _NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")
        ok = np.empty(len(X), dtype=bool)
        for s in range(0, len(X), chunk):
            ok[s:s + chunk] = np.isfinite(X[s:s + chunk]).all(axis=1)
        if ok.all():
            return None
        if nan_policy == "raise":
            bad = ~ok
            raise ValueError(
                f"{name} has {int(bad.sum())} of {len(X)} rows with NaN or infinite features "
                f"(first row indices: {_first_indices(bad)}); drop them (e.g. with the `valid` "
                f"mask of photozsom.features.som_features) or pass nan_policy='mark' to map "
                f"them to cell -1 with distance NaN")
        return ok

    def _standardized(self, X: np.ndarray) -> np.ndarray:
        """Raw features -> standardised float32 (the stored transform)."""
        if self.standardizer is not None:
            return self.standardizer.transform(X)
        return np.ascontiguousarray(X, dtype=np.float32)

    def _chunk_rows(self, chunk_size: int | None) -> int:
        if chunk_size is None:
            return self._engine.chunk_rows
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)

    def _chunks(self, X: np.ndarray, chunk: int, ok: np.ndarray | None, progress: bool = False
                ) -> Iterator[tuple[slice, np.ndarray | None, np.ndarray]]:
        """Yield ``(row slice, valid-row mask or None, standardised valid rows)`` per chunk."""
        from tqdm.auto import tqdm

        n_chunks = -(-len(X) // chunk)
        for s in tqdm(range(0, len(X), chunk), total=n_chunks, desc="SOM predict", unit="chunk",
                      disable=None if progress and n_chunks > 1 else True):
            raw = X[s:s + chunk]
            m = None if ok is None else ok[s:s + chunk]
            if m is not None and m.all():
                m = None
            yield slice(s, s + len(raw)), m, self._standardized(raw if m is None else raw[m])

    # ------------------------------------------------------------------ training
    def _initial(self, Xs: np.ndarray) -> np.ndarray:
        if isinstance(self.init, np.ndarray):
            return self.init.copy()
        make = pca_prototypes if self.init == "pca" else random_prototypes
        return make(Xs, self.grid, self.seed)

    def fit(self, X: Any, epochs: int | None = None, progress: bool = True,
            chunk_size: int | None = None) -> SOM:
        """Train the map on ``X`` (fits the standardisation first, if enabled).

        Parameters
        ----------
        X : array_like, shape (N, D)
            Raw training features (e.g. :func:`~photozsom.features.som_features` of the
            random sample, AB mag, or embeddings). Every row must be finite.
        epochs : int, optional
            Full passes over the data. None (default): the backend's own schedule (torch:
            subsampled ordering and settling steps, then full passes until the quantization
            error stalls, over at most ``max(50000, 50 * n_cells)`` rows; minisom: one random-order online pass).
            Torch with ``epochs=E``: the same subsample steps, then exactly ``E`` passes
            over all rows. Minisom with
            ``epochs=E``: ``E`` ordered online passes.
        progress : bool
            Show a progress bar (quiet when not a terminal).
        chunk_size : int, optional
            Rows per chunk when recording the training distances.

        Returns
        -------
        SOM
            ``self``, trained; :attr:`distance_quantiles_` holds the training distances.

        Raises
        ------
        ValueError
            Wrong feature count, empty input, ``epochs < 1``, or rows with NaN/inf (their
            indices are listed).
        """
        X = self._as_array(X)
        if epochs is not None:
            if int(epochs) < 1:
                raise ValueError(f"epochs must be >= 1 (or None for the default schedule), "
                                 f"got {epochs}")
            epochs = int(epochs)
        chunk = self._chunk_rows(chunk_size)
        self._check_nan(X, "raise", chunk)
        self.standardizer = (Standardizer().fit(X, names=self.feature_names)
                             if self.standardize else None)
        Xs = np.ascontiguousarray(self._standardized(X), dtype=np.float32)
        self.initial_prototypes_ = self._initial(Xs)
        result: FitResult = self._engine.fit(Xs, self.initial_prototypes_, epochs=epochs,
                                             progress=progress)
        self.history = list(result.history)
        self.epochs_trained = int(result.epochs)
        d = result.distances
        if d is None:
            d = np.concatenate([self._engine.bmu(Xs[s:s + chunk])[1]
                                for s in range(0, len(Xs), chunk)])
        self.distance_quantiles_ = np.quantile(d, DISTANCE_LEVELS)
        return self

    # ------------------------------------------------------------------ mapping
    def predict_with_distances(self, X: Any, nan_policy: str = "raise",
                               chunk_size: int | None = None, progress: bool = False
                               ) -> tuple[np.ndarray, np.ndarray]:
        """Best-matching cell and the distance to its prototype, in one pass.

        Parameters
        ----------
        X : array_like, shape (N, D)
            Raw features (same columns and units as in training). Streamed in chunks, so
            tens of millions of rows map in bounded memory.
        nan_policy : {"raise", "mark"}
            Rows with a NaN/inf feature: refuse them (``ValueError`` naming the first row
            indices) or map them to cell ``-1`` with distance NaN.
        chunk_size : int, optional
            Rows per chunk.
        progress : bool
            Progress bar over chunks.

        Returns
        -------
        cells : ndarray, shape (N,), int64
            Flat cell index ``i * cols + j`` in ``[0, n_cells)``, or -1 (marked rows).
        distances : ndarray, shape (N,), float64
            Euclidean distance to the best prototype, standardised feature units (NaN for
            marked rows).
        """
        self._check_fitted()
        X = self._as_array(X)
        chunk = self._chunk_rows(chunk_size)
        ok = self._check_nan(X, nan_policy, chunk)
        cells = np.full(len(X), -1, dtype=np.int64)
        dist = np.full(len(X), np.nan, dtype=np.float64)
        for sl, m, xs in self._chunks(X, chunk, ok, progress):
            if len(xs) == 0:
                continue
            idx, d = self._engine.bmu(xs)
            if m is None:
                cells[sl], dist[sl] = idx, d
            else:
                cells[sl][m], dist[sl][m] = idx, d
        return cells, dist

    def predict(self, X: Any, nan_policy: str = "raise", chunk_size: int | None = None,
                progress: bool = False) -> np.ndarray:
        """Best-matching cell of each row, int64 ``(N,)``: ``i * cols + j``, or -1 for rows
        with NaN/inf features under ``nan_policy="mark"``.

        See :meth:`predict_with_distances` for the parameters.
        """
        return self.predict_with_distances(X, nan_policy, chunk_size, progress)[0]

    def distances(self, X: Any, nan_policy: str = "raise", chunk_size: int | None = None,
                  progress: bool = False) -> np.ndarray:
        """Euclidean distance of each row to its best prototype, standardised units, ``(N,)``.

        Large values mark inputs outside the colour space the map was trained on (compare
        with :meth:`distance_threshold`); rows marked by ``nan_policy="mark"`` get NaN.
        """
        return self.predict_with_distances(X, nan_policy, chunk_size, progress)[1]

    def occupancy(self, X: Any, nan_policy: str = "raise", chunk_size: int | None = None
                  ) -> np.ndarray:
        """Number of rows of ``X`` mapped to each cell, int64, shape ``(n_cells,)``.

        Rows marked ``-1`` (``nan_policy="mark"``) are not counted.
        """
        cells = self.predict(X, nan_policy, chunk_size)
        return np.bincount(cells[cells >= 0], minlength=self.n_cells).astype(np.int64)

    def quantization_error(self, X: Any, chunk_size: int | None = None) -> float:
        """Mean Euclidean distance of the rows of ``X`` to their best prototype
        (standardised units). Rows must be finite."""
        return float(self.distances(X, "raise", chunk_size).mean())

    def topographic_error(self, X: Any, chunk_size: int | None = None) -> float:
        """Fraction of rows whose best and second-best cells are not neighbours on the grid.

        Neighbours follow minisom: on a rectangular map the 8 surrounding cells (grid
        distance <= 1.42); on a hexagonal map the 6 cells at distance 1. Rows must be finite.
        """
        self._check_fitted()
        X = self._as_array(X)
        chunk = self._chunk_rows(chunk_size)
        self._check_nan(X, "raise", chunk)
        errors = 0
        for _, _, xs in self._chunks(X, chunk, None):
            top2 = self._engine.best_two(xs)
            errors += int((~self.grid.adjacent(top2[:, 0], top2[:, 1])).sum())
        return errors / len(X)

    # ------------------------------------------------------------------ training distances
    def record_distances(self, X: Any, chunk_size: int | None = None) -> SOM:
        """Record the distance distribution of ``X`` as this map's training distances.

        :meth:`fit` does this on the training rows; use it for a map built with
        :meth:`from_prototypes` or read from a file that lacks them. Rows must be finite.
        """
        d = self.distances(X, "raise", chunk_size)
        self.distance_quantiles_ = np.quantile(d, DISTANCE_LEVELS)
        return self

    def _quantile_table(self) -> np.ndarray:
        if self.distance_quantiles_ is None:
            raise ValueError("this SOM has no training distances (built from prototypes or "
                             "read from an old file): call som.record_distances(X_train) once")
        return self.distance_quantiles_

    def distance_threshold(self, quantile: float | np.ndarray) -> float | np.ndarray:
        """Training-row distance to the best prototype at ``quantile`` (standardised units).

        Parameters
        ----------
        quantile : float or array_like in [0, 1]
            E.g. 0.99: 99% of the training rows lie closer to their best prototype.

        Returns
        -------
        float or ndarray
            Interpolated linearly in the 1001 stored quantiles.
        """
        q = np.asarray(quantile, dtype=np.float64)
        if not (np.isfinite(q).all() and (q >= 0).all() and (q <= 1).all()):
            raise ValueError(f"quantile must lie in [0, 1], got {quantile!r}")
        out = np.interp(q, DISTANCE_LEVELS, self._quantile_table())
        return float(out) if out.ndim == 0 else out

    def distance_quantile(self, distances: Any) -> np.ndarray:
        """Fraction of training rows closer to their best prototype than each distance.

        The inverse of :meth:`distance_threshold`: 0 below the smallest training distance,
        1 above the largest; NaN stays NaN. Shape as ``distances``.
        """
        table = self._quantile_table()
        d = np.asarray(distances, dtype=np.float64)
        out = np.interp(d, table, DISTANCE_LEVELS)
        return np.where(np.isnan(d), np.nan, out)

    # ------------------------------------------------------------------ catalogues
    def fit_catalog(self, catalog: Any, epochs: int | None = None, progress: bool = True,
                    skip_invalid: bool = False) -> SOM:
        """Train on :func:`photozsom.features.som_features` of a DR10 catalogue.

        Parameters
        ----------
        catalog : DataFrame or astropy Table
            DR10 columns ``FLUX_*``, ``FLUX_IVAR_*``, ``MW_TRANSMISSION_*`` for
            g, r, i, z, W1, W2 (fluxes in nanomaggies), e.g. the random sample.
        epochs, progress
            As for :meth:`fit`.
        skip_invalid : bool
            Rows without all six features (no i-band, no W2 data) raise by default; with
            True they are left out of training with a warning giving their number.
        """
        self._check_catalog_features()
        X, valid = som_features(catalog, name="SOM training catalogue")
        if not valid.all():
            if not skip_invalid:
                raise ValueError(
                    f"{int((~valid).sum())} of {len(X)} catalogue rows lack a SOM feature "
                    f"(first row indices: {_first_indices(~valid)}), e.g. no i-band in the north; "
                    f"select the south (PHOTSYS == 'S') or pass skip_invalid=True")
            warnings.warn(f"fit_catalog: {int((~valid).sum())} of {len(X)} rows lack a SOM "
                          f"feature and are left out of training", stacklevel=2)
            X = X[valid]
        return self.fit(X, epochs=epochs, progress=progress)

    def predict_catalog(self, catalog: Any, nan_policy: str = "raise",
                        chunk_size: int | None = None) -> np.ndarray:
        """Cells of a DR10 catalogue's :func:`~photozsom.features.som_features` rows.

        Use ``nan_policy="mark"`` to map rows without all six features (e.g. northern rows
        without i-band) to cell ``-1``.
        """
        self._check_catalog_features()
        X, _ = som_features(catalog, name="catalogue")
        return self.predict(X, nan_policy=nan_policy, chunk_size=chunk_size)

    def _check_catalog_features(self) -> None:
        if self.n_features != len(SOM_FEATURES):
            raise ValueError(f"fit_catalog/predict_catalog use the {len(SOM_FEATURES)} SOM "
                             f"features {SOM_FEATURES}; this SOM has n_features={self.n_features}")
        if self.feature_names == [f"x{i}" for i in range(self.n_features)]:
            self.feature_names = list(SOM_FEATURES)
        elif self.feature_names != list(SOM_FEATURES):
            raise ValueError(f"this SOM's features {self.feature_names} are not the catalogue "
                             f"SOM features {SOM_FEATURES}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_prototypes(cls, prototypes: np.ndarray, shape: tuple[int, int],
                        standardizer: Standardizer | None = None, **kwargs: Any) -> SOM:
        """A trained map from given prototypes (standardised units), shape ``(n_cells, D)``.

        ``kwargs`` are passed to :class:`SOM` (``backend``, ``topology``, ...). Without
        ``standardizer`` the inputs are used as they are. The map has no training distances
        until :meth:`record_distances` is called.
        """
        w = np.asarray(prototypes, dtype=np.float64)
        rows, cols = shape
        if w.ndim != 2 or w.shape[0] != rows * cols:
            raise ValueError(f"prototypes must be [rows*cols, D] = [{rows * cols}, D], got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError("prototypes contain NaN or inf")
        if standardizer is not None and "feature_names" not in kwargs and standardizer.names:
            kwargs["feature_names"] = standardizer.names
        som = cls(shape=shape, n_features=w.shape[1], standardize=standardizer is not None,
                  **kwargs)
        som.standardizer = standardizer
        som._engine.set_prototypes(w)
        return som

    def _settings(self) -> dict:
        return {"topology": self.topology, "feature_names": self.feature_names,
                "sigma": self.sigma, "sigma_final": self.sigma_final, "seed": self.seed,
                "init": self.init}

    def with_backend(self, backend: str, device: str | None = None) -> SOM:
        """A copy of this trained map that maps with another backend (same prototypes,
        standardisation and training distances)."""
        self._check_fitted()
        som = SOM.from_prototypes(self.prototypes, self.shape, self.standardizer,
                                  backend=backend, device=device, **self._settings())
        som.epochs_trained, som.history = self.epochs_trained, list(self.history)
        som.initial_prototypes_ = self.initial_prototypes_
        som.distance_quantiles_ = self.distance_quantiles_
        return som

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trained map as an artifact directory (:mod:`photozsom.artifacts`).

        ``meta.json`` holds the shape, topology, backend and its settings, feature names,
        standardisation, training history; ``arrays.npz`` the prototypes (standardised
        units), the initial prototypes and the training-distance quantiles. No pickle.
        The directory is replaced atomically.

        Returns
        -------
        Path
            The directory written.
        """
        self._check_fitted()
        meta = {
            "shape": list(self.shape),
            "n_features": self.n_features,
            "feature_names": self.feature_names,
            "backend": self.backend,
            "topology": self.topology,
            "sigma": self.sigma,
            "sigma_final": self.sigma_final,
            "backend_settings": self._engine.settings(),
            "seed": self.seed,
            "init": self.init if isinstance(self.init, str) else "array",
            "epochs_trained": self.epochs_trained,
            "history": self.history,
            "standardizer": None if self.standardizer is None else self.standardizer.to_dict(),
            "distance_levels": "linspace(0, 1, 1001)",
        }
        arrays = {"prototypes": self.prototypes}
        if self.initial_prototypes_ is not None:
            arrays["initial_prototypes"] = self.initial_prototypes_
        if self.distance_quantiles_ is not None:
            arrays["distance_quantiles"] = self.distance_quantiles_
        return save_artifact(path, "som", arrays, meta, version=ARTIFACT_VERSION)

    @classmethod
    def load(cls, path: str | os.PathLike, expect_shape: tuple[int, int] | None = None,
             expect_features: Sequence[str] | int | None = None, device: str | None = None,
             backend: str | None = None) -> SOM:
        """Read a map written by :meth:`save` (or a single-file ``.npz`` of earlier versions).

        Parameters
        ----------
        path : str or PathLike
            The artifact directory.
        expect_shape : (int, int), optional
            Raise ``ValueError`` unless the map has this ``(rows, cols)``.
        expect_features : list of str or int, optional
            Raise ``ValueError`` unless the map was trained on these feature names (in this
            order) or on this many features.
        device : str, optional
            Torch device for the torch backend.
        backend : {"torch", "minisom"}, optional
            Map with this backend instead of the one the map was trained with.
        """
        path = Path(path)
        if path.is_file():
            arrays, meta = _read_npz_v1(path)
        else:
            arrays, meta = load_artifact(path, "som", versions=(ARTIFACT_VERSION,))
        shape = tuple(int(s) for s in meta["shape"])
        if expect_shape is not None and tuple(int(s) for s in expect_shape) != shape:
            raise ValueError(f"{path} holds a {shape[0]}x{shape[1]} SOM, expected "
                             f"{tuple(expect_shape)}; retrain or load the matching file")
        names = list(meta["feature_names"])
        if expect_features is not None:
            if isinstance(expect_features, (int, np.integer)):
                if int(expect_features) != int(meta["n_features"]):
                    raise ValueError(f"{path} holds a SOM of {meta['n_features']} features "
                                     f"({names}), expected {int(expect_features)}")
            elif list(expect_features) != names:
                raise ValueError(f"{path} holds a SOM trained on features {names}, expected "
                                 f"{list(expect_features)}; map the same features in the same "
                                 f"order or retrain")
        std = meta["standardizer"]
        w0 = arrays.get("initial_prototypes")
        init = w0 if meta.get("init") == "array" and w0 is not None else meta.get("init", "pca")
        if isinstance(init, str) and init not in _INITS:
            init = "pca"
        same = backend is None or backend == meta["backend"]
        extra = meta.get("backend_settings", {}) if same else {}
        som = cls.from_prototypes(
            arrays["prototypes"], shape, Standardizer.from_dict(std) if std is not None else None,
            backend=backend or meta["backend"], topology=meta["topology"], feature_names=names,
            sigma=meta["sigma"], sigma_final=meta["sigma_final"], seed=meta["seed"],
            device=device, init=init, learning_rate=extra.get("learning_rate"),
            batch_size=extra.get("batch_size"))
        som.epochs_trained = int(meta["epochs_trained"])
        som.initial_prototypes_ = w0
        som.history = list(meta["history"])
        som.distance_quantiles_ = arrays.get("distance_quantiles")
        return som


def _read_npz_v1(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and metadata of a single-file SOM ``.npz`` (format_version 1 of earlier
    photozsom versions), in the layout of the artifact."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if k != "meta"}
            meta = json.loads(str(f["meta"]))
        arrays["prototypes"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path} is not a SOM written by SOM.save: {e}") from None
    if meta.get("format_version", 0) > 1:
        raise ValueError(f"{path} has SOM file format {meta['format_version']}; this photozsom "
                         f"reads up to 1: upgrade photozsom")
    meta["backend_settings"] = {"learning_rate": meta.get("learning_rate")}
    return arrays, meta
