"""The statistics behind the flag's numbers: the standard error of Youden's J, nested scoring."""

from __future__ import annotations

import numpy as np
import pytest

from photozsom import flags
from photozsom.evaluation import detection


class _Map:
    """The two things choose_thresholds reads from a SOM: its size and training distances."""

    def __init__(self, n_cells: int) -> None:
        self.n_cells = n_cells
        self.distance_quantiles_ = True

    def distance_threshold(self, q: float) -> float:
        return float(-0.7 * np.log1p(-min(q, 0.999999)))   # exponential(0.7) quantile


def _sky(rng, n_cells=400, user_in_thin=True, p_const=None):
    n_train = np.floor(rng.lognormal(2.5, 1.5, n_cells)).astype(int)
    q = (n_train + 1.0) / (n_train + 1.0).sum()                   # labelled occupancy
    f_user = rng.dirichlet(np.full(n_cells, 2.0))
    if user_in_thin:                                             # users where training is thin
        f_user = f_user / np.sqrt(1 + n_train)
    f_user /= f_user.sum()
    p = (np.full(n_cells, p_const) if p_const is not None
         else np.clip(0.02 + 0.2 * rng.beta(0.5, 5, n_cells), 0, 1))
    return n_train, q, f_user, p


def _labelled(rng, n_train, q, f_user, p, n=8000):
    cell = rng.choice(n_train.size, n, p=q)
    bad = rng.random(n) < p[cell]
    d = rng.exponential(0.7, n) + 0.5 * bad
    z = rng.uniform(0.1, 1.0, n)
    zp = z + np.where(bad, 0.5, 0.0) * (1 + z)
    # a user sample drawn from f_user, at the distances of the labelled galaxies
    sc = rng.choice(n_train.size, 20_000, p=f_user)
    return cell, d, z, zp, sc, rng.exponential(0.7, sc.size)


@pytest.mark.parametrize("p_const", [0.04, None], ids=["null", "rates-vary"])
def test_one_standard_error_band_of_J_matches_its_spread_between_samples(p_const):
    rng = np.random.default_rng(21)
    n_train, q, f_user, p = _sky(rng, p_const=p_const)
    som = _Map(n_train.size)
    J, se = [], []
    for _ in range(250):
        cell, d, z, zp, sc, sd = _labelled(rng, n_train, q, f_user, p)
        ch = flags.choose_thresholds(som, n_train, cell, d, z, zp, sample_cell=sc,
                                     sample_distance=sd, min_counts=[10], quantiles=[0.9])
        J.append(ch.table["J"].iloc[0])
        se.append(ch.table["J_se"].iloc[0])
    J, se = np.array(J), np.array(se)
    # the reported error against the spread of J over 250 independent labelled samples
    # (the sample s.d. of 250 draws is itself uncertain by ~4.5%)
    assert 0.8 <= se.mean() / J.std(ddof=1) <= 1.2
    # and the one-standard-error band covers the mean J about 68% of the time
    cover = np.mean(np.abs(J - J.mean()) <= se)
    assert 0.58 <= cover <= 0.78


def _heterogeneous_sky(rng, n_cells=100, per_cell=150):
    """20 cells with a 12% outlier rate among 80 at 5%; the map's counts say nothing."""
    p_true = np.where(np.arange(n_cells) < 20, 0.12, 0.05)
    cell = np.repeat(np.arange(n_cells), per_cell)
    bad = rng.random(cell.size) < p_true[cell]
    z = rng.uniform(0.1, 1.0, cell.size)
    zp = z + np.where(bad, 0.5, 0.01 * rng.standard_normal(cell.size)) * (1 + z)
    d = rng.exponential(0.7, cell.size)
    return p_true, cell, bad, z, zp, d


