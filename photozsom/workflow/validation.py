"""The flag scored against the simulation's truth, and a SOM of the image embeddings.

The paper proposes the flag as a warning to users: a galaxy in a SOM cell with thin
training data, far from its prototype, or in a cell where the model under-performs, should
not be trusted. On the simulated sky the truth is known, so the flag can be scored as a
*detector* of what a user fears (this goes beyond the paper):

- **catastrophic photo-z outliers**: ``|Z_PHOT - Z_TRUE| / (1 + Z_TRUE) > 0.15`` (the
  paper's η threshold, against the *true* redshift), and the same against the spectroscopic
  redshift ``Z`` (what a user with spec-z would measure);
- **blends**: more than ``blend_threshold`` of the r-band catalogue flux belongs to
  neighbours (``BLEND_FRAC_TRUE``);
- **wrong spectroscopic redshifts**: ``|Z - Z_TRUE| / (1 + Z_TRUE) > wrong_z_threshold``
  (default 0.01, far beyond any survey's redshift error).

For each, :func:`flag_detection_table` gives the precision (the fraction of flagged
galaxies that are bad), the recall (the fraction of all bad galaxies that are flagged:
"caught"), the fraction flagged and the base rate (the precision of a flag drawn at
random). :func:`detection_curve` gives the same over the thresholds of a continuous score,
so a SOM score (the cell's training count, the distance to the prototype, the cell's
outlier rate) can be compared with a flag that needs no SOM: the width of the galaxy's own
P(z). If the SOM scores do no better than the width, the map adds no information about
these failures.

The flag's "under-performing" part is decided by the same labelled galaxies it is scored
on; to keep that from flattering it, :func:`score_flag_against_truth` cross-fits by
default: the galaxies are split into two random halves and each half is flagged by the
cell report of the other half.

:func:`compare_maps` answers the paper's future-work question: a SOM trained on the
random sample's image embeddings instead of its colours — does it group galaxies of
similar redshift more tightly (:func:`cell_redshift_spread`), and does a flag built on it
detect the failures better?

:func:`significance_across_seeds` asks how much of the per-cell significance is luck:
the map, the out-of-fold MDNs and the bootstrap are redone with other seeds, and the number
of significant cells (and which galaxies end up in them) is compared across seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from photozsom.evaluation.metrics import OUTLIER_THRESHOLD

__all__ = [
    "SCORE_LABELS",
    "TRUTH_LABELS",
    "cell_redshift_spread",
    "compare_maps",
    "crossfit_underperforming",
    "detection_curve",
    "embedding_som",
    "flag_by_magnitude_nested",
    "flag_detection_table",
    "flag_scores",
    "in_sample_flags",
    "nested_flags",
    "plot_detection",
    "run_nested_flags",
    "score_flag_against_truth",
    "significance_across_seeds",
    "summary_table",
    "top_fraction_flag",
    "truth_labels",
]

#: Readable names of the truth classes of :func:`truth_labels`.
TRUTH_LABELS: dict[str, str] = {
    "outlier": "catastrophic photo-z outlier (true z)",
    "outlier_spec": "catastrophic photo-z outlier (spec-z)",
    "blend": "blend",
    "wrong_specz": "wrong spec-z",
}

#: Readable names of the continuous scores of :func:`score_flag_against_truth`.
SCORE_LABELS: dict[str, str] = {
    "n_train": "SOM: training galaxies in the cell (fewer = worse)",
    "distance": "SOM: distance to the prototype",
    "cell_eta": "SOM: cell's outlier rate (cross-fitted)",
    "pz_width": "no SOM: P(z) 90% width / (1 + z_phot)",
    "colour: n_train": "colour SOM: training galaxies in the cell",
    "embedding: n_train": "embedding SOM: training galaxies in the cell",
    "colour: cell_eta": "colour SOM: cell's outlier rate (cross-fitted)",
    "embedding: cell_eta": "embedding SOM: cell's outlier rate (cross-fitted)",
}


# ======================================================================================
# Pure functions
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
        ``Z_PHOT`` (point photo-z), ``Z`` (spectroscopic redshift), ``Z_TRUE`` (true
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
    need = ["Z_PHOT", "Z", "Z_TRUE", "BLEND_FRAC_TRUE"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(
            f"truth_labels needs column(s) {missing}: Z_TRUE and BLEND_FRAC_TRUE exist only "
            f"on the simulated sky (sky/spec.parquet of a run made without real data)"
        )
    zp = df["Z_PHOT"].to_numpy(np.float64)
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


def crossfit_underperforming(cell: np.ndarray, z_true: np.ndarray, z_pred: np.ndarray,
                             pit_values: np.ndarray | None, n_cells: int,
                             train_counts: np.ndarray, *,
                             metrics: Sequence[str] = ("mad", "eta", "pco", "bias"),
                             fdr: float = 0.05, fdr_scope: str = "all", seed: int = 0,
                             crossfit: bool = True) -> pd.DataFrame:
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

    Returns
    -------
    DataFrame, N rows
        ``underperforming`` (bool) and ``cell_eta`` (the cell's outlier fraction; the other
        half's global η where the cell holds none of the other half's galaxies).
    """
    from photozsom.evaluation import cells as _cells

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
        worse = rep.worse(tuple(metrics))
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
                 grid: Mapping[str, Sequence[float]] | None = None) -> pd.DataFrame:
    """The whole flag decided out of sample: every choice made on the other folds.

    The labelled galaxies with a cell are split into ``n_folds`` random folds (``seed``).
    For each fold, the other folds alone (i) choose ``min_count`` and ``distance_quantile``
    by :func:`photozsom.flags.choose_thresholds` (same rule, same user's sample, same
    leave-one-out training counts) and (ii) decide which cells under-perform
    (:func:`photozsom.evaluation.cells.report` on them, Benjamini-Hochberg at ``fdr``); the fold's
    galaxies are then flagged with those thresholds and that verdict. So a galaxy's own
    outcome enters neither the thresholds nor the verdict that flag it, and scores computed
    from these flags (:func:`photozsom.evaluation.detection.youden`) are honest estimates of how the
    procedure performs on new galaxies. Training counts are leave-one-out in scoring as in
    selection: a training-split galaxy is not counted in its own cell.

    Parameters
    ----------
    som : SOM
        The map (its training-distance quantiles).
    train_counts : array_like of int, shape (n_cells,)
    cell, distance, z_true, z_pred, pit_values, in_train, sample_cell, sample_distance :
        As in :func:`photozsom.flags.choose_thresholds` (cell -1: unmapped, flagged).
    metrics, fdr, fdr_scope :
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
    from photozsom.evaluation import cells as _cells
    from photozsom.flags import _training_distance_threshold, choose_thresholds, out_of_distribution

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
        worse = rep.worse(tuple(metrics))
        eta = rep.table["eta"].to_numpy(np.float64)
        eta = np.where(np.isfinite(eta), eta, rep.global_["eta"])
        thr = _training_distance_threshold(som, pair[1])
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
    from photozsom.flags import _training_distance_threshold, out_of_distribution

    c = np.asarray(cell, dtype=np.int64)
    mapped = c >= 0
    it = np.zeros(c.size, bool) if in_train is None else np.asarray(in_train, dtype=bool)
    counts = np.asarray(flagger.train_counts, dtype=np.int64)
    loo = np.where(mapped, counts[np.where(mapped, c, 0)] - it, -1)
    thr = _training_distance_threshold(flagger.som, flagger.distance_quantile)
    ood = ~mapped | out_of_distribution(loo, np.asarray(distance, np.float64),
                                        flagger.min_count, thr)
    worse = flagger.report.worse(tuple(flagger.metrics))
    under = mapped & worse[np.where(mapped, c, 0)]
    return pd.DataFrame({"n_train_loo": loo, "ood": ood, "underperforming": under,
                         "flag": ood | under})


def flag_scores(flags_by_scoring: Mapping[str, pd.DataFrame], bad: np.ndarray,
                weight: np.ndarray | None = None) -> pd.DataFrame:
    """:func:`photozsom.evaluation.detection.youden` of each flag part under each way of scoring.

    Parameters
    ----------
    flags_by_scoring : mapping name -> DataFrame with ``ood``, ``underperforming``, ``flag``
        E.g. ``{"in sample": in_sample_flags(...), "nested": nested_flags(...)}``, same rows.
    bad : array_like of bool
    weight : array_like, optional
        :func:`photozsom.evaluation.detection.user_weights`.

    Returns
    -------
    DataFrame
        One row per (scoring, part): ``recall``, ``false_positive_rate``, ``J``, ``J_se``,
        ``precision``, ``flagged`` (weighted), ``n``, ``n_bad``.
    """
    from photozsom.evaluation.detection import youden

    rows = []
    for name, f in flags_by_scoring.items():
        for part in ("flag", "ood", "underperforming"):
            rows.append({"scoring": name, "part": part,
                         **youden(f[part].to_numpy(bool), bad, weight)})
    return pd.DataFrame(rows).set_index(["scoring", "part"])


def embedding_som(embeddings: np.ndarray, shape: tuple[int, int], *, seed: int = 0,
                  epochs: int | None = None, backend: str = "torch", progress: bool = False) -> Any:
    """A :class:`photozsom.som.SOM` trained on image embeddings (rows with NaN left out).

    Parameters
    ----------
    embeddings : ndarray, shape (N, D)
        Embedding vectors (e.g. :func:`photozsom.embed.load_embeddings` of the random
        sample). Rows with a non-finite value (objects that could not be embedded) are not
        used.
    shape : (int, int)
        Map size; the same as the colour map for a like-for-like comparison.
    seed, epochs, backend, progress : see :class:`photozsom.som.SOM` and :meth:`~photozsom.som.SOM.fit`.

    Returns
    -------
    SOM
        Fitted on the standardised embeddings; ``feature_names`` ``emb0 .. emb{D-1}``. Map
        new rows with ``som.predict_with_distances(embedding_matrix)``.
    """
    from photozsom.som import SOM

    E = np.asarray(embeddings, dtype=np.float32)
    if E.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (N, D), got shape {E.shape}")
    ok = np.isfinite(E).all(axis=1)
    rows, cols = (int(s) for s in shape)
    if ok.sum() < rows * cols:
        raise ValueError(f"only {int(ok.sum())} finite embedding rows for a {rows}x{cols} map; "
                         f"use a smaller shape or embed more of the random sample")
    som = SOM(shape=(rows, cols), n_features=E.shape[1], backend=backend, seed=seed,
              feature_names=[f"emb{i}" for i in range(E.shape[1])])
    kw: dict[str, Any] = {"progress": progress}
    if epochs is not None:
        kw["epochs"] = epochs
    return som.fit(E[ok], **kw)


# ======================================================================================
# Figure
# ======================================================================================
def plot_detection(curves: pd.DataFrame, table: pd.DataFrame | None = None, *,
                   truths: Sequence[str] = ("outlier", "blend", "wrong_specz"),
                   min_flagged: int = 20) -> Any:
    """Precision and recall against the fraction flagged, one column per truth class.

    Parameters
    ----------
    curves : DataFrame
        Long table with ``truth``, ``score`` and the columns of :func:`detection_curve`
        (``score_flag_against_truth(...)["curves"]``).
    table : DataFrame, optional
        :func:`flag_detection_table` rows (``truth``, ``flag``, ...), drawn as points.
    truths : sequence of str
        Truth classes to draw (columns of the figure), those present in ``curves``.
    min_flagged : int
        Precision is not drawn where fewer galaxies are flagged (one flagged galaxy gives a
        precision of 0 or 1).

    Returns
    -------
    matplotlib.figure.Figure
        Top row: precision (fraction of flagged galaxies that are bad); bottom row: recall
        (fraction of all bad galaxies caught); both against the fraction of galaxies
        flagged. Dashed grey: a flag drawn at random (precision = base rate,
        recall = fraction flagged).
    """
    import matplotlib.pyplot as plt

    truths = [t for t in truths if t in set(curves["truth"])]
    if not truths:
        raise ValueError("curves holds none of the requested truth classes; "
                         f"it has {sorted(set(curves['truth']))}")
    fig, axes = plt.subplots(2, len(truths), figsize=(4.2 * len(truths), 7), squeeze=False,
                             sharex=True, constrained_layout=True)
    scores = list(dict.fromkeys(curves["score"]))
    colours = {s: f"C{i}" for i, s in enumerate(scores)}
    flags = [] if table is None else list(dict.fromkeys(table["flag"]))
    markers = dict(zip(flags, "o^sDvP*X", strict=False))
    for j, tr in enumerate(truths):
        sub = curves[curves["truth"] == tr]
        base = float(sub["base_rate"].iloc[0])
        ax_p, ax_r = axes[0, j], axes[1, j]
        for s in scores:
            cs = sub[sub["score"] == s]
            lab = SCORE_LABELS.get(s, s)
            prec = cs["precision"].where(cs["n_flagged"] >= min_flagged)
            ax_p.plot(cs["fraction_flagged"], prec, color=colours[s], label=lab)
            ax_r.plot(cs["fraction_flagged"], cs["recall"], color=colours[s], label=lab)
        ax_p.axhline(base, color="0.5", ls="--", label="random flag")
        ax_r.plot([0, 1], [0, 1], color="0.5", ls="--", label="random flag")
        if table is not None:
            for f in flags:
                row = table[(table["truth"] == tr) & (table["flag"] == f)]
                if len(row):
                    kw = {"marker": markers.get(f, "o"), "color": "k", "ls": "none", "label": f}
                    ax_p.plot(row["fraction_flagged"], row["precision"], **kw)
                    ax_r.plot(row["fraction_flagged"], row["recall"], **kw)
        ax_p.set_title(f"{TRUTH_LABELS.get(tr, tr)}\n(base rate {100 * base:.2g}%)")
        ax_p.set_ylabel("precision (fraction of flagged that are bad)")
        ax_r.set_ylabel("recall (fraction of all bad caught)")
        ax_r.set_xlabel("fraction of galaxies flagged")
        ax_p.set_xlim(0, 1)
        ax_r.set_ylim(0, 1.02)
        shown = sub["precision"].where(sub["n_flagged"] >= min_flagged).to_numpy(float)
        top = float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0
        ax_p.set_ylim(0, min(1.02, max(0.05, 1.2 * top)))
    handles, labels = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8)
    return fig


# ======================================================================================
# Run-level computations
# ======================================================================================
def _evaluated_with_truth(run: Any) -> pd.DataFrame:
    """``cells/evaluated.parquet`` joined with the spectroscopic sample's columns."""
    ev = pd.read_parquet(run.need("cells/evaluated.parquet"))
    spec = run.spec()
    extra = [c for c in spec.columns if c not in ev.columns or c == "OBJID"]
    df = ev.merge(spec[extra], on="OBJID", how="left", validate="one_to_one")
    if df["PHOTSYS"].isna().any():
        raise ValueError("cells/evaluated.parquet holds OBJIDs absent from sky/spec.parquet; "
                         "the run directory mixes runs (photozsom.workflow.pipeline.check)")
    return df


