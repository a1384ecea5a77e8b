"""The book's two footprints (DR10 ``PHOTSYS`` S and N): one SOM, one cell report and one
flagger each.

Functions on tables and maps, no run directory: :mod:`photozsom.workflow.pipeline` reads a
run's files and calls them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from photozsom.features import NORTH_SOM_FEATURES, SOM_FEATURES
from photozsom.flags import Flagger, RegionalFlagger, locate, map_rows, train_map
from photozsom.flags import cell_reports as flag_cell_reports
from photozsom.schema import point_column

__all__ = ["REGIONS", "cell_reports", "combined_cells", "regional_flagger", "spec_cells",
           "train_region_map"]

#: Footprints and the SOM features of each (DR10 ``PHOTSYS``): the book's maps. A user's own
#: sample gets them from the bands it has (``SOMFlagger(features="auto")``).
REGIONS: dict[str, list[str]] = {"S": SOM_FEATURES, "N": NORTH_SOM_FEATURES}


def train_region_map(random: pd.DataFrame, region: str, shape: Sequence[int], *, seed: int = 0,
                     epochs: int | None = None, backend: str = "torch", min_train: int = 10,
                     progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """Train the SOM of one footprint (``"S"`` or ``"N"``) on a random sample's colours
    (:func:`photozsom.flags.train_map` on that footprint's rows and :data:`REGIONS` features).

    Returns ``(som, info)``; ``som`` is None when the footprint has fewer than ``min_train``
    usable galaxies per cell (``info`` says how many it has).
    """
    return train_map(random[map_rows(random, region)], REGIONS[region], shape, seed=seed,
                     epochs=epochs, backend=backend, min_train=min_train, progress=progress)


def spec_cells(catalogue: pd.DataFrame, maps: Mapping[str, Any]) -> pd.DataFrame:
    """``OBJID, SOM, CELL, DIST`` of every row: its footprint's map, cell and distance
    (:func:`photozsom.flags.locate`)."""
    where = locate(catalogue, maps).reset_index(drop=True)
    where.insert(0, "OBJID", catalogue["OBJID"].to_numpy())
    return where


def cell_reports(evaluated: pd.DataFrame, spec_cells: pd.DataFrame, split: pd.Series,
                 maps: Mapping[str, Any], *, n_boot: int, seed: int = 0,
                 fdr: float = 0.05) -> dict[str, Any]:
    """One :class:`~photozsom.evaluation.cells.CellReport` per map (:func:`photozsom.flags.cell_reports`).

    ``evaluated`` holds the evaluated galaxies (``Z``, ``Z_PHOT_MEAN``, ``PIT``, ``SOM``,
    ``CELL``); ``spec_cells`` the ``SOM``/``CELL`` of every spectroscopic galaxy, indexed by
    OBJID; ``split`` the SPLIT of each OBJID (training counts are the "train" galaxies per
    cell, evaluated or not). A map with fewer than two evaluated galaxies gets no report.
    """
    train = spec_cells.reindex(split.index[split.to_numpy() == "train"])
    train = train.assign(SOM=train["SOM"].fillna(""), CELL=train["CELL"].fillna(-1))
    n_ev, n_tr = len(evaluated), len(train)
    located = pd.concat([evaluated[["SOM", "CELL"]], train[["SOM", "CELL"]]], ignore_index=True)
    pad = np.full(n_tr, np.nan)
    return flag_cell_reports(
        located, np.r_[evaluated["Z"].to_numpy(), pad], np.r_[evaluated[point_column(evaluated)].to_numpy(), pad],
        np.r_[evaluated["PIT"].to_numpy(), pad], np.r_[np.zeros(n_ev, bool), np.ones(n_tr, bool)],
        maps, n_boot=n_boot, seed=seed, fdr=fdr, evaluate=np.r_[np.ones(n_ev, bool),
                                                                np.zeros(n_tr, bool)])


def regional_flagger(maps: Mapping[str, Any], reports: Mapping[str, Any],
                     thresholds: Mapping[str, Sequence[float]], *,
                     flag_metrics: Sequence[str] = ("mad", "eta", "pco", "bias")) -> RegionalFlagger:
    """A :class:`~photozsom.flags.RegionalFlagger` of per-footprint maps and cell reports with
    ``thresholds[region] = (min_count, distance_quantile)``."""
    missing = set(reports) - set(thresholds)
    if missing:
        raise ValueError(f"no thresholds for map(s) {sorted(missing)}")
    return RegionalFlagger({
        r: Flagger(maps[r], reports[r], min_count=int(thresholds[r][0]),
                   distance_quantile=float(thresholds[r][1]), metrics=tuple(flag_metrics))
        for r in reports})


def combined_cells(spec_cells: pd.DataFrame, maps: Mapping[str, Any], objid: np.ndarray) -> np.ndarray:
    """One cell id per galaxy over both maps (south cells first, then north); -1: none.

    ``spec_cells`` is :func:`spec_cells`' table (``OBJID, SOM, CELL``) of the galaxies."""
    sc = spec_cells.set_index("OBJID").reindex(objid)
    offset, out = 0, np.full(len(objid), -1, dtype=np.int64)
    for region in REGIONS:
        if region not in maps:
            continue
        sel = (sc["SOM"] == region).to_numpy() & (sc["CELL"].to_numpy() >= 0)
        out[sel] = offset + sc["CELL"].to_numpy()[sel].astype(np.int64)
        offset += maps[region].n_cells
    return out
