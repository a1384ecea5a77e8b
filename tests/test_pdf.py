"""MixturePDF against scipy.stats.truncnorm, scipy.integrate and qp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from photozsom.pdf import CENTRES, N_COMPONENTS, SIGMA, Z_MAX, Z_MIN, MixturePDF

A = (Z_MIN - CENTRES) / SIGMA
B = (Z_MAX - CENTRES) / SIGMA
TN = stats.truncnorm(A, B, loc=CENTRES, scale=SIGMA)  # the K truncated components, by scipy


def random_weights(n: int, seed: int = 0) -> np.ndarray:
    """Mixtures of all kinds: sparse, dense, multi-modal, and piled on both support edges."""
    rng = np.random.default_rng(seed)
    w = np.zeros((n, N_COMPONENTS))
    for i in range(n):
        kind = i % 4
        if kind == 0:    # a few random components
            k = rng.choice(N_COMPONENTS, size=rng.integers(1, 6), replace=False)
            w[i, k] = rng.random(k.size)
        elif kind == 1:  # dense Dirichlet
            w[i] = rng.dirichlet(np.full(N_COMPONENTS, 0.3))
        elif kind == 2:  # the truncated edge components
            w[i, [0, 1, 2, N_COMPONENTS - 2, N_COMPONENTS - 1]] = rng.random(5) + 0.1
        else:            # a smooth bump, as a trained network gives
            c = rng.uniform(5, 195)
            w[i] = np.exp(-0.5 * ((np.arange(N_COMPONENTS) - c) / rng.uniform(1, 8)) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def scipy_cdf(w: np.ndarray, z: np.ndarray) -> np.ndarray:
    """F(z) from scipy's truncnorm, z of shape (N,) or (N, G)."""
    z = np.asarray(z, dtype=float)
    return np.einsum("nk,n...k->n...", w, TN.cdf(z[..., None]))


def definition_cdf(w: np.ndarray, t: np.ndarray) -> np.ndarray:
    """F_i(t_i) from the definition of the truncated normal CDF (fast, for quadrature)."""
    Z = special.ndtr(B) - special.ndtr(A)
    return np.einsum("nk,nk->n", w, (special.ndtr((t[:, None] - CENTRES) / SIGMA)
                                     - special.ndtr(A)) / Z)


def numerical_crps(w: np.ndarray, y: np.ndarray) -> np.ndarray:
    """int_0^1.6 (F(z) - 1{z >= y})^2 dz: adaptive Gauss-Kronrod (scipy quad_vec) over
    [0, y] and [y, 1.6] separately (both mapped onto s in [0, 1]), all galaxies at once."""
    def integrand(s):
        left = definition_cdf(w, y * s)
        right = definition_cdf(w, y + (Z_MAX - y) * s)
        return y * left**2 + (Z_MAX - y) * (1.0 - right) ** 2

    value, err = integrate.quad_vec(integrand, 0.0, 1.0, epsabs=1e-13, epsrel=1e-13, limit=20000)
    assert err < 1e-10
    return value


W = random_weights(24)
PDF = MixturePDF(W)
RNG = np.random.default_rng(7)
Z_TRUE = np.r_[0.0, Z_MAX, RNG.uniform(Z_MIN, Z_MAX, len(W) - 2)]


def test_mean_and_std_match_scipy_truncnorm_moments():
    mean = W @ TN.mean()
    var = W @ (TN.var() + TN.mean() ** 2) - mean**2
    np.testing.assert_allclose(PDF.mean(), mean, atol=1e-12)
    np.testing.assert_allclose(PDF.std(), np.sqrt(var), atol=1e-12)


def test_cdf_matches_scipy_for_scalar_per_galaxy_and_grid_inputs():
    np.testing.assert_allclose(PDF.cdf(Z_TRUE), scipy_cdf(W, Z_TRUE), atol=1e-13)
    np.testing.assert_allclose(PDF.cdf(0.7), scipy_cdf(W, np.full(len(W), 0.7)), atol=1e-13)
    zg = RNG.uniform(-0.1, 1.7, (len(W), 9))          # outside the support too
    expect = np.where(zg < 0, 0.0, np.where(zg > Z_MAX, 1.0, scipy_cdf(W, np.clip(zg, 0, 1.6))))
    np.testing.assert_allclose(PDF.cdf(zg), expect, atol=1e-13)


