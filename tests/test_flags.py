"""Flagger, threshold curve and the ``photozsom flag`` command on tiny catalogues made here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from photozsom import flags
from photozsom.cli import main as cli
from photozsom.evaluation import cells, metrics
from photozsom.features import SOM_FEATURES, som_features
from photozsom.som import SOM

BANDS = ("G", "R", "I", "Z", "W1", "W2")


def make_catalogue(n, seed, colours=(0.8, 0.4, 0.3, 0.6, -0.2), spread=0.12):
    """DR10-like catalogue (fluxes in nanomaggies) of galaxies around given colours.

    Colours are g-r, r-i, i-z, z-W1, W1-W2; r is uniform in [18, 21] mag. Returns the
    catalogue and a redshift that is a smooth function of the colours.
    """
    rng = np.random.default_rng(seed)
    c = np.asarray(colours)[None, :] + spread * rng.standard_normal((n, 5))
    r = rng.uniform(18.0, 21.0, n)
    g = r + c[:, 0]
    i = r - c[:, 1]
    z = i - c[:, 2]
    w1 = z - c[:, 3]
    w2 = w1 - c[:, 4]
    cat = {
        "OBJID": np.arange(n, dtype=np.int64),
        "RA": rng.uniform(0, 360, n),
        "DEC": rng.uniform(-30, 30, n),
        "TYPE": np.array(["REX"] * n),
    }
    for b, m in zip(BANDS, (g, r, i, z, w1, w2), strict=True):
        flux = 10 ** ((22.5 - m) / 2.5)
        cat[f"FLUX_{b}"] = flux
        cat[f"FLUX_IVAR_{b}"] = 1.0 / (0.05 * flux) ** 2
        cat[f"MW_TRANSMISSION_{b}"] = np.full(n, 0.95)
    zspec = np.clip(0.2 + 0.6 * (c[:, 0] - 0.5) + 0.3 * (c[:, 2] - 0.2), 0.01, 1.5)
    return pd.DataFrame(cat), zspec


@pytest.fixture(scope="module")
def fitted():
    """A 5x5 SOM on 3000 training galaxies, a test set with one planted bad region, a report."""
    train, _ = make_catalogue(3000, 0)
    X_train, ok = som_features(train)
    assert ok.all()
    som = SOM(shape=(5, 5), n_features=6, feature_names=list(SOM_FEATURES), seed=0)
    som.fit(X_train, epochs=8, progress=False)
    c_train, d_train = som.predict_with_distances(X_train)
    counts = np.bincount(c_train, minlength=som.n_cells)

    test, z = make_catalogue(4000, 1)
    X_test, _ = som_features(test)
    c_test = som.predict(X_test)
    rng = np.random.default_rng(2)
    dz = 0.02 * rng.standard_normal(z.size)
    bad_cell = int(np.bincount(c_test, minlength=som.n_cells).argmax())
    dz[c_test == bad_cell] *= 4  # the model's scatter is 4x worse in one cell
    zp = z + dz * (1 + z)
    pit = rng.uniform(size=z.size)
    rep = cells.report(c_test, z, zp, pit, som.n_cells, counts, n_boot=200, seed=0)
    return {
        "som": som,
        "counts": counts,
        "d_train": d_train,
        "X_train": X_train,
        "train": train,
        "test": test,
        "z": z,
        "zp": zp,
        "pit": pit,
        "c_test": c_test,
        "rep": rep,
        "bad_cell": bad_cell,
    }


@pytest.fixture(scope="module")
def flagger(fitted):
    return flags.Flagger(
        fitted["som"],
        fitted["rep"],
        fitted["counts"],
        min_count=10,
        distance_quantile=0.99,
        train_distances=fitted["d_train"],
    )


def test_planted_underperforming_cell_is_flagged_with_reason(fitted, flagger):
    assert fitted["rep"].table.loc[fitted["bad_cell"], "mad_worse"]
    out = flagger.flag(fitted["test"])
    in_bad = out["cell"] == fitted["bad_cell"]
    assert out.loc[in_bad, "underperforming"].all() and out.loc[in_bad, "flag"].all()
    assert (
        out.loc[in_bad, "reason"]
        .str.contains(f"under-performing cell {fitted['bad_cell']}: MAD")
        .all()
    )
    # every flagged galaxy sits in a cell the report marks worse on one of the chosen metrics
    rep = fitted["rep"]
    worse = rep.table[[f"{m}_worse" for m in flagger.metrics]].any(axis=1).to_numpy()
    np.testing.assert_array_equal(out["underperforming"], worse[out["cell"]])
    # choosing metrics: on MAD alone only the planted cell is flagged (scatter is clean elsewhere)
    only_mad = flags.Flagger(fitted["som"], rep, fitted["counts"], metrics=("mad",))
    np.testing.assert_array_equal(only_mad.flag(fitted["test"])["underperforming"], in_bad)
    # ... and a flagger on bias alone does not flag the scatter cell: the bias test uses the
    # cell's own scatter
    only_bias = flags.Flagger(fitted["som"], rep, fitted["counts"], metrics=("bias",))
    assert not only_bias.flag(fitted["test"])["underperforming"][in_bad].any()


def test_effect_size_floor_keeps_only_material_excesses(tmp_path, fitted):
    """With ~1,600 galaxies a cell, a 1.4x scatter and a small bias shift are significant;
    the default floor (twice as bad; a bias shift of one global MAD) keeps only the 3x cell."""
    som = fitted["som"]
    test, z = make_catalogue(40_000, 5)
    c = som.predict(som_features(test)[0])
    order = np.argsort(np.bincount(c, minlength=som.n_cells))[::-1]
    big, mild, shifted = (int(k) for k in order[:3])
    rng = np.random.default_rng(6)
    dz = 0.02 * rng.standard_normal(z.size)
    dz[c == big] *= 3.0
    dz[c == mild] *= 1.4
    dz[c == shifted] += 0.012   # about half the global MAD
    zp = z + dz * (1 + z)
    rep = cells.report(c, z, zp, None, som.n_cells, fitted["counts"], n_boot=50, seed=0)
    t = rep.table
    assert t.loc[big, "mad_worse"] and t.loc[mild, "mad_worse"] and t.loc[shifted, "bias_worse"]
    # the floor computed by hand from the galaxies: MAD ratio and |bias| excess in global MADs
    g_mad = metrics.mad(z, zp)
    ratio = {k: metrics.mad(z[c == k], zp[c == k]) / g_mad for k in (big, mild)}
    shift = (abs(metrics.bias(z[c == shifted], zp[c == shifted])) - abs(metrics.bias(z, zp))) / g_mad
    assert ratio[big] >= 2 > ratio[mild] > 1.2 and 0.2 < shift < 1.0

    def under(**kw):
        return flags.Flagger(som, rep, fitted["counts"], metrics=("mad", "bias"), **kw
                             ).underperforming_cells

    assert flags.MIN_EFFECT == 1.0
    default, none, loose = under(), under(min_effect=0.0), under(min_effect=0.2)
    assert default[big] and not default[mild] and not default[shifted]
    assert none[big] and none[mild] and none[shifted] and loose[mild] and loose[shifted]
    # the floor only removes cells: default <= loose <= none, never a cell that is not significant
    assert not (default & ~loose).any() and not (loose & ~none).any()
    np.testing.assert_array_equal(none, rep.worse(("mad", "bias")))
    # the reason names only the material metric; the floor survives a save/load
    fl = flags.Flagger(som, rep, fitted["counts"], metrics=("mad", "bias"))
    out = fl.flag(test.iloc[np.flatnonzero(c == big)[:3]])
    assert out["reason"].str.contains("MAD").all() and not out["reason"].str.contains("bias").any()
    back = flags.Flagger.load(fl.save(tmp_path / "fl"))
    assert back.min_effect == 1.0
    np.testing.assert_array_equal(back.underperforming_cells, default)
    with pytest.raises(ValueError, match="min_effect"):
        flags.Flagger(som, rep, fitted["counts"], min_effect=-0.1)


def test_flagger_saved_before_the_floor_loads_without_one(tmp_path, fitted):
    import json

    path = flags.Flagger(fitted["som"], fitted["rep"], fitted["counts"]).save(tmp_path / "old")
    meta = json.loads((path / "meta.json").read_text())
    del meta["min_effect"]
    (path / "meta.json").write_text(json.dumps(meta))
    back = flags.Flagger.load(path)
    assert back.min_effect == 0.0
    np.testing.assert_array_equal(back.underperforming_cells, fitted["rep"].worse())


def test_galaxies_from_absent_colour_region_are_ood(fitted, flagger):
    near, _ = make_catalogue(500, 10)
    far, _ = make_catalogue(300, 11, colours=(1.9, 1.2, -0.4, 2.0, 0.8))  # no training there
    out_near = flagger.flag(near)
    out_far = flagger.flag(far)
    assert out_far["ood"].all() and out_far["flag"].all()
    assert out_far["reason"].str.contains("outside the training colours").all()
    far_beyond = out_far["distance"] > flagger.distance_threshold
    assert far_beyond.all()
    # galaxies drawn like the training set exceed the 99% training distance ~1% of the time
    assert (out_near["distance"] > flagger.distance_threshold).mean() < 0.04
    assert (out_near["cell"] >= 0).all()


def test_thin_cells_make_galaxies_ood(fitted):
    counts = fitted["counts"].copy()
    counts[3] = 4
    fl = flags.Flagger(fitted["som"], fitted["rep"], counts, min_count=10)
    X, _ = som_features(fitted["test"])
    out = fl.flag(X)
    in3 = out["cell"] == 3
    assert in3.any()
    assert out.loc[in3, "ood"].all() and (out.loc[in3, "n_train"] == 4).all()
    assert out.loc[in3, "reason"].str.contains("holds 4 training galaxies").all()
    # without train_distances the SOM's own training sample sets the distance criterion
    assert fl.distance_threshold == pytest.approx(fitted["som"].distance_threshold(0.99))


def test_rows_without_features_are_kept_in_order_and_flagged(fitted, flagger):
    cat, _ = make_catalogue(12, 20)
    cat.index = np.arange(100, 112)[::-1]  # a non-trivial index is kept
    cat.loc[cat.index[2], "FLUX_IVAR_I"] = 0.0  # no i-band data
    cat.loc[cat.index[5], "FLUX_G"] = np.nan
    cat.loc[cat.index[7], "FLUX_R"] = -0.3  # negative flux: normal, asinh magnitudes
    cat.loc[cat.index[9], "MW_TRANSMISSION_W2"] = 0.0
    out = flagger.flag(cat)
    assert len(out) == 12 and (out.index == cat.index).all()
    bad = [2, 5, 9]
    assert (out["cell"].iloc[bad] == -1).all() and out["flag"].iloc[bad].all()
    assert out["ood"].iloc[bad].all() and not out["underperforming"].iloc[bad].any()
    assert out["distance"].iloc[bad].isna().all()
    assert "no valid flux in band(s) I " in out["reason"].iloc[2]
    assert "band(s) G " in out["reason"].iloc[5] and "band(s) W2 " in out["reason"].iloc[9]
    assert out["cell"].iloc[7] >= 0  # negative flux is scored
    good = np.setdiff1d(np.arange(12), bad)
    X, _ = som_features(cat)
    np.testing.assert_array_equal(out["cell"].iloc[good], fitted["som"].predict(X[good]))
    # the same catalogue as an astropy Table
    out_t = flagger.flag(Table.from_pandas(cat.reset_index(drop=True)))
    pd.testing.assert_frame_equal(out_t, out.reset_index(drop=True))
    # a feature matrix with NaN rows
    out_x = flagger.flag(X)
    np.testing.assert_array_equal(out_x["cell"], out["cell"].to_numpy())
    assert "non-finite feature(s) r-i, i-z" in out_x["reason"].iloc[2]


def test_northern_catalogue_without_i_band_columns_is_flagged_not_rejected(flagger):
    cat, _ = make_catalogue(5, 21)
    cat = cat.drop(columns=["FLUX_I", "FLUX_IVAR_I", "MW_TRANSMISSION_I"])
    out = flagger.flag(cat)
    assert len(out) == 5 and out["flag"].all() and (out["cell"] == -1).all()
    assert out["reason"].str.contains("band(s) I ", regex=False).all()


def test_save_and_load_roundtrip(tmp_path, fitted, flagger):
    path = flagger.save(tmp_path / "flagger")
    back = flags.Flagger.load(path)
    assert back.distance_threshold == flagger.distance_threshold
    assert back.metrics == flagger.metrics and back.min_count == flagger.min_count
    assert back.report.global_["mad"] == pytest.approx(fitted["rep"].global_["mad"])
    pd.testing.assert_frame_equal(back.report.table, fitted["rep"].table)
    pd.testing.assert_frame_equal(back.flag(fitted["test"]), flagger.flag(fitted["test"]))
    with pytest.raises(ValueError, match="no photozsom flagger"):
        flags.Flagger.load(tmp_path)


def test_threshold_curve_matches_direct_metrics_on_kept_galaxies(fitted, flagger):
    c, z, zp, pit = fitted["c_test"], fitted["z"], fitted["zp"], fitted["pit"]
    curve = cells.threshold_curve(flagger.report, c, z, zp, pit, thresholds=[0, 50, 150, 10**9])
    n_train = fitted["counts"][c]
    for _, row in curve.iterrows():
        keep = n_train >= row["threshold"]
        assert row["fraction_kept"] == pytest.approx(keep.mean())
        if keep.sum() == 0:
            assert np.isnan(row["mad"])
            continue
        pm = metrics.point_metrics(z[keep], zp[keep])
        assert row["mad"] == pytest.approx(pm["mad"], rel=1e-12)
        assert row["bias"] == pytest.approx(pm["bias"]) and row["eta"] == pytest.approx(pm["eta"])
        assert row["pco"] == pytest.approx(metrics.pco_fraction(pit[keep]))
    # cutting on the cells' MAD removes the planted cell first and lowers the kept MAD
    by_mad = cells.threshold_curve(flagger.report, c, z, zp, criterion="mad")
    assert by_mad["mad"].iloc[0] < by_mad["mad"].iloc[-1]
    assert by_mad["fraction_kept"].is_monotonic_increasing


def test_threshold_curve_reweights_to_a_users_sample(fitted, flagger):
    c, z, zp = fitted["c_test"], fitted["z"], fitted["zp"]
    # a user sample that lies entirely in the planted bad cell: expect that cell's metrics
    user = np.full(100, fitted["bad_cell"])
    curve = cells.threshold_curve(flagger.report, c, z, zp, thresholds=[0], sample_cell=user)
    sel = c == fitted["bad_cell"]
    assert curve["fraction_kept"].iloc[0] == 1.0 and curve["n_kept"].iloc[0] == 100
    assert curve["bias"].iloc[0] == pytest.approx(metrics.bias(z[sel], zp[sel]))
    assert curve["mad"].iloc[0] == pytest.approx(metrics.mad(z[sel], zp[sel]), rel=1e-12)
    # the test sample's own occupancy gives weight 1 everywhere
    same = cells.threshold_curve(flagger.report, c, z, zp, thresholds=[0, 100], sample_cell=c)
    plain = cells.threshold_curve(flagger.report, c, z, zp, thresholds=[0, 100])
    pd.testing.assert_frame_equal(same, plain)


# ---------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, flagger):
    return flagger.save(tmp_path_factory.mktemp("model") / "flagger")


def _user_catalogue():
    cat, _ = make_catalogue(53, 30)
    far, _ = make_catalogue(7, 31, colours=(1.9, 1.2, -0.4, 2.0, 0.8))
    cat = pd.concat([cat, far], ignore_index=True)
    cat["OBJID"] = np.random.default_rng(0).permutation(len(cat)) + 1000
    cat.loc[3, "FLUX_G"] = np.nan
    cat.loc[4, "FLUX_I"] = np.nan
    cat.loc[4, "FLUX_IVAR_I"] = 0.0
    cat.loc[10, "FLUX_Z"] = -2.0  # negative fluxes are data
    cat.loc[11, "FLUX_W2"] = -5.0
    cat.loc[12, "FLUX_IVAR_W1"] = np.nan
    return cat


@pytest.mark.parametrize(
    "fmt_in,fmt_out",
    [("parquet", "parquet"), ("csv", "csv"), ("fits", "fits"), ("fits", "parquet"),
     ("fits.gz", "csv.gz")],
)
def test_cli_keeps_every_row_in_order(tmp_path, model_dir, flagger, fmt_in, fmt_out):
    cat = _user_catalogue()
    inp = tmp_path / f"in.{fmt_in}"
    if fmt_in == "parquet":
        cat.to_parquet(inp)
    elif fmt_in.startswith("csv"):
        cat.to_csv(inp, index=False)
    else:
        Table.from_pandas(cat).write(inp)
    out = tmp_path / f"out.{fmt_out}"
    rc = cli(["flag", str(inp), "-o", str(out), "--model", str(model_dir), "--chunk-size", "7"])
    assert rc == 0
    if fmt_out.endswith(".gz"):
        assert out.read_bytes()[:2] == b"\x1f\x8b"  # compressed as the extension asks
    if fmt_out == "parquet":
        res = pd.read_parquet(out)
    elif fmt_out.startswith("csv"):
        res = pd.read_csv(out, keep_default_na=False, na_values=[""])
    else:
        res = Table.read(out).to_pandas()
    assert len(res) == len(cat)
    np.testing.assert_array_equal(res["OBJID"], cat["OBJID"])
    np.testing.assert_array_equal(res["FLUX_Z"], cat["FLUX_Z"])
    expect = flagger.flag(cat)
    np.testing.assert_array_equal(res["PZ_SOM_CELL"], expect["cell"])
    np.testing.assert_array_equal(res["PZ_FLAG"].astype(bool), expect["flag"])
    np.testing.assert_array_equal(res["PZ_OOD"].astype(bool), expect["ood"])
    reasons = res["PZ_FLAG_REASON"].fillna("").astype(str).str.strip()
    assert reasons.tolist() == [r.strip() for r in expect["reason"]]
    assert res["PZ_FLAG"].iloc[[3, 4, 12]].astype(bool).all()
    assert (res["PZ_SOM_CELL"].iloc[[10, 11]] >= 0).all()
    assert res["PZ_OOD"].iloc[53:].astype(bool).all()  # the far-away colours


def test_cli_refuses_to_overwrite_and_names_bad_files(tmp_path, model_dir, capsys):
    cat = _user_catalogue()
    inp = tmp_path / "in.parquet"
    cat.to_parquet(inp)
    out = tmp_path / "out.parquet"
    out.write_text("precious")
    assert cli(["flag", str(inp), "-o", str(out), "--model", str(model_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "precious"
    assert cli(["flag", str(inp), "-o", str(out), "--model", str(model_dir), "--overwrite"]) == 0
    assert len(pd.read_parquet(out)) == len(cat)

    fake = tmp_path / "fake.fits"
    fake.write_text("this is not a FITS file\n" * 10)
    assert (
        cli(["flag", str(fake), "-o", str(tmp_path / "o1.parquet"), "--model", str(model_dir)]) == 2
    )
    assert "not a readable FITS file" in capsys.readouterr().err

    fake_pq = tmp_path / "fake.parquet"
    fake_pq.write_bytes(b"\x00\x01garbage" * 20)
    assert (
        cli(["flag", str(fake_pq), "-o", str(tmp_path / "o2.csv"), "--model", str(model_dir)]) == 2
    )
    assert "not a readable Parquet file" in capsys.readouterr().err

    Table.from_pandas(cat.drop(columns=["FLUX_W1"])).write(tmp_path / "nocol.fits")
    assert (
        cli(
            [
                "flag",
                str(tmp_path / "nocol.fits"),
                "-o",
                str(tmp_path / "o3.fits"),
                "--model",
                str(model_dir),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "FLUX_W1" in err and "lacks" in err
    assert not (tmp_path / "o3.fits").exists()

    assert cli(["flag", str(inp), "-o", str(tmp_path / "o.xlsx"), "--model", str(model_dir)]) == 2
    assert "cannot tell the file format" in capsys.readouterr().err
    assert cli(["flag", str(inp), "-o", str(tmp_path / "o4.csv"), "--model", str(tmp_path)]) == 2
    assert "no photozsom flagger" in capsys.readouterr().err
    assert (
        cli(
            [
                "flag",
                str(tmp_path / "missing.csv"),
                "-o",
                str(tmp_path / "o5.csv"),
                "--model",
                str(model_dir),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_a_blob_far_from_the_training_colours_is_out_of_distribution_by_default(fitted):
    """The README's Flagger(som, report) — no train_distances — flags by distance."""
    fl = flags.Flagger(fitted["som"], fitted["rep"])
    X, _ = som_features(fitted["test"])
    sd = X.std(axis=0)
    blob = X[:300] + 8 * sd  # 8 sigma away from every training colour
    out = fl.flag(blob)
    assert out["ood"].all()
    assert out["reason"].str.contains("outside the training colours").all()
    assert np.isfinite(fl.distance_threshold)
    # the training-like galaxies are mostly inside
    assert fl.flag(X)["distance"].gt(fl.distance_threshold).mean() < 0.05


