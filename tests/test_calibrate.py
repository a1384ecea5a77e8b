"""Tests of photozsom.calibrate: PIT-based recalibration of MixturePDFs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr, ndtri

from photozsom.calibrate import (
    TABLE_X,
    RecalibratedPDF,
    Recalibrator,
    cross_fitted,
    pco_noise,
    probit_pit,
)
from photozsom.pdf import CENTRES, SIGMA, MixturePDF

MIDPOINTS = 0.5 * (CENTRES[1:] + CENTRES[:-1])


def gaussian_pdfs(mu: np.ndarray, s: np.ndarray) -> MixturePDF:
    """Mixtures whose density is close to N(mu, s^2): the centres weighted by a Gaussian of
    width sqrt(s^2 - sigma^2), so that adding the component width gives s."""
    sd = np.sqrt(s**2 - SIGMA**2)
    w = np.exp(-0.5 * ((CENTRES[None, :] - mu[:, None]) / sd[:, None]) ** 2)
    return MixturePDF(w / w.sum(axis=1, keepdims=True))


def too_narrow_sample(n: int, factor, seed: int):
    """P(z) says N(mu, s) but z is drawn from N(mu, factor * s)."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.3, 1.2, n)
    s = rng.uniform(0.012, 0.04, n)
    z = mu + factor * s * rng.standard_normal(n)
    return gaussian_pdfs(mu, s), z


@pytest.fixture(scope="module")
def narrow():
    pdf, z = too_narrow_sample(16000, 2.0, seed=0)
    fit, test = slice(0, 8000), slice(8000, None)
    rc = Recalibrator(kind="global").fit(pdf[fit], z[fit])
    return rc, pdf[test], z[test]


def test_recalibrated_pit_is_uniform_on_held_out_half(narrow):
    rc, pdf, z = narrow
    before = pdf.pit(z)
    new = rc.apply(pdf)
    after = new.pit(z)
    assert stats.kstest(before, "uniform").pvalue < 1e-20           # truly miscalibrated
    assert stats.kstest(after, "uniform").pvalue > 1e-3
    pco = np.mean((after < 0.005) | (after > 0.995))
    assert 0.006 < pco < 0.015, pco
    assert np.mean((before < 0.005) | (before > 0.995)) > 0.1


def test_intervals_cover_nominal_fraction_after_recalibration(narrow):
    rc, pdf, z = narrow
    new = rc.apply(pdf)
    for level, tol in ((0.68, 0.02), (0.95, 0.01)):
        lo, hi = new.interval(level)                 # quantiles, not PIT: independent path
        cover = np.mean((z >= lo) & (z <= hi))
        assert abs(cover - level) < tol, (level, cover)
        lo0, hi0 = pdf.interval(level)
        assert np.mean((z >= lo0) & (z <= hi0)) < level - 0.15


def test_recalibration_widens_by_the_true_factor_and_improves_crps(narrow):
    rc, pdf, z = narrow
    new = rc.apply(pdf)
    ratio = np.median(new.std() / pdf.std())
    assert ratio == pytest.approx(2.0, rel=0.05)
    assert new.crps(z).mean() < 0.97 * pdf.crps(z).mean()
    # the means are not moved by a symmetric map
    assert np.median(np.abs(new.mean() - pdf.mean())) < 0.1 * SIGMA


def test_projection_cdf_equals_mapped_cdf_at_midpoints(narrow):
    rc, pdf, _ = narrow
    pdf = pdf[:500]
    new, resid = rc.project(pdf, return_residual=True)
    exact = resid < 1e-12
    assert exact.mean() > 0.9
    old_cdf = pdf.cdf(np.broadcast_to(MIDPOINTS, (len(pdf), MIDPOINTS.size)))
    new_cdf = new.cdf(np.broadcast_to(MIDPOINTS, (len(pdf), MIDPOINTS.size)))
    want = rc.transform(old_cdf)
    # above 1 - 1e-6 the reference g(F) itself loses precision (1 - F rounds in float64)
    ok = exact[:, None] & (old_cdf < 1 - 1e-6)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(new_cdf[ok], want[ok], atol=1e-9)


def test_projection_pit_between_midpoints_is_close_to_mapped_pit(narrow):
    rc, pdf, z = narrow
    new = rc.project(pdf)
    diff = np.abs(new.pit(z) - rc.transform(pdf.pit(z)))
    assert np.percentile(diff, 99) < 2e-3
    assert diff.max() < 1e-2


