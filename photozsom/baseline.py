"""The catalogue baselines: a random-forest photo-z after Zhou et al., and the published one.

**The forest.** The DESI Legacy Surveys photometric redshifts (Zhou et al. 2021, MNRAS 501,
3309; updated for DR9/DR10 in Zhou et al. 2023) come from a random forest regression on
catalogue quantities. :class:`RandomForestPhotoZ` follows that recipe with scikit-learn's
:class:`~sklearn.ensemble.RandomForestRegressor` on the features of
:func:`photozsom.features.catalog_features`:

- r-band magnitude and the colours g-r, r-z, z-W1, W1-W2 (extinction-corrected asinh
  magnitudes): the optical+WISE colours carry the 4000 A break and the 1.6 micron bump
  through 0 < z < 1.5; no i-band, because the northern imaging (BASS/MzLS) has none and
  the Legacy Surveys photo-z treats both hemispheres with one model;
- ``log10`` half-light radius, axis ratio and Sersic index: the shape information that
  separates compact high-redshift galaxies from extended low-redshift ones at fixed colour.

Zhou et al. also train each tree on photometry perturbed by its errors, so the spread of
the trees includes the photometric noise; this class takes a plain feature matrix and does
not perturb it.

**Its P(z).** A histogram of the ``T`` tree predictions gives every tree a mass ``1/T``
(0.005 for 200 trees, exactly the tail that defines a probabilistic catastrophic outlier),
so its PIT tails and PCO measure the number of trees, not the forest. Instead the tree
predictions ``t_1..t_T`` of a galaxy are smoothed with a Gaussian kernel whose width grows
with the trees' spread and with ``1 + z``:

.. math::

    p(z) \\propto \\frac{1}{T} \\sum_i \\frac{1}{h}\\,\\phi\\!\\left(\\frac{z - t_i}{h}\\right)
    \\ \\text{on}\\ [0, 1.6], \\qquad h = a\\,s + b\\,(1 + m),

with ``m`` and ``s`` the mean and standard deviation of the tree predictions, ``a`` (the
spread scale, >= 0) and ``b`` (the floor, in ``1 + z`` units, > 0) fitted to minimise the
mean CRPS on galaxies the forest was not trained on (:meth:`RandomForestPhotoZ.fit`). The
density is truncated to the support ``[0, 1.6]`` and renormalised. It is returned as a
:class:`~photozsom.pdf.MixturePDF` on the MDN's grid: the weight of component ``k`` is the
smoothed density's mass in that component's cell (the interval between the midpoints to
its neighbours; ``[0, mu_1/2]`` and ``[mu_198 + (mu_199-mu_198)/2, 1.6]`` at the ends), so
PIT, PCO and CRPS are computed exactly as for the MDN. Two numerical steps, both far below
the grid's resolution: the tree predictions are linearly binned onto a grid four times
finer than the components (Wand 1994; each tree's mean is kept, its variance grows by at
most ``(0.002)^2 / 4``), and each galaxy's width ``h`` is rounded to a geometric ladder of
ratio 1.01 (within 0.5%).

**The published catalogue.** :func:`published_photoz_pdf` turns the DR10 photo-z columns
(``Z_PHOT_MEDIAN, Z_PHOT_L68, Z_PHOT_U68, Z_PHOT_L95, Z_PHOT_U95``) into a P(z) on the same
grid, so Table 1 scores the Legacy Surveys' own photo-z with PIT and PCO like the others.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import ndtr, ndtri

from photozsom.artifacts import load_artifact, save_artifact
from photozsom.features import check_matrix
from photozsom.pdf import MixtureGrid, MixturePDF, check_redshifts, default_grid, get_grid

__all__ = [
    "PUBLISHED_QUANTILES",
    "RandomForestPhotoZ",
    "published_photoz_pdf",
    "published_photoz_valid",
]

_KIND = "random_forest"
_VERSION = 1
#: Fine bins per component spacing for the binned kernel estimate (even: cell edges on it).
_FINE = 4
#: Ratio between neighbouring kernel widths of the ladder each width is rounded to.
_LADDER = 1.01
#: Smallest kernel width, redshift (a delta function on the fine grid).
_H_MIN = 1e-4
#: Galaxies per block in prediction (bounds the (block, fine grid) working array).
_BLOCK = 8192
#: Bounds of the fitted floor ``b`` (1 + z units) and spread scale ``a``.
_FLOOR_BOUNDS = (1e-3, 0.3)
_SCALE_BOUNDS = (0.0, 3.0)
#: The node arrays stored per tree (enough to reproduce every prediction exactly).
_NODE_FIELDS = {"left_child": np.int32, "right_child": np.int32, "feature": np.int32,
                "threshold": np.float64}


def _check_X(X, name: str, n_features: int | None) -> np.ndarray:
    return check_matrix(X, name, n_features, what="the forest was trained on {n}",
                        nonfinite_hint="a missing band or shape; select rows with the `valid` "
                                       "mask of features.catalog_features")


def _uniform_grid(grid: MixtureGrid) -> float:
    """Component spacing of ``grid``; refuse grids the cell construction does not cover."""
    step = (grid.hi - grid.lo) / (grid.K - 1)
    if not np.allclose(grid.centres, grid.lo + step * np.arange(grid.K), rtol=0, atol=1e-12 * step):
        raise ValueError("RandomForestPhotoZ needs evenly spaced centres from the lower to the "
                         "upper bound (numpy.linspace(lo, hi, K)), like the default grid")
    return step


class _Smoother:
    """Cell masses of Gaussian-smoothed tree predictions on one :class:`MixtureGrid`."""

    def __init__(self, grid: MixtureGrid) -> None:
        self.grid = grid
        self.delta = _uniform_grid(grid) / _FINE
        K = grid.K
        self.F = _FINE * (K - 1) + 1                           # fine nodes lo + j * delta
        edges = np.concatenate([[0], _FINE * np.arange(1, K) - _FINE // 2, [self.F - 1]])
        # Phi((edge_k - u_j) / h) depends on the integer offset edge_k - j only
        self.index = edges[None, :] - np.arange(self.F)[:, None] + (self.F - 1)   # (F, K+1)
        self.offsets = np.arange(-(self.F - 1), self.F) * self.delta
        self.cache: dict[int, np.ndarray] = {}

    def fine_counts(self, t: np.ndarray) -> sparse.csr_matrix:
        """Linear binning of tree predictions ``t`` (n, T) onto the fine grid: (n, F), rows sum to 1."""
        n, T = t.shape
        pos = (np.clip(t, self.grid.lo, self.grid.hi) - self.grid.lo) / self.delta
        j = np.clip(np.floor(pos).astype(np.int64), 0, self.F - 2)
        f = np.clip(pos - j, 0.0, 1.0)
        rows = np.repeat(np.arange(n, dtype=np.int64), 2 * T)
        cols = np.concatenate([j, j + 1], axis=1).ravel()
        vals = (np.concatenate([1.0 - f, f], axis=1) / T).ravel()
        return sparse.coo_matrix((vals, (rows, cols)), shape=(n, self.F)).tocsr()  # sums repeats

    @staticmethod
    def levels(h: np.ndarray) -> np.ndarray:
        return np.rint(np.log(np.maximum(h, _H_MIN) / _H_MIN) / math.log(_LADDER)).astype(np.int64)

    def matrix(self, level: int) -> np.ndarray:
        """(F, K): mass in each component cell of a unit Gaussian at each fine node."""
        m = self.cache.get(level)
        if m is None:
            h = _H_MIN * _LADDER ** level
            tab = ndtr(self.offsets / h)
            m = np.diff(tab[self.index], axis=1)
            if len(self.cache) >= 32:
                self.cache.clear()
            self.cache[level] = m
        return m

    def weights(self, c: sparse.csr_matrix, h: np.ndarray) -> np.ndarray:
        """Component weights (n, K) from fine counts ``c`` (n, F) and kernel widths ``h`` (n,)."""
        lev = self.levels(h)
        out = np.empty((c.shape[0], self.grid.K))
        order = np.argsort(lev, kind="stable")
        cuts = np.flatnonzero(np.diff(lev[order])) + 1
        for rows in np.split(order, cuts):
            out[rows] = c[rows] @ self.matrix(int(lev[rows[0]]))
        # truncation to the support: the mass inside [lo, hi] is renormalised to 1
        out /= out.sum(axis=1, keepdims=True)
        return out


def _tree_arrays(forest) -> dict[str, np.ndarray]:
    """Concatenated node arrays of a fitted scikit-learn forest (children index within a tree)."""
    states = [est.tree_.__getstate__() for est in forest.estimators_]
    out = {f"nodes/{k}": np.concatenate([s["nodes"][k] for s in states]).astype(dt)
           for k, dt in _NODE_FIELDS.items()}
    out["values"] = np.concatenate([s["values"][:, 0, 0] for s in states]).astype(np.float64)
    out["node_offsets"] = np.cumsum([0] + [int(s["node_count"]) for s in states]).astype(np.int64)
    out["max_depth"] = np.array([int(s["max_depth"]) for s in states], dtype=np.int64)
    return out


class RandomForestPhotoZ:
    """Random-forest photo-z with kernel-smoothed mixture PDFs on the MDN's redshift grid.

    The P(z) of a galaxy is its ``n_estimators`` tree predictions smoothed by a Gaussian of
    width ``h = spread_scale * s + floor * (1 + m)`` (``m, s``: mean and standard deviation
    of the tree predictions), truncated to [0, 1.6], as cell masses on the fixed grid (see
    the module docstring for the construction).

    Parameters
    ----------
    n_estimators : int
        Number of trees (each gives one redshift per galaxy).
    seed : int
        ``random_state`` of the forest (bootstrap samples and feature draws) and of the
        internal validation split.
    min_samples_leaf : int
        Minimum training galaxies per leaf. The default 1 grows full trees, whose
        predictions scatter like neighbouring training redshifts.
    max_features : float, int or str
        Features tried per split (scikit-learn's meaning; 1.0 = all).
    spread_scale, floor : float, optional
        Fix the kernel width's parameters ``a`` (>= 0, multiple of the tree spread) and ``b``
        (>= 0, ``1 + z`` units) instead of fitting them. ``spread_scale=0, floor=0`` gives
        the raw histogram of the trees (each linearly binned onto the two nearest centres).
    val_fraction : float
        Share of the training rows held out to fit the width when :meth:`fit` gets no
        validation set.
    max_width_galaxies : int
        At most this many validation galaxies (a seeded random subset) enter the width fit.
    n_jobs : int, optional
        Parallel jobs for fitting the forest (scikit-learn's meaning).
    grid : MixtureGrid, optional
        Redshift grid of the PDFs (evenly spaced centres from bound to bound); default the
        MDN's.
    **forest_kwargs
        Passed to :class:`sklearn.ensemble.RandomForestRegressor`.

    Attributes
    ----------
    spread_scale_, floor_ : float
        The kernel-width parameters used by :meth:`predict`. When fitted: the minimum of
        the mean validation CRPS (a scan of the floor, then Nelder-Mead on both) within
        ``0 <= spread_scale <= 3`` and ``0.001 <= floor <= 0.3`` (a floor below the grid's
        component width 0.0037 changes little).
    width_fit_ : dict
        How they were chosen: ``source`` ("validation", "internal split" or "fixed"),
        ``n_galaxies``, and the mean CRPS and PCO of the fitted and of the raw-histogram
        PDFs on those galaxies.
    n_features_ : int
    feature_names : list of str or None
        Column names, when :meth:`fit` got a DataFrame or ``feature_names``.

    Examples
    --------
    >>> from photozsom.features import catalog_features                    # doctest: +SKIP
    >>> X, ok = catalog_features(spec)                                     # doctest: +SKIP
    >>> rf = RandomForestPhotoZ(seed=0).fit(X[tr], z[tr], X[va], z[va])     # doctest: +SKIP
    >>> pdf = rf.predict(X_test); z_phot = rf.predict_point(X_test)        # doctest: +SKIP
    >>> rf.save("run/baseline/random_forest"); RandomForestPhotoZ.load(...)  # doctest: +SKIP
    """

    def __init__(self, n_estimators: int = 200, seed: int = 0, *, min_samples_leaf: int = 1,
                 max_features: float | str = 1.0, spread_scale: float | None = None,
                 floor: float | None = None, val_fraction: float = 0.2,
                 max_width_galaxies: int = 5_000, n_jobs: int | None = None,
                 grid: MixtureGrid | None = None, **forest_kwargs: Any) -> None:
        self.n_estimators = n_estimators
        self.seed = seed
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.spread_scale = spread_scale
        self.floor = floor
        self.val_fraction = val_fraction
        self.max_width_galaxies = max_width_galaxies
        self.n_jobs = n_jobs
        self.grid = grid
        self.forest_kwargs = dict(forest_kwargs)
        self.trees_: dict[str, np.ndarray] | None = None

    def __repr__(self) -> str:
        fitted = self.trees_ is not None
        extra = (f", spread_scale_={self.spread_scale_:.3g}, floor_={self.floor_:.3g}"
                 if fitted else "")
        return (f"RandomForestPhotoZ(n_estimators={self.n_estimators}, seed={self.seed}, "
                f"fitted={fitted}{extra})")

    @property
    def feature_names(self) -> list[str] | None:
        return getattr(self, "feature_names_", None)

    # -- fitting ------------------------------------------------------------------------------
    def _grid(self) -> MixtureGrid:
        return self.grid or default_grid()

    def _check_params(self) -> None:
        if int(self.n_estimators) < 1:
            raise ValueError(f"n_estimators must be >= 1, got {self.n_estimators}")
        for name in ("spread_scale", "floor"):
            v = getattr(self, name)
            if v is not None and not float(v) >= 0:
                raise ValueError(f"{name} must be >= 0 or None (fitted), got {v}")
        if (self.spread_scale is None) != (self.floor is None):
            raise ValueError("give both spread_scale and floor (a fixed width) or neither (fitted)")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if int(self.max_width_galaxies) < 10:
            raise ValueError(f"max_width_galaxies must be >= 10, got {self.max_width_galaxies}")
        _uniform_grid(self._grid())

    def _features(self, X, name: str, fitting: bool = False) -> np.ndarray:
        cols = getattr(X, "columns", None)
        if cols is not None and not fitting and self.feature_names is not None:
            missing = [c for c in self.feature_names if c not in cols]
            if missing:
                raise ValueError(f"{name} lacks the feature column(s) {missing} the forest was "
                                 f"trained on ({self.feature_names})")
            X = X[self.feature_names]
        if cols is not None:
            X = X.to_numpy()
        return _check_X(X, name, None if fitting else self.n_features_)

    def _train_forest(self, X: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(
            n_estimators=int(self.n_estimators), min_samples_leaf=int(self.min_samples_leaf),
            max_features=self.max_features, random_state=int(self.seed), n_jobs=self.n_jobs,
            **self.forest_kwargs).fit(X, z)
        return _tree_arrays(forest)

    def fit(self, X, z, X_val=None, z_val=None, *,
            feature_names: list[str] | None = None) -> RandomForestPhotoZ:
        """Train the forest and fit the kernel width of its P(z).

        Parameters
        ----------
        X : ndarray or DataFrame, shape (N, D)
            Catalogue features (finite), e.g. :func:`photozsom.features.catalog_features`.
            A DataFrame's column names are kept and used to select columns in :meth:`predict`.
        z : ndarray, shape (N,)
            Spectroscopic redshifts in the PDF support [0, 1.6].
        X_val, z_val : optional
            Validation galaxies (not used to grow the trees) on which the width parameters
            minimise the mean CRPS. Without them, ``val_fraction`` of the training rows (a
            seeded random subset) is held out, a forest with the same settings is grown on
            the rest and the width fitted on the held-out rows; the final forest is then
            grown on all rows. (That smaller forest spreads slightly more than the final one,
            so the width fitted this way is slightly conservative.)
        feature_names : list of str, optional
            Names of the D columns (taken from ``X`` when it is a DataFrame).

        Returns
        -------
        self
        """
        self._check_params()
        grid = self._grid()
        names = feature_names if feature_names is not None else getattr(X, "columns", None)
        X = self._features(X, "X", fitting=True)
        z = check_redshifts(z, "z", X.shape[0], grid)
        if names is not None:
            names = [str(c) for c in names]
            if len(names) != X.shape[1]:
                raise ValueError(f"feature_names has {len(names)} names for {X.shape[1]} columns")
        if (X_val is None) != (z_val is None):
            raise ValueError("give both X_val and z_val, or neither (then the width is fitted "
                             "on an internal split)")
        self.feature_names_ = names
        self.n_features_ = X.shape[1]
        fixed = self.floor is not None
        if X_val is not None:
            Xv = self._features(X_val, "X_val", fitting=True)
            if Xv.shape[1] != X.shape[1]:
                raise ValueError(f"X_val has {Xv.shape[1]} columns but X has {X.shape[1]}")
            zv = check_redshifts(z_val, "z_val", Xv.shape[0], grid)
            self.trees_ = self._train_forest(X, z)
            source, t_val = "validation", None
        elif not fixed:
            rng = np.random.default_rng(int(self.seed))
            n_hold = max(1, round(float(self.val_fraction) * X.shape[0]))
            hold = np.zeros(X.shape[0], bool)
            hold[rng.choice(X.shape[0], n_hold, replace=False)] = True
            self.trees_ = self._train_forest(X[~hold], z[~hold])
            Xv, zv, source = X[hold], z[hold], "internal split"
            t_val = self._sub_trees(Xv, zv)
            self.trees_ = self._train_forest(X, z)
        else:
            self.trees_ = self._train_forest(X, z)
            Xv = zv = None
            source, t_val = "fixed", None
        if fixed:
            self.spread_scale_, self.floor_ = float(self.spread_scale), float(self.floor)
            self.width_fit_ = {"source": "fixed"}
            if Xv is not None:
                self.width_fit_.update(self._scores(self.predict_trees(Xv), zv))
                self.width_fit_["source"] = "fixed"
            return self
        if t_val is None:
            t_val = self._sub_trees(Xv, zv)
        t_sub, z_sub = t_val
        self.spread_scale_, self.floor_ = self._fit_width(t_sub, z_sub)
        self.width_fit_ = {"source": source, **self._scores(t_sub, z_sub)}
        return self

    def _sub_trees(self, Xv: np.ndarray, zv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tree predictions of (at most ``max_width_galaxies``) validation galaxies."""
        n = Xv.shape[0]
        keep = np.arange(n)
        if n > int(self.max_width_galaxies):
            rng = np.random.default_rng(int(self.seed) + 1)
            keep = np.sort(rng.choice(n, int(self.max_width_galaxies), replace=False))
        return self.predict_trees(Xv[keep]), zv[keep]

    def _scores(self, t: np.ndarray, z: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {"n_galaxies": len(z)}
        for label, pdf in (("fitted", self.pdf_from_trees(t)),
                           ("histogram", self.pdf_from_trees(t, spread_scale=0.0, floor=0.0))):
            pit = pdf.pit(z)
            out[f"crps_{label}"] = float(np.mean(pdf.crps(z)))
            out[f"pco_{label}"] = float(np.mean((pit < 0.005) | (pit > 0.995)))
        return out

    def _fit_width(self, t: np.ndarray, z: np.ndarray) -> tuple[float, float]:
        """``(spread_scale, floor)`` minimising the mean CRPS of tree predictions ``t`` at ``z``."""
        from scipy.optimize import minimize

        grid = self._grid()
        sm = _Smoother(grid)
        c = sm.fine_counts(t)
        m, s = t.mean(axis=1), t.std(axis=1)
        lo_b, hi_b = (math.log10(v) for v in _FLOOR_BOUNDS)

        def unpack(theta):
            b = 10.0 ** float(np.clip(theta[0], lo_b, hi_b))
            a = float(np.clip(abs(theta[1]), *_SCALE_BOUNDS))
            return a, b

        def loss(theta):
            a, b = unpack(theta)
            w = sm.weights(c, a * s + b * (1.0 + m))
            pdf = MixturePDF(w, centres=grid.centres, sigma=grid.sigma, bounds=(grid.lo, grid.hi))
            return float(np.mean(pdf.crps(z)))

        # coarse start on the floor alone, then both parameters
        starts = np.linspace(-3.0, -1.0, 9)
        best = starts[int(np.argmin([loss((b, 0.0)) for b in starts]))]
        simplex = np.array([[best, 0.0], [best + 0.25, 0.0], [best, 0.3]])
        res = minimize(loss, simplex[0], method="Nelder-Mead",
                       options={"initial_simplex": simplex, "xatol": 0.02, "fatol": 1e-7,
                                "maxfev": 40})
        return unpack(res.x)

    # -- prediction ---------------------------------------------------------------------------
    def _need_fit(self) -> None:
        if self.trees_ is None:
            raise RuntimeError("the forest is not trained: call fit(X, z) or load(path) first")

    def predict_trees(self, X) -> np.ndarray:
        """Per-tree redshift predictions, shape (N, n_estimators).

        A vectorised walk of every (galaxy, tree) pair down the stored node arrays, with
        scikit-learn's rule (go left when ``x[feature] <= threshold``, features as float32):
        identical to each scikit-learn tree's ``predict``.
        """
        self._need_fit()
        X = self._features(X, "X")
        tr = self.trees_
        left, right = tr["nodes/left_child"], tr["nodes/right_child"]
        feat, thr, val = tr["nodes/feature"], tr["nodes/threshold"], tr["values"]
        off = tr["node_offsets"]
        roots = off[:-1]
        T, D = roots.size, X.shape[1]
        out = np.empty((X.shape[0], T))
        xf = X.ravel()
        step = max(1, 2_000_000 // T)
        for s in range(0, X.shape[0], step):
            n = min(step, X.shape[0] - s)
            node = np.tile(roots, n)                            # global node index per pair
            base = np.repeat(np.arange(s, s + n, dtype=np.int64) * D, T)
            tree_off = np.tile(roots, n)
            act = np.arange(n * T)
            while act.size:
                nd = node[act]
                lc = left[nd]
                inner = lc >= 0
                act, nd, lc = act[inner], nd[inner], lc[inner]
                go_left = xf[base[act] + feat[nd]] <= thr[nd]
                node[act] = tree_off[act] + np.where(go_left, lc, right[nd])
            out[s:s + n] = val[node].reshape(n, T)
        return out

    def pdf_from_trees(self, t: np.ndarray, *, spread_scale: float | None = None,
                       floor: float | None = None) -> MixturePDF:
        """P(z) from per-tree predictions ``t`` (N, T), redshift.

        Parameters
        ----------
        t : ndarray, shape (N, T)
        spread_scale, floor : float, optional
            Kernel-width parameters; default the fitted ones. Both 0: the raw histogram,
            each tree's ``1/T`` shared between its two nearest centres in proportion to
            proximity (linear binning), with the components' own width as the only smoothing.
        """
        grid = self._grid()
        a = getattr(self, "spread_scale_", None) if spread_scale is None else float(spread_scale)
        b = getattr(self, "floor_", None) if floor is None else float(floor)
        if a is None or b is None:
            raise RuntimeError("no kernel width yet: call fit first or pass spread_scale and floor")
        t = np.clip(np.asarray(t, dtype=np.float64), grid.lo, grid.hi)
        if t.ndim != 2:
            raise ValueError(f"t must be (N, T) tree predictions, got shape {t.shape}")
        n, T = t.shape
        if a == 0 and b == 0:
            k = np.clip(np.searchsorted(grid.centres, t, side="right") - 1, 0, grid.K - 2)
            f = np.clip((t - grid.centres[k]) / (grid.centres[k + 1] - grid.centres[k]), 0.0, 1.0)
            rows = (np.arange(n, dtype=np.int64) * grid.K)[:, None]
            w = (np.bincount((rows + k).ravel(), ((1.0 - f) / T).ravel(), minlength=n * grid.K)
                 + np.bincount((rows + k + 1).ravel(), (f / T).ravel(), minlength=n * grid.K))
            w = w.reshape(n, grid.K)
        else:
            sm = _Smoother(grid)
            w = np.empty((n, grid.K))
            for s in range(0, n, _BLOCK):
                tb = t[s:s + _BLOCK]
                h = a * tb.std(axis=1) + b * (1.0 + tb.mean(axis=1))
                w[s:s + _BLOCK] = sm.weights(sm.fine_counts(tb), h)
        return MixturePDF(w, centres=grid.centres, sigma=grid.sigma, bounds=(grid.lo, grid.hi))

    def predict(self, X, *, raw: bool = False) -> MixturePDF:
        """P(z|X) on the grid: the smoothed tree predictions (see the class docstring).

        Parameters
        ----------
        X : ndarray or DataFrame, shape (N, D)
            Catalogue features (finite), in the training column order (a DataFrame is
            selected by the training column names).
        raw : bool
            Return the raw histogram of the trees instead (``spread_scale=0, floor=0`` in
            :meth:`pdf_from_trees`): the forest's P(z) before the kernel width fitted on the
            validation CRPS, i.e. before that post-hoc calibration.

        Returns
        -------
        MixturePDF
            One row per galaxy.
        """
        self._need_fit()
        X = self._features(X, "X")
        width = {"spread_scale": 0.0, "floor": 0.0} if raw else {}
        parts = [self.pdf_from_trees(self.predict_trees(X[s:s + _BLOCK]), **width)
                 for s in range(0, X.shape[0], _BLOCK)]
        return MixturePDF.concatenate(parts)

    def predict_point(self, X, kind: str = "mean") -> np.ndarray:
        """Point redshift, shape (N,).

        Parameters
        ----------
        kind : {"mean", "median"}
            ``"mean"``: the forest's regression (the average of the trees, as
            scikit-learn's ``RandomForestRegressor.predict``). ``"median"``: the median of
            the tree predictions (as the Legacy Surveys' ``Z_PHOT_MEDIAN``).
        """
        if kind not in ("mean", "median"):
            raise ValueError(f"kind must be 'mean' or 'median', got {kind!r}")
        t = self.predict_trees(X)
        return t.mean(axis=1) if kind == "mean" else np.median(t, axis=1)

    # -- files ---------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the trained forest as an artifact directory (no pickle).

        ``arrays.npz`` holds every tree's node arrays concatenated (``nodes/left_child``,
        ``nodes/right_child``: children within the tree, -1 at leaves; ``nodes/feature``;
        ``nodes/threshold``), the node values (``values``), ``node_offsets`` (T+1: where each
        tree starts) and ``max_depth``; ``meta.json`` the settings, fitted width, feature
        names and grid. :meth:`load` reproduces every prediction exactly.
        """
        self._need_fit()
        g = self._grid()
        meta = {
            "params": {"n_estimators": int(self.n_estimators), "seed": int(self.seed),
                       "min_samples_leaf": int(self.min_samples_leaf),
                       "max_features": self.max_features, "spread_scale": self.spread_scale,
                       "floor": self.floor, "val_fraction": float(self.val_fraction),
                       "max_width_galaxies": int(self.max_width_galaxies),
                       "forest_kwargs": self.forest_kwargs},
            "n_features": int(self.n_features_),
            "feature_names": self.feature_names,
            "spread_scale_": self.spread_scale_,
            "floor_": self.floor_,
            "width_fit": self.width_fit_,
            "grid": g.to_dict(),
        }
        return save_artifact(directory, _KIND, self.trees_, meta, version=_VERSION)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RandomForestPhotoZ:
        """Read a forest written by :meth:`save` (arrays read with ``allow_pickle=False``)."""
        arrays, meta = load_artifact(directory, _KIND, versions=(_VERSION,))
        need = ["values", "node_offsets", *(f"nodes/{k}" for k in _NODE_FIELDS)]
        missing = [k for k in need if k not in arrays]
        if missing:
            raise ValueError(f"{directory} lacks the forest arrays {missing}; re-save the model")
        p = dict(meta["params"])
        kw = p.pop("forest_kwargs", {})
        gd = meta["grid"]
        obj = cls(**p, grid=get_grid(np.asarray(gd["centres"]), gd["sigma"], gd["bounds"]), **kw)
        obj.trees_ = {k: arrays[k] for k in [*need, "max_depth"] if k in arrays}
        obj.n_features_ = int(meta["n_features"])
        obj.feature_names_ = meta.get("feature_names")
        obj.spread_scale_, obj.floor_ = float(meta["spread_scale_"]), float(meta["floor_"])
        obj.width_fit_ = meta.get("width_fit", {})
        return obj


# -- the published DR10 photo-z catalogue ----------------------------------------------------------
#: Cumulative probability of each published quantile column (central 68% and 95% intervals).
PUBLISHED_QUANTILES: dict[str, float] = {
    "Z_PHOT_L95": 0.025,
    "Z_PHOT_L68": 0.16,
    "Z_PHOT_MEDIAN": 0.5,
    "Z_PHOT_U68": 0.84,
    "Z_PHOT_U95": 0.975,
}
#: Quantiles may decrease by this much (rounding in the catalogue) before a row is refused.
_ORDER_TOL = 1e-3


def _table_columns(table, names: list[str], what: str) -> np.ndarray:
    """Columns ``names`` of a DataFrame / astropy Table / structured array / mapping, (N, C)."""
    if hasattr(table, "colnames"):
        have = list(table.colnames)
    elif hasattr(table, "columns"):
        have = [str(c) for c in table.columns]
    elif getattr(getattr(table, "dtype", None), "names", None):
        have = list(table.dtype.names)
    elif isinstance(table, Mapping):
        have = [str(k) for k in table]
    else:
        raise ValueError(f"{what}: expected a table (DataFrame, astropy Table, structured array or "
                         f"dict of columns), got {type(table).__name__}")
    upper = {c.upper(): c for c in have}
    missing = [n for n in names if n.upper() not in upper]
    if missing:
        raise ValueError(f"{what} lacks the column(s) {missing}; they are in the DR10 photo-z "
                         "sweep files (Zhou et al.; pz-*.fits beside the sweeps), matched row by "
                         "row to the galaxies")
    cols = [np.asarray(table[upper[n.upper()]], dtype=np.float64).ravel() for n in names]
    return np.column_stack(cols)


def _published_quantiles(table) -> tuple[np.ndarray, np.ndarray]:
    names = list(PUBLISHED_QUANTILES)
    x = _table_columns(table, names, "published_photoz_pdf: the table")
    ok = np.isfinite(x).all(axis=1) & (x > -1.0).all(axis=1) & (np.diff(x, axis=1) >= -_ORDER_TOL).all(axis=1)
    return x, ok


def published_photoz_valid(table) -> np.ndarray:
    """Rows :func:`published_photoz_pdf` can convert, shape (N,), bool.

    False where a quantile is non-finite, holds the catalogue's missing-value code (-99;
    any value below -1 counts) or where ``L95 <= L68 <= MEDIAN <= U68 <= U95`` fails by
    more than 0.001.
    """
    return _published_quantiles(table)[1]


def published_photoz_pdf(table, *, grid: MixtureGrid | None = None) -> MixturePDF:
    """P(z) of the published DR10 photo-z catalogue (Zhou et al.) on the MDN's grid.

    The Legacy Surveys' photo-z files summarise each galaxy's random-forest P(z) by its
    median and the bounds of the central 68% and 95% intervals. The distribution built here
    reproduces those five quantiles: its CDF is

    - piecewise linear through ``(Z_PHOT_L95, 0.025), (Z_PHOT_L68, 0.16),
      (Z_PHOT_MEDIAN, 0.5), (Z_PHOT_U68, 0.84), (Z_PHOT_U95, 0.975)`` (uniform density
      between neighbouring quantiles; coincident quantiles give a point mass);
    - below ``Z_PHOT_L95`` the lower tail of the Gaussian centred on the median whose 2.5%
      quantile is ``Z_PHOT_L95`` (``sigma = (MEDIAN - L95) / 1.96``), above ``Z_PHOT_U95``
      the upper tail of the one whose 97.5% quantile is ``Z_PHOT_U95`` (continuous at both
      joins);

    and component ``k`` gets the mass of the cell between the midpoints to its neighbours,
    the mass below 0 (above 1.6) going to the first (last) component. The component
    *masses* are exact, but each component is a Gaussian of width 0.0037 spread over its
    cell (spacing 0.008), so the mixture's CDF is not the one above at the cell edges: for a
    narrow P(z) (68% interval a few spacings wide) it can be off by several percent at the
    published 16/84% points (0.033 measured on real rows). Quantiles are reproduced to about
    one component spacing. The tails beyond ``L95``/``U95`` are an assumption (the
    catalogue does not publish them), so the PCO (99%) of this reconstruction is a
    projection, not the catalogue's. ``Z_PHOT_MEAN`` and
    ``Z_PHOT_STD`` are not used: the five quantiles fix the distribution, and its mean
    differs from ``Z_PHOT_MEAN`` where the catalogue's P(z) has a shape they do not capture.

    Parameters
    ----------
    table : DataFrame, astropy Table, structured array or dict of columns
        One row per galaxy with ``Z_PHOT_MEDIAN, Z_PHOT_L68, Z_PHOT_U68, Z_PHOT_L95,
        Z_PHOT_U95`` (case-insensitive), redshift.
    grid : MixtureGrid, optional
        Default: the MDN's grid.

    Returns
    -------
    MixturePDF
        One row per table row.

    Raises
    ------
    ValueError
        For a missing column, or rows :func:`published_photoz_valid` rejects (select them
        with that mask first).
    """
    grid = grid or default_grid()
    x, ok = _published_quantiles(table)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        raise ValueError(f"published_photoz_pdf: {bad.size} row(s) have missing (-99, NaN) or "
                         f"disordered photo-z quantiles (first {bad[:5].tolist()}); select rows "
                         "with photozsom.baseline.published_photoz_valid(table)")
    x = np.maximum.accumulate(x, axis=1)
    p = np.array(list(PUBLISHED_QUANTILES.values()))
    z975 = float(ndtri(0.975))
    med = x[:, 2:3]
    edges = 0.5 * (grid.centres[1:] + grid.centres[:-1])          # K - 1 inner cell edges
    out = np.empty((x.shape[0], grid.K))
    for s in range(0, x.shape[0], _BLOCK):
        xs, ms = x[s:s + _BLOCK], med[s:s + _BLOCK]
        e = edges[None, :]
        # piecewise-linear part between L95 and U95: sum of clipped ramps (steps where tied)
        F = np.full((xs.shape[0], edges.size), p[0])
        for j in range(4):
            lo, hi = xs[:, j:j + 1], xs[:, j + 1:j + 2]
            width = hi - lo
            with np.errstate(divide="ignore", invalid="ignore"):
                ramp = np.where(width > 0, np.clip((e - lo) / width, 0.0, 1.0), (e >= hi) * 1.0)
            F += (p[j + 1] - p[j]) * ramp
        s_lo = (ms - xs[:, 0:1]) / z975
        s_hi = (xs[:, 4:5] - ms) / z975
        with np.errstate(divide="ignore", invalid="ignore"):
            tail_lo = np.where(s_lo > 0, ndtr((e - ms) / s_lo), 0.0)
            tail_hi = np.where(s_hi > 0, ndtr((e - ms) / s_hi), 1.0)
        F = np.where(e < xs[:, 0:1], tail_lo, F)
        F = np.where(e >= xs[:, 4:5], np.maximum(tail_hi, F), F)
        F = np.maximum.accumulate(np.clip(F, 0.0, 1.0), axis=1)
        cdf = np.concatenate([np.zeros((F.shape[0], 1)), F, np.ones((F.shape[0], 1))], axis=1)
        out[s:s + _BLOCK] = np.diff(cdf, axis=1)
    return MixturePDF(out, centres=grid.centres, sigma=grid.sigma, bounds=(grid.lo, grid.hi))
