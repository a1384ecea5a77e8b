"""Point and probabilistic photo-z metrics (the paper's *Metrics for Performance*).

Definitions follow the paper (after Schmidt et al. 2020, 2023). With ``z_pred`` the point
estimate and ``z_true`` the spectroscopic redshift of galaxy *i*, the scaled residual is

.. math:: \\Delta z_i = \\frac{\\hat z_i - z_i}{1 + z_i},

and

- **MAD** ``= 1.4826 * median(|Δz|)`` — the paper's definition (no median subtracted); the
  factor makes it equal the standard deviation for Gaussian residuals of zero mean.
- **NMAD** ``= 1.4826 * median(|Δz - median(Δz)|)`` — the normalised median absolute
  deviation used by RAIL and most photo-z papers; equal to MAD when the residuals have
  zero median.
- **bias** ``= mean(Δz)``.
- **η** (catastrophic-outlier fraction) ``= mean(|Δz| > 0.15)``, a fraction in [0, 1]
  (the paper quotes it in per cent).
- **R²**, the coefficient of determination of ``z_pred`` as a predictor of ``z_true``.
- **PIT** ``= CDF_i(z_i)``, the predictive CDF at the truth; uniform for a calibrated model.
- **PCO** (probabilistic catastrophic outliers): the fraction of galaxies whose true
  redshift falls outside the central 99 % interval of their PDF, i.e. PIT below 0.005 or
  above 0.995; 1 % for a calibrated model.
- **CRPS**, the continuous ranked probability score (redshift units), averaged.
- **PIT calibration**: Kolmogorov-Smirnov and Cramér-von Mises distances of the PIT values
  from the uniform distribution (:func:`scipy.stats.kstest`, :func:`scipy.stats.cramervonmises`).

Every function taking two redshifts has scikit-learn's signature
``(z_true, z_pred, *, sample_weight=None)`` and goes through one input checker
(:func:`check_redshifts`), which raises :class:`ValueError` for empty, mismatched or
non-finite input rather than returning a silent NaN; Δz is computed in one place.

Examples
--------
>>> import numpy as np
>>> from photozsom import metrics
>>> z_true = np.array([0.1, 0.2, 0.3, 0.4])
>>> z_pred = np.array([0.1, 0.2, 0.3, 1.0])
>>> float(metrics.outlier_fraction(z_true, z_pred))
0.25
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "MAD_SCALE",
    "OUTLIER_THRESHOLD",
    "bias",
    "check_redshifts",
    "mad",
    "nmad",
    "outlier_fraction",
    "pco_fraction",
    "pco_mask",
    "pit_stats",
    "point_metrics",
    "r2",
    "scaled_residuals",
    "summary",
    "weighted_median",
]

#: 1 / Phi^-1(3/4): makes 1.4826 * median(|x|) equal sigma for x ~ N(0, sigma^2).
MAD_SCALE: float = 1.4826
#: |Δz| above which a galaxy is a catastrophic outlier (the paper's 0.15).
OUTLIER_THRESHOLD: float = 0.15


def _as_1d(x, name: str, *, allow_empty: bool = False) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per galaxy), got shape {a.shape}")
    if a.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: a metric needs at least one galaxy")
    if not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a))
        raise ValueError(
            f"{name} has {bad.size} non-finite value(s) (first indices {bad[:5].tolist()}); "
            f"drop or mask those galaxies before computing metrics"
        )
    return a


def check_redshifts(
    z_true, z_pred, sample_weight=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The one input checker of every metric taking two redshifts.

    Returns float64 ``z_true``, ``z_pred`` and the weights (None or non-negative, finite,
    with a positive sum), raising :class:`ValueError` for empty, mismatched or non-finite
    input and for ``z_true <= -1``.
    """
    zt = _as_1d(z_true, "z_true")
    zp = _as_1d(z_pred, "z_pred")
    if zp.shape != zt.shape:
        raise ValueError(f"z_true has {zt.size} values but z_pred has {zp.size}; they must match")
    if np.any(zt <= -1):
        raise ValueError("z_true must be > -1 (the residual is scaled by 1 + z_true)")
    w = None
    if sample_weight is not None:
        w = _as_1d(sample_weight, "sample_weight")
        if w.shape != zt.shape:
            raise ValueError(f"sample_weight has {w.size} values for {zt.size} galaxies")
        if np.any(w < 0) or not w.sum() > 0:
            raise ValueError("sample_weight must be non-negative with a positive sum")
    return zt, zp, w