def _pz_width(df: pd.DataFrame) -> np.ndarray:
    """``(Z_HI90 - Z_LO90) / (1 + Z_PHOT)``: the scaled width of the central 90% of P(z)."""
    for c in ("Z_LO90", "Z_HI90", "Z_PHOT"):
        if c not in df.columns:
            raise ValueError(f"predictions lack {c} (photozsom.evaluation.results.prediction_table writes it)")
    return ((df["Z_HI90"] - df["Z_LO90"]) / (1 + df["Z_PHOT"])).to_numpy(np.float64)


def _colour_flags(df: pd.DataFrame, flagger: Any, *, crossfit: bool, seed: int) -> pd.DataFrame:
    """Flag columns (ood, underperforming, flag, n_train, distance, cell_eta) of each row."""

    fl_all = flagger.flag(df)
    out = pd.DataFrame({"cell": fl_all["cell"].to_numpy(), "n_train": fl_all["n_train"].to_numpy(float),
                        "distance": fl_all["distance"].to_numpy(), "ood": fl_all["ood"].to_numpy(bool),
                        "underperforming": fl_all["underperforming"].to_numpy(bool),
                        "cell_eta": np.nan}, index=df.index)
    regional = dict(flagger.flaggers) if hasattr(flagger, "flaggers") else {"": flagger}
    ps = df["PHOTSYS"].astype(str).str.strip().str.upper().to_numpy() if "PHOTSYS" in df else None
    for key, fl in regional.items():
        rows = np.ones(len(df), bool) if key == "" or ps is None else (ps == key)
        if not rows.any():
            continue
        sub = df[rows]
        settings = fl.report.settings
        cf = crossfit_underperforming(
            out["cell"].to_numpy()[rows], sub["Z"].to_numpy(), sub["Z_PHOT"].to_numpy(),
            sub["PIT"].to_numpy() if "PIT" in sub else None, fl.som.n_cells, fl.train_counts,
            metrics=fl.metrics, fdr=float(settings.get("fdr", 0.05)),
            fdr_scope=str(settings.get("fdr_scope", "all")), seed=seed, crossfit=crossfit)
        if crossfit:
            out.loc[rows, "underperforming"] = cf["underperforming"].to_numpy()
        out.loc[rows, "cell_eta"] = cf["cell_eta"].to_numpy()
    out["n_train"] = out["n_train"].where(out["cell"] >= 0, np.nan)
    out["flag"] = out["ood"] | out["underperforming"]
    return out


