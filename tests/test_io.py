"""photozsom.io (every catalogue format through one module) and the artifact convention."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

from photozsom import io
from photozsom.artifacts import ArtifactError, atomic_path, load_artifact, save_artifact


def _frame(n=50):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"OBJID": np.arange(n, dtype=np.int64), "FLUX_R": rng.normal(10, 1, n),
                         "TYPE": np.array(["REX", "SER"] * (n // 2))})


@pytest.mark.parametrize("suffix", [".parquet", ".fits", ".csv", ".h5", ".csv.gz", ".fits.gz"])
def test_write_then_read_round_trips_every_format(tmp_path, suffix):
    df = _frame()
    path = io.write_table(df, tmp_path / f"t{suffix}")
    back = io.read_table(path)
    assert len(back) == len(df)
    np.testing.assert_array_equal(back["OBJID"], df["OBJID"])
    np.testing.assert_allclose(back["FLUX_R"], df["FLUX_R"])
    assert back["TYPE"].astype(str).str.strip().tolist() == df["TYPE"].tolist()
    _, _, chunks = io.open_catalogue(path, chunk=7)
    parts = list(chunks)
    assert sum(len(p) for p in parts) == len(df) and max(len(p) for p in parts) <= 7
    cols = io.read_columns(path, ["flux_r"])  # case-insensitive
    np.testing.assert_allclose(cols["FLUX_R"], df["FLUX_R"])


def test_unknown_suffix_and_existing_output(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the file format"):
        io.table_kind(tmp_path / "t.xlsx")
    io.write_table(_frame(), tmp_path / "a.parquet")
    with pytest.raises(FileExistsError, match="overwrite"):
        io.write_table(_frame(), tmp_path / "a.parquet", overwrite=False)


def _slow_writer(path):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("half")
        f.flush()
        time.sleep(30)
        f.write(" done")


def test_a_killed_writer_leaves_the_old_file_and_no_partial_one(tmp_path):
    target = tmp_path / "table.txt"
    target.write_text("old")
    p = mp.get_context("spawn").Process(target=_slow_writer, args=(str(target),))
    p.start()
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".table.txt.*")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".table.txt.*")), "the writer never started"
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    assert target.read_text() == "old"  # a reader sees the complete old file, never 'half'


def test_artifact_checks_kind_and_version(tmp_path):
    d = save_artifact(tmp_path / "a", "thing", {"w": np.arange(3.0)}, {"k": 1})
    arrays, meta = load_artifact(d, "thing")
    assert meta["k"] == 1 and arrays["w"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ArtifactError, match="holds 'photozsom.thing'"):
        load_artifact(d, "other")
    meta = json.loads((d / "meta.json").read_text())
    meta["version"] = 7
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="version 7"):
        load_artifact(d, "thing")
    with pytest.raises(TypeError, match="dtype object"):
        save_artifact(tmp_path / "b", "thing", {"s": np.array(["a", None], dtype=object)}, {})


def test_a_swap_killed_between_renames_is_recovered_on_load(tmp_path):
    d = save_artifact(tmp_path / "a", "thing", {"w": np.arange(2.0)}, {"k": 1})
    # what a kill between atomic_dir's two renames leaves: the complete old copy aside
    os.replace(d, tmp_path / ".a.x1y2.old")
    _, meta = load_artifact(tmp_path / "a", "thing")
    assert meta["k"] == 1 and (tmp_path / "a").is_dir()
