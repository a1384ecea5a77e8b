"""Prediction tables, the matched subset, Table 1 and the model comparison of the results chapter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from photozsom.evaluation.results import (
    PAPER_TABLE1,
    compare_models,
    deviating_cells,
    matched,
    metrics_table,
    prediction_table,
    table1,
)
from photozsom.pdf import MixturePDF, default_grid


def _pdf(rng: np.random.Generator, n: int) -> MixturePDF:
    """Mixtures peaked near random redshifts (a few components each)."""
    grid = default_grid()
    centre = rng.uniform(0.1, 1.4, n)
    w = np.exp(-0.5 * ((grid.centres[None, :] - centre[:, None]) / 0.03) ** 2)
    return MixturePDF(w / w.sum(axis=1, keepdims=True)), centre


def test_prediction_table_columns_are_the_pdf_summaries():
    rng = np.random.default_rng(1)
    pdf, centre = _pdf(rng, 50)
    z = centre + rng.normal(0, 0.02, 50)
    t = prediction_table(pdf, np.arange(50) + 100, z)
    np.testing.assert_allclose(t["Z_PHOT_MEAN"], pdf.mean())
    np.testing.assert_allclose(prediction_table(pdf, np.arange(50), z, point="median")["Z_PHOT_MEDIAN"], pdf.median())
    lo, hi = pdf.interval(0.99)
    np.testing.assert_allclose(t["Z_PHOT_L99"], lo)
    np.testing.assert_allclose(t["Z_PHOT_U99"], hi)
    # the 90% interval holds 90% of the probability: cdf(hi) - cdf(lo)
    cdf = np.stack([pdf.cdf(t["Z_PHOT_L90"].to_numpy()), pdf.cdf(t["Z_PHOT_U90"].to_numpy())])
    np.testing.assert_allclose(cdf[1] - cdf[0], 0.90, atol=1e-4)
    np.testing.assert_allclose(t["PIT"], pdf.pit(z))
    assert t["OBJID"].tolist() == list(range(100, 150))
    with pytest.raises(ValueError, match="differ in length"):
        prediction_table(pdf, np.arange(49), z)
    with pytest.raises(ValueError, match="point must be"):
        prediction_table(pdf, np.arange(50), z, point="max")


def test_matched_keeps_common_objects_in_one_order():
    a = pd.DataFrame({"OBJID": [5, 3, 9, 1], "Z_PHOT_MEAN": [0.5, 0.3, 0.9, 0.1]})
    b = pd.DataFrame({"OBJID": [1, 9, 7, 5], "Z_PHOT_MEAN": [1.1, 1.9, 1.7, 1.5]})
    m = matched({"a": a, "b": b})
    assert m["a"]["OBJID"].tolist() == m["b"]["OBJID"].tolist() == [1, 5, 9]
    assert m["a"]["Z_PHOT_MEAN"].tolist() == [0.1, 0.5, 0.9]
    assert m["b"]["Z_PHOT_MEAN"].tolist() == [1.1, 1.5, 1.9]


def test_table1_metrics_against_hand_computation():
    rng = np.random.default_rng(2)
    n = 400
    z = rng.uniform(0.05, 1.2, n)
    zp = z + (1 + z) * rng.normal(0.01, 0.03, n)
    zp[:12] = z[:12] + 0.5                                  # catastrophic outliers
    pit = rng.uniform(0, 1, n)
    pit[:6] = 0.999                                         # PCO galaxies
    t = pd.DataFrame({"OBJID": np.arange(n), "Z": z, "Z_PHOT_MEAN": zp, "PIT": pit, "CRPS": np.full(n, 0.02)})
    other = t.iloc[::2].copy()                              # a model that predicted half the galaxies
    t1 = table1({"m": t, "other": other})
    sub = t.iloc[::2]
    dz = (sub["Z_PHOT_MEAN"] - sub["Z"]) / (1 + sub["Z"])
    assert t1.loc["m", "N"] == n // 2
    assert t1.loc["m", "MAD"] == pytest.approx(1.4826 * np.median(np.abs(dz)))
    assert t1.loc["m", "bias"] == pytest.approx(dz.mean())
    assert t1.loc["m", "eta_%"] == pytest.approx(100 * np.mean(np.abs(dz) > 0.15))
    assert t1.loc["m", "PCO_%"] == pytest.approx(100 * np.mean((sub["PIT"] < 0.005) | (sub["PIT"] > 0.995)))
    r2 = 1 - np.sum((sub["Z_PHOT_MEAN"] - sub["Z"]) ** 2) / np.sum((sub["Z"] - sub["Z"].mean()) ** 2)
    assert t1.loc["m", "R2"] == pytest.approx(r2)
    assert list(t1.index[-2:]) == list(PAPER_TABLE1.index)


def _exact(t: pd.DataFrame, n_boot: int = 30) -> dict[str, pd.DataFrame]:
    """Replicates without spread (every resample gives the table's value): SE = 0."""
    cols = ["MAD", "bias", "eta_%", "PCO_%", "R2", "CRPS"]
    return {k: pd.DataFrame(np.repeat(t.reindex(columns=cols).loc[[k]].to_numpy(float), n_boot, axis=0),
                            columns=cols) for k in t.index}


def test_compare_models_reads_the_papers_own_table():
    verdict = compare_models(PAPER_TABLE1, tuple(PAPER_TABLE1.index), replicates=_exact(PAPER_TABLE1))
    # the paper: the forest has the smaller MAD, the AION MDN wins bias, eta, PCO and R^2
    assert verdict.loc["MAD", "winner_here"] == "catalogue model"
    for col in ("bias", "eta_%", "PCO_%", "R2"):
        assert verdict.loc[col, "winner_here"] == "image model", col
    assert verdict["agrees"].all()
    # swapping our two rows flips every winner, so nothing agrees with the paper any more
    swapped = compare_models(PAPER_TABLE1, tuple(PAPER_TABLE1.index[::-1]), paper=tuple(PAPER_TABLE1.index),
                             replicates=_exact(PAPER_TABLE1))
    assert not swapped["agrees"].any()


def test_compare_models_pco_is_judged_by_distance_from_one_percent():
    t = pd.concat([PAPER_TABLE1, pd.DataFrame({"MAD": [0.03, 0.03], "bias": [0.0, 0.0], "eta_%": [1.0, 1.0],
                                               "PCO_%": [0.2, 1.5], "R2": [0.9, 0.9]}, index=["img", "cat"])])
    v = compare_models(t, ("img", "cat"), replicates=_exact(t))
    assert v.loc["PCO_%", "winner_here"] == "catalogue model"        # |1.5 - 1| < |0.2 - 1|
    assert v.loc["PCO_%", "difference"] == pytest.approx(0.8 - 0.5)
    assert v.loc["MAD", "winner_here"] == "tie"                      # equal, and no spread


def test_deviating_cells_ranks_by_the_flags_definition_of_worse():
    from photozsom.evaluation.cells import CellReport

    table = pd.DataFrame({
        "status": ["ok", "ok", "ok", "empty", "ok"],
        "bias": [0.05, -0.2, 0.01, np.nan, 0.3],
        "bias_worse": [True, True, False, False, False],
        "count": [10, 5, 40, 0, 3], "n_train": [100, 2, 500, 0, 1], "z_mean": [0.5, 0.6, 0.7, np.nan, 0.9],
    })
    report = CellReport(table, {"bias": 0.02})
    d = deviating_cells(report, "bias", n=3)
    # significantly worse first, by |bias| - |global| (cell 1: 0.18 although b - g = -0.22)
    assert d.index.tolist() == [1, 0, 4]
    np.testing.assert_allclose(d["deviation"], [0.18, 0.03, 0.28])
    assert d["significant"].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="metric must be"):
        deviating_cells(report, "rmse")


