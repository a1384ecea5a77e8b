"""`photozsom train` -> `photozsom predict --model DIR`: one directory, used whole."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from _catalogues import make_catalogue

from photozsom.flags import SOMFlagger
from photozsom.model import PhotoZModel
from photozsom.train import train

pytestmark = pytest.mark.slow  # trains networks through the command line

GRIZ_DROP = ("FLUX_W1", "FLUX_IVAR_W1", "MW_TRANSMISSION_W1", "FLUX_W2", "FLUX_IVAR_W2",
             "MW_TRANSMISSION_W2", "PHOTSYS", "SHAPE_R", "SHAPE_E1", "SHAPE_E2", "SERSIC")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "photozsom", *args], capture_output=True,
                          text=True, check=False)


@pytest.fixture(scope="module")
def griz(tmp_path_factory):
    """A griz-only table (no WISE, no PHOTSYS, no shapes) and a model trained on it."""
    tmp = tmp_path_factory.mktemp("train")
    spec = make_catalogue(3000, 21, spread=0.15).drop(columns=list(GRIZ_DROP))
    spec["FIELD"] = np.arange(len(spec)) % 10          # ten fields, kept whole by --split-by
    spec.to_parquet(tmp / "spec.parquet")
    done = _cli("train", str(tmp / "spec.parquet"), "-o", str(tmp / "model"), "--split-by",
                "FIELD", "--max-epochs", "4", "--cv-folds", "2", "--n-boot", "50", "--quiet")
    assert done.returncode == 0, done.stderr
    return tmp, spec, done


def test_train_writes_one_directory_with_model_flagger_and_summary(griz):
    tmp, spec, done = griz
    model = PhotoZModel.load(tmp / "model")
    assert model.feature_names_ == ["r", "g-r", "r-i", "i-z"]        # the bands it has
    fl = SOMFlagger.load(tmp / "model" / "flagger")
    assert set(fl.maps_) == {"ALL"} and fl.trained_on_ == "labelled"
    assert fl.maps_["ALL"].feature_names == ["g-r", "r-i", "i-z", "r"]
    split = pd.read_parquet(tmp / "model" / "split.parquet")
    by_field = spec.assign(SPLIT=split["SPLIT"].to_numpy()).groupby("FIELD")["SPLIT"].nunique()
    assert (by_field == 1).all()                                       # whole fields per split
    summary = json.loads((tmp / "model" / "summary.json").read_text())
    test = pd.read_parquet(tmp / "model" / "test_predictions.parquet")
    assert summary["n"] == len(test) == (split["SPLIT"] == "test").sum()
    assert summary["flagged_fraction"] == pytest.approx(test["PZ_FLAG"].mean())
    assert "held-out test split" in done.stdout
    oof = pd.read_parquet(tmp / "model" / "oof_predictions.parquet")
    assert set(oof["OBJID"]) <= set(split.loc[split["SPLIT"] != "test", "OBJID"])


def test_predict_uses_the_directory_whole_and_never_says_ok_to_nonsense(griz):
    tmp, spec, _ = griz
    cat = spec.drop(columns="Z").iloc[:50].reset_index(drop=True)
    flux = [c for c in cat.columns if c.startswith("FLUX_") and "IVAR" not in c]
    cat.loc[0, flux] = -5.0
    cat.loc[1, flux] = 1e30
    cat.loc[2, flux] = np.nan
    cat.loc[3, "FLUX_R"] = np.nan
    cat.to_parquet(tmp / "mine.parquet")
    done = _cli("predict", str(tmp / "mine.parquet"), "-o", str(tmp / "out.parquet"),
                "--model", str(tmp / "model"))
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp / "out.parquet")
    assert len(out) == len(cat) and "PZ_FLAG" in out                 # flags without --flagger
    status = out["PZ_STATUS"].astype(str).tolist()
    assert status[0] == status[1] == "outside"
    assert status[2] == status[3] == "not scored" and np.isnan(out["Z_PHOT_MEAN"][[2, 3]]).all()
    assert "r" in out["PZ_REASON"][3] and out["PZ_FLAG"][:4].all()
    assert (np.array(status[4:]) == "ok").mean() > 0.9


def test_train_in_python_refuses_bad_tables(tmp_path):
    spec = make_catalogue(300, 3)
    with pytest.raises(ValueError, match="needs a Z column"):
        train(spec.drop(columns="Z"), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="no such column"):
        train(spec, tmp_path / "b", split_by="ROSETTE", progress=False)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(spec, tmp_path / "c", progress=False)
    done = _cli("train", str(tmp_path / "missing.parquet"), "-o", str(tmp_path / "d"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no such file" in done.stderr
