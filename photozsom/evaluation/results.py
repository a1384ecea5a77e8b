"""Per-galaxy prediction tables and the paper's Table 1.

:func:`prediction_table` turns a :class:`~photozsom.pdf.MixturePDF` into one row per galaxy
(point estimate, 90% and 99% intervals, PIT, CRPS) keyed by ``OBJID``; :func:`table1`
evaluates several models on the galaxies they all predicted (the paper's "matched subset")
and puts the paper's own values beside ours.

Like for like: :func:`published_table` scores the published DR10 photo-z catalogue with its
own point value (``Z_PHOT_MEDIAN``) and leaves PCO and CRPS unknown (the catalogue publishes
five quantiles, no tails); :func:`calibration_variants` and :func:`recalibrated_table` give
every model with and without its post-hoc calibration; :func:`bootstrap_replicates` resamples
the test galaxies once for all rows, so :func:`table1` carries a ``±`` per entry and
:func:`compare_models` names a winner only where a difference exceeds its paired bootstrap
uncertainty.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from photozsom.baseline import published_photoz_pdf
from photozsom.calibrate import Recalibrator
from photozsom.evaluation import metrics
from photozsom.evaluation.cells import METRICS, deviation
from photozsom.features import magnitudes
from photozsom.schema import point_column

__all__ = ["PAPER_TABLE1", "POINT_ESTIMATE", "PUBLISHED_NOTE", "PUBLISHED_PHOTOZ",
           "bootstrap_replicates", "calibration_summary", "calibration_variants",
           "compare_models", "deviating_cells", "flag_comparison", "flag_magnitude_table",
           "format_table1",
           "matched", "metrics_table", "prediction_table", "published_table",
           "recalibrated_table", "table1"]

#: The point estimate used throughout: the mean of P(z|X), the paper's <P(z|X)>.
POINT_ESTIMATE = "mean"

#: Table 1 of the paper (test set; the Zhou et al. model on a matched subset).
PAPER_TABLE1 = pd.DataFrame(
    {"MAD": [0.029, 0.024], "bias": [-0.006, -0.013], "eta_%": [3.90, 4.91], "PCO_%": [1.40, 2.15],
     "R2": [0.88, 0.84]},
    index=["paper: AION-1 MDN", "paper: Zhou et al. random forest"],
)


def prediction_table(pdf, objid: np.ndarray, z_true: np.ndarray, *, point: str = POINT_ESTIMATE) -> pd.DataFrame:
    """One row per galaxy: ``OBJID, Z, Z_PHOT_<POINT>, Z_PHOT_L90, Z_PHOT_U90, Z_PHOT_L99, Z_PHOT_U99, PIT, CRPS``.

    Parameters
    ----------
    pdf : MixturePDF, N rows
    objid : ndarray, shape (N,)
    z_true : ndarray, shape (N,)
        Spectroscopic redshifts.
    point : {"mean", "median", "mode"}
        Which summary of P(z|X) is the point estimate the metrics score: the table's
        ``Z_PHOT_MEAN``, ``Z_PHOT_MEDIAN`` or ``Z_PHOT_MODE`` column (the names of
        :data:`photozsom.schema.OUTPUT_COLUMNS`; :func:`photozsom.schema.point_column`).
    """
    if point not in ("mean", "median", "mode"):
        raise ValueError(f"point must be 'mean', 'median' or 'mode', got {point!r}")
    z_true = np.asarray(z_true, dtype=np.float64)
    if not (len(pdf) == len(objid) == len(z_true)):
        raise ValueError(f"pdf ({len(pdf)}), objid ({len(objid)}) and z_true ({len(z_true)}) differ in length")
    lo90, hi90 = pdf.interval(0.90)
    lo99, hi99 = pdf.interval(0.99)
    return pd.DataFrame({
        "OBJID": np.asarray(objid, dtype=np.int64), "Z": z_true, f"Z_PHOT_{point.upper()}": getattr(pdf, point)(),
        "Z_PHOT_L90": lo90, "Z_PHOT_U90": hi90, "Z_PHOT_L99": lo99, "Z_PHOT_U99": hi99,
        "PIT": pdf.pit(z_true), "CRPS": pdf.crps(z_true),
    })


def matched(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Restrict every prediction table to the OBJIDs that all of them hold (same order)."""
    common = None
    for t in tables.values():
        ids = pd.Index(t["OBJID"])
        common = ids if common is None else common.intersection(ids)
    common = common.sort_values()
    return {k: t.set_index("OBJID").loc[common].reset_index() for k, t in tables.items()}


