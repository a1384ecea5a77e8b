"""Assembling a run's sample from real files: spec-z catalogues, sweeps and cutouts.

The real-data way into the pipeline's ``data`` stage (:func:`photozsom.workflow.pipeline.run_data`):
:func:`validated_catalogue` checks a ready-made table, :func:`from_files` compiles spec-z
files, cross-matches them to DR10 sweeps and builds the cutout store, :func:`fetch_cutouts`
downloads cutouts from the layer of each footprint and :func:`cutouts_from_folder` stores
those already on disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.data import crossmatch, cutouts, legacysurvey, specz
from photozsom.schema import validate

__all__ = ["CUTOUT_LAYERS", "cutouts_from_folder", "fetch_cutouts", "from_files",
           "validated_catalogue"]


def validated_catalogue(df: pd.DataFrame, name: str, *, need_z: bool = False) -> pd.DataFrame:
    """``df`` checked for the columns a catalogue entering the pipeline needs (``OBJID``,
    ``PHOTSYS``, and a finite ``Z`` when ``need_z``), with a fresh index."""
    need = ["OBJID", "PHOTSYS"] + (["Z"] if need_z else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {missing}: a catalogue entering the pipeline needs OBJID "
            f"(unique id), PHOTSYS ('S' DECam / 'N' BASS-MzLS){' and Z' if need_z else ''}, "
            f"plus DR10 FLUX_<b> / MW_TRANSMISSION_<b> columns"
        )
    df = validate(df, [c for c in need if c != "PHOTSYS"], name=name)
    if need_z:
        bad = ~np.isfinite(df["Z"].to_numpy(dtype=np.float64))
        if bad.any():
            raise ValueError(f"{name}: Z is not finite in {int(bad.sum())} rows (first "
                             f"{np.flatnonzero(bad)[:5].tolist()}); remove them first")
    return df.reset_index(drop=True)


def from_files(sky: str | os.PathLike, spec_files: Mapping[str, Any],
               sweep_files: Sequence[str] | None, random_files: Sequence[str] | None = None,
               cutout_dir: str | os.PathLike | None = None,
               download: bool = False) -> dict[str, Any]:
    """Real spectroscopic and photometric files to the ``sky/`` tables of a run.

    Spec-z files (``{"DESI": path, "SDSS": path, "MyZ": (path, {"RA": ..., "DEC": ...,
    "Z": ...})}``) -> quality cuts (:mod:`photozsom.data.specz`) -> compiled sample -> 2
    arcsec cross-match to the DR10 sweeps (:mod:`photozsom.data.crossmatch`) ->
    ``spec.parquet``; the sweeps (or ``random_files``) -> ``random.parquet``; cutouts from
    the service (``download``) or from ``cutout_dir`` -> ``cutouts.h5``. Returns the cut
    table, counts and cutout status.
    """
    if not sweep_files:
        raise ValueError("spec_files needs sweep_files (DR10 sweeps to match photometry from)")
    readers = {"DESI": specz.read_desi, "SDSS": specz.read_sdss}
    catalogs, reports = [], []
    for survey, entry in spec_files.items():
        reader = readers.get(survey.upper())
        if reader is not None:
            cat, rep = reader(entry)
        else:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
                raise ValueError(
                    f"spec_files[{survey!r}]: surveys other than DESI and SDSS need "
                    f"(path, column mapping), e.g. ('my.csv', {{'RA': 'ra', 'DEC': 'dec', "
                    f"'Z': 'z'}})"
                )
            cat, rep = specz.read_generic(entry[0], columns=dict(entry[1]), survey=survey)
        catalogs.append(cat)
        reports.append(rep)
    compiled, counts = specz.compile_surveys(catalogs)
    matched = crossmatch.crossmatch_stream(compiled, legacysurvey.iter_catalogs(sweep_files),
                                           radius_arcsec=2.0)
    ok = matched[matched["MATCHED"].to_numpy(bool)].drop(columns=["MATCHED"]).reset_index(drop=True)
    sky = Path(sky)
    sky.mkdir(parents=True, exist_ok=True)
    ok.to_parquet(sky / "spec.parquet", index=False)
    rnd = pd.concat(list(legacysurvey.iter_catalogs(random_files or sweep_files)),
                    ignore_index=True)
    rnd.to_parquet(sky / "random.parquet", index=False)
    info = {"source": "real files", "cuts": specz.cut_table(*reports),
            "counts": counts, "n_matched": len(ok), "n_compiled": len(compiled)}
    if download:
        if cutout_dir is None:
            raise ValueError("download=True needs cutout_dir (where cutout FITS files go)")
        info["cutouts"] = fetch_cutouts(ok, cutout_dir, sky / "cutouts.h5")
    elif cutout_dir is not None:
        info["cutouts"] = cutouts_from_folder(ok, cutout_dir, sky / "cutouts.h5")
    return info


#: Cutout-service layer for each DR10 footprint: DECam (south) in DR10, BASS/MzLS in DR9 north.
CUTOUT_LAYERS: dict[str, tuple[str, str]] = {"S": ("ls-dr10", "griz"), "N": ("ls-dr9-north", "grz")}


def _photometric_position(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The Legacy Survey position of each row (``RA_PHOT``/``DEC_PHOT`` after a cross-match,
    else ``RA``/``DEC``): cutouts are centred on the galaxy the photometry belongs to."""
    if {"RA_PHOT", "DEC_PHOT"} <= set(rows.columns):
        return rows["RA_PHOT"].to_numpy(np.float64), rows["DEC_PHOT"].to_numpy(np.float64)
    return rows["RA"].to_numpy(np.float64), rows["DEC"].to_numpy(np.float64)