def weighted_median(x: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """Median of ``x`` with weights; equal weights give exactly :func:`numpy.median`.

    The weighted median is the value where the cumulative weight of the sorted values
    crosses half the total; when it lands exactly on a boundary between two values, their
    mean (as numpy does for an even count).
    """
    x = np.asarray(x, dtype=np.float64)
    if sample_weight is None:
        return float(np.median(x))
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], np.asarray(sample_weight, dtype=np.float64)[order]
    keep = ws > 0
    xs, ws = xs[keep], ws[keep]
    cw = np.cumsum(ws)
    half = 0.5 * cw[-1]
    i = int(np.searchsorted(cw, half, side="left"))
    if np.isclose(cw[i], half, rtol=1e-12, atol=0.0) and i + 1 < xs.size:
        return float(0.5 * (xs[i] + xs[i + 1]))
    return float(xs[i])


def _residuals(zt: np.ndarray, zp: np.ndarray) -> np.ndarray:
    return (zp - zt) / (1.0 + zt)


def scaled_residuals(z_true: np.ndarray, z_pred: np.ndarray) -> np.ndarray:
    """Scaled residuals ``Δz = (z_pred - z_true) / (1 + z_true)``.

    Parameters
    ----------
    z_true, z_pred : array_like, shape (N,)
        True (spectroscopic) redshift and point estimate.

    Returns
    -------
    ndarray, shape (N,), float64
        Dimensionless scaled residuals; every other metric is computed from these.
    """
    zt, zp, _ = check_redshifts(z_true, z_pred)
    return _residuals(zt, zp)


def mad(z_true: np.ndarray, z_pred: np.ndarray, *, sample_weight: np.ndarray | None = None) -> float:
    """The paper's scatter: ``1.4826 * median(|Δz|)`` (no median subtracted).

    Parameters
    ----------
    z_true, z_pred : array_like, shape (N,)
    sample_weight : array_like, shape (N,), optional
        Non-negative weights (a weighted median).

    Returns
    -------
    float
        Dimensionless; equals sigma for residuals ``Δz ~ N(0, sigma^2)``.

    See Also
    --------
    nmad : the variant with the median residual subtracted first.
    """
    zt, zp, w = check_redshifts(z_true, z_pred, sample_weight)
    return MAD_SCALE * weighted_median(np.abs(_residuals(zt, zp)), w)


def nmad(z_true: np.ndarray, z_pred: np.ndarray, *, sample_weight: np.ndarray | None = None) -> float:
    """Normalised median absolute deviation ``1.4826 * median(|Δz - median(Δz)|)``.

    This is the scatter RAIL and most photo-z papers call NMAD or sigma_NMAD; it is
    insensitive to a constant bias, unlike :func:`mad`.
    """
    zt, zp, w = check_redshifts(z_true, z_pred, sample_weight)
    dz = _residuals(zt, zp)
    return MAD_SCALE * weighted_median(np.abs(dz - weighted_median(dz, w)), w)


def bias(z_true: np.ndarray, z_pred: np.ndarray, *, sample_weight: np.ndarray | None = None) -> float:
    """Mean scaled residual ``mean(Δz)`` (dimensionless; weighted mean with weights)."""
    zt, zp, w = check_redshifts(z_true, z_pred, sample_weight)
    return float(np.average(_residuals(zt, zp), weights=w))


