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

from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["BANDS", "CREDIT", "load_bgs_north"]

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
