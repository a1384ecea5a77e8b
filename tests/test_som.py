"""Tests of photozsom.som: the torch batch SOM against minisom and direct numpy/scipy."""

from __future__ import annotations

import itertools
import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from minisom import MiniSom
from scipy.spatial.distance import cdist

from photozsom.artifacts import ArtifactError, save_artifact
from photozsom.device import default_device
from photozsom.features import SOM_FEATURES, som_features
from photozsom.som import SOM, MiniSomBackend, TorchBatchSOM


def _clusters(n_per=300, centres=None, scale=0.15, seed=0):
    """Well-separated Gaussian clusters in 3-D; returns X [n, 3] and labels."""
    if centres is None:
        centres = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [6, 6, 6]], dtype=float)
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + scale * rng.normal(size=(n_per, centres.shape[1])) for c in centres])
    return X, np.repeat(np.arange(len(centres)), n_per)


def _colours(n: int, seed: int = 0) -> np.ndarray:
    """Galaxy-colour-like 6-feature data: a curved 1-D sequence with scatter plus a second
    population, so a 2-D map has to fold (a non-trivial topographic error)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, n)
    red = rng.uniform(size=n) < 0.4
    base = np.column_stack([np.tanh(3 * t), t**2, np.sin(3 * t), t, 0.3 * np.cos(5 * t),
                            rng.exponential(0.5, n)])
    base[red, :3] += [0.5, 0.2, -0.3]
    return base + 0.07 * rng.normal(size=base.shape)


def _minisom_with(w: np.ndarray, shape, topology="rectangular") -> MiniSom:
    ms = MiniSom(*shape, w.shape[1], sigma=1.0, topology=topology, random_seed=0)
    ms._weights = w.reshape(*shape, -1).copy()
    return ms


def _direct_te(Xs: np.ndarray, w: np.ndarray, ms: MiniSom, topology: str) -> float:
    """Topographic error from scratch: scipy distances and minisom's cell coordinates."""
    order = np.argsort(cdist(Xs, w), axis=1)[:, :2]
    xx, yy = ms.get_euclidean_coordinates()
    i, j = np.divmod(order, xx.shape[1])
    sep = np.hypot(xx[i[:, 0], j[:, 0]] - xx[i[:, 1], j[:, 1]],
                   yy[i[:, 0], j[:, 0]] - yy[i[:, 1], j[:, 1]])
    if topology == "hexagonal":
        return float(np.mean(~np.isclose(sep, 1.0)))
    return float(np.mean(sep > 1.42))


@pytest.fixture(scope="module")
def trained():
    """A 7x6 torch SOM trained (default schedule) on 4 clusters, and its training data."""
    X, labels = _clusters()
    som = SOM((7, 6), 3, seed=0, feature_names=["a", "b", "c"]).fit(X, progress=False)
    return som, X, labels


# ---------------------------------------------------------------- agreement with minisom
def test_torch_and_minisom_backends_agree_on_predict_for_same_prototypes():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8 * 9, 5))
    X = rng.normal(size=(3000, 5))
    t = SOM.from_prototypes(w, (8, 9), backend="torch")
    m = SOM.from_prototypes(w, (8, 9), backend="minisom")
    assert isinstance(t.engine, TorchBatchSOM) and isinstance(m.engine, MiniSomBackend)
    ct, dt = t.predict_with_distances(X)
    cm, dm = m.predict_with_distances(X)
    # minisom's own winner() on a few rows, as (i, j) -> i * cols + j
    for k in range(0, 3000, 300):
        i, j = m.engine.minisom.winner(X[k])
        assert cm[k] == i * 9 + j
    D = cdist(X, w)
    differ = ct != cm
    assert differ.mean() < 1e-3
    # any disagreement is a float32 near-tie between equally distant prototypes
    assert np.allclose(D[differ, ct[differ]], D[differ, cm[differ]], rtol=1e-5)
    np.testing.assert_allclose(dt, D.min(axis=1), rtol=1e-5)
    np.testing.assert_allclose(dm, D.min(axis=1), rtol=1e-6)


def test_quantization_error_matches_direct_numpy(trained):
    som, X, _ = trained
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    direct = cdist(Xs, som.prototypes).min(axis=1).mean()
    assert som.quantization_error(X) == pytest.approx(direct, rel=1e-5)
    ms = _minisom_with(som.prototypes, som.shape)
    assert som.with_backend("minisom").quantization_error(X) == pytest.approx(
        ms.quantization_error(Xs), rel=1e-6)
    assert ms.quantization_error(Xs) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("topology", ["rectangular", "hexagonal"])