def test_projection_error_is_small_compared_with_sigma(narrow):
    rc, pdf, _ = narrow
    pdf = pdf[:500]
    err = rc.projection_error(pdf)
    # the widened PDFs are several components wide: probability moves by << sigma
    assert np.percentile(err, 99) < 0.05 * SIGMA
    # independent check on quantiles: the exact quantile of g(F) is F^-1(g^-1(q))
    q = np.broadcast_to([0.005, 0.16, 0.5, 0.84, 0.995], (len(pdf), 5))
    shift = np.abs(rc.project(pdf).ppf(q) - pdf.ppf(rc.inverse_transform(q)))
    assert np.percentile(shift, 99) < 0.15 * SIGMA


def test_identity_map_returns_the_input_weights():
    pdf, z = too_narrow_sample(3000, 1.0, seed=3)
    rc = Recalibrator().fit(pdf, z)
    rc.knots_y_ = rc.knots_x_.copy()            # force g(u) = u
    rc.tail_slopes_ = np.ones(2)
    np.testing.assert_allclose(rc.transform(np.array([1e-9, 0.3, 0.999])),
                               [1e-9, 0.3, 0.999], rtol=1e-12)
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.full(200, 0.05), size=50)      # spiky, multimodal mixtures
    new = rc.apply(MixturePDF(w))
    np.testing.assert_allclose(new.weights, w, atol=1e-10)


def test_global_map_is_the_empirical_cdf_of_the_pit():
    pdf, z = too_narrow_sample(10000, 1.7, seed=4)
    rc = Recalibrator().fit(pdf, z)
    pit = np.sort(pdf.pit(z))
    u = np.array([1e-3, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 0.999])
    ecdf = np.searchsorted(pit, u, side="right") / pit.size        # Bordoloi et al. 2010
    np.testing.assert_allclose(rc.transform(u), ecdf, atol=4e-3)
    # the inverse is the inverse
    np.testing.assert_allclose(rc.inverse_transform(rc.transform(u)), u, rtol=1e-9)


def test_map_extends_beyond_the_fitted_pit_range_and_keeps_ends():
    pdf, z = too_narrow_sample(4000, 2.0, seed=5)
    rc = Recalibrator().fit(pdf, z)
    u = np.array([0.0, 1e-30, 1e-12, 1e-6, 0.5, 1 - 1e-12, 1.0])
    g = rc.transform(u)
    assert g[0] == 0.0 and g[-1] == 1.0
    assert np.all(np.diff(g) > 0)
    # a 2x too narrow Gaussian: g(u) = Phi(Phi^-1(u) / 2) in the tails too
    np.testing.assert_allclose(probit_pit(g[2:4]), probit_pit(u[2:4]) / 2, rtol=0.15)


# -- per-cell maps ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def celled():
    rng = np.random.default_rng(7)
    n = 16000
    cells = rng.integers(0, 3, n)
    cells[:3] = 3                                    # cell 3: three galaxies
    factor = np.where(cells == 1, 3.0, 1.5)          # cell 1: twice as miscalibrated
    pdf, z = too_narrow_sample(n, 1.0, seed=8)
    mu, s = pdf.mean(), pdf.std()
    z = mu + factor * s * rng.standard_normal(n)
    half = np.arange(n) % 2 == 0
    rc = Recalibrator(kind="cell", shrinkage=50).fit(pdf[half], z[half], cells[half], n_cells=5)
    return rc, pdf, z, cells, half


def test_big_cell_gets_its_own_map(celled):
    rc, pdf, _, cells, half = celled
    u = np.linspace(0.02, 0.98, 25)
    # the true maps: P(z) is 1.5x too narrow in cells 0 and 2, 3x in cell 1
    truth = {c: ndtr(ndtri(u) / f) for c, f in ((0, 1.5), (1, 3.0), (2, 1.5))}
    for c in (0, 1, 2):
        got = rc.transform(u, np.full(u.size, c))
        assert np.max(np.abs(got - truth[c])) < 0.03, c
        assert np.mean(np.abs(got - truth[c])) < 0.015, c
    # the global map (a blend of both) is clearly wrong for cell 1
    assert np.max(np.abs(rc.transform(u) - truth[1])) > 0.08
    # the cell's width ratio is recovered
    test = ~half & (cells == 1)
    ratio = np.median(rc.apply(pdf[test], cells[test]).std() / pdf[test].std())
    assert ratio == pytest.approx(3.0, rel=0.1)


