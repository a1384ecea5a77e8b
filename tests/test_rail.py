"""photozsom's RAIL stages: interactive inform/estimate, a ceci pipeline file, the metric code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("rail.estimation.estimator", reason="needs the rail extra (pz-rail-base)")

from rail.core.data import TableHandle
from rail.core.stage import RailPipeline
from rail.utils.testing_utils import traindata, validdata

from photozsom.pdf import MixturePDF
from photozsom.rail import (
    PhotoZEstimator,
    PhotoZInformer,
    default_features,
    grid_summary,
    read_model,
    to_dr10,
)

MAG_COLS = ["mag_g_lsst", "mag_r_lsst", "mag_i_lsst", "mag_z_lsst"]


def _table(path: str) -> pd.DataFrame:
    h = TableHandle("t", path=path)
    return pd.DataFrame({k: np.asarray(v) for k, v in h.read()["photometry"].items()})


def test_to_dr10_converts_ab_magnitudes_and_errors_to_nanomaggies():
    t = {"mag_g_lsst": np.array([22.5, 20.0, 99.0]), "mag_err_g_lsst": np.array([0.1, 0.05, 1.0]),
         "mag_r_lsst": np.array([25.0, 17.5, 21.0])}
    df = to_dr10(t, {"G": "mag_g_lsst", "R": "mag_r_lsst"}, {"G": "mag_err_g_lsst"})
    np.testing.assert_allclose(df["FLUX_G"][:2], [1.0, 10.0], rtol=1e-12)
    np.testing.assert_allclose(df["FLUX_R"], [0.1, 100.0, 10 ** 0.6], rtol=1e-12)
    # sigma_f = f * ln(10) / 2.5 * sigma_m: 1 nmgy at 0.1 mag -> 0.0921 nmgy
    np.testing.assert_allclose(df["FLUX_IVAR_G"][:2], [1 / (np.log(10) / 25) ** 2,
                                                       1 / (10 * np.log(10) / 50) ** 2])
    assert df["FLUX_IVAR_G"][2] == 0          # the non-detection is an unmeasured band
    assert "FLUX_IVAR_R" not in df            # no error column: no inverse variance
    with pytest.raises(ValueError, match="mag_z"):
        to_dr10(t, {"Z": "mag_z"})
    with pytest.raises(ValueError, match="DR10 bands"):
        to_dr10(t, {"Y": "mag_y_lsst"})


def test_default_features_are_r_and_neighbouring_colours():
    assert default_features(["Z", "G", "I", "R"]) == ["r", "g-r", "r-i", "i-z"]
    assert default_features(["G", "R", "Z", "W1", "W2"]) == ["r", "g-r", "r-z", "z-W1", "W1-W2"]


def test_grid_summary_matches_the_mixtures_closed_form():
    rng = np.random.default_rng(3)
    n = 300
    w = rng.dirichlet(np.full(200, 0.05), size=n)
    pdf = MixturePDF(w)
    z = np.clip(pdf.mean() + rng.normal(0, 0.05, n), 0.001, 1.599)
    grid = np.linspace(0.0, 1.6, 3201)
    s = grid_summary(pdf.evaluate(grid), grid, z)
    assert s["n_bad"] == 0
    np.testing.assert_allclose(s["pit"], pdf.pit(z), atol=2e-3)
    np.testing.assert_allclose(s["z_point"], pdf.median(), atol=1e-3)
    np.testing.assert_allclose(s["crps"], np.mean(pdf.crps(z)), rtol=2e-3)
    # a point mass far from the truth: CRPS = |z - z0| (analytic)
    p = np.zeros((1, grid.size))
    p[0, 400] = 1.0
    out = grid_summary(p, grid, np.array([1.2]))
    assert out["crps"] == pytest.approx(1.2 - grid[400], abs=1e-3)
    with pytest.raises(ValueError, match="inside the grid"):
        grid_summary(p, grid, np.array([1.7]))


def test_inform_and_estimate_from_rails_interactive_api(tmp_path):
    train, test = _table(traindata), _table(validdata)
    model_file = tmp_path / "pz.zip"
    inf = PhotoZInformer.make_stage(name="inform_pz_test", model=str(model_file),
                                    hdf5_groupname="", max_epochs=2, seed=1)
    inf.inform(train)
    assert model_file.is_file()                       # written as RAIL writes models
    est = PhotoZEstimator.make_stage(name="estimate_pz_test", hdf5_groupname="",
                                     model=str(model_file), n_grid=801, output_mode="return")
    ens = est.estimate(test).data
    assert ens.npdf == len(test)
    # independent path: the model file read back and applied to the converted table
    model = read_model(model_file)
    assert model.feature_names_ == ["r", "g-r", "r-i", "i-z"]
    # calibrated by default, as PhotoZModel; RAIL's 100-row example is below the galaxies a
    # PIT map needs, and the model says so instead of fitting one
    assert model.recalibration == "global" and model.recalibrator_ is None
    assert model.recalibration_source_.startswith("none (100 held-out galaxies")
    pdf = model.predict(to_dr10(test))
    np.testing.assert_allclose(np.ravel(ens.ancil["zmean"]), pdf.mean(), rtol=1e-6)
    np.testing.assert_allclose(np.ravel(ens.ancil["zmedian"]), pdf.median(), rtol=1e-6)
    lo, hi = pdf.interval(0.95)
    np.testing.assert_allclose(np.ravel(ens.ancil["z_lo95"]), lo, rtol=1e-6)
    np.testing.assert_allclose(np.ravel(ens.ancil["z_hi95"]), hi, rtol=1e-6)
    # the qp Ensemble holds the same P(z): its CDF at the truth is photozsom's PIT
    z = test["redshift"].to_numpy()
    qp_cdf = np.array([ens.cdf(zi)[i] for i, zi in enumerate(z)]).ravel()
    np.testing.assert_allclose(qp_cdf, pdf.pit(z), atol=3e-3)


def test_estimator_refuses_a_table_without_the_mapped_columns(tmp_path):
    train = _table(traindata)
    inf = PhotoZInformer.make_stage(name="inform_pz_cols", model=str(tmp_path / "m.zip"),
                                    hdf5_groupname="", max_epochs=1)
    inf.inform(train)
    est = PhotoZEstimator.make_stage(name="estimate_pz_cols", hdf5_groupname="",
                                     model=str(tmp_path / "m.zip"), output_mode="return")
    with pytest.raises(ValueError, match="mag_g_lsst"):
        est.estimate(train.drop(columns=["mag_g_lsst"]))


class _PhotoZPipeline(RailPipeline):
    default_input_dict = {"input_train": "dummy.in", "input_test": "dummy.in"}  # noqa: RUF012

    def __init__(self) -> None:
        RailPipeline.__init__(self)
        self.inform_photozsom = PhotoZInformer.build(aliases={"input": "input_train"},
                                                     max_epochs=2)
        self.estimate_photozsom = PhotoZEstimator.build(
            aliases={"input": "input_test"},
            connections={"model": self.inform_photozsom.io.model}, n_grid=401)


@pytest.mark.slow
def test_a_ceci_pipeline_file_runs_photozsoms_stages(tmp_path):
    pipe = _PhotoZPipeline()
    pipe.initialize({"input_train": traindata, "input_test": validdata},
                    {"output_dir": str(tmp_path), "log_dir": str(tmp_path), "resume": False}, None)
    yml = tmp_path / "photozsom.yml"
    pipe.save(str(yml))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    run_ceci = "import sys; from ceci.main import main; sys.exit(main())"   # the `ceci` command
    done = subprocess.run([sys.executable, "-c", run_ceci, str(yml)], check=False, cwd=tmp_path,
                          env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import qp

    ens = qp.read(str(tmp_path / "output_estimate_photozsom.hdf5"))
    model = read_model(tmp_path / "model_inform_photozsom.zip")
    test = _table(validdata)
    np.testing.assert_allclose(np.ravel(ens.ancil["zmean"]), model.predict(to_dr10(test)).mean(),
                               rtol=1e-6)


def test_the_som_flag_travels_in_ancil(tmp_path):
    from photozsom import flags

    raw = _table(traindata)
    rng = np.random.default_rng(1)
    big = pd.concat([raw] * 5, ignore_index=True)       # 500 rows: enough for a small map
    big[MAG_COLS] = big[MAG_COLS] + rng.normal(0, 0.03, (len(big), len(MAG_COLS)))
    lab = to_dr10(big)
    z = lab["redshift"].to_numpy()
    fl = flags.SOMFlagger(min_count=10, distance_quantile=0.99, seed=0)
    fl.fit(lab, lab, z, z + rng.normal(0, 0.05, len(z)), pit=rng.random(len(z)))
    fl.save(tmp_path / "flagger")
    inf = PhotoZInformer.make_stage(name="inform_pz_flag", model=str(tmp_path / "m.zip"),
                                    hdf5_groupname="", max_epochs=1)
    inf.inform(raw)
    test = _table(validdata)
    odd = test.iloc[:1].copy()
    odd[MAG_COLS] = [[30.0, 18.0, 30.0, 18.0]]          # colours no training galaxy has
    test = pd.concat([test, odd], ignore_index=True)
    est = PhotoZEstimator.make_stage(name="estimate_pz_flag", hdf5_groupname="",
                                     model=str(tmp_path / "m.zip"), output_mode="return",
                                     flagger=str(tmp_path / "flagger"))
    ens = est.estimate(test).data
    expect = flags.load_flagger(tmp_path / "flagger").flag(to_dr10(test))
    np.testing.assert_array_equal(np.ravel(ens.ancil["pz_flag"]), expect["flag"].astype(int))
    np.testing.assert_array_equal(np.ravel(ens.ancil["pz_cell"]), expect["cell"])
    assert ens.ancil["pz_ood"][-1] == 1                 # the odd galaxy is out of distribution