def test_topographic_error_matches_direct_numpy_and_minisom(topology):
    # 3-D Gaussian data on a 2-D map: the map must fold, so some rows are topographic errors
    X = np.random.default_rng(3).normal(size=(800, 3))
    som = SOM((6, 8), 3, topology=topology, seed=0).fit(X, progress=False)
    Xs = som.standardizer.transform(X).astype(np.float64)
    w = som.prototypes
    ms = _minisom_with(w, som.shape, topology)
    direct = _direct_te(Xs, w, ms, topology)
    assert 0 < direct < 1  # a non-trivial value, so the comparison means something
    assert som.topographic_error(X) == pytest.approx(direct, abs=2 / len(X))
    assert som.with_backend("minisom").topographic_error(X) == pytest.approx(
        ms.topographic_error(Xs), abs=1 / len(X))
    assert ms.topographic_error(Xs) == pytest.approx(direct, abs=1e-12)


@pytest.mark.parametrize("topology", ["rectangular", "hexagonal"])
def test_grid_positions_have_minisom_geometry(topology):
    shape = (5, 6)
    som = SOM(shape, 2, topology=topology)
    xx, yy = MiniSom(*shape, 2, topology=topology).get_euclidean_coordinates()
    ref = np.column_stack([xx.ravel(), yy.ravel()])  # minisom's (i, j) -> i * cols + j order
    np.testing.assert_allclose(cdist(som.grid_positions, som.grid_positions), cdist(ref, ref),
                               atol=1e-12)
    d = cdist(som.grid_positions, som.grid_positions)
    interior = 2 * shape[1] + 2  # cell (2, 2)
    n_neigh = int(np.sum(np.isclose(d[interior], 1.0)))
    assert n_neigh == (6 if topology == "hexagonal" else 4)


@pytest.mark.parametrize("topology", ["rectangular", "hexagonal"])
def test_neighbourhood_sums_equal_dense_gaussian_matrix(topology):
    som = SOM((5, 7), 2, topology=topology)
    A = np.random.default_rng(2).normal(size=(35, 3))
    pos = som.grid_positions
    H = np.exp(-cdist(pos, pos, "sqeuclidean") / (2 * 1.3**2))
    got = som.grid.neighbourhood_sums(torch.from_numpy(A), 1.3).numpy()
    np.testing.assert_allclose(got, H @ A, atol=1e-12)