def test_tiny_cell_gets_the_global_map(celled):
    rc, *_ = celled
    n3 = rc.cell_count_[3]
    assert n3 == 2                                   # even rows among the first three
    u = np.linspace(0.01, 0.99, 25)
    glob = rc.transform(u)
    # documented bound: |g_c(u) - g(u)| <= n_c / (n_c + n_0)
    diff = np.abs(rc.transform(u, np.full(u.size, 3)) - glob)
    assert diff.max() <= n3 / (n3 + 50.0) + 1e-12
    # unseen (4), out of range (99) and no cell (-1) are exactly global
    for c in (4, 99, -1):
        np.testing.assert_array_equal(rc.transform(u, np.full(u.size, c)), glob)


def test_shrinkage_extremes_give_global_or_the_cells_own_pit_cdf(celled):
    _, pdf, z, cells, half = celled
    sel = half & (cells == 1)
    u = np.array([0.01, 0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 0.99])
    c1 = np.ones(u.size, dtype=int)
    rigid = Recalibrator(kind="cell", shrinkage=1e12).fit(pdf[half], z[half], cells[half])
    np.testing.assert_allclose(rigid.transform(u, c1), rigid.transform(u), atol=1e-8)
    free = Recalibrator(kind="cell", shrinkage=1e-9).fit(pdf[half], z[half], cells[half])
    pit = np.sort(pdf[sel].pit(z[sel]))
    ecdf = np.searchsorted(pit, u, side="right") / pit.size
    np.testing.assert_allclose(free.transform(u, c1), ecdf, atol=0.015)


def test_per_cell_beats_global_on_the_distinct_cell(celled):
    rc, pdf, z, cells, half = celled
    glob = Recalibrator().fit(pdf[half], z[half])
    test = ~half & (cells == 1)
    p_cell = rc.apply(pdf[test], cells[test]).pit(z[test])
    p_glob = glob.apply(pdf[test]).pit(z[test])
    def c68(p):
        return np.mean((p > 0.16) & (p < 0.84))

    assert abs(c68(p_cell) - 0.68) < 0.03
    assert abs(c68(p_glob) - 0.68) > 0.05


# -- files and validation --------------------------------------------------------------------
def test_save_load_round_trip(tmp_path, celled):
    rc, pdf, _, cells, _ = celled
    rc.save(tmp_path / "rc")
    meta = json.loads((tmp_path / "rc" / "meta.json").read_text())
    assert meta["format"] == "photozsom.recalibrator" and meta["version"] == 1
    with np.load(tmp_path / "rc" / "arrays.npz", allow_pickle=False) as f:
        assert "knots_x" in f.files
    back = Recalibrator.load(tmp_path / "rc")
    assert back.get_params() == rc.get_params()
    sub, c = pdf[:200], cells[:200]
    np.testing.assert_array_equal(back.apply(sub, c).weights, rc.apply(sub, c).weights)
    u = np.linspace(0, 1, 11)
    np.testing.assert_array_equal(back.transform(u, np.ones(11, int)),
                                  rc.transform(u, np.ones(11, int)))


def test_load_refuses_other_artifacts(tmp_path):
    from photozsom.artifacts import ArtifactError, save_artifact

    save_artifact(tmp_path / "x", "som", {"a": np.zeros(2)}, {})
    with pytest.raises(ArtifactError, match="recalibrator"):
        Recalibrator.load(tmp_path / "x")


def test_validation_errors():
    pdf, z = too_narrow_sample(300, 1.5, seed=9)
    with pytest.raises(ValueError, match="kind must be one of"):
        Recalibrator(kind="local").fit(pdf, z)
    with pytest.raises(ValueError, match="shrinkage must be a positive"):
        Recalibrator(kind="cell", shrinkage=0).fit(pdf, z, np.zeros(300, int))
    with pytest.raises(ValueError, match="one redshift per PDF"):
        Recalibrator().fit(pdf, z[:-1])
    bad = z.copy()
    bad[[4, 7]] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN/infinite redshift\(s\) \(first rows \[4, 7\]\)"):
        Recalibrator().fit(pdf, bad)
    with pytest.raises(ValueError, match="needs cells="):
        Recalibrator(kind="cell").fit(pdf, z)
    with pytest.raises(ValueError, match="cells has 299 entries"):
        Recalibrator(kind="cell").fit(pdf, z, np.zeros(299, int))
    with pytest.raises(ValueError, match="below -1"):
        Recalibrator(kind="cell").fit(pdf, z, np.full(300, -2))
    with pytest.raises(ValueError, match="integer SOM cell"):
        Recalibrator(kind="cell").fit(pdf, z, np.full(300, 0.5))
    with pytest.raises(ValueError, match="at least 120 galaxies"):
        Recalibrator().fit(pdf[:100], z[:100])
    with pytest.raises(TypeError, match="MixturePDF"):
        Recalibrator().fit(pdf.weights, z)
    with pytest.raises(ValueError, match="not fitted"):
        Recalibrator().apply(pdf)
    rc = Recalibrator(kind="cell").fit(pdf, z, np.zeros(300, int))
    with pytest.raises(ValueError, match="cells has 10 entries"):
        rc.apply(pdf, np.zeros(10, int))
    with pytest.raises(ValueError, match=r"u must hold probabilities \(CDF values\) in \[0, 1\]"):
        rc.transform(np.array([0.5, 1.5]))


