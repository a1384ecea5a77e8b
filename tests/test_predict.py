"""``photozsom predict``: every row kept in order, the DR10 photo-z columns, flags, qp output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _catalogues import make_catalogue
from astropy.table import Table

from photozsom import cells, flags
from photozsom.cli import main as cli
from photozsom.features import SOM_FEATURES, som_features
from photozsom.model import PhotoZModel
from photozsom.predict import PHOTOZ_COLUMNS, predict_table
from photozsom.som import SOM


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict")
    train, val, test = make_catalogue(1200, 11), make_catalogue(300, 12), make_catalogue(400, 13)
    model = PhotoZModel("catalog", seed=0, max_epochs=5).fit(train, train["Z"], val, val["Z"],
                                                             progress=False)
    X, ok = som_features(train)
    som = SOM((5, 5), n_features=6, feature_names=SOM_FEATURES, seed=0).fit(X[ok], progress=False)
    pdf = model.predict(test)
    Xt, okt = som_features(test)
    c = som.predict(Xt[okt])
    rep = cells.report(c, test["Z"].to_numpy()[okt], pdf.mean()[okt],
                       pdf.pit(test["Z"].to_numpy())[okt], som.n_cells,
                       np.bincount(som.predict(X[ok]), minlength=som.n_cells), n_boot=50)
    flagger = flags.Flagger(som, rep, min_count=5)
    return {"model": model, "model_dir": model.save(d / "model"), "flagger": flagger,
            "flagger_dir": flagger.save(d / "flagger"), "dir": d}


def _user(seed=21):
    cat = make_catalogue(97, seed, north_fraction=0.2)
    cat.loc[3, "FLUX_IVAR_W1"] = 0.0  # imputed
    cat.loc[5, "FLUX_G"] = -0.2  # negative flux: data
    cat.loc[8, "Z"] = np.nan  # no spectroscopic redshift for this one
    return cat


def test_predict_table_summaries_equal_the_pdf(saved):
    cat = _user()
    out = predict_table(cat, saved["model"], saved["flagger"])
    pdf = saved["model"].predict(cat)
    np.testing.assert_allclose(out["Z_PHOT_MEAN"], pdf.mean())
    lo, hi = pdf.interval(0.95)
    np.testing.assert_allclose(out["Z_PHOT_L95"], lo)
    np.testing.assert_allclose(out["Z_PHOT_U95"], hi)
    # the 68% interval holds 68% of each P(z): an independent check through the CDF
    np.testing.assert_allclose(pdf.cdf(out["Z_PHOT_U68"].to_numpy())
                               - pdf.cdf(out["Z_PHOT_L68"].to_numpy()), 0.68, atol=1e-6)
    z = cat["Z"].to_numpy()
    has = np.isfinite(z)
    np.testing.assert_allclose(out["PIT"][has], pdf[has].pit(z[has]))
    assert np.isnan(out["PIT"].iloc[8]) and np.isnan(out["CRPS"].iloc[8])
    assert out["PZ_STATUS"].iloc[3] == "imputed" and "z-W1, W1-W2" in out["PZ_REASON"].iloc[3]
    fl = saved["flagger"].flag(cat)
    np.testing.assert_array_equal(out["PZ_FLAG"], fl["flag"])
    np.testing.assert_array_equal(out["PZ_SOM_CELL"], fl["cell"])


@pytest.mark.parametrize("fmt_in,fmt_out", [("parquet", "parquet"), ("fits", "csv"),
                                            ("csv", "fits")])
def test_cli_keeps_every_row_in_order(tmp_path, saved, fmt_in, fmt_out):
    cat = _user()
    cat["OBJID"] = np.random.default_rng(0).permutation(len(cat)) + 5000
    inp = tmp_path / f"in.{fmt_in}"
    if fmt_in == "parquet":
        cat.to_parquet(inp)
    elif fmt_in == "csv":
        cat.to_csv(inp, index=False)
    else:
        Table.from_pandas(cat).write(inp)
    out = tmp_path / f"out.{fmt_out}"
    rc = cli(["predict", str(inp), "-o", str(out), "--model", str(saved["model_dir"]),
              "--flagger", str(saved["flagger_dir"]), "--chunk-size", "13"])
    assert rc == 0
    res = (pd.read_parquet(out) if fmt_out == "parquet" else
           pd.read_csv(out, keep_default_na=False, na_values=[""]) if fmt_out == "csv" else
           Table.read(out).to_pandas())
    assert len(res) == len(cat)
    np.testing.assert_array_equal(res["OBJID"], cat["OBJID"])
    expect = predict_table(cat, saved["model"], saved["flagger"])
    for c in PHOTOZ_COLUMNS:
        np.testing.assert_allclose(res[c], expect[c], rtol=1e-6)
    np.testing.assert_array_equal(res["PZ_FLAG"].astype(bool), expect["PZ_FLAG"])


def test_cli_writes_a_qp_file(tmp_path, saved):
    import qp  # the test command installs the qp extra: a missing qp is a failure
    cat = _user()
    inp, out, pdf_path = tmp_path / "in.parquet", tmp_path / "out.parquet", tmp_path / "pz.hdf5"
    cat.to_parquet(inp)
    assert cli(["predict", str(inp), "-o", str(out), "--model", str(saved["model_dir"]),
                "--pdf", str(pdf_path), "--chunk-size", "40"]) == 0
    ens = qp.read(str(pdf_path))
    assert ens.npdf == len(cat)
    np.testing.assert_array_equal(ens.ancil["OBJID"], cat["OBJID"])
    pdf = saved["model"].predict(cat)
    # qp's (untruncated) mixture has the model's median away from the support's edges
    med = pdf.median()
    inner = (med > 0.1) & (med < 1.4)
    cdf = np.array([float(np.ravel(ens[i].cdf(med[i]))[0]) for i in np.flatnonzero(inner)[:20]])
    np.testing.assert_allclose(cdf, 0.5, atol=5e-3)


def test_cli_errors_are_one_clear_line(tmp_path, saved, capsys):
    cat = _user()
    inp = tmp_path / "in.parquet"
    cat.to_parquet(inp)
    out = tmp_path / "out.parquet"
    out.write_text("precious")
    assert cli(["predict", str(inp), "-o", str(out), "--model", str(saved["model_dir"])]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "precious"
    bad = tmp_path / "nocol.parquet"
    cat.drop(columns=["FLUX_Z"]).to_parquet(bad)
    assert cli(["predict", str(bad), "-o", str(tmp_path / "o.parquet"), "--model",
                str(saved["model_dir"])]) == 2
    err = capsys.readouterr().err
    assert "FLUX_Z" in err and not (tmp_path / "o.parquet").exists()
    assert cli(["predict", str(inp), "-o", str(tmp_path / "o2.parquet"), "--model",
                str(tmp_path)]) == 2
    assert "no photozsom photoz_model" in capsys.readouterr().err
    assert cli(["predict", str(tmp_path / "missing.fits"), "-o", str(tmp_path / "o3.csv"),
                "--model", str(saved["model_dir"])]) == 2
    assert "does not exist" in capsys.readouterr().err