@pytest.mark.parametrize("topology", ["rectangular", "hexagonal"])
def test_one_batch_step_equals_numpy_batch_map(topology):
    """One batch-map step from given prototypes = Kohonen's batch map written in numpy."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 3))
    w0 = rng.normal(size=(4 * 5, 3))
    som = SOM.from_prototypes(w0, (4, 5), topology=topology, learning_rate=0.7)
    qe = som.engine.step(X.astype(np.float32), sigma=1.5)
    bmu = cdist(X, w0).argmin(axis=1)
    assert qe == pytest.approx(cdist(X, w0).min(axis=1).mean(), rel=1e-5)
    S = np.zeros_like(w0)
    np.add.at(S, bmu, X)
    n = np.bincount(bmu, minlength=20)
    xx, yy = MiniSom(4, 5, 3, topology=topology).get_euclidean_coordinates()
    pos = np.column_stack([xx.ravel(), yy.ravel()])
    H = np.exp(-cdist(pos, pos, "sqeuclidean") / (2 * 1.5**2))
    expected = w0 + 0.7 * ((H @ S) / (H @ n)[:, None] - w0)
    np.testing.assert_allclose(som.prototypes, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("topology", ["rectangular", "hexagonal"])
def test_minisom_backend_trains_exactly_like_minisom(topology):
    X, _ = _clusters(n_per=50, seed=8)
    kw = {"sigma": 2.0, "learning_rate": 0.4, "topology": topology,
              "neighborhood_function": "gaussian", "decay_function": "linear_decay_to_zero",
              "sigma_decay_function": "inverse_decay_to_one", "random_seed": 0}
    # epochs=3: minisom's train_batch over 3 ordered passes
    som = SOM((4, 5), 3, backend="minisom", topology=topology, sigma=2.0, learning_rate=0.4,
              seed=0).fit(X, epochs=3, progress=False)
    Xs = som.standardizer.transform(X).astype(np.float64)
    ms = MiniSom(4, 5, 3, **kw)
    ms._weights = som.initial_prototypes_.reshape(4, 5, 3).copy()
    ms.train_batch(Xs, 3 * len(Xs))
    np.testing.assert_allclose(som.prototypes, ms.get_weights().reshape(20, 3), rtol=1e-12)
    # default: one random-order pass, minisom's train(X, N, random_order=True)
    som = SOM((4, 5), 3, backend="minisom", topology=topology, sigma=2.0, learning_rate=0.4,
              seed=0).fit(X, progress=False)
    ms = MiniSom(4, 5, 3, **kw)
    ms._weights = som.initial_prototypes_.reshape(4, 5, 3).copy()
    ms.train(Xs, len(Xs), random_order=True)
    np.testing.assert_allclose(som.prototypes, ms.get_weights().reshape(20, 3), rtol=1e-12)


# ---------------------------------------------------------------- default schedule
def test_schedule_orders_on_subsamples_then_settles_then_full_passes():
    eng = SOM((10, 20), 2, sigma=10.0, sigma_final=0.8, batch_size=4000).engine
    plan = eng.schedule(n_samples=50_000)
    phases = [p["phase"] for p in plan]
    n_o, n_s = TorchBatchSOM.ORDER_STEPS, TorchBatchSOM.SETTLE_STEPS
    assert phases == ["order"] * n_o + ["settle"] * n_s + ["full"] * TorchBatchSOM.MAX_PASSES
    sig = np.array([p["sigma"] for p in plan[:n_o]])
    assert sig[0] == pytest.approx(10.0) and sig[-1] == pytest.approx(0.8)
    np.testing.assert_allclose(np.diff(np.log(sig)), np.log(0.08) / (n_o - 1))  # geometric
    assert all(p["sigma"] == 0.8 for p in plan[n_o:])
    assert [p["rows"] for p in plan[:n_o + 1]] == [2000] * n_o + [4000]
    assert plan[-1]["rows"] == 50_000
    assert len(eng.schedule(50_000, epochs=3)) == n_o + n_s + 3
    # small samples: subsamples of N / 8 rows, at least 4 per cell, at most all rows
    assert [p["rows"] for p in eng.schedule(20_000)[n_o - 1:n_o + 1]] == [1250, 2500]
    assert [p["rows"] for p in eng.schedule(1000)[n_o - 1:n_o + 1]] == [400, 800]
    assert {p["rows"] for p in eng.schedule(700)} == {350, 700}


def test_default_fit_stops_when_qe_stalls_and_records_final_distances(monkeypatch):
    X = _colours(6000, seed=1)
    # count the engine's data passes and map updates independently of its own bookkeeping
    calls = {"accumulate": 0, "update": 0}
    dists = []                                   # each accumulation's BMU distances
    for name in calls:
        orig = getattr(TorchBatchSOM, f"_{name}")

        def spy(self, *a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            out = _orig(self, *a, **k)
            if _name == "accumulate":
                dists.append(out[2].double().cpu().numpy())
            return out

        monkeypatch.setattr(TorchBatchSOM, f"_{name}", spy)
    som = SOM((8, 8), 6, seed=0, batch_size=1000).fit(X, progress=False)
    monkeypatch.undo()
    full = [h for h in som.history if h["phase"] == "full"]
    # 6,000 rows fit in one accumulation per step: the steps made beyond ordering and
    # settling are the full passes, and the last one was measured but not applied
    made = calls["accumulate"] - TorchBatchSOM.ORDER_STEPS - TorchBatchSOM.SETTLE_STEPS
    assert calls["update"] == calls["accumulate"] - 1
    # it stopped on the QE, not at the cap (counted by the spies, not by the SOM), and its
    # history and its counter both report the passes it made
    assert 1 <= made < TorchBatchSOM.MAX_PASSES
    # the stopping rule recomputed from the spied distances: pass j stops when the QE fell by
    # less than TOL x QE (plus, for the first pass, two standard errors of the last settling
    # subsample's QE) below the previous step's; it stopped at the last pass, not before
    first = TorchBatchSOM.ORDER_STEPS + TorchBatchSOM.SETTLE_STEPS
    qe = [float(d.mean()) for d in dists]

    def stops(j):
        prev = dists[j - 1]
        se = 2.0 * prev.std(ddof=1) / np.sqrt(prev.size) if j == first else 0.0
        return prev.mean() - qe[j] < TorchBatchSOM.TOL * qe[j] + se

    assert [stops(j) for j in range(first, first + made)] == [False] * (made - 1) + [True]
    assert len(full) == made
    assert som.epochs_trained == made
    assert not full[-1]["updated"]
    # a rule that never stops (TOL < -1) makes MAX_PASSES passes, each improving the QE, and
    # the same seed retraces the default's passes first: the default stopped while the map
    # could still have improved a little, as the rule intends
    monkeypatch.setattr(TorchBatchSOM, "TOL", -2.0)
    endless = SOM((8, 8), 6, seed=0, batch_size=1000).fit(X, progress=False)
    full_all = [h for h in endless.history if h["phase"] == "full"]
    assert len(full_all) == endless.epochs_trained == TorchBatchSOM.MAX_PASSES
    assert all(h["updated"] for h in full_all)
    np.testing.assert_allclose([h["qe"] for h in full], [h["qe"] for h in full_all[:len(full)]],
                               rtol=1e-6)
    qe_all = np.array([h["qe"] for h in full_all])
    assert np.all(np.diff(qe_all) < 0)
    monkeypatch.undo()
    # every pass after the first that went on to update had improved the QE by at least TOL
    # (the stopping rule, recomputed from the recorded QEs)
    for a, b in itertools.pairwise(full):
        if b["updated"]:
            assert a["qe"] - b["qe"] >= TorchBatchSOM.TOL * b["qe"]
    last = som.history[-1]
    assert not last["updated"] and all(h["updated"] for h in som.history[:-1])
    if som.history[-2]["phase"] == "full":  # else compared with a subsample's noisy QE
        assert som.history[-2]["qe"] - last["qe"] < TorchBatchSOM.TOL * last["qe"]
    # the stopping pass measured the final map: its QE is the map's QE on the training data
    d = som.distances(X)
    assert last["qe"] == pytest.approx(d.mean(), rel=1e-5)
    np.testing.assert_allclose(som.distance_quantiles_, np.quantile(d, np.linspace(0, 1, 1001)),
                               rtol=1e-5)
    # The default stops at its first full pass on this data, so the checks above cannot tell
    # the rule's two terms apart (either alone stops it there). Pin each one:
    # (a) the first pass stops exactly when TOL exceeds (d1 - se) / qe1, with d1 the QE drop
    # below the last settling subsample's and se two of its standard errors: just above that
    # TOL it stops at once, just below it never stops. A rule without the standard-error term
    # (threshold d1 / qe1 = -0.012 here) or relative to the previous QE instead of the new one
    # (-0.0516 against -0.0510) moves the threshold past the 2e-4 margin.
    prev = dists[first - 1]
    se = 2.0 * prev.std(ddof=1) / np.sqrt(prev.size)
    threshold = (prev.mean() - qe[first] - se) / qe[first]
    for tol, want in ((threshold + 2e-4, 1), (threshold - 2e-4, TorchBatchSOM.MAX_PASSES)):
        monkeypatch.setattr(TorchBatchSOM, "TOL", tol)
        run = SOM((8, 8), 6, seed=0, batch_size=1000).fit(X, progress=False)
        assert run.epochs_trained == len([h for h in run.history if h["phase"] == "full"]) == want
    monkeypatch.undo()
    # (b) later passes, without settling steps (so no standard-error term and no check at the
    # first pass): with TOL between two successive relative QE drops of the never-stopping
    # run, the fit stops exactly at the first pass whose drop is below TOL (here the fifth),
    # after retracing the never-stopping run's passes
    monkeypatch.setattr(TorchBatchSOM, "SETTLE_STEPS", 0)
    monkeypatch.setattr(TorchBatchSOM, "TOL", -2.0)
    ref = SOM((8, 8), 6, seed=0, batch_size=1000).fit(X, progress=False)
    q = np.array([h["qe"] for h in ref.history if h["phase"] == "full"])
    drop = (q[:-1] - q[1:]) / q[1:]                      # pass j + 2's drop relative to its QE
    assert np.all(np.diff(drop[:4]) < 0)                 # this data: drops shrink at first
    tol = float(np.sqrt(drop[2] * drop[3]))
    want = 2 + int(np.argmax(drop < tol))
    assert want == 5
    monkeypatch.setattr(TorchBatchSOM, "TOL", tol)
    run = SOM((8, 8), 6, seed=0, batch_size=1000).fit(X, progress=False)
    got = [h for h in run.history if h["phase"] == "full"]
    assert run.epochs_trained == len(got) == want and not got[-1]["updated"]
    np.testing.assert_allclose([h["qe"] for h in got], q[:want], rtol=1e-6)
    monkeypatch.undo()
    # explicit epochs: exactly that many full passes, each with an update
    som3 = SOM((8, 8), 6, seed=0, batch_size=1000).fit(X, epochs=3, progress=False)
    full3 = [h for h in som3.history if h["phase"] == "full"]
    assert len(full3) == som3.epochs_trained == 3 and all(h["updated"] for h in full3)
    np.testing.assert_allclose(som3.distance_quantiles_,
                               np.quantile(som3.distances(X), np.linspace(0, 1, 1001)), rtol=1e-5)


def _mixture(n: int, seed: int = 0, d: int = 8, k: int = 12) -> np.ndarray:
    """A non-galaxy check: ``d``-feature Gaussian mixture, anisotropic components."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(k, d))
    comp = rng.choice(k, n, p=rng.dirichlet(np.full(k, 2.0)))
    A = rng.normal(size=(k, d, d)) * rng.uniform(0.2, 1.0, size=(k, 1, d))
    return means[comp] + np.einsum("nij,nj->ni", A[comp], rng.normal(size=(n, d)))