def _scores(fl: pd.DataFrame, width: np.ndarray) -> dict[str, tuple[np.ndarray, bool]]:
    """``{name: (score, higher_is_worse)}`` of the continuous flag scores."""
    return {"n_train": (fl["n_train"].to_numpy(float), False),
            "distance": (fl["distance"].to_numpy(float), True),
            "cell_eta": (fl["cell_eta"].to_numpy(float), True),
            "pz_width": (width, True)}


def _curves(truth: Mapping[str, np.ndarray], scores: Mapping[str, tuple[np.ndarray, bool]],
            n_thresholds: int) -> pd.DataFrame:
    parts = []
    for tk, bad in truth.items():
        for sk, (s, hiw) in scores.items():
            c = detection_curve(s, bad, higher_is_worse=hiw, n_thresholds=n_thresholds)
            c.insert(0, "score", sk)
            c.insert(0, "truth", tk)
            parts.append(c)
    return pd.concat(parts, ignore_index=True)


def _auc(curves: pd.DataFrame) -> pd.DataFrame:
    """Area under recall vs fraction flagged (0.5 = random), per (truth, score)."""
    rows = []
    for (tk, sk), c in curves.groupby(["truth", "score"], sort=False):
        x = np.concatenate([[0.0], c["fraction_flagged"].to_numpy(), [1.0]])
        y = np.concatenate([[0.0], np.nan_to_num(c["recall"].to_numpy()), [1.0]])
        rows.append({"truth": tk, "score": sk, "recall_auc": float(np.trapezoid(y, x))})
    return pd.DataFrame(rows).pivot(index="score", columns="truth", values="recall_auc")


