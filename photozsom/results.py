"""Per-galaxy prediction tables and the paper's Table 1.

:func:`prediction_table` turns a :class:`~photozsom.pdf.MixturePDF` into one row per galaxy
(point estimate, 90% and 99% intervals, PIT, CRPS) keyed by ``OBJID``; :func:`table1`
evaluates several models on the galaxies they all predicted (the paper's "matched subset")
and puts the paper's own values beside ours.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from photozsom import metrics

__all__ = ["PAPER_TABLE1", "POINT_ESTIMATE", "compare_models", "deviating_cells", "flag_comparison",
           "matched", "metrics_table", "prediction_table", "table1"]

#: The point estimate used throughout: the mean of P(z|X), the paper's <P(z|X)>.
POINT_ESTIMATE = "mean"

#: Table 1 of the paper (test set; the Zhou et al. model on a matched subset).
PAPER_TABLE1 = pd.DataFrame(
    {"MAD": [0.029, 0.024], "bias": [-0.006, -0.013], "eta_%": [3.90, 4.91], "PCO_%": [1.40, 2.15],
     "R2": [0.88, 0.84]},
    index=["paper: AION-1 MDN", "paper: Zhou et al. random forest"],
)


def prediction_table(pdf, objid: np.ndarray, z_true: np.ndarray, *, point: str = POINT_ESTIMATE) -> pd.DataFrame:
    """One row per galaxy: ``OBJID, Z, Z_PHOT, Z_LO90, Z_HI90, Z_LO99, Z_HI99, PIT, CRPS``.

    Parameters
    ----------
    pdf : MixturePDF, N rows
    objid : ndarray, shape (N,)
    z_true : ndarray, shape (N,)
        Spectroscopic redshifts.
    point : {"mean", "median", "mode"}
        Which summary of P(z|X) is the point estimate ``Z_PHOT``.
    """
    if point not in ("mean", "median", "mode"):
        raise ValueError(f"point must be 'mean', 'median' or 'mode', got {point!r}")
    z_true = np.asarray(z_true, dtype=np.float64)
    if not (len(pdf) == len(objid) == len(z_true)):
        raise ValueError(f"pdf ({len(pdf)}), objid ({len(objid)}) and z_true ({len(z_true)}) differ in length")
    lo90, hi90 = pdf.interval(0.90)
    lo99, hi99 = pdf.interval(0.99)
    return pd.DataFrame({
        "OBJID": np.asarray(objid, dtype=np.int64), "Z": z_true, "Z_PHOT": getattr(pdf, point)(),
        "Z_LO90": lo90, "Z_HI90": hi90, "Z_LO99": lo99, "Z_HI99": hi99,
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


def metrics_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """MAD, bias, eta, PCO, R^2, mean CRPS and N of each prediction table, as they are.

    Parameters
    ----------
    tables : mapping name -> :func:`prediction_table` output (or any subset of its rows)
        Tables with fewer than two rows give NaN metrics (and their N).
    """
    rows = {}
    for name, t in tables.items():
        if len(t) < 2:
            rows[name] = {"N": len(t)}
            continue
        pm = metrics.point_metrics(t["Z"].to_numpy(), t["Z_PHOT"].to_numpy())
        rows[name] = {"MAD": pm["mad"], "bias": pm["bias"], "eta_%": 100 * pm["eta"],
                      "PCO_%": 100 * metrics.pco_fraction(t["PIT"].to_numpy()), "R2": pm["r2"],
                      "CRPS": float(np.mean(t["CRPS"])) if "CRPS" in t else np.nan,
                      "N": int(pm["n"])}
    out = pd.DataFrame(rows).T.reindex(columns=["MAD", "bias", "eta_%", "PCO_%", "R2", "CRPS", "N"])
    out["N"] = out["N"].astype("Int64")
    return out


def table1(tables: Mapping[str, pd.DataFrame], *, with_paper: bool = True) -> pd.DataFrame:
    """Table 1: :func:`metrics_table` of each model on the matched subset, and the paper's rows.

    Parameters
    ----------
    tables : mapping model name -> :func:`prediction_table` output
        Evaluated on the galaxies common to all (:func:`matched`).
    with_paper : bool
        Append the paper's rows (:data:`PAPER_TABLE1`) for reference.
    """
    out = metrics_table(matched(tables))
    if with_paper:
        out = pd.concat([out, PAPER_TABLE1])
        out["N"] = out["N"].astype("Int64")
    return out


#: How "better" is judged per Table 1 column: a score to minimise.
_BETTER = {
    "MAD": ("scatter (MAD)", lambda v: v),
    "bias": ("|bias|", abs),
    "eta_%": ("outlier rate η", lambda v: v),
    "PCO_%": ("calibration (PCO closest to the nominal 1%)", lambda v: abs(v - 1.0)),
    "R2": ("R²", lambda v: -v),
}


def compare_models(t1: pd.DataFrame, ours: tuple[str, str],
                   paper: tuple[str, str] = tuple(PAPER_TABLE1.index)) -> pd.DataFrame:
    """Which of two models wins each Table 1 metric, here and in the paper.

    Parameters
    ----------
    t1 : DataFrame
        Output of :func:`table1` (with the paper's rows).
    ours : (str, str)
        Row names of the image model and the catalogue model in ``t1``.
    paper : (str, str)
        The paper's rows in the same order (AION-1 MDN, random forest).

    Returns
    -------
    DataFrame
        One row per metric: ``criterion``, ``winner_here``, ``winner_paper`` (each
        "image model", "catalogue model" or "tie") and ``agrees``.
    """
    rows = {}
    for col, (criterion, score) in _BETTER.items():
        winners = []
        for a, b in (ours, paper):
            sa, sb = score(float(t1.loc[a, col])), score(float(t1.loc[b, col]))
            winners.append("tie" if np.isclose(sa, sb, rtol=0, atol=1e-12) else
                           "image model" if sa < sb else "catalogue model")
        rows[col] = {"criterion": criterion, "winner_here": winners[0], "winner_paper": winners[1],
                     "agrees": winners[0] == winners[1]}
    return pd.DataFrame(rows).T


def deviating_cells(report, metric: str = "bias", n: int = 16) -> pd.DataFrame:
    """The ``n`` cells most significantly *worse* than global on ``metric`` (Figure 2).

    Cells significantly worse than global come first (``<metric>_worse`` of the report),
    then the rest; within each group cells are ordered by how much worse they are,
    :func:`photozsom.cells.deviation` (``|bias| - |global bias|`` for the bias) — the same
    definition of "worse" the flag uses.

    Parameters
    ----------
    report : CellReport
        :func:`photozsom.cells.report` output.
    metric : str
        ``"bias"``, ``"mad"``, ``"eta"`` or ``"pco"``.
    """
    from photozsom.cells import METRICS, deviation

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
        Index all / flagged / not flagged; columns ``N``, ``fraction``, ``MAD``, ``bias``,
        ``eta_%``, ``PCO_%``, ``n_unscored``.
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
            row.update({"MAD": metrics.mad(zt, zp), "bias": metrics.bias(zt, zp),
                        "eta_%": 100 * metrics.outlier_fraction(zt, zp),
                        "PCO_%": 100 * metrics.pco_fraction(
                            np.clip(table["PIT"].to_numpy(float)[s], 0, 1))
                        if "PIT" in table else np.nan})
        rows[name] = row
    return pd.DataFrame(rows).T
