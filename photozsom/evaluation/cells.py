"""Photo-z performance cell by cell on the SOM, with bootstrap errors and significance.

:func:`report` measures, for every SOM cell, the test-sample metrics of
:mod:`photozsom.evaluation.metrics` (mean redshift, MAD, bias, η, PCO), a bootstrap error for each, the
paper's reference band for a cell of that size, and whether the cell deviates
significantly from the global value after correcting for testing ~1000 cells at once
(Benjamini-Hochberg). :func:`trend` summarises how each metric runs with the number of
training galaxies in the cell (the paper's Figure 1 question, "is local density predictive
of performance?"): a rank correlation for MAD and bias, a binomial regression of the cell's
counts (:func:`binomial_trend`) for the proportions η and PCO, whose per-cell values are
too often exactly 0 in small cells for a rank test to keep its level.

Statistical choices (all in the docstrings below, collected here):

- **Errors** (``*_err``) are bootstrap standard deviations of each cell's metric over
  ``n_boot`` resamples of the cell's test galaxies with replacement. They are drawn from the
  *exact* bootstrap distribution without materialising every resample where that
  distribution has a closed form: a resampled proportion (η, PCO) is
  ``Binomial(n, p̂)/n``; a resampled median of ``n`` values is an order statistic of the
  sorted cell values whose rank is ``ceil(n U)`` with ``U`` the ``k``-th order statistic of
  ``n`` uniforms, ``U ~ Beta(k, n + 1 - k)`` (the next one for even ``n`` follows as
  ``U' = U + (1 - U) Beta(1, n - k)``). Means (bias, mean redshift) are resampled
  literally, vectorised across all cells and a block of resamples at a time (threads with
  ``n_jobs``). ``bootstrap="ideal"`` replaces the replicates of the means and proportions by
  their ``n_boot -> infinity`` limit, the plug-in standard deviation over ``sqrt(n)``: no
  Monte Carlo noise and a fraction of the cost on millions of galaxies.
- **Reference band** (``*_ref``), as drawn in the paper's Figure 1: the 1-sigma sampling
  noise of the *global* value for a sample of the cell's size ``n`` (test galaxies):
  standard error of the standard deviation ``MAD_global / sqrt(2 (n - 1))`` for MAD,
  standard error of the mean ``std(Δz) / sqrt(n)`` for bias, binomial
  ``sqrt(p (1 - p) / n)`` for η and PCO (the paper's "Poisson noise").
- **Significance** tests, metric by metric, the null hypothesis that the cell's value
  equals the global one. The z-score divides the deviation from the global value by a
  null standard error ``*_sigma0``:

  - MAD: the sampling error of the global MAD at the cell's size,
    ``1.4826 / (2 f(m) sqrt(n))`` with ``f(m)`` the density of ``|Δz|`` at its median,
    estimated from the global sample (``1.166 sigma / sqrt(n)`` for Gaussian residuals,
    1.65 times the paper's standard-error-of-STD band, which would flag too many cells);
    the p-value is the exact sign test: the number of the cell's ``|Δz|`` above the global
    median is ``Binomial(n, p0)`` under the null, ``p0`` (about 1/2) the global fraction.
  - bias: a one-sample t-test of the cell's residuals against the global bias with the
    cell's own standard deviation, so a cell that merely scatters more is not called
    biased (``*_ref`` keeps the paper's band from the global standard deviation).
  - η and PCO: ``sqrt(p (1 - p) / n)`` with the global ``p``, and the exact two-sided
    binomial p-value ``min(1, 2 min(P(K <= k), P(K >= k)))``.

  The bootstrap error is *not* used for testing: a cell with no outlier has a bootstrap
  error of zero, which would make every such cell infinitely significant, whereas the null
  distribution is known.
- **Multiple testing**: Benjamini-Hochberg at false discovery rate ``fdr`` over *all*
  (cell, metric) tests at once (``fdr_scope="all"``, the default): the expected share of
  false rejections among all rejected (cell, metric) tests is at most ``fdr`` (for
  independent or positively dependent tests). That is a statement about the rejected
  *tests*, not about a set selected afterwards: the flag keeps only the rejections that
  are *worse* than global and merges a cell's metrics, and the false discovery rate of
  that post-selected set of cells is not controlled at ``fdr`` by construction.
  ``fdr_scope="metric"`` corrects each metric separately (up to about four times ``fdr``
  over the union). Cells with at least two test galaxies are tested
  (:func:`scipy.stats.false_discovery_control`). The paper applies no multiple-testing
  correction.
- **Worse than global** (:func:`worse_than_global`, :func:`deviation`): a larger MAD, η or
  PCO, or a larger ``|bias|``; the flag, Figure 2 and the explorer use this one definition. Empty cells get NaN metrics and status
  ``'empty'``; single-galaxy cells get their value but no error and are never significant
  (status ``'single'``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from photozsom.artifacts import load_artifact, save_artifact
from photozsom.evaluation import metrics as _metrics
from photozsom.evaluation.metrics import MAD_SCALE, OUTLIER_THRESHOLD, pco_mask

__all__ = [
    "METRICS",
    "MIN_EFFECT",
    "CellReport",
    "binomial_trend",
    "deviation",
    "material",
    "metrics_by_redshift",
    "report",
    "sparsity_at_median",
    "threshold_curve",
    "trend",
    "worse_than_global",
]

#: Default effect-size floor of an under-performing cell: significantly worse than global
#: *and* at least twice as bad (MAD, η, PCO twice global; ``|bias|`` above the global one by
#: the global MAD). See :func:`material`. Significance alone
#: grows with the labelled sample: on the 80k DESI galaxies (about 75 per cell) it marked
#: 24% of the cells, most of them MAD 1.3-2 times global with P(z) as well calibrated as
#: elsewhere (their width already says so); the floor keeps the flag for excesses a user
#: must be told about, and its flagged fraction no longer grows with the labelled sample.
MIN_EFFECT = 1.0

#: Metrics with errors and significance in :func:`report` (``z_mean`` has errors only).
METRICS: tuple[str, ...] = ("mad", "bias", "eta", "pco")

#: Target number of (resample x galaxy) draws held in memory per bootstrap block.
_BLOCK_DRAWS = 2_500_000
#: Largest cell resampled with float32 uniforms (2^24 resolution); larger cells use float64.
_FLOAT32_MAX_COUNT = 2**20


def sparsity_at_median(x: np.ndarray) -> float:
    """Estimate ``1 / f(median)`` of a sample (the sparsity at the median).

    Siddiqui-Bloch-Gastwirth difference quotient of the empirical quantile function,
    ``(Q(1/2 + h) - Q(1/2 - h)) / (2 h)``, with the Hall & Sheather (1988) bandwidth
    ``h = 0.971 N^(-1/3)`` (for a 95 % level at the median), capped at 0.25.

    Parameters
    ----------
    x : ndarray, shape (N,)
        Finite sample.

    Returns
    -------
    float
        ``1 / f(median)`` in the units of ``x``; then the sample median of ``n`` draws has
        asymptotic standard error ``sparsity / (2 sqrt(n))``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return float("nan")
    z = stats.norm.ppf(0.975)
    h = x.size ** (-1.0 / 3.0) * z ** (2.0 / 3.0) * (1.5 * stats.norm.pdf(0.0) ** 2) ** (1.0 / 3.0)
    h = min(h, 0.25)
    lo, hi = np.quantile(x, [0.5 - h, 0.5 + h])
    return float((hi - lo) / (2.0 * h))