def run_nested_flags(run: Any, *, flagger: Any = None, n_folds: int = 5, seed: int = 0,
                     target: str = "outlier") -> dict[str, Any]:
    """:func:`nested_flags` and :func:`in_sample_flags` of a run's evaluated galaxies, map by map.

    Each map's evaluated galaxies (``cells/evaluated.parquet``: out-of-fold photo-z) are
    flagged out of sample by the rule the flags stage used (``choose_thresholds`` with the
    random sample as the user's sample, under-performing cells by the map's report settings),
    and in sample by the run's flagger, both with leave-one-out training counts.

    Returns
    -------
    dict
        ``galaxies``: DataFrame in the rows of ``cells/evaluated.parquet`` with ``OBJID``,
        ``SOM``, ``CELL``, ``in_train``, ``weight`` (:func:`photozsom.evaluation.detection.user_weights`
        for the map's random galaxies), nested ``fold, min_count, distance_quantile, ood,
        underperforming, flag, cell_eta`` and in-sample ``ood_in, underperforming_in,
        flag_in``; ``scores``: :func:`flag_scores` per map (index ``som, scoring, part``) for
        ``target``; ``folds``: the pair each fold chose, per map.
    """
    from photozsom.evaluation.detection import user_weights
    from photozsom.evaluation.metrics import OUTLIER_THRESHOLD, pco_mask
    from photozsom.flags import load_flagger
    from photozsom.workflow import pipeline

    if flagger is None:
        flagger = load_flagger(run.need("flags/flagger"))
    regional = dict(flagger.flaggers) if hasattr(flagger, "flaggers") else {"S": flagger}
    ev = pd.read_parquet(run.need("cells/evaluated.parquet"))
    in_train = (run.split().reindex(ev["OBJID"].to_numpy()) == "train").to_numpy()
    rc = pipeline.spec_cells(run.random(), {r: f.som for r, f in regional.items()})
    parts, scores, folds = [], [], []
    for r, fl in regional.items():
        e = (ev["SOM"] == r).to_numpy()
        if not e.any():
            continue
        sub = ev[e]
        u = (rc["SOM"] == r).to_numpy()
        st = fl.report.settings
        c = sub["CELL"].to_numpy()
        nested = nested_flags(
            fl.som, fl.train_counts, c, sub["DIST"].to_numpy(), sub["Z"].to_numpy(),
            sub["Z_PHOT"].to_numpy(), sub["PIT"].to_numpy(), in_train=in_train[e],
            sample_cell=rc["CELL"].to_numpy()[u], sample_distance=rc["DIST"].to_numpy()[u],
            metrics=fl.metrics, fdr=float(st.get("fdr", 0.05)),
            fdr_scope=str(st.get("fdr_scope", "all")), target=target, n_folds=n_folds,
            seed=seed, fallback=(fl.min_count, fl.distance_quantile))
        ins = in_sample_flags(fl, c, sub["DIST"].to_numpy(), in_train[e])
        mapped = c >= 0
        w = np.zeros(c.size)
        w[mapped] = user_weights(c[mapped], rc["CELL"].to_numpy()[u], fl.som.n_cells)
        g = pd.DataFrame({"OBJID": sub["OBJID"].to_numpy(), "SOM": r, "CELL": c,
                          "in_train": in_train[e], "weight": w}, index=sub.index)
        g = pd.concat([g, nested.set_axis(sub.index)[["fold", "min_count", "distance_quantile",
                                                      "ood", "underperforming", "flag",
                                                      "cell_eta"]],
                       ins.set_axis(sub.index)[["ood", "underperforming", "flag"]]
                       .add_suffix("_in")], axis=1)
        parts.append(g)
        zt, zp = sub["Z"].to_numpy()[mapped], sub["Z_PHOT"].to_numpy()[mapped]
        bad = (np.abs(zp - zt) / (1 + zt) > OUTLIER_THRESHOLD if target == "outlier"
               else pco_mask(np.clip(sub["PIT"].to_numpy()[mapped], 0, 1), 0.99))
        sc = flag_scores({"in sample": ins[mapped], "nested": nested[mapped]}, bad, w[mapped])
        scores.append(pd.concat({r: sc}, names=["som"]))
        folds.append(nested[mapped].groupby("fold")[["min_count", "distance_quantile",
                                                     "chosen_by"]].first().assign(som=r))
    return {"galaxies": pd.concat(parts).reindex(ev.index), "scores": pd.concat(scores),
            "folds": pd.concat(folds).reset_index().set_index(["som", "fold"])}