def fetch_cutouts(catalogue: pd.DataFrame, cutout_dir: str | os.PathLike,
                  store_path: str | os.PathLike, *, base_url: str | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """Download g,r,(i),z cutouts of every row from the layer of its footprint; build the store.

    Southern rows come from the DR10 layer with g, r, i, z; northern (BASS/MzLS) rows from the
    DR9-north layer with g, r, z (their i band stays masked in the store). Cutouts are centred
    on the photometric position (``RA_PHOT``/``DEC_PHOT`` of a cross-match). Files are kept in
    ``<cutout_dir>/<S|N>/<OBJID>.fits``, so a re-run downloads only what is missing; the store
    is rebuilt. ``base_url``: another endpoint (a mirror, or a local test server). Returns the
    per-object download status table; rows that failed are not in the store and say why.
    """
    tables = []
    ps = catalogue["PHOTSYS"].astype(str).str.strip().str.upper().to_numpy()
    for region, (layer, bands) in CUTOUT_LAYERS.items():
        rows = catalogue[ps == region]
        if len(rows) == 0:
            continue
        ra, dec = _photometric_position(rows)
        got = cutouts.download_cutouts(ra, dec, rows["OBJID"].to_numpy(np.int64),
                                       Path(cutout_dir) / region, layer=layer, bands=bands,
                                       base_url=base_url or cutouts.CUTOUT_URL,
                                       progress=progress)
        t = got.table.copy()
        t["LAYER"] = layer
        tables.append(t)
    status = pd.concat(tables, ignore_index=True)
    good = status[status["STATUS"] != "failed"]
    cutouts.fits_to_store(good["PATH"], good["OBJID"].to_numpy(np.int64), store_path,
                          overwrite=True, progress=progress)
    return status


def cutouts_from_folder(catalogue: pd.DataFrame, cutout_dir: str | os.PathLike,
                        store_path: str | os.PathLike, *, progress: bool = True) -> pd.DataFrame:
    """Build the store from cutouts already on disk, without downloading.

    Files are ``<cutout_dir>/<S|N>/<OBJID>.fits`` (what :func:`fetch_cutouts` leaves), or
    ``<cutout_dir>/<OBJID>.fits`` for a footprint without its own sub-folder. Returns one row
    per galaxy (``OBJID, PATH, STATUS, ERROR``; ``STATUS`` "stored", "missing" or
    "unreadable"); galaxies without a usable file are not in the store.
    """
    tables = []
    ps = catalogue["PHOTSYS"].astype(str).str.strip().str.upper().to_numpy()
    first = True
    for region in CUTOUT_LAYERS:
        rows = catalogue[ps == region]
        if len(rows) == 0:
            continue
        folder = Path(cutout_dir) / region
        folder = folder if folder.is_dir() else Path(cutout_dir)
        tables.append(cutouts.folder_to_store(rows["OBJID"].to_numpy(np.int64), folder,
                                              store_path, overwrite=first, progress=progress))
        first = False
    return pd.concat(tables, ignore_index=True)
