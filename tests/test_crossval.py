"""Out-of-fold predictions: every row is predicted by a model that never trained on it."""

import numpy as np
import pytest
from scipy import stats

from photozsom.mdn import (
    MDN,
    assign_folds,
    assign_group_folds,
    cross_val_predict,
    train_val_test_split,
)
from photozsom.pdf import MixturePDF


def _noise_problem(n=600, d=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    z = rng.uniform(0.1, 1.5, size=n)          # independent of X: nothing to learn but n(z)
    return X, z, np.arange(n) * 7 + 3


def test_out_of_fold_predictions_do_not_memorise_the_labels():
    X, z, ids = _noise_problem()
    kw = {"hidden": (64, 64, 64), "max_epochs": 60, "patience": 60, "batch_size": 64, "lr": 3e-3}
    pdf, fold = cross_val_predict(X, z, ids, n_folds=4, seed=0, progress=False, **kw)
    assert isinstance(pdf, MixturePDF) and len(pdf) == len(z)
    assert set(np.unique(fold)) == {0, 1, 2, 3}
    oof = pdf.crps(z).mean()
    # Independent reference: the CRPS of the uniform marginal U(0.1, 1.5) is (b - a) / 6.
    marginal = (1.5 - 0.1) / 6
    assert oof > 0.9 * marginal
    # A model that has seen the rows (trained on all of them without early stopping) does
    # better on them than the out-of-fold models: the gap is memorisation.
    seen = MDN(n_inputs=X.shape[1], seed=0, **kw)
    seen.fit(X, z, progress=False)
    assert seen.predict(X).crps(z).mean() < 0.9 * oof


def test_folds_are_stable_under_reordering():
    X, z, ids = _noise_problem(n=200)
    kw = {"hidden": (8, 8, 8), "max_epochs": 1, "batch_size": 64}
    _, fold = cross_val_predict(X, z, ids, n_folds=3, seed=1, progress=False, **kw)
    perm = np.random.default_rng(0).permutation(len(z))
    _, fold_p = cross_val_predict(X[perm], z[perm], ids[perm], n_folds=3, seed=1, progress=False, **kw)
    np.testing.assert_array_equal(fold[perm], fold_p)


def test_folds_have_equal_sizes_and_are_independent_of_the_split():
    rng = np.random.default_rng(4)
    ids = rng.choice(10**12, size=20003, replace=False).astype(np.int64)
    for seed in (0, 3):
        fold = assign_folds(ids, n_folds=5, seed=seed)
        sizes = np.bincount(fold, minlength=5)
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == ids.size   # 4001 / 4000
        # the split made with the same seed: every fold holds its share of every part
        # (before, fold 4 was exactly the split's validation + test rows)
        part = np.empty(ids.size, dtype=int)
        for i, p in enumerate(train_val_test_split(ids, seed=seed)):
            part[p] = i
        table = np.array([[np.sum((fold == k) & (part == j)) for j in range(3)] for k in range(5)])
        assert stats.chi2_contingency(table).pvalue > 1e-3
        share = table / table.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(share, np.broadcast_to(table.sum(0) / ids.size, share.shape),
                                   atol=0.02)
    # seeded, order-free, and string IDs work
    np.testing.assert_array_equal(assign_folds(ids, 5, seed=1), assign_folds(ids, 5, seed=1))
    assert np.mean(assign_folds(ids, 5, seed=1) == assign_folds(ids, 5, seed=2)) < 0.3
    perm = rng.permutation(ids.size)
    np.testing.assert_array_equal(assign_folds(ids[perm], 5, seed=1),
                                  assign_folds(ids, 5, seed=1)[perm])
    assert np.ptp(np.bincount(assign_folds(ids.astype(str), 7, seed=0))) <= 1
    # cross_val_predict reports the same folds
    X, z, small_ids = _noise_problem(n=50)
    _, fold = cross_val_predict(X, z, small_ids, n_folds=3, seed=2, progress=False,
                                hidden=(4,), max_epochs=1)
    np.testing.assert_array_equal(fold, assign_folds(small_ids, 3, seed=2))


def test_bad_arguments():
    X, z, ids = _noise_problem(n=20)
    with pytest.raises(ValueError, match="n_folds"):
        cross_val_predict(X, z, ids, n_folds=1)
    with pytest.raises(ValueError, match="differ in length"):
        cross_val_predict(X, z[:-1], ids)
    with pytest.raises(ValueError, match="n_folds"):
        assign_folds(ids[:3], n_folds=4)


def test_group_folds_keep_fields_whole_and_balance_the_rows():
    rng = np.random.default_rng(2)
    sizes = rng.integers(50, 400, 11)
    groups = np.repeat(np.array([f"R{i}" for i in range(11)]), sizes)[rng.permutation(sizes.sum())]
    fold = assign_group_folds(groups, n_folds=4)
    # every field lies in exactly one fold, every fold holds a field
    per_group = {g: set(fold[groups == g]) for g in np.unique(groups)}
    assert all(len(f) == 1 for f in per_group.values())
    assert set(fold) == {0, 1, 2, 3}
    # largest-first to the lightest fold: no fold exceeds the lightest by more than the largest field
    load = np.bincount(fold, minlength=4)
    assert load.sum() == sizes.sum() and load.max() - load.min() <= sizes.max()
    # the fold of a row depends on its field, not on the row order
    perm = rng.permutation(len(groups))
    np.testing.assert_array_equal(assign_group_folds(groups[perm], 4), fold[perm])
    # integer fields (and float ones holding whole numbers) give the same partition
    codes = np.unique(groups, return_inverse=True)[1].ravel()
    f_int = assign_group_folds(codes.astype(float), 4)
    assert all(len(set(f_int[codes == c])) == 1 for c in np.unique(codes))
    with pytest.raises(ValueError, match="number of groups"):
        assign_group_folds(groups, n_folds=12)
    with pytest.raises(ValueError, match="NaN"):
        assign_group_folds(np.array([1.0, np.nan, 2.0]), n_folds=2)


def test_grouped_cross_val_predict_holds_out_whole_fields():
    X, z, ids = _noise_problem(n=300)
    groups = np.arange(300) % 6
    kw = {"hidden": (8, 8, 8), "max_epochs": 1, "batch_size": 64}
    _, fold = cross_val_predict(X, z, ids, n_folds=3, seed=0, progress=False, groups=groups, **kw)
    assert all(len(set(fold[groups == g])) == 1 for g in range(6))
    np.testing.assert_array_equal(fold, assign_group_folds(groups, 3))
    _, by_id = cross_val_predict(X, z, ids, n_folds=3, seed=0, progress=False, **kw)
    assert any(len(set(by_id[groups == g])) > 1 for g in range(6))   # the default mixes fields
    with pytest.raises(ValueError, match="differ in length"):
        cross_val_predict(X, z, ids, n_folds=3, progress=False, groups=groups[:-1], **kw)
