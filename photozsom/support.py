"""Where a model has training data: a stored nearest-neighbour rule in feature space.

A photo-z model extrapolates silently: a galaxy whose colours no training galaxy shares
(nonsense photometry, a population absent from the spectroscopic sample) still gets a
confident P(z). :class:`Support` is the rule a :class:`~photozsom.model.PhotoZModel` stores
at fit time to say so:

1. the training inputs are standardised and projected on their first principal components
   (at most ``n_components``, so 64-dimensional embeddings cost as little as colours);
2. a seeded subsample of at most ``max_points`` training galaxies is kept as the reference;
3. the threshold is the ``quantile`` (default 0.999) of the reference galaxies' distances to
   their nearest *other* reference galaxy, times ``margin``.

A galaxy is inside the support when its nearest reference galaxy is within the threshold:
by construction about ``1 - quantile`` of galaxies drawn like the training set fall outside
(the price of the rule), and photometry unlike any training galaxy (all fluxes negative,
fluxes of 1e30 nanomaggies) falls far outside. Distances use scipy's k-d tree.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> sup = Support(seed=0).fit(rng.normal(size=(5000, 3)))
>>> sup.inside(np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0]])).tolist()
[True, False]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["Support"]


class Support:
    """Nearest-training-galaxy support of a model's inputs.

    Parameters
    ----------
    quantile : float
        Quantile of the reference galaxies' nearest-neighbour distances that sets the
        threshold (in (0, 1]).
    margin : float
        Factor (>= 1) applied to that quantile.
    max_points : int
        Largest reference subsample (memory ``max_points x n_components`` floats).
    n_components : int
        Largest number of principal components kept.
    seed : int
        Seed of the subsample.

    Attributes
    ----------
    mean_, scale_ : ndarray, shape (D,)
        Standardisation of the inputs.
    components_ : ndarray, shape (D, P)
        Principal axes (columns) of the standardised inputs.
    points_ : ndarray, shape (M, P)
        The reference galaxies, projected.
    threshold_ : float
        Distance (standardised, projected units) beyond which a row is outside.
    """

    def __init__(self, quantile: float = 0.999, margin: float = 1.0, max_points: int = 20_000,
                 n_components: int = 8, seed: int = 0) -> None:
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile must lie in (0, 1], got {quantile}")
        if not margin >= 1:
            raise ValueError(f"margin must be >= 1, got {margin}")
        self.quantile = float(quantile)
        self.margin = float(margin)
        self.max_points = int(max_points)
        self.n_components = int(n_components)
        self.seed = int(seed)

    def fit(self, X: Any) -> Support:
        """Learn the rule from the training inputs ``X`` [N, D] (finite; N >= 10)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 10 or not np.isfinite(X).all():
            raise ValueError(f"Support.fit needs a finite [N, D] array with N >= 10, got shape "
                             f"{X.shape}")
        self.mean_ = X.mean(axis=0)
        sd = X.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        Z = (X - self.mean_) / self.scale_
        # principal axes from the covariance (D x D): cheap for any N, deterministic signs
        vals, vecs = np.linalg.eigh(np.cov(Z, rowvar=False).reshape(X.shape[1], X.shape[1]))
        order = np.argsort(vals)[::-1][: min(self.n_components, X.shape[1])]
        vecs = vecs[:, order]
        vecs *= np.where(vecs[np.abs(vecs).argmax(axis=0), np.arange(vecs.shape[1])] < 0, -1, 1)
        self.components_ = vecs
        rng = np.random.default_rng(self.seed)
        keep = np.sort(rng.choice(len(Z), size=min(len(Z), self.max_points), replace=False))
        self.points_ = Z[keep] @ vecs
        d, _ = cKDTree(self.points_).query(self.points_, k=2)
        self.threshold_ = float(self.margin * np.quantile(d[:, 1], self.quantile))
        self._tree = None
        return self

    def _project(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.mean_):
            raise ValueError(f"expected [N, {len(self.mean_)}] inputs, got shape {X.shape}")
        return ((X - self.mean_) / self.scale_) @ self.components_

    def distance(self, X: Any) -> np.ndarray:
        """Distance of each row to its nearest reference galaxy (inf for a non-finite row)."""
        if getattr(self, "_tree", None) is None:
            self._tree = cKDTree(self.points_)
        P = self._project(X)
        out = np.full(len(P), np.inf)
        ok = np.isfinite(P).all(axis=1)
        if ok.any():
            out[ok] = self._tree.query(P[ok], k=1)[0]
        return out

    def inside(self, X: Any) -> np.ndarray:
        """True where a row lies within the training support."""
        return self.distance(X) <= self.threshold_

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as arrays (for :func:`photozsom.artifacts.save_artifact`)."""
        return {"support_mean": self.mean_, "support_scale": self.scale_,
                "support_components": self.components_, "support_points": self.points_,
                "support_threshold": np.array(self.threshold_)}

    def get_params(self) -> dict[str, Any]:
        return {"quantile": self.quantile, "margin": self.margin, "max_points": self.max_points,
                "n_components": self.n_components, "seed": self.seed}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> Support:
        sup = cls(**params)
        sup.mean_, sup.scale_ = arrays["support_mean"], arrays["support_scale"]
        sup.components_, sup.points_ = arrays["support_components"], arrays["support_points"]
        sup.threshold_ = float(arrays["support_threshold"])
        sup._tree = None
        return sup