#: Why the published catalogue's row has no PCO and CRPS (:func:`published_table`).
PUBLISHED_NOTE = ("PCO and CRPS unknown: the catalogue publishes five quantiles (L95, L68, median, "
                  "U68, U95), not its P(z); the tails beyond L95/U95 that decide PCO are unpublished")


def published_table(catalogue, *, objid: str = "OBJID", z: str = "Z") -> pd.DataFrame:
    """Prediction table of the published DR10 photo-z catalogue (Zhou et al.), like for like.

    The point estimate is the catalogue's own ``Z_PHOT_MEDIAN`` (not a summary of a
    reconstructed P(z)). ``PIT``, ``CRPS`` and the 99% interval are NaN: they need the P(z)
    beyond ``Z_PHOT_L95``/``Z_PHOT_U95``, which the catalogue does not publish, so
    :func:`metrics_table` reports the PCO and CRPS of this row as NaN and :func:`table1` adds
    :data:`PUBLISHED_NOTE`. ``Z_PHOT_L90``/``Z_PHOT_U90`` lie between the published 68% and 95%
    bounds and come from :func:`photozsom.baseline.published_photoz_pdf` (linear CDF between
    the quantiles, about one grid spacing accurate). ``OUT68``/``OUT95`` are exact: the truth
    outside the published central 68% / 95% interval.

    Parameters
    ----------
    catalogue : DataFrame
        One row per galaxy with ``objid``, ``z`` (spectroscopic redshift) and the published
        columns ``Z_PHOT_MEDIAN, Z_PHOT_L68, Z_PHOT_U68, Z_PHOT_L95, Z_PHOT_U95``; rows must
        pass :func:`photozsom.baseline.published_photoz_valid` (select them first).

    Returns
    -------
    DataFrame
        The :func:`prediction_table` columns plus ``OUT68``, ``OUT95`` (bool) and ``NOTE``.
    """

    for col in (objid, z):
        if col not in catalogue:
            raise ValueError(f"published_table: the catalogue lacks the column {col!r} (pass "
                             f"objid=/z= to name the object id and spectroscopic redshift)")
    pdf = published_photoz_pdf(catalogue)                 # checks the quantile columns and rows
    zt = np.asarray(catalogue[z], dtype=np.float64)
    q = {c: np.asarray(catalogue[c], dtype=np.float64)
         for c in ("Z_PHOT_MEDIAN", "Z_PHOT_L68", "Z_PHOT_U68", "Z_PHOT_L95", "Z_PHOT_U95")}
    lo90, hi90 = pdf.interval(0.90)
    nan = np.full(len(zt), np.nan)
    return pd.DataFrame({
        "OBJID": np.asarray(catalogue[objid], dtype=np.int64), "Z": zt, "Z_PHOT_MEDIAN": q["Z_PHOT_MEDIAN"],
        "Z_PHOT_L90": lo90, "Z_PHOT_U90": hi90, "Z_PHOT_L99": nan, "Z_PHOT_U99": nan, "PIT": nan, "CRPS": nan,
        "OUT68": (zt < q["Z_PHOT_L68"]) | (zt > q["Z_PHOT_U68"]),
        "OUT95": (zt < q["Z_PHOT_L95"]) | (zt > q["Z_PHOT_U95"]),
        "NOTE": PUBLISHED_NOTE,
    })


