"""The torch CRPS loss, the mixture density network and the 80/10/10 split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import integrate, special, stats

from photozsom.mdn import MDN, crps_mixture, train_val_test_split
from photozsom.pdf import CENTRES, N_COMPONENTS, SIGMA, Z_MAX, Z_MIN, MixturePDF

A = (Z_MIN - CENTRES) / SIGMA
B = (Z_MAX - CENTRES) / SIGMA


def reference_crps(w: np.ndarray, y: np.ndarray) -> np.ndarray:
    """int_0^1.6 (F(z) - 1{z >= y})^2 dz by adaptive quadrature (scipy quad_vec), with F
    the truncated-normal mixture CDF written from its definition."""
    Z = special.ndtr(B) - special.ndtr(A)

    def F(t):
        return np.einsum("nk,nk->n", w, (special.ndtr((t[:, None] - CENTRES) / SIGMA)
                                         - special.ndtr(A)) / Z)

    def integrand(s):
        return y * F(y * s) ** 2 + (Z_MAX - y) * (1.0 - F(y + (Z_MAX - y) * s)) ** 2

    return integrate.quad_vec(integrand, 0.0, 1.0, epsabs=1e-13, epsrel=1e-13, limit=20000)[0]


def test_crps_mixture_equals_numerical_integration_including_the_edges():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.full(N_COMPONENTS, 0.05), size=12)
    w[0] = 0.0
    w[0, [0, 1]] = 0.5            # piled on the truncated lower edge
    w[1] = 0.0
    w[1, [198, 199]] = 0.5        # and on the upper edge
    y = np.r_[0.0, Z_MAX, 0.002, 1.5985, rng.uniform(0, 1.6, 8)]
    got = crps_mixture(torch.tensor(w), torch.tensor(y)).numpy()
    np.testing.assert_allclose(got, reference_crps(w, y), atol=1e-12)
    got32 = crps_mixture(torch.tensor(w, dtype=torch.float32),
                         torch.tensor(y, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got32, reference_crps(w, y), atol=2e-6)
    # and the numpy evaluation agrees
    np.testing.assert_allclose(MixturePDF(w).crps(y), got, atol=1e-13)


def test_crps_mixture_passes_gradcheck():
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(3, N_COMPONENTS)), requires_grad=True)
    y = torch.tensor([0.003, 0.81, 1.597], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda lg, yy: crps_mixture(torch.softmax(lg, dim=1), yy), (logits, y))


def test_crps_mixture_gradient_in_y_is_2F_minus_1():
    # d CRPS / dy = 2 F(y) - 1 (differentiating the integral), F from scipy's truncnorm
    rng = np.random.default_rng(2)
    w = rng.dirichlet(np.full(N_COMPONENTS, 0.1), size=4)
    y = torch.tensor(rng.uniform(0.1, 1.5, 4), requires_grad=True)
    crps_mixture(torch.tensor(w), y).sum().backward()
    F = np.einsum("nk,nk->n", w, stats.truncnorm.cdf(y.detach().numpy()[:, None], A, B,
                                                     loc=CENTRES, scale=SIGMA))
    np.testing.assert_allclose(y.grad.numpy(), 2 * F - 1, atol=1e-10)


def test_crps_mixture_rejects_bad_shapes_and_redshifts():
    w = torch.full((2, N_COMPONENTS), 1.0 / N_COMPONENTS)
    with pytest.raises(ValueError, match="outside the support"):
        crps_mixture(w, torch.tensor([0.5, 1.7]))
    with pytest.raises(ValueError, match="shape"):
        crps_mixture(w[:, :10], torch.tensor([0.5, 0.7]))
    with pytest.raises(ValueError, match="one redshift per row"):
        crps_mixture(w, torch.tensor([0.5]))


def test_crps_mixture_rejects_weights_that_are_not_probabilities():
    rng = np.random.default_rng(3)
    w = torch.tensor(rng.dirichlet(np.full(N_COMPONENTS, 0.2), size=4))
    y = torch.tensor([0.1, 0.5, 0.9, 1.3], dtype=torch.float64)
    # the motivating failure: rows summing to 2 give a negative "CRPS" when unchecked
    assert float(crps_mixture(2 * w, y, validate=False).min()) < 0
    with pytest.raises(ValueError, match="sum to 1"):
        crps_mixture(2 * w, y)
    off = w.clone()
    off[2] *= 1 + 1e-4                      # 1e-4 off: beyond the float64 tolerance (1e-6)
    with pytest.raises(ValueError, match=r"sum to 1.*first \[2\]"):
        crps_mixture(off, y)
    neg = w.clone()
    neg[1, :2] = torch.tensor([-0.1, neg[1, 0] + neg[1, 1] + 0.1], dtype=torch.float64)
    assert abs(float(neg[1].sum()) - 1) < 1e-12      # still sums to 1, but one weight < 0
    with pytest.raises(ValueError, match=">= 0"):
        crps_mixture(neg, y)
    nan = w.clone()
    nan[3, 7] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        crps_mixture(nan, y)
    # valid probability rows pass, including float32 softmax output (sums off by ~1e-7)
    logits = torch.tensor(rng.normal(scale=3, size=(4, N_COMPONENTS)), dtype=torch.float32)
    got = crps_mixture(torch.softmax(logits, dim=1), y.float())
    assert bool((got >= 0).all())
    np.testing.assert_allclose(crps_mixture(w * (1 + 5e-7), y).numpy(),
                               MixturePDF(w.numpy()).crps(y.numpy()), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# a synthetic problem with a known conditional density: z | x ~ N(0.5 + 0.3 x0, 0.05) on [0, 1.6]
# ---------------------------------------------------------------------------------------------
S_TRUE = 0.05


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    mu = 0.5 + 0.3 * x[:, 0]
    z = stats.truncnorm.rvs((Z_MIN - mu) / S_TRUE, (Z_MAX - mu) / S_TRUE, loc=mu, scale=S_TRUE,
                            random_state=seed + 1)
    return x, z, mu


def true_crps(mu: np.ndarray, z: np.ndarray) -> np.ndarray:
    """CRPS of the true conditional density, by trapezoid on a fine grid."""
    t = np.linspace(Z_MIN, Z_MAX, 16001)
    lo, hi = special.ndtr((Z_MIN - mu) / S_TRUE), special.ndtr((Z_MAX - mu) / S_TRUE)
    F = (special.ndtr((t - mu[:, None]) / S_TRUE) - lo[:, None]) / (hi - lo)[:, None]
    return integrate.trapezoid((F - (t >= z[:, None])) ** 2, t, axis=1)


@pytest.fixture(scope="module")
def fitted():
    x, z, mu = synthetic(4000)
    tr, va, te = train_val_test_split(len(z), seed=0)
    model = MDN(3, hidden=(64, 64, 64), seed=0, lr=3e-3, batch_size=256, max_epochs=60,
                patience=8, device="cpu")
    history = model.fit(x[tr], z[tr], x[va], z[va], progress=False)
    return model, history, (x, z, mu, tr, va, te)


def test_mdn_recovers_a_known_conditional_density(fitted):
    model, _, (x, z, mu, _, _, te) = fitted
    pdf = model.predict(x[te])
    model_crps = pdf.crps(z[te]).mean()
    best = true_crps(mu[te], z[te]).mean()
    assert model_crps < 1.05 * best                       # within 5% of the true density's CRPS
    assert np.median(np.abs(pdf.mean() - mu[te])) < 0.01  # conditional mean 0.5 + 0.3 x0
    assert abs(np.median(pdf.std()) / S_TRUE - 1) < 0.15  # and its width 0.05
    pit = pdf.pit(z[te])
    assert np.mean((pit < 0.005) | (pit > 0.995)) < 0.04      # PCO: 1% when calibrated


def test_early_stopping_keeps_the_best_validation_epoch(fitted):
    model, history, (x, z, _, _, va, _) = fitted
    assert list(history.columns[:3]) == ["epoch", "train_crps", "val_crps"]
    best = history.loc[history["val_crps"].idxmin()]
    assert model.best_epoch_ == int(best["epoch"])
    # the one-cycle schedule runs to its end unless the validation CRPS rose 2% above its best
    assert (len(history) == model.max_epochs
            or history["val_crps"].iloc[-1] > 1.02 * best["val_crps"])
    # the restored weights reproduce the best validation CRPS (independent numpy evaluation)
    np.testing.assert_allclose(model.predict(x[va]).crps(z[va]).mean(), best["val_crps"],
                               rtol=1e-4)


def test_mdn_save_load_round_trip_as_an_artifact_without_pickle(fitted, tmp_path):
    model, _, (x, *_rest) = fitted
    path = model.save(tmp_path / "mdn")
    assert path.is_dir()
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "photozsom.mdn" and meta["version"] == 1
    assert meta["config"]["hidden"] == [64, 64, 64]
    with np.load(path / "arrays.npz", allow_pickle=False) as arrays:   # plain arrays only
        assert arrays["state/0.weight"].shape == (64, 3)
        np.testing.assert_array_equal(arrays["standardizer/mean"], model.standardizer.mean)
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "meta.json"]
    back = MDN.load(path, device="cpu")
    np.testing.assert_array_equal(back.predict_weights(x[:50]), model.predict_weights(x[:50]))
    np.testing.assert_allclose(back.standardizer.std, model.standardizer.std)
    assert back.hidden == model.hidden and back.best_epoch_ == model.best_epoch_
    assert back.config() == model.config()
    pd.testing.assert_frame_equal(back.history_, model.history_, check_dtype=False)
    # saving again replaces the directory whole; a file or another kind is refused clearly
    model.save(path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="artifacts are directories"):
        MDN.load(tmp_path / "file")
    from photozsom.artifacts import save_artifact
    save_artifact(tmp_path / "som", "som", {"w": np.zeros(2)}, {})
    with pytest.raises(ValueError, match="not 'photozsom.mdn'"):
        MDN.load(tmp_path / "som")


def test_training_stops_early_when_the_validation_crps_rises():
    # z independent of 32 noise features: all a network can learn beyond n(z) is noise
    rng = np.random.default_rng(5)
    x = rng.normal(size=(700, 32)).astype(np.float32)
    z = rng.uniform(0.1, 1.5, 700)
    m = MDN(32, hidden=(128, 128), seed=0, batch_size=64, lr=3e-3, max_epochs=80, patience=3,
            device="cpu")
    h = m.fit(x[:600], z[:600], x[600:], z[600:], progress=False)
    assert len(h) < 60                                    # far from the 80-epoch schedule
    # but only once the rate had decayed to half its peak (before, rises are step noise)
    lr = h["lr"].to_numpy()
    assert lr[-1] <= 0.6 * m.lr_ and lr.max() > 0.9 * m.lr_
    val = h["val_crps"].to_numpy()
    assert val[-1] > 1.02 * val.min()                     # stopped because it overfits
    assert m.best_epoch_ <= len(h) - 3                    # after `patience` stale epochs
    np.testing.assert_allclose(m.predict(x[600:]).crps(z[600:]).mean(), val.min(), rtol=1e-4)
    # the plateau schedule stops after `patience` epochs without any improvement
    p = MDN(32, hidden=(128, 128), seed=0, batch_size=64, lr=3e-3, max_epochs=80, patience=3,
            schedule="plateau", min_improvement=0.0, device="cpu")
    hp = p.fit(x[:600], z[:600], x[600:], z[600:], progress=False)
    assert len(hp) == p.best_epoch_ + 3


def test_mdn_training_is_reproducible_for_a_seed():
    x, z, _ = synthetic(600, seed=3)
    runs = []
    for seed in (5, 5, 6):
        m = MDN(3, hidden=(16, 16, 16), seed=seed, max_epochs=2, device="cpu")
        m.fit(x[:500], z[:500], x[500:], z[500:], progress=False)
        runs.append(m.predict_weights(x[:20]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_mdn_has_four_dense_layers_ending_in_the_mixture_weights():
    m = MDN(7, seed=0, device="cpu")
    linear = [layer for layer in m.network if isinstance(layer, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linear] == [
        (7, 256), (256, 256), (256, 256), (256, N_COMPONENTS)]


def test_mdn_rejects_nan_wrong_width_and_out_of_range_redshifts():
    x, z, _ = synthetic(100)
    m = MDN(3, hidden=(8,), max_epochs=1, device="cpu")
    bad = x.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.fit(bad, z)
    with pytest.raises(ValueError, match="n_inputs=3"):
        m.fit(x[:, :2], z)
    zb = z.copy()
    zb[7] = 1.9
    with pytest.raises(ValueError, match=r"outside \[0, 1.6\]"):
        m.fit(x, zb)
    with pytest.raises(RuntimeError, match="not trained"):
        m.predict(x)
    m.fit(x, z, progress=False)
    with pytest.raises(ValueError, match="n_inputs=3"):
        m.predict(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        m.predict(bad)


# ---------------------------------------------------------------------------------------------
# the split
# ---------------------------------------------------------------------------------------------
def test_split_of_n_rows_is_disjoint_complete_exact_and_seeded():
    tr, va, te = train_val_test_split(1003, seed=4)
    assert (len(tr), len(va), len(te)) == (803, 100, 100)
    np.testing.assert_array_equal(np.sort(np.r_[tr, va, te]), np.arange(1003))
    again = train_val_test_split(1003, seed=4)
    for a, b in zip((tr, va, te), again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(train_val_test_split(1003, seed=5)[2], te)


def test_split_by_objid_is_stable_when_rows_are_added_and_reordered():
    rng = np.random.default_rng(0)
    ids = rng.choice(10**9, size=20000, replace=False).astype(np.int64)
    parts = train_val_test_split(ids, seed=1)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(ids.size))
    fr = np.array([len(p) for p in parts]) / ids.size
    np.testing.assert_allclose(fr, [0.8, 0.1, 0.1], atol=0.01)     # binomial noise ~0.002
    label = np.empty(ids.size, dtype=int)
    for i, p in enumerate(parts):
        label[p] = i
    more = np.r_[rng.choice(10**9, 500) + 10**9, ids][::-1]     # new rows, reversed order
    parts2 = train_val_test_split(more, seed=1)
    label2 = {}
    for i, p in enumerate(parts2):
        label2.update(zip(more[p].tolist(), [i] * len(p)))
    assert all(label2[k] == v for k, v in zip(ids.tolist(), label.tolist()))
    strings = train_val_test_split(ids.astype(str), seed=1)
    assert sum(len(p) for p in strings) == ids.size
    with pytest.raises(ValueError, match="fractions"):
        train_val_test_split(10, fractions=(0.8, 0.1, 0.2))


# ---------------------------------------------------------------------------------------------
# mixed precision on the CPU (bfloat16 training steps where the CPU has native bfloat16)
# ---------------------------------------------------------------------------------------------
def test_default_precision_is_float32_on_every_cpu_and_bf16_only_on_request():
    from photozsom import mdn as mdn_module

    x, z, mu = synthetic(3000, seed=4)
    tr, va, te = train_val_test_split(len(z), seed=0)
    kw = {"hidden": (64, 64, 64), "seed": 0, "batch_size": 256, "max_epochs": 25, "device": "cpu"}
    # whatever the CPU: float32 unless asked (the same seed gives the same model everywhere)
    assert MDN(3, **kw).precision == "float32" and MDN(3, **kw).amp is False
    with pytest.raises(ValueError, match="precision must be one of"):
        MDN(3, precision="float16", **kw)
    assert mdn_module.cpu_has_native_bf16() in (True, False)
    fp32 = MDN(3, **kw)
    seen32: set = set()
    fp32.network[0].register_forward_hook(lambda m, i, o: seen32.add(o.dtype))
    fp32.fit(x[tr], z[tr], x[va], z[va], progress=False)
    assert seen32 == {torch.float32}
    bf16 = MDN(3, precision="bf16", **kw)
    seen: set = set()
    hook = bf16.network[0].register_forward_hook(lambda m, i, o: seen.add((m.training, o.dtype)))
    bf16.fit(x[tr], z[tr], x[va], z[va], progress=False)
    # training steps in bfloat16, validation passes in float32
    assert (True, torch.bfloat16) in seen and (False, torch.float32) in seen
    assert (True, torch.float32) not in seen and (False, torch.bfloat16) not in seen
    hook.remove()
    c32 = fp32.predict(x[te]).crps(z[te]).mean()
    c16 = bf16.predict(x[te]).crps(z[te]).mean()
    assert c16 < 1.03 * c32 and c16 < 1.06 * true_crps(mu[te], z[te]).mean()
    # predictions are the float32 network: equal to a plain float32 forward pass
    xs = torch.as_tensor(bf16.standardizer.transform(x[te]), dtype=torch.float32)
    with torch.inference_mode():
        w = torch.softmax(bf16.network.float()(xs), dim=1).numpy()
    np.testing.assert_allclose(bf16.predict_weights(x[te]), w, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# the schedule follows the training size
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [300, 5_000, 8_455, 15_000, 50_000, 500_000, 5_000_000])
def test_auto_schedule_makes_enough_steps_and_keeps_large_samples_unchanged(n):
    from photozsom.mdn import AUTO_MIN_EPOCHS, AUTO_MIN_STEPS, auto_schedule

    bs, ep = auto_schedule(n)
    assert bs in (256, 512, 1024)
    steps = ep * -(-n // bs)
    assert steps >= AUTO_MIN_STEPS and ep >= AUTO_MIN_EPOCHS
    # no longer than needed: one epoch fewer would fall short of one of the two minima
    assert ep == AUTO_MIN_EPOCHS or (ep - 1) * -(-n // bs) < AUTO_MIN_STEPS
    if n >= 50_000:                      # large samples: the fast schedule (batch 1024, 24)
        assert (bs, ep) == (1024, 24)
    assert auto_schedule(n, batch_size=64, max_epochs=3) == (64, 3)   # user settings kept


def test_fit_records_the_schedule_it_used_and_save_load_keeps_it(tmp_path):
    x, z, _ = synthetic(1200, seed=2)
    m = MDN(3, hidden=(16, 16, 16), seed=0, device="cpu")
    m.fit(x[:1000], z[:1000], x[1000:], z[1000:], progress=False)
    assert (m.batch_size, m.max_epochs, m.lr) == (None, None, None)     # "auto" kept
    assert (m.batch_size_, m.max_epochs_) == (256, 250)   # 4 steps/epoch -> 1000 steps
    assert m.lr_ == pytest.approx(2.5e-3)                  # linear rule at batch 256
    assert m.history_["lr"].max() <= m.lr_ * (1 + 1e-9)
    back = MDN.load(m.save(tmp_path / "m"))
    assert (back.batch_size_, back.max_epochs_, back.lr_) == (256, 250, m.lr_)
    assert back.batch_size is None and back.precision == "float32"


def test_numpy_forward_pass_equals_the_torch_network(fitted, tmp_path):
    """predict_weights (numpy on the CPU) against the torch network's own forward pass and
    softmax, for the fitted model and a dropout one (dropout is off at inference)."""
    model, _, (x, *_rest) = fitted
    drop = MDN(3, hidden=(32, 16), dropout=0.3, seed=2, max_epochs=1, device="cpu")
    drop.fit(x[:400], np.clip(x[:400, 0] * 0.1 + 0.5, 0.05, 1.5), progress=False)
    for m in (model, drop):
        m.network.eval()
        with torch.inference_mode():
            ref = torch.softmax(m.network(torch.as_tensor(
                m.standardizer.transform(x[:300]), dtype=torch.float32)), dim=1).numpy()
        got = m.predict_weights(x[:300], batch_size=128)      # several numpy batches
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    # a loaded model predicts the same from its stored arrays, before any torch network exists
    back = MDN.load(model.save(tmp_path / "mdn"), device="cpu")
    assert back._network is None
    np.testing.assert_array_equal(back.predict_weights(x[:50]), model.predict_weights(x[:50]))
    assert back._network is None


def test_loading_refuses_weights_of_the_wrong_shape(fitted, tmp_path):
    model, _, _ = fitted
    path = model.save(tmp_path / "mdn")
    with np.load(path / "arrays.npz") as f:
        arrays = dict(f)
    arrays["state/2.weight"] = arrays["state/2.weight"][:, :10]
    np.savez(path / "arrays.npz", **arrays)
    with pytest.raises(ValueError, match="weights have shapes"):
        MDN.load(path, device="cpu")


def test_the_same_seed_trains_the_same_network_whatever_torch_thread_count():
    """Torch splits gradient sums by thread count: with ``threads=None`` (torch's own count)
    one and three threads train different networks; the default fixed count trains the same
    one from either, and the caller's thread count is restored."""
    x, z, _ = synthetic(1200, seed=4)
    before = torch.get_num_threads()

    def train(outside: int, threads) -> np.ndarray:
        torch.set_num_threads(outside)
        try:
            m = MDN(3, hidden=(64, 64), seed=1, batch_size=64, max_epochs=3, threads=threads,
                    device="cpu")
            m.fit(x[:1000], z[:1000], x[1000:], z[1000:], progress=False)
            assert torch.get_num_threads() == outside
            return m.predict_weights(x[:200])
        finally:
            torch.set_num_threads(before)

    assert not np.array_equal(train(1, None), train(3, None))
    np.testing.assert_array_equal(train(1, 2), train(3, 2))
    assert MDN(3, device="cpu").threads == 2
    with pytest.raises(ValueError, match="threads must be >= 1"):
        MDN(3, threads=0, device="cpu")
