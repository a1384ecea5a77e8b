"""A flag scored as a detector, with labelled galaxies weighted to a user's sample.

Pure functions on arrays, shared by the flag's threshold choice and its nested scoring
(:func:`photozsom.workflow.validation.nested_flags`):

- :func:`user_weights`: weight ``f_user(c) / f_labelled(c)`` of each labelled galaxy, so that
  weighted rates are those expected on the user's sample if performance within a SOM cell
  transfers (as :func:`photozsom.evaluation.cells.threshold_curve`);
- :func:`youden`: weighted recall, false-positive rate, Youden's ``J`` and its standard
  error, precision and fraction flagged.

The standard error of ``J`` is the linearised (sandwich) error of the two weighted ratios
``recall = sum(w bad flag) / sum(w bad)`` and ``fpr = sum(w good flag) / sum(w good)``
(galaxies as independent draws, weights fixed): ``var J = n/(n-1) sum_i u_i^2`` with
``u_i = w_i bad_i (flag_i - recall) / sum(w bad) - w_i good_i (flag_i - fpr) / sum(w good)``.
Kish's effective sample size instead assumes the weights unrelated to the outcome, which
fails here because the weight and the flag are both set per cell.
"""

from __future__ import annotations

import numpy as np

__all__ = ["user_weights", "youden"]


def user_weights(cell: np.ndarray, sample_cell: np.ndarray | None, n_cells: int) -> np.ndarray:
    """Weight of each labelled galaxy for the user's cell occupancy, shape (N,).

    Parameters
    ----------
    cell : array_like of int, shape (N,)
        SOM cells of the labelled galaxies (>= 0).
    sample_cell : array_like of int, shape (M,), or None
        Cells of the user's sample (-1: unmapped, ignored). None: every weight 1.
    n_cells : int

    Returns
    -------
    ndarray, shape (N,)
        ``f_user(c) / f_labelled(c)`` (0 in cells the user's sample does not reach).
    """
    cell = np.asarray(cell, dtype=np.int64)
    if sample_cell is None:
        return np.ones(cell.size)
    sc = np.asarray(sample_cell, dtype=np.int64)
    ok = sc >= 0
    if not ok.any():
        raise ValueError("no galaxy of the user's sample has a cell")
    f_user = np.bincount(sc[ok], minlength=n_cells) / ok.sum()
    f_lab = np.bincount(cell, minlength=n_cells) / max(cell.size, 1)
    return f_user[cell] / f_lab[cell]


def youden(flag: np.ndarray, bad: np.ndarray, weight: np.ndarray | None = None) -> dict[str, float]:
    """Weighted recall, false-positive rate, Youden's J with its standard error, precision.

    Parameters
    ----------
    flag, bad : array_like of bool, shape (N,)
        Flagged galaxies and the galaxies the flag should catch.
    weight : array_like, shape (N,), optional
        Non-negative weights (e.g. :func:`user_weights`); default 1.

    Returns
    -------
    dict
        ``recall`` (weighted share of bad galaxies flagged), ``false_positive_rate``, ``J``
        (their difference; 0 for a random flag), ``J_se`` (linearised standard error, see the
        module docstring), ``precision`` (weighted share of flagged galaxies that are bad;
        NaN when nothing is flagged), ``flagged`` (weighted share flagged), ``n``,
        ``n_bad``.
    """
    f = np.asarray(flag, dtype=bool)
    b = np.asarray(bad, dtype=bool)
    w = np.ones(f.size) if weight is None else np.asarray(weight, dtype=np.float64)
    if not (f.shape == b.shape == w.shape) or f.ndim != 1:
        raise ValueError("flag, bad and weight must be 1-D arrays of the same length")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and non-negative")
    wb, wg = w * b, w * ~b
    B, G = wb.sum(), wg.sum()
    if not (B > 0 and G > 0):
        raise ValueError("need bad and good galaxies with positive weight to score a flag")
    r = float(np.clip((wb @ f) / B, 0, 1))
    fp = float(np.clip((wg @ f) / G, 0, 1))
    u = wb * (f - r) / B - wg * (f - fp) / G
    n = f.size
    tot = float(w @ f)
    return {"recall": r, "false_positive_rate": fp, "J": r - fp,
            "J_se": float(np.sqrt(np.sum(u ** 2) * n / max(n - 1, 1))),
            "precision": float(wb @ f) / tot if tot > 0 else float("nan"),
            "flagged": tot / float(w.sum()), "n": int(n), "n_bad": int(b.sum())}
