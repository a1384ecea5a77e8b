"""A flag scored as a detector: pure functions on arrays and tables.

Nothing here reads a run directory, writes a file or draws: the experiments that read a
pipeline run are in :mod:`photozsom.workflow.validation`, the figure is
:func:`photozsom.plots.plot_detection`.

**Against the truth** (known on the simulated sky). What a user fears, as the truth classes
of :func:`truth_labels` (readable names in :data:`TRUTH_LABELS`):

- **catastrophic photo-z outliers**: ``|Z_PHOT_MEAN - Z_TRUE| / (1 + Z_TRUE) > 0.15`` (the
  paper's η threshold, against the *true* redshift), and the same against the spectroscopic
  redshift ``Z`` (what a user with spec-z would measure);
- **blends**: more than ``blend_threshold`` of the r-band catalogue flux belongs to
  neighbours (``BLEND_FRAC_TRUE``);
- **wrong spectroscopic redshifts**: ``|Z - Z_TRUE| / (1 + Z_TRUE) > wrong_z_threshold``
  (default 0.01, far beyond any survey's redshift error).

For each, :func:`flag_detection_table` gives the precision (the fraction of flagged
galaxies that are bad), the recall (the fraction of all bad galaxies that are flagged:
"caught"), the fraction flagged and the base rate (the precision of a flag drawn at
random); :func:`summary_table` shows it as one table. :func:`detection_curve` gives the
same over the thresholds of a continuous score, and :func:`top_fraction_flag` turns a score
into a flag at a given fraction flagged, so a SOM score (the cell's training count, the
distance to the prototype, the cell's outlier rate) can be compared with a flag that needs
no SOM: the width of the galaxy's own P(z). :func:`cell_redshift_spread` measures how
tightly a map's cells hold their redshifts.

**Out of sample.** A flag whose parts are chosen on the galaxies it is scored on flatters
itself. :func:`crossfit_underperforming` decides the under-performing cells of each random
half on the other half; :func:`nested_flags` decides the whole flag (thresholds and
verdict) of each fold on the other folds; :func:`in_sample_flags` is the flagger's own
flag of its labelled galaxies, for comparison.

**Weighted to a user's sample.** :func:`user_weights` weights each labelled galaxy by
``f_user(c) / f_labelled(c)``, so that weighted rates are those expected on the user's
sample if performance within a SOM cell transfers (as
:func:`photozsom.evaluation.cells.threshold_curve`); :func:`youden` gives the weighted
recall, false-positive rate, Youden's ``J`` and its standard error, precision and fraction
flagged (used by the flag's threshold choice, :func:`photozsom.evaluation.thresholds.choose_thresholds`);
:func:`flag_scores` tabulates it for each part of each flag.

The standard error of ``J`` is the linearised (sandwich) error of the two weighted ratios
``recall = sum(w bad flag) / sum(w bad)`` and ``fpr = sum(w good flag) / sum(w good)``
(galaxies as independent draws, weights fixed): ``var J = n/(n-1) sum_i u_i^2`` with
``u_i = w_i bad_i (flag_i - recall) / sum(w bad) - w_i good_i (flag_i - fpr) / sum(w good)``.
Kish's effective sample size instead assumes the weights unrelated to the outcome, which
fails here because the weight and the flag are both set per cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from photozsom.evaluation import cells as _cells
from photozsom.evaluation.metrics import OUTLIER_THRESHOLD
from photozsom.evaluation.thresholds import (
    choose_thresholds,
    out_of_distribution,
    training_distance_threshold,
    user_weights,
    youden,
)
from photozsom.schema import point_column

__all__ = [
    "TRUTH_LABELS",
    "cell_redshift_spread",
    "crossfit_underperforming",
    "detection_curve",
    "flag_detection_table",
    "flag_scores",
    "in_sample_flags",
    "nested_flags",
    "summary_table",
    "top_fraction_flag",
    "truth_labels",
    "user_weights",
    "youden",
]

#: Readable names of the truth classes of :func:`truth_labels`.
TRUTH_LABELS: dict[str, str] = {
    "outlier": "catastrophic photo-z outlier (true z)",
    "outlier_spec": "catastrophic photo-z outlier (spec-z)",
    "blend": "blend",
    "wrong_specz": "wrong spec-z",
}


# ======================================================================================
# Against the truth
# ======================================================================================
def _bool1d(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D boolean array, got shape {a.shape}")
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1), got values outside {{0, 1}}")
        a = a.astype(bool)
    return a


def truth_labels(df: pd.DataFrame, *, outlier_threshold: float = OUTLIER_THRESHOLD,
                 blend_threshold: float = 0.1, wrong_z_threshold: float = 0.01
                 ) -> dict[str, np.ndarray]:
    """The simulation's truth classes of a table of predicted galaxies.

    Parameters
    ----------
    df : DataFrame, N rows
        a point photo-z (``Z_PHOT_MEAN``; :func:`photozsom.schema.point_column`), ``Z`` (spectroscopic redshift), ``Z_TRUE`` (true
        redshift) and ``BLEND_FRAC_TRUE`` (fraction of the r-band flux from neighbours;
        NaN counts as 0) — the simulation-only columns of the mock's ``spec.parquet``.
    outlier_threshold : float
        ``|Δz| / (1 + z)`` above which a photo-z is a catastrophic outlier (paper: 0.15).
    blend_threshold : float
        Neighbours' flux fraction above which a galaxy is a blend (default 0.1: its r-band
        flux is then off by more than 0.1 mag).
    wrong_z_threshold : float
        ``|Z - Z_TRUE| / (1 + Z_TRUE)`` above which the spectroscopic redshift is wrong.

    Returns
    -------
    dict of str to ndarray of bool, shape (N,)
        ``outlier`` (photo-z vs true z), ``outlier_spec`` (photo-z vs spec-z), ``blend``,
        ``wrong_specz``.
    """
    c_zp = point_column(df, "predictions")
    need = ["Z", "Z_TRUE", "BLEND_FRAC_TRUE"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(
            f"truth_labels needs column(s) {missing}: Z_TRUE and BLEND_FRAC_TRUE exist only "
            f"on the simulated sky (sky/spec.parquet of a run made without real data)"
        )
    zp = df[c_zp].to_numpy(np.float64)
    zs = df["Z"].to_numpy(np.float64)
    zt = df["Z_TRUE"].to_numpy(np.float64)
    blend = np.nan_to_num(df["BLEND_FRAC_TRUE"].to_numpy(np.float64))
    return {
        "outlier": np.abs(zp - zt) / (1 + zt) > outlier_threshold,
        "outlier_spec": np.abs(zp - zs) / (1 + zs) > outlier_threshold,
        "blend": blend > blend_threshold,
        "wrong_specz": np.abs(zs - zt) / (1 + zt) > wrong_z_threshold,
    }


def _detection_row(flag: np.ndarray, bad: np.ndarray) -> dict[str, float]:
    n = flag.size
    n_flag, n_bad = int(flag.sum()), int(bad.sum())
    tp = int((flag & bad).sum())
    base = n_bad / n if n else np.nan
    prec = tp / n_flag if n_flag else np.nan
    return {"n": n, "n_bad": n_bad, "n_flagged": n_flag, "n_caught": tp,
            "fraction_flagged": n_flag / n if n else np.nan, "base_rate": base,
            "precision": prec, "recall": tp / n_bad if n_bad else np.nan,
            "lift": prec / base if base else np.nan}


def flag_detection_table(truth: Mapping[str, np.ndarray],
                         flags: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Each flag scored as a detector of each truth class.

    Parameters
    ----------
    truth : mapping of str to array of bool, shape (N,)
        The bad galaxies of each class (e.g. :func:`truth_labels`).
    flags : mapping of str to array of bool, shape (N,)
        The flagged galaxies of each flag, same rows.

    Returns
    -------
    DataFrame
        One row per (truth, flag): ``truth``, ``flag``, ``n``, ``n_bad``, ``n_flagged``,
        ``n_caught`` (flagged and bad), ``fraction_flagged``, ``base_rate`` (``n_bad / n``:
        the precision of a random flag), ``precision`` (``n_caught / n_flagged``, NaN when
        nothing is flagged), ``recall`` (``n_caught / n_bad``: the fraction of all bad
        galaxies caught) and ``lift`` (precision over base rate; 1 for an uninformative
        flag).
    """
    if not truth or not flags:
        raise ValueError("truth and flags must each hold at least one boolean array")
    t = {k: _bool1d(v, f"truth[{k!r}]") for k, v in truth.items()}
    f = {k: _bool1d(v, f"flags[{k!r}]") for k, v in flags.items()}
    sizes = {a.size for a in (*t.values(), *f.values())}
    if len(sizes) != 1:
        raise ValueError(f"truth and flags arrays must all have the same length, got {sorted(sizes)}")
    rows = [{"truth": tk, "flag": fk, **_detection_row(fv, tv)}
            for tk, tv in t.items() for fk, fv in f.items()]
    return pd.DataFrame(rows)


