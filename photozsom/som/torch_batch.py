"""The torch backend: Kohonen's batch map on subsamples, then on all rows until the QE stalls.

One **batch-map step** on rows ``x_i`` at neighbourhood width ``sigma`` finds every row's
best-matching unit (BMU) with the matrix product ``||w||^2 - 2 x.w`` (float32, ``addmm``,
in cache-sized row blocks), accumulates the per-cell sums ``S_k = sum_{bmu(i)=k} x_i`` and
counts ``n_k`` (float64, ``index_add_``) and moves every prototype towards its
neighbourhood-weighted mean:

.. math::

    m_k = \\frac{\\sum_l h_{kl}(\\sigma) S_l}{\\sum_l h_{kl}(\\sigma) n_l}, \\qquad
    w_k \\leftarrow w_k + \\alpha (m_k - w_k), \\qquad
    h_{kl}(\\sigma) = \\exp\\left(-\\frac{|r_k - r_l|^2}{2\\sigma^2}\\right),

with ``r_k`` the cell's grid position (:class:`~photozsom.som.grid.Grid`) and ``alpha`` the
learning rate (default 1, the classic batch map). A cell whose neighbourhood holds no row
keeps its prototype.

The **schedule** (:meth:`TorchBatchSOM.schedule`) has three phases:

1. *ordering*: ``ORDER_STEPS = 8`` steps, each on a fresh subsample of ``m // 2`` rows,
   the width falling geometrically from ``sigma`` to ``sigma_final``
   (``sigma_t = sigma (sigma_final / sigma)^(t / 7)``). Wide neighbourhoods unfold the map
   over the data; a few rows per cell are enough for that.
2. *settling*: ``SETTLE_STEPS = 8`` steps on fresh subsamples of
   ``m = min(batch_size, max(N / 8, 4 * n_cells))`` rows (``batch_size`` defaults to
   ``max(10,000, 10 * n_cells)``; ``N / 8`` keeps the subsample work below two passes on
   small samples) at ``sigma_final``. The fixed-width batch map
   converges slowly (like k-means), so most of its steps are taken here, at a fraction of
   a pass each. Subsamples are disjoint slices of one seeded permutation of the rows.
3. *passes* at ``sigma_final``. With ``epochs=None`` they go over
   ``min(N, max(PASS_ROWS = 50,000, 50 * n_cells))`` rows (all rows, or one seeded random
   subset of a larger sample: a QE measured on 50,000 rows is precise to ~0.2%, and the
   prototypes, means over thousands of rows, have converged by then); each first
   measures the quantization error (QE, the mean distance of the rows to their
   best-matching prototype) and stops, without updating, when it is less than
   ``TOL = 0.5%`` below the previous step's (for the first pass: the last settling
   subsample's, less two of its standard errors), or after ``MAX_PASSES = 10``. The stopping pass's distances are those of
   the final map, so the training distances (:meth:`photozsom.som.SOM.distance_threshold`)
   come from it at no extra cost. With ``epochs=E``, exactly ``E`` passes over all rows,
   each with an update, are made.

When there are fewer rows than a subsample, every step uses all rows.

On the CPU the row blocks of the BMU search run on ``torch.get_num_threads()`` Python
worker threads that each run single-threaded torch ops (no thread barriers, which stall
badly on a shared CPU). On CUDA the data are moved to the GPU once when they fit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm.auto import tqdm

from photozsom.device import default_device
from photozsom.som.base import FitResult, SOMBackend
from photozsom.som.grid import Grid

__all__ = ["TorchBatchSOM"]

#: Column group width of the two-stage argmin (``amin`` over groups, then ``argmin``):
#: faster than a plain ``argmin`` over ~1000 cells on the CPU, same result.
_ARGMIN_GROUP = 64


class TorchBatchSOM(SOMBackend):
    """Batch-map SOM in torch (CUDA when present); see the module docstring.

    Parameters
    ----------
    grid : Grid
    n_features : int
    sigma : float
        Initial neighbourhood width, cells.
    sigma_final : float
        Width of the settling and full-pass phases, cells.
    learning_rate : float, optional
        Fraction ``alpha`` in ``(0, 1]`` of the step to the neighbourhood mean (default 1).
    batch_size : int, optional
        The most rows per settling step, ordering steps taking half as many (default
        ``max(10000, 10 * n_cells)``).
    seed : int
        Seed of the subsample permutation.
    device : str, optional
        Torch device (default :func:`photozsom.device.default_device`).
    """

    name = "torch"
    default_learning_rate = 1.0
    max_learning_rate = 1.0
    ORDER_STEPS = 8
    SETTLE_STEPS = 8
    MAX_PASSES = 10
    TOL = 5e-3
    PASS_ROWS = 50_000

    def __init__(self, grid: Grid, n_features: int, *, sigma: float, sigma_final: float = 1.0,
                 learning_rate: float | None = None, batch_size: int | None = None,
                 seed: int = 0, device: str | None = None) -> None:
        super().__init__(grid, n_features, sigma=sigma, learning_rate=learning_rate, seed=seed)
        self.sigma_final = float(sigma_final)
        self.batch_size = (int(batch_size) if batch_size is not None
                           else max(10_000, 10 * grid.n_cells))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 rows, got {batch_size}")
        self.device = default_device(device)
        self._weights: torch.Tensor | None = None
        self._local = threading.local()

    def __getstate__(self) -> dict:  # picklable / deep-copyable: drop the worker state
        state = self.__dict__.copy()
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def settings(self) -> dict:
        return {"sigma": self.sigma, "sigma_final": self.sigma_final,
                "learning_rate": self.learning_rate, "batch_size": self.batch_size}

    # ------------------------------------------------------------------ prototypes
    @property
    def prototypes(self) -> np.ndarray | None:
        if self._weights is None:
            return None
        return self._weights.detach().cpu().numpy().astype(np.float64)

    def set_prototypes(self, w: np.ndarray | torch.Tensor) -> None:
        if not isinstance(w, torch.Tensor):
            w = torch.from_numpy(np.asarray(w, dtype=np.float32))
        w = w.to(device=self.device, dtype=torch.float32).contiguous()
        self._weights = w
        K = self.grid.n_cells
        g = _ARGMIN_GROUP if K >= 4 * _ARGMIN_GROUP else K
        kp = -(-K // g) * g
        wt = torch.zeros(self.n_features, kp, dtype=torch.float32, device=self.device)
        wt[:, :K] = w.T
        wsq = torch.full((kp,), float("inf"), dtype=torch.float32, device=self.device)
        wsq[:K] = (w.double() ** 2).sum(1).float()
        self._wt_pad, self._wsq_pad, self._group = wt, wsq, g

    # ------------------------------------------------------------------ kernels
    def _block_rows(self) -> int:
        """Rows per block of the ``[rows, n_cells]`` score matrix: ~2 MB of float32 on the
        CPU (stays in a core's cache, also when other processes share the CPU), ~256 MB on
        a GPU."""
        budget = 2**19 if not str(self.device).startswith("cuda") else 2**26
        return int(min(2**18, max(256, budget // self.grid.n_cells)))

    @property
    def chunk_rows(self) -> int:
        """Rows handed over at once: ~64 MB of float32 input, at most 2**18 rows (the score
        matrix is formed in much smaller blocks inside, :meth:`_block_rows`)."""
        return int(min(2**18, max(self._block_rows(), 2**24 // self.n_features)))

    def _scores(self, xs: torch.Tensor) -> torch.Tensor:
        """``||w_k||^2 - 2 x.w_k`` for every row and cell (padded cells +inf), ``[c, K']``."""
        return torch.addmm(self._wsq_pad, xs, self._wt_pad, alpha=-2.0)

    @contextlib.contextmanager
    def _workers(self) -> Iterator[None]:
        """Map row blocks on ``torch.get_num_threads()`` Python threads (CPU only).

        Each worker runs single-threaded torch ops on its own blocks (torch releases the
        GIL). The intra-op thread count is 1 meanwhile and restored afterwards.
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
        """``out_i[s:e] = fn(xs[s:e])[i]`` over row blocks, on the worker threads when active
        (blocks are disjoint: thread-safe)."""
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

    def _bmu_block(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, exact distance)`` of the best cell of each row of one block.

        The index equals ``scores.argmin(1)`` (first minimum on ties), found in two stages
        (``amin`` over groups of cells, then ``argmin`` within the winning group); the
        distance ``|x - w_bmu|`` is recomputed directly, free of the expansion's
        cancellation.
        """
        d = self._scores(xs)
        c, g = d.shape[0], self._group
        if g == d.shape[1]:
            idx = d.argmin(1)
        else:
            v = d.view(c, -1, g)
            gi = v.amin(2).argmin(1)
            idx = gi * g + v[torch.arange(c, device=d.device), gi].argmin(1)
        return idx, (xs - self._weights[idx]).pow_(2).sum(1).sqrt_()

    def _bmu_tensor(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = xs.shape[0]
        idx = torch.empty(n, dtype=torch.int64, device=xs.device)
        dist = torch.empty(n, dtype=torch.float32, device=xs.device)
        self._blockwise(xs, self._bmu_block, (idx, dist))
        return idx, dist

    def _to_device(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return x.to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ mapping
    def bmu(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad(), self._workers():
            idx, d = self._bmu_tensor(self._to_device(Xs))
        return idx.cpu().numpy(), d.cpu().numpy().astype(np.float64)

    def best_two(self, Xs: np.ndarray) -> np.ndarray:
        K = self.grid.n_cells
        xs = self._to_device(Xs)
        out = torch.empty(len(xs), 2, dtype=torch.int64, device=xs.device)

        def top2(x: torch.Tensor) -> tuple[torch.Tensor]:
            return (torch.topk(self._scores(x)[:, :K], 2, dim=1, largest=False,
                               sorted=True).indices,)

        with torch.no_grad(), self._workers():
            self._blockwise(xs, top2, (out,))
        return out.cpu().numpy()

    # ------------------------------------------------------------------ training
    def schedule(self, n_samples: int, epochs: int | None = None) -> list[dict]:
        """The planned steps for ``n_samples`` training rows: one dict per step with
        ``phase`` ("order", "settle", "full"), ``rows`` and ``sigma`` (cells).

        With ``epochs=None`` the full passes listed are the most that are made
        (``MAX_PASSES``); training stops earlier when the QE stalls.
        """
        N = int(n_samples)
        m = min(N, self.batch_size, max(N // 8, 4 * self.grid.n_cells))
        m_o = max(1, m // 2)
        n_o = self.ORDER_STEPS
        t = np.arange(n_o) / max(n_o - 1, 1)
        sig = self.sigma * (self.sigma_final / self.sigma) ** t
        plan = [{"phase": "order", "rows": m_o, "sigma": float(s)} for s in sig]
        plan += [{"phase": "settle", "rows": m, "sigma": self.sigma_final}] * self.SETTLE_STEPS
        if epochs is None:
            n_full = self.MAX_PASSES
            rows = min(N, max(self.PASS_ROWS, 50 * self.grid.n_cells))
        else:
            n_full, rows = int(epochs), int(n_samples)
        plan += [{"phase": "full", "rows": rows, "sigma": self.sigma_final}] * n_full
        return plan

    def step(self, Xs: np.ndarray | torch.Tensor, sigma: float) -> float:
        """One batch-map update on rows ``Xs`` at width ``sigma``; returns their QE before it."""
        with torch.no_grad(), self._workers():
            S, n, d = self._accumulate(self._to_device(Xs))
            self._update(S, n, sigma)
        return float(d.double().mean())

    def _accumulate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-cell sums ``S`` (float64 ``[K, D]``), counts ``n`` and the rows' BMU distances."""
        K = self.grid.n_cells
        idx, d = self._bmu_tensor(x)
        S = torch.zeros(K, self.n_features, dtype=torch.float64, device=x.device)
        S.index_add_(0, idx, x.double())
        n = torch.bincount(idx, minlength=K).double()
        return S, n, d

    def _update(self, S: torch.Tensor, n: torch.Tensor, sigma: float) -> None:
        D = self.n_features
        sums = self.grid.neighbourhood_sums(torch.cat([S, n[:, None]], 1), float(sigma))
        num, den = sums[:, :D], sums[:, D]
        ok = den > 1e-12 * max(float(n.sum()), 1.0)
        mean = num / den.clamp(min=1e-300)[:, None]
        w = self._weights.double()
        w = torch.where(ok[:, None], w + self.learning_rate * (mean - w), w)
        self.set_prototypes(w.float())

    def fit(self, Xs: np.ndarray, init: np.ndarray, *, epochs: int | None,
            progress: bool) -> FitResult:
        with torch.no_grad(), self._workers():
            return self._fit(Xs, init, epochs, progress)

    def _fit(self, Xs: np.ndarray, init: np.ndarray, epochs: int | None,
             progress: bool) -> FitResult:
        self.set_prototypes(init)
        N = len(Xs)
        X = torch.from_numpy(np.ascontiguousarray(Xs, dtype=np.float32))
        on_device = str(self.device) == "cpu" or X.numel() <= 2**28
        if on_device:
            X = X.to(self.device)
        plan = self.schedule(N, epochs)
        gen = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(N, generator=gen) if plan[0]["rows"] < N else None
        chunk = 2**18  # rows per accumulation on full passes (bounded float64 copies)
        pos, prev, prev_se, passes, subset = 0, None, 0.0, 0, None
        history: list[dict] = []
        final = None
        bar = tqdm(plan, desc="SOM training", unit="step", disable=None if progress else True)
        for k, st in enumerate(bar):
            if st["phase"] == "full" and st["rows"] < N:
                if subset is None:  # one seeded subset for every pass
                    subset = torch.randperm(N, generator=gen)[:st["rows"]].sort().values
                parts = [X[subset[s:s + chunk].to(X.device)] for s in range(0, len(subset), chunk)]
            elif st["rows"] < N:
                take = perm[pos:pos + st["rows"]]
                if len(take) < st["rows"]:
                    take = torch.cat([take, perm[:st["rows"] - len(take)]])
                pos = (pos + st["rows"]) % N
                parts = [X[take.to(X.device)]]
            else:
                parts = [X[s:s + chunk] for s in range(0, N, chunk)]
            S = n = None
            dists = []
            for x in parts:
                s_, n_, d_ = self._accumulate(self._to_device(x))
                S, n = (s_, n_) if S is None else (S + s_, n + n_)
                dists.append(d_)
            d = torch.cat(dists) if len(dists) > 1 else dists[0]
            qe = float(d.double().mean())
            rec = {"step": k, "phase": st["phase"], "rows": int(st["rows"]),
                   "sigma": float(st["sigma"]), "qe": qe, "updated": True}
            full = st["phase"] == "full"
            passes += full
            if full and epochs is None and prev is not None and prev - qe < self.TOL * qe + prev_se:
                rec["updated"] = False  # the map has stopped improving: keep it
                history.append(rec)
                final = d.cpu().numpy().astype(np.float64)
                break
            self._update(S, n, st["sigma"])
            history.append(rec)
            if full or st["phase"] == "settle":
                # a subsample's QE estimates the full data's before the first pass; within
                # two of its standard errors a pass is no measurable improvement
                prev = qe
                prev_se = 0.0 if full else 2.0 * float(d.double().std()) / max(len(d), 1) ** 0.5
            bar.set_postfix(phase=st["phase"], sigma=f"{st['sigma']:.2f}", qe=f"{qe:.4f}")
        bar.close()
        return FitResult(history=history, epochs=passes, distances=final)