# --------------------------------------------------------------------------------------
# choose_thresholds: min_count and distance_quantile from the labelled galaxies
# --------------------------------------------------------------------------------------
def _labelled(fitted, bad_where, seed=5):
    """The test galaxies with catastrophic outliers where ``bad_where(dist, count)`` holds."""
    som = fitted["som"]
    X, _ = som_features(fitted["test"])
    c, d = som.predict_with_distances(X)
    z = fitted["z"]
    bad = bad_where(d, fitted["counts"][c], np.random.default_rng(seed))
    zp = np.where(bad, z + 0.5 * (1 + z), z + 0.01 * (1 + z))
    return c, d, z, zp, bad


@pytest.mark.parametrize("in_train_fraction", [0.0, 0.3])
def test_choose_thresholds_scan_matches_flagger_and_sklearn(fitted, in_train_fraction):
    from sklearn.metrics import precision_score, recall_score

    som, counts = fitted["som"], fitted["counts"]
    far = som.distance_threshold(0.95)
    c, d, z, zp, bad = _labelled(fitted, lambda d, n, rng: (d > far) | (rng.random(d.size) < 0.03))
    rng = np.random.default_rng(1)
    in_train = rng.random(c.size) < in_train_fraction
    # counts that include the labelled training galaxies, as a training split would
    tc = counts + np.bincount(c[in_train], minlength=som.n_cells)
    grid_m, grid_q = (0, 3, 10, 40), (0.9, 0.99, 1.0)
    ch = flags.choose_thresholds(som, tc, c, d, z, zp, in_train=in_train, min_counts=grid_m,
                                 quantiles=grid_q)
    for _, row in ch.table.iterrows():
        m, q = int(row["min_count"]), float(row["distance_quantile"])
        # the Flagger with these thresholds, on counts without the galaxies themselves
        fl = flags.Flagger(som, fitted["rep"], counts, min_count=m, distance_quantile=q)
        ood = fl.flag(fitted["test"])["ood"].to_numpy()
        assert row["recall"] == pytest.approx(recall_score(bad, ood))
        assert row["false_positive_rate"] == pytest.approx(1 - recall_score(~bad, ~ood))
        if ood.any():
            assert row["precision"] == pytest.approx(precision_score(bad, ood))
        assert row["J"] == pytest.approx(row["recall"] - row["false_positive_rate"])
        assert row["flagged"] == pytest.approx(ood.mean())