def test_large_sample_passes_use_a_subset_whose_distances_match_all_rows():
    X = np.random.default_rng(11).normal(size=(70_000, 2))
    som = SOM((3, 3), 2, seed=0).fit(X, progress=False)
    full = [h for h in som.history if h["phase"] == "full"]
    assert full and all(h["rows"] == TorchBatchSOM.PASS_ROWS for h in full)
    levels = [0.1, 0.5, 0.9, 0.99]
    np.testing.assert_allclose(som.distance_threshold(levels),
                               np.quantile(som.distances(X), levels), rtol=0.02)


@pytest.mark.parametrize("make", [_colours, _mixture], ids=["colours", "mixture8"])
def test_default_fit_matches_minisom_train_quality(make):
    """Default fit vs minisom's train(X, N, random_order=True) after pca_weights_init:
    QE within 2%, TE within 2x (the targets of benchmarks/som.py)."""
    X = make(12_000, seed=2)
    som = SOM((12, 12), X.shape[1], seed=0).fit(X, progress=False)
    Xs = som.standardizer.transform(X).astype(np.float64)
    ms = MiniSom(12, 12, X.shape[1], sigma=6.0, learning_rate=0.5, random_seed=0,
                 neighborhood_function="gaussian", decay_function="linear_decay_to_zero",
                 sigma_decay_function="inverse_decay_to_one")
    ms.pca_weights_init(Xs)
    ms.train(Xs, len(Xs), random_order=True)
    assert som.quantization_error(X) <= 1.02 * ms.quantization_error(Xs)
    assert som.topographic_error(X) <= 2.0 * max(ms.topographic_error(Xs), 1 / len(X))


