"""Detection scores (photozsom.evaluation.detection) against hand computations and limiting
cases, and the run-level experiments of photozsom.workflow.validation on a tiny run."""

import numpy as np
import pandas as pd
import pytest

from photozsom.evaluation import detection as D
from photozsom.workflow import validation as V


def test_detection_table_matches_hand_count():
    bad = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0], bool)
    flag = np.array([1, 0, 1, 0, 0, 1, 1, 0, 0, 0], bool)
    row = D.flag_detection_table({"b": bad}, {"f": flag}).iloc[0]
    # flagged {0, 2, 5, 6}; bad {0, 1, 5}; caught {0, 5}
    assert row["n_flagged"] == 4 and row["n_bad"] == 3 and row["n_caught"] == 2
    assert row["precision"] == pytest.approx(2 / 4)
    assert row["recall"] == pytest.approx(2 / 3)
    assert row["fraction_flagged"] == pytest.approx(0.4)
    assert row["base_rate"] == pytest.approx(0.3)
    assert row["lift"] == pytest.approx(0.5 / 0.3)


def test_detection_table_matches_sklearn():
    from sklearn.metrics import precision_score, recall_score

    rng = np.random.default_rng(1)
    bad = rng.random(500) < 0.2
    flag = rng.random(500) < 0.3
    row = D.flag_detection_table({"b": bad}, {"f": flag}).iloc[0]
    assert row["precision"] == pytest.approx(precision_score(bad, flag))
    assert row["recall"] == pytest.approx(recall_score(bad, flag))


def test_detection_table_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        D.flag_detection_table({"b": np.zeros(3, bool)}, {"f": np.zeros(4, bool)})


def test_score_equal_to_truth_gives_perfect_detector():
    rng = np.random.default_rng(0)
    bad = rng.random(1000) < 0.1
    cur = D.detection_curve(bad.astype(float), bad, thresholds=[1.0])
    assert cur["precision"].iloc[0] == 1.0 and cur["recall"].iloc[0] == 1.0
    assert cur["fraction_flagged"].iloc[0] == pytest.approx(bad.mean())


def test_random_score_has_precision_near_base_rate_and_recall_near_fraction():
    rng = np.random.default_rng(2)
    n = 200_000
    bad = rng.random(n) < 0.1
    cur = D.detection_curve(rng.random(n), bad, thresholds=[0.25, 0.5, 0.75])
    se = np.sqrt(0.1 * 0.9 / cur["n_flagged"].to_numpy())
    assert np.all(np.abs(cur["precision"] - 0.1) < 5 * se)
    assert np.allclose(cur["recall"], cur["fraction_flagged"], atol=0.01)


def test_detection_curve_matches_brute_force_both_directions_and_nan():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 20, 400).astype(float)    # ties on purpose
    s[:7] = np.nan
    bad = rng.random(400) < 0.3
    t = np.array([-1, 0, 3, 7.5, 10, 19, 25])
    for hiw in (True, False):
        cur = D.detection_curve(s, bad, t, higher_is_worse=hiw)
        for _, r in cur.iterrows():
            fl = np.isnan(s) | ((s >= r["threshold"]) if hiw else (s <= r["threshold"]))
            assert r["n_flagged"] == fl.sum()
            assert r["n_caught"] == (fl & bad).sum()
            if fl.sum():
                assert r["precision"] == pytest.approx((fl & bad).sum() / fl.sum())
        assert np.all(np.diff(cur["fraction_flagged"]) >= 0)


def test_default_thresholds_span_flagged_fraction():
    rng = np.random.default_rng(4)
    cur = D.detection_curve(rng.normal(size=3000), rng.random(3000) < 0.2)
    assert cur["fraction_flagged"].min() < 0.01 and cur["fraction_flagged"].max() == 1.0


