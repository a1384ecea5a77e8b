"""The catalogue baseline: a random-forest photo-z after Zhou et al. (2021, 2023).

The DESI Legacy Surveys photometric redshifts (Zhou et al. 2021, MNRAS 501, 3309; updated
for DR9/DR10 in Zhou et al. 2023) come from a random forest regression on catalogue
quantities. :class:`RandomForestPhotoZ` follows that recipe with scikit-learn's
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

PDF: the forest's ``T`` per-tree predictions ``t_i`` are turned into a :class:`MixturePDF`
on the MDN's grid, so PIT, PCO and CRPS are computed exactly as for the MDN. Each ``t_i``
is shared between its two neighbouring centres in proportion to proximity (linear binning,
Wand 1994: the weighted centre equals ``t_i``), giving weights
``w_k = (1/T) sum_i max(0, 1 - |t_i - mu_k| / Delta)``. The mixture is then a binned kernel
density estimate of the tree predictions with the component width (sigma = 0.0037) as
Gaussian kernel; ``bandwidth`` adds extra Gaussian smoothing. The PDF mean equals the
forest's prediction (the mean of the trees) unless some trees predict within ~3 sigma of a
support edge, where truncation shifts the component means by up to 0.8 sigma.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from photozsom.features import check_matrix
from photozsom.pdf import MixtureGrid, MixturePDF, default_grid, get_grid

__all__ = ["RandomForestPhotoZ"]

_FORMAT = "photozsom.RandomForestPhotoZ"


def _check_X(X, name: str, n_features: int | None) -> np.ndarray:
    return check_matrix(X, name, n_features, what="the forest was trained on {n}",
                        nonfinite_hint="a missing band or shape; select rows with the `valid` "
                                       "mask of features.catalog_features")


class RandomForestPhotoZ:
    """Random-forest photo-z with mixture PDFs on the MDN's redshift grid.

    Parameters
    ----------
    n_estimators : int
        Number of trees (each gives one redshift per galaxy).
    seed : int
        ``random_state`` of the forest (bootstrap samples and feature draws).
    min_samples_leaf : int
        Minimum training galaxies per leaf. The default 1 grows full trees, whose
        predictions scatter like neighbouring training redshifts, so the spread of the
        trees approximates P(z|X).
    max_features : float, int or str
        Features tried per split (scikit-learn's meaning; 1.0 = all).
    bandwidth : float
        Extra Gaussian smoothing of the tree-prediction PDF, redshift (0 = none; the
        components' own sigma = 0.0037 is always there).
    n_jobs : int, optional
        Parallel jobs for fitting and prediction (scikit-learn's meaning).
    grid : MixtureGrid, optional
        Redshift grid of the PDFs; default the MDN's.
    **forest_kwargs
        Passed to :class:`sklearn.ensemble.RandomForestRegressor`.

    Examples
    --------
    >>> from photozsom.features import catalog_features               # doctest: +SKIP
    >>> X, ok = catalog_features(spec)                                # doctest: +SKIP
    >>> rf = RandomForestPhotoZ(seed=0).fit(X[ok], spec["Z"][ok])     # doctest: +SKIP
    >>> pdf = rf.predict(X_test); z_phot = rf.predict_point(X_test)   # doctest: +SKIP
    """

    def __init__(self, n_estimators: int = 100, *, seed: int = 0, min_samples_leaf: int = 1,
                 max_features: float | str = 1.0, bandwidth: float = 0.0,
                 n_jobs: int | None = None, grid: MixtureGrid | None = None,
                 **forest_kwargs: Any) -> None:
        if int(n_estimators) < 1:
            raise ValueError(f"n_estimators must be >= 1, got {n_estimators}")
        if not float(bandwidth) >= 0:
            raise ValueError(f"bandwidth must be >= 0 (redshift), got {bandwidth}")
        self.n_estimators = int(n_estimators)
        self.seed = int(seed)
        self.min_samples_leaf = int(min_samples_leaf)
        self.max_features = max_features
        self.bandwidth = float(bandwidth)
        self.n_jobs = n_jobs
        self.grid = grid or default_grid()
        self.forest_kwargs = dict(forest_kwargs)
        self.forest_ = None
        self.n_features_: int | None = None

    def __repr__(self) -> str:
        return (f"RandomForestPhotoZ(n_estimators={self.n_estimators}, seed={self.seed}, "
                f"fitted={self.forest_ is not None})")

    def fit(self, X: np.ndarray, z: np.ndarray) -> RandomForestPhotoZ:
        """Train on catalogue features ``X`` (N, D) and spectroscopic redshifts ``z`` (N,).

        Redshifts must lie in the PDF support [0, 1.6].
        """
        from sklearn.ensemble import RandomForestRegressor

        X = _check_X(X, "X", None)
        z = np.asarray(z, dtype=np.float64)
        if z.shape != (X.shape[0],):
            raise ValueError(f"z must have shape ({X.shape[0]},) (one redshift per row of X), got "
                             f"{z.shape}")
        g = self.grid
        bad = ~np.isfinite(z) | (z < g.lo) | (z > g.hi)
        if bad.any():
            idx = np.flatnonzero(bad)
            raise ValueError(f"z has {idx.size} redshift(s) outside [{g.lo:g}, {g.hi:g}] or "
                             f"non-finite (first indices {idx[:5].tolist()}); drop them first")
        self.forest_ = RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features, random_state=self.seed, n_jobs=self.n_jobs,
            **self.forest_kwargs).fit(X, z)
        self.n_features_ = X.shape[1]
        return self

    def _need_fit(self) -> None:
        if self.forest_ is None:
            raise RuntimeError("the forest is not trained: call fit(X, z) or load(path) first")

    def predict_trees(self, X: np.ndarray) -> np.ndarray:
        """Per-tree redshift predictions, shape (N, n_estimators)."""
        self._need_fit()
        X = _check_X(X, "X", self.n_features_)
        out = np.empty((X.shape[0], len(self.forest_.estimators_)))
        for i, tree in enumerate(self.forest_.estimators_):   # loop over trees, not galaxies
            out[:, i] = tree.predict(X, check_input=False)
        return out

    def pdf_from_trees(self, t: np.ndarray) -> MixturePDF:
        """Linear binning of per-tree predictions ``t`` (N, T) onto the mixture components."""
        g = self.grid
        t = np.clip(np.asarray(t, dtype=np.float64), g.lo, g.hi)
        n, T = t.shape
        k = np.clip(np.searchsorted(g.centres, t, side="right") - 1, 0, g.K - 2)
        f = np.clip((t - g.centres[k]) / (g.centres[k + 1] - g.centres[k]), 0.0, 1.0)
        rows = np.repeat(np.arange(n) * g.K, T).reshape(n, T)
        w = (np.bincount((rows + k).ravel(), (1.0 - f).ravel() / T, minlength=n * g.K)
             + np.bincount((rows + k + 1).ravel(), f.ravel() / T, minlength=n * g.K))
        w = w.reshape(n, g.K)
        if self.bandwidth > 0:
            from scipy.ndimage import gaussian_filter1d

            step = float(np.mean(np.diff(g.centres)))
            w = gaussian_filter1d(w, self.bandwidth / step, axis=1, mode="constant")
            w /= w.sum(axis=1, keepdims=True)
        return MixturePDF(w, centres=g.centres, sigma=g.sigma, bounds=(g.lo, g.hi))

    def predict(self, X: np.ndarray, *, chunk: int = 65536) -> MixturePDF:
        """P(z|X) on the MDN's grid from the per-tree predictions.

        Parameters
        ----------
        X : ndarray, shape (N, D)
            Catalogue features (finite), in the training column order.
        chunk : int
            Galaxies per block (bounds the (chunk, n_estimators) working array).

        Returns
        -------
        MixturePDF
        """
        self._need_fit()
        X = _check_X(X, "X", self.n_features_)
        parts = [self.pdf_from_trees(self.predict_trees(X[s:s + chunk]))
                 for s in range(0, X.shape[0], int(chunk))]
        return MixturePDF.concatenate(parts)

    def predict_point(self, X: np.ndarray, kind: str = "mean") -> np.ndarray:
        """Point redshift, shape (N,).

        Parameters
        ----------
        kind : {"mean", "median"}
            ``"mean"``: the forest's prediction (scikit-learn's average of the trees; equal
            to the PDF mean). ``"median"``: the median of the tree predictions (as the Legacy
            Surveys' ``Z_PHOT_MEDIAN``).
        """
        self._need_fit()
        if kind == "mean":
            return self.forest_.predict(_check_X(X, "X", self.n_features_)).astype(np.float64)
        if kind == "median":
            return np.median(self.predict_trees(X), axis=1)
        raise ValueError(f"kind must be 'mean' or 'median', got {kind!r}")

    def save(self, path: str | os.PathLike, compress: int = 3) -> Path:
        """Write the trained forest and its settings with :func:`joblib.dump`."""
        import joblib

        self._need_fit()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        g = self.grid
        joblib.dump({"format": _FORMAT, "version": 1, "forest": self.forest_,
                     "n_features": self.n_features_,
                     "params": {"n_estimators": self.n_estimators, "seed": self.seed,
                                "min_samples_leaf": self.min_samples_leaf,
                                "max_features": self.max_features, "bandwidth": self.bandwidth,
                                "n_jobs": self.n_jobs, **self.forest_kwargs},
                     "grid": {"centres": g.centres, "sigma": g.sigma, "bounds": (g.lo, g.hi)}},
                    path, compress=compress)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RandomForestPhotoZ:
        """Read a model written by :meth:`save` (a joblib pickle: load only files you trust)."""
        import joblib

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no RandomForestPhotoZ file at {path}")
        blob = joblib.load(path)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a RandomForestPhotoZ file (written by .save)")
        gd = blob["grid"]
        obj = cls(**blob["params"], grid=get_grid(gd["centres"], gd["sigma"], gd["bounds"]))
        obj.forest_ = blob["forest"]
        obj.n_features_ = blob["n_features"]
        return obj