def flag_by_magnitude_nested(run: Any, flagger: Any, galaxies: pd.DataFrame, *,
                             bins: Sequence[float] | None = None) -> pd.DataFrame:
    """:func:`photozsom.workflow.pipeline.flag_by_magnitude` with the evaluated galaxies' metrics out of sample.

    The random sample's flagged fractions are the flagger's (a fraction flagged is not a
    score); the MAD and η of flagged and unflagged evaluated galaxies use the nested flags
    of :func:`run_nested_flags` (``galaxies``), so the split into flagged and unflagged was
    not decided on the galaxies it is measured on. Same columns as
    :func:`photozsom.workflow.pipeline.flag_by_magnitude`.
    """
    import itertools

    from photozsom.evaluation import metrics
    from photozsom.features import magnitudes
    from photozsom.workflow import pipeline

    out = pipeline.flag_by_magnitude(run, flagger, bins=bins)
    ev = pd.read_parquet(run.need("cells/evaluated.parquet"))
    g = galaxies.reindex(ev.index)
    flag = g["flag"].fillna(True).to_numpy(bool)        # rows without a map: flagged
    spec = run.spec().set_index("OBJID")
    r_ev = magnitudes(spec.loc[ev["OBJID"].to_numpy()], ("R",))["r"].to_numpy()
    zt, zp = ev["Z"].to_numpy(), ev["Z_PHOT"].to_numpy()
    edges = np.r_[out["r_lo"].to_numpy(), out["r_hi"].to_numpy()[-1:]]
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        ine = (r_ev >= lo) & (r_ev < hi)
        for name, sel in (("flagged", ine & flag), ("unflagged", ine & ~flag)):
            ok = sel.sum() > 0
            out.loc[i, f"n_eval_{name}"] = int(sel.sum())
            out.loc[i, f"mad_{name}"] = metrics.mad(zt[sel], zp[sel]) if ok else np.nan
            out.loc[i, f"eta_{name}"] = metrics.outlier_fraction(zt[sel], zp[sel]) if ok else np.nan
    return out


def score_flag_against_truth(run: Any, *, flagger: Any = None, crossfit: bool = True,
                             seed: int = 0, blend_threshold: float = 0.1,
                             wrong_z_threshold: float = 0.01,
                             outlier_threshold: float = OUTLIER_THRESHOLD,
                             n_thresholds: int = 50, nested: Mapping[str, Any] | None = None,
                             n_folds: int = 5) -> dict[str, Any]:
    """Item 9: the flag as a detector of photo-z outliers, blends and wrong spec-z.

    On the evaluated galaxies of a run (``cells/evaluated.parquet``: out-of-fold photo-z of
    every labelled galaxy, joined with the simulation's truth from ``sky/spec.parquet``),
    flags each galaxy with the run's flagger (``flags/flagger``) and scores the flag and
    its parts, and the alternative flag "P(z) width" at the same fraction flagged, against
    :func:`truth_labels`.

    Parameters
    ----------
    run : photozsom.workflow.pipeline.Run
        A simulated-sky run with the stages data … flags done.
    flagger : Flagger or RegionalFlagger, optional
        Default: ``photozsom.flags.load_flagger(run.root / "flags/flagger")``.
    crossfit : bool
        True (default): score the flag **nested** out of sample — each galaxy flagged with
        the thresholds and the under-performing verdict its fold's other folds chose
        (:func:`run_nested_flags`, leave-one-out training counts), so no number here was
        chosen on the galaxy it scores; the continuous scores use leave-one-out counts and the
        cross-fitted cell outlier rate. False: the flagger's own flag of these galaxies,
        decided on them (optimistic).
    seed : int
        Seed of the folds and halves.
    nested : dict, optional
        A :func:`run_nested_flags` result to reuse (default: computed, ``n_folds`` folds).
    blend_threshold, wrong_z_threshold, outlier_threshold : float
        See :func:`truth_labels`.
    n_thresholds : int
        Thresholds per curve.

    Returns
    -------
    dict
        ``table``: :func:`flag_detection_table` for the flags ``SOM flag``, ``ood``,
        ``under-performing`` and ``P(z) width (same fraction)`` (the widest P(z), as many
        as the SOM flag marks) — the chapter's table; ``curves``: long table of
        :func:`detection_curve` per (truth, score) for the scores of :data:`SCORE_LABELS`
        — the figure's data (:func:`plot_detection`); ``auc``: area under recall vs
        fraction flagged per score and truth (0.5 for a random flag, 1 for a perfect one);
        ``galaxies``: per-galaxy truth, flags and scores; ``settings``.
    """
    from photozsom.flags import load_flagger

    df = _evaluated_with_truth(run)
    if flagger is None:
        flagger = load_flagger(run.need("flags/flagger"))
    truth = truth_labels(df, outlier_threshold=outlier_threshold, blend_threshold=blend_threshold,
                         wrong_z_threshold=wrong_z_threshold)
    fl = _colour_flags(df, flagger, crossfit=crossfit, seed=seed)
    if crossfit:
        if nested is None:
            nested = run_nested_flags(run, flagger=flagger, n_folds=n_folds, seed=seed)
        g = nested["galaxies"].reset_index(drop=True)
        if not (g["OBJID"].to_numpy() == df["OBJID"].to_numpy()).all():
            raise ValueError("the nested flags are not those of this run's evaluated galaxies")
        has = g["SOM"].notna().to_numpy()
        for col in ("ood", "underperforming", "flag"):
            fl[col] = np.where(has, g[col].fillna(True).to_numpy(bool), fl[col].to_numpy(bool))
        fl["n_train"] = fl["n_train"] - g["in_train"].fillna(False).to_numpy(bool)
    width = _pz_width(df)
    frac = float(fl["flag"].mean())
    flags = {"SOM flag": fl["flag"].to_numpy(bool), "ood": fl["ood"].to_numpy(bool),
             "under-performing": fl["underperforming"].to_numpy(bool),
             "P(z) width (same fraction)": top_fraction_flag(width, frac)}
    table = flag_detection_table(truth, flags)
    curves = _curves(truth, _scores(fl, width), n_thresholds)
    galaxies = pd.concat([df[["OBJID", "PHOTSYS", "Z", "Z_TRUE", "Z_PHOT"]].reset_index(drop=True),
                          pd.DataFrame({f"is_{k}": v for k, v in truth.items()}),
                          fl.reset_index(drop=True), pd.Series(width, name="pz_width")], axis=1)
    return {"table": table, "curves": curves, "auc": _auc(curves), "galaxies": galaxies,
            "settings": {"crossfit": crossfit, "seed": seed, "blend_threshold": blend_threshold,
                         "wrong_z_threshold": wrong_z_threshold,
                         "outlier_threshold": outlier_threshold, "fraction_flagged": frac,
                         "n_galaxies": len(df)}}