def test_choose_thresholds_follows_the_one_standard_error_rule(fitted):
    som = fitted["som"]
    far = som.distance_threshold(0.98)
    c, d, z, zp, _bad = _labelled(fitted, lambda d, n, rng: (d > far) | (rng.random(d.size) < 0.02))
    # the user's sample: the training galaxies
    uc, ud = som.predict_with_distances(fitted["X_train"])
    ch = flags.choose_thresholds(som, fitted["counts"], c, d, z, zp, sample_cell=uc,
                                 sample_distance=ud)
    t = ch.table
    best = t.loc[t["J"].idxmax()]
    from scipy.stats import norm

    gate = norm.isf(0.05 / len(t))        # Bonferroni over the grid
    ok = (t["J"] >= best["J"] - best["J_se"]) & (t["J"] > gate * t["J_se"])
    assert ok.any() and (ok == t["eligible"]).all()
    cand = t[ok].sort_values(["flagged_sample", "J"], ascending=[True, False])
    assert (ch.min_count, ch.distance_quantile) == (int(cand.iloc[0]["min_count"]),
                                                    float(cand.iloc[0]["distance_quantile"]))
    assert t["chosen"].sum() == 1
    # the user's flagged fraction recomputed by a Flagger with the chosen thresholds
    fl = flags.Flagger(som, fitted["rep"], fitted["counts"], min_count=ch.min_count,
                       distance_quantile=ch.distance_quantile)
    chosen = t[t["chosen"]].iloc[0]
    assert chosen["flagged_sample"] == pytest.approx(fl.flag(fitted["X_train"])["ood"].mean())
    # the planted outliers lie beyond the 0.98 distance quantile: the rule catches them
    ood = fl.flag(fitted["test"])["ood"].to_numpy()
    assert ood[d > far].mean() > 0.9
    assert ood[d <= far].mean() < 0.1


