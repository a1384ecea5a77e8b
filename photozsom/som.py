"""Self-organizing map: a fast torch batch SOM and a minisom backend behind one API.

The paper trains a SOM on the catalogue colours of a random, representative sample of
DR10-south galaxies and maps any other sample (the spectroscopic one, a user's catalogue)
into its cells. :class:`SOM` does both on any ``[N, D]`` float array: the six
:data:`photozsom.features.SOM_FEATURES` (``g-r, r-i, i-z, z-W1, W1-W2, r``, AB mag) or an
embedding (``D = 256`` AION feature vectors work the same way).

Two backends share the API:

``backend="torch"`` (default)
    Kohonen's *batch map*, updated on sub-batches, on CUDA when present and on the CPU
    otherwise. For every sample of a sub-batch the best-matching unit (BMU) is found with
    the matrix product ``||w||^2 - 2 x.w`` (float32, streamed in chunks); the per-cell sums
    ``S_k = sum_{i: bmu(i)=k} x_i`` and counts ``n_k`` are accumulated with ``index_add_``
    (float64); then every prototype moves towards its neighbourhood-weighted mean

    .. math::

        m_k = \\frac{\\sum_l h_{kl}(\\sigma_j) S_l}{\\sum_l h_{kl}(\\sigma_j) n_l}, \\qquad
        w_k \\leftarrow w_k + \\alpha\\,(m_k - w_k), \\qquad
        h_{kl}(\\sigma) = \\exp\\left(-\\frac{|r_k - r_l|^2}{2\\sigma^2}\\right),

    with ``r_k`` the cell's position on the grid (:attr:`SOM.grid_positions`).
    Each epoch but the last visits the samples in a fresh seeded random order, in
    sub-batches of ``batch_size`` samples (default ``4 * n_cells``, so ~4 samples per
    cell and about ``N / batch_size`` updates per pass, like a mini-batch k-means); the
    last epoch is one update on all samples (the classic batch map, which removes the
    sub-batch noise). With ``N <= batch_size`` every epoch is a single full batch update.
    On 200,000 galaxies this reaches minisom's quantization error in the same number of
    passes, which one batch update per epoch does not (see ``benchmarks/som.py``).

    The neighbourhood width follows minisom's ``inverse_decay_to_one`` shape over the
    ``J`` updates ``j = 0 .. J-1`` (:meth:`SOM.sigma_schedule`),

    .. math:: \\sigma_j = \\frac{\\sigma_0}{1 + \\tau_j (\\sigma_0 / \\sigma_\\mathrm{final} - 1)},
              \\qquad \\tau_j = j / (J - 1),

    from ``sigma`` (default ``max(rows, cols) / 2``) to ``sigma_final`` (default 1 cell),
    spending most updates at small widths. The learning rate ``alpha`` (default 1, the
    batch map) is the constant fraction of the step towards ``m_k``; the annealing is
    carried by ``sigma_j``. A cell whose neighbourhood holds no sample keeps its
    prototype. Prototypes start on the plane of the first two principal components
    (``init="pca"``: ``+-2`` standard deviations along each, longer map axis on the first;
    deterministic), at randomly drawn samples (``init="random"``, seeded), or at given
    prototypes.

    The distance matrix is formed in blocks of ~8 MB (cache-sized); on the CPU the
    blocks are spread over ``torch.get_num_threads()`` worker threads that each run
    single-threaded torch ops (no thread barriers, which stall badly on a shared CPU),
    so mapping runs in bounded memory at ~1-2 million rows/s on 2 cores for a 32x32 map
    of 6 features.

``backend="minisom"``
    Wraps :class:`minisom.MiniSom` (Vettigli 2018), the online SOM astronomers know:
    training is ``MiniSom.train(X, epochs * N)`` (one sample per update, cycling through
    the data ``epochs`` times in order, i.e. ``train_batch`` with ``num_iteration = epochs
    * N``) with a Gaussian neighbourhood whose width decays from ``sigma`` to 1
    (``sigma_decay_function="inverse_decay_to_one"``) and a learning rate decaying linearly
    from ``learning_rate`` (default 0.5) to 0, starting from the same initial prototypes as
    the torch backend. Prediction, quantization and topographic
    error use minisom's own (float64 numpy) code, so this backend is the reference the
    torch backend is tested against. It is about two orders of magnitude slower to train.

Both backends support ``topology="rectangular"`` and ``"hexagonal"``, with minisom's grid
geometry: on a hexagonal map neighbouring cells are 1 apart, columns are ``sqrt(3)/2``
apart and every other column is shifted by half a cell (:attr:`SOM.grid_positions`).

Cells are numbered ``k = i * cols + j`` for row ``i`` and column ``j`` (minisom's
``(x, y) = (i, j)``), so ``counts.reshape(rows, cols)`` is the map as an image.

Inputs are standardised with :class:`photozsom.features.Standardizer` statistics fitted on
the training data and stored in the model (and in its file), so every catalogue mapped
later goes through exactly the same transform. Prototypes and distances are in those
standardised units.

Rows with a NaN or infinite feature are never dropped silently: ``nan_policy="raise"``
refuses them (naming the first row indices), ``nan_policy="mark"`` maps them to cell
``-1`` ("no cell") at distance ``inf``.

Examples
--------
>>> import numpy as np
>>> from photozsom.som import SOM
>>> X = np.random.default_rng(0).normal(size=(2000, 3))
>>> som = SOM(shape=(6, 5), n_features=3, seed=0).fit(X, epochs=5, progress=False)
>>> cells = som.predict(X)
>>> cells.shape, int(cells.min()) >= 0, int(cells.max()) < som.n_cells
((2000,), True, True)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from photozsom.device import default_device
from photozsom.features import SOM_FEATURES, Standardizer, som_features

__all__ = ["FILE_FORMAT_VERSION", "SOM"]

#: Version of the ``.npz`` layout written by :meth:`SOM.save`.
FILE_FORMAT_VERSION = 1

_BACKENDS = ("torch", "minisom")
_TOPOLOGIES = ("rectangular", "hexagonal")
_INITS = ("pca", "random")
_NAN_POLICIES = ("raise", "mark")
_HEX_DY = math.sqrt(3.0) / 2.0
#: Grid distance below which two cells are neighbours in the topographic error (minisom's
#: conventions: 8-neighbourhood, threshold 1.42, on a rectangular grid; distance 1 on a
#: hexagonal one).
_TE_THRESHOLD = {"rectangular": 1.42, "hexagonal": 1.0 + 1e-6}
#: Column group width of the two-stage argmin (``amin`` over groups, then ``argmin``):
#: about 4x faster than a plain ``argmin`` over 1024 cells on the CPU, same result.
_ARGMIN_GROUP = 64
#: Rows of the PCA initialisation sample.
_PCA_SAMPLE = 100_000


def _grid_positions(rows: int, cols: int, topology: str) -> np.ndarray:
    """Plot positions ``(x, y)`` of the cells, shape ``(rows * cols, 2)``.

    ``x`` runs along columns, ``y`` along rows. The geometry is minisom's: a hexagonal map
    has columns ``sqrt(3)/2`` apart and the columns ``j`` with ``cols - 1 - j`` even shifted
    by ``-1/2`` in ``y``, so all six neighbours of a cell lie at distance 1.
    """
    i, j = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64),
                       indexing="ij")
    if topology == "hexagonal":
        shift = np.where((cols - 1 - j) % 2 == 0, -0.5, 0.0)
        return np.column_stack([(j * _HEX_DY).ravel(), (i + shift).ravel()])
    return np.column_stack([j.ravel(), i.ravel()])


def _first_indices(mask: np.ndarray, offset: int = 0, n: int = 10) -> list[int]:
    return [int(k) + offset for k in np.flatnonzero(mask)[:n]]


class SOM:
    """Self-organizing map of ``rows x cols`` cells on ``n_features``-dimensional data.

    Parameters
    ----------
    shape : (int, int)
        ``(rows, cols)`` of the map; the paper's map is ``(32, 32)``.
    n_features : int
        Number of input features ``D`` (6 for :func:`photozsom.features.som_features`,
        the embedding width for embeddings).
    backend : {"torch", "minisom"}
        Training and mapping engine (see the module docstring).
    topology : {"rectangular", "hexagonal"}
        Grid geometry (minisom's, for both backends).
    sigma : float, optional
        Initial neighbourhood width, cells; default ``max(rows, cols) / 2``.
    learning_rate : float, optional
        Torch: fraction ``alpha`` in ``(0, 1]`` of the step to the neighbourhood mean,
        constant over epochs (default 1, the batch map). Minisom: initial online learning
        rate, decaying linearly to 0 (default 0.5).
    standardize : bool
        Fit a :class:`~photozsom.features.Standardizer` on the training data and apply it
        to every input (default). If False, prototypes and distances are in input units.
    feature_names : sequence of str, optional
        Names of the ``D`` features, stored in the model and checked by :meth:`load`;
        default ``x0, x1, ...``.
    seed : int
        Seed of every random choice (random initialisation, PCA subsample, minisom).
    device : str, optional
        Torch device; default :func:`photozsom.device.default_device` (CUDA when present).
        Ignored by the minisom backend.
    sigma_final : float
        Final neighbourhood width of the torch backend, cells (default 1). The minisom
        backend always decays to 1.
    batch_size : int, optional
        Torch backend: samples per prototype update within an epoch (default
        ``4 * n_cells``, about 4 samples per cell); see the module docstring.
    init : {"pca", "random"} or ndarray
        Prototype initialisation (both backends): the PCA plane, random samples, or given
        prototypes of shape ``(n_cells, D)`` in standardised units.

    Attributes
    ----------
    standardizer : Standardizer or None
        Statistics of the training data (None before :meth:`fit` or if not standardising).
    history : list of dict
        Torch backend, one dict per epoch: ``epoch``, ``updates`` (prototype updates made),
        ``sigma`` (width at the epoch's last update, cells), ``learning_rate`` and ``qe``
        (mean distance of the samples to their BMU as they were mapped during the epoch,
        standardised units; a training diagnostic, not :meth:`quantization_error`).
    epochs_trained : int
    initial_prototypes_ : ndarray, shape (n_cells, D)
        The prototypes training started from (standardised units).
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
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if topology not in _TOPOLOGIES:
            raise ValueError(f"topology must be one of {_TOPOLOGIES}, got {topology!r}")
        if isinstance(init, str):
            if init not in _INITS:
                raise ValueError(f"init must be one of {_INITS} or an array, got {init!r}")
        else:
            init = np.array(init, dtype=np.float64)
            if init.shape != (rows * cols, int(n_features)) or not np.isfinite(init).all():
                raise ValueError(f"init as an array must be finite prototypes of shape "
                                 f"(rows*cols, n_features) = ({rows * cols}, {n_features}), got "
                                 f"{init.shape}")
        self._shape = (rows, cols)
        self.n_features = int(n_features)
        self.backend = backend
        self.topology = topology
        self.sigma = float(sigma) if sigma is not None else max(rows, cols) / 2.0
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 cells, got {sigma}")
        self.sigma_final = float(min(sigma_final, self.sigma))
        if not self.sigma_final > 0:
            raise ValueError(f"sigma_final must be > 0 cells, got {sigma_final}")
        default_lr = 1.0 if backend == "torch" else 0.5
        self.learning_rate = float(learning_rate) if learning_rate is not None else default_lr
        if not 0 < self.learning_rate <= (1.0 if backend == "torch" else np.inf):
            raise ValueError(f"learning_rate must be in (0, 1] for the torch backend, got "
                             f"{learning_rate}")
        self.standardize = bool(standardize)
        if feature_names is None:
            feature_names = [f"x{i}" for i in range(self.n_features)]
        feature_names = [str(f) for f in feature_names]
        if len(feature_names) != self.n_features:
            raise ValueError(f"feature_names has {len(feature_names)} names for n_features="
                             f"{self.n_features}")
        self.feature_names = feature_names
        self.seed = int(seed)
        self.init = init
        self.batch_size = int(batch_size) if batch_size is not None else 4 * rows * cols
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 samples, got {batch_size}")
        self.device = default_device(device) if backend == "torch" else "cpu"
        self.standardizer: Standardizer | None = None
        self.history: list[dict[str, float]] = []
        self.epochs_trained = 0
        self.initial_prototypes_: np.ndarray | None = None
        self._positions = _grid_positions(rows, cols, topology)
        self._weights: torch.Tensor | None = None  # torch backend, [K, D] float32
        self._minisom: Any = None  # minisom backend
        self._local = threading.local()  # .pool: block workers of this thread's call

    def __getstate__(self) -> dict:  # picklable / deep-copyable: drop the worker state
        state = self.__dict__.copy()
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the map."""
        return self._shape

    @property
    def n_cells(self) -> int:
        """Number of cells ``rows * cols``."""
        return self._shape[0] * self._shape[1]

    @property
    def grid_positions(self) -> np.ndarray:
        """Cell positions ``(x, y)`` for plotting, shape ``(n_cells, 2)``, cell units.

        ``x`` runs along columns and ``y`` along rows (``y = row``, ``x = column`` on a
        rectangular map). On a hexagonal map columns are ``sqrt(3)/2`` apart and alternate
        columns are shifted by half a cell, as in minisom; neighbours are 1 apart.
        """
        return self._positions.copy()

    @property
    def is_fitted(self) -> bool:
        return self._weights is not None or self._minisom is not None

    @property
    def prototypes(self) -> np.ndarray:
        """Prototype (codebook) vectors, shape ``(n_cells, D)``, standardised units."""
        self._check_fitted()
        if self.backend == "torch":
            return self._weights.detach().cpu().numpy().astype(np.float64)
        return np.array(self._minisom.get_weights(), dtype=np.float64).reshape(self.n_cells, -1)

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
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        try:
            if hasattr(X, "columns") and hasattr(X, "to_numpy"):  # DataFrame: columns by name
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

    def _finite_rows(self, X: np.ndarray, chunk: int) -> np.ndarray:
        ok = np.empty(len(X), dtype=bool)
        for s in range(0, len(X), chunk):
            ok[s:s + chunk] = np.isfinite(X[s:s + chunk]).all(axis=1)
        return ok

    def _check_nan(self, X: np.ndarray, nan_policy: str, chunk: int,
                   name: str = "X") -> np.ndarray | None:
        """None if every row is finite, else the boolean mask of finite rows ("mark")."""
        if nan_policy not in _NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")
        ok = self._finite_rows(X, chunk)
        if ok.all():
            return None
        if nan_policy == "raise":
            bad = ~ok
            raise ValueError(
                f"{name} has {int(bad.sum())} of {len(X)} rows with NaN or infinite features "
                f"(first row indices: {_first_indices(bad)}); drop them (e.g. with the `valid` "
                f"mask of photozsom.features.som_features) or pass nan_policy='mark' to map "
                f"them to cell -1 at distance inf")
        return ok

    def _standardized(self, X: np.ndarray) -> np.ndarray:
        """Chunk of raw features -> standardised float32 (the stored transform)."""
        if self.standardizer is not None:
            return self.standardizer.transform(X)
        return np.ascontiguousarray(X, dtype=np.float32)

    def _chunk_rows(self, chunk_size: int | None) -> int:
        if chunk_size is not None:
            if int(chunk_size) < 1:
                raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
            return int(chunk_size)
        if self.backend == "minisom":  # minisom forms float64 [rows, n_cells] distances
            return self._block_rows()
        # ~64 MB of float32 input per chunk, at most 2**18 rows; the distance matrix is
        # formed in smaller blocks (_block_rows) inside each chunk.
        return int(min(2**18, max(self._block_rows(), 2**24 // self.n_features)))

    def _block_rows(self) -> int:
        """Rows per block of the ``[rows, n_cells]`` score matrix: ~8 MB of float32, which
        stays in the last-level cache of a CPU."""
        return int(min(65536, max(256, 2**21 // self.n_cells)))

    # ------------------------------------------------------------------ torch kernels
    def _set_weights(self, w: np.ndarray | torch.Tensor) -> None:
        w = torch.as_tensor(np.asarray(w, dtype=np.float32) if not isinstance(w, torch.Tensor)
                            else w, dtype=torch.float32).to(self.device).contiguous()
        self._weights = w
        K = self.n_cells
        g = _ARGMIN_GROUP if K >= 4 * _ARGMIN_GROUP else K
        kp = -(-K // g) * g
        wt = torch.zeros(self.n_features, kp, dtype=torch.float32, device=self.device)
        wt[:, :K] = w.T
        wsq = torch.full((kp,), float("inf"), dtype=torch.float32, device=self.device)
        wsq[:K] = (w.double() ** 2).sum(1).float()
        self._wt_pad, self._wsq_pad, self._group = wt, wsq, g

    def _scores(self, xs: torch.Tensor) -> torch.Tensor:
        """``||w_k||^2 - 2 x.w_k`` for every row and cell (padded cells +inf), ``[c, K']``."""
        return torch.addmm(self._wsq_pad, xs, self._wt_pad, alpha=-2.0)

    @contextlib.contextmanager
    def _workers(self) -> Iterator[None]:
        """Map row blocks on ``torch.get_num_threads()`` Python threads (CPU).

        Each worker runs single-threaded torch ops on its own blocks (torch releases the
        GIL), so no op waits at a thread barrier: on a CPU shared with other processes this
        is ~10x faster than intra-op threading, and as fast on an idle one. The intra-op
        thread count is set to 1 meanwhile and restored afterwards.
        """
        n = torch.get_num_threads()
        if (getattr(self._local, "pool", None) is not None or n <= 1
                or not str(self.device).startswith("cpu")):
            yield
            return
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(n, thread_name_prefix="photozsom-som") as pool:
                self._local.pool, self._local.n_workers = pool, n
                yield
        finally:
            self._local.pool = None
            torch.set_num_threads(n)

    def _blockwise(self, xs: torch.Tensor, fn: Callable[[torch.Tensor], tuple],
                   outs: tuple[torch.Tensor, ...]) -> None:
        """``out_i[s:e] = fn(xs[s:e])[i]`` over row blocks of :meth:`_block_rows` rows, on the
        worker threads of :meth:`_workers` when active (blocks are disjoint: thread-safe)."""
        blk = self._block_rows()
        starts = list(range(0, xs.shape[0], blk))

        def run(part: list[int]) -> None:
            for s in part:
                for out, v in zip(outs, fn(xs[s:s + blk])):
                    out[s:s + blk] = v

        pool = getattr(self._local, "pool", None)
        if pool is None or len(starts) == 1:
            run(starts)
        else:
            k = self._local.n_workers
            list(pool.map(run, [starts[i::k] for i in range(k)]))

    def _bmu_torch(self, xs: torch.Tensor, output: str = "index"
                   ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Flat BMU index of each row of ``xs`` (standardised float32 on the device).

        Equals ``scores.argmin(1)`` (first minimum on ties), found in two stages (``amin``
        over groups of cells, then ``argmin`` within the winning group), which vectorises
        better on the CPU, in blocks of :meth:`_block_rows` rows. ``output="score"`` also
        returns the winning ``||w||^2 - 2 x.w``; ``output="distance"`` the exact Euclidean
        distance ``|x - w_bmu|`` (recomputed, free of the expansion's cancellation).
        """
        n = xs.shape[0]
        idx = torch.empty(n, dtype=torch.int64, device=xs.device)
        if output == "index":
            self._blockwise(xs, lambda x: (self._bmu_block(x)[0],), (idx,))
            return idx
        val = torch.empty(n, dtype=torch.float32, device=xs.device)
        if output == "score":
            self._blockwise(xs, self._bmu_block, (idx, val))
        else:
            def with_distance(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                i = self._bmu_block(x)[0]
                return i, (x - self._weights[i]).pow_(2).sum(1).sqrt_()

            self._blockwise(xs, with_distance, (idx, val))
        return idx, val

    def _bmu_block(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, score)`` of the best cell of each row of one block."""
        d = self._scores(xs)
        c, g = d.shape[0], self._group
        if g == d.shape[1]:
            score, idx = d.min(1)
        else:
            v = d.view(c, -1, g)
            gi = v.amin(2).argmin(1)  # group holding the minimum (first such group)
            score, j = v[torch.arange(c, device=d.device), gi].min(1)
            idx = gi * g + j
        return idx, score

    def _to_device(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ training
    def _pca_init(self, Xs: np.ndarray) -> np.ndarray:
        rows, cols = self.shape
        rng = np.random.default_rng(self.seed)
        sample = Xs if len(Xs) <= _PCA_SAMPLE else Xs[np.sort(rng.choice(len(Xs), _PCA_SAMPLE,
                                                                          replace=False))]
        sample = sample.astype(np.float64)
        mean = sample.mean(axis=0)
        D = sample.shape[1]
        if D == 1 or len(sample) < 2:
            sd = sample.std(axis=0) if len(sample) > 1 else np.ones(D)
            pcs, scales = np.stack([np.ones(D), np.zeros(D)]), np.array([2 * sd[0], 0.0])
        else:
            evals, evecs = np.linalg.eigh(np.cov(sample, rowvar=False))
            order = np.argsort(evals)[::-1][:2]
            pcs = evecs[:, order].T  # [2, D]
            # fix the sign (LAPACK may return either): largest component positive
            pcs *= np.sign(pcs[np.arange(2), np.abs(pcs).argmax(1)])[:, None]
            scales = 2.0 * np.sqrt(np.clip(evals[order], 0, None))
        # longer map axis along the first principal component
        a = np.linspace(-1, 1, rows) if rows > 1 else np.zeros(1)
        b = np.linspace(-1, 1, cols) if cols > 1 else np.zeros(1)
        if cols > rows:
            pcs, scales = pcs[::-1], scales[::-1]
        ai, bj = np.meshgrid(a, b, indexing="ij")
        return (mean + ai.ravel()[:, None] * scales[0] * pcs[0]
                + bj.ravel()[:, None] * scales[1] * pcs[1])

    def _initial(self, Xs: np.ndarray) -> np.ndarray:
        """Initial prototypes for standardised training data ``Xs``, ``(n_cells, D)``."""
        if isinstance(self.init, np.ndarray):
            return self.init.copy()
        return self._pca_init(Xs) if self.init == "pca" else self._random_init(Xs)

    def _random_init(self, Xs: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        idx = rng.choice(len(Xs), self.n_cells, replace=len(Xs) < self.n_cells)
        return Xs[idx].astype(np.float64)

    def n_updates(self, epochs: int, n_samples: int) -> tuple[int, int]:
        """``(sub-batches per epoch, total prototype updates)`` of the torch backend.

        Every epoch but the last makes ``U = max(1, round(n_samples / batch_size))`` updates;
        the last epoch makes one update on all samples.
        """
        per_epoch = max(1, round(n_samples / self.batch_size))
        return per_epoch, (epochs - 1) * per_epoch + 1

    def sigma_schedule(self, epochs: int, n_samples: int) -> np.ndarray:
        """Neighbourhood width of each prototype update of the torch backend, cells.

        ``sigma_j = sigma / (1 + tau_j (sigma / sigma_final - 1))`` with ``tau_j = j / (J - 1)``
        the fraction of the ``J`` updates done (:meth:`n_updates`): minisom's
        ``inverse_decay_to_one`` shape, from ``sigma`` to ``sigma_final`` at the last update.

        Returns
        -------
        ndarray, shape (J,)
        """
        J = self.n_updates(epochs, n_samples)[1]
        tau = np.arange(J) / (J - 1) if J > 1 else np.ones(1)
        return self.sigma / (1.0 + tau * (self.sigma / self.sigma_final - 1.0))

    def neighbourhood_sums(self, A: torch.Tensor | np.ndarray, sigma: float) -> torch.Tensor:
        """``sum_l h_kl(sigma) A_l`` for per-cell rows ``A`` of shape ``(n_cells, M)``.

        ``h_kl = exp(-|r_k - r_l|^2 / (2 sigma^2))`` on :attr:`grid_positions`. Computed
        without the ``n_cells^2`` matrix: the Gaussian factorises into a column part and a
        row part, and a hexagonal map's half-cell column shifts take only two values.
        """
        A = torch.as_tensor(A, dtype=torch.float64, device=self.device)
        rows, cols = self.shape
        A3 = A.reshape(rows, cols, -1)
        pos = self._positions.reshape(rows, cols, 2)
        x = torch.as_tensor(pos[0, :, 0], dtype=torch.float64, device=self.device)
        shift = pos[0, :, 1]  # y = i + shift_j
        two_s2 = 2.0 * float(sigma) ** 2
        hx = torch.exp(-(x[:, None] - x[None, :]) ** 2 / two_s2)  # [cols, cols]
        di = torch.arange(rows, dtype=torch.float64, device=self.device)
        di = di[:, None] - di[None, :]  # target row - source row
        out = torch.zeros_like(A3)
        groups = [(float(a), torch.as_tensor(np.flatnonzero(shift == a), device=self.device))
                  for a in np.unique(shift)]
        for a, P in groups:
            for b, Q in groups:
                hy = torch.exp(-(di + (a - b)) ** 2 / two_s2)  # [rows, rows]
                T = torch.einsum("ik,kqm->iqm", hy, A3[:, Q])
                out.index_add_(1, P, torch.einsum("iqm,pq->ipm", T, hx[P][:, Q]))
        return out.reshape(rows * cols, -1)

    def _fit_torch(self, Xs: np.ndarray, epochs: int, progress: bool, chunk: int) -> None:
        self._set_weights(self.initial_prototypes_)
        K, D, N = self.n_cells, self.n_features, len(Xs)
        on_device = self.device == "cpu" or Xs.size <= 2**28
        Xt = torch.from_numpy(Xs)
        if on_device:
            Xt = Xt.to(self.device)
        per_epoch, _ = self.n_updates(epochs, N)
        sigmas = self.sigma_schedule(epochs, N)
        gen = torch.Generator().manual_seed(self.seed)
        self.history = []
        j = 0
        bar = tqdm(range(epochs), desc="SOM epochs", unit="epoch", disable=None if progress else True)
        for t in bar:
            last = t == epochs - 1
            n_sub = 1 if last else per_epoch
            order = None if n_sub == 1 else torch.randperm(N, generator=gen)
            bounds = np.linspace(0, N, n_sub + 1).astype(np.int64)
            qe_sum = 0.0
            for u in range(n_sub):
                S = torch.zeros(K, D, dtype=torch.float64, device=self.device)
                n = torch.zeros(K, dtype=torch.float64, device=self.device)
                for s in range(int(bounds[u]), int(bounds[u + 1]), chunk):
                    e = min(s + chunk, int(bounds[u + 1]))
                    x = Xt[s:e] if order is None else Xt[order[s:e].to(Xt.device)]
                    if not on_device:
                        x = x.to(self.device, non_blocking=True)
                    idx, dmin = self._bmu_torch(x, output="score")
                    xd = x.double()
                    # |x - w|^2 from the expansion (float32): for the history only
                    qe_sum += float((dmin.double() + (xd**2).sum(1)).clamp_(min=0).sqrt_().sum())
                    S.index_add_(0, idx, xd)
                    n += torch.bincount(idx, minlength=K).double()
                sums = self.neighbourhood_sums(torch.cat([S, n[:, None]], 1), float(sigmas[j]))
                num, den = sums[:, :D], sums[:, D]
                ok = den > 1e-12 * max(float(n.sum()), 1.0)
                mean = num / den.clamp(min=1e-300)[:, None]
                w = self._weights.double()
                w = torch.where(ok[:, None], w + self.learning_rate * (mean - w), w)
                self._set_weights(w.float())
                j += 1
            qe = qe_sum / N
            self.history.append({"epoch": t, "updates": n_sub, "sigma": float(sigmas[j - 1]),
                                 "learning_rate": self.learning_rate, "qe": qe})
            bar.set_postfix(sigma=f"{sigmas[j - 1]:.2f}", qe=f"{qe:.4f}")

    def _new_minisom(self) -> Any:
        from minisom import MiniSom

        rows, cols = self.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # minisom warns on 1-wide maps
            return MiniSom(rows, cols, self.n_features, sigma=self.sigma,
                           learning_rate=self.learning_rate, neighborhood_function="gaussian",
                           topology=self.topology, activation_distance="euclidean",
                           random_seed=self.seed, decay_function="linear_decay_to_zero",
                           sigma_decay_function="inverse_decay_to_one")

    def _fit_minisom(self, Xs: np.ndarray, epochs: int, progress: bool) -> None:
        ms = self._new_minisom()
        Xd = Xs.astype(np.float64)
        # same initial prototypes as the torch backend (minisom's own pca_weights_init spans
        # only +-1 unit vector along each component)
        ms._weights = self.initial_prototypes_.reshape(*self.shape, -1).copy()
        # = ms.train_batch(Xd, epochs * N): samples in order, one online update each, the
        # decay clock t running over all epochs * N updates; written out (with minisom's own
        # winner/update) only to show a progress bar per epoch
        N = len(Xd)
        total = epochs * N
        for ep in tqdm(range(epochs), desc="minisom epochs", unit="epoch",
                       disable=None if progress else True):
            for i in range(N):
                ms.update(Xd[i], ms.winner(Xd[i]), ep * N + i, total)
        self._minisom = ms

    def fit(self, X: Any, epochs: int = 20, progress: bool = True,
            chunk_size: int | None = None) -> SOM:
        """Train the map on ``X`` (fits the standardisation first, if enabled).

        Parameters
        ----------
        X : array_like, shape (N, D)
            Raw training features (e.g. :func:`~photozsom.features.som_features` of the
            random sample, AB mag, or embeddings). Every row must be finite.
        epochs : int
            Passes over the data (torch: batch updates; minisom: ``epochs * N`` online
            updates).
        progress : bool
            Show a progress bar over epochs (quiet when not a terminal).
        chunk_size : int, optional
            Rows per BMU chunk (torch); default keeps the distance block near 16 MB.

        Returns
        -------
        SOM
            ``self``, trained.

        Raises
        ------
        ValueError
            Wrong feature count, empty input, or rows with NaN/inf (their indices are listed).
        """
        X = self._as_array(X)
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        epochs = int(epochs)
        chunk = self._chunk_rows(chunk_size)
        self._check_nan(X, "raise", chunk)
        if self.standardize:
            self.standardizer = Standardizer().fit(X, names=self.feature_names)
        else:
            self.standardizer = None
        Xs = np.ascontiguousarray(self._standardized(X), dtype=np.float32)
        self._weights, self._minisom = None, None
        self.initial_prototypes_ = self._initial(Xs)
        if self.backend == "torch":
            with torch.no_grad(), self._workers():
                self._fit_torch(Xs, epochs, progress, chunk)
        else:
            self._fit_minisom(Xs, epochs, progress)
        self.epochs_trained = epochs
        return self

    # ------------------------------------------------------------------ mapping
    def _iter_mapped(self, X: np.ndarray, chunk: int, progress: bool, ok: np.ndarray | None
                     ) -> Iterator[tuple[int, np.ndarray, Any]]:
        """Yield ``(start, valid-row mask or None, standardised valid rows)`` per chunk."""
        n_chunks = -(-len(X) // chunk)
        for s in tqdm(range(0, len(X), chunk), total=n_chunks, desc="SOM predict", unit="chunk",
                      disable=None if progress and n_chunks > 1 else True):
            raw = X[s:s + chunk]
            m = None if ok is None else ok[s:s + chunk]
            if m is not None and m.all():
                m = None
            yield s, m, self._standardized(raw if m is None else raw[m])

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
            indices) or map them to cell ``-1`` at distance ``inf``.
        chunk_size : int, optional
            Rows per chunk.
        progress : bool
            Progress bar over chunks.

        Returns
        -------
        cells : ndarray, shape (N,), int64
            Flat cell index ``i * cols + j`` in ``[0, n_cells)``, or -1 (marked rows).
        distances : ndarray, shape (N,), float64
            Euclidean distance to the best prototype, standardised feature units
            (``inf`` for marked rows).
        """
        self._check_fitted()
        X = self._as_array(X)
        chunk = self._chunk_rows(chunk_size)
        ok = self._check_nan(X, nan_policy, chunk)
        cells = np.full(len(X), -1, dtype=np.int64)
        dist = np.full(len(X), np.inf, dtype=np.float64)
        torch_backend = self.backend == "torch"
        with torch.no_grad(), (self._workers() if torch_backend else contextlib.nullcontext()):
            for s, m, xs in self._iter_mapped(X, chunk, progress, ok):
                sl = slice(s, s + chunk)
                if len(xs) == 0:
                    continue
                if torch_backend:
                    idx, d = self._bmu_torch(self._to_device(xs), output="distance")
                    idx, d = idx.cpu().numpy(), d.cpu().numpy()
                else:
                    dm = self._minisom._distance_from_weights(xs.astype(np.float64))
                    idx = dm.argmin(axis=1)
                    d = dm[np.arange(len(idx)), idx]
                if m is None:
                    cells[sl], dist[sl] = idx, d
                else:
                    cells[sl][m], dist[sl][m] = idx, d
        return cells, dist

    def predict(self, X: Any, nan_policy: str = "raise", chunk_size: int | None = None,
                progress: bool = False) -> np.ndarray:
        """Best-matching cell of each row.

        Returns
        -------
        ndarray, shape (N,), int64
            Flat cell index ``i * cols + j`` in ``[0, n_cells)``; ``-1`` ("no cell") for rows
            with NaN/inf features when ``nan_policy="mark"``.

        See :meth:`predict_with_distances` for the parameters.
        """
        return self.predict_with_distances(X, nan_policy, chunk_size, progress)[0]

    def distances(self, X: Any, nan_policy: str = "raise", chunk_size: int | None = None,
                  progress: bool = False) -> np.ndarray:
        """Euclidean distance of each row to its best prototype, standardised units, shape (N,).

        Large values mark inputs outside the colour space the map was trained on; rows
        marked by ``nan_policy="mark"`` get ``inf``.
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
        """Mean Euclidean distance of the rows of ``X`` to their best prototype (standardised
        units). Rows must be finite."""
        self._check_fitted()
        X = self._as_array(X)
        if self.backend == "minisom":
            chunk = self._chunk_rows(chunk_size)
            self._check_nan(X, "raise", chunk)
            total = sum(self._minisom.quantization_error(xs.astype(np.float64)) * len(xs)
                        for _, _, xs in self._iter_mapped(X, chunk, False, None))
            return float(total / len(X))
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
        if self.backend == "minisom":
            total = sum(self._minisom.topographic_error(xs.astype(np.float64)) * len(xs)
                        for _, _, xs in self._iter_mapped(X, chunk, False, None))
            return float(total / len(X))
        pos = torch.as_tensor(self._positions, dtype=torch.float32, device=self.device)
        thr = _TE_THRESHOLD[self.topology]

        def not_adjacent(x: torch.Tensor) -> tuple[torch.Tensor]:
            d = self._scores(x)[:, : self.n_cells]
            top2 = torch.topk(d, 2, dim=1, largest=False, sorted=True).indices
            return ((pos[top2[:, 0]] - pos[top2[:, 1]]).norm(dim=1) > thr,)

        errors = 0
        with torch.no_grad(), self._workers():
            for _, _, xs in self._iter_mapped(X, chunk, False, None):
                flag = torch.empty(len(xs), dtype=torch.bool, device=self.device)
                self._blockwise(self._to_device(xs), not_adjacent, (flag,))
                errors += int(flag.sum())
        return errors / len(X)

    # ------------------------------------------------------------------ catalogues
    def fit_catalog(self, catalog: Any, epochs: int = 20, progress: bool = True,
                    skip_invalid: bool = False) -> SOM:
        """Train on :func:`photozsom.features.som_features` of a DR10 catalogue.

        Parameters
        ----------
        catalog : DataFrame or astropy Table
            DR10 columns ``FLUX_*``, ``FLUX_IVAR_*``, ``MW_TRANSMISSION_*`` for
            g, r, i, z, W1, W2 (fluxes in nanomaggies), e.g. the random sample.
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
        ``standardizer`` the inputs are used as they are.
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
        if som.backend == "torch":
            som._set_weights(w)
        else:
            som._minisom = som._new_minisom()
            som._minisom._weights = w.reshape(rows, cols, -1).copy()
        return som

    def with_backend(self, backend: str) -> SOM:
        """A copy of this trained map that maps with the other backend (same prototypes)."""
        self._check_fitted()
        som = SOM.from_prototypes(self.prototypes, self.shape, self.standardizer,
                                  backend=backend, topology=self.topology,
                                  feature_names=self.feature_names, sigma=self.sigma,
                                  seed=self.seed, init=self.init,
                                  sigma_final=self.sigma_final, batch_size=self.batch_size)
        som.epochs_trained, som.history = self.epochs_trained, list(self.history)
        som.initial_prototypes_ = self.initial_prototypes_
        return som

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the trained map to a ``.npz`` file (no pickle; readable with numpy alone).

        The file holds the prototypes (standardised units), the standardisation statistics,
        the feature names, shape, topology, backend, schedules and training history.
        """
        self._check_fitted()
        meta = {
            "format_version": FILE_FORMAT_VERSION,
            "shape": list(self.shape),
            "n_features": self.n_features,
            "feature_names": self.feature_names,
            "backend": self.backend,
            "topology": self.topology,
            "sigma": self.sigma,
            "sigma_final": self.sigma_final,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "init": self.init if isinstance(self.init, str) else "array",
            "batch_size": self.batch_size,
            "epochs_trained": self.epochs_trained,
            "history": self.history,
            "standardizer": None if self.standardizer is None else self.standardizer.to_dict(),
        }
        path = os.fspath(path)
        arrays = {"prototypes": self.prototypes, "meta": np.array(json.dumps(meta))}
        if self.initial_prototypes_ is not None:
            arrays["initial_prototypes"] = self.initial_prototypes_
        with open(path, "wb") as fh:  # keep the name as given (np.savez would add .npz)
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, expect_shape: tuple[int, int] | None = None,
             expect_features: Sequence[str] | int | None = None, device: str | None = None,
             backend: str | None = None) -> SOM:
        """Read a map written by :meth:`save`.

        Parameters
        ----------
        path : str or PathLike
        expect_shape : (int, int), optional
            Raise ``ValueError`` unless the map has this ``(rows, cols)``.
        expect_features : list of str or int, optional
            Raise ``ValueError`` unless the map was trained on these feature names (in this
            order) or on this many features.
        device : str, optional
            Torch device for the torch backend.
        backend : {"torch", "minisom"}, optional
            Map with this backend instead of the one the file was trained with.
        """
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                w = f["prototypes"]
                meta = json.loads(str(f["meta"]))
                w0 = f["initial_prototypes"] if "initial_prototypes" in f.files else None
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{path} is not a SOM file written by SOM.save: {e}") from None
        if meta.get("format_version", 0) > FILE_FORMAT_VERSION:
            raise ValueError(f"{path} has SOM file format {meta['format_version']}; this photozsom "
                             f"reads up to {FILE_FORMAT_VERSION}: upgrade photozsom")
        shape = tuple(meta["shape"])
        if expect_shape is not None and tuple(int(s) for s in expect_shape) != shape:
            raise ValueError(f"{path} holds a {shape[0]}x{shape[1]} SOM, expected "
                             f"{tuple(expect_shape)}; retrain or load the matching file")
        names = list(meta["feature_names"])
        if expect_features is not None:
            if isinstance(expect_features, (int, np.integer)):
                if int(expect_features) != meta["n_features"]:
                    raise ValueError(f"{path} holds a SOM of {meta['n_features']} features "
                                     f"({names}), expected {int(expect_features)}")
            elif list(expect_features) != names:
                raise ValueError(f"{path} holds a SOM trained on features {names}, expected "
                                 f"{list(expect_features)}; map the same features in the same "
                                 f"order or retrain")
        std = meta["standardizer"]
        init = w0 if meta["init"] == "array" and w0 is not None else meta["init"]
        if isinstance(init, str) and init not in _INITS:
            init = "pca"
        som = cls.from_prototypes(
            w, shape, Standardizer.from_dict(std) if std is not None else None,
            backend=backend or meta["backend"], topology=meta["topology"], feature_names=names,
            sigma=meta["sigma"], learning_rate=None if backend else meta["learning_rate"],
            seed=meta["seed"], device=device, init=init, sigma_final=meta["sigma_final"],
            batch_size=meta.get("batch_size"))
        som.epochs_trained = int(meta["epochs_trained"])
        som.initial_prototypes_ = w0
        som.history = list(meta["history"])
        return som
