"""The run directory: where each stage of the pipeline reads and writes its files.

One run directory (``data_dir`` in the book's chapters, default ``runs/<scale>``) holds::

    sky/        random.parquet, spec.parquet, cutouts.h5, settings.json   (data chapter)
    som/        som.pt, spec_cells.parquet                                 (som chapter)
    embed/      encoder.pt, embeddings.h5, history.csv                     (embeddings chapter)
    mdn/        split.parquet, mdn.pt, history.csv, predictions.parquet, test_pdf.npz  (mdn chapter)
    baseline/   rf.joblib, predictions.parquet, test_pdf.npz               (results chapter)
    results/    table1.csv                                                 (results chapter)
    cells/      report.parquet, trend.csv                                  (density chapter)
    flags/      flagger/, user_flags.parquet, threshold_curve.csv          (flagging chapter)
    figures/    figure*.png

A user swaps in their own file at any stage by writing it where the next stage looks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from photozsom.book import require

__all__ = ["RunDir"]

_STAGES = ("sky", "som", "embed", "mdn", "baseline", "results", "cells", "flags", "figures")


class RunDir:
    """Paths and loaders of one run directory.

    Parameters
    ----------
    data_dir : path
        The run directory (created on demand).

    Examples
    --------
    >>> run = RunDir("runs/ci")                     # doctest: +SKIP
    >>> spec = run.spec()                           # doctest: +SKIP
    >>> run.path("som", "som.pt")                   # doctest: +SKIP
    PosixPath('runs/ci/som/som.pt')
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir)

    def path(self, stage: str, name: str = "", *, make: bool = True) -> Path:
        """``<data_dir>/<stage>/<name>``; the stage folder is created when ``make``."""
        if stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}; one of {_STAGES}")
        d = self.root / stage
        if make:
            d.mkdir(parents=True, exist_ok=True)
        return d / name if name else d

    def need(self, stage: str, name: str) -> Path:
        """Path of a file an earlier chapter must have written (clear error otherwise)."""
        return require(self.path(stage, name, make=False), self.root)

    def figure(self, name: str) -> Path:
        """Path under ``figures/`` for a chapter's PNG."""
        return self.path("figures", name)

    # -- loaders ------------------------------------------------------------------------
    def spec(self) -> pd.DataFrame:
        """The spectroscopic sample matched to photometry (``sky/spec.parquet``)."""
        return pd.read_parquet(self.need("sky", "spec.parquet"))

    def random(self) -> pd.DataFrame:
        """The representative random sample (``sky/random.parquet``)."""
        return pd.read_parquet(self.need("sky", "random.parquet"))

    def cutouts_path(self) -> Path:
        return self.need("sky", "cutouts.h5")

    def split(self) -> pd.DataFrame:
        """OBJID and SPLIT ('train', 'val', 'test') of the spectroscopic sample (``mdn/split.parquet``)."""
        return pd.read_parquet(self.need("mdn", "split.parquet"))

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"