def test_choose_thresholds_flags_least_when_outliers_are_unrelated_to_the_map(fitted):
    som = fitted["som"]
    c, d, z, zp, _bad = _labelled(fitted, lambda d, n, rng: rng.random(d.size) < 0.05)
    ch = flags.choose_thresholds(som, fitted["counts"], c, d, z, zp)
    t = ch.table
    chosen = t[t["chosen"]].iloc[0]
    # no threshold can beat random by much; the chosen pair flags (near) the least
    assert abs(chosen["J"]) < 0.1
    assert chosen["flagged"] <= t["flagged"].min() + 0.01
    from scipy.stats import norm

    assert not (t["J"] > norm.isf(0.05 / len(t)) * t["J_se"]).any()
    assert "not better than a random flag" in ch.rule


def test_choose_thresholds_refuses_too_few_outliers(fitted):
    som = fitted["som"]
    c, d, z, zp, _bad = _labelled(fitted, lambda d, n, rng: np.arange(d.size) < 5)
    with pytest.raises(ValueError, match="too few"):
        flags.choose_thresholds(som, fitted["counts"], c, d, z, zp)
    with pytest.raises(ValueError, match="pit_values"):
        flags.choose_thresholds(som, fitted["counts"], c, d, z, zp, target="pit_tail")