def _two_sided_binom(k: np.ndarray, n: np.ndarray, p: float) -> np.ndarray:
    """Two-sided exact binomial p-value ``min(1, 2 min(P(X <= k), P(X >= k)))``."""
    lower = stats.binom.cdf(k, n, p)
    upper = stats.binom.sf(k - 1, n, p)
    return np.minimum(1.0, 2.0 * np.minimum(lower, upper))


def _check_inputs(cell, z_true, z_pred, pit_values, n_cells):
    if not (isinstance(n_cells, (int, np.integer)) and n_cells > 0):
        raise ValueError(f"n_cells must be a positive integer (som.n_cells), got {n_cells!r}")
    cell = np.asarray(cell)
    if cell.ndim != 1:
        raise ValueError(f"cell must be 1-D (one SOM cell per galaxy), got shape {cell.shape}")
    if cell.size == 0:
        raise ValueError("cell is empty: report needs at least one test galaxy")
    if cell.dtype.kind not in "iu":
        if cell.dtype.kind == "f" and np.all(np.isfinite(cell)) and np.all(cell == np.round(cell)):
            cell = cell.astype(np.int64)
        else:
            raise ValueError(f"cell must hold integer SOM cell indices, got dtype {cell.dtype}")
    cell = cell.astype(np.int64, copy=False)
    if cell.min() < -1 or cell.max() >= n_cells:
        raise ValueError(
            f"cell indices must lie in [0, {n_cells}) (or -1 for galaxies without SOM "
            f"features); got range [{cell.min()}, {cell.max()}] — is n_cells right?"
        )
    arrays = {}
    for name, a in (("z_true", z_true), ("z_pred", z_pred), ("pit_values", pit_values)):
        if a is None:
            arrays[name] = None
            continue
        a = np.asarray(a, dtype=np.float64)
        if a.shape != cell.shape:
            raise ValueError(
                f"{name} has shape {a.shape} but cell has {cell.shape}; one value per galaxy"
            )
        if not np.all(np.isfinite(a)):
            bad = np.flatnonzero(~np.isfinite(a))
            raise ValueError(
                f"{name} has {bad.size} non-finite value(s) (first {bad[:5].tolist()}); "
                f"drop those galaxies or give them cell=-1"
            )
        arrays[name] = a
    if np.any(arrays["z_true"] <= -1):
        raise ValueError("z_true must be > -1 (residuals are scaled by 1 + z_true)")
    if arrays["pit_values"] is not None and np.any(
        (arrays["pit_values"] < 0) | (arrays["pit_values"] > 1)
    ):
        raise ValueError("pit_values must lie in [0, 1] (CDF of each PDF at its true redshift)")
    return cell, arrays["z_true"], arrays["z_pred"], arrays["pit_values"]


def worse_than_global(metric: str, value: np.ndarray, global_value: float) -> np.ndarray:
    """Whether a cell value is worse than the global one: larger, or larger ``|bias|``."""
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if metric == "bias":
            return np.abs(value) > abs(global_value)
        return value > global_value


def material(metric: str, value: np.ndarray, global_values: Mapping[str, float],
             min_effect: float) -> np.ndarray:
    """Whether a cell value is worse than global by at least the effect-size floor.

    A significance test alone calls a cell worse as soon as it has enough galaxies, however
    small the excess; a user is warned only about excesses that matter. For MAD, η and
    PCO the cell value must reach ``(1 + min_effect)`` times the global value; for the bias,
    whose global value is near zero, ``|bias|`` must exceed ``|global bias|`` by
    ``min_effect`` times the global MAD (a shift of half the typical scatter for 0.5).

    Parameters
    ----------
    metric : {"mad", "bias", "eta", "pco"}
    value : array_like
        Cell values (η and PCO as fractions, MAD and bias in units of Δz/(1+z)).
    global_values : mapping
        The report's global values (``CellReport.global_``: ``mad``, ``bias``, ...).
    min_effect : float
        Relative floor, >= 0 (0.5: at least 50% worse).

    Examples
    --------
    >>> g = {"mad": 0.02, "bias": 0.001, "eta": 0.01, "pco": 0.01}
    >>> material("mad", np.array([0.025, 0.031]), g, 0.5).tolist()
    [False, True]
    >>> material("bias", np.array([-0.012, 0.008]), g, 0.5).tolist()
    [True, False]
    """
    if not min_effect >= 0:
        raise ValueError(f"min_effect must be >= 0, got {min_effect}")
    value = np.asarray(value, dtype=np.float64)
    g = float(global_values[metric])
    with np.errstate(invalid="ignore"):
        if metric == "bias":
            return np.abs(value) >= abs(g) + min_effect * float(global_values["mad"])
        return value >= (1.0 + min_effect) * g


def deviation(metric: str, value: np.ndarray, global_value: float) -> np.ndarray:
    """Signed distance from global in the direction of :func:`worse_than_global`.

    ``value - global`` for MAD, η, PCO and ``|value| - |global|`` for the bias: positive
    means worse, so ranking cells by it ranks them by how much worse they are.
    """
    value = np.asarray(value, dtype=np.float64)
    if metric == "bias":
        return np.abs(value) - abs(global_value)
    return value - global_value


