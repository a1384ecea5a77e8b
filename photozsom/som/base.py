"""The interface every SOM backend implements, and the initial prototypes they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from photozsom.som.grid import Grid

__all__ = ["FitResult", "SOMBackend", "pca_prototypes", "random_prototypes"]

#: Rows of the PCA initialisation sample.
_PCA_SAMPLE = 100_000


@dataclass
class FitResult:
    """What a backend's :meth:`SOMBackend.fit` reports.

    Attributes
    ----------
    history : list of dict
        One JSON-serialisable dict per training epoch.
    epochs : int
        Epochs run.
    distances : ndarray or None
        Distance of every training row to its BMU under the final prototypes (standardised
        units), when the backend computed it anyway; None otherwise.
    """

    history: list[dict] = field(default_factory=list)
    epochs: int = 0
    distances: np.ndarray | None = None


class SOMBackend(ABC):
    """Training and mapping engine behind :class:`photozsom.som.SOM`.

    A backend sees standardised ``float32`` arrays only; the façade validates inputs,
    standardises them, streams them in chunks of :attr:`chunk_rows` rows and handles
    missing values. Distances are Euclidean, in the units of the arrays it is given.
    """

    #: Name used by ``SOM(backend=...)``.
    name: str = ""
    #: Learning rate when none is given.
    default_learning_rate: float = 1.0
    #: Largest learning rate the backend accepts.
    max_learning_rate: float = float("inf")

    def __init__(self, grid: Grid, n_features: int, *, sigma: float,
                 learning_rate: float | None = None, seed: int = 0) -> None:
        self.grid = grid
        self.n_features = int(n_features)
        self.sigma = float(sigma)
        lr = self.default_learning_rate if learning_rate is None else float(learning_rate)
        if not 0 < lr <= self.max_learning_rate:
            raise ValueError(f"learning_rate must be in (0, {self.max_learning_rate:g}] for the "
                             f"{self.name} backend, got {learning_rate}")
        self.learning_rate = lr
        self.seed = int(seed)

    @abstractmethod
    def fit(self, Xs: np.ndarray, init: np.ndarray, *, epochs: int | None,
            progress: bool) -> FitResult:
        """Train from prototypes ``init`` ``(n_cells, D)`` on rows ``Xs`` ``(N, D)``."""

    @property
    @abstractmethod
    def prototypes(self) -> np.ndarray | None:
        """Prototypes ``(n_cells, D)`` float64, or None before training."""

    @abstractmethod
    def set_prototypes(self, w: np.ndarray) -> None:
        """Use the given prototypes ``(n_cells, D)``."""

    @abstractmethod
    def bmu(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best-matching unit of each row and the distance to it: int64 ``(n,)``, float64 ``(n,)``."""

    @abstractmethod
    def best_two(self, Xs: np.ndarray) -> np.ndarray:
        """The best and second-best cells of each row, int64 ``(n, 2)``."""

    @property
    def chunk_rows(self) -> int:
        """Rows the façade hands to :meth:`bmu` at once (default: a ``[rows, n_cells]``
        float64 distance matrix of ~16 MB)."""
        return int(min(65536, max(256, 2**21 // self.grid.n_cells)))

    def settings(self) -> dict:
        """The backend's hyper-parameters, JSON-serialisable (saved with the map)."""
        return {}


def pca_prototypes(Xs: np.ndarray, grid: Grid, seed: int) -> np.ndarray:
    """Prototypes on the plane of the first two principal components, ``(n_cells, D)``.

    ``+-2`` standard deviations along each component, the longer grid axis along the first;
    deterministic (component signs fixed: largest entry positive). A PCA of at most
    100,000 rows drawn with ``seed``.
    """
    rows, cols = grid.shape
    rng = np.random.default_rng(seed)
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
        pcs *= np.sign(pcs[np.arange(2), np.abs(pcs).argmax(1)])[:, None]
        scales = 2.0 * np.sqrt(np.clip(evals[order], 0, None))
    a = np.linspace(-1, 1, rows) if rows > 1 else np.zeros(1)
    b = np.linspace(-1, 1, cols) if cols > 1 else np.zeros(1)
    if cols > rows:
        pcs, scales = pcs[::-1], scales[::-1]
    ai, bj = np.meshgrid(a, b, indexing="ij")
    return (mean + ai.ravel()[:, None] * scales[0] * pcs[0]
            + bj.ravel()[:, None] * scales[1] * pcs[1])


def random_prototypes(Xs: np.ndarray, grid: Grid, seed: int) -> np.ndarray:
    """Prototypes at ``n_cells`` rows of ``Xs`` drawn with ``seed`` (with replacement only
    when there are fewer rows than cells)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(Xs), grid.n_cells, replace=len(Xs) < grid.n_cells)
    return Xs[idx].astype(np.float64)
