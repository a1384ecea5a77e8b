"""The book's flag experiments on a pipeline run: the flag against the truth, an embedding map.

Each function here takes a :class:`~photozsom.workflow.pipeline.Run` (the stages data …
flags done), reads its files and scores with the pure functions of
:mod:`photozsom.evaluation.detection`; the figure is :func:`photozsom.plots.plot_detection`.

The paper proposes the flag as a warning to users: a galaxy in a SOM cell with thin
training data, far from its prototype, or in a cell where the model under-performs, should
not be trusted. On the simulated sky the truth is known, so the flag can be scored as a
*detector* of what a user fears (this goes beyond the paper): catastrophic photo-z
outliers, blends and wrong spectroscopic redshifts
(:func:`~photozsom.evaluation.detection.truth_labels`).

- :func:`run_nested_flags`: the flag of a run's evaluated galaxies decided out of sample,
  map by map (:func:`~photozsom.evaluation.detection.nested_flags`: thresholds and
  under-performing cells chosen on the other folds), beside the flagger's own (in-sample)
  flag, scored by Youden's J weighted to the random sample;
  :func:`flag_by_magnitude_nested`: the flag by magnitude with those nested flags.
- :func:`score_flag_against_truth`: the flag and its parts as detectors of each truth
  class, and continuous scores (cell training count, distance to the prototype, the cell's
  outlier rate) against a flag that needs no SOM: the width of the galaxy's own P(z). If
  the SOM scores do no better than the width, the map adds no information about these
  failures. The flag's "under-performing" part is decided by the same labelled galaxies it
  is scored on; to keep that from flattering it, the flag is scored nested by default.
- :func:`compare_maps` answers the paper's future-work question: a SOM trained on the
  random sample's image embeddings (:func:`embedding_som`) instead of its colours — does it
  group galaxies of similar redshift more tightly, and does a flag built on it detect the
  failures better?
- :func:`significance_across_seeds` asks how much of the per-cell significance is luck:
  the map, the out-of-fold MDNs and the bootstrap are redone with other seeds, and the
  number of significant cells (and which galaxies end up in them) is compared across seeds.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from photozsom.embed import load_embeddings
from photozsom.evaluation.cells import METRICS
from photozsom.evaluation.detection import (
    cell_redshift_spread,
    crossfit_underperforming,
    detection_curve,
    flag_detection_table,
    flag_scores,
    in_sample_flags,
    nested_flags,
    top_fraction_flag,
    truth_labels,
    user_weights,
)
from photozsom.evaluation.metrics import OUTLIER_THRESHOLD, mad, outlier_fraction, pco_mask
from photozsom.features import magnitudes
from photozsom.flags import RegionalFlagger, choose_thresholds, load_flagger, out_of_distribution
from photozsom.model import PhotoZModel
from photozsom.schema import point_column
from photozsom.som import SOM
from photozsom.workflow import pipeline

__all__ = [
    "compare_maps",
    "embedding_som",
    "flag_by_magnitude_nested",
    "run_nested_flags",
    "score_flag_against_truth",
    "significance_across_seeds",
]


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
# Run-level computations
# ======================================================================================
def _evaluated_with_truth(run: Any) -> pd.DataFrame:
    """``cells/evaluated.parquet`` joined with the spectroscopic sample's columns."""
    ev = pd.read_parquet(run.read("cells/evaluated.parquet"))
    spec = run.spec()
    extra = [c for c in spec.columns if c not in ev.columns or c == "OBJID"]
    df = ev.merge(spec[extra], on="OBJID", how="left", validate="one_to_one")
    if df["PHOTSYS"].isna().any():
        raise ValueError("cells/evaluated.parquet holds OBJIDs absent from sky/spec.parquet; "
                         "the run directory mixes runs (photozsom.workflow.pipeline.check)")
    return df