@pytest.mark.parametrize("backend,topology", [("torch", "rectangular"), ("torch", "hexagonal"),
                                              ("minisom", "rectangular")])
def test_separated_clusters_get_own_regions_and_map_is_ordered(backend, topology):
    X, labels = _clusters(n_per=150, seed=5)
    som = SOM((8, 8), 3, backend=backend, topology=topology, seed=0)
    som.fit(X, epochs=6 if backend == "minisom" else None, progress=False)
    cells = som.predict(X)
    for c in np.unique(cells):  # each cell holds samples of a single cluster
        assert len(np.unique(labels[cells == c])) == 1
    pos = som.grid_positions
    centre = np.array([pos[cells[labels == k]].mean(axis=0) for k in range(4)])
    spread = np.array([np.linalg.norm(pos[cells[labels == k]] - centre[k], axis=1).mean()
                       for k in range(4)])
    sep = cdist(centre, centre)[np.triu_indices(4, 1)]
    assert sep.min() > 2 * spread.max()
    g = cdist(pos, pos)
    p = cdist(som.prototypes, som.prototypes)
    assert p[(g > 0.5) & (g < 1.01)].mean() < 0.5 * p[g > 4].mean()


def test_embedding_width_map_agrees_with_scipy():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(600, 256)).astype(np.float32)
    som = SOM((5, 5), 256, seed=0).fit(X, progress=False)
    cells, dist = som.predict_with_distances(X)
    D = cdist(som.standardizer.transform(X).astype(np.float64), som.prototypes)
    np.testing.assert_allclose(dist, D.min(axis=1), rtol=1e-4)
    differ = cells != D.argmin(axis=1)
    assert np.allclose(D[differ, cells[differ]], D.min(axis=1)[differ], rtol=1e-5)