def compare_maps(run: Any, *, region: str = "S", shape: tuple[int, int] | None = None,
                 seed: int = 0, epochs: int | None = None, crossfit: bool = True,
                 flagger: Any = None, blend_threshold: float = 0.1,
                 wrong_z_threshold: float = 0.01, n_thresholds: int = 50,
                 progress: bool = False, n_folds: int = 5) -> dict[str, Any]:
    """Item 14: a SOM of the random sample's image embeddings beside the colour SOM.

    The embedding map is trained on the embeddings (``embed/embeddings.h5``) of the
    random-sample objects of footprint ``region`` that have one (stars included, as the
    colour map's training sample includes them: a real catalogue does not know which
    are stars), with the colour map's shape. Both maps are then compared on

    - **redshift spread within cells** (:func:`cell_redshift_spread`, std and NMAD): of the
      true redshift of the random sample's *galaxies* (stars, Z_TRUE = 0, left out) that
      both maps place, and of the spectroscopic redshift of the evaluated galaxies;
    - **the flag**: a flag built on each map by the same rule (thin cell: fewer than
      ``min_count`` training-split galaxies, leave-one-out; farther from the prototype than
      the ``distance_quantile`` of the map's training distances; under-performing cells),
      each map **choosing its own** ``min_count`` and ``distance_quantile`` with
      :func:`photozsom.flags.choose_thresholds` — nested out of sample with ``crossfit``
      (:func:`nested_flags`), so neither map is scored on the galaxies that tuned it —
      scored against the truth on the evaluated galaxies of ``region`` that have an
      embedding.

    Parameters
    ----------
    run : photozsom.workflow.pipeline.Run
    region : str
        Footprint whose colour map is compared (``"S"``: DECam with i-band).
    shape : (int, int), optional
        Embedding map size; default the colour map's.
    seed, epochs, progress : SOM training (see :func:`embedding_som`); ``seed`` also seeds
        the cross-fitting halves.
    crossfit, flagger, blend_threshold, wrong_z_threshold, n_thresholds :
        As in :func:`score_flag_against_truth`.

    Returns
    -------
    dict
        ``spread``: one row per map (``colour``, ``embedding``, and ``none``: one cell
        holding everything) with ``n_cells``, ``occupied`` (cells holding random
        galaxies), ``random_std``, ``random_nmad`` (true z of random galaxies),
        ``spec_std``, ``spec_nmad`` (spec-z of evaluated galaxies); ``table``:
        :func:`flag_detection_table` of the colour flag, the embedding flag and the P(z)
        width at each flag's fraction; ``curves``: :func:`detection_curve` per (truth,
        score) with scores ``colour: n_train``, ``embedding: n_train``, ``colour:
        cell_eta``, ``embedding: cell_eta``, ``pz_width``; ``auc``; ``som`` (the embedding
        map); ``settings``.
    """
    from photozsom.embed import load_embeddings
    from photozsom.flags import RegionalFlagger, load_flagger
    from photozsom.workflow import pipeline

    if flagger is None:
        flagger = load_flagger(run.need("flags/flagger"))
    regional = dict(flagger.flaggers) if hasattr(flagger, "flaggers") else {region: flagger}
    if region not in regional:
        raise ValueError(f"the flagger has no map for region {region!r}; it has {sorted(regional)}")
    cfl = regional[region]
    colour_som = cfl.som
    shape = tuple(shape) if shape is not None else tuple(colour_som.shape)

    emb_all, ids_all = load_embeddings(run.need("embed/embeddings.h5"))
    emb_index = pd.Index(np.asarray(ids_all))

    def embeddings_of(objid: np.ndarray) -> np.ndarray:
        pos = emb_index.get_indexer(objid)
        out = np.full((len(objid), emb_all.shape[1]), np.nan, dtype=np.float32)
        out[pos >= 0] = emb_all[pos[pos >= 0]]
        return out

    random = run.random()
    in_region = (random["PHOTSYS"].astype(str).str.strip().str.upper() == region).to_numpy()
    rnd = random[in_region].reset_index(drop=True)
    E_rnd = embeddings_of(rnd["OBJID"].to_numpy())
    has_e = np.isfinite(E_rnd).all(axis=1)
    esom = embedding_som(E_rnd[has_e], shape, seed=seed, epochs=epochs, progress=progress)

    # --- redshift spread on the random sample's galaxies placed by both maps
    is_star = rnd["IS_STAR"].to_numpy(bool) if "IS_STAR" in rnd else np.zeros(len(rnd), bool)
    if "Z_TRUE" not in rnd:
        raise ValueError("the random sample lacks Z_TRUE: compare_maps needs the simulated sky")
    ccell = pipeline.spec_cells(rnd, {region: colour_som})["CELL"].to_numpy()
    ecell = np.full(len(rnd), -1, dtype=np.int64)
    ecell[has_e] = esom.predict(E_rnd[has_e])
    both = (ccell >= 0) & (ecell >= 0) & ~is_star
    zt_r = rnd["Z_TRUE"].to_numpy(np.float64)

    # --- evaluated galaxies of the region with an embedding
    df = _evaluated_with_truth(run)
    df = df[(df["PHOTSYS"].astype(str).str.strip().str.upper() == region).to_numpy()]
    E_ev = embeddings_of(df["OBJID"].to_numpy())
    ok_ev = np.isfinite(E_ev).all(axis=1)
    df, E_ev = df[ok_ev].reset_index(drop=True), E_ev[ok_ev]
    col = _colour_flags(df, RegionalFlagger({region: cfl}), crossfit=crossfit, seed=seed)
    e_c, e_d = esom.predict_with_distances(E_ev)

    # training counts of the embedding map: the training split's spectroscopic galaxies
    spec = run.spec_with_split()
    tr = spec[(spec["SPLIT"] == "train").to_numpy()
              & (spec["PHOTSYS"].astype(str).str.strip().str.upper() == region).to_numpy()]
    E_tr = embeddings_of(tr["OBJID"].to_numpy())
    E_tr = E_tr[np.isfinite(E_tr).all(axis=1)]
    e_counts = np.bincount(esom.predict(E_tr), minlength=esom.n_cells) if len(E_tr) else \
        np.zeros(esom.n_cells, np.int64)
    settings = cfl.report.settings
    cf = crossfit_underperforming(e_c, df["Z"].to_numpy(), df["Z_PHOT"].to_numpy(),
                                  df["PIT"].to_numpy(), esom.n_cells, e_counts,
                                  metrics=cfl.metrics, fdr=float(settings.get("fdr", 0.05)),
                                  fdr_scope=str(settings.get("fdr_scope", "all")), seed=seed,
                                  crossfit=crossfit)
    # each map chooses its own thresholds by the same rule, on its own cells and counts, with
    # the random sample of the region (as each map sees it) as the user's sample
    in_train = (run.split().reindex(df["OBJID"].to_numpy()) == "train").to_numpy()
    r_e, r_d = np.full(len(rnd), -1, np.int64), np.full(len(rnd), np.nan)
    r_e[has_e], r_d[has_e] = esom.predict_with_distances(E_rnd[has_e])
    r_c = pipeline.spec_cells(rnd, {region: colour_som})
    common = {"z_true": df["Z"].to_numpy(), "z_pred": df["Z_PHOT"].to_numpy(),
              "pit_values": df["PIT"].to_numpy(), "in_train": in_train, "metrics": cfl.metrics,
              "fdr": float(settings.get("fdr", 0.05)),
              "fdr_scope": str(settings.get("fdr_scope", "all")), "seed": seed,
              "fallback": (cfl.min_count, cfl.distance_quantile)}
    kinds = {"colour": (colour_som, cfl.train_counts, col["cell"].to_numpy(),
                        col["distance"].to_numpy(), r_c["CELL"].to_numpy(), r_c["DIST"].to_numpy()),
             "embedding": (esom, e_counts, e_c, e_d, r_e, r_d)}
    out_flags, chosen = {}, {}
    for name, (m, cnt, c_ev, d_ev, c_r, d_r) in kinds.items():
        ok_r = c_r >= 0
        if crossfit:
            nf = nested_flags(m, cnt, c_ev, d_ev, sample_cell=c_r[ok_r],
                              sample_distance=d_r[ok_r], n_folds=n_folds, **common)
            out_flags[name] = nf
            chosen[name] = sorted({(int(a), float(b)) for a, b in
                                   zip(nf["min_count"], nf["distance_quantile"], strict=True)
                                   if a >= 0})
        else:
            from photozsom.flags import choose_thresholds, out_of_distribution

            try:
                ch = choose_thresholds(m, cnt, c_ev, d_ev, common["z_true"], common["z_pred"],
                                       in_train=in_train, pit_values=common["pit_values"],
                                       sample_cell=c_r[ok_r], sample_distance=d_r[ok_r])
                pair = (ch.min_count, ch.distance_quantile)
            except ValueError:
                pair = common["fallback"]
            loo = cnt[np.where(c_ev >= 0, c_ev, 0)] - in_train
            ood = (c_ev < 0) | out_of_distribution(loo, d_ev, pair[0],
                                                   m.distance_threshold(pair[1]))
            under = (col["underperforming"].to_numpy(bool) if name == "colour"
                     else cf["underperforming"].to_numpy(bool))
            out_flags[name] = pd.DataFrame({"ood": ood, "underperforming": under,
                                            "flag": ood | under})
            chosen[name] = [pair]
    col["ood"] = out_flags["colour"]["ood"].to_numpy(bool)
    col["underperforming"] = out_flags["colour"]["underperforming"].to_numpy(bool)
    col["flag"] = out_flags["colour"]["flag"].to_numpy(bool)
    e_ood = out_flags["embedding"]["ood"].to_numpy(bool)
    e_under = out_flags["embedding"]["underperforming"].to_numpy(bool)
    e_flag = out_flags["embedding"]["flag"].to_numpy(bool)

    spread_rows = []
    zs_ev = df["Z"].to_numpy(np.float64)
    for name, cr, ce, n_cells in (("colour", ccell, col["cell"].to_numpy(), colour_som.n_cells),
                                  ("embedding", ecell, e_c, esom.n_cells),
                                  ("none", np.zeros(len(rnd), np.int64),
                                   np.zeros(len(df), np.int64), 1)):
        spread_rows.append({
            "map": name, "n_cells": n_cells, "occupied": int(np.unique(cr[both]).size),
            "random_std": cell_redshift_spread(cr[both], zt_r[both]),
            "random_nmad": cell_redshift_spread(cr[both], zt_r[both], statistic="nmad"),
            "spec_std": cell_redshift_spread(ce, zs_ev),
            "spec_nmad": cell_redshift_spread(ce, zs_ev, statistic="nmad")})
    spread = pd.DataFrame(spread_rows).set_index("map")

    truth = truth_labels(df, blend_threshold=blend_threshold, wrong_z_threshold=wrong_z_threshold)
    width = _pz_width(df)
    c_flag = col["flag"].to_numpy(bool)
    flags = {"colour SOM flag": c_flag, "embedding SOM flag": e_flag,
             "colour ood": col["ood"].to_numpy(bool), "embedding ood": e_ood,
             "colour under-performing": col["underperforming"].to_numpy(bool),
             "embedding under-performing": e_under,
             "P(z) width (colour flag's fraction)": top_fraction_flag(width, float(c_flag.mean())),
             "P(z) width (embedding flag's fraction)": top_fraction_flag(width, float(e_flag.mean()))}
    table = flag_detection_table(truth, flags)
    scores = {"colour: n_train": (col["n_train"].to_numpy(float), False),
              "embedding: n_train": (e_counts[e_c].astype(float), False),
              "colour: cell_eta": (col["cell_eta"].to_numpy(float), True),
              "embedding: cell_eta": (cf["cell_eta"].to_numpy(float), True),
              "pz_width": (width, True)}
    curves = _curves(truth, scores, n_thresholds)
    return {"spread": spread, "table": table, "curves": curves, "auc": _auc(curves), "som": esom,
            "settings": {"region": region, "shape": shape, "seed": seed, "crossfit": crossfit,
                         "n_random_train": int(has_e.sum()), "n_random_compared": int(both.sum()),
                         "n_evaluated": len(df), "embedding_dim": int(emb_all.shape[1]),
                         "min_count": cfl.min_count, "distance_quantile": cfl.distance_quantile,
                         "chosen": chosen, "n_folds": n_folds if crossfit else None}}