def test_top_fraction_flag_takes_worst_scores():
    s = np.array([0.1, 0.9, np.nan, 0.5, 0.3])
    assert D.top_fraction_flag(s, 0.4).tolist() == [False, True, True, False, False]
    assert D.top_fraction_flag(s, 0.4, higher_is_worse=False).tolist() == [True, False, True,
                                                                             False, False]


def test_cell_spread_matches_direct_loop():
    rng = np.random.default_rng(5)
    cells = rng.integers(-1, 30, 3000)
    z = rng.uniform(0, 1.5, 3000) * (1 + cells % 3)
    ok = cells >= 0
    num = den = num_n = 0.0
    for c in np.unique(cells[ok]):
        zc = z[cells == c]
        if zc.size < 2:
            continue
        num += zc.size * np.std(zc)
        num_n += zc.size * 1.4826 * np.median(np.abs(zc - np.median(zc)))
        den += zc.size
    assert D.cell_redshift_spread(cells, z) == pytest.approx(num / den)
    assert D.cell_redshift_spread(cells, z, statistic="nmad") == pytest.approx(num_n / den)


def test_cell_spread_zero_for_pure_cells_and_global_for_one_cell():
    z = np.repeat([0.1, 0.5, 1.2], 10)
    assert D.cell_redshift_spread(np.repeat([0, 1, 2], 10), z) == pytest.approx(0.0)
    assert D.cell_redshift_spread(np.zeros(30, int), z) == pytest.approx(np.std(z))


def test_truth_labels_definitions():
    df = pd.DataFrame({"Z_PHOT_MEAN": [0.5, 0.5, 0.5, 0.9], "Z": [0.5, 0.5, 1.0, 0.9],
                       "Z_TRUE": [0.5, 0.9, 0.5, 0.9], "BLEND_FRAC_TRUE": [0.0, np.nan, 0.3, 0.1]})
    t = D.truth_labels(df)
    assert t["outlier"].tolist() == [False, True, False, False]        # |0.4|/1.9 > 0.15
    assert t["outlier_spec"].tolist() == [False, False, True, False]   # |0.5|/2.0 > 0.15
    assert t["blend"].tolist() == [False, False, True, False]
    assert t["wrong_specz"].tolist() == [False, True, True, False]
    with pytest.raises(ValueError, match="Z_TRUE"):
        D.truth_labels(df.drop(columns="Z_TRUE"))


def test_crossfit_never_uses_a_galaxys_own_outcome():
    # two cells; cell 1's outliers are all in one half, so the other half's report sees none
    rng = np.random.default_rng(6)
    n = 4000
    cell = rng.integers(0, 2, n)
    z = rng.uniform(0.2, 1.0, n)
    zp = z + 0.01 * rng.standard_normal(n)
    cf = D.crossfit_underperforming(cell, z, zp, None, 2, np.array([100, 100]), metrics=("eta",),
                                    seed=0)
    half = np.random.default_rng(0).random(n) < 0.5    # the halves the function draws
    zp2 = zp.copy()
    out = (cell == 1) & half
    zp2[out] = z[out] + 1.0
    # (no effect-size floor: half the galaxies of this toy report are outliers, so "twice the
    # global rate" is out of reach; the floor is tested in test_flags)
    cf2 = D.crossfit_underperforming(cell, z, zp2, None, 2, np.array([100, 100]),
                                     metrics=("eta",), seed=0, min_effect=0.0)
    # galaxies of the outlier half are judged by the clean half: not under-performing
    assert not cf2["underperforming"].to_numpy()[out].any()
    assert cf2["cell_eta"].to_numpy()[out].max() == 0
    # the clean half of cell 1 is judged by the outlier half
    assert cf2["underperforming"].to_numpy()[(cell == 1) & ~half].all()
    assert not cf["underperforming"].any()
    # in-sample: every galaxy of cell 1 is flagged
    ins = D.crossfit_underperforming(cell, z, zp2, None, 2, np.array([100, 100]),
                                     metrics=("eta",), crossfit=False, min_effect=0.0)
    assert ins["underperforming"].to_numpy()[cell == 1].all()