def test_device_defaults_to_cuda_when_present_and_is_overridable():
    assert SOM((3, 3), 2).device == default_device()
    assert SOM((3, 3), 2, device="cpu").device == "cpu"
    assert SOM((3, 3), 2, backend="minisom").device == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            SOM((3, 3), 2, device="cuda")


# ---------------------------------------------------------------- training distances
def test_blob_far_from_training_data_lies_beyond_the_99th_training_distance():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(5000, 5))
    som = SOM((10, 10), 5, seed=0).fit(X, progress=False)
    blob = 8.0 + 0.3 * rng.normal(size=(300, 5))  # 8 sigma away along every feature
    d_blob = som.distances(blob)
    thr = som.distance_threshold(0.99)
    assert (d_blob > thr).all()
    np.testing.assert_array_equal(som.distance_quantile(d_blob), 1.0)
    # training rows: 1% above it; new rows of the same distribution: about as few (a map
    # fits its own training rows slightly better)
    d_train = som.distances(X)
    assert np.mean(d_train > thr) == pytest.approx(0.01, abs=0.002)
    assert 0.005 < np.mean(som.distances(rng.normal(size=(20_000, 5))) > thr) < 0.025
    # distance_quantile inverts distance_threshold
    levels = np.array([0.1, 0.5, 0.9, 0.99])
    np.testing.assert_allclose(som.distance_quantile(som.distance_threshold(levels)), levels,
                               atol=1e-3)
    assert np.mean(som.distance_quantile(d_train) <= 0.5) == pytest.approx(0.5, abs=0.002)
    assert np.isnan(som.distance_quantile(np.nan))


def test_distance_threshold_interpolates_and_validates(trained):
    som, X, _ = trained
    d = som.distances(X)
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert som.distance_threshold(q) == pytest.approx(np.quantile(d, q), rel=1e-5)
    np.testing.assert_allclose(som.distance_threshold([0.25, 0.75]), np.quantile(d, [0.25, 0.75]),
                               rtol=1e-5)
    with pytest.raises(ValueError, match=r"quantile must lie in \[0, 1\]"):
        som.distance_threshold(1.5)
    bare = SOM.from_prototypes(som.prototypes, som.shape, som.standardizer)
    with pytest.raises(ValueError, match="record_distances"):
        bare.distance_threshold(0.99)
    bare.record_distances(X)
    np.testing.assert_allclose(bare.distance_quantiles_, som.distance_quantiles_, rtol=1e-6)


