"""Choosing the flag's out-of-distribution thresholds from labelled galaxies.

The out-of-distribution rule (:func:`out_of_distribution`: a thin cell or a galaxy far from
its prototype) is written here once; :func:`choose_thresholds` scores a grid of its two
thresholds as detectors of bad photo-z on labelled galaxies (Youden's J weighted to the
user's sample, with its standard error) and picks a pair by a stated rule. The flag itself
(:mod:`photozsom.flags`) and the nested scoring (:mod:`photozsom.evaluation.detection`) use
them; nothing here needs the SOM's code, only an object with ``n_cells`` and
``distance_threshold(quantile)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from photozsom.evaluation.metrics import OUTLIER_THRESHOLD, pco_mask, scaled_residuals

__all__ = ["MIN_COUNT_GRID", "QUANTILE_GRID", "ThresholdChoice", "choose_thresholds",
           "out_of_distribution", "training_distance_threshold", "user_weights", "youden"]


def out_of_distribution(train_count: Any, distance: Any, min_count: Any,
                        distance_threshold: Any) -> np.ndarray:
    """The out-of-distribution rule, the one place it is written.

    A galaxy is out of distribution when its cell holds fewer than ``min_count`` training
    galaxies ("thin") or it lies farther than ``distance_threshold`` from its cell's
    prototype (standardised SOM feature units). Arguments broadcast, so a grid of thresholds
    is scored in one call (:func:`choose_thresholds`).

    Examples
    --------
    >>> out_of_distribution(np.array([3, 20, 20]), np.array([0.5, 0.5, 4.0]), 10, 2.0).tolist()
    [True, False, True]
    """
    return (np.asarray(train_count) < min_count) | (np.asarray(distance) > distance_threshold)


def training_distance_threshold(som: Any, quantile: float) -> float:
    """The SOM's own training-distance quantile (recorded at fit), or inf if it has none."""
    fn = getattr(som, "distance_threshold", None)
    if fn is None or getattr(som, "distance_quantiles_", None) is None:
        return float("inf")  # a map built from prototypes or an old file: no training sample
    thr = fn(quantile)
    return float("inf") if thr is None or not np.isfinite(thr) else float(thr)


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


def youden(flag: np.ndarray, bad: np.ndarray, weight: np.ndarray | None = None) -> dict[str, Any]:
    """Weighted recall, false-positive rate, Youden's J with its standard error, precision.

    Parameters
    ----------
    flag : array_like of bool, shape (..., N)
        Flagged galaxies; leading axes score several flags at once (a threshold grid).
    bad : array_like of bool, shape (N,)
        The galaxies the flag should catch.
    weight : array_like, shape (N,), optional
        Non-negative weights (e.g. :func:`user_weights`); default 1.

    Returns
    -------
    dict
        ``recall`` (weighted share of bad galaxies flagged), ``false_positive_rate``, ``J``
        (their difference; 0 for a random flag), ``J_se``, ``precision`` (weighted share of
        flagged galaxies that are bad; NaN when nothing is flagged), ``flagged`` (weighted
        share flagged): floats for one flag, arrays of the leading shape for several; ``n``,
        ``n_bad``.

    Notes
    -----
    ``J_se`` is the linearised (sandwich) standard error of the difference of two ratios of
    weighted sums over disjoint galaxies, ``var J = n/(n-1) sum_i u_i^2`` with
    ``u_i = w_i bad_i (f_i - recall) / sum(w bad) - w_i good_i (f_i - fpr) / sum(w good)``,
    summed as ``sum_i w_i^2 (f_i - r)^2 = (f @ w^2)(1 - 2 r) + r^2 sum w^2`` so a grid of
    flags needs no (grid x galaxies) float array. Unlike Kish's effective sample size it does
    not assume the weights unrelated to the flag.
    """
    f = np.asarray(flag, dtype=bool)
    b = np.asarray(bad, dtype=bool)
    w = np.ones(b.size) if weight is None else np.asarray(weight, dtype=np.float64)
    if b.ndim != 1 or w.shape != b.shape or f.shape[-1:] != b.shape:
        raise ValueError("flag (..., N), bad (N,) and weight (N,) must share the galaxy axis")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and non-negative")
    wb, wg = w * b, w * ~b
    B, G = wb.sum(), wg.sum()
    if not (B > 0 and G > 0):
        raise ValueError("need bad and good galaxies with positive weight to score a flag")
    tp, fp = f @ wb, f @ wg
    # (clipped: summing weights in another order can put a full recall at 1 + 1e-16)
    r, fpr = np.clip(tp / B, 0, 1), np.clip(fp / G, 0, 1)
    var_b = ((f @ wb ** 2) * (1 - 2 * r) + r ** 2 * (wb ** 2).sum()) / B ** 2
    var_g = ((f @ wg ** 2) * (1 - 2 * fpr) + fpr ** 2 * (wg ** 2).sum()) / G ** 2
    n = b.size
    se = np.sqrt(np.maximum(var_b + var_g, 0.0) * n / max(n - 1, 1))
    tot = tp + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tot > 0, tp / np.where(tot > 0, tot, 1.0), np.nan)
    out = {"recall": r, "false_positive_rate": fpr, "J": r - fpr, "J_se": se,
           "precision": precision, "flagged": tot / float(w.sum())}
    if f.ndim == 1:
        out = {k: float(v) for k, v in out.items()}
    return {**out, "n": int(n), "n_bad": int(b.sum())}


