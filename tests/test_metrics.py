"""Metrics of the paper's Methods section against hand computations and scipy/sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import r2_score

from photozsom.evaluation import metrics


class GaussianPDFs:
    """Stand-in for photozsom.pdf.MixturePDF: one Gaussian N(mu, sigma^2) per galaxy."""

    def __init__(self, mu, sigma):
        self.mu, self.sigma = np.asarray(mu, float), np.asarray(sigma, float)

    def __len__(self):
        return self.mu.size

    def mean(self):
        return self.mu

    def median(self):
        return self.mu

    def pit(self, z):
        return stats.norm.cdf(z, self.mu, self.sigma)

    def crps(self, z):  # Gneiting & Raftery (2007), eq. 21
        w = (z - self.mu) / self.sigma
        return self.sigma * (
            w * (2 * stats.norm.cdf(w) - 1) + 2 * stats.norm.pdf(w) - 1 / np.sqrt(np.pi)
        )


Z_TRUE = np.array([0.1, 0.2, 0.5, 1.0, 0.3])
Z_PRED = np.array([0.111, 0.17, 0.53, 1.2, 0.3])
# hand-made scaled residuals (z_pred - z_true) / (1 + z_true)
DZ = np.array([0.011 / 1.1, -0.03 / 1.2, 0.03 / 1.5, 0.2 / 2.0, 0.0])


def test_scaled_residuals_match_hand_values():
    np.testing.assert_allclose(metrics.scaled_residuals(Z_TRUE, Z_PRED), DZ, rtol=1e-12)


def test_point_metrics_match_hand_computation():
    # |DZ| sorted: 0, 0.01, 0.02, 0.025, 0.1 -> median 0.02
    assert metrics.mad(Z_TRUE, Z_PRED) == pytest.approx(1.4826 * 0.02, rel=1e-12)
    # DZ sorted: -0.025, 0, 0.01, 0.02, 0.1 -> median 0.01; |DZ - 0.01| = .035 .01 0 .01 .09 -> 0.01
    assert metrics.nmad(Z_TRUE, Z_PRED) == pytest.approx(1.4826 * 0.01, rel=1e-12)
    assert metrics.bias(Z_TRUE, Z_PRED) == pytest.approx(
        (0.01 - 0.025 + 0.02 + 0.1 + 0) / 5, rel=1e-12
    )
    assert metrics.outlier_fraction(Z_TRUE, Z_PRED) == 0.0  # 0.1 < 0.15
    assert metrics.outlier_fraction(Z_TRUE, Z_PRED, threshold=0.05) == pytest.approx(0.2)
    pm = metrics.point_metrics(Z_TRUE, Z_PRED)
    assert pm["n"] == 5
    assert pm["mad"] == pytest.approx(metrics.mad(Z_TRUE, Z_PRED))
    assert pm["r2"] == pytest.approx(r2_score(Z_TRUE, Z_PRED), rel=1e-12)


def test_mad_and_nmad_match_scipy_median_abs_deviation():
    rng = np.random.default_rng(3)
    z = rng.uniform(0.05, 1.2, 5001)
    zp = z + (1 + z) * (0.01 + 0.03 * rng.standard_normal(z.size))
    dz = (zp - z) / (1 + z)
    # scipy's scale="normal" is 1/Phi^-1(3/4) = 1.482602..., the paper rounds to 1.4826
    nm = stats.median_abs_deviation(dz, scale="normal")
    ma = stats.median_abs_deviation(
        dz, center=lambda x, axis: np.zeros(x.shape[:axis] + x.shape[axis + 1 :]), scale="normal"
    )
    assert metrics.nmad(z, zp) == pytest.approx(nm, rel=1e-5)
    assert metrics.mad(z, zp) == pytest.approx(ma, rel=1e-5)
    # with a bias of 0.01 the paper's MAD exceeds the NMAD
    assert metrics.mad(z, zp) > metrics.nmad(z, zp)


def test_mad_of_gaussian_residuals_is_sigma():
    rng = np.random.default_rng(0)
    z = rng.uniform(0.0, 1.0, 200_000)
    zp = z + 0.03 * (1 + z) * rng.standard_normal(z.size)
    assert metrics.mad(z, zp) == pytest.approx(0.03, rel=0.01)


def test_all_equal_residuals():
    z = np.array([0.2, 0.4, 0.6, 0.8])
    zp = z + 0.02 * (1 + z)  # every dz = 0.02
    assert metrics.mad(z, zp) == pytest.approx(1.4826 * 0.02)
    assert metrics.nmad(z, zp) == pytest.approx(0.0, abs=1e-15)
    assert metrics.bias(z, zp) == pytest.approx(0.02)
    assert metrics.outlier_fraction(z, zp) == 0.0
    # perfect predictions
    assert metrics.mad(z, z) == 0.0 and metrics.r2(z, z) == 1.0


def test_r2_undefined_when_all_true_redshifts_equal():
    z = np.full(4, 0.5)
    assert np.isnan(metrics.r2(z, z + 0.01))
    assert np.isnan(metrics.point_metrics(z, z + 0.01)["r2"])


def test_one_outlier_moves_eta_and_bias_not_mad():
    z = np.full(10, 0.5)
    zp = z.copy()
    zp[:9] += 0.015 * np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4])
    base = metrics.point_metrics(z, zp)
    zp_out = zp.copy()
    zp_out[4] = 1.5  # dz = 1/1.5 = 0.667 > 0.15
    out = metrics.point_metrics(z, zp_out)
    assert base["eta"] == 0.0 and out["eta"] == pytest.approx(0.1)
    assert out["bias"] - base["bias"] == pytest.approx(1.0 / 1.5 / 10)
    # |dz|*1.5 of the ten: 0, .01 (x2) ... ; the outlier replaces a 0 -> median shifts one rank
    assert out["mad"] == pytest.approx(1.4826 * np.median(np.abs(zp_out - z) / 1.5))
    assert out["mad"] < 2 * base["mad"]


@pytest.mark.parametrize(
    "fn",
    [
        metrics.mad,
        metrics.nmad,
        metrics.bias,
        metrics.outlier_fraction,
        metrics.r2,
        metrics.point_metrics,
        metrics.scaled_residuals,
    ],
)
def test_empty_and_bad_input_raise(fn):
    with pytest.raises(ValueError, match="empty"):
        fn(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="must match"):
        fn(np.array([0.1, 0.2]), np.array([0.1]))
    with pytest.raises(ValueError, match="non-finite"):
        fn(np.array([0.1, np.nan]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="> -1"):
        fn(np.array([0.1, -1.0]), np.array([0.1, 0.2]))


def test_pco_fraction_hand_values_and_boundaries():
    pit = np.array([0.001, 0.004, 0.005, 0.5, 0.995, 0.996, 1.0])
    # strictly outside [0.005, 0.995]: 0.001, 0.004, 0.996, 1.0
    assert metrics.pco_fraction(pit) == pytest.approx(4 / 7)
    assert metrics.pco_fraction(pit, level=0.9) == pytest.approx(6 / 7)  # outside [0.05, 0.95]
    with pytest.raises(ValueError, match="empty"):
        metrics.pco_fraction(np.array([]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.pco_fraction(np.array([0.5, 1.2]))
    with pytest.raises(ValueError, match="level"):
        metrics.pco_fraction(pit, level=1.0)


def test_pco_mask_equals_truth_outside_scipy_interval():
    rng = np.random.default_rng(1)
    mu, sig = rng.uniform(0.2, 1.0, 20000), rng.uniform(0.01, 0.1, 20000)
    truth = mu + sig * rng.standard_t(3, size=mu.size)  # heavier tails than the PDFs
    lo, hi = stats.norm.interval(0.99, mu, sig)
    expect = (truth < lo) | (truth > hi)
    got = metrics.pco_mask(stats.norm.cdf(truth, mu, sig), 0.99)
    # identical up to float rounding exactly at the interval edges
    assert (got != expect).sum() <= 2
    assert expect.mean() > 0.02  # the t tails make PCOs more frequent than 1%


def test_pit_stats_match_scipy_and_detect_miscalibration():
    rng = np.random.default_rng(2)
    u = rng.uniform(size=3000)
    s = metrics.pit_stats(u)
    ks = stats.kstest(u, stats.uniform.cdf)
    assert s["ks"] == pytest.approx(ks.statistic) and s["ks_p"] == pytest.approx(ks.pvalue)
    cvm = stats.cramervonmises(u, stats.uniform.cdf)
    assert s["cvm"] == pytest.approx(cvm.statistic) and s["cvm_p"] == pytest.approx(cvm.pvalue)
    # overconfident PDFs: PIT piles up at 0 and 1
    bad = metrics.pit_stats(stats.beta.rvs(0.5, 0.5, size=3000, random_state=rng))
    assert bad["ks_p"] < 1e-6 and bad["cvm_p"] < 1e-6
    with pytest.raises(ValueError):
        metrics.pit_stats(np.array([0.5]))


def test_summary_uses_pdf_mean_and_collects_every_metric():
    rng = np.random.default_rng(4)
    z = rng.uniform(0.1, 1.0, 4000)
    sig = 0.03 * (1 + z)
    mu = z + sig * rng.standard_normal(z.size)  # calibrated Gaussian PDFs
    pdf = GaussianPDFs(mu, sig)
    s = metrics.summary(pdf, z)
    assert s["mad"] == pytest.approx(metrics.mad(z, mu))
    assert s["pco"] == pytest.approx(metrics.pco_fraction(pdf.pit(z)))
    assert s["crps_mean"] == pytest.approx(np.mean(pdf.crps(z)))
    # calibrated PDFs: PCO near 1% and PIT near uniform
    assert 0.005 < s["pco"] < 0.02 and s["ks_p"] > 1e-3
    assert s["pit_mean"] == pytest.approx(0.5, abs=0.02)
    # a point estimate overrides the PDF mean
    s2 = metrics.summary(pdf, z, z_pred=z)
    assert s2["mad"] == 0.0 and s2["pco"] == s["pco"]
    # point-only model
    s3 = metrics.summary(None, z, z_pred=mu)
    assert s3["mad"] == s["mad"] and np.isnan(s3["pco"]) and np.isnan(s3["crps_mean"])
    with pytest.raises(ValueError, match="neither"):
        metrics.summary(None, z)
    with pytest.raises(ValueError, match="galaxies"):
        metrics.summary(pdf, z[:10])


def test_crps_of_stand_in_matches_numerical_integral():
    """Guard the stand-in used above: CRPS = integral of (F(x) - 1[x >= z])^2 dx."""
    pdf = GaussianPDFs([0.5], [0.05])
    x = np.linspace(0.0, 1.0, 200001)
    z = 0.56
    integrand = (stats.norm.cdf(x, 0.5, 0.05) - (x >= z)) ** 2
    assert pdf.crps(np.array([z]))[0] == pytest.approx(np.trapezoid(integrand, x), rel=1e-4)


def test_summary_with_mixture_pdfs_sampled_truth_is_calibrated():
    """Real MixturePDFs; truths drawn from each galaxy's own mixture give PCO ~ 1%, uniform PIT."""
    from photozsom.pdf import CENTRES, SIGMA, Z_MAX, Z_MIN, MixturePDF

    rng = np.random.default_rng(5)
    n = 4000
    mu = rng.uniform(0.1, 1.4, n)
    s = rng.uniform(0.01, 0.06, n)
    w = stats.norm.pdf(CENTRES[None, :], mu[:, None], s[:, None])
    w /= w.sum(axis=1, keepdims=True)
    pdf = MixturePDF(w)
    # draw a component per galaxy, then the truncated Gaussian of that component
    k = (w.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    a, b = (Z_MIN - CENTRES[k]) / SIGMA, (Z_MAX - CENTRES[k]) / SIGMA
    z = stats.truncnorm.rvs(a, b, loc=CENTRES[k], scale=SIGMA, random_state=rng)
    s_all = metrics.summary(pdf, z)
    assert s_all["mad"] == pytest.approx(metrics.mad(z, pdf.mean()))
    assert s_all["crps_mean"] == pytest.approx(np.mean(pdf.crps(z)))
    assert s_all["pco"] == pytest.approx(metrics.pco_fraction(pdf.pit(z)))
    assert abs(s_all["pco"] - 0.01) < 4 * np.sqrt(0.01 * 0.99 / n)
    assert s_all["ks_p"] > 1e-3 and s_all["cvm_p"] > 1e-3


def test_argument_order_is_true_then_pred():
    z_true = np.array([0.1, 0.2, 0.3])
    z_pred = z_true + 0.05
    assert metrics.bias(z_true, z_pred) > 0  # over-prediction is a positive bias
    np.testing.assert_allclose(metrics.scaled_residuals(z_true, z_pred), 0.05 / (1 + z_true))


@pytest.mark.parametrize("fn", [metrics.mad, metrics.nmad, metrics.bias, metrics.outlier_fraction,
                                metrics.r2])
def test_integer_weights_equal_repeated_rows(fn):
    rng = np.random.default_rng(3)
    z = rng.uniform(0.05, 1.2, 41)
    zp = z + rng.normal(0, 0.08, 41) * (1 + z)
    w = rng.integers(0, 4, 41)
    w[0] = 2  # at least one positive weight
    repeated = fn(np.repeat(z, w), np.repeat(zp, w))
    assert fn(z, zp, sample_weight=w) == pytest.approx(repeated, rel=1e-12, abs=1e-15)


def test_weighted_median_equals_numpy_for_equal_weights():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 10):
        x = rng.normal(size=n)
        assert metrics.weighted_median(x, np.full(n, 0.3)) == pytest.approx(np.median(x), rel=1e-12)


def test_bad_weights_raise():
    z = np.array([0.1, 0.2])
    with pytest.raises(ValueError, match="non-negative"):
        metrics.mad(z, z, sample_weight=[1.0, -1.0])
    with pytest.raises(ValueError, match="sample_weight has 1"):
        metrics.bias(z, z, sample_weight=[1.0])
