"""Per-cell report: values, bootstrap errors, significance and trend vs independent references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from photozsom.evaluation import cells


def _sample(n_cells, per_cell, sigma=0.03, seed=0, pit=True):
    """Test galaxies with Gaussian scaled residuals of width sigma, equally spread over cells."""
    rng = np.random.default_rng(seed)
    cell = np.repeat(np.arange(n_cells), per_cell)
    z = rng.uniform(0.05, 1.2, cell.size)
    dz = sigma * rng.standard_normal(cell.size)
    zp = z + dz * (1 + z)
    u = rng.uniform(size=cell.size) if pit else None
    return cell, z, zp, u, rng


def test_cell_values_match_pandas_groupby():
    rng = np.random.default_rng(1)
    n = 3000
    cell = rng.integers(0, 20, n)
    cell[cell == 7] = 8  # cell 7 empty
    cell[np.flatnonzero(cell == 8)[:1]] = 11
    cell[cell == 11] = 8
    cell[0] = 11  # cell 11 holds a single galaxy
    z = rng.uniform(0.05, 1.0, n)
    zp = z + (1 + z) * rng.standard_t(2, n) * 0.05
    pit = rng.uniform(size=n)
    rep_report = cells.report(cell, z, zp, pit, n_cells=21, n_boot=0)
    rep = rep_report.table

    df = pd.DataFrame({"cell": cell, "z": z, "dz": (zp - z) / (1 + z), "pit": pit})
    g = df.groupby("cell")
    ref = pd.DataFrame(
        {
            "count": g.size(),
            "z_mean": g["z"].mean(),
            "mad": g["dz"].apply(lambda d: 1.4826 * np.median(np.abs(d))),
            "bias": g["dz"].mean(),
            "eta": g["dz"].apply(lambda d: np.mean(np.abs(d) > 0.15)),
            "pco": g["pit"].apply(lambda p: np.mean((p < 0.005) | (p > 0.995))),
        }
    ).reindex(range(21))
    for col in ref:
        np.testing.assert_allclose(
            rep[col].to_numpy(float),
            ref[col].fillna(0 if col == "count" else np.nan),
            rtol=1e-12,
            err_msg=col,
        )
    assert rep.loc[7, "status"] == "empty" and np.isnan(rep.loc[7, "mad"])
    assert rep.loc[11, "status"] == "single" and rep.loc[20, "status"] == "empty"
    glob = rep_report.global_
    assert glob["mad"] == pytest.approx(1.4826 * np.median(np.abs(df.dz)))
    assert glob["eta"] == pytest.approx(np.mean(np.abs(df.dz) > 0.15))


def test_empty_and_single_cells_have_no_errors_and_are_never_significant():
    cell = np.array([0, 0, 0, 0, 2, 3, 3, 3])
    z = np.full(8, 0.5)
    zp = z + np.array([0.0, 0.01, -0.01, 0.02, 0.9, 0.0, 0.0, 0.01])  # cell 2: one huge outlier
    rep_report = cells.report(cell, z, zp, None, n_cells=5, n_boot=100, seed=1)
    rep = rep_report.table
    assert rep["status"].tolist() == ["ok", "empty", "single", "ok", "empty"]
    for m in ("mad", "bias", "eta"):
        assert np.isnan(rep.loc[2, f"{m}_err"]) and np.isnan(rep.loc[2, f"{m}_p"])
        assert not rep.loc[2, f"{m}_signif"] and not rep.loc[1, f"{m}_signif"]
        assert np.isnan(rep.loc[1, m])
    assert rep.loc[2, "eta"] == 1.0  # the value itself is reported
    assert rep["pco"].isna().all()  # no PIT given


def test_unassigned_galaxies_are_left_out():
    cell = np.array([0, 0, -1, 1, 1])
    z = np.full(5, 0.5)
    zp = np.array([0.5, 0.52, 3.0, 0.5, 0.49])
    rep_report = cells.report(cell, z, zp, None, n_cells=2, n_boot=0)
    rep = rep_report.table
    assert rep["count"].tolist() == [2, 2]
    assert rep_report.global_["n_unassigned"] == 1 and rep_report.global_["eta"] == 0.0


def test_bootstrap_errors_match_analytic_standard_errors_for_gaussian_residuals():
    sigma, n = 0.03, 400
    cell, z, zp, pit, _ = _sample(150, n, sigma, seed=2)
    rep_report = cells.report(cell, z, zp, pit, n_cells=150, n_boot=400, seed=0)
    rep = rep_report.table
    # mean: sigma / sqrt(n)
    assert (rep["bias_err"] / (sigma / np.sqrt(n))).mean() == pytest.approx(1.0, abs=0.03)
    # MAD = 1.4826 median|x|; sample-quantile asymptotics (Serfling 1980, Sec. 2.3.3):
    # var(median|x|) = 1 / (4 n f(m)^2), f = density of |x| at its median m = 0.6745 sigma,
    # f(m) = 2 phi(0.6745) / sigma  ->  SE(MAD) = 1.4826 sigma / (4 phi(0.6745) sqrt(n))
    se_mad = 1.4826 * sigma / (4 * stats.norm.pdf(stats.norm.ppf(0.75)) * np.sqrt(n))
    assert se_mad == pytest.approx(1.1664 * sigma / np.sqrt(n), rel=1e-3)
    # the bootstrap SE of a median is itself noisy (relative error ~ n^-1/4), so average cells
    assert (rep["mad_err"] / se_mad).mean() == pytest.approx(1.0, abs=0.06)
    # the null standard error used for the z-score is the same asymptotic value
    assert (rep["mad_sigma0"] / se_mad).mean() == pytest.approx(1.0, abs=0.03)
    # proportions: binomial sqrt(p (1 - p) / n) with the cell's own p
    p = rep["pco"]
    expect = np.sqrt(p * (1 - p) / n)
    use = p > 0
    assert (rep.loc[use, "pco_err"] / expect[use]).mean() == pytest.approx(1.0, abs=0.05)
    # the mean redshift: std(z) / sqrt(n), z uniform on [0.05, 1.2]
    assert (rep["z_mean_err"] / (1.15 / np.sqrt(12 * n))).mean() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("n", [7, 8, 31])
def test_bootstrap_median_and_mean_errors_match_brute_force_resampling(n):
    """The closed-form bootstrap equals resampling with replacement, done naively here."""
    rng = np.random.default_rng(n)
    z = np.full(n, 0.4)
    zp = z + 1.4 * rng.standard_t(3, n) * 0.04
    dz = (zp - z) / 1.4
    n_boot = 40_000
    rep_report = cells.report(np.zeros(n, int), z, zp, None, n_cells=1, n_boot=n_boot, seed=5)
    rep = rep_report.table
    idx = rng.integers(0, n, size=(n_boot, n))
    mad_b = 1.4826 * np.median(np.abs(dz)[idx], axis=1)
    bias_b = dz[idx].mean(axis=1)
    assert rep.loc[0, "mad_err"] == pytest.approx(mad_b.std(ddof=1), rel=0.03)
    assert rep.loc[0, "bias_err"] == pytest.approx(bias_b.std(ddof=1), rel=0.03)
    # the exact bootstrap s.d. of a mean is the plug-in s.d. / sqrt(n), which "ideal" reports
    assert rep.loc[0, "bias_err"] == pytest.approx(dz.std() / np.sqrt(n), rel=0.03)
    ideal_report = cells.report(np.zeros(n, int), z, zp, None, n_cells=1, bootstrap="ideal")
    ideal = ideal_report.table
    assert ideal.loc[0, "bias_err"] == pytest.approx(dz.std() / np.sqrt(n), rel=1e-12)
    assert ideal.loc[0, "eta_err"] == pytest.approx(
        np.sqrt(ideal.loc[0, "eta"] * (1 - ideal.loc[0, "eta"]) / n), rel=1e-12
    )


def test_float64_resampling_path_for_huge_cells_agrees(monkeypatch):
    """Cells above 2^20 galaxies are resampled with float64 uniforms: same statistics."""
    cell, z, zp, pit, _ = _sample(20, 300, seed=9)
    a_report = cells.report(cell, z, zp, pit, n_cells=20, n_boot=2000, seed=1)
    a = a_report.table
    monkeypatch.setattr(cells, "_FLOAT32_MAX_COUNT", 0)
    b_report = cells.report(cell, z, zp, pit, n_cells=20, n_boot=2000, seed=1)
    b = b_report.table
    assert not np.array_equal(a["bias_err"], b["bias_err"])  # the other path did run
    np.testing.assert_allclose(b["bias_err"], a["bias_err"], rtol=0.08)
    assert (b["bias_err"] / a["bias_err"]).mean() == pytest.approx(1.0, abs=0.01)


def test_ideal_bootstrap_agrees_with_resampling():
    cell, z, zp, pit, _ = _sample(50, 200, seed=10)
    res_report = cells.report(cell, z, zp, pit, n_cells=50, n_boot=1000, seed=2)
    res = res_report.table
    ideal_report = cells.report(cell, z, zp, pit, n_cells=50, n_boot=1000, seed=2, bootstrap="ideal")
    ideal = ideal_report.table
    for m in ("bias", "z_mean", "pco"):
        r = (res[f"{m}_err"] / ideal[f"{m}_err"]).dropna()
        assert r.mean() == pytest.approx(1.0, abs=0.01), m  # MC noise 1/sqrt(2 n_boot) per cell
        assert r.std() < 0.05, m
    pd.testing.assert_series_equal(res["mad_err"], ideal["mad_err"])  # drawn in both modes
    with pytest.raises(ValueError, match="bootstrap"):
        cells.report(cell, z, zp, pit, n_cells=50, bootstrap="jackknife")


def test_same_seed_same_report_whatever_n_jobs():
    cell, z, zp, pit, _ = _sample(40, 60, seed=3)
    a_report = cells.report(cell, z, zp, pit, n_cells=40, n_boot=300, seed=11, n_jobs=1)
    a = a_report.table
    b_report = cells.report(cell, z, zp, pit, n_cells=40, n_boot=300, seed=11, n_jobs=2)
    b = b_report.table
    c_report = cells.report(cell, z, zp, pit, n_cells=40, n_boot=300, seed=12)
    c = c_report.table
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["bias_err"], c["bias_err"])


def test_planted_underperforming_cells_are_found_and_clean_ones_are_not():
    cell, z, zp, pit, rng = _sample(64, 150, seed=4)
    dz = (zp - z) / (1 + z)
    i = cell == 5
    dz[i] *= 2.5  # scatter 2.5x in cell 5
    i9 = cell == 9
    dz[i9] += 0.02  # biased cell 9
    i20 = cell == 20
    dz[np.flatnonzero(i20)[:30]] = 0.5  # 20% catastrophic outliers in cell 20
    zp = z + dz * (1 + z)
    pit[cell == 33] = rng.choice([0.001, 0.999], (cell == 33).sum())  # all PCO in cell 33
    rep_report = cells.report(cell, z, zp, pit, n_cells=64, n_boot=200, seed=0)
    rep = rep_report.table
    assert rep.loc[5, "mad_worse"] and rep.loc[9, "bias_worse"]
    assert rep.loc[20, "eta_worse"] and rep.loc[33, "pco_worse"]
    planted = {5, 9, 20, 33}
    clean = [c for c in range(64) if c not in planted]
    for m in cells.METRICS:
        assert rep.loc[clean, f"{m}_signif"].sum() <= 1, m


def test_false_discovery_rate_is_controlled_over_many_seeds():
    """Under the global null every discovery is false: P(any) <= fdr (BH controls FWER then);
    with planted cells the mean false-discovery proportion stays near or below fdr.

    A clean cell is "null" only if its value equals the global one, which includes the planted
    cells; the plants are therefore balanced so that they leave the global value unchanged.
    """
    fdr, n_seeds = 0.1, 120
    any_null = {m: 0 for m in cells.METRICS}
    fdp, power = [], []
    z_mad, raw_p_bias = [], []
    for s in range(n_seeds):
        cell, z, zp, pit, rng = _sample(64, 120, sigma=0.07, seed=100 + s)  # eta ~ 3%
        rep_report = cells.report(cell, z, zp, pit, n_cells=64, n_boot=0, fdr=fdr)
        rep = rep_report.table
        for m in cells.METRICS:
            any_null[m] += bool(rep[f"{m}_signif"].any())
        z_mad.append(rep["mad_z"].to_numpy())
        raw_p_bias.append(rep["bias_p"].to_numpy())
        # plant 8 biased cells, 4 up and 4 down so that the global bias (the null value of the
        # clean cells) stays where it was
        dz = (zp - z) / (1 + z)
        bad = rng.choice(64, 8, replace=False)
        dz[np.isin(cell, bad[:4])] += 0.03
        dz[np.isin(cell, bad[4:])] -= 0.03
        rep_report = cells.report(cell, z, z + dz * (1 + z), pit, n_cells=64, n_boot=0, fdr=fdr)
        rep = rep_report.table
        found = np.flatnonzero(rep["bias_signif"].to_numpy())
        false = np.setdiff1d(found, bad).size
        fdp.append(false / max(found.size, 1))
        power.append(np.isin(bad, found).mean())
    se = np.sqrt(fdr * (1 - fdr) / n_seeds)
    for m in cells.METRICS:
        assert any_null[m] / n_seeds <= fdr + 2.5 * se, m
    assert np.mean(fdp) <= fdr + 0.03
    assert np.mean(power) > 0.8
    # null z-scores of MAD are standard normal (the paper's STD band would give s.d. ~1.65)
    assert np.std(np.concatenate(z_mad)) == pytest.approx(1.0, abs=0.08)
    # null p-values of the bias test are uniform
    assert stats.kstest(np.concatenate(raw_p_bias), "uniform").pvalue > 1e-3


def test_reference_bands_follow_the_paper():
    cell, z, zp, pit, _ = _sample(10, 50, seed=6)
    rep_report = cells.report(cell, z, zp, pit, n_cells=10, n_boot=0)
    rep = rep_report.table
    g = rep_report.global_
    dz = (zp - z) / (1 + z)
    n = rep["count"].to_numpy(float)
    np.testing.assert_allclose(rep["mad_ref"], g["mad"] / np.sqrt(2 * (n - 1)))  # SE of the STD
    np.testing.assert_allclose(rep["bias_ref"], dz.std() / np.sqrt(n))  # SE of the mean
    np.testing.assert_allclose(rep["pco_ref"], np.sqrt(g["pco"] * (1 - g["pco"]) / n))


def test_binomial_p_values_match_scipy_binomtest():
    cell, z, zp, pit, _ = _sample(30, 80, seed=7)
    pit[cell == 3] = 0.999
    rep_report = cells.report(cell, z, zp, pit, n_cells=30, n_boot=0)
    rep = rep_report.table
    g = rep_report.global_["pco"]
    for c in (0, 3, 17):
        k = round(rep.loc[c, "pco"] * 80)
        # scipy's 'two-sided' uses the likelihood ordering; ours doubles the smaller tail:
        # they agree to within a factor 2 and both are tiny for cell 3
        lo = stats.binomtest(k, 80, g, alternative="less").pvalue
        hi = stats.binomtest(k, 80, g, alternative="greater").pvalue
        assert rep.loc[c, "pco_p"] == pytest.approx(min(1.0, 2 * min(lo, hi)))
    assert rep.loc[3, "pco_p"] < 1e-30


def test_trend_matches_scipy_spearman():
    rng = np.random.default_rng(8)
    n_cells = 50
    n_train = rng.integers(1, 500, n_cells)
    per = 60
    cell = np.repeat(np.arange(n_cells), per)
    z = rng.uniform(0.05, 1.0, cell.size)
    sig = 0.02 + 0.2 / np.sqrt(n_train[cell])  # scatter falls with training count
    zp = z + (1 + z) * sig * rng.standard_normal(cell.size)
    rep_report = cells.report(cell, z, zp, None, n_cells=n_cells, train_counts=n_train, n_boot=0)
    rep = rep_report.table
    tr = cells.trend(rep)
    ref = stats.spearmanr(n_train, rep["mad"])
    assert tr.loc["mad", "rho"] == pytest.approx(ref.statistic)
    assert tr.loc["mad", "p"] == pytest.approx(ref.pvalue)
    assert tr.loc["mad", "rho"] < -0.5
    assert tr.loc["abs_bias", "rho"] == pytest.approx(
        stats.spearmanr(n_train, rep["bias"].abs()).statistic
    )
    assert np.isnan(tr.loc["pco", "rho"])  # no PIT
    with pytest.raises(ValueError, match="train_counts"):
        cells.trend(cells.report(cell, z, zp, None, n_cells=n_cells, n_boot=0))


def test_bad_inputs_raise_clear_errors():
    z = np.array([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="n_cells"):
        cells.report(np.array([0, 1, 5]), z, z, None, n_cells=4)
    with pytest.raises(ValueError, match="shape"):
        cells.report(np.array([0, 1, 2]), z[:2], z, None, n_cells=4)
    with pytest.raises(ValueError, match="integer"):
        cells.report(np.array([0.5, 1, 2]), z, z, None, n_cells=4)
    with pytest.raises(ValueError, match="non-finite"):
        cells.report(np.array([0, 1, 2]), z, np.array([0.1, np.nan, 0.3]), None, n_cells=4)
    with pytest.raises(ValueError, match="empty"):
        cells.report(np.array([], int), z[:0], z[:0], None, n_cells=4)
    with pytest.raises(ValueError, match="train_counts"):
        cells.report(np.array([0, 1, 2]), z, z, None, n_cells=4, train_counts=[1, 2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cells.report(np.array([0, 1, 2]), z, z, np.array([0.1, 2.0, 0.3]), n_cells=4)


def _proportion_sky(rng, n_cells=300, slope=0.0, z_effect=0.0, spread=0.0):
    """Per-cell table: training counts, evaluated counts and outlier fractions.

    The outlier rate is 4% at 20 training galaxies and changes by ``slope`` in log-odds per
    dex of ``1 + n_train``; ``z_effect`` makes it depend on the cell's mean redshift, which
    itself grows with the training count (so redshift confounds the count); ``spread`` adds
    a random log-odds scatter between cells unrelated to the count.
    """
    n_train = np.floor(rng.lognormal(3.0, 1.3, n_cells)).astype(int)
    count = rng.poisson(0.3 * n_train + 1) + 1
    x = np.log10(1 + n_train)
    z = rng.uniform(0.1, 1.0, n_cells) + (0.3 * x if z_effect else 0.0)
    logit = (np.log(0.04 / 0.96) + slope * (x - np.log10(21)) + z_effect * (z - 0.8)
             + spread * rng.standard_normal(n_cells))
    k = rng.binomial(count, 1 / (1 + np.exp(-logit)))
    return pd.DataFrame({"n_train": n_train, "count": count, "eta": k / count, "z_mean": z})


def test_binomial_trend_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    d = _proportion_sky(rng, n_cells=80, slope=-0.6, z_effect=1.0)
    k = np.rint(d["eta"] * d["count"]).to_numpy()
    n = d["count"].to_numpy()
    x = np.log10(1 + d["n_train"].to_numpy())
    fit = cells.binomial_trend(k, n, x, d["z_mean"].to_numpy())
    # the same likelihood on galaxies: one row per outcome, weighted by its count
    X = np.column_stack([x, d["z_mean"]])
    Xg = np.vstack([X, X])
    yg = np.r_[np.ones(len(k)), np.zeros(len(k))]
    wg = np.r_[k, n - k]
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(Xg, yg, sample_weight=wg)
    assert fit["slope"] == pytest.approx(lr.coef_[0][0], rel=1e-5)
    assert fit["intercept"] == pytest.approx(lr.intercept_[0], rel=1e-5)
    # standard error: inverse Fisher information of the same model (dispersion >= 1)
    Xa = np.column_stack([np.ones(len(k)), X])
    p = lr.predict_proba(X)[:, 1]
    cov = np.linalg.inv((Xa * (n * p * (1 - p))[:, None]).T @ Xa)
    assert fit["se"] == pytest.approx(np.sqrt(cov[1, 1] * fit["dispersion"]), rel=1e-4)


def test_proportion_trend_keeps_its_level_on_a_null_sky_where_the_rank_test_fails():
    # every cell has the same 4% outlier rate: no trend with training count
    rng = np.random.default_rng(11)
    binom, rank = [], []
    for _ in range(200):
        d = _proportion_sky(rng)
        binom.append(cells.trend(d, ("eta",)).loc["eta", "p"] < 0.05)
        rank.append(cells.trend(d, ("eta",), proportions="rank").loc["eta", "p"] < 0.05)
    # 200 skies at a true 5%: the rejection rate lies in [1.9%, 8.1%] with 97% probability
    assert 0.015 <= np.mean(binom) <= 0.085
    assert np.mean(rank) > 0.5       # the rank correlation of proportions follows cell size


def test_proportion_trend_holds_level_given_redshift_and_with_extra_scatter():
    rng = np.random.default_rng(12)
    given_z, scattered = [], []
    for _ in range(200):
        d = _proportion_sky(rng, z_effect=2.0)   # rate follows redshift, redshift follows count
        given_z.append(cells.trend(d, ("eta",), control="z_mean").loc["eta", "p"] < 0.05)
        d = _proportion_sky(rng, spread=0.5)     # cells differ in rate, not with count
        scattered.append(cells.trend(d, ("eta",)).loc["eta", "p"] < 0.05)
    assert 0.015 <= np.mean(given_z) <= 0.085
    assert 0.015 <= np.mean(scattered) <= 0.09


def test_proportion_trend_finds_a_planted_trend_with_its_slope():
    rng = np.random.default_rng(13)
    found, inside = [], []
    for _ in range(100):
        d = _proportion_sky(rng, slope=-0.6)
        t = cells.trend(d, ("eta",)).loc["eta"]
        found.append(t["p"] < 0.05 and t["slope"] < 0)
        inside.append(t["slope_lo"] <= -0.6 <= t["slope_hi"])
    assert np.mean(found) > 0.8
    assert 0.88 <= np.mean(inside) <= 1.0          # the 95% interval covers the planted slope
