"""Redshift PDFs as mixtures of truncated Gaussians on a fixed grid: :class:`MixturePDF`.

The paper's network outputs 200 weights ``w_k`` of a mixture of Gaussians with fixed,
evenly spaced centres ``mu_k`` on ``[0, 1.6]`` and a fixed width ``sigma = 0.0037``, each
truncated to the support ``[a, b] = [0, 1.6]`` and renormalised there:

.. math::

    p(z) = \\sum_k w_k \\frac{\\phi((z-\\mu_k)/\\sigma)}{\\sigma Z_k}, \\qquad
    F(z) = \\sum_k w_k F_k(z), \\qquad
    F_k(z) = \\frac{\\Phi((z-\\mu_k)/\\sigma) - \\Phi((a-\\mu_k)/\\sigma)}{Z_k},

with ``Z_k = Phi((b-mu_k)/sigma) - Phi((a-mu_k)/sigma)`` (0.5 for the two end components,
1 to double precision for the rest). Every summary is computed exactly for this
truncated mixture, in float64:

- ``mean``, ``std``: from the truncated-normal moments of each component.
- ``cdf``, ``evaluate`` (density): a component more than 10 sigma from ``z`` contributes
  exactly 0 or 1 to the CDF (``Phi(-10) = 7.6e-24``), so only the ~11 components near ``z``
  are evaluated and the rest enter through the cumulative weights.
- ``ppf``: inside a bracket of width 20 sigma that the cumulative weights guarantee
  contains the quantile, 10 bisection steps then safeguarded Newton steps (never leaving
  the bracket) to ~1e-15 in z.
- ``crps``: the closed form ``CRPS = E|X - y| - E|X - X'|/2`` (Gneiting & Raftery 2007),
  with ``E|X_k - y|`` in closed form for each truncated component and the fixed matrix
  ``D_jk = E|X_j - X_k'|`` of the component pairs computed once (:class:`MixtureGrid`,
  by composite Gauss-Legendre quadrature of an analytic integrand: double precision);
  ``w^T D w`` is split into ``sum |t_j - t_k| w_j w_k`` (cumulative sums over the sorted
  component means) plus a band of overlapping pairs, so the cost is O(K) per galaxy.
- ``mode``: the density on a regular grid of spacing sigma/2; every grid point within the
  bound ``h^2 / (8 sigma^2)`` of the tabulated maximum (which the curvature of sigma-wide
  Gaussians guarantees for the point nearest the true maximum) is refined locally (parabola
  through ``log p``, safeguarded Newton steps on ``p' = 0``) and the highest is kept, so the
  global maximum is returned even when a narrow peak and a broader one have close heights.

Examples
--------
>>> import numpy as np
>>> from photozsom.pdf import MixturePDF, N_COMPONENTS
>>> w = np.zeros((1, N_COMPONENTS)); w[0, 100] = 1.0   # one component at z = 0.804
>>> pdf = MixturePDF(w)
>>> float(np.round(pdf.mean()[0], 4)), float(np.round(pdf.std()[0], 4))
(0.804, 0.0037)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import ndtr, ndtri

from photozsom.artifacts import atomic_path

__all__ = [
    "CENTRES",
    "N_COMPONENTS",
    "SIGMA",
    "Z_MAX",
    "Z_MIN",
    "MixtureGrid",
    "MixturePDF",
    "check_redshifts",
    "default_grid",
    "get_grid",
]

#: Lower edge of the redshift support.
Z_MIN: float = 0.0
#: Upper edge of the redshift support.
Z_MAX: float = 1.6
#: Number of mixture components (the network's output width).
N_COMPONENTS: int = 200
#: Fixed standard deviation of every component, redshift units.
SIGMA: float = 0.0037
#: Component centres, redshift: ``numpy.linspace(Z_MIN, Z_MAX, N_COMPONENTS)``.
CENTRES: np.ndarray = np.linspace(Z_MIN, Z_MAX, N_COMPONENTS)
CENTRES.setflags(write=False)

#: Components further than this many sigma from z contribute exactly 0 or 1 to F(z).
_TAIL = 10.0
#: Tolerance on the row sums of the weights.
_SUM_TOL = 1e-4
#: Elements per working chunk (galaxies x points x components).
_CHUNK = 250_000
_SQRT2PI = math.sqrt(2.0 * math.pi)
_FORMAT = "photozsom.MixturePDF"
#: MixturePDF.quantiles: F and p tabulated within +-_Q_SPAN centre spacings of the component
#: where the cumulative weight reaches q, _Q_PER_STEP points per spacing; the quantile is the
#: root of the cubic Hermite interpolant of F in its step, kept where p changes by at most a
#: factor _Q_RATIO across the step (else the exact ppf): see MixturePDF.quantiles.
_Q_SPAN, _Q_PER_STEP, _Q_RATIO = 2, 16, 2.5


def _phi(u: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * u * u) / _SQRT2PI


def _psi(u: np.ndarray) -> np.ndarray:
    """``Psi(u) = u Phi(u) + phi(u)``, the antiderivative of ``Phi``."""
    return u * ndtr(u) + _phi(u)


def _gauss_legendre_nodes(lo: float, hi: float, width: float, order: int = 16):
    """Composite Gauss-Legendre nodes and weights on ``[lo, hi]`` with panels <= ``width``."""
    n_panels = max(1, math.ceil((hi - lo) / width))
    edges = np.linspace(lo, hi, n_panels + 1)
    x, w = np.polynomial.legendre.leggauss(order)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    nodes = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    weights = (half[:, None] * w[None, :]).ravel()
    return nodes, weights


class MixtureGrid:
    """The fixed components of a :class:`MixturePDF` and their precomputed constants.

    Parameters
    ----------
    centres : array_like, shape (K,)
        Component centres, redshift; strictly increasing, inside ``bounds``.
    sigma : float
        Common standard deviation of the components, redshift (> 0).
    bounds : (float, float)
        Support ``(a, b)``, redshift; each component is truncated to it and renormalised.

    Attributes
    ----------
    alpha, beta : ndarray, shape (K,)
        Standardised bounds ``(a - mu)/sigma`` and ``(b - mu)/sigma``.
    norm : ndarray, shape (K,)
        ``Z_k``, the mass of each untruncated component inside the support.
    tmean, tvar : ndarray, shape (K,)
        Mean and variance of each truncated component (redshift, redshift^2).
    window : int
        Most components within any interval of width 20 sigma.
    """

    def __init__(self, centres: np.ndarray = CENTRES, sigma: float = SIGMA,
                 bounds: Sequence[float] = (Z_MIN, Z_MAX)) -> None:
        c = np.array(centres, dtype=np.float64).ravel()
        lo, hi = (float(b) for b in bounds)
        sigma = float(sigma)
        if c.size < 2 or not np.all(np.diff(c) > 0):
            raise ValueError("centres must hold at least 2 strictly increasing redshifts")
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive redshift width, got {sigma}")
        if not (lo < hi) or c[0] < lo or c[-1] > hi:
            raise ValueError(f"bounds {bounds} must satisfy a < b and contain every centre")
        c.setflags(write=False)
        self.centres, self.sigma, self.lo, self.hi = c, sigma, lo, hi
        self.K = c.size
        self.alpha = (lo - c) / sigma
        self.beta = (hi - c) / sigma
        self.g_lo = ndtr(self.alpha)            # Phi(alpha)
        self.q_hi = ndtr(-self.beta)            # 1 - Phi(beta)
        self.norm = ndtr(self.beta) - self.g_lo  # Z_k
        pa, pb = _phi(self.alpha), _phi(self.beta)
        r = (pa - pb) / self.norm
        self.tmean = c + sigma * r
        self.tvar = sigma**2 * (1.0 + (self.alpha * pa - self.beta * pb) / self.norm - r**2)
        self.psi_alpha = _psi(self.alpha)
        self.psi_mbeta = _psi(-self.beta)
        self.cut = _TAIL * sigma
        self.window = int(np.max(np.searchsorted(c, c + 2 * self.cut, side="right")
                                 - np.arange(self.K)))
        self.window2 = int(np.max(np.searchsorted(c, c + 4 * self.cut, side="right")
                                  - np.arange(self.K)))
        self._pair: np.ndarray | None = None
        self._band: sparse.csr_matrix | None = None
        self._mode_table: tuple[np.ndarray, np.ndarray] | None = None
        self._windows: dict[tuple, tuple | None] = {}

    # -- identity -------------------------------------------------------------------
    def key(self) -> tuple:
        return (self.centres.tobytes(), self.sigma, self.lo, self.hi)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MixtureGrid) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return (f"MixtureGrid(K={self.K}, centres {self.centres[0]:g}..{self.centres[-1]:g}, "
                f"sigma={self.sigma:g}, bounds=({self.lo:g}, {self.hi:g}))")

    # -- per-component functions ----------------------------------------------------
    def component_cdf(self, z: np.ndarray, k: np.ndarray | slice = slice(None)) -> np.ndarray:
        """``F_k(z)`` for redshifts ``z`` (broadcast against components ``k``), clipped to [0, 1]."""
        zc = np.clip(z, self.lo, self.hi)
        u = (zc - self.centres[k]) / self.sigma
        return np.clip((ndtr(u) - self.g_lo[k]) / self.norm[k], 0.0, 1.0)

    def component_sf(self, z: np.ndarray, k: np.ndarray | slice = slice(None)) -> np.ndarray:
        """``1 - F_k(z)`` computed without cancellation in the upper tail."""
        zc = np.clip(z, self.lo, self.hi)
        u = (zc - self.centres[k]) / self.sigma
        return np.clip((ndtr(-u) - self.q_hi[k]) / self.norm[k], 0.0, 1.0)

    def component_pdf(self, z: np.ndarray, k: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Density of truncated component ``k`` at ``z`` (1/redshift); 0 outside the support."""
        u = (z - self.centres[k]) / self.sigma
        inside = (z >= self.lo) & (z <= self.hi)
        return np.where(inside, _phi(u) / (self.sigma * self.norm[k]), 0.0)

    def component_abs_dev(self, y: np.ndarray, k: np.ndarray | slice = slice(None)) -> np.ndarray:
        """``E|X_k - y|`` for truncated components ``k`` (closed form), redshift.

        ``E|X_k - y| = int_a^y F_k dz + int_y^b (1 - F_k) dz`` with ``int Phi = sigma Psi``,
        ``Psi(u) = u Phi(u) + phi(u)``. ``y`` (in the support) is broadcast against ``k``
        along a new last axis: the result has shape ``y.shape + (K,)`` for the default ``k``,
        or ``k.shape`` for an index array whose leading axes match ``y``.
        """
        y = np.asarray(y, dtype=np.float64)[..., None]
        mu, g_lo, q_hi = self.centres[k], self.g_lo[k], self.q_hi[k]
        u = (y - mu) / self.sigma
        pu = _phi(u)
        below = self.sigma * (u * ndtr(u) + pu - self.psi_alpha[k]) - (y - self.lo) * g_lo
        above = self.sigma * (-u * ndtr(-u) + pu - self.psi_mbeta[k]) - (self.hi - y) * q_hi
        return (below + above) / self.norm[k]

    @property
    def pair_matrix(self) -> np.ndarray:
        """``D_jk = E|X_j - X_k'|`` for independent truncated components, shape (K, K).

        ``D_jk = int_a^b [F_j (1 - F_k) + F_k (1 - F_j)] dz``, evaluated once by composite
        16-point Gauss-Legendre quadrature on panels of width sigma/2 (the integrand is
        analytic on the scale sigma, so the quadrature is exact to double precision).
        """
        if self._pair is None:
            nodes, qw = _gauss_legendre_nodes(self.lo, self.hi, 0.5 * self.sigma)
            F = self.component_cdf(nodes[:, None])
            S = self.component_sf(nodes[:, None])
            m = (F * qw[:, None]).T @ S
            self._pair = m + m.T
            self._pair.setflags(write=False)
        return self._pair

    @property
    def pair_band(self) -> sparse.csr_matrix:
        """Sparse ``C = D - |tmean_j - tmean_k|``: zero (to 1e-23) for centres > 20 sigma apart.

        Then ``w^T D w = sum_jk w_j w_k |t_j - t_k| + w^T C w``, where the first term is
        ``O(K)`` per galaxy with cumulative sums (the means are sorted).
        """
        if self._band is None:
            C = self.pair_matrix - np.abs(self.tmean[:, None] - self.tmean[None, :])
            far = np.abs(self.centres[:, None] - self.centres[None, :]) > 2 * self.cut
            self._band = sparse.csr_matrix(np.where(far, 0.0, C))
        return self._band

    def mean_abs_difference(self, w: np.ndarray) -> np.ndarray:
        """``E|X - X'| = w^T D w`` for normalised weight rows ``w`` (n, K), redshift."""
        t = self.tmean
        cw = np.cumsum(w, axis=1) - w            # sum_{j<k} w_j
        cwt = np.cumsum(w * t, axis=1) - w * t   # sum_{j<k} w_j t_j
        spread = 2.0 * np.einsum("nk,nk->n", w, t * cw - cwt)
        band = np.asarray((self.pair_band.T @ w.T).T)
        return spread + np.einsum("nk,nk->n", band, w)

    @property
    def mode_table(self) -> tuple[np.ndarray, sparse.csr_matrix]:
        """Regular redshift grid over the support, spacing <= sigma/2, edges included, shape
        (G,), and the sparse (G, K) float32 matrix of each component's density at each grid
        point (components within 10 sigma; for :meth:`MixturePDF.mode`)."""
        if self._mode_table is None:
            n = math.ceil((self.hi - self.lo) / (0.5 * self.sigma)) + 1
            z = np.linspace(self.lo, self.hi, n)
            dens = self.component_pdf(z[:, None])                          # (G, K)
            near = np.abs(z[:, None] - self.centres[None, :]) <= self.cut
            z.setflags(write=False)
            self._mode_table = (z, sparse.csr_matrix(np.where(near, dens, 0.0).astype(np.float32)))
        return self._mode_table

    def window_table(self, kind: str, span: int, per_step: int = 16) -> tuple | None:
        """Component CDFs or densities tabulated around each centre (fast quantiles, modes).

        Returns ``(offsets, table, W, groups)``: ``offsets`` (S,) are redshift offsets
        spanning ``[-span, span]`` centre spacings in steps of ``1/per_step`` spacing; ``table[j]``
        (2W+1, S) float32 holds ``F_{j+m}(mu_j + offset)`` (``kind="cdf"``) or the density
        ``p_{j+m}(mu_j + offset)`` (``kind="pdf"``, 1/redshift) for ``m = -W..W`` (0 for
        components past the ends), so ``F`` at ``mu_j + offsets`` is
        ``cum_{j-W} + w[j-W:j+W+1] @ table[j]``. ``W`` reaches 10 sigma past the tabulated
        span, so the components left out contribute exactly 0 or 1 (0 to the density).
        ``groups[j]`` labels identical tables (all but the few centres whose windows reach the
        truncated edges), so one matrix product serves them all. None when the centres are
        not evenly spaced (the exact paths are used then).
        """
        key = (kind, int(span), int(per_step))
        if key not in self._windows:
            d = np.diff(self.centres)
            if not np.allclose(d, d[0], rtol=1e-9, atol=0.0):
                self._windows[key] = None
                return None
            step = float(d[0])
            half = math.ceil(span + self.cut / step)
            offsets = np.linspace(-span * step, span * step, 2 * per_step * span + 1)
            m = np.arange(-half, half + 1)
            k = np.arange(self.K)[:, None] + m[None, :]                    # (K, 2W+1)
            valid = (k >= 0) & (k < self.K)
            kc = np.clip(k, 0, self.K - 1)
            z = self.centres[:, None, None] + offsets[None, None, :]       # (K, 1, S)
            f = self.component_cdf if kind == "cdf" else self.component_pdf
            table = (f(z, kc[:, :, None]) * valid[:, :, None]).astype(np.float32)
            _, inv = np.unique(table.reshape(self.K, -1), axis=0, return_inverse=True)
            self._windows[key] = (offsets, table, half, np.ravel(inv))
        return self._windows[key]

    def quantile_tables(self, span: int, per_step: int) -> np.ndarray:
        """Tables of :meth:`MixturePDF.quantiles` for ``window_table("cdf", span, per_step)``:
        ``tables[j]`` (2W+1, 2S) float64 holds the component CDFs (first S columns) and
        densities (last S, 1/redshift) of the window around centre ``j`` at
        ``mu_j + offsets`` (as :meth:`window_table`, in double precision; 0 past the ends)."""
        key = ("qtab", int(span), int(per_step))
        if key not in self._windows:
            offsets, _, half, _ = self.window_table("cdf", span, per_step)
            K = self.K
            m = np.arange(-half, half + 1)
            k = np.arange(K)[:, None] + m[None, :]                          # (K, 2W+1)
            valid = ((k >= 0) & (k < K))[:, :, None]
            kc = np.clip(k, 0, K - 1)[:, :, None]
            z = self.centres[:, None, None] + offsets[None, None, :]        # (K, 1, S)
            self._windows[key] = np.ascontiguousarray(np.concatenate(
                [self.component_cdf(z, kc) * valid, self.component_pdf(z, kc) * valid], axis=2))
        return self._windows[key]

    @property
    def mode_near(self) -> int:
        """Components each side of a point that the density and its derivatives within half
        a centre spacing of it need (the others are more than 10 sigma - half a spacing
        away): ``ceil(10 sigma / spacing)`` for the smallest spacing."""
        return max(1, math.ceil(self.cut / float(np.min(np.diff(self.centres)))))

    @property
    def inv_norm(self) -> np.ndarray:
        """``1/Z_k``, shape (K,)."""
        if "inv" not in self._windows:
            self._windows["inv"] = 1.0 / self.norm
        return self._windows["inv"]

    @property
    def comb_bounds(self) -> tuple[float, float]:
        """``(c_all, c_far)``: the largest ``sum_k phi((z - mu_k)/sigma)`` over z (all
        components), and over the components at least 2 spacings from z (for the bound of
        :meth:`MixturePDF.mode`: ``p(z) <= (c_near max w_k/Z_k + c_far max w/Z) / sigma``)."""
        if "comb" not in self._windows:
            step = float(np.min(np.diff(self.centres)))
            z = np.linspace(self.lo, self.hi, 16 * self.K + 1)
            d = np.abs(z[:, None] - self.centres[None, :])
            ph = _phi(d / self.sigma)
            c_all = float(ph.sum(axis=1).max())
            c_far = float(np.where(d >= 2 * step, ph, 0.0).sum(axis=1).max())
            self._windows["comb"] = (1.01 * c_all, 1.01 * c_far + 1e-300)
        return self._windows["comb"]

    def to_dict(self) -> dict[str, Any]:
        return {"centres": self.centres, "sigma": self.sigma, "bounds": (self.lo, self.hi)}