def test_embedding_som_groups_clusters_and_lowers_spread():
    rng = np.random.default_rng(7)
    k = rng.integers(0, 4, 3000)
    centres = rng.normal(scale=5, size=(4, 16))
    E = centres[k] + rng.normal(size=(3000, 16))
    E[:5] = np.nan                                     # not embedded: left out
    z = 0.3 * k + 0.02 * rng.standard_normal(3000)
    som = V.embedding_som(E, (3, 3), seed=0)
    assert som.n_features == 16 and som.feature_names[0] == "emb0"
    c = som.predict(E[5:])
    spread = D.cell_redshift_spread(c, z[5:])
    assert spread < 0.1 * np.std(z[5:])


# --------------------------------------------------------------------------------------
# Run level, on a tiny simulated sky (data, som, embed, mdn, cells, flags)
# --------------------------------------------------------------------------------------
def test_run_flag_in_sample_equals_the_flaggers_and_counts_match(tiny_run):
    from photozsom.flags import load_flagger

    run = tiny_run
    res = V.score_flag_against_truth(run, crossfit=False)
    ev = pd.read_parquet(run.root / "cells" / "evaluated.parquet")
    spec = run.spec().set_index("OBJID").loc[ev["OBJID"].to_numpy()].reset_index()
    fl = load_flagger(run.root / "flags" / "flagger").flag(spec)
    g = res["galaxies"]
    assert (g["OBJID"].to_numpy() == ev["OBJID"].to_numpy()).all()
    assert (g["flag"].to_numpy() == fl["flag"].to_numpy()).all()
    bad = (np.abs(ev["Z_PHOT_MEAN"] - spec["Z_TRUE"]) / (1 + spec["Z_TRUE"]) > 0.15).to_numpy()
    t = res["table"]
    row = t[(t["truth"] == "outlier") & (t["flag"] == "SOM flag")].iloc[0]
    assert row["n_bad"] == bad.sum()
    assert row["n_caught"] == (bad & fl["flag"].to_numpy()).sum()
    assert row["fraction_flagged"] == pytest.approx(fl["flag"].mean())
    assert set(res["curves"]["score"]) == {"n_train", "distance", "cell_eta", "pz_width"}
    # nested: each galaxy flagged by its fold's chosen pair, with leave-one-out counts
    nested = V.run_nested_flags(run)
    cf = V.score_flag_against_truth(run, nested=nested)["galaxies"]
    g = nested["galaxies"]
    assert (cf["flag"].to_numpy() == g["flag"].fillna(True).to_numpy(bool)).all()
    from photozsom.flags import out_of_distribution

    fl_s = load_flagger(run.root / "flags" / "flagger").flaggers["S"]
    s = (g["SOM"] == "S").to_numpy() & (g["CELL"].to_numpy() >= 0)
    gs = g[s]
    loo = fl_s.train_counts[gs["CELL"].to_numpy()] - gs["in_train"].to_numpy(bool)
    thr = np.array([fl_s.som.distance_threshold(q) for q in gs["distance_quantile"]])
    expect = out_of_distribution(loo, ev["DIST"].to_numpy()[s], gs["min_count"].to_numpy(), thr)
    assert (gs["ood"].to_numpy(bool) == expect).all()
    # the scores are detection.youden of these flags with the user weights
    bad_s = bad[s]
    row = nested["scores"].loc[("S", "nested", "flag")]
    ref = D.youden(gs["flag"].to_numpy(bool), bad_s, gs["weight"].to_numpy())
    assert row["J"] == pytest.approx(ref["J"]) and row["recall"] == pytest.approx(ref["recall"])


