"""Fixtures shared by the test modules.

``tiny_run`` is one tiny simulated run through the stages data, som, embed, mdn (catalogue
features), cells and flags, built once per session. Tests read it; a test that re-runs a
stage works on a copy (``copy_run``) or puts the run back as it found it.
"""

from __future__ import annotations

import shutil

import pytest

from photozsom.workflow import pipeline


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> pipeline.Run:
    run = pipeline.Run(tmp_path_factory.mktemp("tiny") / "run")
    pipeline.run_data(run, scale="tiny", progress=False)
    pipeline.run_som(run, scale="tiny", progress=False)
    pipeline.run_embed(run, scale="tiny")
    pipeline.run_mdn(run, scale="tiny", inputs="catalog", progress=False)
    pipeline.run_cells(run, scale="tiny")
    pipeline.run_flags(run, scale="tiny")
    return run


@pytest.fixture
def copy_run(tiny_run, tmp_path):
    """A private copy of ``tiny_run`` that a test may change."""
    return pipeline.Run(shutil.copytree(tiny_run.root, tmp_path / "run"))
