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
    with pytest.raises(ValueError, match="cannot tell the file format") as err:
        io.table_kind(tmp_path / "t.xlsx")
    assert "format=" not in str(err.value)  # no option the command line does not have
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


@pytest.mark.parametrize("name,kind", [("o.parquet", "parquet"), ("o.FITS", "fits"),
                                       ("o.fits.gz", "fits"), ("o.csv", "csv"),
                                       ("o.csv.gz", "csv")])
def test_output_kind_accepts_streamable_names(name, kind):
    assert io.output_kind(name) == kind


@pytest.mark.parametrize("name,needle", [("o.txt", ".txt"), ("o.ecsv", ".ecsv"),
                                         ("o.h5", "--pdf"), ("o", "no extension")])
def test_output_kind_refuses_names_that_would_be_misread(name, needle):
    with pytest.raises(ValueError, match="name the output") as err:
        io.output_kind(name)
    assert needle in str(err.value)


def test_stale_partials_are_those_of_dead_processes(tmp_path):
    target = tmp_path / "out.parquet"
    dead = subprocess_pid_that_exited()
    stale = tmp_path / f".partial-{dead}-out.parquet"
    live = tmp_path / f".partial-{os.getppid()}-out.parquet"   # our parent is alive
    other = tmp_path / f".partial-{dead}-other.parquet"
    for p in (stale, live, other):
        p.write_text("x")
    assert io.stale_partials(target) == [stale]
    assert io.partial_path(target) == str(tmp_path / f".partial-{os.getpid()}-out.parquet")


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _pdfs(n, seed):
    from photozsom.pdf import N_COMPONENTS, MixturePDF

    rng = np.random.default_rng(seed)
    k = np.arange(N_COMPONENTS)
    c, s = rng.uniform(5, 190, n), rng.uniform(0.7, 6, n)
    w = np.exp(-0.5 * ((k - c[:, None]) / s[:, None]) ** 2)
    w[: n // 10] += 0.02 * rng.random((n // 10, N_COMPONENTS))   # some with long flat tails
    return MixturePDF((w / w.sum(axis=1, keepdims=True)).astype(np.float32))


def test_pdf_writer_round_trip_within_the_dropped_weight(tmp_path):
    import h5py

    pdf = _pdfs(500, 0)
    path = tmp_path / "pz.h5"
    w = io.PdfWriter(path, 24, with_ids=True)
    for s in range(0, 500, 128):
        sl = slice(s, min(500, s + 128))
        w.write(pdf[sl], np.arange(500)[sl] * 2, np.arange(500)[sl] + 10**12)
    assert not path.exists() and os.path.exists(w.tmp)        # renamed only at close
    w.close()
    assert not os.path.exists(w.tmp)
    back = io.read_pdf(path)
    np.testing.assert_array_equal(back.ids, np.arange(500) + 10**12)
    with h5py.File(path) as f:
        dropped = f["ancil/PZ_PDF_DROPPED"][()].astype(float)
        np.testing.assert_array_equal(f["ancil/row"][()], np.arange(500) * 2)
        assert f["data/weights"].shape == (500, 24) and f["data/weights"].dtype == np.float32
    # independent: the dropped weight is 1 - the sum of the 24 largest weights
    top = np.sort(np.asarray(pdf.weights, float), axis=1)[:, -24:].sum(axis=1)
    np.testing.assert_allclose(dropped, 1 - top, atol=1e-6)
    assert dropped.min() < 1e-6 and dropped.max() > 1e-3       # both kinds exercised
    z = np.linspace(0, 1.6, 321)
    err = np.abs(back.cdf(np.broadcast_to(z, (500, z.size)))
                 - pdf.cdf(np.broadcast_to(z, (500, z.size)))).max(axis=1)
    assert np.all(err <= dropped + 1e-6)
    part = io.read_pdf(path, rows=slice(100, 110))
    np.testing.assert_allclose(part.weights, back.weights[100:110])


def test_pdf_writer_memory_does_not_grow_with_rows(tmp_path):
    import tracemalloc

    pdf = _pdfs(2000, 1)

    def peak(n_chunks):
        w = io.PdfWriter(tmp_path / f"pz{n_chunks}.h5")
        tracemalloc.start()
        for i in range(n_chunks):
            w.write(pdf, np.arange(2000) + 2000 * i)
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        w.close()
        return size

    small, large = peak(2), peak(20)
    assert large < 1.5 * small
    assert io.read_pdf(tmp_path / "pz20.h5").weights.shape[0] == 40000


def test_pdf_writer_abort_leaves_nothing(tmp_path):
    w = io.PdfWriter(tmp_path / "pz.hdf5")
    w.write(_pdfs(10, 2), np.arange(10))
    w.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=".h5"):
        io.PdfWriter(tmp_path / "pz.fits")


def test_pdf_writer_keeps_string_identifiers(tmp_path):
    pdf = _pdfs(6, 3)
    w = io.PdfWriter(tmp_path / "pz.h5", 16, with_ids=True)
    w.write(pdf[:3], np.arange(3), np.array(["a1", "b22", "c"], dtype=object))
    w.write(pdf[3:], np.arange(3, 6), np.array(["dd", "e", "f"]))
    w.close()
    assert io.read_pdf(tmp_path / "pz.h5").ids.tolist() == ["a1", "b22", "c", "dd", "e", "f"]
