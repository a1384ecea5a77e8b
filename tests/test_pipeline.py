"""The pipeline stages on a tiny simulated sky, without papermill: outputs, provenance, stale runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from photozsom.calibrate import Recalibrator, pco_noise
from photozsom.flags import SOMFlagger, load_flagger
from photozsom.workflow import pipeline
from photozsom.workflow.book import with_dependents
from photozsom.workflow.run import Run, declared


def test_every_declared_output_exists(tiny_run):
    run = tiny_run
    for name in ("data", "som", "mdn", "cells", "flags"):
        for rel in pipeline.STAGES[name].outputs:
            assert (run.root / rel).exists(), rel
    assert pipeline.check(run) == {}


def test_every_file_a_run_holds_is_declared_and_undeclared_paths_are_refused(tiny_run, tmp_path):
    files = [p.relative_to(tiny_run.root).as_posix() for p in tiny_run.root.rglob("*")
             if p.is_file()]
    assert len(files) > 20
    assert [f for f in files if not declared(f)] == []
    assert declared("mdn/provenance.json") and not declared("mdn/S/provenance.json")
    run = Run(tmp_path / "r")
    for bad in ("mdn/notes.csv", "cells/trend2.csv", "elsewhere/x.parquet", "som/S2"):
        with pytest.raises(ValueError, match="not declared"):
            run.write(bad)
        with pytest.raises(ValueError, match="not declared"):
            run.read(bad)
    assert not (tmp_path / "r").exists()           # a refused write creates nothing
    # inside a declared directory, a chapter's table, a figure: allowed
    assert run.write("som/S/weights.npy", make=False).name == "weights.npy"
    assert run.write("cells/trend.csv", make=False).name == "trend.csv"
    assert run.write("figures/x.png", make=False).name == "x.png"
    with pytest.raises(FileNotFoundError, match="run the 'density' chapter"):
        run.read("cells/S")
    with pytest.raises(FileNotFoundError, match="run the 'adapt' chapter"):
        run.read("user_sample/spec.parquet")


def test_split_is_disjoint_and_matches_the_fractions(tiny_run):
    run = tiny_run
    split = run.split()
    spec = run.spec()
    assert split.index.is_unique and set(split.index) == set(spec["OBJID"])
    frac = split.value_counts(normalize=True)
    assert frac["train"] == pytest.approx(0.8, abs=0.06)
    assert frac["test"] == pytest.approx(0.1, abs=0.05)


def test_north_and_south_galaxies_get_cells_on_their_own_maps(tiny_run):
    run = tiny_run
    sc = pd.read_parquet(run.root / "som" / "spec_cells.parquet")
    spec = run.spec().set_index("OBJID").loc[sc["OBJID"]]
    np.testing.assert_array_equal(sc["SOM"].to_numpy(), spec["PHOTSYS"].str.strip().to_numpy())
    assert (sc.loc[sc["SOM"] == "N", "CELL"] >= 0).mean() > 0.9  # the north is no longer cell -1
    flagger = load_flagger(run.root / "flags" / "flagger")
    assert isinstance(flagger, SOMFlagger) and set(flagger.flaggers) == {"S", "N"}
    rf = pd.read_parquet(run.root / "flags" / "random_flags.parquet")
    random = run.random()
    assert len(rf) == len(random)
    np.testing.assert_array_equal(rf["OBJID"], random["OBJID"])
    north = (random["PHOTSYS"] == "N").to_numpy()
    assert (rf.loc[north, "som"] == "N").all() and (rf.loc[north, "cell"] >= 0).mean() > 0.9


def test_training_counts_are_the_training_split_per_cell(tiny_run):
    run = tiny_run
    rep = pipeline.load_reports(run)["S"]
    sc = pd.read_parquet(run.root / "som" / "spec_cells.parquet").set_index("OBJID")
    split = run.split()
    train = sc.loc[split.index[split == "train"]]
    train = train[(train["SOM"] == "S") & (train["CELL"] >= 0)]
    np.testing.assert_array_equal(rep.table["n_train"],
                                  np.bincount(train["CELL"], minlength=rep.n_cells))


def test_rerunning_a_stage_makes_its_dependents_stale(copy_run):
    run = copy_run
    before = run.provenance("som")["fingerprint"]
    pipeline.run_som(run, scale="tiny", seed=1, progress=False)
    assert run.provenance("som")["fingerprint"] != before
    stale = pipeline.check(run)
    assert set(stale) == {"cells", "flags"}  # calibrate has not run here (embed does not read som)
    assert "seed=1" in stale["cells"]
    with pytest.raises(pipeline.StaleRunError, match="--only density"):
        pipeline.require_consistent(run)
    pipeline.run_cells(run, scale="tiny")
    pipeline.run_flags(run, scale="tiny")
    assert pipeline.check(run) == {}


def test_dependents_and_layout_come_from_the_declarations():
    assert pipeline.downstream(["som"]) == ["som", "cells", "flags", "calibrate"]
    assert "baseline" in pipeline.downstream(["mdn"])  # Table 1 reads the MDN's predictions
    assert pipeline.downstream(["data"]) == list(pipeline.STAGES)
    chapters = ["intro", "data", "som", "embeddings", "mdn", "results", "density", "flagging",
                "calibration", "appendix", "adapt"]
    assert with_dependents(["som"], chapters) == ["som", "density", "flagging", "calibration",
                                                  "appendix", "adapt"]
    text = pipeline.layout()
    for s in pipeline.STAGES.values():
        assert all(o in text for o in s.outputs)
    with pytest.raises(ValueError, match="unknown scale"):
        pipeline.preset("huge")
    assert pipeline.preset("ci", som_shape=(3, 3))["som_shape"] == (3, 3)


def test_a_catalogue_with_photometry_enters_directly(tmp_path):
    from _catalogues import make_catalogue

    cat = make_catalogue(400, 5, north_fraction=0.3)
    path = tmp_path / "mine.fits"
    from astropy.table import Table

    Table.from_pandas(cat).write(path)
    run = pipeline.Run(tmp_path / "run")
    info = pipeline.run_data(run, spec_catalog=path)
    assert info["n_spec"] == 400 and info.get("random_is_spec")
    pd.testing.assert_series_equal(run.spec()["Z"], cat["Z"], check_names=False)
    with pytest.raises(ValueError, match="PHOTSYS"):
        pipeline.run_data(pipeline.Run(tmp_path / "r2"),
                          spec_catalog=_write(cat.drop(columns=["PHOTSYS"]), tmp_path / "b.parquet"))


def _write(df, path):
    df.to_parquet(path)
    return path


def test_calibration_stage_maps_the_test_pit(copy_run):
    run = copy_run
    res = pipeline.run_calibrate(run, scale="tiny")
    assert list(res["summary"].index) == ["before", "after (global)", "after (cell)",
                                          "after (global), projected", "before, out of fold",
                                          "after (global), cross-fitted",
                                          "after (cell), cross-fitted"]
    # the cross-fitted rows score every labelled galaxy, each by a map that did not see it
    oof = pd.read_parquet(run.read("mdn/oof_predictions.parquet"))
    z_oof, fold = oof["Z"].to_numpy(), oof["FOLD"].to_numpy()
    row = res["summary"].loc["after (global), cross-fitted"]
    assert row["n_scored"] == len(z_oof) and row["n_fit"] == len(z_oof) - np.bincount(fold).max()
    pit = np.empty(len(z_oof))
    for k in np.unique(fold):
        held = fold == k
        m = Recalibrator("global").fit(res["oof_raw"][~held], z_oof[~held])
        pit[held] = m.transform(res["oof_raw"][held].pit(z_oof[held]))
    assert row["PCO_%"] == pytest.approx(100 * np.mean((pit < 0.005) | (pit > 0.995)))
    assert row["PCO_sd_%"] == pytest.approx(pco_noise(row["n_fit"], row["n_scored"]))
    assert np.isnan(res["summary"].loc["before", "PCO_sd_%"])
    z = res["z_test"]
    u = res["test_pdf"].pit(z)
    # the recalibrated P(z)'s PIT is the map applied to the old PIT, exactly; the projected
    # row reads it from the mixture weights (equal at the grid's mid-points only)
    rc = res["recalibrators"]["global"]
    np.testing.assert_array_equal(res["after"]["global"].pit(z), rc.transform(u))
    proj = rc.project(res["test_pdf"]).pit(z)
    np.testing.assert_allclose(proj, rc.transform(u), atol=0.02)
    assert res["summary"].loc["after (global), projected", "PCO_%"] == pytest.approx(
        100 * np.mean((proj < 0.005) | (proj > 0.995)))
    assert (run.root / "calibrate" / "model" / "recalibrator").is_dir()
    assert pipeline.check(run) == {}


def test_photozsom_explore_writes_the_page_of_a_run(tiny_run, tmp_path):
    from photozsom.cli import main as cli

    run = tiny_run
    out = tmp_path / "som.html"
    assert cli(["explore", str(run.root), "-o", str(out), "--max-thumbs", "2"]) == 0
    html = out.read_text()
    assert out.stat().st_size < 15e6 and "Bokeh" in html
    import re

    # JavaScript inlined: no script or stylesheet fetched from the network
    assert not re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="https?:', html)