_GRIDS: dict[tuple, MixtureGrid] = {}


def default_grid() -> MixtureGrid:
    """The paper's grid: 200 centres on [0, 1.6], sigma 0.0037, truncated to [0, 1.6]."""
    return get_grid(CENTRES, SIGMA, (Z_MIN, Z_MAX))


def get_grid(centres: np.ndarray = CENTRES, sigma: float = SIGMA,
             bounds: Sequence[float] = (Z_MIN, Z_MAX)) -> MixtureGrid:
    """The (cached) :class:`MixtureGrid` for these components: constants are computed once."""
    g = MixtureGrid(centres, sigma, bounds)
    return _GRIDS.setdefault(g.key(), g)


def _chunks(n: int, per_row: int):
    step = max(1, _CHUNK // max(per_row, 1))
    for s in range(0, n, step):
        yield slice(s, min(n, s + step))


class MixturePDF:
    """Redshift PDFs of N galaxies: mixtures of K fixed truncated Gaussians.

    Parameters
    ----------
    weights : array_like, shape (N, K)
        Mixture weights, >= 0, each row summing to 1 (within 1e-4; rows are renormalised
        in every computation). float32 input is kept as float32 to halve the memory;
        every result is computed in float64.
    centres : array_like, shape (K,), optional
        Component centres, redshift. Default :data:`CENTRES`.
    sigma : float, optional
        Component width, redshift. Default :data:`SIGMA`.
    bounds : (float, float), optional
        Support, redshift. Default ``(Z_MIN, Z_MAX)``.
    ids : array_like, shape (N,), optional
        One identifier per galaxy (integers or strings, e.g. ``OBJID``), carried through
        indexing, :meth:`concatenate`, :meth:`save` and :meth:`load` (as in qp's ``Ensemble``).

    Raises
    ------
    ValueError
        For a non-2-D array, a width other than K, NaN/inf, negative weights, rows that
        do not sum to 1, or ``ids`` of the wrong length or type.

    Notes
    -----
    Indexing (``pdf[3]``, ``pdf[10:20]``, ``pdf[mask]``, ``pdf[[1, 5]]``) returns a new
    ``MixturePDF`` (always 2-D) with the matching ``ids``. Methods that take a redshift
    ``z`` accept a scalar (the same ``z`` for every galaxy), an array of shape (N,) (one per
    galaxy) or (N, G) (G per galaxy), and return the matching shape.
    """

    def __init__(self, weights: np.ndarray, *, centres: np.ndarray = CENTRES,
                 sigma: float = SIGMA, bounds: Sequence[float] = (Z_MIN, Z_MAX),
                 ids: np.ndarray | None = None) -> None:
        grid = get_grid(centres, sigma, bounds)
        w = self._validate(weights, grid)
        self._init(w, grid, self._validate_ids(ids, len(w)))

    @classmethod
    def _from_valid(cls, weights: np.ndarray, grid: MixtureGrid,
                    ids: np.ndarray | None = None) -> MixturePDF:
        obj = cls.__new__(cls)
        obj._init(weights, grid, ids)
        return obj

    def _init(self, weights: np.ndarray, grid: MixtureGrid, ids: np.ndarray | None = None) -> None:
        self._w = weights
        self.grid = grid
        self._ids = ids

    @staticmethod
    def _validate_ids(ids, n: int) -> np.ndarray | None:
        if ids is None:
            return None
        a = np.asarray(ids)
        if a.dtype == object:
            a = a.astype(str)
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f"ids must be 1-D with one identifier per galaxy ({n}), got shape "
                             f"{a.shape}")
        if a.dtype.kind not in "iuU":
            raise ValueError(f"ids must be integers or strings, got dtype {a.dtype}")
        return a

    @property
    def ids(self) -> np.ndarray | None:
        """Identifier of each galaxy, shape (N,), or None when the PDFs carry none."""
        if self._ids is None:
            return None
        v = self._ids.view()
        v.setflags(write=False)
        return v

    @staticmethod
    def _validate(weights, grid: MixtureGrid) -> np.ndarray:
        w = np.asarray(weights)
        if w.dtype not in (np.float32, np.float64):
            w = w.astype(np.float64)
        if w.ndim != 2 or w.shape[1] != grid.K:
            raise ValueError(f"weights must have shape (N, {grid.K}) (one row of mixture "
                             f"weights per galaxy), got {w.shape}")
        if not np.all(np.isfinite(w)):
            bad = np.flatnonzero(~np.isfinite(w).all(axis=1))
            raise ValueError(f"weights has non-finite values in {bad.size} row(s) "
                             f"(first {bad[:5].tolist()})")
        if np.any(w < 0):
            bad = np.flatnonzero((w < 0).any(axis=1))
            raise ValueError(f"weights must be >= 0; {bad.size} row(s) have negative entries "
                             f"(first {bad[:5].tolist()})")
        s = w.sum(axis=1, dtype=np.float64)
        off = np.abs(s - 1.0) > _SUM_TOL
        if np.any(off):
            bad = np.flatnonzero(off)
            raise ValueError(
                f"weights rows must sum to 1 (tolerance {_SUM_TOL}); {bad.size} row(s) do not "
                f"(first {bad[:5].tolist()}, sums {s[bad[:3]].round(6).tolist()}); "
                "normalise with w / w.sum(axis=1, keepdims=True) or use a softmax")
        return w

    # -- container protocol -------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        """Mixture weights, shape (N, K) (read-only view)."""
        v = self._w.view()
        v.setflags(write=False)
        return v

    @property
    def centres(self) -> np.ndarray:
        """Component centres, shape (K,), redshift."""
        return self.grid.centres

    @property
    def sigma(self) -> float:
        """Component standard deviation, redshift."""
        return self.grid.sigma

    @property
    def bounds(self) -> tuple[float, float]:
        """Support ``(a, b)``, redshift."""
        return (self.grid.lo, self.grid.hi)

    @property
    def n_components(self) -> int:
        return self.grid.K

    def __len__(self) -> int:
        return self._w.shape[0]

    def _galaxy_index(self, idx):
        """``idx`` as an index along galaxies that keeps the result 2-D (an int becomes a
        one-row slice)."""
        if isinstance(idx, (int, np.integer)):
            n = len(self)
            if not -n <= idx < n:
                raise IndexError(f"galaxy index {idx} out of range for {n} PDFs")
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return idx

    def __getitem__(self, idx) -> MixturePDF:
        idx = self._galaxy_index(idx)
        w = self._w[idx]
        if w.ndim != 2:
            raise IndexError("index MixturePDF along galaxies only (int, slice, bool mask or "
                             "integer array)")
        return MixturePDF._from_valid(w, self.grid, None if self._ids is None else self._ids[idx])

    def __repr__(self) -> str:
        return f"MixturePDF(N={len(self)}, {self.grid!r})"

    @classmethod
    def concatenate(cls, pdfs: Sequence[MixturePDF]) -> MixturePDF:
        """Stack PDFs of several sets of galaxies (all on the same grid).

        The result carries ``ids`` when every input does; mixing PDFs with and without ids
        raises a ValueError. PDFs all of one subclass (e.g. recalibrated P(z),
        :class:`photozsom.calibrate.RecalibratedPDF`) are stacked by that subclass, so what
        they keep beyond the weights is kept.
        """
        pdfs = list(pdfs)
        if not pdfs:
            raise ValueError("concatenate needs at least one MixturePDF")
        sub = type(pdfs[0])
        if cls is MixturePDF and sub is not MixturePDF and all(type(p) is sub for p in pdfs):
            return sub.concatenate(pdfs)
        grid = pdfs[0].grid
        for p in pdfs[1:]:
            if p.grid != grid:
                raise ValueError(f"cannot concatenate PDFs on different grids: {grid!r} and "
                                 f"{p.grid!r}")
        has = [p._ids is not None for p in pdfs]
        if any(has) and not all(has):
            raise ValueError("cannot concatenate PDFs with ids and PDFs without: give every "
                             "MixturePDF its ids (or none)")
        ids = np.concatenate([p._ids for p in pdfs]) if all(has) else None
        dtype = np.result_type(*[p._w.dtype for p in pdfs])
        return cls._from_valid(np.concatenate([p._w.astype(dtype, copy=False) for p in pdfs]),
                               grid, ids)

    def _rows(self, sl: slice) -> np.ndarray:
        w = self._w[sl].astype(np.float64)
        return w / w.sum(axis=1, keepdims=True)

    # -- input handling -------------------------------------------------------------------
    def _points(self, z, name: str, *, in_support: bool = False) -> tuple[np.ndarray, tuple]:
        """z as a float64 (N, G) array plus the shape to return."""
        n = len(self)
        a = np.asarray(z, dtype=np.float64)
        if a.ndim == 0:
            out_shape: tuple = (n,)
            a = np.broadcast_to(a, (n, 1))
        elif a.ndim == 1:
            if a.shape[0] != n:
                raise ValueError(f"{name} has {a.shape[0]} values but there are {n} PDFs; pass "
                                 f"one per galaxy, a scalar, or an (N, G) array")
            out_shape = (n,)
            a = a[:, None]
        elif a.ndim == 2:
            if a.shape[0] not in (1, n):
                raise ValueError(f"{name} has shape {a.shape}; expected ({n}, G) or (1, G)")
            a = np.broadcast_to(a, (n, a.shape[1]))
            out_shape = a.shape
        else:
            raise ValueError(f"{name} must be a scalar, (N,) or (N, G) array, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has NaN or infinite values; drop or mask those galaxies")
        if in_support and (np.any(a < self.grid.lo) or np.any(a > self.grid.hi)):
            bad = np.flatnonzero(((a < self.grid.lo) | (a > self.grid.hi)).any(axis=1))
            raise ValueError(
                f"{name} has {bad.size} redshift(s) outside the support [{self.grid.lo:g}, "
                f"{self.grid.hi:g}] of the PDFs (first rows {bad[:5].tolist()}); drop those "
                "galaxies (the model cannot score them) before computing PIT/CRPS")
        return a, out_shape

    # -- local (windowed) evaluation -----------------------------------------------------
    def _gather(self, z: np.ndarray, w: np.ndarray, reach: float, width: int,
                cum: np.ndarray | None = None):
        """Components with centres in ``[z - reach, ...]`` (``width`` of them) for each point.

        Returns ``idx`` (n, G, width), ``wl`` (their weights, 0 past the last component) and,
        when the exclusive cumulative weights ``cum`` (n, K + 1) are given, ``below`` (the
        summed weight of the components left of the window, (n, G)); else None.
        """
        g = self.grid
        n = w.shape[0]
        start = np.searchsorted(g.centres, z - reach)
        idx = start[..., None] + np.arange(width)
        valid = idx < g.K
        idx = np.minimum(idx, g.K - 1)
        wl = np.take_along_axis(w, idx.reshape(n, -1), axis=1).reshape(idx.shape) * valid
        below = None if cum is None else np.take_along_axis(cum, start, axis=1)
        return idx, wl, below

    @staticmethod
    def _cum(w: np.ndarray) -> np.ndarray:
        """Exclusive cumulative weights, shape (n, K + 1): ``cum[:, j] = sum_{k<j} w_k``."""
        cum = np.zeros((w.shape[0], w.shape[1] + 1))
        np.cumsum(w, axis=1, out=cum[:, 1:])
        cum[:, -1] = 1.0
        return cum

    def _local_sum(self, z: np.ndarray, w: np.ndarray, kind: str) -> np.ndarray:
        """CDF or density of rows ``w`` (n, K) at points ``z`` (n, G)."""
        g = self.grid
        zc = np.clip(z, g.lo, g.hi)
        cum = self._cum(w) if kind == "cdf" else None
        idx, wl, below = self._gather(zc, w, g.cut, g.window, cum)
        u = (zc[..., None] - g.centres[idx]) / g.sigma
        if kind == "cdf":
            val = below + np.sum(wl * (ndtr(u) - g.g_lo[idx]) / g.norm[idx], axis=-1)
            val = np.where(z < g.lo, 0.0, np.where(z >= g.hi, 1.0, val))
            return np.clip(val, 0.0, 1.0)
        dens = np.sum(wl * _phi(u) / g.norm[idx], axis=-1) / g.sigma
        return np.where((z < g.lo) | (z > g.hi), 0.0, dens)

    def _apply_local(self, z, name: str, kind: str, *, in_support: bool = False) -> np.ndarray:
        a, shape = self._points(z, name, in_support=in_support)
        out = np.empty(a.shape)
        for sl in _chunks(len(self), a.shape[1] * self.grid.window):
            out[sl] = self._local_sum(a[sl], self._rows(sl), kind)
        return out.reshape(shape)

    # -- summaries ---------------------------------------------------------------------------
    def mean(self) -> np.ndarray:
        """Expectation of z, shape (N,), redshift (the paper's point estimate)."""
        return self.moments()[0]

    def std(self) -> np.ndarray:
        """Standard deviation of z, shape (N,), redshift."""
        return self.moments()[1]

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of z in one pass, each shape (N,), redshift."""
        g = self.grid
        m = np.empty(len(self))
        v = np.empty(len(self))
        for sl in _chunks(len(self), g.K):
            w = self._rows(sl)
            m[sl] = w @ g.tmean
            v[sl] = w @ (g.tvar + g.tmean**2) - m[sl] ** 2
        return m, np.sqrt(np.clip(v, 0.0, None))

    def cdf(self, z) -> np.ndarray:
        """Cumulative probability ``F(z) = P(Z <= z)``.

        Parameters
        ----------
        z : float or ndarray, shape (N,) or (N, G)
            Redshift(s); any finite value (``F = 0`` below the support, 1 above).

        Returns
        -------
        ndarray, shape (N,) or (N, G)
        """
        return self._apply_local(z, "z", "cdf")

    def evaluate(self, z_grid) -> np.ndarray:
        """Probability density ``p(z)`` (1/redshift).

        Parameters
        ----------
        z_grid : ndarray, shape (G,) or (N, G)
            A redshift grid shared by all galaxies, or one grid per galaxy.

        Returns
        -------
        ndarray, shape (N, G)
            Densities; 0 outside the support.
        """
        a = np.asarray(z_grid, dtype=np.float64)
        if a.ndim == 1:
            if not np.all(np.isfinite(a)):
                raise ValueError("z_grid has NaN or infinite values")
            comp = self.grid.component_pdf(a[:, None])            # (G, K)
            out = np.empty((len(self), a.size))
            for sl in _chunks(len(self), self.grid.K):
                out[sl] = self._rows(sl) @ comp.T
            return out
        if a.ndim != 2:
            raise ValueError(f"z_grid must be (G,) or (N, G), got shape {a.shape}")
        return self._apply_local(a, "z_grid", "pdf")

    def pdf(self, z) -> np.ndarray:
        """Density at ``z`` per galaxy (scalar, (N,) or (N, G)); see :meth:`evaluate`."""
        return self._apply_local(z, "z", "pdf")

    def pit(self, z_true) -> np.ndarray:
        """Probability integral transform ``F_i(z_i)`` at the true redshifts.

        Parameters
        ----------
        z_true : ndarray, shape (N,)
            Spectroscopic redshifts, inside the support [0, 1.6].

        Returns
        -------
        ndarray, shape (N,), values in [0, 1]
        """
        self._need_per_galaxy(z_true, "z_true")
        return self._apply_local(z_true, "z_true", "cdf", in_support=True)

    def _need_per_galaxy(self, z, name: str) -> None:
        if np.ndim(z) != 1:
            raise ValueError(f"{name} must be 1-D with one redshift per galaxy ({len(self)}), "
                             f"got shape {np.shape(z)}")

    def crps(self, z_true) -> np.ndarray:
        """Continuous ranked probability score, exact for the truncated mixture.

        ``CRPS(F, y) = int (F(z) - 1{z >= y})^2 dz = E|X - y| - E|X - X'|/2``, with
        ``E|X - y| = sum_k w_k E|X_k - y|`` in closed form and ``E|X - X'| = w^T D w``
        (``D``: :attr:`MixtureGrid.pair_matrix`).

        Parameters
        ----------
        z_true : ndarray, shape (N,)
            Spectroscopic redshifts, inside the support.

        Returns
        -------
        ndarray, shape (N,)
            CRPS, redshift units (>= 0).
        """
        self._need_per_galaxy(z_true, "z_true")
        y, _ = self._points(z_true, "z_true", in_support=True)
        g = self.grid
        out = np.empty(len(self))
        for sl in _chunks(len(self), 2 * g.K):
            w = self._rows(sl)
            ys = y[sl]
            # E|X_k - y| = |tmean_k - y| exactly (to Phi(-10)) for components > 10 sigma
            # from y; the closed form is evaluated for the ~11 components near y.
            e_abs = np.einsum("nk,nk->n", w, np.abs(g.tmean - ys))
            idx, wl, _ = self._gather(ys, w, g.cut, g.window)
            near = g.component_abs_dev(ys, idx) - np.abs(g.tmean[idx] - ys[..., None])
            e_abs += np.sum(wl * near, axis=-1)[:, 0]
            out[sl] = e_abs - 0.5 * g.mean_abs_difference(w)
        return np.clip(out, 0.0, None)

    def ppf(self, q) -> np.ndarray:
        """Quantile function ``inf{z : F(z) >= q}``.

        Parameters
        ----------
        q : float or ndarray, shape (N,) or (N, G)
            Probabilities in [0, 1].

        Returns
        -------
        ndarray, shape (N,) or (N, G)
            Redshifts in the support, to ~1e-15.
        """
        a, shape = self._points(q, "q")
        if np.any(a < 0) or np.any(a > 1):
            raise ValueError("q must lie in [0, 1]")
        out = np.empty(a.shape)
        g = self.grid
        for sl in _chunks(len(self), a.shape[1] * (g.window2 + g.K)):
            out[sl] = self._ppf_rows(a[sl], self._rows(sl))
        return out.reshape(shape)

    def _ppf_rows(self, q: np.ndarray, w: np.ndarray) -> np.ndarray:
        g = self.grid
        cum = self._cum(w)
        # j: first component whose cumulative weight reaches q. F(mu_j + 10 sigma) >= q and
        # F(mu_j - 10 sigma) < q (components beyond 10 sigma contribute exactly 0 or 1), so
        # the quantile is bracketed by [mu_j - 10 sigma, mu_j + 10 sigma].
        j = np.minimum((cum[:, None, 1:] < q[..., None]).sum(axis=-1), g.K - 1)
        cj = g.centres[j]
        lo = np.maximum(cj - g.cut, g.lo)
        hi = np.minimum(cj + g.cut, g.hi)
        # every component that matters anywhere inside the bracket, gathered once
        idx, wl, below = self._gather(cj, w, 2 * g.cut, g.window2, cum)
        wl = wl / g.norm[idx]
        mu = g.centres[idx]
        base = below - np.sum(wl * g.g_lo[idx], axis=-1)
        inv_s = 1.0 / g.sigma
        # 10 halvings (bracket ~ 0.04 sigma), then safeguarded Newton steps on F(z) = q
        for _ in range(10):
            mid = 0.5 * (lo + hi)
            up = base + np.sum(wl * ndtr((mid[..., None] - mu) * inv_s), axis=-1) >= q
            hi = np.where(up, mid, hi)
            lo = np.where(up, lo, mid)
        x = 0.5 * (lo + hi)
        shape = q.shape
        q, x, lo, hi = (np.ravel(v).copy() for v in (q, x, lo, hi))
        wl, mu = wl.reshape(-1, wl.shape[-1]), mu.reshape(-1, mu.shape[-1])
        base = base.ravel()
        act = np.arange(q.size)           # points not yet converged
        for _ in range(60):
            u = (x[act, None] - mu[act]) * inv_s
            f = base[act] + np.sum(wl[act] * ndtr(u), axis=-1) - q[act]
            dens = np.sum(wl[act] * _phi(u), axis=-1) * inv_s
            up = f >= 0
            hi[act] = np.where(up, x[act], hi[act])
            lo[act] = np.where(up, lo[act], x[act])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                step = x[act] - f / dens
            ok = np.isfinite(step) & (step > lo[act]) & (step < hi[act])
            new = np.where(ok, step, 0.5 * (lo[act] + hi[act]))
            done = (np.abs(f) <= 1e-15) | (np.abs(new - x[act]) <= 1e-15)
            x[act] = np.where(np.abs(f) <= 1e-15, x[act], new)
            act = act[~done]
            if act.size == 0:
                break
        return np.where(q <= 0, g.lo, np.clip(x, g.lo, g.hi)).reshape(shape)

    def quantiles(self, levels: Sequence[float]) -> np.ndarray:
        """Several quantiles of every PDF at once, fast: ``ppf(q)`` for each ``q`` in ``levels``.

        The quantile level ``q`` is first located in the cumulative weights (component ``j``,
        by bisection). The step of 1/16 centre spacing holding it is found among 65 points
        spanning ``mu_j +- 2`` spacings by bisection, ``F`` there being a product of the 15
        nearest weights with the tabulated component CDFs (:meth:`MixtureGrid.quantile_tables`);
        ``F`` and the density ``p`` at both ends of the step come from the same weights and
        tables, and the quantile is the root of the cubic Hermite interpolant of ``F`` there
        (Newton steps from the linear interpolant). All in float64, one compiled loop over
        the galaxies (:func:`photozsom.kernels.quantile_rows`), and no special function is
        evaluated, so the values do not depend on the CPU. The error is
        ``<= h^4 max|p'''| / (384 p)`` with ``h`` the step; every component has
        ``|p_k'''| <= |u^3 - 3u| p_k / sigma^3``, so it is at most ``~3e-9 |u^3 - 3u|`` in
        redshift for the standardised distance ``u`` of the components that carry the
        density. A point whose density changes by more than a factor 2.5 across its step (a
        quantile in a gap of near-zero density, carried by far tails), whose Newton steps do
        not converge, or that lies outside the tabulated span is
        recomputed by the exact :meth:`ppf`; so every value agrees with :meth:`ppf` to better
        than 1e-5 in redshift (typically 1e-9, at most ~1e-7 on network P(z)). About 25x
        faster than :meth:`ppf` for the four bounds of two intervals and the median (one
        thread).

        Parameters
        ----------
        levels : sequence of float, shape (L,)
            Probabilities in [0, 1].

        Returns
        -------
        ndarray, shape (N, L)
            Redshifts in the support, one column per level.
        """
        lv = self._levels(levels)
        g = self.grid
        out = np.empty((len(self), lv.size))
        tab = g.window_table("cdf", _Q_SPAN, _Q_PER_STEP)
        inner = (lv > 0) & (lv < 1)
        for c in np.flatnonzero(~inner) if tab is not None else range(lv.size):
            out[:, c] = self.ppf(float(lv[c]))
        if tab is None or not inner.any():
            return out
        cols = np.flatnonzero(inner)
        out[:, cols] = self._quantile_rows(self._w, lv[cols][None, :])   # no temporaries
        return out

    def quantiles_per_row(self, levels: np.ndarray) -> np.ndarray:
        """:meth:`quantiles` at levels of each galaxy's own, shape (N, L).

        Parameters
        ----------
        levels : ndarray, shape (N, L)
            Probabilities in [0, 1]; row ``i`` for galaxy ``i``.

        Returns
        -------
        ndarray, shape (N, L)
            Redshifts, as :meth:`quantiles` computes them (levels 0 and 1, and every level
            on a grid of uneven centres, by the exact :meth:`ppf`).
        """
        lv = np.asarray(levels, dtype=np.float64)
        if lv.ndim != 2 or lv.shape[0] != len(self):
            raise ValueError(f"levels must have shape (N, L) with N = {len(self)}, got "
                             f"{lv.shape}")
        self._levels(lv)                                                  # checks the values
        if self.grid.window_table("cdf", _Q_SPAN, _Q_PER_STEP) is None:
            return self.ppf(lv)
        inner = (lv > 0) & (lv < 1)
        out = self._quantile_rows(self._w, np.where(inner, lv, 0.5))
        r, c = np.nonzero(~inner)
        if r.size:
            out[r, c] = self[r].ppf(lv[r, c])
        return out

    @staticmethod
    def _levels(levels: Sequence[float]) -> np.ndarray:
        """Quantile levels as a non-empty float64 vector of probabilities in [0, 1]."""
        lv = np.asarray(levels, dtype=np.float64).ravel()
        if lv.size == 0 or not np.all(np.isfinite(lv)) or np.any(lv < 0) or np.any(lv > 1):
            raise ValueError(f"levels must be probabilities in [0, 1], got {levels!r}")
        return lv

    def _quantile_rows(self, w: np.ndarray, lv: np.ndarray) -> np.ndarray:
        """:meth:`quantiles` of rows ``w`` (n, K) at levels ``lv`` (1 or n, L) in (0, 1),
        shape (n, L): the compiled loop :func:`photozsom.kernels.quantile_rows`, and the
        exact :meth:`ppf` for the points it marks (see :meth:`quantiles`)."""
        from photozsom.kernels import quantile_rows

        g = self.grid
        offsets, _, half, _ = g.window_table("cdf", _Q_SPAN, _Q_PER_STEP)
        tables = g.quantile_tables(_Q_SPAN, _Q_PER_STEP)
        n, L = w.shape[0], lv.shape[1]
        z = np.empty((n, L))
        ok = np.empty((n, L), dtype=bool)
        quantile_rows(np.ascontiguousarray(w), np.ascontiguousarray(lv, dtype=np.float64),
                      tables, offsets, g.centres, int(half), _Q_RATIO, g.lo, z, ok)
        bad = np.flatnonzero(~ok)
        if bad.size:
            r, c = np.divmod(bad, L)
            wr = w[r].astype(np.float64)
            wr /= wr.sum(axis=1, keepdims=True)
            z.ravel()[bad] = self._ppf_rows(lv[np.minimum(r, lv.shape[0] - 1), c][:, None],
                                            wr)[:, 0]
        self._quantile_fallbacks = getattr(self, "_quantile_fallbacks", 0) + int(bad.size)
        return np.clip(z, g.lo, g.hi)

    def median(self) -> np.ndarray:
        """Median redshift, shape (N,)."""
        return self.ppf(0.5)

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central credible interval ``(ppf((1-level)/2), ppf((1+level)/2))``.

        Parameters
        ----------
        level : float in (0, 1)
            Probability inside the interval.

        Returns
        -------
        lo, hi : ndarray, shape (N,)
            Redshift bounds.
        """
        if not 0.0 < float(level) < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        tail = 0.5 * (1.0 - float(level))
        return self.ppf(tail), self.ppf(1.0 - tail)

    def mode(self) -> np.ndarray:
        """Redshift of the global maximum of the density, shape (N,).

        The density is tabulated on a regular grid of spacing ``h <= sigma / 2`` over the
        whole support (edges included). Every component is a Gaussian of width ``sigma``, so
        ``p'' >= -p / sigma^2 >= -P / sigma^2`` everywhere (``P``: the global maximum), and the
        grid point nearest an interior maximum has ``p >= P (1 - h^2 / (8 sigma^2))``. Every
        grid point above that fraction of the tabulated maximum is therefore a candidate, and
        the global maximum lies within ``h / 2`` of one of them. Around each candidate the
        density is evaluated on 5 points spanning ``[z - h/2, z + h/2]``; the best one is
        refined by a parabola through ``log p`` and safeguarded Newton steps on ``p'(z) = 0``
        (to ~1e-12 in z for a smooth peak), and the highest candidate is returned. A maximum
        at an edge of the support is a grid point and is returned exactly.

        Fast path (evenly spaced centres): the density is tabulated only within 6 centre
        spacings of each galaxy's heaviest component (one small matrix product per galaxy
        with :meth:`MixtureGrid.window_table`, spacing 1/8 of a centre spacing), where the
        same candidate rule and refinement apply (one compiled loop over the galaxies,
        :func:`photozsom.kernels.mode_rows`, for this and the second window below). It is
        used when that tabulated maximum is at least the bound
        ``(c_near max_{|k-j|>=5} w_k/Z_k + c_far max w/Z) / sigma`` on the density anywhere outside the window (:attr:`MixtureGrid.comb_bounds`), so the global
        maximum is inside. A galaxy that fails it (two separated peaks of similar height)
        gets a second window around its heaviest component outside ``j +- 4``, used when
        the best tabulated density in either window is at least the same bound with both
        neighbourhoods taken out (outside both windows every component of either is at
        least 2 spacings away); the rest (three or more competing peaks) take the
        whole-support grid above.
        """
        g = self.grid
        tab = g.window_table("pdf", 6, 8)
        out = np.empty(len(self))
        if tab is None:
            for sl in _chunks(len(self), max(1, _CHUNK // 4096)):      # 4096 rows at a time
                out[sl] = self._mode_grid(self._rows(sl))
            return out
        from photozsom.kernels import mode_rows

        offsets, table, half, _ = tab
        c_all, c_far = g.comb_bounds
        ok = np.empty(len(self), dtype=bool)
        mode_rows(np.ascontiguousarray(self._w), table, g.inv_norm, g.centres, offsets,
                  int(half), int(g.mode_near), c_all, c_far, g.sigma, g.lo, g.hi, out, ok)
        bad = np.flatnonzero(~ok)                    # three or more competing peaks
        for s in range(0, bad.size, 4096):
            rows = bad[s:s + 4096]
            out[rows] = self._mode_whole(self._w[rows])
        self._mode_fallbacks = getattr(self, "_mode_fallbacks", 0) + int(bad.size)
        return out

    @staticmethod
    def _mode_candidates(d: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the tabulated local maxima of ``d`` (m, S) within the fraction
        ``keep`` of their row's largest value, rows sorted."""
        cand = d >= keep * d.max(axis=1, keepdims=True)
        cand[:, 1:] &= d[:, 1:] >= d[:, :-1]
        cand[:, :-1] &= d[:, :-1] >= d[:, 1:]
        return np.nonzero(cand)

    def _mode_whole(self, w: np.ndarray) -> np.ndarray:
        """The whole-support search of :meth:`mode` (grid of spacing sigma/2) for rows ``w``
        of weights, each tabulated local maximum refined as in the windows (one compiled
        loop, :func:`photozsom.kernels.polish_points`)."""
        from photozsom.kernels import polish_points

        g = self.grid
        zc, comp = g.mode_table
        h = zc[1] - zc[0]
        keep = 1.0 - h * h / (8.0 * g.sigma**2) - 1e-5      # 1e-5: float32 tabulation
        out = np.empty(len(w))
        for sl in _chunks(len(w), zc.size):
            wr = np.ascontiguousarray(w[sl])
            d = (comp @ wr.T.astype(np.float32)).T                           # (n, G)
            r, c = self._mode_candidates(d, keep)
            S = d.shape[1]
            d0 = d[r, c].astype(np.float64)
            dm = np.where(c > 0, d[r, np.maximum(c - 1, 0)], 0.0)
            dp = np.where(c < S - 1, d[r, np.minimum(c + 1, S - 1)], 0.0)
            res = np.empty(len(wr))
            polish_points(wr, r.astype(np.int64), zc[c], dm, d0, dp, h, g.inv_norm, g.centres,
                          int(g.mode_near), g.sigma, g.lo, g.hi, res)
            out[sl] = res
        return out

    def _mode_grid(self, w: np.ndarray) -> np.ndarray:
        """The whole-support algorithm of :meth:`mode` for normalised rows ``w``."""
        g = self.grid
        zc, comp = g.mode_table
        n_grid = zc.size
        h = zc[1] - zc[0]
        keep = 1.0 - h * h / (8.0 * g.sigma**2) - 1e-5      # 1e-5: float32 tabulation
        out = np.empty(len(w))
        for sl in _chunks(len(w), n_grid):
            wr = w[sl]
            d = (comp @ wr.T.astype(np.float32)).T                   # (n, G), a view
            r, j = np.nonzero(d >= keep * d.max(axis=1, keepdims=True))
            out[sl] = self._refine_modes(wr, r, np.maximum(zc[j] - 0.5 * h, g.lo),
                                         np.minimum(zc[j] + 0.5 * h, g.hi))
        return out

    def _refine_modes(self, w: np.ndarray, r: np.ndarray, a: np.ndarray,
                      b: np.ndarray) -> np.ndarray:
        """Highest density point of row ``w[r[i]]`` inside ``[a[i], b[i]]``, best per row.

        ``r`` must be sorted; returns one redshift per distinct row (every row present).
        """
        g = self.grid
        # the components that matter anywhere in [a, b], gathered once per candidate
        width = g.window + int(np.ceil(np.max(b - a) / np.min(np.diff(g.centres)))) + 1
        start = np.searchsorted(g.centres, a - g.cut)
        idx = start[:, None] + np.arange(width)
        valid = idx < g.K
        idx = np.minimum(idx, g.K - 1)
        wl = w[r[:, None], idx] * valid / g.norm[idx]                  # (m, width)
        mu = g.centres[idx]
        s = g.sigma

        def density(z):                      # p, p', p'' at z (m, P)
            u = (z[..., None] - mu[:, None, :]) / s
            c = wl[:, None, :] * _phi(u)
            return (np.sum(c, axis=-1) / s, -np.sum(c * u, axis=-1) / s**2,
                    np.sum(c * (u * u - 1.0), axis=-1) / s**3)

        n_sub = 5
        z = a[:, None] + (b - a)[:, None] * np.linspace(0.0, 1.0, n_sub)
        d = density(z)[0]
        m = np.arange(len(r))
        best = np.argmax(d, axis=1)
        i = np.clip(best, 1, n_sub - 2)
        hs = (b - a) / (n_sub - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            l0, l1, l2 = (np.log(d[m, i + k]) for k in (-1, 0, 1))
            den = l0 - 2 * l1 + l2
            shift = np.where(np.isfinite(den) & (den < 0), 0.5 * (l0 - l2) / den, 0.0)
        x = z[m, i] + np.clip(shift, -1.0, 1.0) * hs
        for _ in range(3):                   # safeguarded Newton steps on p'(x) = 0
            _, d1, d2 = density(x[:, None])
            with np.errstate(divide="ignore", invalid="ignore"):
                step = -d1[:, 0] / d2[:, 0]
            ok = np.isfinite(step) & (d2[:, 0] < 0) & (np.abs(step) < 2 * hs)
            x = np.clip(np.where(ok, x + step, x), a, b)
        dx = np.where((x >= g.lo) & (x <= g.hi), density(x[:, None])[0][:, 0], 0.0)
        zb, db = z[m, best], d[m, best]
        better = dx >= db
        x, val = np.where(better, x, zb), np.where(better, dx, db)
        order = np.lexsort((-val, r))        # highest candidate first within each row
        first = order[np.r_[0, np.flatnonzero(np.diff(r[order])) + 1]]
        return x[first]

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, n: int, seed: int | np.random.Generator = 0) -> np.ndarray:
        """Draw redshifts from each PDF.

        Parameters
        ----------
        n : int
            Draws per galaxy.
        seed : int or numpy.random.Generator
            Randomness; the same seed gives the same draws.

        Returns
        -------
        ndarray, shape (N, n)
            Redshifts in the support.
        """
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        rng = np.random.default_rng(seed)
        g = self.grid
        N = len(self)
        out = np.empty((N, n))
        for sl in _chunks(N, max(n, g.K)):
            w = self._rows(sl)
            m = w.shape[0]
            cum = np.minimum(np.cumsum(w, axis=1), 1.0)
            cum[:, -1] = 1.0
            rows = np.arange(m)
            flat = (cum + rows[:, None]).ravel()
            u = rng.random((m, n))
            k = np.searchsorted(flat, (u + rows[:, None]).ravel(), side="right")
            k = np.minimum(k.reshape(m, n) - rows[:, None] * g.K, g.K - 1)
            u2 = rng.random((m, n))
            p = g.g_lo[k] + u2 * g.norm[k]
            upper = p > 0.5
            x_lo = g.centres[k] + g.sigma * ndtri(np.where(upper, 0.5, p))
            x_hi = g.centres[k] - g.sigma * ndtri(np.where(upper, ndtr(-g.alpha[k]) - u2 * g.norm[k],
                                                            0.5))
            out[sl] = np.clip(np.where(upper, x_hi, x_lo), g.lo, g.hi)
        return out

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights and the grid to ``.npz`` (default) or ``.h5``/``.hdf5``.

        The file holds ``weights`` (N, K), ``centres`` (K,), ``sigma`` and ``bounds`` (2,) (and
        ``ids`` (N,) when the PDFs carry them), so it can be read without photozsom. It is
        written to a temporary name beside ``path`` and renamed into place
        (:func:`photozsom.artifacts.atomic_path`): an interrupted write leaves the previous
        file or none, never a truncated one.

        Returns
        -------
        pathlib.Path
            The file written (``.npz`` appended when ``path`` has neither suffix).
        """

        path = Path(path)
        g = self.grid
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
                f.attrs["format"] = _FORMAT
                f.create_dataset("weights", data=self._w, compression="gzip", compression_opts=4)
                f["centres"] = g.centres
                f["sigma"] = g.sigma
                f["bounds"] = np.array([g.lo, g.hi])
                f["centres"].attrs["unit"] = "redshift"
                if self._ids is not None:
                    ids = self._ids
                    f["ids"] = ids if ids.dtype.kind != "U" else np.char.encode(ids, "utf-8")
        else:
            if path.suffix.lower() != ".npz":
                path = path.with_name(path.name + ".npz")
            with atomic_path(path) as tmp:
                extra = {} if self._ids is None else {"ids": self._ids}
                np.savez_compressed(tmp, weights=self._w, centres=g.centres, sigma=g.sigma,
                                    bounds=np.array([g.lo, g.hi]), format=_FORMAT, **extra)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> MixturePDF:
        """Read a file written by :meth:`save` (``.npz`` or ``.h5``)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no MixturePDF file at {path}")
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                missing = [k for k in ("weights", "centres", "sigma", "bounds") if k not in f]
                if missing:
                    raise ValueError(f"{path} is not a MixturePDF file: lacks {missing}")
                w, c = f["weights"][()], f["centres"][()]
                s, b = float(f["sigma"][()]), f["bounds"][()]
                ids = f["ids"][()] if "ids" in f else None
                if ids is not None and ids.dtype.kind == "S":
                    ids = np.char.decode(ids, "utf-8")
        else:
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in ("weights", "centres", "sigma", "bounds") if k not in f]
                if missing:
                    raise ValueError(f"{path} is not a MixturePDF file: lacks {missing}")
                w, c, s, b = f["weights"], f["centres"], float(f["sigma"]), f["bounds"]
                ids = f["ids"] if "ids" in f.files else None
        return cls(w, centres=c, sigma=s, bounds=tuple(b), ids=ids)

    def to_qp(self, kind: str = "interp", n_grid: int | None = None):
        """The PDFs as a :class:`qp.Ensemble` (needs the optional ``qp-prob`` package).

        Parameters
        ----------
        kind : {"interp", "mixmod"}
            ``"interp"`` (default, faithful): the exact density tabulated on a regular grid
            over the support and linearly interpolated by qp (zero outside the support, so the
            truncation is kept; a leading zero-density node 1.6e-9 below 0 cancels qp's
            half-cell of mass before the first node). ``"mixmod"``: qp's Gaussian mixture with the same centres,
            width and weights; exact in the interior but qp does not truncate, so the end
            components leak up to half their mass outside [0, 1.6].
        n_grid : int, optional
            Points of the ``"interp"`` grid. Default: spacing sigma/8 (3461 points for the
            paper's grid), for which qp's CDF agrees with :meth:`cdf` to ~5e-4.

        Returns
        -------
        qp.Ensemble
        """
        try:
            import qp
        except ImportError as err:  # pragma: no cover - qp-prob is an optional extra
            raise ImportError("to_qp needs the optional qp-prob package: pip install "
                              "'photozsom[qp]'") from err
        g = self.grid
        if kind == "interp":
            if n_grid is None:
                n_grid = math.ceil((g.hi - g.lo) / (g.sigma / 8.0)) + 1
            if n_grid < 2:
                raise ValueError(f"n_grid must be >= 2, got {n_grid}")
            x = np.linspace(g.lo, g.hi, int(n_grid))
            # qp.interp counts half a cell (0.5 p(x0) dx) before the first node; a leading node
            # of zero density 1e-9 below the support makes that term vanish.
            x = np.r_[g.lo - 1e-9 * (g.hi - g.lo), x]
            y = self.evaluate(x)
            y[:, 0] = 0.0
            return qp.Ensemble(qp.interp, data={"xvals": x, "yvals": y})
        if kind == "mixmod":
            w = self._rows(slice(None))
            shape = w.shape
            return qp.Ensemble(qp.mixmod, data={
                "means": np.broadcast_to(g.centres, shape).copy(),
                "stds": np.full(shape, g.sigma), "weights": w})
        raise ValueError(f"kind must be 'interp' or 'mixmod', got {kind!r}")


def check_redshifts(z: Any, name: str, n: int | None = None,
                    grid: MixtureGrid | None = None) -> np.ndarray:
    """Spectroscopic redshifts as a float64 vector, checked once for every model.

    Raises one ``ValueError`` naming ``name`` when ``z`` is not 1-D with ``n`` values (one
    redshift per row), is empty, or holds non-finite values or values outside the support
    ``[grid.lo, grid.hi]`` of the mixture (when ``grid`` is given).
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1 or z.size == 0 or (n is not None and z.shape[0] != n):
        want = f"{n}" if n is not None else "at least 1"
        raise ValueError(f"{name} must be 1-D with one redshift per row ({want}), got shape "
                         f"{z.shape}")
    bad = ~np.isfinite(z)
    if grid is not None:
        bad |= (z < grid.lo) | (z > grid.hi)
    if bad.any():
        idx = np.flatnonzero(bad)
        where = "" if grid is None else f" or outside [{grid.lo:g}, {grid.hi:g}] (the support)"
        raise ValueError(f"{name} has {idx.size} non-finite redshift(s){where} (first rows "
                         f"{idx[:5].tolist()}, values {z[idx[:3]].tolist()}); drop those "
                         f"galaxies before training")
    return z