def calibration_variants(model, catalogue, *, objid: str = "OBJID",
                         z: str = "Z") -> dict[str, pd.DataFrame]:
    """A fitted :class:`~photozsom.model.PhotoZModel` with and without its post-hoc calibration.

    Returns
    -------
    dict
        ``"uncalibrated"``: the estimator's own P(z) — for the random forest the raw
        histogram of its trees (:meth:`RandomForestPhotoZ.predict` with ``raw=True``), since
        the kernel width fitted on the validation CRPS is itself a post-hoc calibration;
        ``"smoothed"`` (forest only): the trees smoothed with that width;
        ``"recalibrated"`` (when the model holds a global recalibrator): the model's full
        prediction (smoothing, then the :class:`~photozsom.calibrate.Recalibrator` fitted on
        the validation split). Each a :func:`prediction_table` of the rows the model can
        score (the same rows in every variant).
    """
    for col in (objid, z):
        if col not in catalogue:
            raise ValueError(f"calibration_variants: the catalogue lacks the column {col!r} (pass "
                             f"objid=/z= to name the object id and spectroscopic redshift)")
    rc = getattr(model, "recalibrator_", None)
    if rc is not None and rc.kind != "global":
        raise ValueError("calibration_variants handles global recalibration only; this model "
                         "recalibrates per SOM cell (recalibration='cell')")
    X, ok, _ = model.transform(catalogue)
    ids = np.asarray(catalogue[objid])[ok]
    zt = np.asarray(catalogue[z], dtype=np.float64)[ok]
    est = model.estimator_
    out = {}
    if model.estimator == "random_forest":
        out["uncalibrated"] = prediction_table(est.predict(X[ok], raw=True), ids, zt)
        smoothed = est.predict(X[ok])
        out["smoothed"] = prediction_table(smoothed, ids, zt)
    else:
        smoothed = est.predict(X[ok])
        out["uncalibrated"] = prediction_table(smoothed, ids, zt)
    if rc is not None:
        out["recalibrated"] = prediction_table(rc.apply(smoothed), ids, zt)
    return out


def recalibrated_table(pdf_fit, z_fit: np.ndarray, pdf, objid: np.ndarray, z_true: np.ndarray, *,
                       kind: str = "global", cells_fit: np.ndarray | None = None,
                       cells: np.ndarray | None = None) -> pd.DataFrame:
    """:func:`prediction_table` of ``pdf`` recalibrated by a map fitted on other galaxies.

    As the calibration stage does (:func:`photozsom.workflow.pipeline.run_calibrate`): a
    :class:`~photozsom.calibrate.Recalibrator` fitted on held-out P(z) (out-of-fold or the
    validation split, never the galaxies scored) and applied to the test P(z).

    Parameters
    ----------
    pdf_fit : MixturePDF
        Held-out P(z) the map is fitted on; ``z_fit`` their spectroscopic redshifts.
    pdf : MixturePDF
        The P(z) to recalibrate (``objid``, ``z_true``: their ids and redshifts).
    kind : {"global", "cell"}
        ``"cell"`` needs ``cells_fit`` and ``cells``.
    """

    rc = Recalibrator(kind).fit(pdf_fit, np.asarray(z_fit, dtype=np.float64), cells=cells_fit)
    return prediction_table(rc.apply(pdf, cells=cells), objid, z_true)


#: Table 1 columns that :func:`bootstrap_replicates` resamples (N is fixed).
_METRIC_COLUMNS = ["MAD", "bias", "eta_%", "PCO_%", "R2", "CRPS"]


def _pco_percent(pit: np.ndarray) -> float:
    """PCO in per cent; NaN when a PIT is unknown (NaN), e.g. the published catalogue."""
    pit = np.asarray(pit, dtype=np.float64)
    if np.isnan(pit).any():
        return float("nan")
    return 100 * metrics.pco_fraction(np.clip(pit, 0, 1))