@dataclass
class CellReport:
    """Per-cell photo-z performance: the table, the global values and the settings.

    Built by :func:`report`; saved as an artifact directory (``table.parquet`` +
    ``meta.json``) with :meth:`save` and read back with :meth:`load`.

    Attributes
    ----------
    table : DataFrame
        One row per SOM cell (index ``cell``), the columns documented in :func:`report`.
    global_ : dict
        Global values over every assigned galaxy: ``n``, ``n_unassigned``, ``mad``,
        ``bias``, ``eta``, ``pco``, ``z_mean``, ``sd`` (std of Δz).
    settings : dict
        How the report was built: ``fdr``, ``fdr_scope``, ``level``,
        ``outlier_threshold``, ``n_boot``, ``bootstrap``, ``seed``.
    """

    table: pd.DataFrame
    global_: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        """Number of SOM cells (rows of :attr:`table`)."""
        return len(self.table)

    def worse(self, metrics: tuple[str, ...] = METRICS, *, min_effect: float = 0.0) -> np.ndarray:
        """Cells significantly worse than global on any of ``metrics``, shape (n_cells,).

        ``min_effect`` adds an effect-size floor (:func:`material`): a significant cell
        counts only when it is also worse by at least that relative amount (0: any
        significant excess, as the paper's Figure 2).
        """
        out = np.zeros(self.n_cells, dtype=bool)
        for m in metrics:
            if f"{m}_worse" not in self.table:
                raise ValueError(f"unknown metric {m!r}; choose from {list(METRICS)}")
            w = self.table[f"{m}_worse"].to_numpy(dtype=bool)
            if min_effect > 0:
                w = w & material(m, self.table[m].to_numpy(), self.global_, min_effect)
            out |= w
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``table.parquet`` and ``meta.json`` (global values, settings) atomically."""
        table = self.table.copy()
        table.attrs = {}
        return save_artifact(
            path, "cell_report", None,
            {"global": _finite_or_none(self.global_), "settings": self.settings},
            extra={"table.parquet": lambda p: table.to_parquet(p)},
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> CellReport:
        """Read a report written by :meth:`save`."""
        _, meta = load_artifact(path, "cell_report")
        table = pd.read_parquet(Path(path) / "table.parquet")
        glob = {k: (np.nan if v is None else v) for k, v in meta["global"].items()}
        return cls(table, glob, dict(meta.get("settings", {})))

    def __repr__(self) -> str:
        sig = {m: int(self.table[f"{m}_worse"].sum()) for m in METRICS if f"{m}_worse" in self.table}
        return (f"CellReport(n_cells={self.n_cells}, n={self.global_.get('n')}, "
                f"worse cells per metric={sig}, fdr={self.settings.get('fdr')} "
                f"over {self.settings.get('fdr_scope')})")


def _finite_or_none(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


def _bootstrap_medians(sorted_vals, start, count, n_boot, rng):
    """Exact bootstrap draws of the median of each cell; shape (n_boot, C)."""
    n = count.astype(np.float64)
    even = count % 2 == 0
    k = np.where(even, count // 2, (count + 1) // 2).astype(np.float64)
    u1 = rng.beta(k, n + 1.0 - k, size=(n_boot, count.size))
    # second order statistic (used for even n only; harmless elsewhere)
    b = np.where(even, n - k, 1.0)
    u2 = u1 + (1.0 - u1) * rng.beta(1.0, b, size=(n_boot, count.size))
    last = count - 1
    i1 = np.minimum(np.floor(u1 * n).astype(np.int64), last) + start
    i2 = np.minimum(np.floor(u2 * n).astype(np.int64), last) + start
    med1 = sorted_vals[i1]
    return np.where(even, 0.5 * (med1 + sorted_vals[i2]), med1)


def _bootstrap_means(values, start, count, n_boot, seed_seq, n_jobs, progress):
    """Bootstrap draws of the per-cell means of two variables by literal resampling.

    ``values`` is complex64, shape (N,), galaxies sorted by cell and centred on their cell
    mean (real part one variable, imaginary part the other). Returns two float64 arrays of
    shape (n_boot, C): resampled mean minus cell mean.
    """
    nz = count > 0
    starts = start[nz]
    cnt = count[nz]
    n_gal = int(cnt.sum())
    slot_start = np.repeat(starts, cnt).astype(np.intp)  # intp: numpy's take casts to it anyway
    # u in [0, 1) times the largest float below n rounds to at most that value, so
    # floor(u * n') <= n - 1 without a clipping pass; the last index is short-changed by a
    # relative 2^-24, the float32 resolution of u anyway. float32 draws are fast and resolve
    # 2^24 values: cells of more than 2^20 galaxies get float64 draws.
    ftype = np.float32 if cnt.max() <= _FLOAT32_MAX_COUNT else np.float64
    slot_n = np.nextafter(np.repeat(cnt, cnt).astype(ftype), ftype(0))
    block = int(max(1, min(n_boot, _BLOCK_DRAWS // max(n_gal, 1))))
    bounds = list(range(0, n_boot, block)) + [n_boot]
    children = seed_seq.spawn(len(bounds) - 1)
    offsets = (starts - starts[0]) if starts.size else starts
    out = np.empty((n_boot, count.size), dtype=np.complex128)
    out[:, ~nz] = np.nan

    def run(j):
        b0, b1 = bounds[j], bounds[j + 1]
        rng = np.random.default_rng(children[j])
        u = rng.random((b1 - b0, n_gal), dtype=ftype)
        u *= slot_n
        idx = u.astype(np.intp)
        del u
        idx += slot_start
        g = np.take(values, idx)
        del idx
        # float32 sums of values centred on their cell mean: rounding error ~ sqrt(n) 6e-8 s.d.,
        # negligible against the resampling spread sqrt(n) s.d. (a float64 cast costs a pass)
        out[b0:b1, nz] = np.add.reduceat(g, offsets, axis=1) / cnt
        return b1 - b0

    jobs = range(len(bounds) - 1)
    bar = tqdm(total=n_boot, desc="bootstrap", unit="resample", disable=None if progress else True)
    if n_jobs > 1 and len(bounds) > 2:
        with ThreadPoolExecutor(n_jobs) as pool:  # numpy releases the GIL in these kernels
            for done in pool.map(run, jobs):
                bar.update(done)
    else:
        for j in jobs:
            bar.update(run(j))
    bar.close()
    return out.real, out.imag


def report(
    cell: np.ndarray,
    z_true: np.ndarray,
    z_pred: np.ndarray,
    pit_values: np.ndarray | None = None,
    n_cells: int | None = None,
    train_counts: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int | np.random.SeedSequence = 0,
    fdr: float = 0.05,
    fdr_scope: str = "all",
    level: float = 0.99,
    outlier_threshold: float = OUTLIER_THRESHOLD,
    bootstrap: str = "resample",
    n_jobs: int = 1,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-cell photo-z performance with bootstrap errors and significance against global.

    Parameters
    ----------
    cell : array_like of int, shape (N,)
        SOM cell of each test galaxy in ``[0, n_cells)``; ``-1`` for galaxies the SOM could not
        place (no valid features) — they are left out of cells and of the global values and
        counted in ``global_["n_unassigned"]``.
    z_true, z_pred : array_like, shape (N,)
        Spectroscopic redshift and point estimate.
    pit_values : array_like, shape (N,), or None
        PIT of each galaxy's PDF at its true redshift; ``None`` for a point-estimate model
        (the PCO columns are then NaN).
    n_cells : int
        Number of SOM cells (``som.n_cells``); the report has one row per cell.
    train_counts : array_like of int, shape (n_cells,), optional
        Training galaxies per cell (``np.bincount(som.predict(X_train), minlength=n_cells)``);
        column ``n_train`` (NaN when not given).
    n_boot : int
        Bootstrap resamples per cell (0 or 1 skips the errors, which are then NaN).
    seed : int or SeedSequence
        Seed of the bootstrap; the same seed gives the same errors whatever ``n_jobs``.
    fdr : float
        False discovery rate of the Benjamini-Hochberg correction.
    fdr_scope : {"all", "metric"}
        ``"all"``: one correction over every (cell, metric) test (false discovery rate at
        most ``fdr`` among all rejected tests); ``"metric"``: one per metric.
    level : float
        Central credible level defining a PCO (the paper: 0.99).
    outlier_threshold : float
        ``|Δz|`` threshold of a catastrophic outlier (the paper: 0.15).
    bootstrap : {"resample", "ideal"}
        ``"resample"`` (default): every error is the standard deviation of ``n_boot``
        bootstrap replicates — medians and proportions drawn from their exact bootstrap
        distributions, means by literally resampling the galaxies (cost ``O(N n_boot)``).
        ``"ideal"``: the ``n_boot -> infinity`` limit where it has a closed form, the plug-in
        standard deviation over ``sqrt(n)`` for the means and ``sqrt(p (1 - p) / n)`` for η
        and PCO (Efron & Tibshirani 1993, Sec. 6.2), without Monte Carlo noise; the MAD error
        is still drawn ``n_boot`` times. Much faster on millions of galaxies.
    n_jobs : int
        Threads for resampling the means (-1: all cores).
    progress : bool
        Show a progress bar over bootstrap blocks.

    Returns
    -------
    CellReport
        ``.table`` is indexed by ``cell`` = 0 .. n_cells-1, with columns

        - ``n_train``, ``count`` (test galaxies), ``status`` ('empty' | 'single' | 'ok');
        - ``z_mean`` (mean true redshift) and ``z_mean_err``;
        - for each metric ``m`` in ``mad, bias, eta, pco`` (η and PCO as fractions):
          ``m`` (cell value), ``m_err`` (bootstrap standard deviation), ``m_ref`` (the
          paper's 1-sigma band of the global value at the cell's size), ``m_sigma0`` (null
          standard error used for ``m_z``; for bias the cell's own standard error),
          ``m_z``, ``m_p`` (two-sided p-value), ``m_q``
          (Benjamini-Hochberg adjusted p-value), ``m_signif`` (``m_q <= fdr``) and
          ``m_worse`` (significant and worse than global, :func:`worse_than_global`).

        ``.global_`` holds the global values (``mad, bias, eta, pco, z_mean``, ``n``,
        ``sd`` = std of Δz, ``n_unassigned``) and ``.settings`` how it was built.

    Notes
    -----
    See the module docstring for the bootstrap, the reference bands and the test. The
    z-score and p-value test each cell against the global value computed from *all* assigned
    test galaxies (including the cell's own), which makes the test slightly conservative
    for cells holding a large share of the sample.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> z = rng.uniform(0.05, 1.0, 2000); cell = rng.integers(0, 4, 2000)
    >>> zp = z + 0.03 * (1 + z) * rng.standard_normal(2000)
    >>> rep = report(cell, z, zp, None, n_cells=4, n_boot=200)
    >>> rep.table.loc[:, ["count", "status"]].shape
    (4, 2)
    """
    if n_cells is None:
        raise ValueError("pass n_cells=som.n_cells: the report has one row per SOM cell")
    cell, z_true, z_pred, pit = _check_inputs(cell, z_true, z_pred, pit_values, n_cells)
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 0):
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must lie in (0, 1), got {fdr}")
    if fdr_scope not in ("all", "metric"):
        raise ValueError(f"fdr_scope must be 'all' or 'metric', got {fdr_scope!r}")
    if bootstrap not in ("resample", "ideal"):
        raise ValueError(f"bootstrap must be 'resample' or 'ideal', got {bootstrap!r}")
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if train_counts is not None:
        train_counts = np.asarray(train_counts)
        if train_counts.shape != (n_cells,) or np.any(train_counts < 0):
            raise ValueError(
                f"train_counts must be {n_cells} non-negative counts (one per cell), "
                f"got shape {train_counts.shape}"
            )

    keep = cell >= 0
    n_unassigned = int((~keep).sum())
    if not keep.any():
        raise ValueError("no galaxy has a SOM cell (all cell == -1): nothing to report")
    cell, z_true, z_pred = cell[keep], z_true[keep], z_pred[keep]
    dz = _metrics.scaled_residuals(z_true, z_pred)
    adz = np.abs(dz)
    out_flag = adz > outlier_threshold
    pco_flag = None if pit is None else pco_mask(pit[keep], level)

    # galaxies sorted by cell, and by |dz| within cell (for the medians)
    order = np.lexsort((adz, cell))
    cell_s = cell[order]
    count = np.bincount(cell_s, minlength=n_cells)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    adz_s = adz[order]
    has = count > 0
    ok = count >= 2
    n = count.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z_mean = np.bincount(cell_s, z_true[order], minlength=n_cells) / n
        bias_c = np.bincount(cell_s, dz[order], minlength=n_cells) / n
        k_out = np.bincount(cell_s, out_flag[order], minlength=n_cells)
        eta_c = k_out / n
        if pco_flag is not None:
            k_pco = np.bincount(cell_s, pco_flag[order], minlength=n_cells)
            pco_c = k_pco / n
        else:
            k_pco = None
            pco_c = np.full(n_cells, np.nan)
    lo = np.minimum(start + (count - 1) // 2, adz_s.size - 1)
    hi = np.minimum(start + count // 2, adz_s.size - 1)
    mad_c = np.where(has, MAD_SCALE * 0.5 * (adz_s[lo] + adz_s[hi]), np.nan)

    # global values
    n_all = dz.size
    m_g = float(np.median(adz))
    glob = {
        "n": int(n_all),
        "n_unassigned": n_unassigned,
        "mad": _metrics.mad(z_true, z_pred),
        "bias": _metrics.bias(z_true, z_pred),
        "eta": _metrics.outlier_fraction(z_true, z_pred, threshold=outlier_threshold),
        "pco": _metrics.pco_fraction(pit[keep], level) if pit is not None else float("nan"),
        "z_mean": float(z_true.mean()),
        "sd": float(dz.std()),
    }
    settings = {
        "fdr": float(fdr),
        "fdr_scope": fdr_scope,
        "level": float(level),
        "outlier_threshold": float(outlier_threshold),
        "n_boot": int(n_boot),
        "bootstrap": bootstrap,
        "seed": int(seed) if not isinstance(seed, np.random.SeedSequence) else None,
    }

    # bootstrap errors
    nan = np.full(n_cells, np.nan)
    errs = {m: nan.copy() for m in ("z_mean", "mad", "bias", "eta", "pco")}
    if n_boot >= 2 and ok.any():
        root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        ss_closed, ss_means = root.spawn(2)
        rng = np.random.default_rng(ss_closed)
        c_ok = count[ok]
        med = _bootstrap_medians(adz_s, start[ok], c_ok, n_boot, rng)
        errs["mad"][ok] = MAD_SCALE * med.std(axis=0, ddof=1)
        if bootstrap == "ideal":
            # the n_boot -> infinity limits: plug-in s.d. / sqrt(n) for means and proportions
            errs["eta"][ok] = np.sqrt(eta_c[ok] * (1 - eta_c[ok]) / c_ok)
            if pco_flag is not None:
                errs["pco"][ok] = np.sqrt(pco_c[ok] * (1 - pco_c[ok]) / c_ok)
            var_dz = np.bincount(cell_s, (dz[order] - bias_c[cell_s]) ** 2, minlength=n_cells)
            var_z = np.bincount(cell_s, (z_true[order] - z_mean[cell_s]) ** 2, minlength=n_cells)
            errs["bias"][ok] = np.sqrt(var_dz[ok]) / c_ok  # sqrt(sum sq / n) / sqrt(n)
            errs["z_mean"][ok] = np.sqrt(var_z[ok]) / c_ok
        else:
            errs["eta"][ok] = (
                rng.binomial(c_ok, eta_c[ok], size=(n_boot, c_ok.size)).std(axis=0, ddof=1) / c_ok
            )
            if pco_flag is not None:
                errs["pco"][ok] = (
                    rng.binomial(c_ok, pco_c[ok], size=(n_boot, c_ok.size)).std(axis=0, ddof=1)
                    / c_ok
                )
            # means: resample the galaxies of the cells with >= 2 members, centred per cell
            sel = ok[cell_s]
            cen = (dz[order] - bias_c[cell_s]) + 1j * (z_true[order] - z_mean[cell_s])
            d_bias, d_z = _bootstrap_means(
                cen[sel].astype(np.complex64),
                np.concatenate([[0], np.cumsum(c_ok)[:-1]]),
                c_ok,
                n_boot,
                ss_means,
                int(n_jobs),
                progress,
            )
            errs["bias"][ok] = d_bias.std(axis=0, ddof=1)
            errs["z_mean"][ok] = d_z.std(axis=0, ddof=1)

    # reference band (paper) and null standard error (test)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = {
            "mad": np.where(ok, glob["mad"] / np.sqrt(2.0 * (n - 1.0)), np.nan),
            "bias": np.where(has, glob["sd"] / np.sqrt(n), np.nan),
            "eta": np.where(has, np.sqrt(glob["eta"] * (1 - glob["eta"]) / n), np.nan),
            "pco": np.where(has, np.sqrt(glob["pco"] * (1 - glob["pco"]) / n), np.nan),
        }
        sigma0 = dict(ref)
        sigma0["mad"] = np.where(
            has, MAD_SCALE * sparsity_at_median(adz) / (2.0 * np.sqrt(n)), np.nan
        )
        # bias: the cell's own standard deviation (one-sample t-test), so that a cell with a
        # larger scatter is not mistaken for a biased one
        ss = np.bincount(cell_s, (dz[order] - bias_c[cell_s]) ** 2, minlength=n_cells)
        sigma0["bias"] = np.where(ok, np.sqrt(ss / np.maximum(n - 1.0, 1.0) / n), np.nan)

    values = {"mad": mad_c, "bias": bias_c, "eta": eta_c, "pco": pco_c}
    df = pd.DataFrame(index=pd.RangeIndex(n_cells, name="cell"))
    df["n_train"] = train_counts.astype(np.int64) if train_counts is not None else np.nan
    df["count"] = count
    df["status"] = np.where(count == 0, "empty", np.where(count == 1, "single", "ok"))
    df["z_mean"] = z_mean
    df["z_mean_err"] = errs["z_mean"]

    # p-values
    above = np.bincount(cell_s, adz_s > m_g, minlength=n_cells)
    p0_mad = float(np.mean(adz > m_g))
    pvals = {
        "mad": _two_sided_binom(above, count, p0_mad),
        "eta": _two_sided_binom(k_out, count, glob["eta"]),
        "pco": _two_sided_binom(k_pco, count, glob["pco"]) if k_pco is not None else nan.copy(),
    }
    zs, ps = {}, {}
    for m in METRICS:
        v, g, s0 = values[m], glob[m], sigma0[m]
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = v - g
            z = np.where(s0 > 0, diff / s0, np.where(diff == 0, 0.0, np.sign(diff) * np.inf))
        z = np.where(ok & np.isfinite(g), z, np.nan)
        if m == "bias":
            p = np.where(ok, 2.0 * stats.t.sf(np.abs(z), np.maximum(n - 1.0, 1.0)), np.nan)
        else:
            p = pvals[m]
        zs[m], ps[m] = z, np.where(ok & np.isfinite(g), p, np.nan)
    qs = _benjamini_hochberg(ps, fdr_scope)
    for m in METRICS:
        v, q = values[m], qs[m]
        signif = np.isfinite(q) & (q <= fdr)
        df[m] = v
        df[f"{m}_err"] = errs[m]
        df[f"{m}_ref"] = ref[m]
        df[f"{m}_sigma0"] = sigma0[m]
        df[f"{m}_z"] = zs[m]
        df[f"{m}_p"] = ps[m]
        df[f"{m}_q"] = q
        df[f"{m}_signif"] = signif
        df[f"{m}_worse"] = signif & worse_than_global(m, v, glob[m])
    return CellReport(df, glob, settings)


def _benjamini_hochberg(pvalues: dict[str, np.ndarray], scope: str) -> dict[str, np.ndarray]:
    """BH-adjusted p-values per metric, over all metrics' tests at once or metric by metric."""
    out = {m: np.full(p.shape, np.nan) for m, p in pvalues.items()}
    groups = [list(pvalues)] if scope == "all" else [[m] for m in pvalues]
    for names in groups:
        flat = np.concatenate([pvalues[m] for m in names])
        tested = np.isfinite(flat)
        q = np.full(flat.shape, np.nan)
        if tested.any():
            q[tested] = stats.false_discovery_control(np.clip(flat[tested], 0, 1), method="bh")
        for m, part in zip(names, np.split(q, np.cumsum([pvalues[m].size for m in names])[:-1]),
                           strict=True):
            out[m] = part
    return out


def trend(
    rep: CellReport | pd.DataFrame,
    metrics: tuple[str, ...] = ("mad", "bias", "abs_bias", "eta", "pco"),
    *,
    min_count: int = 2,
    control: str | None = None,
    proportions: str = "binomial",
) -> pd.DataFrame:
    """How each cell metric runs with the cell's training count, with a test that keeps its level.

    MAD and ``|bias|`` get a rank correlation (Spearman, or partial Spearman given
    ``control``). η and PCO are proportions, and a rank correlation of a per-cell proportion
    with cell size is biased: a small cell's proportion is exactly 0 far more often than a
    large one's, so its rank follows the cell's size even when every cell has the same rate
    (a null sky with a 4% outlier rate everywhere gives ρ ≈ +0.3 and p < 0.05 in every sky).
    With ``proportions="binomial"`` (the default) they are instead tested by a binomial
    regression of the cell's *counts* (``k`` outliers of ``n`` evaluated galaxies) on
    ``x = log10(1 + n_train)`` (and the ``control`` column),
    ``logit p_c = a + slope x_c [+ g control_c]``, fitted by maximum likelihood
    (:func:`binomial_trend`). Each galaxy then counts once, whatever its cell's size, and a
    cell with 0 of 3 weighs as little as three galaxies. Extra-binomial scatter between cells
    (cells differing in rate for reasons other than ``x``) widens the standard error by the
    quasi-likelihood dispersion, so the test keeps its level when the rates vary.

    Parameters
    ----------
    rep : CellReport or its table
        Output of :func:`report` (needs ``n_train``; ``count`` and the metric columns).
    metrics : tuple of str
        Report columns; ``'abs_bias'`` means ``|bias|``.
    min_count : int
        Use cells with at least this many test galaxies.
    control : str, optional
        A report column to hold fixed (e.g. ``"z_mean"``, the cell's mean redshift): for the
        rank tests the partial Spearman correlation — the ranks of the metric and of the
        training count are each regressed on the ranks of ``control`` and the residuals
        correlated, with a t-test on ``n - 3`` degrees of freedom; for the binomial
        regression an extra linear term.
    proportions : {"binomial", "rank"}
        Test of η and PCO: the binomial regression (default) or the rank correlation (biased,
        kept to show the bias).

    Returns
    -------
    DataFrame
        Indexed by metric: ``method``; ``rho`` (rank correlation; NaN for the binomial
        regression); ``slope`` with its 95% interval ``slope_lo``, ``slope_hi`` (change of
        the log-odds of the proportion per dex of ``1 + n_train``; NaN for the rank tests);
        ``p`` (two-sided) and ``n_cells`` used. A negative ``rho`` (MAD, ``|bias|``) or
        ``slope`` (η, PCO) means the metric improves with more training data. NaN when fewer
        than 4 usable cells or a constant column.
    """
    if proportions not in ("binomial", "rank"):
        raise ValueError(f'proportions must be "binomial" or "rank", got {proportions!r}')
    rep = rep.table if isinstance(rep, CellReport) else rep
    if "n_train" not in rep or not np.isfinite(rep["n_train"].to_numpy(dtype=float)).any():
        raise ValueError("report has no n_train: pass train_counts to cells.report")
    if control is not None and control not in rep:
        raise ValueError(f"report has no column {control!r} to control for (e.g. 'z_mean')")
    rows = {}
    x = rep["n_train"].to_numpy(dtype=float)
    n_test = rep["count"].to_numpy(dtype=float)
    c = None if control is None else rep[control].to_numpy(dtype=float)
    for m in metrics:
        col = "bias" if m == "abs_bias" else m
        if col not in rep:
            raise ValueError(f"report has no column {col!r}; choose from {list(METRICS)}")
        y = rep[col].to_numpy(dtype=float)
        if m == "abs_bias":
            y = np.abs(y)
        use = (n_test >= min_count) & np.isfinite(x) & np.isfinite(y)
        if c is not None:
            use &= np.isfinite(c)
        binomial = proportions == "binomial" and m in ("eta", "pco")
        method = ("binomial" if binomial else "spearman") + (
            "" if control is None else f" given {control}")
        row = {"method": method, "rho": np.nan, "slope": np.nan, "slope_lo": np.nan,
               "slope_hi": np.nan, "p": np.nan, "n_cells": int(use.sum())}
        if use.sum() < 4 or np.ptp(x[use]) == 0:
            rows[m] = row
            continue
        if binomial:
            k = np.rint(y[use] * n_test[use])
            fit = binomial_trend(k, n_test[use], np.log10(1.0 + x[use]),
                                 None if c is None else c[use])
            row.update({kk: fit[kk] for kk in ("slope", "slope_lo", "slope_hi", "p")})
        elif np.ptp(y[use]) == 0:
            pass
        elif c is None:
            res = stats.spearmanr(x[use], y[use])
            row.update(rho=float(res.statistic), p=float(res.pvalue))
        else:
            ps = _partial_spearman(x[use], y[use], c[use])
            row.update(rho=ps["rho"], p=ps["p"])
        rows[m] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "metric"
    return out


def binomial_trend(k: np.ndarray, n: np.ndarray, x: np.ndarray,
                   covariate: np.ndarray | None = None, *, level: float = 0.95,
                   max_iter: int = 100) -> dict[str, float]:
    """Binomial (logistic) regression of per-cell counts on ``x``, with a quasi-binomial error.

    Fits ``logit p_c = a + slope x_c [+ g covariate_c]`` to ``k_c ~ Binomial(n_c, p_c)`` by
    maximum likelihood (iteratively reweighted least squares, the GLM normal equations), and
    tests ``slope = 0`` with a Wald z-test whose standard error is the inverse Fisher
    information scaled by the dispersion ``phi = max(1, Pearson chi2 / (C - p))`` (McCullagh
    & Nelder 1989, Sec. 4.5): ``phi = 1`` for binomial counts, larger when the cells differ
    in rate beyond ``x`` (and the covariate).

    Parameters
    ----------
    k, n : array_like, shape (C,)
        Successes (e.g. outliers) and trials (evaluated galaxies) per cell, ``0 <= k <= n``,
        ``n >= 1``.
    x : array_like, shape (C,)
        The regressor (e.g. ``log10(1 + n_train)``).
    covariate : array_like, shape (C,), optional
        A second regressor held fixed (e.g. the cell's mean redshift).
    level : float
        Confidence level of ``slope_lo``, ``slope_hi``.

    Returns
    -------
    dict
        ``slope`` (log-odds per unit of ``x``), ``se`` (with the dispersion), ``slope_lo``,
        ``slope_hi``, ``z``, ``p`` (two-sided), ``dispersion``, ``intercept``; NaN where no
        finite fit exists (every ``k`` 0 or every ``k = n``).
    """
    k, n, x = (np.asarray(a, dtype=np.float64) for a in (k, n, x))
    if not (k.shape == n.shape == x.shape) or k.ndim != 1:
        raise ValueError("k, n and x must be 1-D arrays of the same length (one per cell)")
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise ValueError("need n >= 1 and 0 <= k <= n in every cell")
    cols = [np.ones_like(x), x]
    if covariate is not None:
        cv = np.asarray(covariate, dtype=np.float64)
        if cv.shape != x.shape:
            raise ValueError("covariate must have one value per cell")
        cols.append(cv)
    X = np.column_stack(cols)
    # centre and scale the regressors (numerical conditioning; slope rescaled at the end)
    mu, sd = X[:, 1:].mean(axis=0), X[:, 1:].std(axis=0)
    nan = {key: float("nan") for key in ("slope", "se", "slope_lo", "slope_hi", "z", "p",
                                         "dispersion", "intercept")}
    if k.sum() == 0 or k.sum() == n.sum() or np.any(sd == 0):
        return nan
    Xs = X.copy()
    Xs[:, 1:] = (X[:, 1:] - mu) / sd
    y = k / n
    p0 = k.sum() / n.sum()
    beta = np.zeros(X.shape[1])
    beta[0] = np.log(p0 / (1 - p0))
    for _ in range(max_iter):
        eta = Xs @ beta
        p = 1.0 / (1.0 + np.exp(-eta))
        w = n * p * (1 - p)
        zwork = eta + (y - p) / np.maximum(p * (1 - p), 1e-300)
        step = np.linalg.lstsq(Xs * np.sqrt(w)[:, None], zwork * np.sqrt(w), rcond=None)[0]
        done = np.max(np.abs(step - beta)) < 1e-10
        beta = step
        if done:
            break
    if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 30:
        return nan   # (quasi-)separation: no finite maximum
    p = 1.0 / (1.0 + np.exp(-(Xs @ beta)))
    info = (Xs * (n * p * (1 - p))[:, None]).T @ Xs
    cov = np.linalg.inv(info)
    dof = max(x.size - X.shape[1], 1)
    phi = max(1.0, float(np.sum((k - n * p) ** 2 / (n * p * (1 - p))) / dof))
    slope = beta[1] / sd[0]
    se = float(np.sqrt(cov[1, 1] * phi)) / sd[0]
    zq = float(stats.norm.ppf(0.5 + level / 2))
    zst = slope / se
    return {"slope": float(slope), "se": se, "slope_lo": float(slope - zq * se),
            "slope_hi": float(slope + zq * se), "z": float(zst),
            "p": float(2 * stats.norm.sf(abs(zst))), "dispersion": phi,
            "intercept": float(beta[0] - np.sum(beta[1:] * mu / sd))}


def _partial_spearman(x: np.ndarray, y: np.ndarray, c: np.ndarray) -> dict[str, float]:
    """Spearman correlation of x and y with the rank of c regressed out of both."""
    rx, ry, rc = (stats.rankdata(v) for v in (x, y, c))
    A = np.column_stack([np.ones_like(rc), rc])
    ex = rx - A @ np.linalg.lstsq(A, rx, rcond=None)[0]
    ey = ry - A @ np.linalg.lstsq(A, ry, rcond=None)[0]
    n = x.size
    if ex.std() == 0 or ey.std() == 0:
        return {"rho": np.nan, "p": np.nan, "n_cells": int(n)}
    r = float(np.corrcoef(ex, ey)[0, 1])
    t = r * np.sqrt((n - 3) / max(1e-300, 1 - r * r))
    return {"rho": r, "p": float(2 * stats.t.sf(abs(t), n - 3)), "n_cells": int(n)}


def metrics_by_redshift(z_true: np.ndarray, z_pred: np.ndarray, pit_values: np.ndarray | None = None,
                        *, bins: np.ndarray | int = 8, n_boot: int = 200, seed: int = 0,
                        level: float = 0.99) -> pd.DataFrame:
    """MAD, bias, η and PCO in bins of true redshift, with bootstrap errors.

    Parameters
    ----------
    z_true, z_pred : array_like, shape (N,)
    pit_values : array_like, shape (N,), optional
    bins : int or array_like
        Bin edges in redshift, or a number of equal-count bins.
    n_boot : int
        Bootstrap resamples per bin for the ``*_err`` columns (standard deviations).

    Returns
    -------
    DataFrame
        One row per bin: ``z_lo, z_hi, z_mid, n``, and ``m, m_err`` for m in mad, bias,
        eta, pco (fractions).
    """
    zt, zp, _ = _metrics.check_redshifts(z_true, z_pred)
    pco = None if pit_values is None else pco_mask(np.clip(np.asarray(pit_values, float), 0, 1), level)
    edges = (np.unique(np.quantile(zt, np.linspace(0, 1, int(bins) + 1)))
             if np.ndim(bins) == 0 else np.asarray(bins, dtype=np.float64))
    which = np.clip(np.searchsorted(edges, zt, side="right") - 1, 0, len(edges) - 2)
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(len(edges) - 1):
        sel = np.flatnonzero(which == b)
        row = {"z_lo": edges[b], "z_hi": edges[b + 1], "z_mid": 0.5 * (edges[b] + edges[b + 1]),
               "n": sel.size}
        if sel.size == 0:
            rows.append(row)
            continue
        dz = _metrics.scaled_residuals(zt[sel], zp[sel])
        flag_pco = None if pco is None else pco[sel]

        def stat(d, f):
            return (MAD_SCALE * np.median(np.abs(d), axis=-1), d.mean(axis=-1),
                    (np.abs(d) > OUTLIER_THRESHOLD).mean(axis=-1),
                    np.full(d.shape[:-1], np.nan) if f is None else f.mean(axis=-1))

        vals = stat(dz, flag_pco)
        idx = rng.integers(0, sel.size, size=(n_boot, sel.size)) if n_boot > 1 else None
        boots = stat(dz[idx], None if flag_pco is None else flag_pco[idx]) if idx is not None else None
        for k, m in enumerate(("mad", "bias", "eta", "pco")):
            row[m] = float(vals[k])
            row[f"{m}_err"] = float(np.std(boots[k], ddof=1)) if boots is not None else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _cell_values(metric: str, cell: np.ndarray, dz: np.ndarray, outl: np.ndarray,
                 pco: np.ndarray | None, n_cells: int) -> np.ndarray:
    """A metric per cell from the given galaxies (NaN for cells without any); |bias| for bias."""
    count = np.bincount(cell, minlength=n_cells).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "bias":
            return np.abs(np.bincount(cell, dz, minlength=n_cells) / count)
        if metric == "eta":
            return np.bincount(cell, outl, minlength=n_cells) / count
        if metric == "pco":
            if pco is None:
                raise ValueError("criterion='pco' needs pit_values")
            return np.bincount(cell, pco, minlength=n_cells) / count
    med = pd.Series(np.abs(dz)).groupby(cell).median()
    out = np.full(n_cells, np.nan)
    out[med.index.to_numpy()] = MAD_SCALE * med.to_numpy()
    return out


def threshold_curve(
    report: CellReport,
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
    seed: int = 0,
) -> pd.DataFrame:
    """Fraction of a sample kept, and the metrics of what is kept, against a flag threshold.

    The metrics are measured on the labelled test sample (``cell``, ``z_true``, ``z_pred``)
    with :mod:`photozsom.evaluation.metrics` (``sample_weight``). With ``sample_cell`` (the cells of a
    user's unlabelled sample) the fraction kept is the user's, and the test galaxies are
    reweighted cell by cell to the user's cell occupancy (weight ``f_user(c) / f_test(c)``),
    giving the performance expected for the user's kept galaxies if performance within a
    cell transfers. User galaxies in cells without test galaxies count as kept or not but
    cannot contribute to the expected metrics.

    Parameters
    ----------
    report : CellReport
        :func:`report` with ``n_train`` (e.g. ``Flagger.report``).
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
        - ``"mad"``, ``"eta"``, ``"pco"``, ``"bias"``: its cell's value (``|bias|``) is
          ``<= t``. Selecting cells by a metric and measuring that metric on the same
          galaxies would flatter the kept sample, so this is **cross-fitted**: the galaxies
          are split in two random halves (``seed``) and each half is kept or not by the cell
          values measured on the other half. User galaxies are kept by the values from all
          test galaxies.
    thresholds : array_like, optional
        Values of ``t``. Default: 30 values spanning the criterion's range (log-spaced
        training counts; quantiles otherwise).
    distance, sample_distance : array_like, optional
        Distances to the prototype of the test and user galaxies (criterion "distance").
    sample_cell : array_like of int, optional
        Cells of the user's sample.
    level, outlier_threshold : float
        PCO level and η threshold.
    seed : int
        Seed of the cross-fitting halves.

    Returns
    -------
    DataFrame
        One row per threshold: ``threshold``, ``n_kept`` and ``fraction_kept`` (of the user's
        sample, else the test sample), ``n_test_kept``, and the (reweighted) ``mad``,
        ``bias``, ``eta`` (fraction), ``pco`` (fraction) of the kept test galaxies.
    """
    table = report.table
    n_cells = len(table)
    cell = np.asarray(cell)
    if cell.ndim != 1 or cell.size == 0:
        raise ValueError("cell must be a non-empty 1-D array of SOM cells")
    if cell.min() < -1 or cell.max() >= n_cells:
        raise ValueError(f"cell indices must lie in [-1, {n_cells})")
    z_true = np.asarray(z_true, dtype=np.float64)
    z_pred = np.asarray(z_pred, dtype=np.float64)
    if z_true.shape != cell.shape or z_pred.shape != cell.shape:
        raise ValueError("cell, z_true and z_pred must have the same length")
    ok = (cell >= 0) & np.isfinite(z_true) & np.isfinite(z_pred)
    if not ok.any():
        raise ValueError("no test galaxy has a SOM cell and finite redshifts")
    dz = np.zeros_like(z_true)
    dz[ok] = _metrics.scaled_residuals(z_true[ok], z_pred[ok])
    outl = np.abs(dz) > outlier_threshold
    pco = None
    if pit_values is not None:
        pit = np.asarray(pit_values, dtype=np.float64)
        pco = pco_mask(np.clip(np.where(np.isfinite(pit), pit, 0.5), 0, 1), level)
    safe = np.where(cell >= 0, cell, 0)
    sc = None if sample_cell is None else np.asarray(sample_cell)

    def at_cell(values: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.where(c >= 0, values[np.where(c >= 0, c, 0)], np.nan)

    larger_keeps = criterion == "n_train"
    if criterion == "n_train":
        if "n_train" not in table:
            raise ValueError("report has no n_train: build it with train_counts")
        per_cell = table["n_train"].to_numpy(dtype=np.float64)
        score = at_cell(per_cell, cell)
        s_score = None if sc is None else at_cell(per_cell, sc)
    elif criterion == "distance":
        if distance is None:
            raise ValueError("criterion='distance' needs distance= (test galaxies' distances)")
        if sc is not None and sample_distance is None:
            raise ValueError("criterion='distance' with sample_cell needs sample_distance=")
        score = np.where(cell >= 0, np.asarray(distance, dtype=np.float64), np.nan)
        s_score = None if sc is None else np.where(
            sc >= 0, np.asarray(sample_distance, dtype=np.float64), np.nan)
    elif criterion in METRICS:
        half = np.random.default_rng(seed).random(cell.size) < 0.5
        score = np.full(cell.size, np.nan)
        for a in (half, ~half):
            other = ok & ~a
            vals = _cell_values(criterion, cell[other], dz[other], outl[other],
                                None if pco is None else pco[other], n_cells)
            score[a] = at_cell(vals, cell[a])
        full = _cell_values(criterion, cell[ok], dz[ok], outl[ok],
                            None if pco is None else pco[ok], n_cells)
        s_score = None if sc is None else at_cell(full, sc)
    else:
        raise ValueError(
            f"criterion must be 'n_train', 'distance' or one of {list(METRICS)}, got {criterion!r}"
        )
    ref_score = score if s_score is None else s_score
    if thresholds is None:
        fin = ref_score[np.isfinite(ref_score)]
        if criterion == "n_train":
            hi = max(float(fin.max()) if fin.size else 1.0, 1.0)
            thresholds = np.unique(np.concatenate([[0.0], np.round(np.geomspace(1, hi, 29))]))
        else:
            thresholds = (np.unique(np.quantile(fin, np.linspace(0.05, 1.0, 30)))
                          if fin.size else [0.0])
    thresholds = np.asarray(thresholds, dtype=np.float64)

    w = ok.astype(np.float64)
    if sc is not None:
        f_user = np.bincount(sc[sc >= 0], minlength=n_cells) / max(sc.size, 1)
        f_test = np.bincount(cell[ok], minlength=n_cells) / max(ok.sum(), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(f_test > 0, f_user / f_test, 0.0)
        w = w * ratio[safe]
    rows = []
    with np.errstate(invalid="ignore"):
        for t in thresholds:  # a few dozen thresholds, each vectorised over galaxies
            keep = np.isfinite(score) & ((score >= t) if larger_keeps else (score <= t))
            sel = keep & ok & (w > 0)
            if s_score is None:
                n_kept = int((keep & ok).sum())
                frac = n_kept / max(int(ok.sum()), 1)
            else:
                sk = np.isfinite(s_score) & ((s_score >= t) if larger_keeps else (s_score <= t))
                n_kept = int(sk.sum())
                frac = n_kept / s_score.size
            row = {"threshold": float(t), "n_kept": n_kept, "fraction_kept": frac,
                   "n_test_kept": int((keep & ok).sum()),
                   "mad": np.nan, "bias": np.nan, "eta": np.nan, "pco": np.nan}
            if sel.any():
                args = (z_true[sel], z_pred[sel])
                kw = {"sample_weight": w[sel]}
                row["mad"] = _metrics.mad(*args, **kw)
                row["bias"] = _metrics.bias(*args, **kw)
                row["eta"] = _metrics.outlier_fraction(*args, threshold=outlier_threshold, **kw)
                if pco is not None:
                    row["pco"] = float(np.average(pco[sel], weights=w[sel]))
            rows.append(row)
    return pd.DataFrame(rows)