# ---------------------------------------------------------------------------------------------
# robustness of the per-cell significance to the seeds
# ---------------------------------------------------------------------------------------------
def significance_across_seeds(run: Any, seeds: Sequence[int] = (0, 1, 2, 3, 4), *,
                              scale: str = "ci", region: str = "S", n_boot: int | None = None,
                              fdr: float = 0.05, progress: bool = False) -> dict[str, Any]:
    """How many cells come out significant, seed by seed.

    For each seed the random parts of the per-cell analysis are redone with that seed: the
    SOM of ``region`` (same shape and features, trained on the same random sample), the
    out-of-fold MDNs (fold assignment and weights; the inputs, the image embeddings, stay
    those of the run) and the bootstrap of :func:`photozsom.evaluation.cells.report`. Where a seed
    equals the seed the run's own stage used, the run's output is reused (the SOM, the
    out-of-fold predictions), so seed 0 reproduces the book's report. Cells are not the same
    objects on two maps, so stability is measured on galaxies: in how many seeds each
    evaluated galaxy falls in a cell significantly worse than global (any metric).

    Parameters
    ----------
    run : photozsom.workflow.pipeline.Run
        A run with the som, mdn and cells stages done (out-of-fold evaluation).
    seeds : sequence of int
        Seeds to compare (the issue's default: five).
    scale : str
        Preset of ``n_boot`` (:data:`photozsom.workflow.pipeline.SCALES`).
    region : str
        Map to analyse ("S": the southern map, as Figures 1 and 8).
    n_boot, fdr : int, float
        Bootstrap resamples (None: the preset) and false discovery rate, as the cells stage.

    Returns
    -------
    dict
        ``per_seed`` (DataFrame, one row per seed: ``n_cells`` with at least two evaluated
        galaxies, ``<m>_signif`` and ``<m>_worse`` cell counts per metric, ``any_worse``
        cells, ``frac_galaxies_worse``: share of evaluated galaxies in those cells),
        ``summary`` (mean, std, min, max of those columns over the seeds) and ``stability``
        (share of evaluated galaxies in a worse cell in at least one seed, in every seed,
        and the mean pairwise Jaccard index of those galaxy sets) and ``galaxies``
        (DataFrame indexed by OBJID, one boolean column per seed: in a worse cell).
    """
    from photozsom.evaluation.cells import METRICS
    from photozsom.model import PhotoZModel
    from photozsom.workflow import pipeline

    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"need at least two distinct seeds, got {seeds}")
    som_prov = (run.provenance("som") or {}).get("params", {})
    mdn_prov = (run.provenance("mdn") or {}).get("params", {})
    if not mdn_prov.get("cv_folds"):
        raise ValueError("the run's mdn stage made no out-of-fold predictions (cv_folds=0)")
    p = pipeline.preset(scale, n_boot=n_boot)
    maps = pipeline.load_maps(run)
    if region not in maps:
        raise ValueError(f"the run has no map {region!r}; it has {sorted(maps)}")
    shape = maps[region].shape
    random, spec = run.random(), run.spec_with_split()
    split = run.split()
    model = PhotoZModel.load(run.need("mdn/model"))
    spec_in = pipeline.model_inputs(run, spec, model.features)

    rows, worse_sets = [], []
    for seed in seeds:
        if seed == som_prov.get("seed"):
            som = maps[region]
        else:
            som, _ = pipeline.train_region_map(random, region, shape, seed=seed,
                                               epochs=som_prov.get("epochs"),
                                               backend=som_prov.get("backend", "torch"),
                                               progress=progress)
        sc = pipeline.spec_cells(spec, {region: som}).set_index("OBJID")
        if seed == mdn_prov.get("seed"):
            oof = pd.read_parquet(run.need("mdn/oof_predictions.parquet"))
        else:
            oof, _ = pipeline.oof_predictions(model, spec_in, cv_folds=int(mdn_prov["cv_folds"]),
                                              seed=seed, progress=progress)
        ev = oof.join(sc, on="OBJID")
        rep = pipeline.cell_reports(ev, sc, split, {region: som}, n_boot=int(p["n_boot"]),
                                    seed=seed, fdr=fdr)[region]
        t = rep.table
        worse_cells = rep.worse()
        sel = (ev["SOM"] == region).to_numpy() & (ev["CELL"].to_numpy() >= 0)
        e = ev[sel]
        in_worse = worse_cells[e["CELL"].to_numpy()]
        row = {"seed": seed, "n_cells": int((t["status"] == "ok").sum())}
        for m in METRICS:
            row[f"{m}_signif"] = int(t[f"{m}_signif"].sum())
            row[f"{m}_worse"] = int(t[f"{m}_worse"].sum())
        row["any_worse"] = int(worse_cells.sum())
        row["frac_galaxies_worse"] = float(in_worse.mean())
        rows.append(row)
        worse_sets.append(pd.Series(in_worse, index=e["OBJID"].to_numpy()))
    per_seed = pd.DataFrame(rows).set_index("seed")
    summary = per_seed.agg(["mean", "std", "min", "max"]).T
    # galaxies evaluated under every seed (the same labelled galaxies, unless a seed's map
    # could not place some)
    common = worse_sets[0].index
    for w in worse_sets[1:]:
        common = common.intersection(w.index)
    W = np.column_stack([w.reindex(common).to_numpy(dtype=bool) for w in worse_sets])
    galaxies = pd.DataFrame(W, index=common, columns=seeds)
    jac = []
    for i in range(W.shape[1]):
        for j in range(i + 1, W.shape[1]):
            union = (W[:, i] | W[:, j]).sum()
            jac.append((W[:, i] & W[:, j]).sum() / union if union else np.nan)
    stability = {"n_galaxies": len(common),
                 "frac_worse_any_seed": float(W.any(axis=1).mean()),
                 "frac_worse_every_seed": float(W.all(axis=1).mean()),
                 "mean_pairwise_jaccard": float(np.nanmean(jac)) if jac else np.nan}
    return {"per_seed": per_seed, "summary": summary, "stability": stability,
            "galaxies": galaxies}
