"""Catalogue fluxes to extinction-corrected asinh magnitudes, colours and feature matrices.

Fluxes are DR10 nanomaggies. Magnitudes are Lupton et al. (1999) asinh magnitudes,

.. math:: m = 22.5 - 2.5\\log_{10} b - \\frac{2.5}{\\ln 10}\\,\\mathrm{asinh}\\left(\\frac{f}{2b}\\right),

which equal the AB magnitude ``22.5 - 2.5 log10(f)`` for ``f >> b`` and stay finite for
zero and negative fluxes (normal for faint galaxies in noisy bands). The softening ``b``
of each band is close to the 1-sigma flux noise of a DR10 galaxy at the survey depth
(:data:`SOFTENING`).

Two feature matrices are defined here so that training data and a user's catalogue go
through exactly the same transform:

- :func:`som_features` — the SOM's colours and one magnitude (south, with i-band):
  ``g-r, r-i, i-z, z-W1, W1-W2, r``.
- :func:`catalog_features` — the random-forest baseline's features after Zhou et al.
  (2021, 2023): ``r, g-r, r-z, z-W1, W1-W2, log10 SHAPE_R, axis ratio q, Sersic n``
  (no i-band, so north and south share it, as in the DR9/DR10 photo-z catalogue).

:class:`Standardizer` stores the mean and standard deviation of a training matrix and is
saved inside each model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from photozsom.schema import BANDS, as_dataframe, validate

__all__ = [
    "CATALOG_FEATURES",
    "NORTH_SOM_FEATURES",
    "SHAPE_COLUMNS",
    "SOFTENING",
    "SOM_FEATURES",
    "Standardizer",
    "asinh_mag",
    "auto_features",
    "available_bands",
    "catalog_features",
    "check_matrix",
    "dereddened_flux",
    "feature_bands",
    "feature_matrix",
    "magnitudes",
    "resolve_features",
    "som_features",
]

#: Asinh softening parameter ``b`` per band, nanomaggies: about the 1-sigma flux error of a
#: small galaxy at the DR10 median depth (5-sigma galaxy depths g 24.0, r 23.4, i 23.0,
#: z 22.5, W1 21.0, W2 20.3 AB; Dey et al. 2019, DR10 documentation).
SOFTENING: dict[str, float] = {
    "G": 0.050,
    "R": 0.087,
    "I": 0.126,
    "Z": 0.200,
    "W1": 0.796,
    "W2": 1.514,
}

#: Names of the columns of :func:`som_features`.
SOM_FEATURES: list[str] = ["g-r", "r-i", "i-z", "z-W1", "W1-W2", "r"]
#: The SOM features of the northern (BASS/MzLS) footprint, which has no i-band.
NORTH_SOM_FEATURES: list[str] = ["g-r", "r-z", "z-W1", "W1-W2", "r"]
#: Names of the columns of :func:`catalog_features`.
CATALOG_FEATURES: list[str] = ["r", "g-r", "r-z", "z-W1", "W1-W2", "log10_shape_r", "axis_ratio", "sersic"]

#: The Tractor shape columns behind the shape features (``log10_shape_r``, ``axis_ratio``, ``sersic``).
SHAPE_COLUMNS: tuple[str, ...] = ("SHAPE_R", "SHAPE_E1", "SHAPE_E2", "SERSIC")
#: Share of a catalogue's rows that must measure a band (or have finite shape columns) for
#: the "auto" recipe to use it.
AUTO_MIN_FRACTION = 0.8

_LN10 = np.log(10.0)


def asinh_mag(flux: np.ndarray, softening: float) -> np.ndarray:
    """Asinh (luptitude) AB magnitude of a flux in nanomaggies.

    Parameters
    ----------
    flux : ndarray
        Flux, nanomaggies; zero and negative values are valid.
    softening : float
        Softening ``b``, nanomaggies (> 0).

    Returns
    -------
    ndarray
        Magnitude, AB mag; NaN where ``flux`` is NaN.

    Examples
    --------
    >>> float(np.round(asinh_mag(np.array([100.0]), 0.05)[0], 4))  # bright: = 22.5 - 2.5 log10(100)
    17.5
    """
    if softening <= 0:
        raise ValueError(f"softening must be > 0 nanomaggies, got {softening}")
    flux = np.asarray(flux, dtype=np.float64)
    return 22.5 - 2.5 * np.log10(softening) - (2.5 / _LN10) * np.arcsinh(flux / (2.0 * softening))


def dereddened_flux(catalog: pd.DataFrame, band: str) -> np.ndarray:
    """Flux corrected for Galactic extinction: ``FLUX_<b> / MW_TRANSMISSION_<b>`` (nanomaggies)."""
    b = band.upper()
    flux = catalog[f"FLUX_{b}"].to_numpy(dtype=np.float64)
    mw = catalog[f"MW_TRANSMISSION_{b}"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mw > 0, flux / mw, np.nan)


def magnitudes(catalog, bands=("G", "R", "I", "Z", "W1", "W2"), *, name: str = "catalogue") -> pd.DataFrame:
    """Extinction-corrected asinh magnitudes of ``bands``.

    Parameters
    ----------
    catalog : DataFrame or astropy Table
        DR10 columns ``FLUX_<b>`` (nanomaggies) and, if the catalogue has them,
        ``MW_TRANSMISSION_<b>`` (a catalogue with no ``MW_TRANSMISSION_*`` column at all is
        taken as already corrected for Galactic extinction, as published catalogues that give
        dereddened fluxes; one that has some needs them for every band used) and
        ``FLUX_IVAR_<b>`` (a band with ``FLUX_IVAR <= 0`` is unmeasured; without the column a
        finite flux counts as measured).
    bands : sequence of str
        Bands to convert.

    Returns
    -------
    DataFrame
        One column per band (lower case: ``g, r, i, z, w1, w2``), AB mag, in input order.
        A band with no data (``FLUX_IVAR == 0`` or NaN flux, e.g. the i-band in the north)
        is NaN.
    """
    present = {str(c).upper() for c in as_dataframe(catalog).columns}
    cols, has_ivar = [], {}
    dereddened = not any(c.startswith("MW_TRANSMISSION_") for c in present)
    for b in bands:
        b = b.upper()
        cols.append(f"FLUX_{b}")
        # catalogues without inverse variances (published, already-dereddened fluxes) count a
        # finite flux as measured; without MW_TRANSMISSION the flux is taken as dereddened
        has_ivar[b] = f"FLUX_IVAR_{b}" in present
        if has_ivar[b]:
            cols.append(f"FLUX_IVAR_{b}")
        if not dereddened:
            cols.append(f"MW_TRANSMISSION_{b}")
    df = validate(catalog, cols, name=name, allow_nan=cols)
    out = {}
    for b in bands:
        b = b.upper()
        f = df[f"FLUX_{b}"].to_numpy(dtype=np.float64) if dereddened else dereddened_flux(df, b)
        m = asinh_mag(f, SOFTENING[b])
        if has_ivar[b]:
            ivar = df[f"FLUX_IVAR_{b}"].to_numpy(dtype=np.float64)
            m[~(ivar > 0)] = np.nan
        out[b.lower()] = m
    return pd.DataFrame(out, index=df.index)


_SHAPE_FEATURES = {"log10_shape_r", "axis_ratio", "sersic"}
_BAND_NAMES = {b.lower(): b for b in SOFTENING}


def feature_bands(names) -> list[str]:
    """The DR10 bands (``G``, ``R``, ...) that the named features need, in first-use order."""
    bands: list[str] = []
    for f in names:
        if f in _SHAPE_FEATURES:
            continue
        parts = f.split("-")
        if len(parts) > 2 or any(p.lower() not in _BAND_NAMES for p in parts):
            raise ValueError(
                f"unknown feature {f!r}: use a band (g, r, i, z, W1, W2), a colour 'g-r', or "
                f"one of {sorted(_SHAPE_FEATURES)}"
            )
        bands += [_BAND_NAMES[p.lower()] for p in parts if _BAND_NAMES[p.lower()] not in bands]
    return bands


def available_bands(catalog, *, min_fraction: float = AUTO_MIN_FRACTION) -> list[str]:
    """The bands of :data:`BANDS` that at least ``min_fraction`` of the rows measure.

    A band counts when the catalogue has its ``FLUX_<b>`` column and the row's
    extinction-corrected asinh magnitude is finite (finite flux, ``FLUX_IVAR > 0`` and
    ``MW_TRANSMISSION > 0`` where those columns exist), see :func:`magnitudes`.

    Parameters
    ----------
    catalog : DataFrame or astropy Table
        DR10-style columns, fluxes in nanomaggies.
    min_fraction : float
        Share of rows, in (0, 1], that must measure a band.

    Returns
    -------
    list of str
        Upper-case band names in wavelength order, e.g. ``["G", "R", "Z", "W1", "W2"]``.

    Examples
    --------
    >>> df = pd.DataFrame({"FLUX_G": [1.0, 2.0], "FLUX_R": [2.0, np.nan], "FLUX_Z": [3.0, 4.0]})
    >>> available_bands(df), available_bands(df, min_fraction=0.5)
    (['G', 'Z'], ['G', 'R', 'Z'])
    """
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must lie in (0, 1], got {min_fraction}")
    df = as_dataframe(catalog)
    if len(df) == 0:
        raise ValueError("catalogue is empty (0 rows): no band to choose features from")
    have = [b for b in BANDS if f"FLUX_{b}" in df.columns]
    if not have:
        return []
    mags = magnitudes(df, have)
    frac = np.isfinite(mags.to_numpy()).mean(axis=0)
    return [b for b, f in zip(have, frac, strict=True) if f >= min_fraction]


def auto_features(catalog, kind: str = "som", *, min_fraction: float = AUTO_MIN_FRACTION) -> list[str]:
    """A feature recipe from the bands (and shape columns) a catalogue has.

    The rule, the same for every catalogue: take the bands of :data:`BANDS` measured in
    at least ``min_fraction`` of the rows (:func:`available_bands`); the recipe is the
    r-band magnitude (the first optical band measured, if r is not) and the colours of
    neighbouring bands. ``kind="som"`` ends with the magnitude, as :data:`SOM_FEATURES`
    (``g-r, r-i, i-z, z-W1, W1-W2, r`` for DR10 south; :data:`NORTH_SOM_FEATURES` for a
    catalogue without i-band); ``kind="catalog"`` starts with it and adds the shape features
    (``log10_shape_r, axis_ratio, sersic``) when the catalogue has :data:`SHAPE_COLUMNS`
    finite in at least ``min_fraction`` of the rows.

    Parameters
    ----------
    catalog : DataFrame or astropy Table
        DR10-style columns ``FLUX_<b>`` (nanomaggies), optionally ``FLUX_IVAR_<b>``,
        ``MW_TRANSMISSION_<b>`` and the shape columns.
    kind : {"som", "catalog"}
        The SOM's colours or the photo-z model's catalogue features.
    min_fraction : float
        See :func:`available_bands`.

    Returns
    -------
    list of str
        Feature names for :func:`feature_matrix`.

    Raises
    ------
    ValueError
        When fewer than two bands are measured (no colour), naming the columns found.

    Examples
    --------
    >>> df = pd.DataFrame({f"FLUX_{b}": [1.0, 2.0] for b in "GRIZ"})
    >>> auto_features(df), auto_features(df, "catalog")
    (['g-r', 'r-i', 'i-z', 'r'], ['r', 'g-r', 'r-i', 'i-z'])
    """
    if kind not in ("som", "catalog"):
        raise ValueError(f'kind must be "som" or "catalog", got {kind!r}')
    bands = available_bands(catalog, min_fraction=min_fraction)
    optical = [b for b in bands if not b.startswith("W")]
    if len(bands) < 2 or not optical:
        cols = sorted(c for c in as_dataframe(catalog).columns if str(c).startswith("FLUX_"))
        raise ValueError(
            f"features='auto' needs at least two measured bands, one of them optical "
            f"(FLUX_G, FLUX_R, FLUX_I, FLUX_Z, FLUX_W1, FLUX_W2 in nanomaggies, measured in "
            f">= {min_fraction:.0%} of rows); found {bands or 'none'} among {cols}. Pass "
            f"features=[...] (e.g. ['g-r', 'r-z', 'r']) to choose them yourself"
        )
    label = {b: b if b.startswith("W") else b.lower() for b in bands}
    mag = "r" if "R" in optical else label[optical[0]]
    colours = [f"{label[a]}-{label[b]}" for a, b in itertools.pairwise(bands)]
    if kind == "som":
        return colours + [mag]
    names = [mag] + colours
    df = as_dataframe(catalog)
    if set(SHAPE_COLUMNS) <= set(df.columns):
        finite = np.isfinite(df[list(SHAPE_COLUMNS)].to_numpy(dtype=np.float64)).all(axis=1)
        if finite.mean() >= min_fraction:
            names += ["log10_shape_r", "axis_ratio", "sersic"]
    return names


def resolve_features(features, catalog, kind: str = "som", *,
                     min_fraction: float = AUTO_MIN_FRACTION) -> list[str]:
    """``features`` as a list of names: ``"auto"`` becomes :func:`auto_features` of ``catalog``."""
    if isinstance(features, str):
        if features != "auto":
            raise ValueError(f'features must be "auto" or a list of feature names such as '
                             f'{SOM_FEATURES}, got {features!r}')
        return auto_features(catalog, kind, min_fraction=min_fraction)
    names = list(features)
    feature_bands(names)  # checks every name
    if not names:
        raise ValueError('features is empty: pass "auto" or a list of feature names')
    return names


def feature_matrix(catalog, names, *, name: str = "catalogue") -> tuple[np.ndarray, np.ndarray]:
    """Features named as a recipe, computed from DR10 columns.

    Parameters
    ----------
    catalog : DataFrame or astropy Table
        DR10 columns (fluxes in nanomaggies) for the bands the names use, and ``SHAPE_R``,
        ``SHAPE_E1``, ``SHAPE_E2``, ``SERSIC`` for the shape features.
    names : sequence of str
        Each a band (``"r"``: its extinction-corrected asinh magnitude, AB), a colour
        (``"g-r"``), ``"log10_shape_r"`` (half-light radius, arcsec, floored at 0.01),
        ``"axis_ratio"`` (``(1-|e|)/(1+|e|)``) or ``"sersic"``. Models store these names and
        recompute exactly the same matrix from any catalogue.

    Returns
    -------
    X : ndarray, shape (N, len(names)), float32
        NaN where a band has no measurement (``FLUX_IVAR <= 0``, e.g. no i-band in the north).
    valid : ndarray, shape (N,), bool
        True where every feature is finite.
    """
    names = list(names)
    bands = feature_bands(names)
    m = magnitudes(catalog, bands, name=name) if bands else None
    cols = []
    shape = None
    if _SHAPE_FEATURES & set(names):
        shape_cols = ["SHAPE_R", "SHAPE_E1", "SHAPE_E2", "SERSIC"]
        shape = validate(catalog, shape_cols, name=name, allow_nan=shape_cols)
    for f in names:
        if f == "log10_shape_r":
            cols.append(np.log10(np.clip(shape["SHAPE_R"].to_numpy(dtype=np.float64), 0.01, None)))
        elif f == "axis_ratio":
            e = np.hypot(shape["SHAPE_E1"].to_numpy(dtype=np.float64),
                         shape["SHAPE_E2"].to_numpy(dtype=np.float64))
            e = np.clip(e, 0.0, 0.99)
            cols.append((1.0 - e) / (1.0 + e))
        elif f == "sersic":
            cols.append(shape["SERSIC"].to_numpy(dtype=np.float64))
        else:
            parts = [p.lower() for p in f.split("-")]
            v = m[parts[0]].to_numpy()
            cols.append(v - m[parts[1]].to_numpy() if len(parts) == 2 else v)
    X = np.column_stack(cols).astype(np.float32)
    return X, np.isfinite(X).all(axis=1)


def som_features(catalog, *, name: str = "catalogue") -> tuple[np.ndarray, np.ndarray]:
    """The SOM's feature matrix: ``g-r, r-i, i-z, z-W1, W1-W2, r`` (AB mag).

    Parameters
    ----------
    catalog : DataFrame or astropy Table
        DR10 columns for g, r, i, z, W1, W2.

    Returns
    -------
    X : ndarray, shape (N, 6), float32
        Features in :data:`SOM_FEATURES` order; rows with a missing band hold NaN.
    valid : ndarray, shape (N,), bool
        True where every feature is finite (false e.g. for northern rows without i-band).
    """
    return feature_matrix(catalog, SOM_FEATURES, name=name)


def catalog_features(catalog, *, name: str = "catalogue") -> tuple[np.ndarray, np.ndarray]:
    """The random-forest baseline's features (Zhou et al. 2021, 2023 recipe).

    Columns (:data:`CATALOG_FEATURES`): r-band magnitude, colours ``g-r, r-z, z-W1, W1-W2``
    (no i-band, so north and south are treated alike), ``log10 SHAPE_R`` (arcsec, with
    point sources at 0.01 arcsec), the axis ratio ``q = (1-|e|)/(1+|e|)`` from
    ``SHAPE_E1, SHAPE_E2``, and the Sersic index.

    Returns
    -------
    X : ndarray, shape (N, 8), float32
    valid : ndarray, shape (N,), bool
        True where every feature is finite.
    """
    return feature_matrix(catalog, CATALOG_FEATURES, name=name)


def check_matrix(X, name: str = "X", n_features: int | None = None, *,
                 what: str = "the model was trained on {n}",
                 nonfinite_hint: str = "select rows with the `valid` mask that "
                                       "features.som_features / catalog_features return") -> np.ndarray:
    """Check a feature matrix ``[N, D]`` before a model sees it; return it as float32.

    One galaxy per row. Raises :class:`ValueError` naming ``name`` when the array is not 2-D,
    is empty, has ``D != n_features`` (unless ``n_features`` is None; ``what`` words that
    case, ``{n}`` standing for ``n_features``), is not numeric, or
    holds NaN/inf (the message lists the first offending rows and ``nonfinite_hint``).
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array [N, D] (one row per galaxy), "
                         f"got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features per galaxy but {what.format(n=n_features)}; "
                         "pass the same feature columns as in training")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{name} has NaN/inf in {bad.size} row(s) (first {bad[:5].tolist()}): "
                         f"{nonfinite_hint}")
    return np.ascontiguousarray(X, dtype=np.float32)


@dataclass
class Standardizer:
    """Per-feature standardisation ``(X - mean) / std`` with statistics kept for reuse.

    Attributes
    ----------
    mean, std : ndarray, shape (D,)
        Set by :meth:`fit`; features of zero spread get ``std = 1``.
    """

    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    names: list[str] = field(default_factory=list)

    def fit(self, X: np.ndarray, names: list[str] | None = None) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(f"Standardizer.fit needs a non-empty [N, D] array, got shape {X.shape}")
        finite = np.isfinite(X).all(axis=1)
        if not finite.any():
            raise ValueError("Standardizer.fit: no row has all features finite")
        self.mean = X[finite].mean(axis=0)
        std = X[finite].std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        self.names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("Standardizer is not fitted: call fit(X) first")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise ValueError(f"expected [N, {len(self.mean)}] features {self.names}, got shape {X.shape}")
        return ((X - self.mean) / self.std).astype(np.float32)

    def inverse_transform(self, Xs: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("Standardizer is not fitted: call fit(X) first")
        return np.asarray(Xs, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist(), "names": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(None if d["mean"] is None else np.asarray(d["mean"]),
                   None if d["std"] is None else np.asarray(d["std"]), list(d.get("names", [])))
