"""``photozsom predict``: every row kept in order, the DR10 photo-z columns, flags, streamed P(z)
files, and one-line errors checked before the model is loaded."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from _catalogues import make_catalogue
from astropy.table import Table

from photozsom import flags
from photozsom import predict as predict_module
from photozsom.cli import main as cli
from photozsom.evaluation import cells
from photozsom.features import SOM_FEATURES, som_features
from photozsom.io import read_pdf
from photozsom.model import PhotoZModel
from photozsom.pdf import MixturePDF
from photozsom.predict import PHOTOZ_COLUMNS, model_columns, predict_table
from photozsom.som import SOM


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict")
    train, val, test = make_catalogue(1200, 11), make_catalogue(300, 12), make_catalogue(400, 13)
    model = PhotoZModel("catalog", seed=0, max_epochs=5).fit(train, train["Z"], val, val["Z"],
                                                             progress=False)
    X, ok = som_features(train)
    som = SOM((5, 5), n_features=6, feature_names=SOM_FEATURES, seed=0).fit(X[ok], progress=False)
    pdf, okp, _ = model.predict_with_status(test)
    zt = test["Z"].to_numpy()[okp]
    Xt, okt = som_features(test[okp])
    c = som.predict(Xt[okt])
    rep = cells.report(c, zt[okt], pdf.mean()[okt], pdf.pit(zt)[okt], som.n_cells,
                       np.bincount(som.predict(X[ok]), minlength=som.n_cells), n_boot=50)
    flagger = flags.Flagger(som, rep, min_count=5)
    return {"model": model, "model_dir": model.save(d / "model"), "flagger": flagger,
            "flagger_dir": flagger.save(d / "flagger"), "dir": d}


def _user(seed=21, n=97):
    cat = make_catalogue(n, seed)
    cat.loc[3, "FLUX_IVAR_W1"] = 0.0  # a band without a measurement: not scored
    cat.loc[5, "FLUX_G"] = -0.2  # negative flux: data
    cat.loc[8, "Z"] = np.nan  # no spectroscopic redshift for this one
    cat.loc[9, "Z"] = -1.0  # a sentinel outside the P(z) support
    cat["OBJID"] = np.arange(len(cat), dtype=np.int64) + 7000
    return cat


def _model_args(saved):
    return ["--model", str(saved["model_dir"])]


def test_predict_table_summaries_equal_the_pdf(saved):
    cat = _user()
    out = predict_table(cat, saved["model"], saved["flagger"])
    pdf, ok, _ = saved["model"].predict_with_status(cat)
    assert not ok[3] and out["PZ_STATUS"].iloc[3] == "not scored"
    assert np.isnan(out["Z_PHOT_MEAN"].iloc[3]) and out["PZ_REASON"].iloc[3] != ""
    np.testing.assert_allclose(out["Z_PHOT_MEAN"][ok], pdf.mean())
    np.testing.assert_allclose(out["Z_PHOT_STD"][ok], pdf.std())
    np.testing.assert_allclose(out["Z_PHOT_MODE"][ok], pdf.mode())
    # the fast quantiles agree with the exact ppf to 1e-5 in redshift (the bound)
    np.testing.assert_allclose(out["Z_PHOT_MEDIAN"][ok], pdf.median(), atol=1e-5, rtol=0)
    for level, lo_c, hi_c in ((0.68, "Z_PHOT_L68", "Z_PHOT_U68"), (0.95, "Z_PHOT_L95", "Z_PHOT_U95")):
        lo, hi = pdf.interval(level)
        np.testing.assert_allclose(out[lo_c][ok], lo, atol=1e-5, rtol=0)
        np.testing.assert_allclose(out[hi_c][ok], hi, atol=1e-5, rtol=0)
    # the 68% interval holds 68% of each P(z): an independent check through the CDF
    np.testing.assert_allclose(pdf.cdf(out["Z_PHOT_U68"][ok].to_numpy())
                               - pdf.cdf(out["Z_PHOT_L68"][ok].to_numpy()), 0.68, atol=1e-4)
    z = cat["Z"].to_numpy()
    has = np.isfinite(z) & ok & (z >= 0)
    np.testing.assert_allclose(out["PIT"][has], pdf[has[ok]].pit(z[has]))
    assert np.isnan(out["PIT"].iloc[8]) and np.isnan(out["CRPS"].iloc[8])
    assert np.isnan(out["PIT"].iloc[9]) and np.isnan(out["CRPS"].iloc[9])
    fl = saved["flagger"].flag(cat)
    np.testing.assert_array_equal(out["PZ_FLAG"], fl["flag"])
    np.testing.assert_array_equal(out["PZ_SOM_CELL"], fl["cell"])


def test_status_and_reason_columns_follow_predict_with_status(saved):
    import copy

    model = copy.deepcopy(saved["model"])
    cat = _user()
    # a support so tight that some scored rows lie outside the training data
    X, ok, _ = model.transform(cat)
    model.support_.threshold_ = float(np.median(model.support_.distance(X[ok])))
    _, ok, reason = model.predict_with_status(cat)
    out = predict_table(cat, model)
    want = ["not scored" if not o else ("outside" if r else "ok")
            for o, r in zip(ok, reason, strict=True)]
    assert out["PZ_STATUS"].tolist() == want
    assert {"ok", "outside", "not scored"} <= set(want)
    assert out["PZ_REASON"].tolist() == [str(r) for r in reason]
    assert str(out["PZ_STATUS"].dtype) == "str" and str(out["PZ_REASON"].dtype) == "str"


def test_predict_table_does_not_depend_on_the_model_batch(saved):
    cat = _user()
    a = predict_table(cat, saved["model"], saved["flagger"])
    b = predict_table(cat, saved["model"], saved["flagger"], batch_rows=10)
    pd.testing.assert_frame_equal(a, b)
    # the returned P(z), joined from the batches, are the table's: for the recalibrated model
    # their median and 95% interval are G(F)'s (the table's columns, from the fast quantiles:
    # within 1e-5), not the projection's
    c, pdf, ok = predict_table(cat, saved["model"], return_pdf=True, batch_rows=10)
    assert saved["model"].recalibrator_ is not None
    lo, hi = pdf.interval(0.95)
    for col, v in (("Z_PHOT_MEDIAN", pdf.median()), ("Z_PHOT_L95", lo), ("Z_PHOT_U95", hi)):
        np.testing.assert_allclose(v, c[col].to_numpy()[ok], atol=1e-5, rtol=0)


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
    rc = cli(["predict", str(inp), "-o", str(out), *_model_args(saved),
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


@pytest.mark.parametrize("suffix", [".h5", ".hdf5"])
def test_cli_streams_a_pdf_file_that_qp_and_photozsom_read(tmp_path, saved, suffix):
    import qp  # the test command installs the qp extra: a missing qp is a failure

    cat = _user(n=300)
    inp, out, pdf_path = tmp_path / "in.parquet", tmp_path / "out.parquet", tmp_path / f"pz{suffix}"
    cat.to_parquet(inp)
    assert cli(["predict", str(inp), "-o", str(out), *_model_args(saved), "--pdf", str(pdf_path),
                "--chunk-size", "40"]) == 0
    pdf, ok, _ = saved["model"].predict_with_status(cat)
    # the file holds the mixture weights: the projection of a recalibrated P(z) on the grid
    pdf = MixturePDF(np.asarray(pdf.weights))
    # qp (tables_io) takes a .h5 name for a pandas table: fmt="hdf5" says what it is
    ens = qp.read(str(pdf_path), fmt="hdf5") if suffix == ".h5" else qp.read(str(pdf_path))
    assert ens.npdf == ok.sum()
    part = qp.read(str(pdf_path), fmt="hdf5", read_slice=slice(10, 20))  # a piece at a time
    np.testing.assert_allclose(part.objdata["weights"], ens.objdata["weights"][10:20])
    np.testing.assert_array_equal(ens.ancil["OBJID"], cat["OBJID"][ok])
    np.testing.assert_array_equal(ens.ancil["row"], np.flatnonzero(ok))
    back = read_pdf(pdf_path)
    np.testing.assert_array_equal(back.ids, cat["OBJID"][ok])
    # stated accuracy: every CDF value within the weight left out of that galaxy
    dropped = ens.ancil["PZ_PDF_DROPPED"].astype(float)
    zg = np.linspace(0.0, 1.6, 161)
    err = np.abs(back.cdf(np.broadcast_to(zg, (len(back), zg.size)))
                 - pdf.cdf(np.broadcast_to(zg, (len(pdf), zg.size)))).max(axis=1)
    assert np.all(err <= dropped + 1e-6)
    # qp's (untruncated) mixture has the model's median away from the support's edges
    med = pdf.median()
    inner = np.flatnonzero((med > 0.1) & (med < 1.4))[:20]
    cdf = np.array([float(np.ravel(ens[i].cdf(med[i]))[0]) for i in inner])
    np.testing.assert_allclose(cdf, 0.5, atol=5e-3 + dropped[inner].max())


def test_pdf_file_stays_under_a_kilobyte_a_row(tmp_path, saved):
    cat = _user(n=4000)
    inp, pdf_path = tmp_path / "in.parquet", tmp_path / "pz.h5"
    cat.to_parquet(inp)
    assert cli(["predict", str(inp), "-o", str(tmp_path / "o.parquet"), *_model_args(saved),
                "--pdf", str(pdf_path), "--chunk-size", "1000"]) == 0
    assert pdf_path.stat().st_size / len(cat) < 1000


def test_predict_uses_the_flagger_inside_the_model_directory(tmp_path, saved):
    model_dir = tmp_path / "trained"
    shutil.copytree(saved["model_dir"], model_dir)
    shutil.copytree(saved["flagger_dir"], model_dir / "flagger")
    cat = _user()
    inp, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    cat.to_parquet(inp)
    assert cli(["predict", str(inp), "-o", str(out), "--model", str(model_dir)]) == 0
    res = pd.read_parquet(out)
    np.testing.assert_array_equal(res["PZ_FLAG"], saved["flagger"].flag(cat)["flag"])
    assert cli(["predict", str(inp), "-o", str(out), "--model", str(model_dir), "--no-flagger",
                "--overwrite"]) == 0
    assert "PZ_FLAG" not in pd.read_parquet(out).columns


def test_flag_takes_flagger_and_the_old_model_option(tmp_path, saved, capsys):
    cat = _user()
    inp = tmp_path / "in.parquet"
    cat.to_parquet(inp)
    expect = saved["flagger"].flag(cat)["flag"].to_numpy()
    assert cli(["flag", str(inp), "-o", str(tmp_path / "a.parquet"), "--flagger",
                str(saved["flagger_dir"])]) == 0
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "a.parquet")["PZ_FLAG"], expect)
    assert cli(["flag", str(inp), "-o", str(tmp_path / "b.parquet"), "--model",
                str(saved["flagger_dir"])]) == 0
    assert "deprecated" in capsys.readouterr().err
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "b.parquet")["PZ_FLAG"], expect)
    assert cli(["flag", str(inp), "-o", str(tmp_path / "c.parquet")]) == 2
    assert "--flagger" in capsys.readouterr().err


def test_columns_lists_what_the_model_needs(saved, capsys):
    assert cli(["predict", *_model_args(saved), "--columns"]) == 0
    cols = capsys.readouterr().out.split()
    assert cols == model_columns(saved["model_dir"])
    bands = {"G", "R", "I", "Z", "W1", "W2"}
    assert {c for c in cols if c.startswith("FLUX_")} == {f"FLUX_{b}" for b in bands}
    assert {c for c in cols if c.startswith("MW_")} == {f"MW_TRANSMISSION_{b}" for b in bands}


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_user_mistakes_are_one_line_before_the_model_loads(tmp_path, saved, capsys, monkeypatch):
    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the job was checked")

    monkeypatch.setattr(predict_module, "load_model", no_load)
    cat = _user()
    inp = tmp_path / "in.parquet"
    cat.to_parquet(inp)
    m = _model_args(saved)
    cases = [
        (["predict", str(tmp_path), "-o", str(tmp_path / "o.parquet"), *m], ["is a directory"]),
        (["predict", str(tmp_path / "missing.fits"), "-o", str(tmp_path / "o.csv"), *m],
         ["does not exist"]),
        (["predict", str(inp), "-o", str(tmp_path / "nodir" / "sub" / "out.parquet"), *m],
         ["does not exist", "mkdir"]),
        (["predict", str(inp), "-o", str(tmp_path / "out.txt"), *m],
         ["not an output catalogue format", ".parquet"]),
        (["predict", str(inp), "-o", str(tmp_path / "out.h5"), *m], ["--pdf"]),
        (["predict", str(inp), "-o", str(tmp_path / "o.parquet"), "--pdf",
          str(tmp_path / "pz.fits"), *m], [".h5"]),
        (["predict", str(inp), "-o", str(tmp_path / "o.parquet"), "--pdf",
          str(tmp_path / "no" / "pz.h5"), *m], ["does not exist"]),
        (["predict", str(inp), "-o", str(inp), "--overwrite", *m], ["input catalogue"]),
        (["predict", str(tmp_path / "in.xlsx"), "-o", str(tmp_path / "o.parquet"), *m],
         ["does not exist"]),
        (["predict", str(inp), "-o", str(tmp_path / "o.parquet"), "--model", str(tmp_path)],
         ["no photozsom photoz_model"]),
        (["predict", str(inp), *m], ["-o OUTPUT"]),
    ]
    for argv, needles in cases:
        assert cli(argv) == 2, argv
        _one_line_error(capsys, *needles)
    (tmp_path / "in.xlsx").write_text("x")
    assert cli(["predict", str(tmp_path / "in.xlsx"), "-o", str(tmp_path / "o.parquet"), *m]) == 2
    line = _one_line_error(capsys, ".parquet")
    assert "format=" not in line
    out = tmp_path / "exists.parquet"
    out.write_text("precious")
    assert cli(["predict", str(inp), "-o", str(out), *m]) == 2
    _one_line_error(capsys, "--overwrite")
    assert out.read_text() == "precious"
    bad = tmp_path / "nocol.parquet"
    cat.drop(columns=["FLUX_Z"]).to_parquet(bad)
    assert cli(["predict", str(bad), "-o", str(tmp_path / "o.parquet"), *m]) == 2
    _one_line_error(capsys, "FLUX_Z")
    assert not list(tmp_path.glob("o.parquet")) and not list(tmp_path.glob(".partial-*"))


def test_a_corrupt_model_names_the_broken_file(tmp_path, saved, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(saved["model_dir"], model_dir)
    arrays = next(p for p in sorted(model_dir.rglob("arrays.npz")) if p.parent != model_dir)
    arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])
    inp = tmp_path / "in.parquet"
    _user().to_parquet(inp)
    assert cli(["predict", str(inp), "-o", str(tmp_path / "o.parquet"), "--model",
                str(model_dir)]) == 2
    _one_line_error(capsys, str(arrays), "corrupt")


def test_aion_fingerprint_without_the_extra_is_one_line(capsys, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "aion" or m.startswith("aion.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "aion", None)  # what a missing package looks like
    assert cli(["aion-fingerprint", "--model", "nowhere", "--no-hash"]) == 2
    _one_line_error(capsys, "photozsom[aion]")


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, saved, capsys):
    inp = tmp_path / "in.parquet"
    _user(n=300).to_parquet(inp)
    assert cli(["predict", str(inp), "-o", str(tmp_path / "o.parquet"), *_model_args(saved),
                "--chunk-size", "50", "--progress-every", "0"]) == 0
    err = capsys.readouterr().err
    progress = [ln for ln in err.splitlines() if " / 300 rows (" in ln]
    assert len(progress) >= 5 and "rows/s" in progress[0]


def test_help_explains_every_option(capsys):
    from photozsom.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        if name not in ("predict", "flag", "simulate", "aion-fingerprint"):
            continue
        for action in p._actions:
            if action.dest in ("help", "flagger_alias"):
                continue
            assert action.help, f"photozsom {name} {action.option_strings or action.dest}"
    assert "MW_TRANSMISSION_<b>" in sub.choices["predict"].format_help()