def summary_table(table: pd.DataFrame, *, columns: Sequence[str] = ("precision", "recall"),
                  percent: bool = True) -> pd.DataFrame:
    """:func:`flag_detection_table` as one display table: a row per flag, a column per truth.

    Parameters
    ----------
    table : DataFrame
        Long table with ``truth``, ``flag``, ``fraction_flagged``, ``base_rate`` and
        ``columns``.
    columns : sequence of str
        Scores shown for each truth class.
    percent : bool
        Show fractions as percentages (rounded to 0.1).

    Returns
    -------
    DataFrame
        Index ``flag``, plus a row ``random flag (base rate)``: a flag drawn at random has
        the base rate as precision (its recall equals the fraction it flags: NaN here).
        Columns ``("", "flagged")`` (fraction flagged) and ``(truth label, score)``.
    """
    t = table.copy()
    labels = {k: TRUTH_LABELS.get(k, k) for k in t["truth"].unique()}
    wide = t.pivot(index="flag", columns="truth", values=list(columns))
    wide = wide.swaplevel(axis=1)
    order = [(tk, c) for tk in dict.fromkeys(t["truth"]) for c in columns]
    wide = wide[order].reindex(list(dict.fromkeys(t["flag"])))
    base = t.groupby("truth", sort=False)["base_rate"].first()
    rnd = {(tk, c): (base[tk] if c == "precision" else np.nan) for tk, c in order}
    wide.loc["random flag (base rate)"] = pd.Series(rnd)
    wide.columns = pd.MultiIndex.from_tuples([(labels[tk], c) for tk, c in order])
    flagged = t.groupby("flag", sort=False)["fraction_flagged"].first()
    wide.insert(0, ("", "flagged"), flagged.reindex(wide.index))
    if percent:
        wide = (100 * wide).round(1)
    return wide


