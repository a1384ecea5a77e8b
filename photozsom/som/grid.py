"""Geometry of a SOM grid: cell positions, neighbours and the Gaussian neighbourhood.

Shared by every backend and the :class:`~photozsom.som.SOM` façade. The geometry is
minisom's: cells ``k = i * cols + j`` for row ``i`` and column ``j``; on a rectangular grid
cell ``(i, j)`` sits at ``(x, y) = (j, i)``; on a hexagonal grid columns are ``sqrt(3)/2``
apart and the columns ``j`` with ``cols - 1 - j`` even are shifted by ``-1/2`` in ``y``, so
all six neighbours of a cell are 1 apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TOPOLOGIES", "Grid"]

TOPOLOGIES = ("rectangular", "hexagonal")
_HEX_DY = math.sqrt(3.0) / 2.0
#: Grid distance below which two cells are neighbours in the topographic error (minisom's
#: conventions: the 8 surrounding cells, threshold 1.42, on a rectangular grid; the 6 cells
#: at distance 1 on a hexagonal one).
_TE_THRESHOLD = {"rectangular": 1.42, "hexagonal": 1.0 + 1e-6}


@dataclass(frozen=True)
class Grid:
    """A ``rows x cols`` grid of cells with minisom's geometry.

    Parameters
    ----------
    rows, cols : int
    topology : {"rectangular", "hexagonal"}
    """

    rows: int
    cols: int
    topology: str = "rectangular"
    positions: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        i, j = np.meshgrid(np.arange(self.rows, dtype=np.float64),
                           np.arange(self.cols, dtype=np.float64), indexing="ij")
        if self.topology == "hexagonal":
            shift = np.where((self.cols - 1 - j) % 2 == 0, -0.5, 0.0)
            pos = np.column_stack([(j * _HEX_DY).ravel(), (i + shift).ravel()])
        else:
            pos = np.column_stack([j.ravel(), i.ravel()])
        pos.setflags(write=False)
        object.__setattr__(self, "positions", pos)

    @property
    def n_cells(self) -> int:
        return self.rows * self.cols

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    def adjacent(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """True where cells ``a`` and ``b`` are neighbours (minisom's topographic-error rule)."""
        d = np.hypot(*(self.positions[a] - self.positions[b]).T)
        return d <= _TE_THRESHOLD[self.topology]

    def neighbourhood_matrix(self, sigma: float) -> np.ndarray:
        """``h_kl = exp(-|r_k - r_l|^2 / (2 sigma^2))``, shape ``(n_cells, n_cells)`` (tests, small maps)."""
        d2 = ((self.positions[:, None, :] - self.positions[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2.0 * float(sigma) ** 2))

    def neighbourhood_sums(self, A, sigma: float):
        """``sum_l h_kl(sigma) A_l`` for per-cell rows ``A``, a torch tensor ``(n_cells, M)``.

        Computed without the ``n_cells^2`` matrix: the Gaussian factorises into a column
        part and a row part, and a hexagonal grid's half-cell column shifts take only two
        values. Returns a float64 tensor on ``A``'s device.
        """
        import torch

        A = A.to(torch.float64)
        dev = A.device
        rows, cols = self.rows, self.cols
        A3 = A.reshape(rows, cols, -1)
        pos = self.positions.reshape(rows, cols, 2)
        x = torch.tensor(pos[0, :, 0], dtype=torch.float64, device=dev)
        shift = pos[0, :, 1]  # y = i + shift_j
        two_s2 = 2.0 * float(sigma) ** 2
        hx = torch.exp(-(x[:, None] - x[None, :]) ** 2 / two_s2)  # [cols, cols]
        di = torch.arange(rows, dtype=torch.float64, device=dev)
        di = di[:, None] - di[None, :]  # target row - source row
        values = np.unique(shift)
        if len(values) == 1:
            hy = torch.exp(-di**2 / two_s2)
            return torch.einsum("ik,kqm,pq->ipm", hy, A3, hx).reshape(rows * cols, -1)
        out = torch.zeros_like(A3)
        groups = [(float(a), torch.as_tensor(np.flatnonzero(shift == a), device=dev))
                  for a in values]
        for a, P in groups:
            for b, Q in groups:
                hy = torch.exp(-(di + (a - b)) ** 2 / two_s2)  # [rows, rows]
                T = torch.einsum("ik,kqm->iqm", hy, A3[:, Q])
                out.index_add_(1, P, torch.einsum("iqm,pq->ipm", T, hx[P][:, Q]))
        return out.reshape(rows * cols, -1)