# ---------------------------------------------------------------- input handling
def test_standardisation_is_stored_and_applied(trained):
    som, X, _ = trained
    np.testing.assert_allclose(som.standardizer.mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(som.standardizer.std, X.std(axis=0), rtol=1e-12)
    plain = SOM.from_prototypes(som.prototypes, som.shape)
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    np.testing.assert_array_equal(som.predict(X), plain.predict(Xs))
    np.testing.assert_allclose(som.prototypes_raw, som.prototypes * X.std(axis=0) + X.mean(axis=0))


def test_chunked_prediction_equals_single_pass(trained):
    som, X, _ = trained
    Xn = X.copy()
    Xn[[5, 6, 700], 1] = np.nan
    a, da = som.predict_with_distances(Xn, nan_policy="mark", chunk_size=7)
    b, db = som.predict_with_distances(Xn, nan_policy="mark", chunk_size=100_000)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(da, db)


def test_block_workers_give_the_serial_result(trained, monkeypatch):
    """Row blocks mapped on worker threads = one thread; thread setting restored."""
    som, X, _ = trained
    monkeypatch.setattr(TorchBatchSOM, "_block_rows", lambda self: 50)  # many blocks
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = som.predict_with_distances(X)
        serial_te = som.topographic_error(X)
        fit1 = SOM((5, 5), 3, seed=0, batch_size=300).fit(X, progress=False)
        torch.set_num_threads(2)
        pooled = som.predict_with_distances(X)
        assert som.topographic_error(X) == serial_te
        fit2 = SOM((5, 5), 3, seed=0, batch_size=300).fit(X, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(pooled[0], serial[0])
    np.testing.assert_array_equal(pooled[1], serial[1])
    np.testing.assert_array_equal(fit1.prototypes, fit2.prototypes)


def test_occupancy_counts_cells(trained):
    som, X, _ = trained
    occ = som.occupancy(X)
    assert occ.dtype == np.int64 and occ.shape == (som.n_cells,)
    np.testing.assert_array_equal(occ, np.bincount(som.predict(X), minlength=som.n_cells))
    assert occ.sum() == len(X)


def test_fit_is_deterministic_for_a_seed():
    X, _ = _clusters(n_per=100, seed=7)
    a = SOM((5, 5), 3, seed=3, init="random", batch_size=64).fit(X, progress=False)
    b = SOM((5, 5), 3, seed=3, init="random", batch_size=64).fit(X, progress=False)
    c = SOM((5, 5), 3, seed=4, init="random", batch_size=64).fit(X, progress=False)
    np.testing.assert_array_equal(a.prototypes, b.prototypes)
    assert not np.allclose(a.prototypes, c.prototypes)
    m1 = SOM((4, 4), 3, backend="minisom", seed=1).fit(X, epochs=2, progress=False)
    m2 = SOM((4, 4), 3, backend="minisom", seed=1).fit(X, epochs=2, progress=False)
    np.testing.assert_array_equal(m1.prototypes, m2.prototypes)


def test_nan_rows_are_refused_with_indices_or_marked(trained):
    som, X, _ = trained
    Xn = X.copy()
    Xn[3, 0] = np.nan
    Xn[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"2 of 1200 rows .*first row indices: \[3, 7\]"):
        som.predict(Xn)
    with pytest.raises(ValueError, match=r"first row indices: \[3, 7\]"):
        SOM((3, 3), 3).fit(Xn, progress=False)
    cells, dist = som.predict_with_distances(Xn, nan_policy="mark")
    assert cells[3] == -1 and cells[7] == -1 and np.isnan(dist[[3, 7]]).all()
    good = np.setdiff1d(np.arange(len(X)), [3, 7])
    np.testing.assert_array_equal(cells[good], som.predict(X)[good])
    assert som.occupancy(Xn, nan_policy="mark").sum() == len(X) - 2
    np.testing.assert_array_equal(som.distances(Xn, nan_policy="mark")[good],
                                  som.distances(X)[good])
    with pytest.raises(ValueError, match="nan_policy"):
        som.predict(Xn, nan_policy="drop")


def test_wrong_feature_count_empty_and_untrained_give_clear_errors(trained):
    som, X, _ = trained
    with pytest.raises(ValueError, match=r"has 2 features but this SOM was built for 3 \(a, b, c\)"):
        som.predict(X[:, :2])
    with pytest.raises(ValueError, match="empty"):
        som.predict(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="empty"):
        SOM((3, 3), 3).fit(np.zeros((0, 3)), progress=False)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        SOM((3, 3), 3).fit(X, epochs=0, progress=False)
    with pytest.raises(ValueError, match="2-D"):
        som.predict(np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="numeric"):
        som.predict(np.array([["a", "b", "c"]]))
    with pytest.raises(RuntimeError, match="not trained"):
        SOM((3, 3), 3).predict(X)
    with pytest.raises(ValueError, match="backend"):
        SOM((3, 3), 3, backend="sklearn")
    with pytest.raises(ValueError, match="topology"):
        SOM((3, 3), 3, topology="toroidal")
    with pytest.raises(ValueError, match="feature_names"):
        SOM((3, 3), 3, feature_names=["a"])
    with pytest.raises(ValueError, match="learning_rate"):
        SOM((3, 3), 3, learning_rate=1.5)


def test_dataframe_columns_are_selected_by_name(trained):
    som, X, _ = trained
    df = pd.DataFrame(X[:, ::-1], columns=["c", "b", "a"])
    np.testing.assert_array_equal(som.predict(df), som.predict(X))


# ---------------------------------------------------------------- persistence
@pytest.mark.parametrize("backend", ["torch", "minisom"])
def test_save_load_round_trip(backend, tmp_path):
    X = _colours(1500, seed=3)
    som = SOM((5, 4), 6, backend=backend, topology="hexagonal", seed=2, sigma=2.5,
              feature_names=SOM_FEATURES).fit(X, progress=False)
    path = som.save(tmp_path / "som")
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "photozsom.som" and meta["version"] == 1
    with np.load(path / "arrays.npz", allow_pickle=False) as z:  # plain arrays, no pickle
        assert {"prototypes", "initial_prototypes", "distance_quantiles"} <= set(z.files)
    back = SOM.load(path, expect_shape=(5, 4), expect_features=SOM_FEATURES)
    assert back.backend == backend and back.topology == "hexagonal" and back.shape == (5, 4)
    assert back.feature_names == SOM_FEATURES and back.sigma == 2.5 and back.seed == 2
    assert back.learning_rate == som.learning_rate and back.batch_size == som.batch_size
    np.testing.assert_array_equal(back.prototypes, som.prototypes)
    np.testing.assert_array_equal(back.initial_prototypes_, som.initial_prototypes_)
    np.testing.assert_array_equal(back.distance_quantiles_, som.distance_quantiles_)
    np.testing.assert_array_equal(back.standardizer.mean, som.standardizer.mean)
    np.testing.assert_array_equal(back.standardizer.std, som.standardizer.std)
    assert back.history == som.history and back.epochs_trained == som.epochs_trained
    assert back.distance_threshold(0.99) == som.distance_threshold(0.99)
    np.testing.assert_array_equal(back.predict(X), som.predict(X))
    other = "minisom" if backend == "torch" else "torch"
    np.testing.assert_array_equal(SOM.load(path, backend=other).predict(X), som.predict(X))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(som)).predict(X), som.predict(X))


