"""Photo-z performance cell by cell on the SOM, with bootstrap errors and significance.

:func:`report` measures, for every SOM cell, the test-sample metrics of
:mod:`photozsom.metrics` (mean redshift, MAD, bias, η, PCO), a bootstrap error for each, the
paper's reference band for a cell of that size, and whether the cell deviates
significantly from the global value after correcting for testing ~1000 cells at once
(Benjamini-Hochberg). :func:`trend` summarises how each metric runs with the number of
training galaxies in the cell (the paper's Figure 1 question, "is local density predictive
of performance?").

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
- **Multiple testing**: Benjamini-Hochberg at false discovery rate ``fdr``, separately for
  each metric, over cells with at least two test galaxies
  (:func:`scipy.stats.false_discovery_control`). Empty cells get NaN metrics and status
  ``'empty'``; single-galaxy cells get their value but no error and are never significant
  (status ``'single'``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from photozsom.metrics import MAD_SCALE, OUTLIER_THRESHOLD, pco_mask

__all__ = ["METRICS", "report", "sparsity_at_median", "trend"]

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
    pit_values: np.ndarray | None,
    n_cells: int,
    train_counts: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int | np.random.SeedSequence = 0,
    fdr: float = 0.05,
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
        counted in ``attrs["global"]["n_unassigned"]``.
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
        False discovery rate of the Benjamini-Hochberg correction, per metric.
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
    pandas.DataFrame
        Indexed by ``cell`` = 0 .. n_cells-1, columns

        - ``n_train``, ``count`` (test galaxies), ``status`` ('empty' | 'single' | 'ok');
        - ``z_mean`` (mean true redshift) and ``z_mean_err``;
        - for each metric ``m`` in ``mad, bias, eta, pco`` (η and PCO as fractions):
          ``m`` (cell value), ``m_err`` (bootstrap standard deviation), ``m_ref`` (the
          paper's 1-sigma band of the global value at the cell's size), ``m_sigma0`` (null
          standard error used for ``m_z``; for bias the cell's own standard error),
          ``m_z``, ``m_p`` (two-sided p-value), ``m_q``
          (Benjamini-Hochberg adjusted p-value), ``m_signif`` (``m_q <= fdr``) and
          ``m_worse`` (significant and worse than global: larger MAD, η or PCO, or larger
          ``|bias|``).

        ``attrs["global"]`` holds the global values (``mad, bias, eta, pco, z_mean``, ``n``,
        ``sd`` = std of Δz, ``n_unassigned``) and the settings (``fdr, level,
        outlier_threshold, n_boot``).

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
    >>> rep.loc[:, ["count", "status"]].shape
    (4, 2)
    """
    cell, z_true, z_pred, pit = _check_inputs(cell, z_true, z_pred, pit_values, n_cells)
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 0):
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must lie in (0, 1), got {fdr}")
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
    dz = (z_pred - z_true) / (1.0 + z_true)
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
        "mad": MAD_SCALE * m_g,
        "bias": float(dz.mean()),
        "eta": float(out_flag.mean()),
        "pco": float(pco_flag.mean()) if pco_flag is not None else float("nan"),
        "z_mean": float(z_true.mean()),
        "sd": float(dz.std()),
        "fdr": float(fdr),
        "level": float(level),
        "outlier_threshold": float(outlier_threshold),
        "n_boot": int(n_boot),
        "bootstrap": bootstrap,
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
        p = np.where(ok & np.isfinite(g), p, np.nan)
        q = np.full(n_cells, np.nan)
        tested = np.isfinite(p)
        if tested.any():
            q[tested] = stats.false_discovery_control(np.clip(p[tested], 0, 1), method="bh")
        signif = np.isfinite(q) & (q <= fdr)
        worse = (np.abs(v) > abs(g)) if m == "bias" else (v > g)
        df[m] = v
        df[f"{m}_err"] = errs[m]
        df[f"{m}_ref"] = ref[m]
        df[f"{m}_sigma0"] = s0
        df[f"{m}_z"] = z
        df[f"{m}_p"] = p
        df[f"{m}_q"] = q
        df[f"{m}_signif"] = signif
        df[f"{m}_worse"] = signif & worse
    df.attrs["global"] = glob
    return df


def trend(
    rep: pd.DataFrame,
    metrics: tuple[str, ...] = ("mad", "bias", "abs_bias", "eta", "pco"),
    *,
    min_count: int = 2,
) -> pd.DataFrame:
    """Rank correlation of each cell metric with the cell's training count.

    Parameters
    ----------
    rep : DataFrame
        Output of :func:`report` (needs ``n_train``).
    metrics : tuple of str
        Report columns; ``'abs_bias'`` means ``|bias|``.
    min_count : int
        Use cells with at least this many test galaxies.

    Returns
    -------
    DataFrame
        Indexed by metric: ``rho`` (Spearman), ``p`` (two-sided, :func:`scipy.stats.spearmanr`)
        and ``n_cells`` used. A negative ``rho`` for MAD, ``|bias|``, η or PCO means the
        metric improves with more training data. NaN when fewer than 3 usable cells or a
        constant column.
    """
    if "n_train" not in rep or not np.isfinite(rep["n_train"].to_numpy(dtype=float)).any():
        raise ValueError("report has no n_train: pass train_counts to cells.report")
    rows = {}
    for m in metrics:
        col = "bias" if m == "abs_bias" else m
        if col not in rep:
            raise ValueError(f"report has no column {col!r}; choose from {list(METRICS)}")
        y = rep[col].to_numpy(dtype=float)
        if m == "abs_bias":
            y = np.abs(y)
        x = rep["n_train"].to_numpy(dtype=float)
        use = (rep["count"].to_numpy() >= min_count) & np.isfinite(x) & np.isfinite(y)
        if use.sum() < 3 or np.ptp(x[use]) == 0 or np.ptp(y[use]) == 0:
            rows[m] = {"rho": np.nan, "p": np.nan, "n_cells": int(use.sum())}
            continue
        res = stats.spearmanr(x[use], y[use])
        rows[m] = {"rho": float(res.statistic), "p": float(res.pvalue), "n_cells": int(use.sum())}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "metric"
    return out