def outlier_fraction(
    z_true: np.ndarray,
    z_pred: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    threshold: float = OUTLIER_THRESHOLD,
) -> float:
    """Catastrophic-outlier fraction η: share of galaxies with ``|Δz| > threshold``.

    Parameters
    ----------
    z_true, z_pred : array_like, shape (N,)
    sample_weight : array_like, shape (N,), optional
    threshold : float
        Outlier threshold on ``|Δz|`` (the paper: 0.15).

    Returns
    -------
    float
        Fraction in [0, 1] (multiply by 100 for the paper's per cent).
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    zt, zp, w = check_redshifts(z_true, z_pred, sample_weight)
    return float(np.average(np.abs(_residuals(zt, zp)) > threshold, weights=w))


def r2(z_true: np.ndarray, z_pred: np.ndarray, *, sample_weight: np.ndarray | None = None) -> float:
    """Coefficient of determination ``1 - Σ(z_pred - z)² / Σ(z - mean z)²`` on redshift.

    Returns
    -------
    float
        At most 1; NaN when every ``z_true`` is equal (the denominator vanishes and R² is
        undefined).
    """
    zt, zp, w = check_redshifts(z_true, z_pred, sample_weight)
    w = np.ones_like(zt) if w is None else w
    ss_tot = float(np.sum(w * (zt - np.average(zt, weights=w)) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum(w * (zp - zt) ** 2)) / ss_tot


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1) (e.g. 0.99 for the central 99%), got {level}")
    return float(level)


def pco_mask(pit_values: np.ndarray, level: float = 0.99) -> np.ndarray:
    """Which galaxies are probabilistic catastrophic outliers.

    Parameters
    ----------
    pit_values : array_like, shape (N,)
        PIT values ``CDF_i(z_true_i)`` in [0, 1].
    level : float
        Central credible level (the paper: 0.99).

    Returns
    -------
    ndarray of bool, shape (N,)
        True where the truth lies outside the central ``level`` interval, i.e.
        ``PIT < (1 - level)/2`` or ``PIT > 1 - (1 - level)/2``.
    """
    level = _check_level(level)
    pit = _as_1d(pit_values, "pit_values", allow_empty=True)
    if np.any((pit < 0) | (pit > 1)):
        raise ValueError("pit_values must lie in [0, 1]; pass CDF values at the true redshift")
    tail = round((1.0 - level) / 2.0, 12)  # 0.005 exactly for level=0.99, not 0.005000000000000004
    return (pit < tail) | (pit > 1.0 - tail)


def pco_fraction(pit_values: np.ndarray, level: float = 0.99) -> float:
    """Fraction of probabilistic catastrophic outliers (PCO).

    The share of galaxies whose true redshift falls outside the central ``level``
    interval of their PDF: ``PIT < 0.005`` or ``PIT > 0.995`` for ``level=0.99``. A
    calibrated model gives ``1 - level``.

    Parameters
    ----------
    pit_values : array_like, shape (N,)
        PIT values in [0, 1].
    level : float
        Central credible level.

    Returns
    -------
    float
        Fraction in [0, 1].
    """
    mask = pco_mask(pit_values, level)
    if mask.size == 0:
        raise ValueError("pit_values is empty: a metric needs at least one galaxy")
    return float(mask.mean())


def pit_stats(pit_values: np.ndarray) -> dict[str, float]:
    """Distance of the PIT distribution from uniform.

    Parameters
    ----------
    pit_values : array_like, shape (N,), N >= 2
        PIT values in [0, 1].

    Returns
    -------
    dict
        ``ks`` and ``ks_p``: Kolmogorov-Smirnov statistic and p-value
        (:func:`scipy.stats.kstest` against U(0, 1)); ``cvm`` and ``cvm_p``: Cramér-von Mises
        statistic and p-value (:func:`scipy.stats.cramervonmises`).
    """
    pit = _as_1d(pit_values, "pit_values")
    if pit.size < 2:
        raise ValueError("pit_stats needs at least 2 PIT values")
    if np.any((pit < 0) | (pit > 1)):
        raise ValueError("pit_values must lie in [0, 1]")
    ks = stats.kstest(pit, "uniform")
    cvm = stats.cramervonmises(pit, "uniform")
    return {
        "ks": float(ks.statistic),
        "ks_p": float(ks.pvalue),
        "cvm": float(cvm.statistic),
        "cvm_p": float(cvm.pvalue),
    }


def point_metrics(
    z_true: np.ndarray,
    z_pred: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    outlier_threshold: float = OUTLIER_THRESHOLD,
) -> dict[str, float]:
    """All point-estimate metrics of Table 1.

    Returns
    -------
    dict
        ``n`` (galaxies), ``mad``, ``nmad``, ``bias``, ``eta`` (fraction, not per cent), ``r2``.
    """
    kw = {"sample_weight": sample_weight}
    return {
        "n": int(np.size(z_true)),
        "mad": mad(z_true, z_pred, **kw),
        "nmad": nmad(z_true, z_pred, **kw),
        "bias": bias(z_true, z_pred, **kw),
        "eta": outlier_fraction(z_true, z_pred, threshold=outlier_threshold, **kw),
        "r2": r2(z_true, z_pred, **kw),
    }


def summary(
    pdf: Any,
    z_true: np.ndarray,
    z_pred: np.ndarray | None = None,
    *,
    level: float = 0.99,
    outlier_threshold: float = OUTLIER_THRESHOLD,
) -> dict[str, float]:
    """Every metric of the paper for one model on one sample.

    Parameters
    ----------
    pdf : MixturePDF or None
        Predicted redshift PDFs (anything with ``.mean()``, ``.pit(z)`` and ``.crps(z)``, e.g.
        :class:`photozsom.pdf.MixturePDF`), one per galaxy. ``None`` for a point-estimate-only
        model: the probabilistic entries are then NaN.
    z_true : array_like, shape (N,)
        Spectroscopic redshifts.
    z_pred : array_like, shape (N,), optional
        Point estimate. Default: ``pdf.mean()``, the expectation of ``P(z|X)``, which is the
        point estimate the paper uses (its Sec. 3: ẑ = ⟨P(z|X)⟩). Pass ``pdf.median()`` or
        ``pdf.mode()`` to score another choice.
    level : float
        Central credible level for PCO (the paper: 0.99).
    outlier_threshold : float
        η threshold on ``|Δz|``.

    Returns
    -------
    dict
        ``n, mad, nmad, bias, eta, r2`` (as :func:`point_metrics`), ``pco`` (fraction),
        ``crps_mean`` (redshift units), ``pit_mean``, ``ks, ks_p, cvm, cvm_p``
        (:func:`pit_stats`).
    """
    if pdf is None and z_pred is None:
        raise ValueError("summary needs a pdf or a z_pred point estimate (got neither)")
    zt = _as_1d(z_true, "z_true")
    if pdf is not None and len(pdf) != zt.size:
        raise ValueError(f"pdf holds {len(pdf)} galaxies but z_true has {zt.size}")
    zp = np.asarray(pdf.mean(), dtype=np.float64) if z_pred is None else z_pred
    out: dict[str, float] = dict(point_metrics(zt, zp, outlier_threshold=outlier_threshold))
    nan = float("nan")
    if pdf is None:
        out.update(pco=nan, crps_mean=nan, pit_mean=nan, ks=nan, ks_p=nan, cvm=nan, cvm_p=nan)
        return out
    pit = np.clip(np.asarray(pdf.pit(zt), dtype=np.float64), 0.0, 1.0)
    out["pco"] = pco_fraction(pit, level)
    out["crps_mean"] = float(np.mean(np.asarray(pdf.crps(zt), dtype=np.float64)))
    out["pit_mean"] = float(pit.mean())
    if pit.size >= 2:
        out.update(pit_stats(pit))
    else:
        out.update(ks=nan, ks_p=nan, cvm=nan, cvm_p=nan)
    return out