def test_load_reads_the_single_file_npz_of_earlier_versions(tmp_path):
    rng = np.random.default_rng(5)
    w = rng.normal(size=(12, 2))
    meta = {"format_version": 1, "shape": [3, 4], "n_features": 2, "feature_names": ["u", "v"],
            "backend": "torch", "topology": "rectangular", "sigma": 2.0, "sigma_final": 1.0,
            "learning_rate": 1.0, "seed": 0, "init": "pca", "batch_size": 48,
            "epochs_trained": 5, "history": [],
            "standardizer": {"mean": [1.0, 2.0], "std": [2.0, 4.0], "names": ["u", "v"]}}
    path = tmp_path / "som.pt"
    with open(path, "wb") as fh:
        np.savez(fh, prototypes=w, meta=np.array(json.dumps(meta)))
    som = SOM.load(path, expect_shape=(3, 4), expect_features=["u", "v"])
    X = rng.normal(size=(50, 2)) * [2.0, 4.0] + [1.0, 2.0]
    np.testing.assert_array_equal(som.predict(X), cdist((X - [1, 2]) / [2, 4], w).argmin(1))
    assert som.epochs_trained == 5 and som.distance_quantiles_ is None


def test_load_refuses_other_shape_features_or_kind(trained, tmp_path):
    som, _, _ = trained
    path = som.save(tmp_path / "som")
    with pytest.raises(ValueError, match=r"7x6 SOM, expected \(32, 32\)"):
        SOM.load(path, expect_shape=(32, 32))
    with pytest.raises(ValueError, match="trained on features"):
        SOM.load(path, expect_features=["a", "c", "b"])
    with pytest.raises(ValueError, match="of 3 features"):
        SOM.load(path, expect_features=6)
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a SOM"):
        SOM.load(bogus)
    save_artifact(tmp_path / "mdn", "mdn", {"w": np.zeros(2)}, {})
    with pytest.raises(ArtifactError, match="not 'photozsom.som'"):
        SOM.load(tmp_path / "mdn")
    with pytest.raises(ArtifactError, match="no photozsom som"):
        SOM.load(tmp_path / "missing")


# ---------------------------------------------------------------- catalogues
def _catalogue(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {}
    for b, base in zip(["G", "R", "I", "Z", "W1", "W2"], [3.0, 5.0, 7.0, 9.0, 15.0, 12.0]):
        cols[f"FLUX_{b}"] = base * rng.lognormal(0.0, 0.6, n)
        cols[f"FLUX_IVAR_{b}"] = np.full(n, 100.0)
        cols[f"MW_TRANSMISSION_{b}"] = np.full(n, 0.95)
    return pd.DataFrame(cols)


def test_fit_and_predict_catalog_use_som_features():
    cat = _catalogue(500)
    som = SOM((4, 4), 6, seed=0).fit_catalog(cat, progress=False)
    assert som.feature_names == SOM_FEATURES
    X, valid = som_features(cat)
    assert valid.all()
    np.testing.assert_array_equal(som.predict_catalog(cat), som.predict(X))
    north = cat.copy()
    north.loc[[2, 9], "FLUX_IVAR_I"] = 0.0  # no i-band data
    with pytest.raises(ValueError, match=r"first row indices: \[2, 9\]"):
        SOM((4, 4), 6).fit_catalog(north, progress=False)
    with pytest.warns(UserWarning, match="2 of 500 rows"):
        SOM((4, 4), 6).fit_catalog(north, epochs=2, progress=False, skip_invalid=True)
    cells = som.predict_catalog(north, nan_policy="mark")
    assert (cells[[2, 9]] == -1).all() and (np.delete(cells, [2, 9]) >= 0).all()