def heavy_tailed_sample(n: int, seed: int):
    """P(z) says N(mu, s); z has Student-t (4 d.o.f.) errors 1.5x wider and 0.4% outliers."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.3, 1.2, n)
    s = rng.uniform(0.012, 0.04, n)
    z = mu + 1.5 * s * rng.standard_t(4, n)
    z = np.where(rng.random(n) < 0.004, rng.uniform(0.05, 1.5, n), z)
    return gaussian_pdfs(mu, s), np.clip(z, 0.001, 1.599)


@pytest.mark.parametrize("n_fit", [1000, 8000])
def test_heavy_tails_are_not_over_or_under_corrected(n_fit):
    # the PCO edges (probits +-2.576) are knots of the map, never an extrapolation: on the
    # fitted galaxies the PCO is 1% up to the ties of the plotting positions, and on 40,000
    # new ones within the binomial error of the fitted sample's tails
    pdf, z = heavy_tailed_sample(n_fit, seed=1)
    rc = Recalibrator(kind="global").fit(pdf, z)
    assert rc.pit_fit_["before"]["pco"] > 0.1
    assert abs(rc.pit_fit_["after"]["pco"] - 0.01) <= 0.0025
    pdf_t, z_t = heavy_tailed_sample(40_000, seed=2)
    u = rc.transform(pdf_t.pit(z_t))
    pco = np.mean((u < 0.005) | (u > 0.995))
    assert abs(pco - 0.01) < 3 * np.sqrt(0.01 / n_fit) + 0.001, pco


def test_cell_kernel_keeps_the_cell_variance_exactly():
    # the smoothed per-cell distribution is a mixture of N(x'_i, b^2) with x'_i pulled toward
    # the mean by sqrt(1 - b^2/v): its variance is the cell's probit variance v exactly
    # (the former factor (1 + b^2/v)^-1/2 gave v (1 + b^4/v^2), 4% too wide here)
    pdf, z = too_narrow_sample(300, 1.3, seed=7)
    cells = np.full(300, -1)
    cells[:30] = 0
    rc = Recalibrator(kind="cell", shrinkage=1e-9).fit(pdf, z, cells, n_cells=1)
    x = probit_pit(pdf[:30].pit(z[:30]))
    H = ndtr(rc.cell_table_[0])                       # the cell's smoothed probit CDF
    mid = 0.5 * (TABLE_X[1:] + TABLE_X[:-1])
    dH = np.diff(H)
    mean = np.sum(mid * dH) / dH.sum()
    var = np.sum((mid - mean) ** 2 * dH) / dH.sum()
    assert mean == pytest.approx(x.mean(), abs=2e-3)
    assert var == pytest.approx(np.var(x), rel=5e-3)


def test_photozmodel_recalibrates_by_default_out_of_fold_when_validation_is_small():
    from _catalogues import make_catalogue

    from photozsom.features import CATALOG_FEATURES, feature_matrix
    from photozsom.mdn import cross_val_predict
    from photozsom.model import RECAL_FOLDS, PhotoZModel

    train, val = make_catalogue(1200, seed=0), make_catalogue(150, seed=1)
    opts = {"hidden": (16, 16, 16), "max_epochs": 3, "device": "cpu"}
    model = PhotoZModel("catalog", seed=0, catalog_features=CATALOG_FEATURES, **opts)
    model.fit(train, train["Z"], val, val["Z"], progress=False)
    assert model.recalibration == "global" and model.recalibrator_ is not None
    # 150 validation galaxies cannot pin the 0.5% tails: the map is fitted on out-of-fold
    # predictions of all 1,350 labelled galaxies -- the same map as one fitted by hand on them
    assert model.recalibration_source_ == f"out_of_fold_{RECAL_FOLDS}"
    assert model.recalibrator_.n_fit_ == 1350
    X = np.vstack([feature_matrix(c, CATALOG_FEATURES)[0] for c in (train, val)])
    z = np.concatenate([train["Z"], val["Z"]])
    oof, _ = cross_val_predict(X, z, np.arange(len(z)), n_folds=RECAL_FOLDS, seed=0,
                               progress=False, **opts)
    ref = Recalibrator("global").fit(oof, z)
    np.testing.assert_allclose(model.recalibrator_.knots_x_, ref.knots_x_, rtol=1e-5,
                               atol=1e-6)
    # predictions are recalibrated unless asked not to; recalibration=None keeps the raw MDN
    raw = model.predict(val, recalibrate=False)
    np.testing.assert_allclose(model.predict(val).weights, ref.apply(raw).weights, atol=1e-6)
    plain = PhotoZModel("catalog", seed=0, catalog_features=CATALOG_FEATURES,
                        recalibration=None, **opts).fit(train, train["Z"], val, val["Z"],
                                                        progress=False)
    assert plain.recalibrator_ is None
    np.testing.assert_allclose(plain.predict(val).weights, raw.weights, atol=1e-6)


def test_fast_projection_agrees_with_the_reference_path():
    """The table + vectorised-solve path against the exact Phi^-1 / h / Phi + LAPACK path, on
    a strongly widening map (tail slopes well below 1, as fitted on real MDNs) and spiky
    float32 mixtures; and the fast path is actually taken (its table is built)."""
    pdf, z = too_narrow_sample(6000, 2.5, seed=11)
    rc = Recalibrator().fit(pdf[:3000], z[:3000])
    assert rc.tail_slopes_.max() < 0.8
    rng = np.random.default_rng(5)
    spiky = rng.dirichlet(np.full(200, 0.05), size=300)
    w = np.vstack([pdf[3000:].weights, spiky]).astype(np.float32)
    test = MixturePDF(w / w.sum(axis=1, keepdims=True))
    ref, r_ref = rc.project(test, return_residual=True, exact=True)
    assert getattr(rc, "_table_cache", None) is None          # the reference path: no table
    fast, r_fast = rc.project(test, return_residual=True)
    assert rc._table_cache is not None
    levels = np.array([0.025, 0.16, 0.5, 0.84, 0.975])
    q = np.broadcast_to(levels, (len(test), levels.size))
    dq = np.abs(fast.ppf(q) - ref.ppf(q))
    assert dq.max() < 1e-5, dq.max()
    assert np.median(dq) < 1e-8
    # where the reference matches g(F) at the mid-points exactly (smooth float64 mixtures),
    # the fast path does up to the table's interpolation error
    smooth = pdf[3000:3500]
    new, r = rc.project(smooth, return_residual=True)
    exact_rows = rc.project(smooth, exact=True, return_residual=True)[1] < 1e-12
    assert exact_rows.mean() > 0.9 and np.median(r) < 1e-9
    mid = np.broadcast_to(MIDPOINTS, (len(smooth), MIDPOINTS.size))
    old = smooth.cdf(mid)
    want = rc.transform(old)
    # above 1 - 1e-6 the reference g(F) itself loses precision (1 - F rounds in float64)
    ok = exact_rows[:, None] & (want > 1e-6) & (old < 1 - 1e-6)
    np.testing.assert_allclose(new.cdf(mid)[ok], want[ok], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(r_fast, r_ref, rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(fast.mean(), ref.mean(), atol=1e-7)
    np.testing.assert_allclose(fast.std(), ref.std(), atol=1e-6)


@pytest.mark.parametrize(("k", "sigma"), [(8, 0.4), (12, 0.2), (8, 0.05)])
def test_fast_projection_agrees_with_the_reference_on_grids_whose_band_spans_them(k, sigma):
    """Coarse grids of wide components, where the band of components around a mid-point
    is (almost) the whole grid (b = K - 2: the prefix and suffix sums are empty): the fast
    path's weights and quantiles against the reference path's."""
    from photozsom.calibrate import _Projector
    from photozsom.pdf import get_grid

    pdf, z = too_narrow_sample(3000, 2.0, seed=3)
    rc = Recalibrator().fit(pdf, z)
    grid = get_grid(np.linspace(0.0, 0.7, k), sigma, (0.0, 0.7))
    b = _Projector.get(grid).kernel_arrays()["b"]
    assert b >= k - 3
    w = np.random.default_rng(k).dirichlet(np.full(k, 0.5), size=400)
    test = MixturePDF(w, centres=grid.centres, sigma=sigma, bounds=(0.0, 0.7))
    ref = rc.project(test, exact=True)
    fast = rc.project(test)
    np.testing.assert_allclose(fast.weights, ref.weights, atol=1e-6)
    q = np.broadcast_to([0.025, 0.16, 0.5, 0.84, 0.975], (len(test), 5))
    assert np.abs(fast.ppf(q) - ref.ppf(q)).max() < 1e-5


def test_fast_apply_table_follows_changes_of_the_map():
    pdf, z = too_narrow_sample(3000, 2.0, seed=12)
    rc = Recalibrator().fit(pdf, z)
    wide = rc.project(pdf[:50])
    rc.knots_y_ = rc.knots_x_.copy()            # now the identity: the cached table is stale
    rc.tail_slopes_ = np.ones(2)
    same = rc.project(pdf[:50])
    np.testing.assert_allclose(same.weights, pdf[:50].weights, atol=1e-9)
    assert np.median(wide.std() / pdf[:50].std()) > 1.5


def test_cross_fitted_recalibrates_each_fold_by_the_others_only():
    pdf, z = too_narrow_sample(3000, 2.0, seed=3)
    fold = np.arange(3000) % 3
    out = cross_fitted("global", pdf, z, fold)
    for f in range(3):
        a = fold == f
        alone = Recalibrator("global").fit(pdf[~a], z[~a]).apply(pdf[a])
        np.testing.assert_array_equal(out.weights[a], alone.weights)
        np.testing.assert_array_equal(out.pit(z)[a], alone.pit(z[a]))
    # changing one fold's redshifts leaves that fold's own recalibration unchanged
    z2 = z.copy()
    z2[fold == 0] += 0.3
    out2 = cross_fitted("global", pdf, z2, fold)
    np.testing.assert_array_equal(out2.weights[fold == 0], out.weights[fold == 0])
    assert not np.array_equal(out2.weights[fold == 1], out.weights[fold == 1])
    # and it makes the too-narrow P(z) calibrated: PIT close to uniform on every fold
    pit = out.pit(z)
    assert stats.kstest(pit, "uniform").pvalue > 1e-3


def brute_quantile(pdf: MixturePDF, rc: Recalibrator, q: float) -> np.ndarray:
    """Quantile of g(F) by bisection on a fine grid of the exact mapped CDF (independent of
    ppf and quantiles)."""
    zg = np.linspace(*pdf.bounds, 16001)
    G = rc.transform(pdf.cdf(np.broadcast_to(zg, (len(pdf), zg.size))))
    i = np.argmax(G >= q, axis=1)
    lo, hi = zg[np.maximum(i - 1, 0)], zg[i]
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        up = rc.transform(pdf.cdf(mid)) >= q
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    return 0.5 * (lo + hi)


def test_apply_is_the_mapped_cdf_exactly(narrow):
    """cdf, pit, ppf, quantiles and intervals of apply's result are those of g(F): the map of
    the raw CDF, and quantiles found by bisection of g(F) -- not of the projection."""
    rc, pdf, z = narrow
    pdf, z = pdf[:300], z[:300]
    new = rc.apply(pdf)
    np.testing.assert_array_equal(new.pit(z), rc.transform(pdf.pit(z)))
    zz = np.broadcast_to(np.linspace(0.2, 1.3, 7), (300, 7))
    np.testing.assert_array_equal(new.cdf(zz), rc.transform(pdf.cdf(zz)))
    for q in (0.005, 0.16, 0.5, 0.995):
        want = brute_quantile(pdf, rc, q)
        np.testing.assert_allclose(new.ppf(q), want, atol=1e-6)
        np.testing.assert_allclose(new.quantiles([q])[:, 0], want, atol=1e-5)
    lo, hi = new.interval(0.99)
    np.testing.assert_allclose(lo, brute_quantile(pdf, rc, 0.005), atol=1e-5)
    np.testing.assert_allclose(hi, brute_quantile(pdf, rc, 0.995), atol=1e-5)
    np.testing.assert_allclose(new.median(), brute_quantile(pdf, rc, 0.5), atol=1e-5)
    # the projected mixture is a different object: its quantiles are near, not equal
    proj = rc.project(pdf)
    assert np.abs(proj.ppf(0.005) - new.ppf(0.005)).max() > 1e-7
    np.testing.assert_array_equal(new.weights, proj.weights)
    assert type(new.projected()) is MixturePDF
    np.testing.assert_array_equal(new.projected().ppf(0.005), proj.ppf(0.005))
    # slicing and stacking keep the exact map
    part = RecalibratedPDF.concatenate([new[:100], new[100:]])
    np.testing.assert_array_equal(part.pit(z), new.pit(z))
    # stacked through the base class too (as predict joins its batches): still G(F)
    joined = MixturePDF.concatenate([new[:100], new[100:]])
    assert isinstance(joined, RecalibratedPDF)
    np.testing.assert_array_equal(joined.quantiles([0.005]), new.quantiles([0.005]))
    # a plain MixturePDF among them: the plain stack of the projected weights
    mixed = MixturePDF.concatenate([new[:100], proj[100:]])
    assert type(mixed) is MixturePDF
    np.testing.assert_array_equal(mixed.weights, proj.weights)
    np.testing.assert_array_equal(new[7].pit(z[7:8]), new.pit(z)[7:8])


def test_apply_per_cell_is_exact_for_cell_and_global_rows():
    pdf, z = too_narrow_sample(6000, 2.0, seed=21)
    cells = np.arange(6000) % 4
    cells[:40] = -1
    rc = Recalibrator("cell", shrinkage=20).fit(pdf[:4000], z[:4000], cells=cells[:4000])
    test, zt, ct = pdf[4000:4200], z[4000:4200], cells[4000:4200].copy()
    ct[:10] = -1
    new = rc.apply(test, cells=ct)
    np.testing.assert_array_equal(new.pit(zt), rc.transform(test.pit(zt), ct))
    q = new.quantiles([0.005, 0.5, 0.995])
    back = rc.transform(test.cdf(q), ct)        # g(F(quantile)) = level
    np.testing.assert_allclose(back, np.broadcast_to([0.005, 0.5, 0.995], back.shape), atol=2e-6)


def _narrow_heavy_sky(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu, s, z)``: Gaussian P(z) N(mu, s) 1.8x too narrow, with Student-t (5 d.o.f.,
    unit variance) errors; rows with z outside (0.01, 1.59) dropped."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.3, 1.2, n)
    s = rng.uniform(0.012, 0.04, n)
    z = mu + 1.8 * s * rng.standard_t(5, n) * np.sqrt(3 / 5)
    ok = (z > 0.01) & (z < 1.59)
    return mu[ok], s[ok], z[ok]


def test_recalibrated_pco_is_unbiased_on_large_test_sets():
    """A model 1.8x too narrow with heavy (Student-t) tails: a map fitted on 20,000 held-out
    galaxies gives, on 60,000 others, a PCO within its binomial error of 1%, and the 99%
    interval of the recalibrated P(z) misses exactly the galaxies the PIT calls outliers."""
    mu, s, z = _narrow_heavy_sky(80_000, 7)
    pdf = gaussian_pdfs(mu, s)
    fit = np.arange(len(z)) < 20_000
    rc = Recalibrator().fit(pdf[fit], z[fit])
    test = rc.apply(pdf[~fit])
    pco = float(np.mean(test.pit(z[~fit]) < 0.005) + np.mean(test.pit(z[~fit]) > 0.995))
    se = np.sqrt(0.01 * 0.99 / (~fit).sum() + 0.01 * 0.99 / fit.sum())
    assert abs(pco - 0.01) < 3 * se, (pco, se)
    lo, hi = test.interval(0.99)
    outside = np.mean((z[~fit] < lo) | (z[~fit] > hi))
    assert abs(outside - pco) < 1e-4             # the interval and the PIT agree


def test_pco_noise_predicts_the_scatter_of_recalibrated_pco_over_fit_samples():
    """Maps fitted on many independent 1,500-galaxy samples of one too-narrow, heavy-tailed
    sky: their PCO on 20,000 other galaxies averages 1% (no bias) and scatters by pco_noise."""
    mu, s, z = _narrow_heavy_sky(200_000, 11)
    test = slice(0, 20_000)
    pit_test = gaussian_pdfs(mu[test], s[test]).pit(z[test])
    n_fit, pcos = 1500, []
    for k in range(60):
        fit = slice(20_000 + k * n_fit, 20_000 + (k + 1) * n_fit)
        rc = Recalibrator().fit(gaussian_pdfs(mu[fit], s[fit]), z[fit])
        u = rc.transform(pit_test)
        pcos.append(100 * float(np.mean((u < 0.005) | (u > 0.995))))
    # across fit samples (one test set): the fit's part of the noise
    sd, predicted = np.std(pcos, ddof=1), pco_noise(n_fit)
    assert 0.7 * predicted < sd < 1.3 * predicted, (sd, predicted)   # chi2(59): 95% in 0.82-1.18
    # the mean: the fit noise averaged over 60 samples, plus the one test set's binomial part
    se_mean = np.sqrt(predicted**2 / 60 + pco_noise(n_fit, 20_000) ** 2 - predicted**2)
    assert abs(np.mean(pcos) - 1.0) < 3 * se_mean, (np.mean(pcos), se_mean)
    with pytest.raises(ValueError, match="n_fit"):
        pco_noise(0)


def test_fast_path_solve_by_the_band_of_the_inverse_matches_a_dense_solve():
    """The fast path multiplies the cell masses by the band of B^-1 instead of solving: on
    random non-negative masses it agrees with numpy's dense solve to double precision, and
    what the band leaves out of B^-1 is below 1e-15 of its diagonal."""
    from photozsom.calibrate import _Projector
    from photozsom.pdf import default_grid

    proj = _Projector.get(default_grid())
    B = proj.B.toarray()
    assert proj.inv_truncation < 1e-15
    d = np.random.default_rng(3).dirichlet(np.full(B.shape[0], 0.3), size=20)
    want = np.linalg.solve(B, d.T).T
    hb = (proj.inv_band.shape[0] - 1) // 2
    dp = np.pad(d, ((0, 0), (hb, hb)))
    got = sum(proj.inv_band[q][None, :] * dp[:, q:q + B.shape[0]]
              for q in range(2 * hb + 1))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


def test_fast_path_table_reads_g_to_1e_10_in_the_body_and_marks_the_kinks():
    """The compiled mid-point pass (F, 1 - F and the tabulated map) against F, 1 - F from
    products with the components' CDFs (and the mixture's own cdf away from the far tails,
    where it drops components beyond 10 sigma) and the map evaluated through Phi^-1, h and
    Phi: every value the table gives is within 1e-10 (relative) of the exact one where the
    smaller tail m > 1e-11, 1e-7 where m > 1e-100 and 1e-5 down to the smallest normal
    double (the cubic Hermite error grows with the map's curvature in c), and the cells it
    marks (NaN: a knot
    of h, g = 1/2 or F = 1/2) are few."""
    from photozsom.calibrate import _C_MAX, _Projector
    from photozsom.kernels import midpoint_tails

    pdf, z = too_narrow_sample(3000, 2.0, seed=4)
    rc = Recalibrator().fit(pdf[:2000], z[:2000])
    test = pdf[2000:]
    proj = _Projector.get(test.grid)
    ka, table = proj.kernel_arrays(), rc._tail_table()
    n, M = len(test), proj.K - 1
    F, S, P = np.empty((n, M)), np.empty((n, M)), np.empty((n, M))
    low = np.empty((n, M), dtype=bool)
    midpoint_tails(np.ascontiguousarray(test.weights), ka["band_cdf"], ka["band_sf"], ka["b"],
                   table.table, _C_MAX, table.step, table.c0, F, S, P, low)
    # F and 1 - F as products with every component's CDF / survival at the mid-points,
    # wherever each is the smaller tail; elsewhere the kernel skips the band (a partial sum
    # > 1/2 + 1e-9, below the exact value), so min(F, S) and F <= S are still exact
    w = np.array(test.weights, dtype=np.float64)
    w /= w.sum(axis=1, keepdims=True)
    F_ref, S_ref = w @ proj.cdf_mid, w @ proj.sf_mid
    lower = F_ref <= S_ref
    np.testing.assert_array_equal(F <= S, lower)
    np.testing.assert_allclose(F[lower], F_ref[lower], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(S[~lower], S_ref[~lower], rtol=1e-12, atol=1e-300)
    skipped_f = ~lower & (np.abs(F - F_ref) > 1e-12)
    skipped_s = lower & (np.abs(S - S_ref) > 1e-12)
    assert skipped_f.any() and skipped_s.any()           # the band was skipped somewhere
    assert np.all(F[skipped_f] > 0.5 + 1e-9) and np.all(F[skipped_f] <= F_ref[skipped_f])
    assert np.all(S[skipped_s] > 0.5 + 1e-9) and np.all(S[skipped_s] <= S_ref[skipped_s])
    mid = np.broadcast_to(MIDPOINTS, (n, M))
    body = lower & (F > 1e-15)           # where the mixture's cdf sums every component
    np.testing.assert_allclose(F[body], test.cdf(mid)[body], rtol=1e-12)
    marked = np.isnan(P)
    assert 0 < marked.mean() < 0.05
    m = np.minimum(F, S)
    use = ~marked & (m >= np.finfo(float).tiny)        # c is clipped below normal doubles
    want, want_low = table.exact(F[use], S[use], rc)
    np.testing.assert_array_equal(low[use], want_low)
    np.testing.assert_allclose(P[use], want, rtol=1e-5, atol=0)
    near = m[use] > 1e-100                             # |c| < 15
    np.testing.assert_allclose(P[use][near], want[near], rtol=1e-7, atol=0)
    body = m[use] > 1e-11                              # |c| < 5
    np.testing.assert_allclose(P[use][body], want[body], rtol=1e-10, atol=0)
