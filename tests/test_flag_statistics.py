"""The statistics behind the flag's numbers: the standard error of Youden's J, nested scoring."""

from __future__ import annotations

import numpy as np
import pytest

from photozsom import flags


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