def test_choose_thresholds_weights_labelled_galaxies_to_the_users_cells(fitted):
    from sklearn.metrics import recall_score

    som, counts = fitted["som"], fitted["counts"]
    far = som.distance_threshold(0.95)
    c, d, z, zp, bad = _labelled(fitted, lambda d, n, rng: (d > far) | (rng.random(d.size) < 0.05))
    # a user's sample that over-represents some cells: the training galaxies, the first half
    # of the cells' galaxies three times
    uc, ud = som.predict_with_distances(fitted["X_train"])
    extra = uc < som.n_cells // 2
    uc = np.concatenate([uc, uc[extra], uc[extra]])
    ud = np.concatenate([ud, ud[extra], ud[extra]])
    ch = flags.choose_thresholds(som, counts, c, d, z, zp, sample_cell=uc, sample_distance=ud,
                                 min_counts=(0, 50), quantiles=(0.9, 1.0))
    # independent weights: user cell share over labelled cell share
    fu = pd.Series(uc).value_counts(normalize=True)
    fl = pd.Series(c).value_counts(normalize=True)
    w = (fu.reindex(c).fillna(0).to_numpy() / fl.reindex(c).to_numpy())
    for _, row in ch.table.iterrows():
        thr = som.distance_threshold(row["distance_quantile"])
        ood = (counts[c] < row["min_count"]) | (d > thr)
        assert row["recall"] == pytest.approx(recall_score(bad, ood, sample_weight=w))
        assert row["false_positive_rate"] == pytest.approx(
            1 - recall_score(~bad, ~ood, sample_weight=w))
        assert row["flagged_sample"] == pytest.approx(np.mean((counts[uc] < row["min_count"])
                                                              | (ud > thr)))
    assert "user's cell occupancy" in ch.rule


def test_flag_frame_follows_the_schema_and_maps_onto_the_output_columns(fitted, flagger):
    from photozsom.predict import flag_table
    from photozsom.schema import FLAG_COLUMNS, FLAG_OUTPUT, OUTPUT_COLUMNS

    out = flagger.flag(fitted["test"].iloc[:50])
    assert list(out.columns) == list(FLAG_COLUMNS) == list(flags.FLAG_COLUMNS)
    for name, col in FLAG_COLUMNS.items():
        kind = "U" if out[name].dtype.kind in "OU" or str(out[name].dtype).startswith("str") \
            else out[name].dtype.kind
        assert kind == col.kind, name
    # every flag column has its documented name in an output catalogue, with the same kind
    assert set(FLAG_OUTPUT) == set(FLAG_COLUMNS)
    for name, out_name in FLAG_OUTPUT.items():
        assert OUTPUT_COLUMNS[out_name].kind == FLAG_COLUMNS[name].kind, name
    # and the output table carries exactly those columns, with the flag frame's values
    table = flag_table(fitted["test"].iloc[:50], flagger)
    assert list(table.columns) == list(FLAG_OUTPUT.values())
    np.testing.assert_array_equal(table["PZ_FLAG"].to_numpy(), out["flag"].to_numpy())