def test_run_compare_maps_spread_recomputed(tiny_run):
    from photozsom.embed import load_embeddings
    from photozsom.workflow import pipeline

    run = tiny_run
    res = V.compare_maps(run)
    esom = res["som"]
    colour = pipeline.load_maps(run)["S"]
    assert esom.n_cells == colour.n_cells
    rnd = run.random()
    rnd = rnd[(rnd["PHOTSYS"] == "S").to_numpy()].reset_index(drop=True)
    emb, ids = load_embeddings(run.root / "embed" / "embeddings.h5")
    pos = pd.Index(ids).get_indexer(rnd["OBJID"].to_numpy())
    has = pos >= 0
    has[has] = np.isfinite(emb[pos[has]]).all(axis=1)
    ccell = pipeline.spec_cells(rnd, {"S": colour})["CELL"].to_numpy()
    both = has & (ccell >= 0) & ~rnd["IS_STAR"].to_numpy(bool)
    z = rnd["Z_TRUE"].to_numpy()[both]
    ecell = esom.predict(emb[pos[both]])
    sp = res["spread"]
    assert sp.loc["embedding", "random_std"] == pytest.approx(D.cell_redshift_spread(ecell, z))
    assert sp.loc["colour", "random_std"] == pytest.approx(D.cell_redshift_spread(ccell[both], z))
    assert sp.loc["none", "random_std"] == pytest.approx(np.std(z))
    assert {"colour SOM flag", "embedding SOM flag"} <= set(res["table"]["flag"])
    assert res["table"]["precision"].dropna().between(0, 1).all()


def test_summary_table_holds_the_long_tables_values():
    rng = np.random.default_rng(9)
    truth = {"outlier": rng.random(300) < 0.2, "blend": rng.random(300) < 0.05}
    flags = {"a": rng.random(300) < 0.3, "b": rng.random(300) < 0.1}
    long = D.flag_detection_table(truth, flags)
    wide = D.summary_table(long, percent=False)
    for _, r in long.iterrows():
        lab = D.TRUTH_LABELS[r["truth"]]
        assert wide.loc[r["flag"], (lab, "precision")] == pytest.approx(r["precision"])
        assert wide.loc[r["flag"], (lab, "recall")] == pytest.approx(r["recall"])
        assert wide.loc[r["flag"], ("", "flagged")] == pytest.approx(r["fraction_flagged"])
        assert wide.loc["random flag (base rate)", (lab, "precision")] == pytest.approx(r["base_rate"])