def detection_curve(score: np.ndarray, is_bad: np.ndarray, thresholds: np.ndarray | None = None,
                    *, higher_is_worse: bool = True, n_thresholds: int = 50) -> pd.DataFrame:
    """Precision and recall of the flag ``score >= t`` (or ``<= t``) against its threshold.

    Parameters
    ----------
    score : array_like of float, shape (N,)
        A per-galaxy score; NaN (no score, e.g. a galaxy the SOM cannot place) counts as the
        worst value, flagged at every threshold.
    is_bad : array_like of bool, shape (N,)
        The galaxies the flag should catch.
    thresholds : array_like, optional
        Values of ``t``. Default: ``n_thresholds`` quantiles of the finite scores spanning
        flagged fractions from about 0 to 1 (repeated values merged).
    higher_is_worse : bool
        Flag ``score >= t`` (True, e.g. a distance) or ``score <= t`` (False, e.g. a training
        count).
    n_thresholds : int
        Number of default thresholds.

    Returns
    -------
    DataFrame
        One row per threshold (in the order of increasing fraction flagged): ``threshold``,
        then the columns of :func:`flag_detection_table` (``n_flagged``,
        ``fraction_flagged``, ``precision``, ``recall``, ``base_rate``, ...).
    """
    s = np.asarray(score, dtype=np.float64)
    bad = _bool1d(is_bad, "is_bad")
    if s.ndim != 1 or s.shape != bad.shape:
        raise ValueError(f"score and is_bad must be 1-D of the same length, got {s.shape} and {bad.shape}")
    if s.size == 0:
        raise ValueError("score is empty")
    fin = np.isfinite(s)
    if thresholds is None:
        if not fin.any():
            raise ValueError("score has no finite value; pass thresholds=")
        q = np.linspace(0, 1, int(n_thresholds))
        thresholds = np.unique(np.quantile(s[fin], q))
    t = np.sort(np.asarray(thresholds, dtype=np.float64).ravel())
    # flagged counts for every threshold at once: sort the finite scores once
    order = np.sort(s[fin])
    bad_sorted = bad[fin][np.argsort(s[fin], kind="stable")]
    cum_bad = np.concatenate([[0], np.cumsum(bad_sorted)])
    n_fin = order.size
    if higher_is_worse:
        start = np.searchsorted(order, t, side="left")      # rows with score >= t
        n_flag_fin = n_fin - start
        tp_fin = cum_bad[-1] - cum_bad[start]
    else:
        stop = np.searchsorted(order, t, side="right")      # rows with score <= t
        n_flag_fin = stop
        tp_fin = cum_bad[stop]
    n_nan, tp_nan = int((~fin).sum()), int((bad & ~fin).sum())
    n_flag = n_flag_fin + n_nan
    tp = tp_fin + tp_nan
    n, n_bad = s.size, int(bad.sum())
    base = n_bad / n
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(n_flag > 0, tp / np.maximum(n_flag, 1), np.nan)
        out = pd.DataFrame({
            "threshold": t, "n": n, "n_bad": n_bad, "n_flagged": n_flag, "n_caught": tp,
            "fraction_flagged": n_flag / n, "base_rate": base, "precision": prec,
            "recall": tp / n_bad if n_bad else np.full(t.size, np.nan),
            "lift": prec / base if base else np.full(t.size, np.nan)})
    return out.sort_values("fraction_flagged", kind="stable").reset_index(drop=True)