def test_evaluate_matches_scipy_density_and_integrates_to_one():
    grid = np.linspace(-0.05, 1.65, 1201)
    expect = W @ TN.pdf(grid[:, None]).T
    np.testing.assert_allclose(PDF.evaluate(grid), expect, rtol=1e-10, atol=1e-10)
    per_galaxy = RNG.uniform(0, 1.6, (len(W), 5))
    np.testing.assert_allclose(PDF.evaluate(per_galaxy),
                               np.einsum("nk,ngk->ng", W, TN.pdf(per_galaxy[..., None])),
                               rtol=1e-10, atol=1e-10)
    fine = np.linspace(0, 1.6, 64001)
    np.testing.assert_allclose(integrate.trapezoid(PDF.evaluate(fine), fine, axis=1), 1.0,
                               atol=1e-4)


def test_ppf_inverts_the_scipy_cdf_and_interval_is_central():
    q = RNG.uniform(0.001, 0.999, len(W))
    z = PDF.ppf(q)
    np.testing.assert_allclose(scipy_cdf(W, z), q, atol=1e-12)
    lo, hi = PDF.interval(0.9)
    np.testing.assert_allclose(scipy_cdf(W, lo), 0.05, atol=1e-12)
    np.testing.assert_allclose(scipy_cdf(W, hi), 0.95, atol=1e-12)
    np.testing.assert_allclose(scipy_cdf(W, PDF.median()), 0.5, atol=1e-12)
    qg = RNG.uniform(0, 1, (len(W), 3))
    np.testing.assert_allclose(scipy_cdf(W, PDF.ppf(qg)), qg, atol=1e-12)


def test_ppf_of_a_single_component_matches_scipy_truncnorm_ppf():
    k = np.array([0, 3, 100, 199])
    w = np.zeros((4, N_COMPONENTS))
    w[np.arange(4), k] = 1.0
    q = np.array([0.3, 0.01, 0.999, 0.7])
    expect = stats.truncnorm.ppf(q, A[k], B[k], loc=CENTRES[k], scale=SIGMA)
    np.testing.assert_allclose(MixturePDF(w).ppf(q), expect, atol=1e-12)


def test_crps_matches_numerical_integral_of_squared_cdf_difference():
    np.testing.assert_allclose(PDF.crps(Z_TRUE), numerical_crps(W, Z_TRUE), atol=1e-12)


def test_crps_of_an_interior_component_is_the_gaussian_closed_form():
    # Gneiting & Raftery (2007) eq. 21 for N(mu, sigma^2); truncation is negligible at 0.8.
    w = np.zeros((3, N_COMPONENTS))
    w[:, 100] = 1.0
    y = CENTRES[100] + SIGMA * np.array([-1.3, 0.0, 2.5])
    x = (y - CENTRES[100]) / SIGMA
    expect = SIGMA * (x * (2 * stats.norm.cdf(x) - 1) + 2 * stats.norm.pdf(x) - 1 / np.sqrt(np.pi))
    np.testing.assert_allclose(MixturePDF(w).crps(y), expect, rtol=1e-12)


def test_pit_of_draws_from_the_pdfs_is_uniform():
    w = random_weights(3000, seed=3)
    pdf = MixturePDF(w)
    z = pdf.sample(1, seed=11)[:, 0]
    assert stats.kstest(pdf.pit(z), "uniform").pvalue > 0.01
    # and many draws from one edge-heavy mixture follow scipy's CDF
    draws = pdf[2].sample(4000, seed=5)[0]
    assert stats.kstest(draws, lambda t: scipy_cdf(np.repeat(w[2:3], len(t), 0), t)).pvalue > 0.01
    assert draws.min() >= Z_MIN and draws.max() <= Z_MAX


