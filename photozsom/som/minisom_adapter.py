"""The minisom backend: :class:`minisom.MiniSom` (Vettigli 2018) behind the SOM interface.

Everything that touches minisom's private attributes lives in this module.

Training starts from the façade's initial prototypes (minisom's own ``pca_weights_init``
spans only ``+-1`` unit vector along each component) with a Gaussian neighbourhood whose
width decays from ``sigma`` to 1 (``sigma_decay_function="inverse_decay_to_one"``) and a
learning rate decaying linearly from ``learning_rate`` (default 0.5) to 0:

- ``epochs=None``: ``MiniSom.train(X, N, random_order=True)``, one online update per row
  in a seeded random order (how minisom is usually run);
- ``epochs=E``: ``MiniSom.train_batch(X, E * N)``, the rows in order, ``E`` times.

Mapping uses minisom's float64 numpy distances, so this backend is the reference the
torch backend is tested against.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from photozsom.som.base import FitResult, SOMBackend
from photozsom.som.grid import Grid

__all__ = ["MiniSomBackend"]


class MiniSomBackend(SOMBackend):
    """:class:`minisom.MiniSom` as a SOM backend; see the module docstring.

    Parameters
    ----------
    grid : Grid
    n_features : int
    sigma : float
        Initial neighbourhood width, cells (decays to 1).
    learning_rate : float, optional
        Initial online learning rate (default 0.5), decaying linearly to 0.
    seed : int
        minisom's ``random_seed`` (the random visiting order).
    sigma_final, batch_size, device
        Accepted for a common signature with the torch backend and ignored.
    """

    name = "minisom"
    default_learning_rate = 0.5

    def __init__(self, grid: Grid, n_features: int, *, sigma: float, sigma_final: float = 1.0,
                 learning_rate: float | None = None, batch_size: int | None = None,
                 seed: int = 0, device: str | None = None) -> None:
        super().__init__(grid, n_features, sigma=sigma, learning_rate=learning_rate, seed=seed)
        self.device = "cpu"
        self._som: Any = None

    def settings(self) -> dict:
        return {"sigma": self.sigma, "learning_rate": self.learning_rate}

    def _new(self) -> Any:
        from minisom import MiniSom

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # minisom warns on 1-wide maps
            return MiniSom(self.grid.rows, self.grid.cols, self.n_features, sigma=self.sigma,
                           learning_rate=self.learning_rate, neighborhood_function="gaussian",
                           topology=self.grid.topology, activation_distance="euclidean",
                           random_seed=self.seed, decay_function="linear_decay_to_zero",
                           sigma_decay_function="inverse_decay_to_one")

    @property
    def minisom(self) -> Any:
        """The wrapped :class:`minisom.MiniSom` (None before training)."""
        return self._som

    @property
    def prototypes(self) -> np.ndarray | None:
        if self._som is None:
            return None
        return np.array(self._som.get_weights(), dtype=np.float64).reshape(self.grid.n_cells, -1)

    def set_prototypes(self, w: np.ndarray) -> None:
        self._som = self._new()
        self._som._weights = np.array(w, dtype=np.float64).reshape(*self.grid.shape, -1)

    def fit(self, Xs: np.ndarray, init: np.ndarray, *, epochs: int | None,
            progress: bool) -> FitResult:
        self.set_prototypes(init)
        ms = self._som
        Xd = np.asarray(Xs, dtype=np.float64)
        N = len(Xd)
        if epochs is None:
            ms.train(Xd, N, random_order=True)
            return FitResult(history=[{"epoch": 0, "updates": N, "order": "random"}], epochs=1)
        # = ms.train_batch(Xd, epochs * N): rows in order, one online update each, the decay
        # clock running over all epochs * N updates; written out with minisom's own
        # winner/update only to show a progress bar per epoch
        total = epochs * N
        for ep in tqdm(range(epochs), desc="minisom epochs", unit="epoch",
                       disable=None if progress else True):
            for i in range(N):
                ms.update(Xd[i], ms.winner(Xd[i]), ep * N + i, total)
        return FitResult(history=[{"epoch": e, "updates": N, "order": "sequential"}
                                  for e in range(epochs)], epochs=epochs)

    def _distances(self, Xs: np.ndarray) -> np.ndarray:
        return self._som._distance_from_weights(np.asarray(Xs, dtype=np.float64))

    def bmu(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dm = self._distances(Xs)
        idx = dm.argmin(axis=1)
        return idx.astype(np.int64), dm[np.arange(len(idx)), idx]

    def best_two(self, Xs: np.ndarray) -> np.ndarray:
        return np.argsort(self._distances(Xs), axis=1)[:, :2].astype(np.int64)
