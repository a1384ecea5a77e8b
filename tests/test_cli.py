"""``photozsom predict`` killed by a signal: no partial output left, one line, and a stale
partial file of a SIGKILLed run removed (and reported) by the next run on that output.

Each case runs the command in a child process and signals it once it has written its first
chunk to the temporary ``.partial-<pid>-<name>`` files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _catalogues import make_catalogue

from photozsom.cli import main as cli
from photozsom.model import PhotoZModel


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    d = tmp_path_factory.mktemp("signals")
    train = make_catalogue(800, 1)
    model = PhotoZModel("catalog", seed=0, max_epochs=2).fit(train, train["Z"], progress=False)
    cat = make_catalogue(1000, 2)
    big = cat.iloc[np.tile(np.arange(len(cat)), 150)].reset_index(drop=True)  # 150k rows
    big["OBJID"] = np.arange(len(big))
    big.to_parquet(d / "in.parquet")
    return {"dir": d, "model": model.save(d / "model"), "input": d / "in.parquet"}


def _start(job, out, pdf):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # a shell's background job inherits SIGINT ignored (and the command then rightly keeps
    # ignoring it): give the child the default disposition, as an interactive terminal does
    return subprocess.Popen(
        [sys.executable, "-m", "photozsom", "predict", str(job["input"]), "-o", str(out),
         "--model", str(job["model"]), "--pdf", str(pdf), "--chunk-size", "500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509


def _wait_for_partials(proc, folder, n=2, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(folder.glob(".partial-*"))) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it was signalled: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no partial files appeared")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_removes_the_partial_files_and_says_one_line(tmp_path, job, sig):
    out, pdf = tmp_path / "out.parquet", tmp_path / "pz.h5"
    proc = _start(job, out, pdf)
    _wait_for_partials(proc, tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and "rows (" not in ln]
    assert len(lines) == 1 and "interrupted" in lines[0] and signal.Signals(sig).name in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_sigkilled_runs_partial_files_are_removed_by_the_next_run(tmp_path, job, capsys):
    out, pdf = tmp_path / "out.parquet", tmp_path / "pz.h5"
    proc = _start(job, out, pdf)
    _wait_for_partials(proc, tmp_path)
    proc.kill()  # SIGKILL: nothing can clean up
    proc.communicate(timeout=60)
    stale = sorted(tmp_path.glob(".partial-*"))
    assert len(stale) == 2
    small = tmp_path / "small.parquet"
    make_catalogue(50, 3).to_parquet(small)
    assert cli(["predict", str(small), "-o", str(out), "--model", str(job["model"]), "--pdf",
                str(pdf)]) == 0
    err = capsys.readouterr().err
    for p in stale:
        assert f"removed {p}" in err
        assert not p.exists()
    assert out.exists() and pdf.exists()
    assert not list(tmp_path.glob(".partial-*"))