def test_sample_is_reproducible_for_a_seed():
    np.testing.assert_array_equal(PDF.sample(5, seed=1), PDF.sample(5, seed=1))
    assert not np.array_equal(PDF.sample(5, seed=1), PDF.sample(5, seed=2))


def test_mode_is_the_maximum_of_the_scipy_density():
    fine = np.linspace(0, 1.6, 16001)
    dens = W @ TN.pdf(fine[:, None]).T
    mode = PDF.mode()
    for i in range(len(W)):   # refine the fine-grid maximum with scipy's bounded optimiser
        x0 = fine[np.argmax(dens[i])]
        res = optimize.minimize_scalar(lambda t, i=i: -float(W[i] @ TN.pdf(t)), method="bounded",
                                       bounds=(max(x0 - 2e-4, 0.0), min(x0 + 2e-4, 1.6)),
                                       options={"xatol": 1e-10})
        at_mode = float(W[i] @ TN.pdf(mode[i]))
        assert at_mode >= -res.fun * (1 - 1e-9)
        if i % 4 == 3:   # single smooth bump: the location is unique
            assert abs(mode[i] - res.x) < 1e-6


def _brute_force_mode(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of ``evaluate`` on a grid of spacing 1e-5 over the support, and the maximum."""
    fine = np.linspace(Z_MIN, Z_MAX, 160001)
    dens = MixturePDF(w).evaluate(fine)
    return fine[np.argmax(dens, axis=1)], dens.max(axis=1)


def test_mode_finds_the_global_maximum_when_a_narrow_peak_is_outweighed_by_a_pair():
    # weight 1.10 on component 100 (z = 0.804) against 1.0 on each of 110 and 111, normalised:
    # the single component wins at the centres, the overlapping pair peaks 2.7% higher
    w = np.zeros((2, N_COMPONENTS))
    w[:, 100] = 1.10
    w[0, [110, 111]] = 1.0
    w[1, [110, 111]] = [1.0, 1.02]       # the pair's two equal maxima made unequal
    w /= w.sum(axis=1, keepdims=True)
    pdf = MixturePDF(w)
    mode = pdf.mode()
    z_brute, p_brute = _brute_force_mode(w)
    at_mode = np.einsum("nk,nk->n", w, TN.pdf(mode[:, None]))   # scipy's density at the mode
    assert np.all(at_mode >= p_brute * (1 - 1e-9))
    assert p_brute[0] > 1.02 * float(w[0] @ TN.pdf(CENTRES[100]))  # the pair is the higher peak
    assert CENTRES[110] < mode[0] < CENTRES[111]         # one of the pair's two equal maxima
    assert abs(mode[1] - z_brute[1]) < 2e-5              # unique maximum: same place


def test_mode_matches_a_brute_force_argmax_on_mixtures_with_close_competing_peaks():
    rng = np.random.default_rng(12)
    n = 300
    w = np.zeros((n, N_COMPONENTS))
    for i in range(n):
        # a sharp component and a smooth bump (or a close pair) of similar height
        k = rng.integers(2, N_COMPONENTS - 2)
        w[i, k] = rng.uniform(0.5, 1.5)
        c = rng.uniform(0, N_COMPONENTS - 1)
        if i % 2:
            w[i, int(c)] += 1.0
            w[i, min(int(c) + 1, N_COMPONENTS - 1)] += rng.uniform(0.8, 1.2)
        else:
            w[i] += 3.0 * np.exp(-0.5 * ((np.arange(N_COMPONENTS) - c) / rng.uniform(1, 5)) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    mode = MixturePDF(w).mode()
    z_brute, p_brute = _brute_force_mode(w)
    at_mode = np.einsum("nk,nk->n", w, TN.pdf(mode[:, None]))
    assert np.all(at_mode >= p_brute * (1 - 1e-9))       # never below the brute-force maximum
    # where the brute-force maximum is unambiguous (no second maximum within 1e-6 of it),
    # both pick the same peak
    fine = np.linspace(Z_MIN, Z_MAX, 160001)
    dens = MixturePDF(w).evaluate(fine)
    far = np.abs(fine[None, :] - z_brute[:, None]) > 5 * SIGMA
    runner_up = np.where(far, dens, 0.0).max(axis=1)
    clear = runner_up < p_brute * (1 - 1e-6)
    assert clear.sum() > 250
    assert np.max(np.abs(mode[clear] - z_brute[clear])) < 2e-5


def test_indexing_and_concatenation_keep_rows():
    np.testing.assert_array_equal(PDF[3].weights, W[3:4])
    np.testing.assert_array_equal(PDF[-1].weights, W[-1:])
    mask = np.arange(len(W)) % 3 == 0
    np.testing.assert_allclose(PDF[mask].mean(), PDF.mean()[mask])
    np.testing.assert_allclose(PDF[[5, 1]].cdf(0.4), PDF.cdf(0.4)[[5, 1]])
    both = MixturePDF.concatenate([PDF[:10], PDF[10:]])
    np.testing.assert_array_equal(both.weights, W)
    assert len(PDF[2:7]) == 5
    with pytest.raises(IndexError):
        PDF[len(W)]


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_save_load_round_trip(tmp_path, suffix):
    path = PDF.save(tmp_path / f"pdf{suffix}")
    back = MixturePDF.load(path)
    np.testing.assert_array_equal(back.weights, W)
    np.testing.assert_array_equal(back.centres, CENTRES)
    assert back.sigma == SIGMA and back.bounds == (Z_MIN, Z_MAX)
    assert back.ids is None
    np.testing.assert_allclose(back.crps(Z_TRUE), PDF.crps(Z_TRUE))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]     # no temporary left behind


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("ids", [np.arange(len(W)) * 10**12 + 7,
                                 np.array([f"gal-{i}-é" for i in range(len(W))])])
def test_ids_travel_through_indexing_concatenation_and_files(tmp_path, suffix, ids):
    pdf = MixturePDF(W, ids=ids)
    np.testing.assert_array_equal(pdf[[5, 1]].ids, ids[[5, 1]])
    np.testing.assert_array_equal(pdf[3].ids, ids[3:4])
    np.testing.assert_array_equal(pdf[W[:, 0] > np.median(W[:, 0])].ids,
                                  ids[W[:, 0] > np.median(W[:, 0])])
    both = MixturePDF.concatenate([pdf[10:], pdf[:10]])
    np.testing.assert_array_equal(both.ids, np.r_[ids[10:], ids[:10]])
    back = MixturePDF.load(both.save(tmp_path / f"pdf{suffix}"))
    np.testing.assert_array_equal(back.ids, both.ids)
    np.testing.assert_array_equal(back.weights, both.weights)
    with pytest.raises(ValueError, match="with ids and PDFs without"):
        MixturePDF.concatenate([pdf[:3], PDF[3:]])
    with pytest.raises(ValueError, match="one identifier per galaxy"):
        MixturePDF(W, ids=ids[:-1])


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_an_interrupted_save_leaves_the_previous_file(tmp_path, suffix, monkeypatch):
    import h5py

    path = PDF[:3].save(tmp_path / f"pdf{suffix}")
    before = path.read_bytes()

    def crash(*args, **kwargs):        # the writer dies after creating a partial file
        raise KeyboardInterrupt

    def partial_npz(f, **kwargs):
        Path(f).write_bytes(b"PK")
        crash()

    if suffix == ".npz":
        monkeypatch.setattr(np, "savez_compressed", partial_npz)
    else:
        monkeypatch.setattr(h5py.File, "create_dataset", crash)
    with pytest.raises(KeyboardInterrupt):
        PDF.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    np.testing.assert_array_equal(MixturePDF.load(path).weights, W[:3])


def test_to_qp_interp_reproduces_the_cdf_and_mixmod_the_interior():
    qp = pytest.importorskip("qp")
    ens = PDF.to_qp()
    assert isinstance(ens, qp.Ensemble) and ens.npdf == len(W)
    z = np.linspace(0.0, 1.6, 41)
    np.testing.assert_allclose(ens.cdf(z), PDF.cdf(np.broadcast_to(z, (len(W), z.size))),
                               atol=1e-3)
    interior = np.zeros((2, N_COMPONENTS))
    interior[:, 60:140] = 1.0 / 80
    mix = MixturePDF(interior).to_qp(kind="mixmod")
    np.testing.assert_allclose(mix.cdf(z), MixturePDF(interior).cdf(np.broadcast_to(z, (2, 41))),
                               atol=1e-10)


@pytest.mark.parametrize("bad, message", [
    (np.ones((2, N_COMPONENTS)), "sum to 1"),
    (np.full((2, 10), 0.1), "shape"),
    (np.full(N_COMPONENTS, 1 / N_COMPONENTS), "shape"),
    (np.where(np.arange(N_COMPONENTS) == 0, np.nan, 1 / N_COMPONENTS)[None], "non-finite"),
    (np.where(np.arange(N_COMPONENTS) < 2, [-0.5, 1.5] + [0] * 198, 0.0)[None], ">= 0"),
])
def test_invalid_weights_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        MixturePDF(bad)


def test_pit_and_crps_reject_redshifts_outside_the_support_or_nan():
    z = Z_TRUE.copy()
    z[3] = 1.7
    with pytest.raises(ValueError, match="outside the support"):
        PDF.crps(z)
    z[3] = -0.01
    with pytest.raises(ValueError, match="outside the support"):
        PDF.pit(z)
    z[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PDF.cdf(z)
    with pytest.raises(ValueError, match="values but there are"):
        PDF.crps(Z_TRUE[:5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PDF.ppf(1.5)


def _bumpy_weights(n: int, seed: int) -> np.ndarray:
    """Network-like P(z): one or two smooth bumps, some far apart with an empty gap between."""
    rng = np.random.default_rng(seed)
    k = np.arange(N_COMPONENTS)
    c1, c2 = rng.uniform(0, 199, n), rng.uniform(0, 199, n)
    s1, s2 = rng.uniform(0.5, 12, n), rng.uniform(0.5, 4, n)
    a = np.where(rng.random(n) < 0.5, rng.uniform(0.05, 0.6, n), 0.0)
    w = ((1 - a)[:, None] * np.exp(-0.5 * ((k - c1[:, None]) / s1[:, None]) ** 2)
         + a[:, None] * np.exp(-0.5 * ((k - c2[:, None]) / s2[:, None]) ** 2))
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("w", [W, _bumpy_weights(3000, 1)], ids=["all-kinds", "bumps"])
def test_fast_quantiles_agree_with_ppf_and_invert_the_scipy_cdf(w):
    levels = np.array([0.0, 1e-6, 0.025, 0.16, 0.5, 0.84, 0.975, 1.0 - 1e-6, 1.0])
    pdf = MixturePDF(w)
    got = pdf.quantiles(levels)
    exact = np.column_stack([pdf.ppf(q) for q in levels])
    assert got.shape == (len(w), levels.size)
    assert np.max(np.abs(got - exact)) < 1e-5            # the documented bound
    assert np.median(np.abs(got - exact)) < 1e-8         # and the typical agreement
    inner = (levels > 0) & (levels < 1)
    wn = np.asarray(w, dtype=float)
    wn = wn / wn.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(scipy_cdf(wn, got[:, inner]), np.broadcast_to(levels[inner],
                               (len(w), inner.sum())), atol=2e-6)


def test_fast_quantiles_fall_back_to_ppf_on_unevenly_spaced_centres():
    centres = np.sort(np.r_[0.0, np.random.default_rng(3).uniform(0.01, 1.59, 48), 1.6])
    w = np.random.default_rng(4).dirichlet(np.full(50, 0.5), size=20)
    pdf = MixturePDF(w, centres=centres, sigma=0.01)
    np.testing.assert_array_equal(pdf.quantiles([0.16, 0.5]),
                                  np.column_stack([pdf.ppf(0.16), pdf.ppf(0.5)]))


def test_windowed_mode_equals_the_whole_support_search():
    w = np.r_[_bumpy_weights(2000, 2), random_weights(40, 5).astype(np.float32)]
    pdf = MixturePDF(w)
    fast = pdf.mode()
    wn = w.astype(float) / w.sum(axis=1, keepdims=True)
    whole = pdf._mode_grid(wn)
    # both windowed galaxies and galaxies whose second peak sends them to the whole support
    assert 0 < pdf._mode_fallbacks < len(w) // 2
    dens = lambda z: np.einsum("nk,nk->n", wn, TN.pdf(z[:, None]))
    assert np.all(dens(fast) >= dens(whole) * (1 - 1e-9))
    assert np.all((np.abs(fast - whole) < 1e-6) | (np.abs(dens(fast) - dens(whole))
                                                   < 1e-9 * dens(whole)))


@pytest.mark.parametrize("K", [N_COMPONENTS, 203])
def test_fast_quantiles_match_ppf_on_multimodal_and_support_edge_mixtures(K):
    # narrow components on and next to both truncated edges, far-apart pairs with an empty
    # gap between (a quantile level can fall in the gap), dense and sparse mixtures; K = 203
    # is not a multiple of the block of 8 the cumulative weights are searched in
    rng = np.random.default_rng(7 + K)
    centres = np.linspace(Z_MIN, Z_MAX, K)
    n = 1200
    w = np.zeros((n, K))
    for i in range(n):
        kind = i % 4
        if kind == 0:      # piled on one or both edges
            k = rng.choice([0, 1, 2, K - 3, K - 2, K - 1], size=rng.integers(1, 4), replace=False)
        elif kind == 1:    # two or three far-apart narrow peaks
            k = rng.choice(K, size=rng.integers(2, 4), replace=False)
        elif kind == 2:    # an edge component and an interior one
            k = np.array([rng.choice([0, K - 1]), rng.integers(3, K - 3)])
        else:              # dense
            w[i] = rng.dirichlet(np.full(K, 0.2))
            continue
        w[i, k] = rng.uniform(0.05, 1.0, k.size)
    w /= w.sum(axis=1, keepdims=True)
    levels = np.array([1e-4, 0.025, 0.16, 0.5, 0.84, 0.975, 1 - 1e-4])
    for weights in (w, w.astype(np.float32)):
        pdf = MixturePDF(weights, centres=centres)
        got = pdf.quantiles(levels)
        exact = np.column_stack([pdf.ppf(q) for q in levels])    # bisection + Newton, exact
        assert np.max(np.abs(got - exact)) < 1e-5
        assert np.median(np.abs(got - exact)) < 1e-8
    # and they invert the CDF of the definition (scipy's normal CDF), levels in the support
    a, b = (Z_MIN - centres) / SIGMA, (Z_MAX - centres) / SIGMA
    cdf = np.einsum("nk,nlk->nl", w, (special.ndtr((got[..., None] - centres) / SIGMA)
                                      - special.ndtr(a)) / (special.ndtr(b) - special.ndtr(a)))
    dens = MixturePDF(w, centres=centres).pdf(got)
    # F(q) = level where the density is positive; in an empty gap F is flat at the level
    assert np.all(np.abs(cdf - levels) < 2e-6 + 1e-5 * dens)


def test_two_peak_mode_takes_the_second_window_and_matches_scipy():
    # two separated bumps of similar height: the first window's bound fails, the second
    # window around the other bump settles them without the whole-support search; three
    # competing bumps still take the whole support. Checked against scipy's density on a
    # fine grid (independent of the mixture code).
    rng = np.random.default_rng(21)
    n = 200
    k = np.arange(N_COMPONENTS)
    c1 = rng.uniform(10, 90, n)
    c2 = c1 + rng.uniform(15, 100, n)
    s1, s2 = rng.uniform(0.5, 4, n), rng.uniform(0.5, 4, n)
    w = (np.exp(-0.5 * ((k - c1[:, None]) / s1[:, None]) ** 2) / s1[:, None]
         + rng.uniform(0.8, 1.2, n)[:, None]
         * np.exp(-0.5 * ((k - c2[:, None]) / s2[:, None]) ** 2) / s2[:, None])
    amp = np.array([[1.0, 1.01, 0.99], [0.99, 1.0, 1.01], [1.01, 0.99, 1.0]])
    three = amp @ np.exp(-0.5 * ((k - np.array([40.0, 100.0, 160.0])[:, None]) / 1.5) ** 2)
    for weights, whole in ((w, False), (three, True)):
        weights = weights / weights.sum(axis=1, keepdims=True)
        pdf = MixturePDF(weights)
        mode = pdf.mode()
        assert (pdf._mode_fallbacks > 0) == whole
        fine = np.linspace(Z_MIN, Z_MAX, 32001)
        dens = weights @ TN.pdf(fine[:, None]).T                   # scipy, (n, 32001)
        at_mode = np.einsum("nk,nk->n", weights, TN.pdf(mode[:, None]))
        assert np.all(at_mode >= dens.max(axis=1) * (1 - 1e-9))


def test_fast_quantiles_rarely_need_the_exact_ppf_on_network_like_pdfs():
    w = _bumpy_weights(3000, 5)
    pdf = MixturePDF(w)
    levels = [0.5, 0.16, 0.84, 0.025, 0.975]
    got = pdf.quantiles(levels)
    assert pdf._quantile_fallbacks < 0.01 * got.size          # the Hermite path serves them
    wn = w.astype(float) / w.sum(axis=1, keepdims=True)
    # scipy's CDF at the result is the level (to the float64 tables' precision)
    err = np.abs(scipy_cdf(wn, got) - np.asarray(levels)) / MixturePDF(wn).pdf(got)
    assert np.max(err) < 1e-6 and np.median(err) < 1e-8


def test_quantiles_per_row_match_ppf_at_each_rows_own_levels():
    # every row its own levels (as per-cell recalibration maps give), levels 0 and 1 included
    rng = np.random.default_rng(11)
    w = np.r_[_bumpy_weights(300, 4), random_weights(100, 6)]
    pdf = MixturePDF(w)
    lv = rng.uniform(1e-4, 1 - 1e-4, (len(w), 4))
    lv[:5, 0], lv[5:9, 3] = 0.0, 1.0
    got = pdf.quantiles_per_row(lv)
    exact = np.column_stack([pdf.ppf(lv[:, c]) for c in range(lv.shape[1])])
    assert np.max(np.abs(got - exact)) < 1e-5
    assert np.median(np.abs(got - exact)) < 1e-8
    np.testing.assert_array_equal(got[:5, 0], pdf.ppf(np.zeros(len(w)))[:5])
    # one row of levels repeated is quantiles() exactly
    same = np.broadcast_to([0.025, 0.5, 0.975], (len(w), 3))
    np.testing.assert_array_equal(pdf.quantiles_per_row(same), pdf.quantiles([0.025, 0.5, 0.975]))
    with pytest.raises(ValueError, match="shape"):
        pdf.quantiles_per_row(lv[:10])
    with pytest.raises(ValueError, match="probabilities"):
        pdf.quantiles_per_row(lv * 2)


@pytest.mark.parametrize("K", [12, 20, 80])
def test_mode_on_grids_of_sparse_centres_is_the_highest_density(K):
    # centres 5-38 sigma apart (the default grid: 2.2): the refinement's Gaussian terms must
    # not leave the double range, whatever the spacing
    rng = np.random.default_rng(K)
    centres = np.linspace(0.02, 1.58, K)
    w = rng.dirichlet(np.full(K, 0.3), 300)
    pdf = MixturePDF(w, centres=centres)
    mode = pdf.mode()
    zg = np.linspace(Z_MIN, Z_MAX, 160_001)
    dens = pdf.pdf(np.broadcast_to(zg, (len(w), zg.size)))
    at_mode = pdf.pdf(mode[:, None])[:, 0]
    assert np.all(at_mode >= dens.max(axis=1) * (1 - 1e-9))
    assert np.max(np.abs(mode - zg[np.argmax(dens, axis=1)])) < 1e-5