#: ``min_count`` values :func:`choose_thresholds` scans (training galaxies per cell).
MIN_COUNT_GRID: tuple[int, ...] = (0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200)
#: ``distance_quantile`` values :func:`choose_thresholds` scans (1 = the farthest training row).
QUANTILE_GRID: tuple[float, ...] = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)


@dataclass(frozen=True)
class ThresholdChoice:
    """The out-of-distribution thresholds :func:`choose_thresholds` picked, and its scan.

    Attributes
    ----------
    min_count : int
        Chosen minimum training count per cell.
    distance_quantile : float
        Chosen quantile of the SOM's training distances.
    table : DataFrame
        One row per grid point: ``min_count``, ``distance_quantile``, ``distance_threshold``
        (standardised SOM units), ``flagged`` (fraction of the labelled galaxies flagged out
        of distribution, unweighted), ``flagged_sample`` (of the user's sample; NaN without
        one), ``recall`` (share of bad galaxies flagged), ``false_positive_rate`` (share of
        good galaxies flagged), ``precision`` (these three weighted to the user's sample when
        one is given), ``J`` (recall - false-positive rate, Youden's index), ``J_se`` (its
        standard error), ``eligible`` (the pairs the rule chose among) and ``chosen``.
    n_bad, n_good : int
        Bad (e.g. catastrophic outlier) and good labelled galaxies scored.
    target : str
        What counted as bad.
    rule : str
        The selection rule in words.
    """

    min_count: int
    distance_quantile: float
    table: pd.DataFrame
    n_bad: int
    n_good: int
    target: str
    rule: str