def test_sky_settings_table_puts_bands_in_columns_and_marks_the_missing_i_band():
    from photozsom.data.summary import sky_settings_table

    settings = {"request": {"seed": 0}, "n_spec": 10, "cutout_size": 32, "z_spec_range": [0.0, 1.6],
                "depth_psf_5sigma_ab": {"S": {"G": 24.7, "I": 23.8}, "N": {"G": 24.2}},
                "seeing_fwhm_arcsec": {"S": {"G": 1.45, "I": 1.2}, "N": {"G": 1.7}}}
    sizes, per_band = sky_settings_table(settings)
    assert sizes.loc["n_spec", "value"] == 10 and sizes.loc["z_spec_range", "value"] == "0.0 - 1.6"
    assert "request" not in sizes.index
    assert per_band.loc[("5σ point-source depth [AB mag]", "S"), "I"] == 23.8
    assert np.isnan(per_band.loc[("5σ point-source depth [AB mag]", "N"), "I"])
    assert per_band.loc[("seeing FWHM [arcsec]", "N"), "G"] == 1.7


def test_metrics_table_evaluates_each_subset_as_given():
    rng = np.random.default_rng(5)
    n = 60
    z = rng.uniform(0.1, 1.0, n)
    t = pd.DataFrame({"OBJID": np.arange(n), "Z": z, "Z_PHOT_MEAN": z + rng.normal(0, 0.05, n),
                      "PIT": rng.uniform(0, 1, n), "CRPS": rng.uniform(0.01, 0.05, n)})
    flag = np.arange(n) % 3 == 0
    out = metrics_table({"all": t, "flagged": t[flag], "one": t.iloc[:1]})
    assert out.loc["flagged", "N"] == flag.sum()               # no matching across tables
    dz = ((t["Z_PHOT_MEAN"] - t["Z"]) / (1 + t["Z"]))[flag]
    assert out.loc["flagged", "MAD"] == pytest.approx(1.4826 * np.median(np.abs(dz)))
    assert out.loc["flagged", "CRPS"] == pytest.approx(t["CRPS"][flag].mean())
    assert out.loc["one", "N"] == 1 and np.isnan(out.loc["one", "MAD"])
    # table1 of one model is metrics_table of it, plus the paper's rows
    t1 = table1({"m": t})
    pd.testing.assert_series_equal(t1.loc["m", ["MAD", "bias", "R2"]].astype(float),
                                   metrics_table({"m": t}).loc["m", ["MAD", "bias", "R2"]].astype(float))