def top_fraction_flag(score: np.ndarray, fraction: float, *, higher_is_worse: bool = True
                      ) -> np.ndarray:
    """Flag the ``fraction`` of galaxies with the worst score (NaN scores first).

    Used to compare a continuous score with a boolean flag at the same fraction flagged.

    Parameters
    ----------
    score : array_like of float, shape (N,)
    fraction : float in [0, 1]
    higher_is_worse : bool

    Returns
    -------
    ndarray of bool, shape (N,)
        Exactly ``round(fraction * N)`` True values (ties broken by row order).
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    s = np.asarray(score, dtype=np.float64)
    key = np.where(np.isfinite(s), s if higher_is_worse else -s, np.inf)
    k = round(float(fraction) * s.size)
    out = np.zeros(s.size, dtype=bool)
    if k:
        out[np.argsort(-key, kind="stable")[:k]] = True
    return out


def cell_redshift_spread(cells: np.ndarray, z: np.ndarray, *, statistic: str = "std",
                         min_count: int = 2) -> float:
    """Mean within-cell spread of redshift, weighted by the cells' galaxy counts.

    Parameters
    ----------
    cells : array_like of int, shape (N,)
        SOM cell of each galaxy; negative values (not mapped) are left out.
    z : array_like of float, shape (N,)
        Redshift of each galaxy (non-finite values are left out).
    statistic : {"std", "nmad"}
        ``"std"``: standard deviation (``ddof=0``) of z in the cell; ``"nmad"``:
        ``1.4826 * median(|z - median(z)|)``, robust to a few strays.
    min_count : int
        Cells with fewer galaxies are left out (a single galaxy has spread 0).

    Returns
    -------
    float
        ``sum_c n_c spread_c / sum_c n_c`` over cells with at least ``min_count`` galaxies
        (redshift units); NaN when no cell qualifies.
    """
    c = np.asarray(cells)
    zz = np.asarray(z, dtype=np.float64)
    if c.shape != zz.shape or c.ndim != 1:
        raise ValueError(f"cells and z must be 1-D of the same length, got {c.shape} and {zz.shape}")
    if statistic not in ("std", "nmad"):
        raise ValueError(f"statistic must be 'std' or 'nmad', got {statistic!r}")
    ok = (c >= 0) & np.isfinite(zz)
    df = pd.DataFrame({"c": c[ok], "z": zz[ok]})
    g = df.groupby("c")["z"]
    n = g.size()
    if statistic == "std":
        spread = g.std(ddof=0)
    else:
        med = g.transform("median")
        spread = 1.4826 * (df["z"] - med).abs().groupby(df["c"]).median()
    keep = n >= max(int(min_count), 1)
    if not keep.any():
        return float("nan")
    return float(np.average(spread[keep], weights=n[keep]))


# ======================================================================================
# Weighted to a user's sample, and out of sample
# ======================================================================================
def crossfit_underperforming(cell: np.ndarray, z_true: np.ndarray, z_pred: np.ndarray,
                             pit_values: np.ndarray | None, n_cells: int,
                             train_counts: np.ndarray, *,
                             metrics: Sequence[str] = ("mad", "eta", "pco", "bias"),
                             fdr: float = 0.05, fdr_scope: str = "all", seed: int = 0,
                             crossfit: bool = True,
                             min_effect: float = _cells.MIN_EFFECT) -> pd.DataFrame:
    """Under-performing cells and cell outlier rate of each galaxy, judged on other galaxies.

    With ``crossfit`` the galaxies are split into two random halves (``seed``); each half
    gets the verdict of :func:`photozsom.evaluation.cells.report` (significantly worse than global on
    one of ``metrics``, Benjamini-Hochberg at ``fdr``) and the η of its cell as measured on
    the *other* half, so a galaxy's own outcome never decides its flag. Without, one
    report on all galaxies decides (what the pipeline's flagger does).

    Parameters
    ----------
    cell : array_like of int, shape (N,)
        SOM cells (-1: not mapped; never under-performing, ``cell_eta`` NaN).
    z_true, z_pred, pit_values : array_like, shape (N,)
        Spectroscopic redshift, point photo-z, PIT (None: PCO not tested).
    n_cells : int
    train_counts : array_like of int, shape (n_cells,)
        Training galaxies per cell (stored in the report; not used for the verdict).
    metrics, fdr, fdr_scope : see :func:`photozsom.evaluation.cells.report` and :class:`photozsom.flags.Flagger`.
    seed : int
    crossfit : bool
    min_effect : float
        Effect-size floor of an under-performing cell, as the flagger's
        (:func:`photozsom.evaluation.cells.material`).

    Returns
    -------
    DataFrame, N rows
        ``underperforming`` (bool) and ``cell_eta`` (the cell's outlier fraction; the other
        half's global η where the cell holds none of the other half's galaxies).
    """
    c = np.asarray(cell)
    n = c.size
    zt, zp = np.asarray(z_true, np.float64), np.asarray(z_pred, np.float64)
    pit = None if pit_values is None else np.asarray(pit_values, np.float64)
    ok = (c >= 0) & np.isfinite(zt) & np.isfinite(zp)
    halves = (np.random.default_rng(seed).random(n) < 0.5) if crossfit else np.ones(n, bool)
    parts = (halves, ~halves) if crossfit else (halves,)
    under = np.zeros(n, dtype=bool)
    eta = np.full(n, np.nan)
    for a in parts:
        fit = ok & (~a if crossfit else a)
        if fit.sum() < 2:
            continue
        rep = _cells.report(c[fit], zt[fit], zp[fit], None if pit is None else pit[fit],
                            n_cells, train_counts, n_boot=0, seed=seed, fdr=fdr,
                            fdr_scope=fdr_scope)
        worse = rep.worse(tuple(metrics), min_effect=min_effect)
        cell_eta = rep.table["eta"].to_numpy(np.float64)
        cell_eta = np.where(np.isfinite(cell_eta), cell_eta, rep.global_["eta"])
        sel = a & (c >= 0)
        under[sel] = worse[c[sel]]
        eta[sel] = cell_eta[c[sel]]
    return pd.DataFrame({"underperforming": under, "cell_eta": eta})


def nested_flags(som: Any, train_counts: np.ndarray, cell: np.ndarray, distance: np.ndarray,
                 z_true: np.ndarray, z_pred: np.ndarray, pit_values: np.ndarray | None = None, *,
                 in_train: np.ndarray | None = None, sample_cell: np.ndarray | None = None,
                 sample_distance: np.ndarray | None = None,
                 metrics: Sequence[str] = ("mad", "eta", "pco", "bias"), fdr: float = 0.05,
                 fdr_scope: str = "all", target: str = "outlier", n_folds: int = 5, seed: int = 0,
                 fallback: tuple[int, float] | None = None,
                 grid: Mapping[str, Sequence[float]] | None = None,
                 min_effect: float = _cells.MIN_EFFECT) -> pd.DataFrame:
    """The whole flag decided out of sample: every choice made on the other folds.

    The labelled galaxies with a cell are split into ``n_folds`` random folds (``seed``).
    For each fold, the other folds alone (i) choose ``min_count`` and ``distance_quantile``
    by :func:`photozsom.evaluation.thresholds.choose_thresholds` (same rule, same user's sample, same
    leave-one-out training counts) and (ii) decide which cells under-perform
    (:func:`photozsom.evaluation.cells.report` on them, Benjamini-Hochberg at ``fdr``); the fold's
    galaxies are then flagged with those thresholds and that verdict. So a galaxy's own
    outcome enters neither the thresholds nor the verdict that flag it, and scores computed
    from these flags (:func:`youden`) are honest estimates of how the
    procedure performs on new galaxies. Training counts are leave-one-out in scoring as in
    selection: a training-split galaxy is not counted in its own cell.

    Parameters
    ----------
    som : SOM
        The map (its training-distance quantiles).
    train_counts : array_like of int, shape (n_cells,)
    cell, distance, z_true, z_pred, pit_values, in_train, sample_cell, sample_distance :
        As in :func:`photozsom.evaluation.thresholds.choose_thresholds` (cell -1: unmapped, flagged).
    metrics, fdr, fdr_scope, min_effect :
        The under-performing verdict, as :class:`photozsom.flags.Flagger`.
    target : {"outlier", "pit_tail"}
        What the threshold rule counts as bad.
    n_folds : int
        Folds (>= 2).
    seed : int
    fallback : (int, float), optional
        Thresholds for a fold whose training folds have too few bad galaxies for the rule
        (without, that raises ``ValueError``).
    grid : dict, optional
        ``min_counts`` and ``quantiles`` passed to ``choose_thresholds``.

    Returns
    -------
    DataFrame, N rows in input order
        ``fold`` (-1: unmapped), ``min_count``, ``distance_quantile`` (the fold's chosen
        pair), ``chosen_by`` ("rule" or "fallback"), ``n_train_loo``, ``ood``,
        ``underperforming``, ``flag`` and ``cell_eta`` (the cell's outlier rate on the other
        folds; their global rate where they have no galaxy in the cell).
    """
    c = np.asarray(cell, dtype=np.int64)
    n = c.size
    d = np.asarray(distance, dtype=np.float64)
    zt, zp = np.asarray(z_true, np.float64), np.asarray(z_pred, np.float64)
    pit = None if pit_values is None else np.asarray(pit_values, np.float64)
    counts = np.asarray(train_counts, dtype=np.int64)
    it = np.zeros(n, bool) if in_train is None else np.asarray(in_train, dtype=bool)
    if not (d.shape == zt.shape == zp.shape == it.shape == (n,)):
        raise ValueError("cell, distance, z_true, z_pred and in_train need one value per galaxy")
    if int(n_folds) < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    mapped = c >= 0
    loo = np.where(mapped, counts[np.where(mapped, c, 0)] - it, -1)
    fold = np.full(n, -1, dtype=np.int64)
    idx = np.flatnonzero(mapped)
    perm = np.random.default_rng(seed).permutation(idx.size)
    fold[idx[perm]] = np.arange(idx.size) % int(n_folds)
    out = pd.DataFrame({"fold": fold, "min_count": -1, "distance_quantile": np.nan,
                        "chosen_by": "", "n_train_loo": loo, "ood": ~mapped,
                        "underperforming": False, "cell_eta": np.nan})
    for k in range(int(n_folds)):
        fit, held = mapped & (fold != k), fold == k
        try:
            ch = choose_thresholds(som, counts, c[fit], d[fit], zt[fit], zp[fit], in_train=it[fit],
                                   pit_values=None if pit is None else pit[fit],
                                   sample_cell=sample_cell, sample_distance=sample_distance,
                                   target=target, **dict(grid or {}))
            pair, how = (ch.min_count, ch.distance_quantile), "rule"
        except ValueError:
            if fallback is None:
                raise
            pair, how = (int(fallback[0]), float(fallback[1])), "fallback"
        rep = _cells.report(c[fit], zt[fit], zp[fit], None if pit is None else pit[fit],
                            int(som.n_cells), counts, n_boot=0, seed=seed, fdr=fdr,
                            fdr_scope=fdr_scope)
        worse = rep.worse(tuple(metrics), min_effect=min_effect)
        eta = rep.table["eta"].to_numpy(np.float64)
        eta = np.where(np.isfinite(eta), eta, rep.global_["eta"])
        thr = training_distance_threshold(som, pair[1])
        out.loc[held, "min_count"] = pair[0]
        out.loc[held, "distance_quantile"] = pair[1]
        out.loc[held, "chosen_by"] = how
        out.loc[held, "ood"] = out_of_distribution(loo[held], d[held], pair[0], thr)
        out.loc[held, "underperforming"] = worse[c[held]]
        out.loc[held, "cell_eta"] = eta[c[held]]
    out["flag"] = out["ood"] | out["underperforming"]
    return out


def in_sample_flags(flagger: Any, cell: np.ndarray, distance: np.ndarray,
                    in_train: np.ndarray | None = None) -> pd.DataFrame:
    """The flagger's own flag of its labelled galaxies, with leave-one-out training counts.

    What the chapter used to score: thresholds and verdicts chosen on these same galaxies
    (optimistic). ``flagger`` is one :class:`photozsom.flags.Flagger` (a map).
    """
    c = np.asarray(cell, dtype=np.int64)
    mapped = c >= 0
    it = np.zeros(c.size, bool) if in_train is None else np.asarray(in_train, dtype=bool)
    counts = np.asarray(flagger.train_counts, dtype=np.int64)
    loo = np.where(mapped, counts[np.where(mapped, c, 0)] - it, -1)
    thr = training_distance_threshold(flagger.som, flagger.distance_quantile)
    ood = ~mapped | out_of_distribution(loo, np.asarray(distance, np.float64),
                                        flagger.min_count, thr)
    under = mapped & flagger.underperforming_cells[np.where(mapped, c, 0)]
    return pd.DataFrame({"n_train_loo": loo, "ood": ood, "underperforming": under,
                         "flag": ood | under})


def flag_scores(flags_by_scoring: Mapping[str, pd.DataFrame], bad: np.ndarray,
                weight: np.ndarray | None = None) -> pd.DataFrame:
    """:func:`youden` of each flag part under each way of scoring.

    Parameters
    ----------
    flags_by_scoring : mapping name -> DataFrame with ``ood``, ``underperforming``, ``flag``
        E.g. ``{"in sample": in_sample_flags(...), "nested": nested_flags(...)}``, same rows.
    bad : array_like of bool
    weight : array_like, optional
        :func:`user_weights`.

    Returns
    -------
    DataFrame
        One row per (scoring, part): ``recall``, ``false_positive_rate``, ``J``, ``J_se``,
        ``precision``, ``flagged`` (weighted), ``n``, ``n_bad``.
    """
    rows = []
    for name, f in flags_by_scoring.items():
        for part in ("flag", "ood", "underperforming"):
            rows.append({"scoring": name, "part": part,
                         **youden(f[part].to_numpy(bool), bad, weight)})
    return pd.DataFrame(rows).set_index(["scoring", "part"])
