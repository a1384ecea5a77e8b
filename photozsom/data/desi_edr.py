"""Real galaxies shipped with photozsom: DESI EDR Bright Galaxy Survey, northern rosettes.

:func:`load_bgs_north` returns 112,104 galaxies of the DESI Early Data Release (SV3 "One-Percent
Survey") Bright Galaxy Survey clustering catalogue in 10 northern rosettes, with Legacy
Surveys DR9-north photometry (BASS g, r; MzLS z; unWISE W1, W2) and DESI Redrock
spectroscopic redshifts (0.01 < z < 0.6, BGS r < ~20.2), under DR10 column names so that the
pipeline reads them like any catalogue.

What they can and cannot show: they are bright, low-redshift, northern galaxies with five
bands and no images, inverse variances, shapes or positions — enough for a catalogue-feature
photo-z model and a northern SOM, not for the image embeddings or the i-band southern map.

Credit (CC BY 4.0): DESI Collaboration 2023 (Early Data Release); Dey et al. 2019 (Legacy
Surveys); Hahn et al. 2023 (PROVABGS); the public repository
ValeriaTorresG/SimpleStellarMassModel (files ``data/rosette*.csv``, commit a2ec0054), from which
the table was assembled. See ``photozsom/data/desi_edr_bgs_north.README.md``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["BANDS", "CREDIT", "load_bgs_north", "write_example"]

#: Bands of the shipped catalogue (no i-band in the north).
BANDS = ("G", "R", "Z", "W1", "W2")
#: The credit anything that shows these data must give.
CREDIT = ("DESI Collaboration 2023 (Early Data Release, CC BY 4.0); Dey et al. 2019 (Legacy "
          "Surveys DR9); Hahn et al. 2023 (PROVABGS); ValeriaTorresG/SimpleStellarMassModel")
_FILE = "desi_edr_bgs_north.parquet"


def load_bgs_north() -> pd.DataFrame:
    """The shipped DESI EDR BGS galaxies with DR10-named columns.

    Returns
    -------
    DataFrame
        One row per galaxy: ``OBJID`` (the DESI TARGETID, unique), ``FLUX_<b>`` for b in
        :data:`BANDS` (nanomaggies, already corrected for Galactic extinction, hence
        ``MW_TRANSMISSION_<b> = 1``), ``Z`` (spectroscopic redshift), ``ROSETTE`` (field; use
        it for spatially disjoint splits), ``PHOTSYS = "N"``. There are no ``FLUX_IVAR_<b>``
        columns: every flux in the file is measured and positive.
    """
    path = resources.files("photozsom.data").joinpath(_FILE)
    with resources.as_file(path) as p:
        raw = pd.read_parquet(p)
    out = {"OBJID": raw["TARGET_ID"].to_numpy(np.int64)}
    for b in BANDS:
        out[f"FLUX_{b}"] = raw[f"FLUX_{b}_DERED"].to_numpy(np.float64)
        out[f"MW_TRANSMISSION_{b}"] = np.ones(len(raw))
    out["Z"] = raw["Z"].to_numpy(np.float64)
    out["ROSETTE"] = raw["ROSETTE"].to_numpy(np.int64)
    out["PHOTSYS"] = np.full(len(raw), "N")
    return pd.DataFrame(out)


def write_example(out_dir: str | os.PathLike, *, fraction: float = 1.0, seed: int = 0,
                  val_rosettes: Sequence[int] = (15,), report_rosettes: Sequence[int] = (14,),
                  held_out_rosettes: Sequence[int] = (18, 19)) -> dict[str, Path]:
    """Write the shipped galaxies as a user would bring them, split by rosette.

    ``labelled.parquet`` holds the training rosettes (``SPLIT`` = "train"), the validation
    rosettes ("val": early stopping) and the report rosettes ("test": the held-out summary
    of ``photozsom train``); ``held_out.parquet`` holds the remaining rosettes, which no
    model sees until ``photozsom predict``. Whole rosettes go to one part, so train and
    held-out galaxies are spatially disjoint. ``fraction`` < 1 keeps a seeded random
    fraction of every rosette (the book's small scales).

    Returns
    -------
    dict
        ``{"labelled": path, "held_out": path}``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    bgs = load_bgs_north()
    if fraction < 1:
        keep = np.random.default_rng(seed).random(len(bgs)) < fraction
        bgs = bgs[keep].reset_index(drop=True)
    ros = bgs["ROSETTE"].to_numpy()
    split = np.full(len(bgs), "train", dtype=object)
    split[np.isin(ros, val_rosettes)] = "val"
    split[np.isin(ros, report_rosettes)] = "test"
    held = np.isin(ros, held_out_rosettes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labelled = bgs[~held].assign(SPLIT=split[~held].astype(str))
    paths = {"labelled": out / "labelled.parquet", "held_out": out / "held_out.parquet"}
    labelled.to_parquet(paths["labelled"], index=False)
    bgs[held].to_parquet(paths["held_out"], index=False)
    return paths