def choose_thresholds(
    som: Any,
    train_counts: np.ndarray,
    cell: np.ndarray,
    distance: np.ndarray,
    z_true: np.ndarray,
    z_pred: np.ndarray,
    *,
    in_train: np.ndarray | None = None,
    pit_values: np.ndarray | None = None,
    sample_cell: np.ndarray | None = None,
    sample_distance: np.ndarray | None = None,
    target: str = "outlier",
    min_counts: Sequence[int] = MIN_COUNT_GRID,
    quantiles: Sequence[float] = QUANTILE_GRID,
    outlier_threshold: float | None = None,
    min_bad: int = 20,
) -> ThresholdChoice:
    """Choose ``min_count`` and ``distance_quantile`` from the labelled galaxies.

    Each grid pair defines an out-of-distribution flag (cell training count below
    ``min_count``, or distance to the prototype beyond the SOM's training-distance quantile,
    exactly as :class:`Flagger`). It is scored as a detector of bad photo-z on labelled
    galaxies with honest (e.g. out-of-fold) predictions: recall (share of bad galaxies
    flagged) and false-positive rate (share of good ones flagged), combined into Youden's
    ``J = recall - false-positive rate`` (0 for a flag no better than random). With a user's
    sample (``sample_cell``) the labelled galaxies are weighted cell by cell to the user's
    cell occupancy (weight ``f_user(c) / f_labelled(c)``, as
    :func:`photozsom.evaluation.cells.threshold_curve`), so recall and false-positive rate are those
    expected on the user's sample if performance within a cell transfers. The standard
    error of ``J`` is the linearised (sandwich) standard error of the two weighted ratios,
    ``var J = n/(n-1) sum_i u_i^2`` with ``u_i = w_i bad_i (ood_i - recall) / sum(w bad)
    - w_i good_i (ood_i - fpr) / sum(w good)``: unlike Kish's effective sample size it does
    not assume the weights unrelated to the flag (both are fixed per cell here), and in
    simulated skies its one-standard-error band matches the spread of ``J`` between
    samples. The rule is the one-standard-error rule: among
    pairs whose ``J`` lies within one standard error of the best ``J``, take the one
    flagging the smallest fraction of the user's sample (of the labelled galaxies without
    one); ties go to the higher ``J``. Only pairs whose ``J`` is significantly above zero
    count (one-sided 5%, Bonferroni-corrected over the grid: about 3.3 standard errors for
    the default grid); when none is (the map says nothing about these failures), the pair
    flagging least is taken. So a threshold is only tightened when the data show it catches
    bad photo-z.

    A labelled galaxy of the training split sits in the training count of its own cell;
    ``in_train`` removes it (leave-one-out count), so a cell is judged by the *other*
    training galaxies, as a new galaxy would be.

    Parameters
    ----------
    som : SOM
        The map (its training-distance quantiles, :meth:`~photozsom.som.SOM.distance_threshold`).
    train_counts : array_like of int, shape (n_cells,)
        Training galaxies per cell.
    cell, distance : array_like, shape (N,)
        Cell (-1: unmapped, not scored: such rows are flagged whatever the thresholds) and
        distance to the prototype of each labelled galaxy.
    z_true, z_pred : array_like, shape (N,)
        Spectroscopic redshift and point photo-z.
    in_train : array_like of bool, shape (N,), optional
        Galaxies counted in ``train_counts``.
    pit_values : array_like, shape (N,), optional
        PIT values (needed for ``target="pit_tail"``).
    sample_cell, sample_distance : array_like, shape (M,), optional
        The user's sample (e.g. the random sample), for the flagged fraction.
    target : {"outlier", "pit_tail"}
        Bad means a catastrophic outlier (``|Δz| > outlier_threshold``, the paper's η) or a
        PIT outside the central 99% (the paper's PCO).
    min_counts, quantiles : sequences
        The grid.
    outlier_threshold : float, optional
        η threshold (default :data:`photozsom.evaluation.metrics.OUTLIER_THRESHOLD`).
    min_bad : int
        Fewest bad galaxies (and good ones) to choose from; fewer raise ``ValueError``.

    Returns
    -------
    ThresholdChoice
    """

    n_cells = int(som.n_cells)
    counts = np.asarray(train_counts, dtype=np.int64)
    if counts.shape != (n_cells,) or np.any(counts < 0):
        raise ValueError(f"train_counts must hold {n_cells} non-negative counts, got shape "
                         f"{counts.shape}")
    cell = np.asarray(cell, dtype=np.int64)
    distance = np.asarray(distance, dtype=np.float64)
    n = cell.size
    for name, a in (("distance", distance), ("z_true", z_true), ("z_pred", z_pred)):
        if np.shape(a) != (n,):
            raise ValueError(f"{name} must have one value per galaxy ({n}), got {np.shape(a)}")
    if np.any(cell >= n_cells) or np.any(cell < -1):
        raise ValueError(f"cell must lie in [-1, {n_cells - 1}]")
    mapped = cell >= 0
    if np.any(mapped & ~np.isfinite(distance)):
        raise ValueError("mapped galaxies (cell >= 0) need a finite distance")
    if target == "outlier":
        thr = OUTLIER_THRESHOLD if outlier_threshold is None else float(outlier_threshold)
        bad = np.abs(scaled_residuals(np.asarray(z_true)[mapped], np.asarray(z_pred)[mapped])) > thr
    elif target == "pit_tail":
        if pit_values is None:
            raise ValueError('target="pit_tail" needs pit_values')
        bad = pco_mask(np.asarray(pit_values)[mapped], 0.99)
    else:
        raise ValueError(f'target must be "outlier" or "pit_tail", got {target!r}')
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    if min(n_bad, n_good) < min_bad:
        raise ValueError(f"{n_bad} bad and {n_good} good labelled galaxies: too few (< {min_bad}) "
                         f"to choose thresholds from; set min_count and distance_quantile by hand")
    mc = np.asarray(sorted({int(m) for m in min_counts}), dtype=np.int64)
    qs = np.asarray(sorted({float(q) for q in quantiles}), dtype=np.float64)
    if mc.size == 0 or qs.size == 0 or mc.min() < 0 or qs.min() <= 0 or qs.max() > 1:
        raise ValueError("min_counts must be non-negative integers and quantiles lie in (0, 1]")
    dthr = np.array([training_distance_threshold(som, q) for q in qs])

    loo = counts[cell[mapped]]
    if in_train is not None:
        it = np.asarray(in_train, dtype=bool)
        if it.shape != (n,):
            raise ValueError(f"in_train must have one value per galaxy ({n})")
        loo = loo - it[mapped]
    d = distance[mapped]
    lab_cell = cell[mapped]
    if sample_cell is not None:
        sc = np.asarray(sample_cell, dtype=np.int64)
        sd = np.asarray(sample_distance, dtype=np.float64) if sample_distance is not None \
            else np.zeros(sc.size)
        if sd.shape != sc.shape:
            raise ValueError("sample_distance must have one value per sample_cell")
        ok = sc >= 0
    # each labelled galaxy stands for its cell's share of the user's sample
    w = user_weights(lab_cell, sample_cell, n_cells)
    wb, wg = w * bad, w * ~bad
    if not (wb.sum() > 0 and wg.sum() > 0):
        raise ValueError("the user's sample shares no cell with the bad (or the good) labelled "
                         "galaxies; set min_count and distance_quantile by hand")
    # (n_min_count, n_quantile, n_galaxies): out of distribution at each grid point
    ood = out_of_distribution(loo[None, None, :], d[None, None, :], mc[:, None, None],
                              dthr[None, :, None])
    score = youden(ood, bad, w)   # every grid point at once
    recall, fpr, J, se = score["recall"], score["false_positive_rate"], score["J"], score["J_se"]
    flagged = ood.mean(axis=2)
    if sample_cell is not None:
        # unmapped sample rows are flagged whatever the thresholds
        flagged_sample = (out_of_distribution(counts[sc[ok]][None, None, :], sd[ok][None, None, :],
                                              mc[:, None, None], dthr[None, :, None]).sum(axis=2)
                          + (~ok).sum()) / sc.size
        cost = flagged_sample
    else:
        flagged_sample = np.full_like(J, np.nan)
        cost = flagged
    # better than a random flag at 5%, Bonferroni-corrected over the grid's pairs
    z_gate = float(-ndtri(0.05 / J.size))
    significant = J > z_gate * se
    # the best J among the pairs that pass the gate (a pair with a larger J but too uncertain
    # to pass cannot set the one-standard-error band)
    ib, jb = np.unravel_index(np.argmax(np.where(significant, J, -np.inf)
                                        if significant.any() else J), J.shape)
    if significant.any():
        eligible = significant & (J >= J[ib, jb] - se[ib, jb])
    else:   # no pair beats a random flag clearly: flag as little as possible
        eligible = np.ones_like(J, dtype=bool)
    order = np.lexsort((-J[eligible], cost[eligible]))
    ci, cj = (a[order[0]] for a in np.nonzero(eligible))
    M, Q = np.meshgrid(mc, qs, indexing="ij")
    table = pd.DataFrame({
        "min_count": M.ravel(), "distance_quantile": Q.ravel(),
        "distance_threshold": np.broadcast_to(dthr, J.shape).ravel(),
        "flagged": flagged.ravel(), "flagged_sample": flagged_sample.ravel(),
        "recall": recall.ravel(), "false_positive_rate": fpr.ravel(),
        "precision": score["precision"].ravel(),
        "J": J.ravel(), "J_se": se.ravel(), "eligible": eligible.ravel(),
        "chosen": (np.arange(J.size) == np.ravel_multi_index((ci, cj), J.shape)),
    })
    what = {"outlier": "catastrophic outliers", "pit_tail": "PIT outside the central 99%"}[target]
    if sample_cell is not None:
        what += " (labelled galaxies weighted to the user's cell occupancy)"
    who = "user sample" if sample_cell is not None else "labelled galaxies"
    if significant.any():
        rule = (f"largest Youden J (recall - false-positive rate) for {what}, within one "
                f"standard error ({J[ib, jb]:.3f} - {se[ib, jb]:.3f}) and above {z_gate:.2f} "
                f"standard errors; of those, the smallest fraction of the {who} flagged")
    else:
        rule = (f"no pair's Youden J for {what} exceeds {z_gate:.2f} standard errors (not "
                f"better than a random flag): the smallest fraction of the {who} flagged")
    return ThresholdChoice(int(mc[ci]), float(qs[cj]), table, n_bad, n_good, target, rule)