def test_nested_scores_are_honest_where_in_sample_scores_flatter_the_flag():
    from photozsom.evaluation import cells
    from photozsom.flags import Flagger

    rng = np.random.default_rng(5)
    prec_in, prec_nested, expected_in, expected_nested = [], [], [], []
    for _ in range(6):
        p_true, cell, bad, z, zp, d = _heterogeneous_sky(rng)
        n_cells = p_true.size
        counts = np.full(n_cells, 100)
        som = _Map(n_cells)
        grid = {"min_counts": [0], "quantiles": [1.0]}
        nested = detection.nested_flags(som, counts, cell, d, z, zp, metrics=("eta",),
                                        n_folds=5, seed=1, grid=grid)
        rep = cells.report(cell, z, zp, None, n_cells, counts, n_boot=0)
        fl = Flagger(som, rep, min_count=0, distance_quantile=1.0, metrics=("eta",))
        ins = detection.in_sample_flags(fl, cell, d)
        scores = detection.flag_scores({"in sample": ins, "nested": nested}, bad)
        for f, prec, exp in ((ins, prec_in, expected_in), (nested, prec_nested, expected_nested)):
            u = f["underperforming"].to_numpy(bool)
            assert u.any()
            prec.append(bad[u].mean())
            exp.append(p_true[cell[u]].mean())          # what a new galaxy there would show
        assert scores.loc[("nested", "underperforming"), "precision"] == pytest.approx(prec_nested[-1])
    # in sample the flagged cells were chosen for their observed outliers: the precision
    # measured on the same galaxies exceeds their true outlier rate (winner's curse) ...
    assert np.mean(prec_in) - np.mean(expected_in) > 0.02
    # ... while the nested precision estimates it without that bias
    assert abs(np.mean(prec_nested) - np.mean(expected_nested)) < 0.02
    assert np.mean(prec_in) > np.mean(prec_nested)


def test_nested_flags_never_use_a_galaxys_own_outcome():
    rng = np.random.default_rng(6)
    p_true, cell, bad, z, zp, d = _heterogeneous_sky(rng)
    counts = np.full(p_true.size, 100)
    kw = {"metrics": ("eta",), "n_folds": 4, "seed": 2,
          "grid": {"min_counts": [0, 5], "quantiles": [0.99, 1.0]}}
    a = detection.nested_flags(_Map(p_true.size), counts, cell, d, z, zp, **kw)
    # change the outcome of every galaxy of fold 0: fold 0's flags must not move
    zp2 = zp.copy()
    f0 = a["fold"].to_numpy() == 0
    zp2[f0] = z[f0] + 0.5 * (1 + z[f0]) * (~bad[f0])
    b = detection.nested_flags(_Map(p_true.size), counts, cell, d, z, zp2, **kw)
    assert (a.loc[f0, "flag"].to_numpy() == b.loc[f0, "flag"].to_numpy()).all()
    assert (a.loc[~f0, "underperforming"].to_numpy() != b.loc[~f0, "underperforming"].to_numpy()).any()


def test_leave_one_out_counts_in_scoring_as_in_selection():
    rng = np.random.default_rng(7)
    n_cells = 30
    cell = np.repeat(np.arange(n_cells), 40)
    z = rng.uniform(0.1, 1.0, cell.size)
    bad = rng.random(cell.size) < 0.2
    zp = z + np.where(bad, 0.5, 0.0) * (1 + z)
    counts = np.full(n_cells, 10)
    in_train = np.zeros(cell.size, bool)
    in_train[::4] = True      # each cell: 10 training galaxies among its labelled ones
    out = detection.nested_flags(_Map(n_cells), counts, cell, np.zeros(cell.size), z, zp,
                                 in_train=in_train, metrics=("eta",), n_folds=2,
                                 fallback=(10, 1.0), grid={"min_counts": [10], "quantiles": [1.0]})
    # a training galaxy sees 9 others in its cell: below min_count 10; the rest see 10
    assert (out["n_train_loo"].to_numpy() == counts[cell] - in_train).all()
    assert (out["ood"].to_numpy() == in_train).all()


def test_youden_scores_a_grid_of_flags_like_each_flag_alone_and_the_sandwich_formula():
    from photozsom.evaluation.thresholds import youden

    rng = np.random.default_rng(11)
    n = 3000
    bad = rng.random(n) < 0.1
    w = rng.gamma(2.0, 1.0, n)
    flags = rng.random((3, 4, n)) < np.linspace(0.05, 0.6, 12).reshape(3, 4, 1)
    grid = youden(flags, bad, w)
    assert grid["J"].shape == (3, 4)
    for i in range(3):
        for j in range(4):
            f = flags[i, j]
            one = youden(f, bad, w)
            for k in ("recall", "false_positive_rate", "J", "J_se", "precision", "flagged"):
                assert grid[k][i, j] == pytest.approx(one[k], rel=1e-12, abs=1e-15)
            # the sandwich standard error written per galaxy (u_i), independently
            wb, wg = w * bad, w * ~bad
            r = (wb @ f) / wb.sum()
            fp = (wg @ f) / wg.sum()
            u = wb * (f - r) / wb.sum() - wg * (f - fp) / wg.sum()
            assert one["J_se"] == pytest.approx(np.sqrt((u ** 2).sum() * n / (n - 1)), rel=1e-10)
            assert one["precision"] == pytest.approx((wb @ f) / (w @ f), rel=1e-12)