def test_significance_across_seeds_reuses_the_run_and_reseeds_the_rest(tiny_run):
    from photozsom.evaluation import cells
    from photozsom.evaluation.results import prediction_table
    from photozsom.mdn import cross_val_predict
    from photozsom.model import PhotoZModel
    from photozsom.som import SOM
    from photozsom.workflow import pipeline

    run = tiny_run
    res = V.significance_across_seeds(run, seeds=(0, 1), scale="tiny")
    per = res["per_seed"]
    # seed 0 is the run's own seed: its counts are the run's report
    own = pipeline.load_reports(run)["S"].table
    for m in cells.METRICS:
        assert per.loc[0, f"{m}_worse"] == int(own[f"{m}_worse"].sum())
        assert per.loc[0, f"{m}_signif"] == int(own[f"{m}_signif"].sum())
    # seed 1 recomputed independently: a new map, new out-of-fold MDNs, a new bootstrap
    som0 = pipeline.load_maps(run)["S"]
    rnd = run.random()
    rnd = rnd[(rnd["PHOTSYS"] == "S").to_numpy()]
    X, ok = som_features_of(rnd, som0.feature_names)
    som1 = SOM(shape=som0.shape, n_features=len(som0.feature_names),
               feature_names=som0.feature_names, seed=1).fit(X[ok], progress=False)
    assert not np.allclose(som1.prototypes, som0.prototypes)
    spec = run.spec_with_split()
    model = PhotoZModel.load(run.root / "mdn" / "model")
    pool = spec["SPLIT"].isin(["train", "val"]).to_numpy()
    Xm, okm, _ = model.transform(spec[pool])
    opts = {k: v for k, v in model.estimator_options.items()
            if k in ("hidden", "max_epochs", "batch_size", "lr", "patience", "schedule",
                     "min_improvement")}
    folds = int(run.provenance("mdn")["params"]["cv_folds"])
    pdf, _ = cross_val_predict(Xm[okm], spec["Z"].to_numpy()[pool][okm],
                               spec["OBJID"].to_numpy()[pool][okm], n_folds=folds, seed=1,
                               progress=False, **opts)
    ids = spec["OBJID"].to_numpy()[pool][okm]
    sub = spec[pool][okm]
    south = (sub["PHOTSYS"] == "S").to_numpy()
    Xs, oks = som_features_of(sub[south], som0.feature_names)
    cell = np.full(len(sub), -1)
    cell[np.flatnonzero(south)[oks]] = som1.predict(Xs[oks])
    tr = spec[(spec["SPLIT"] == "train").to_numpy() & (spec["PHOTSYS"] == "S").to_numpy()]
    Xt, okt = som_features_of(tr, som0.feature_names)
    counts = np.bincount(som1.predict(Xt[okt]), minlength=som1.n_cells)
    use = cell >= 0
    pred = prediction_table(pdf, ids, sub["Z"].to_numpy())
    rep = cells.report(cell[use], pred["Z"].to_numpy()[use], pred["Z_PHOT_MEAN"].to_numpy()[use],
                       pred["PIT"].to_numpy()[use], som1.n_cells, counts,
                       n_boot=pipeline.SCALES["tiny"]["n_boot"], seed=1)
    for m in cells.METRICS:
        assert per.loc[1, f"{m}_signif"] == int(rep.table[f"{m}_signif"].sum())
    assert per.loc[1, "n_cells"] == int((rep.table["status"] == "ok").sum())
    # galaxy-level stability recomputed from the per-galaxy table
    g = res["galaxies"]
    assert set(g.index) <= set(ids)
    for s in (0, 1):
        assert per.loc[s, "frac_galaxies_worse"] == pytest.approx(g[s].mean())
    st = res["stability"]
    assert st["frac_worse_any_seed"] == pytest.approx((g[0] | g[1]).mean())
    assert st["frac_worse_every_seed"] == pytest.approx((g[0] & g[1]).mean())
    union = (g[0] | g[1]).sum()
    if union:
        assert st["mean_pairwise_jaccard"] == pytest.approx((g[0] & g[1]).sum() / union)
    assert res["summary"].loc["any_worse", "max"] == per["any_worse"].max()
    with pytest.raises(ValueError, match="two distinct seeds"):
        V.significance_across_seeds(run, seeds=(3,))


def som_features_of(df, names):
    from photozsom.features import feature_matrix

    return feature_matrix(df, names)



def test_run_flags_uses_the_thresholds_it_chose(tiny_run):
    from photozsom import flags
    from photozsom.workflow import pipeline

    run = tiny_run
    choice = pd.read_csv(run.root / "flags" / "threshold_choice.csv")
    flagger = flags.load_flagger(run.root / "flags" / "flagger")
    ev = pd.read_parquet(run.root / "cells" / "evaluated.parquet")
    for region, f in flagger.flaggers.items():
        c = choice[choice["som"] == region]
        pick = c[c["chosen"]]
        assert len(pick) == 1
        assert (f.min_count, f.distance_quantile) == (int(pick["min_count"].iloc[0]),
                                                       float(pick["distance_quantile"].iloc[0]))
        # the scan scored every evaluated galaxy with a cell on this map
        e = ev[(ev["SOM"] == region) & (ev["CELL"] >= 0)]
        assert int(c["n_bad"].iloc[0] + c["n_good"].iloc[0]) == len(e)
    # a fixed value is kept as given; "auto" on the other is chosen on a one-value grid
    res = pipeline.run_flags(run, scale="tiny", min_count=4, distance_quantile="auto")
    assert all(m == 4 for m, _ in res["chosen"].values())
    with pytest.raises(ValueError, match="auto"):
        pipeline.run_flags(run, scale="tiny", min_count="best")
    pipeline.run_flags(run, scale="tiny")  # leave the run as the other tests expect