def _pz_width(df: pd.DataFrame) -> np.ndarray:
    """``(Z_PHOT_U90 - Z_PHOT_L90) / (1 + Z_PHOT_MEAN)``: the scaled width of the central 90% of P(z)."""
    c_zp = point_column(df, "predictions")
    for c in ("Z_PHOT_L90", "Z_PHOT_U90"):
        if c not in df.columns:
            raise ValueError(f"predictions lack {c} (photozsom.evaluation.results.prediction_table writes it)")
    return ((df["Z_PHOT_U90"] - df["Z_PHOT_L90"]) / (1 + df[c_zp])).to_numpy(np.float64)


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
            out["cell"].to_numpy()[rows], sub["Z"].to_numpy(), sub[point_column(sub)].to_numpy(),
            sub["PIT"].to_numpy() if "PIT" in sub else None, fl.som.n_cells, fl.train_counts,
            metrics=fl.metrics, fdr=float(settings.get("fdr", 0.05)),
            fdr_scope=str(settings.get("fdr_scope", "all")), seed=seed, crossfit=crossfit,
            min_effect=fl.min_effect)
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
    """Nested and in-sample flags of a run's evaluated galaxies, map by map.

    Each map's evaluated galaxies (``cells/evaluated.parquet``: out-of-fold photo-z) are
    flagged out of sample by the rule the flags stage used (``choose_thresholds`` with the
    random sample as the user's sample, under-performing cells by the map's report settings),
    and in sample by the run's flagger, both with leave-one-out training counts
    (:func:`~photozsom.evaluation.detection.nested_flags`, :func:`~photozsom.evaluation.detection.in_sample_flags`).

    Returns
    -------
    dict
        ``galaxies``: DataFrame in the rows of ``cells/evaluated.parquet`` with ``OBJID``,
        ``SOM``, ``CELL``, ``in_train``, ``weight``
        (:func:`~photozsom.evaluation.detection.user_weights` for the map's random galaxies),
        nested ``fold, min_count, distance_quantile, ood, underperforming, flag, cell_eta``
        and in-sample ``ood_in, underperforming_in, flag_in``; ``scores``:
        :func:`~photozsom.evaluation.detection.flag_scores` per map (index ``som, scoring,
        part``) for ``target``; ``folds``: the pair each fold chose, per map.
    """
    if flagger is None:
        flagger = load_flagger(run.read("flags/flagger"))
    regional = dict(flagger.flaggers) if hasattr(flagger, "flaggers") else {"S": flagger}
    ev = pd.read_parquet(run.read("cells/evaluated.parquet"))
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
            sub[point_column(sub)].to_numpy(), sub["PIT"].to_numpy(), in_train=in_train[e],
            sample_cell=rc["CELL"].to_numpy()[u], sample_distance=rc["DIST"].to_numpy()[u],
            metrics=fl.metrics, fdr=float(st.get("fdr", 0.05)),
            fdr_scope=str(st.get("fdr_scope", "all")), target=target, n_folds=n_folds,
            seed=seed, fallback=(fl.min_count, fl.distance_quantile), min_effect=fl.min_effect)
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
        zt, zp = sub["Z"].to_numpy()[mapped], sub[point_column(sub)].to_numpy()[mapped]
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
    out = pipeline.flag_by_magnitude(run, flagger, bins=bins)
    ev = pd.read_parquet(run.read("cells/evaluated.parquet"))
    g = galaxies.reindex(ev.index)
    flag = g["flag"].fillna(True).to_numpy(bool)        # rows without a map: flagged
    spec = run.spec().set_index("OBJID")
    r_ev = magnitudes(spec.loc[ev["OBJID"].to_numpy()], ("R",))["r"].to_numpy()
    zt, zp = ev["Z"].to_numpy(), ev[point_column(ev)].to_numpy()
    edges = np.r_[out["r_lo"].to_numpy(), out["r_hi"].to_numpy()[-1:]]
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        ine = (r_ev >= lo) & (r_ev < hi)
        for name, sel in (("flagged", ine & flag), ("unflagged", ine & ~flag)):
            ok = sel.sum() > 0
            out.loc[i, f"n_eval_{name}"] = int(sel.sum())
            out.loc[i, f"mad_{name}"] = mad(zt[sel], zp[sel]) if ok else np.nan
            out.loc[i, f"eta_{name}"] = outlier_fraction(zt[sel], zp[sel]) if ok else np.nan
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
    :func:`~photozsom.evaluation.detection.truth_labels`.

    Parameters
    ----------
    run : photozsom.workflow.pipeline.Run
        A simulated-sky run with the stages data … flags done.
    flagger : Flagger or RegionalFlagger, optional
        Default: ``photozsom.flags.load_flagger(run.read("flags/flagger"))``.
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
        See :func:`~photozsom.evaluation.detection.truth_labels`.
    n_thresholds : int
        Thresholds per curve.

    Returns
    -------
    dict
        ``table``: :func:`~photozsom.evaluation.detection.flag_detection_table` for the flags
        ``SOM flag``, ``ood``, ``under-performing`` and ``P(z) width (same fraction)`` (the
        widest P(z), as many as the SOM flag marks) — the chapter's table; ``curves``: long
        table of :func:`~photozsom.evaluation.detection.detection_curve` per (truth, score)
        for the scores ``n_train``, ``distance``, ``cell_eta`` and ``pz_width`` (labelled
        in :data:`photozsom.plots.SCORE_LABELS`) — the figure's data
        (:func:`photozsom.plots.plot_detection`); ``auc``: area under recall vs fraction
        flagged per score and truth (0.5 for a random flag, 1 for a perfect one);
        ``galaxies``: per-galaxy truth, flags and scores; ``settings``.
    """
    df = _evaluated_with_truth(run)
    if flagger is None:
        flagger = load_flagger(run.read("flags/flagger"))
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
    galaxies = pd.concat([df[["OBJID", "PHOTSYS", "Z", "Z_TRUE", point_column(df)]].reset_index(drop=True),
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

    - **redshift spread within cells** (:func:`~photozsom.evaluation.detection.cell_redshift_spread`,
      std and NMAD): of the true redshift of the random sample's *galaxies* (stars,
      Z_TRUE = 0, left out) that both maps place, and of the spectroscopic redshift of the
      evaluated galaxies;
    - **the flag**: a flag built on each map by the same rule (thin cell: fewer than
      ``min_count`` training-split galaxies, leave-one-out; farther from the prototype than
      the ``distance_quantile`` of the map's training distances; under-performing cells),
      each map **choosing its own** ``min_count`` and ``distance_quantile`` with
      :func:`photozsom.flags.choose_thresholds` — nested out of sample with ``crossfit``
      (:func:`~photozsom.evaluation.detection.nested_flags`), so neither map is scored on the
      galaxies that tuned it — scored against the truth on the evaluated galaxies of
      ``region`` that have an embedding.

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
        :func:`~photozsom.evaluation.detection.flag_detection_table` of the colour flag, the
        embedding flag and the P(z) width at each flag's fraction; ``curves``:
        :func:`~photozsom.evaluation.detection.detection_curve` per (truth, score) with scores
        ``colour: n_train``, ``embedding: n_train``, ``colour: cell_eta``,
        ``embedding: cell_eta``, ``pz_width``; ``auc``; ``som`` (the embedding map);
        ``settings``.
    """
    if flagger is None:
        flagger = load_flagger(run.read("flags/flagger"))
    regional = dict(flagger.flaggers) if hasattr(flagger, "flaggers") else {region: flagger}
    if region not in regional:
        raise ValueError(f"the flagger has no map for region {region!r}; it has {sorted(regional)}")
    cfl = regional[region]
    colour_som = cfl.som
    shape = tuple(shape) if shape is not None else tuple(colour_som.shape)

    emb_all, ids_all = load_embeddings(run.read("embed/embeddings.h5"))
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
    cf = crossfit_underperforming(e_c, df["Z"].to_numpy(), df[point_column(df)].to_numpy(),
                                  df["PIT"].to_numpy(), esom.n_cells, e_counts,
                                  metrics=cfl.metrics, fdr=float(settings.get("fdr", 0.05)),
                                  fdr_scope=str(settings.get("fdr_scope", "all")), seed=seed,
                                  crossfit=crossfit, min_effect=cfl.min_effect)
    # each map chooses its own thresholds by the same rule, on its own cells and counts, with
    # the random sample of the region (as each map sees it) as the user's sample
    in_train = (run.split().reindex(df["OBJID"].to_numpy()) == "train").to_numpy()
    r_e, r_d = np.full(len(rnd), -1, np.int64), np.full(len(rnd), np.nan)
    r_e[has_e], r_d[has_e] = esom.predict_with_distances(E_rnd[has_e])
    r_c = pipeline.spec_cells(rnd, {region: colour_som})
    common = {"z_true": df["Z"].to_numpy(), "z_pred": df[point_column(df)].to_numpy(),
              "pit_values": df["PIT"].to_numpy(), "in_train": in_train, "metrics": cfl.metrics,
              "fdr": float(settings.get("fdr", 0.05)),
              "fdr_scope": str(settings.get("fdr_scope", "all")), "seed": seed,
              "fallback": (cfl.min_count, cfl.distance_quantile), "min_effect": cfl.min_effect}
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
        Preset of ``n_boot`` (:data:`photozsom.workflow.run.SCALES`).
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
    model = PhotoZModel.load(run.read("mdn/model"))
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
            oof = pd.read_parquet(run.read("mdn/oof_predictions.parquet"))
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