def metrics_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """MAD, bias, eta, PCO, R^2, mean CRPS and N of each prediction table, as they are.

    Parameters
    ----------
    tables : mapping name -> :func:`prediction_table` output (or any subset of its rows)
        Tables with fewer than two rows give NaN metrics (and their N). A table whose
        ``PIT`` (``CRPS``) holds NaN — :func:`published_table` — gets a NaN PCO (CRPS):
        unknown, not zero.
    """
    rows = {}
    for name, t in tables.items():
        if len(t) < 2:
            rows[name] = {"N": len(t)}
            continue
        pm = metrics.point_metrics(t["Z"].to_numpy(), t[point_column(t, name)].to_numpy())
        rows[name] = {"MAD": pm["mad"], "bias": pm["bias"], "eta_%": 100 * pm["eta"],
                      "PCO_%": _pco_percent(t["PIT"].to_numpy()), "R2": pm["r2"],
                      "CRPS": float(np.mean(t["CRPS"])) if "CRPS" in t else np.nan,
                      "N": int(pm["n"])}
    out = pd.DataFrame(rows).T.reindex(columns=["MAD", "bias", "eta_%", "PCO_%", "R2", "CRPS", "N"])
    out["N"] = out["N"].astype("Int64")
    return out


def _weighted_medians(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Median of ``x`` (n,) under each row of integer weights ``w`` (b, n): (b,).

    The rule of :func:`photozsom.evaluation.metrics.weighted_median`: the first sorted value where the
    cumulative weight reaches half the total, the mean with the next weighted value when it
    lands exactly on half.
    """
    order = np.argsort(x, kind="stable")
    xs = x[order]
    cw = np.cumsum(w[:, order], axis=1)
    half = 0.5 * cw[:, -1:]
    i = np.argmax(cw >= half, axis=1)
    j = np.argmax(cw > half, axis=1)
    on_edge = cw[np.arange(len(i)), i] == half[:, 0]
    return np.where(on_edge, 0.5 * (xs[i] + xs[j]), xs[i])


def bootstrap_replicates(tables: Mapping[str, pd.DataFrame], *, n_boot: int = 200, seed: int = 0,
                         block: int = 32) -> dict[str, pd.DataFrame]:
    """Bootstrap replicates of the Table 1 metrics, paired across models.

    The tables are restricted to the galaxies they all hold (:func:`matched`); each
    replicate draws that many test galaxies with replacement, and the *same* draw scores
    every model, so the spread of a difference between two rows is its paired uncertainty
    (the galaxy-to-galaxy variation the models share cancels).

    Parameters
    ----------
    tables : mapping name -> :func:`prediction_table` output
    n_boot : int
        Resamples (>= 20).
    seed : int
        Seed of the resampling (``numpy.random.default_rng``).
    block : int
        Resamples computed at once (memory ``block * N`` floats).

    Returns
    -------
    dict name -> DataFrame, shape (n_boot, 6)
        Columns ``MAD, bias, eta_%, PCO_%, R2, CRPS`` as :func:`metrics_table` computes
        them, one row per resample (NaN columns stay NaN: the published row's PCO).
    """
    if int(n_boot) < 20:
        raise ValueError(f"n_boot must be >= 20 for a standard error, got {n_boot}")
    m = matched(tables)
    n = len(next(iter(m.values())))
    if n < 2:
        raise ValueError(f"the tables share {n} galaxies; a bootstrap needs at least 2")
    prep = {}
    for name, t in m.items():
        zt, zp = t["Z"].to_numpy(np.float64), t[point_column(t, name)].to_numpy(np.float64)
        metrics.check_redshifts(zt, zp)
        dz = (zp - zt) / (1.0 + zt)
        pit = t["PIT"].to_numpy(np.float64)
        pco = (metrics.pco_mask(np.clip(pit, 0, 1)).astype(float) if not np.isnan(pit).any()
               else np.full(n, np.nan))
        crps = t["CRPS"].to_numpy(np.float64) if "CRPS" in t else np.full(n, np.nan)
        prep[name] = (zt, np.abs(dz), np.column_stack(
            [dz, np.abs(dz) > metrics.OUTLIER_THRESHOLD, pco, crps, zt, zt ** 2, (zp - zt) ** 2]))
    rng = np.random.default_rng(seed)
    out = {name: np.empty((int(n_boot), len(_METRIC_COLUMNS))) for name in m}
    for s in range(0, int(n_boot), int(block)):
        b = min(int(block), int(n_boot) - s)
        draw = rng.integers(0, n, size=(b, n))
        w = np.bincount((np.arange(b)[:, None] * n + draw).ravel(),
                        minlength=b * n).reshape(b, n).astype(np.float64)
        for name, (zt, adz, cols) in prep.items():
            mean = w @ cols / n                                  # (b, 7) resampled means
            ss_tot = n * (mean[:, 5] - mean[:, 4] ** 2)
            r2 = np.where(ss_tot > 0, 1.0 - n * mean[:, 6] / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
            out[name][s:s + b] = np.column_stack([
                metrics.MAD_SCALE * _weighted_medians(adz, w), mean[:, 0], 100 * mean[:, 1],
                100 * mean[:, 2], r2, mean[:, 3]])
    return {name: pd.DataFrame(v, columns=_METRIC_COLUMNS) for name, v in out.items()}


def table1(tables: Mapping[str, pd.DataFrame], *, with_paper: bool = True,
           replicates: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Table 1: :func:`metrics_table` of each model on the matched subset, and the paper's rows.

    Parameters
    ----------
    tables : mapping model name -> :func:`prediction_table` output
        Evaluated on the galaxies common to all (:func:`matched`).
    with_paper : bool
        Append the paper's rows (:data:`PAPER_TABLE1`) for reference.
    replicates : mapping, optional
        :func:`bootstrap_replicates` of the same tables: adds a ``<metric> ±`` column per
        metric, the bootstrap standard error (NaN for the paper's rows, which give none).

    Returns
    -------
    DataFrame
        ``MAD, bias, eta_%, PCO_%, R2, CRPS, N`` (and the ``±`` columns); a ``note``
        column when a row carries one (the published catalogue's unknown PCO and CRPS).
    """
    m = matched(tables)
    out = metrics_table(m)
    if replicates is not None:
        missing = [k for k in m if k not in replicates]
        if missing:
            raise ValueError(f"replicates lack the row(s) {missing}: compute "
                             "bootstrap_replicates(tables) of the same tables")
        for col in _METRIC_COLUMNS:
            out[f"{col} ±"] = [float(replicates[k][col].std(ddof=1)) for k in out.index]
        order = [c for col in _METRIC_COLUMNS for c in (col, f"{col} ±")] + ["N"]
        out = out[order]
    notes = {k: str(t["NOTE"].iloc[0]) for k, t in m.items() if "NOTE" in t and len(t)}
    if notes:
        out["note"] = pd.Series(notes).reindex(out.index).fillna("")
    if with_paper:
        out = pd.concat([out, PAPER_TABLE1])
        out["N"] = out["N"].astype("Int64")
        if "note" in out:
            out["note"] = out["note"].fillna("")
    return out


def format_table1(t1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as text: ``value ± error`` per metric ("—" where unknown), N and the note.

    Parameters
    ----------
    t1 : DataFrame
        :func:`table1` output (with or without the ``±`` columns).
    """
    fmt = {"MAD": "{:.4f}", "bias": "{:+.4f}", "eta_%": "{:.2f}", "PCO_%": "{:.2f}", "R2": "{:.3f}",
           "CRPS": "{:.4f}"}
    out = pd.DataFrame(index=t1.index)
    for col, f in fmt.items():
        if col not in t1:
            continue
        v = t1[col].to_numpy(float)
        e = t1[f"{col} ±"].to_numpy(float) if f"{col} ±" in t1 else np.full(len(t1), np.nan)
        out[col] = [("—" if not np.isfinite(a) else f.format(a) if not np.isfinite(b)
                     else f"{f.format(a)} ± {f.format(b).lstrip('+')}") for a, b in zip(v, e, strict=True)]
    out["N"] = ["—" if pd.isna(n) else f"{int(n):,}" for n in t1["N"]]
    if "note" in t1:
        out["note"] = t1["note"].fillna("")
    return out


#: How "better" is judged per Table 1 column: a score to minimise.
_BETTER = {
    "MAD": ("scatter (MAD)", lambda v: v),
    "bias": ("|bias|", np.abs),
    "eta_%": ("outlier rate η", lambda v: v),
    "PCO_%": ("calibration (PCO closest to the nominal 1%)", lambda v: np.abs(v - 1.0)),
    "R2": ("R²", lambda v: -v),
    "CRPS": ("mean CRPS", lambda v: v),
}


def _winner(d: float, threshold: float = 0.0) -> str:
    if not np.isfinite(d) or not np.isfinite(threshold):
        return "unknown"
    if abs(d) <= threshold or np.isclose(d, 0.0, rtol=0, atol=1e-12):
        return "tie" if threshold == 0.0 else "no significant difference"
    return "image model" if d < 0 else "catalogue model"


def compare_models(t1: pd.DataFrame, ours: tuple[str, str],
                   paper: tuple[str, str] = tuple(PAPER_TABLE1.index), *,
                   replicates: Mapping[str, pd.DataFrame], z: float = 1.96) -> pd.DataFrame:
    """Which of two models wins each Table 1 metric here (beyond the noise) and in the paper.

    For each metric the score to minimise (MAD; |bias|; η; |PCO - 1%|; -R²; CRPS) is
    compared: ``difference`` = score(image model) - score(catalogue model), negative when
    the image model is better. Its standard error ``se`` is the standard deviation of the
    same difference over the paired bootstrap replicates (:func:`bootstrap_replicates`: both
    rows scored on each resample), and a winner is named only when ``|difference| > z * se``;
    otherwise "no significant difference". The paper's rows carry no uncertainty, so its
    winner is read from the values.

    Parameters
    ----------
    t1 : DataFrame
        Output of :func:`table1` (with the paper's rows).
    ours : (str, str)
        Row names of the image model and the catalogue model in ``t1``.
    paper : (str, str)
        The paper's rows in the same order (AION-1 MDN, random forest).
    replicates : mapping
        :func:`bootstrap_replicates` of the tables behind ``t1`` (required: no winner
        without an uncertainty).
    z : float
        Multiple of the standard error a difference must exceed (1.96: two-sided 5%).

    Returns
    -------
    DataFrame
        One row per metric: ``criterion``, ``difference``, ``se``, ``winner_here`` ("image
        model", "catalogue model", "no significant difference", "tie" when the values and
        every replicate are equal, or "unknown" where a value is NaN), ``winner_paper``
        ("not in the paper" for CRPS) and ``agrees`` (the same named winner in both).
    """
    missing = [k for k in ours if k not in replicates]
    if missing:
        raise ValueError(f"replicates lack the row(s) {missing}: pass "
                         "bootstrap_replicates(tables) of the tables behind t1")
    if not z > 0:
        raise ValueError(f"z must be > 0, got {z}")
    a, b = ours
    rows = {}
    for col, (criterion, score) in _BETTER.items():
        if col not in t1.columns:
            continue
        d = float(score(float(t1.loc[a, col])) - score(float(t1.loc[b, col])))
        reps = (score(replicates[a][col].to_numpy(float))
                - score(replicates[b][col].to_numpy(float)))
        se = float(np.std(reps, ddof=1)) if np.isfinite(reps).all() else np.nan
        here = _winner(d, z * se)
        if col in PAPER_TABLE1.columns and all(p in t1.index for p in paper):
            there = _winner(float(score(float(t1.loc[paper[0], col]))
                                  - score(float(t1.loc[paper[1], col]))))
        else:
            there = "not in the paper"
        rows[col] = {"criterion": criterion, "difference": d, "se": se, "winner_here": here,
                     "winner_paper": there,
                     "agrees": here in ("image model", "catalogue model") and here == there}
    return pd.DataFrame(rows).T


def deviating_cells(report, metric: str = "bias", n: int = 16) -> pd.DataFrame:
    """The ``n`` cells most significantly *worse* than global on ``metric`` (Figure 2).

    Cells significantly worse than global come first (``<metric>_worse`` of the report),
    then the rest; within each group cells are ordered by how much worse they are,
    :func:`photozsom.evaluation.cells.deviation` (``|bias| - |global bias|`` for the bias) — the same
    definition of "worse" the flag uses.

    Parameters
    ----------
    report : CellReport
        :func:`photozsom.evaluation.cells.report` output.
    metric : str
        ``"bias"``, ``"mad"``, ``"eta"`` or ``"pco"``.
    """

    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}; got {metric!r}")
    ok = report.table[report.table["status"] == "ok"].copy()
    ok["deviation"] = deviation(metric, ok[metric].to_numpy(), report.global_[metric])
    ok["significant"] = ok[f"{metric}_worse"].astype(bool)
    ok = ok.sort_values(["significant", "deviation"], ascending=[False, False])
    return ok.head(n)[[metric, "deviation", "significant", "count", "n_train", "z_mean"]]


def flag_comparison(table: pd.DataFrame, *, z_pred: str = "Z_PHOT_MEAN", flag: str = "PZ_FLAG") -> pd.DataFrame:
    """Photo-z metrics of all, flagged and unflagged rows of a ``photozsom predict`` output.

    Parameters
    ----------
    table : DataFrame
        Rows with ``Z`` (spectroscopic), the point estimate ``z_pred``, ``PIT`` and the flag
        column; rows without a prediction (NaN) are counted in ``n_unscored`` and left out.

    Returns
    -------
    DataFrame
        Index all / flagged / not flagged; columns ``N``, ``fraction``, ``MAD``, ``NMAD``,
        ``bias``, ``eta_%``, ``PCO_%``, ``CRPS`` (NaN without the ``CRPS`` column),
        ``n_unscored``.
    """
    ok = np.isfinite(table[z_pred].to_numpy(float)) & np.isfinite(table["Z"].to_numpy(float))
    f = table[flag].to_numpy(bool)
    rows = {}
    for name, sel in (("all", np.ones(len(table), bool)), ("flagged", f), ("not flagged", ~f)):
        s = sel & ok
        row = {"N": int(s.sum()), "fraction": s.sum() / max(ok.sum(), 1),
               "n_unscored": int((sel & ~ok).sum())}
        if s.any():
            zt, zp = table["Z"].to_numpy(float)[s], table[z_pred].to_numpy(float)[s]
            row.update({"MAD": metrics.mad(zt, zp), "NMAD": metrics.nmad(zt, zp),
                        "bias": metrics.bias(zt, zp),
                        "eta_%": 100 * metrics.outlier_fraction(zt, zp),
                        "PCO_%": 100 * metrics.pco_fraction(
                            np.clip(table["PIT"].to_numpy(float)[s], 0, 1))
                        if "PIT" in table else np.nan,
                        "CRPS": float(np.mean(table["CRPS"].to_numpy(float)[s]))
                        if "CRPS" in table else np.nan})
        rows[name] = row
    return pd.DataFrame(rows).T


#: Columns of the published DR10 photo-z catalogue (Zhou et al.) a sample may carry.
PUBLISHED_PHOTOZ = ("Z_PHOT_MEAN", "Z_PHOT_MEDIAN", "Z_PHOT_STD", "Z_PHOT_L68", "Z_PHOT_U68",
                    "Z_PHOT_L95", "Z_PHOT_U95")


def calibration_summary(pdf: Any, z: np.ndarray) -> dict[str, float]:
    """Calibration of P(z) on galaxies with known redshift ``z``: ``PCO_%``, ``KS`` (distance
    of the PIT from uniform), ``CRPS`` and the 68% and 95% interval coverage in per cent."""
    pit = np.clip(pdf.pit(z), 0, 1)
    out = {"PCO_%": 100 * metrics.pco_fraction(pit), "KS": metrics.pit_stats(pit)["ks"],
           "CRPS": float(np.mean(pdf.crps(z)))}
    for level in (0.68, 0.95):
        lo, hi = pdf.interval(level)
        out[f"coverage_{int(level * 100)}_%"] = 100 * float(np.mean((z >= lo) & (z <= hi)))
    return out


def flag_magnitude_table(flagger: Any, random: pd.DataFrame, galaxies: pd.DataFrame,
                         z_true: np.ndarray, z_pred: np.ndarray, *,
                         bins: Sequence[float] | None = None) -> pd.DataFrame:
    """Flagged fraction of a random sample and photo-z metrics of flagged vs unflagged
    labelled galaxies, per r-band magnitude bin.

    Parameters
    ----------
    flagger : Flagger, RegionalFlagger or SOMFlagger
        Anything with ``flag(catalogue)``.
    random : DataFrame
        The random sample (DR10 columns, fluxes in nanomaggies).
    galaxies : DataFrame
        The labelled galaxies (same columns), in the order of ``z_true`` and ``z_pred``.
    z_true, z_pred : array_like
        Their spectroscopic redshifts and photo-z.
    bins : sequence of float, optional
        r-band magnitude edges [AB mag]; default: sextiles of the random sample.

    Returns
    -------
    DataFrame
        One row per bin: ``r_lo, r_hi`` [AB mag], ``n_random``, ``flagged``, ``ood``,
        ``underperforming`` (fractions of the random sample), ``n_eval_flagged``,
        ``n_eval_unflagged``, and ``mad_flagged``, ``mad_unflagged``, ``eta_flagged``,
        ``eta_unflagged`` of the labelled galaxies.
    """
    rf = flagger.flag(random)
    r_rand = magnitudes(random, ("R",))["r"].to_numpy()
    fl = flagger.flag(galaxies)
    r_ev = magnitudes(galaxies, ("R",))["r"].to_numpy()
    z_true, z_pred = np.asarray(z_true, dtype=np.float64), np.asarray(z_pred, dtype=np.float64)
    if bins is None:
        fin = r_rand[np.isfinite(r_rand)]
        bins = np.unique(np.round(np.quantile(fin, np.linspace(0, 1, 7)), 1))
    bins = np.asarray(bins, dtype=np.float64)
    rows = []
    for lo, hi in itertools.pairwise(bins):
        inr = (r_rand >= lo) & (r_rand < hi)
        ine = (r_ev >= lo) & (r_ev < hi)
        row = {"r_lo": lo, "r_hi": hi, "n_random": int(inr.sum()),
               "flagged": rf["flag"].to_numpy()[inr].mean() if inr.any() else np.nan,
               "ood": rf["ood"].to_numpy()[inr].mean() if inr.any() else np.nan,
               "underperforming": rf["underperforming"].to_numpy()[inr].mean() if inr.any() else np.nan}
        for name, sel in (("flagged", ine & fl["flag"].to_numpy()),
                          ("unflagged", ine & ~fl["flag"].to_numpy())):
            row[f"n_eval_{name}"] = int(sel.sum())
            ok = sel.sum() > 0
            zt, zp = z_true[sel], z_pred[sel]
            row[f"mad_{name}"] = metrics.mad(zt, zp) if ok else np.nan
            row[f"eta_{name}"] = metrics.outlier_fraction(zt, zp) if ok else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
