"""The pipeline: one function per stage, each with declared inputs and outputs in a run directory.

A run directory (``data_dir`` in the book, default ``runs/<scale>``) is laid out by the
declarations in :data:`STAGES` — the one source of truth, printed by :func:`layout`::

    sky/        spec.parquet, random.parquet, cutouts.h5, split.parquet   stage "data"
    som/        S/, N/ (one SOM per footprint), spec_cells.parquet         stage "som"
    embed/      encoder/, embeddings.h5, encoder.ckpt/                     stage "embed"
    mdn/        model/, predictions.parquet, oof_predictions.parquet,     stage "mdn"
                test_pdf.npz, oof_pdf.npz
    baseline/   model/, predictions.parquet, catalog_mdn.parquet          stage "baseline"
    cells/      S/, N/ (CellReport per map), evaluated.parquet            stage "cells"
    flags/      flagger/, random_flags.parquet, threshold_choice.csv      stage "flags"
    calibrate/  global/, cell/ (Recalibrators), model/, summary.csv,       stage "calibrate"
                worse_cells.csv
    figures/    the chapters' PNGs

Each stage writes ``<stage>/provenance.json`` with its parameters and the fingerprints of
the stages it read, and its own fingerprint (a hash of both). :func:`check` compares them:
a stage re-run with other parameters (``photozsom book --only som -p seed=1``) makes every
stage that read the old outputs *stale*; ``photozsom book`` re-runs those chapters
(:func:`downstream`) and refuses to render a book that mixes runs.

Scale presets (``ci`` for minutes, ``default`` for the published book) are in :data:`SCALES`
and nowhere else; a stage parameter left at ``None`` takes the preset's value.

Examples
--------
>>> run = Run("runs/tiny")                                   # doctest: +SKIP
>>> run_data(run, scale="tiny"); run_som(run, scale="tiny")  # doctest: +SKIP
>>> check(run)                                               # doctest: +SKIP
{}
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.artifacts import read_json, write_json
from photozsom.features import NORTH_SOM_FEATURES, SOM_FEATURES
from photozsom.flags import SOMFlagger, locate, map_rows, train_map
from photozsom.flags import cell_reports as flag_cell_reports
from photozsom.train import make_split, oof_predictions

__all__ = [
    "SCALES",
    "STAGES",
    "Run",
    "StaleRunError",
    "build_flagger",
    "cell_reports",
    "check",
    "cutouts_from_folder",
    "downstream",
    "fetch_cutouts",
    "fit_photoz_model",
    "flag_by_magnitude",
    "layout",
    "load_maps",
    "load_reports",
    "make_split",
    "model_inputs",
    "oof_predictions",
    "prepare_bgs_example",
    "preset",
    "published_photoz",
    "require_consistent",
    "run_baseline",
    "run_calibrate",
    "run_cells",
    "run_data",
    "run_embed",
    "run_flags",
    "run_mdn",
    "run_som",
    "spec_cells",
    "stage_folder",
    "train_region_map",
]

#: Settings of each scale; a stage argument left at None takes these. ``mdn_max_epochs`` is
#: the length of the MDN's one-cycle schedule (24 is the MDN's own default).
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"sky": 600, "som_shape": (6, 6), "som_shape_north": (5, 5), "embed_epochs": 1,
             "embed_dim": 16, "mdn_max_epochs": 6, "cv_folds": 2, "n_boot": 100,
             "n_estimators": 30, "min_count": 3, "real_fraction": 0.05},
    "ci": {"sky": "ci", "som_shape": (12, 12), "som_shape_north": (10, 10), "embed_epochs": 3,
           "embed_dim": 64, "mdn_max_epochs": 20, "cv_folds": 3, "n_boot": 300,
           "n_estimators": 100, "min_count": 5, "real_fraction": 0.15},
    "default": {"sky": "default", "som_shape": (24, 24), "som_shape_north": (16, 16),
                "embed_epochs": 12, "embed_dim": 64, "mdn_max_epochs": 24, "cv_folds": 5,
                "n_boot": 1000, "n_estimators": 200, "min_count": 5, "real_fraction": 1.0},
}

#: Footprints and the SOM features of each (DR10 ``PHOTSYS``): the book's maps. A user's own
#: sample gets them from the bands it has (``SOMFlagger(features="auto")``).
REGIONS: dict[str, list[str]] = {"S": SOM_FEATURES, "N": NORTH_SOM_FEATURES}


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: what it reads and writes (paths relative to the run directory)."""

    name: str
    chapter: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    doc: str


#: The stages in order; the run-directory layout and the dependency graph come from here.
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("data", "data", (),
          ("sky/spec.parquet", "sky/random.parquet", "sky/cutouts.h5", "sky/split.parquet"),
          "spectroscopic sample with DR10 photometry, random sample, cutouts, train/val/test"),
    Stage("som", "som", ("sky/random.parquet", "sky/spec.parquet"),
          ("som/S", "som/N", "som/spec_cells.parquet"),
          "one SOM per footprint on the random sample; the spectroscopic galaxies' cells"),
    Stage("embed", "embeddings", ("sky/cutouts.h5", "sky/random.parquet", "sky/spec.parquet"),
          ("embed/encoder", "embed/embeddings.h5", "embed/encoder.ckpt"),
          "image embeddings of every cutout (and the encoder's last training checkpoint)"),
    Stage("mdn", "mdn", ("sky/spec.parquet", "sky/split.parquet", "embed/embeddings.h5"),
          ("mdn/model", "mdn/predictions.parquet", "mdn/oof_predictions.parquet",
           "mdn/test_pdf.npz", "mdn/oof_pdf.npz"),
          "the PhotoZModel (MDN), test-split and out-of-fold predictions and P(z)"),
    Stage("baseline", "results", ("sky/spec.parquet", "sky/split.parquet",
                                  "mdn/predictions.parquet"),
          ("baseline/model", "baseline/predictions.parquet", "baseline/catalog_mdn.parquet"),
          "random forest (and a catalogue-feature MDN) behind the same PhotoZModel interface"),
    Stage("cells", "density", ("som/S", "som/spec_cells.parquet", "sky/split.parquet",
                               "mdn/oof_predictions.parquet", "mdn/predictions.parquet"),
          ("cells/S", "cells/N", "cells/evaluated.parquet"),
          "per-cell metrics, bootstrap errors and significance, one CellReport per map"),
    Stage("flags", "flagging", ("som/S", "cells/S", "cells/evaluated.parquet",
                                "sky/random.parquet", "sky/split.parquet"),
          ("flags/flagger", "flags/random_flags.parquet", "flags/threshold_choice.csv"),
          "the SOMFlagger, the flags of the random sample and the threshold scan"),
    Stage("calibrate", "calibration", ("mdn/oof_pdf.npz", "mdn/test_pdf.npz", "mdn/model",
                                       "mdn/oof_predictions.parquet", "mdn/predictions.parquet",
                                       "som/spec_cells.parquet", "cells/S"),
          ("calibrate/global", "calibrate/cell", "calibrate/model", "calibrate/summary.csv",
           "calibrate/worse_cells.csv"),
          "PIT recalibration of P(z), global and per SOM cell, fitted out of fold"),
)}

_PRODUCER = {out.split("/")[0]: s.name for s in STAGES.values() for out in s.outputs}


def layout() -> str:
    """The run-directory layout, generated from :data:`STAGES`."""
    rows = [f"{s.name:<9} -> {', '.join(s.outputs)}\n{'':<13}reads {', '.join(s.inputs) or '-'}"
            for s in STAGES.values()]
    return "\n".join(rows)


def preset(scale: str, **overrides: Any) -> dict[str, Any]:
    """The settings of ``scale`` with the non-None ``overrides`` applied."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; one of {sorted(SCALES)}")
    out = dict(SCALES[scale])
    out.update({k: v for k, v in overrides.items() if v is not None})
    return out


def _parents(stage: str) -> list[str]:
    return sorted({_PRODUCER[i.split("/")[0]] for i in STAGES[stage].inputs})


def downstream(stages: Sequence[str]) -> list[str]:
    """``stages`` and every stage that reads (directly or not) what they write, in order."""
    todo = set(stages)
    unknown = todo - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {list(STAGES)}")
    changed = True
    while changed:
        changed = False
        for s in STAGES:
            if s not in todo and set(_parents(s)) & todo:
                todo.add(s)
                changed = True
    return [s for s in STAGES if s in todo]


class StaleRunError(RuntimeError):
    """The run directory mixes outputs of different runs of a stage."""


class Run:
    """Paths, loaders and provenance of one run directory.

    Parameters
    ----------
    data_dir : path
        The run directory (created on demand).
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir)

    def path(self, rel: str, *, make: bool = True) -> Path:
        """``<data_dir>/<rel>``; the stage folder is created when ``make``."""
        first = rel.split("/")[0]
        if first not in _PRODUCER and first != "figures":
            raise ValueError(f"unknown run-directory folder {first!r}; one of {sorted(_PRODUCER)}")
        p = self.root / rel
        if make:
            (p if rel.endswith("/") else p.parent).mkdir(parents=True, exist_ok=True)
        return p

    def need(self, rel: str) -> Path:
        """Path of something an earlier stage wrote; a clear error naming the stage otherwise."""
        p = self.root / rel
        if p.exists():
            return p
        stage = STAGES[_PRODUCER[rel.split("/")[0]]]
        raise FileNotFoundError(
            f"{p} does not exist: run the '{stage.chapter}' chapter first "
            f"(`photozsom book --only {stage.chapter} -p data_dir={self.root}`), or "
            f"photozsom.workflow.pipeline.run_{stage.name}(Run({str(self.root)!r}))"
        )

    def figure(self, name: str) -> Path:
        """Path under ``figures/`` for a chapter's PNG."""
        return self.path(f"figures/{name}")

    # -- loaders ------------------------------------------------------------------------
    def spec(self) -> pd.DataFrame:
        """The spectroscopic sample with DR10 photometry and ``Z``."""
        return pd.read_parquet(self.need("sky/spec.parquet"))

    def random(self) -> pd.DataFrame:
        """The representative random sample."""
        return pd.read_parquet(self.need("sky/random.parquet"))

    def split(self) -> pd.Series:
        """``SPLIT`` ('train' / 'val' / 'test') of the spectroscopic sample, indexed by OBJID."""
        return pd.read_parquet(self.need("sky/split.parquet")).set_index("OBJID")["SPLIT"]

    def spec_with_split(self) -> pd.DataFrame:
        """:meth:`spec` with a ``SPLIT`` column."""
        spec = self.spec()
        spec["SPLIT"] = self.split().reindex(spec["OBJID"]).to_numpy()
        return spec

    def cutouts_path(self) -> Path:
        return self.need("sky/cutouts.h5")

    # -- provenance ----------------------------------------------------------------------
    def provenance(self, stage: str) -> dict | None:
        p = self.root / stage_folder(stage) / "provenance.json"
        return read_json(p) if p.exists() else None

    def record(self, stage: str, params: Mapping[str, Any]) -> str:
        """Write ``provenance.json`` of ``stage``: its parameters and its parents' fingerprints."""
        parents = {}
        for p in _parents(stage):
            prov = self.provenance(p)
            parents[p] = None if prov is None else prov["fingerprint"]
        body = {"stage": stage, "params": _plain(dict(params)), "parents": parents}
        fp = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        write_json(self.root / stage_folder(stage) / "provenance.json", {**body, "fingerprint": fp})
        return fp

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"


def stage_folder(stage: str) -> str:
    """The run-directory folder a stage writes (``som`` for stage "som", ``sky`` for "data")."""
    return STAGES[stage].outputs[0].split("/")[0]


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def check(run: Run | str | os.PathLike) -> dict[str, str]:
    """Stale stages of a run directory: ``{stage: why}`` (empty when consistent).

    A stage is stale when a stage it read was re-run after it (its recorded parent
    fingerprint differs from the parent's current one) or when a parent's provenance is
    missing.
    """
    run = run if isinstance(run, Run) else Run(run)
    stale: dict[str, str] = {}
    for s in STAGES:
        prov = run.provenance(s)
        if prov is None:
            continue
        for p, fp in prov["parents"].items():
            cur = run.provenance(p)
            if cur is None:
                if fp is not None:
                    stale[s] = f"its input stage {p!r} has no provenance any more"
            elif cur["fingerprint"] != fp:
                stale[s] = (f"it was made from {p!r} run {fp}, but {p!r} is now run "
                            f"{cur['fingerprint']} ({_diff(run, p)})")
            elif p in stale:
                stale[s] = f"it reads {p!r}, which is stale"
    return stale


def _diff(run: Run, stage: str) -> str:
    prov = run.provenance(stage)
    return "params " + ", ".join(f"{k}={v!r}" for k, v in sorted(prov["params"].items()))[:200]


def require_consistent(run: Run | str | os.PathLike) -> None:
    """Raise :class:`StaleRunError` listing stale stages, if any."""
    stale = check(run)
    if stale:
        lines = [f"  {s} (chapter '{STAGES[s].chapter}'): {why}" for s, why in stale.items()]
        chapters = sorted({STAGES[s].chapter for s in stale})
        raise StaleRunError(
            "the run directory mixes runs:\n" + "\n".join(lines)
            + f"\nre-run: photozsom book --only {' --only '.join(chapters)} (with the same -p)"
        )


# ======================================================================================
# Stages
# ======================================================================================
def run_data(run: Run, *, scale: str = "ci", seed: int = 0, spec_catalog: str | None = None,
             random_catalog: str | None = None, spec_files: Mapping[str, Any] | None = None,
             sweep_files: Sequence[str] | None = None, random_files: Sequence[str] | None = None,
             cutout_dir: str | None = None, download: bool = False,
             split_by: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Stage "data": the spectroscopic sample, the random sample, cutouts and the split.

    Three ways in, the first that is given wins:

    - ``spec_catalog``: a table (FITS / Parquet / CSV) that already carries DR10 photometry
      columns and ``Z`` — the common real starting point (a spec-z query with photometry
      attached). ``random_catalog`` is the representative sample for the SOM (optional:
      without it the SOM trains on the spectroscopic training split, which is *not*
      representative — the chapter says so).
    - ``spec_files`` (``{"DESI": path, "SDSS": path, "MyZ": (path, {"RA": ..., "DEC": ...,
      "Z": ...})}``) + ``sweep_files``: quality cuts, compilation and a 2 arcsec cross-match;
      ``random_files`` for the random sample; cutouts from the Legacy Survey service when
      ``download`` (DR10 layer in the south, DR9 north layer for BASS/MzLS rows).
    - nothing: the simulated sky (:func:`photozsom.sim.simulate`), deterministic in seed.

    The train / validation / test split (80/10/10) is by a seeded hash of ``OBJID``, or by
    the values of column ``split_by`` (e.g. ``ROSETTE``: whole fields go to one part; a
    column holding "train" / "val" / "test" is used as it is).

    Returns
    -------
    dict
        ``source``, the row counts and, for the simulated sky, its ``settings``.
    """
    from photozsom.io import read_table

    sky = run.path("sky/")
    info: dict[str, Any] = {}
    if spec_catalog is not None:
        spec = _validated_catalogue(read_table(spec_catalog), str(spec_catalog), need_z=True)
        spec.to_parquet(sky / "spec.parquet", index=False)
        if random_catalog is not None:
            rnd = _validated_catalogue(read_table(random_catalog), str(random_catalog))
        else:
            rnd = spec.drop(columns=["Z"])
            info["random_is_spec"] = True
        rnd.to_parquet(sky / "random.parquet", index=False)
        info["source"] = f"catalogue {spec_catalog}"
    elif spec_files is not None:
        info.update(_data_from_files(run, spec_files, sweep_files, random_files, cutout_dir,
                                     download))
    else:
        from photozsom.sim import simulate

        simulate(sky, scale=preset(scale)["sky"], seed=seed, overwrite=False, progress=progress)
        info["source"] = f"simulated sky (scale {scale!r}, seed {seed})"
        info["settings"] = read_json(sky / "settings.json")
    spec = pd.read_parquet(sky / "spec.parquet")
    split = make_split(spec, seed=seed, by=split_by)
    split.to_parquet(sky / "split.parquet", index=False)
    info["n_spec"] = len(spec)
    info["n_random"] = len(pd.read_parquet(sky / "random.parquet", columns=["OBJID"]))
    info["split"] = split["SPLIT"].value_counts().to_dict()
    params = {"scale": scale, "seed": seed, "spec_catalog": spec_catalog,
              "random_catalog": random_catalog, "spec_files": spec_files, "split_by": split_by}
    if spec_catalog is None and spec_files is not None:  # the real-file inputs, too
        params.update(sweep_files=[str(p) for p in sweep_files or ()],
                      random_files=None if random_files is None else [str(p) for p in random_files],
                      cutout_dir=None if cutout_dir is None else str(cutout_dir),
                      download=bool(download))
    run.record("data", params)
    return info


def _validated_catalogue(df: pd.DataFrame, name: str, *, need_z: bool = False) -> pd.DataFrame:
    from photozsom.schema import validate

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


def _data_from_files(run: Run, spec_files, sweep_files, random_files, cutout_dir,
                     download) -> dict[str, Any]:
    """The real-data branch: spec-z files -> cuts -> compile -> 2" match -> cutouts."""
    from photozsom.data import crossmatch, legacysurvey, specz

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
    sky = run.path("sky/")
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
    from photozsom.data import cutouts

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
    from photozsom.data import cutouts

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


def run_som(run: Run, *, scale: str = "ci", seed: int = 0, som_shape: Sequence[int] | None = None,
            som_shape_north: Sequence[int] | None = None, epochs: int | None = None,
            backend: str = "torch", min_train: int = 10, progress: bool = True) -> dict[str, Any]:
    """Stage "som": one SOM per footprint, trained on the random sample's colours.

    The south (DECam, with i-band) map uses :data:`~photozsom.features.SOM_FEATURES` as the
    paper; the north (BASS/MzLS, no i-band) map uses
    :data:`~photozsom.features.NORTH_SOM_FEATURES`. A footprint with fewer than
    ``min_train`` galaxies per cell in the random sample gets no map (its galaxies are
    flagged "no SOM"). Writes ``som/S``, ``som/N`` and ``som/spec_cells.parquet`` (OBJID,
    SOM, CELL, DIST of every spectroscopic galaxy; CELL = -1 without a map or features).
    """
    p = preset(scale, som_shape=som_shape, som_shape_north=som_shape_north)
    random, spec = run.random(), run.spec()
    maps, info = {}, {}
    shapes = {"S": tuple(p["som_shape"]), "N": tuple(p["som_shape_north"])}
    for region in REGIONS:
        folder = run.path(f"som/{region}")
        som, info[region] = train_region_map(random, region, shapes[region], seed=seed,
                                             epochs=epochs, backend=backend,
                                             min_train=min_train, progress=progress)
        if som is None:
            if folder.exists():
                import shutil

                shutil.rmtree(folder)
            continue
        som.save(folder)
        maps[region] = som
    if not maps:
        raise ValueError("no footprint has enough random-sample galaxies for a SOM")
    cells = spec_cells(spec, maps)
    cells.to_parquet(run.path("som/spec_cells.parquet"), index=False)
    run.record("som", {"scale": scale, "seed": seed, "shapes": shapes, "epochs": epochs,
                       "backend": backend})
    info["maps"] = maps
    info["spec_cells"] = cells
    return info


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


def load_maps(run: Run) -> dict[str, Any]:
    """The trained SOMs of a run, ``{"S": SOM, "N": SOM}`` (those that exist)."""
    from photozsom.som import SOM

    maps = {r: SOM.load(run.root / "som" / r) for r in REGIONS if (run.root / "som" / r).exists()}
    if not maps:
        run.need("som/S")
    return maps


def run_embed(run: Run, *, scale: str = "ci", seed: int = 0, embedder: str = "encoder",
              aion_model: str = "polymathic-ai/aion-base", dim: int | None = None,
              epochs: int | None = None) -> dict[str, Any]:
    """Stage "embed": pretrain the built-in encoder on unlabelled random-sample cutouts (or
    load AION-1) and embed every cutout into ``embed/embeddings.h5`` (keyed by OBJID)."""
    from photozsom.embed import AIONEmbedder, Encoder, embed_to_file

    p = preset(scale, embed_dim=dim, embed_epochs=epochs)
    store = run.cutouts_path()
    info: dict[str, Any] = {}
    if embedder == "encoder":
        random = run.random()
        ids = random.loc[random["HAS_CUTOUT"].astype(bool), "OBJID"].to_numpy() \
            if "HAS_CUTOUT" in random else None
        model = Encoder(dim=int(p["embed_dim"]), seed=seed)
        history = model.fit(store, epochs=int(p["embed_epochs"]), objid=ids,
                            checkpoint=run.path("embed/encoder.ckpt"))
        model.save(run.path("embed/encoder"))
        info["history"] = pd.DataFrame(history)
        info["n_pretrain"] = None if ids is None else len(ids)
    elif embedder == "aion":
        model = AIONEmbedder(aion_model)
    else:
        raise ValueError(f"embedder must be 'encoder' or 'aion', got {embedder!r}")
    out = run.path("embed/embeddings.h5")
    embed_to_file(model, store, out)
    info["model"] = model
    run.record("embed", {"scale": scale, "seed": seed, "embedder": embedder,
                         "aion_model": aion_model if embedder == "aion" else None,
                         "dim": p["embed_dim"], "epochs": p["embed_epochs"]})
    return info


def model_inputs(run: Run, spec: pd.DataFrame, inputs: str) -> pd.DataFrame:
    """The spectroscopic sample with the embedding columns a ``features=inputs`` model needs."""
    if inputs == "catalog":
        return spec
    from photozsom.embed import load_embeddings
    from photozsom.model import with_embeddings

    objid = spec["OBJID"].to_numpy()
    emb, ids = load_embeddings(run.need("embed/embeddings.h5"), objid=objid)
    full = np.full((len(spec), emb.shape[1]), np.nan, dtype=np.float32)
    pos = pd.Index(objid).get_indexer(np.asarray(ids))
    full[pos[pos >= 0]] = emb[pos >= 0]   # a galaxy without an embedding keeps NaN: not scored
    return with_embeddings(spec, full)


def _fit_predict(run: Run, name: str, model: Any, spec: pd.DataFrame, *, cv_folds: int, seed: int,
                 progress: bool) -> dict[str, Any]:
    """Fit on train (+val), predict the test split, out-of-fold predictions of train+val."""
    from photozsom.evaluation.results import prediction_table

    split = spec["SPLIT"].to_numpy()
    tr, va, te = (split == s for s in ("train", "val", "test"))
    z = spec["Z"].to_numpy(np.float64)
    model.fit(spec[tr], z[tr], spec[va], z[va], progress=progress)
    model.save(run.path(f"{name}/model"))
    pdf, ok, _ = model.predict_with_status(spec[te])
    ids = spec["OBJID"].to_numpy()
    pred = prediction_table(pdf, ids[te][ok], z[te][ok])
    pred.to_parquet(run.path(f"{name}/predictions.parquet"), index=False)
    pdf.save(run.path(f"{name}/test_pdf.npz"))
    out = {"model": model, "predictions": pred, "n_test_unscored": int((~ok).sum())}
    if cv_folds and model.estimator == "mdn":
        oof, oof_pdf = oof_predictions(model, spec, cv_folds=cv_folds, seed=seed,
                                       progress=progress)
        oof.to_parquet(run.path(f"{name}/oof_predictions.parquet"), index=False)
        oof_pdf.save(run.path(f"{name}/oof_pdf.npz"))
        out["oof"] = oof
    return out


def run_mdn(run: Run, *, scale: str = "ci", seed: int = 0, inputs: str = "embedding",
            hidden: Sequence[int] = (256, 256, 256), max_epochs: int | None = None,
            cv_folds: int | None = None, recalibration: str | None = None,
            catalog_features: Sequence[str] | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Stage "mdn": the paper's model — a :class:`~photozsom.model.PhotoZModel` with the MDN.

    Trained on the training split with early stopping on the validation split; predicts the
    test split (``mdn/predictions.parquet``, the paper's Table 1) and, with ``cv_folds``,
    every training and validation galaxy out of fold (``mdn/oof_predictions.parquet``, for
    the per-cell analysis: each galaxy predicted by a model that never saw it; the inputs'
    imputer is the one fitted on the training split).
    """
    from photozsom.features import CATALOG_FEATURES
    from photozsom.model import PhotoZModel

    p = preset(scale, mdn_max_epochs=max_epochs, cv_folds=cv_folds)
    feats = tuple(catalog_features or CATALOG_FEATURES)
    features = {"embedding": "embedding", "catalog": "catalog", "embedding+catalog": "both",
                "both": "both"}.get(inputs)
    if features is None:
        raise ValueError(f"inputs must be 'embedding', 'catalog' or 'embedding+catalog', got {inputs!r}")
    spec = model_inputs(run, run.spec_with_split(), features)
    model = PhotoZModel(features, seed=seed, hidden=tuple(hidden), catalog_features=feats,
                        max_epochs=int(p["mdn_max_epochs"]), recalibration=recalibration)
    out = _fit_predict(run, "mdn", model, spec, cv_folds=int(p["cv_folds"]), seed=seed,
                       progress=progress)
    run.record("mdn", {"scale": scale, "seed": seed, "inputs": inputs, "hidden": list(hidden),
                       "max_epochs": p["mdn_max_epochs"], "cv_folds": p["cv_folds"],
                       "recalibration": recalibration, "catalog_features": list(feats)})
    return out


def run_baseline(run: Run, *, scale: str = "ci", seed: int = 0, n_estimators: int | None = None,
                 catalog_features: Sequence[str] | None = None, catalog_mdn: bool = True,
                 progress: bool = False) -> dict[str, Any]:
    """Stage "baseline": the Zhou et al. random forest (and a catalogue-feature MDN) as
    :class:`~photozsom.model.PhotoZModel` s on the same split, predicting the test split."""
    from photozsom.features import CATALOG_FEATURES
    from photozsom.model import PhotoZModel

    p = preset(scale, n_estimators=n_estimators)
    feats = tuple(catalog_features or CATALOG_FEATURES)
    spec = run.spec_with_split()
    rf = PhotoZModel("catalog", estimator="random_forest", seed=seed, catalog_features=feats,
                     n_estimators=int(p["n_estimators"]))
    out = {"rf": _fit_predict(run, "baseline", rf, spec, cv_folds=0, seed=seed, progress=False)}
    if catalog_mdn:
        from photozsom.evaluation.results import prediction_table

        cat = fit_photoz_model(run, spec, "catalog", scale=scale, seed=seed,
                               progress=progress, catalog_features=feats)
        te = (spec["SPLIT"] == "test").to_numpy()
        pdf, ok, _ = cat.predict_with_status(spec[te])
        res = prediction_table(pdf, spec["OBJID"].to_numpy()[te][ok],
                               spec["Z"].to_numpy(np.float64)[te][ok])
        res.to_parquet(run.path("baseline/catalog_mdn.parquet"), index=False)
        out["catalog_mdn"] = res
    run.record("baseline", {"scale": scale, "seed": seed, "n_estimators": p["n_estimators"],
                            "catalog_features": list(feats), "catalog_mdn": catalog_mdn})
    return out


def run_cells(run: Run, *, scale: str = "ci", seed: int = 0, n_boot: int | None = None,
              fdr: float = 0.05, evaluate_on: str = "out-of-fold") -> dict[str, Any]:
    """Stage "cells": per-cell performance on each map, with training counts.

    Evaluated galaxies are the out-of-fold predictions (every labelled galaxy) or the test
    split (``evaluate_on="test"``, the paper). Training counts are the training-split
    galaxies per cell. Writes one :class:`~photozsom.evaluation.cells.CellReport` per map
    (``cells/S``, ``cells/N``) and ``cells/evaluated.parquet`` (the evaluated galaxies with
    their SOM and cell).
    """
    p = preset(scale, n_boot=n_boot)
    name = {"out-of-fold": "mdn/oof_predictions.parquet", "test": "mdn/predictions.parquet"}
    if evaluate_on not in name:
        raise ValueError(f"evaluate_on must be 'out-of-fold' or 'test', got {evaluate_on!r}")
    pred = pd.read_parquet(run.need(name[evaluate_on]))
    sc = pd.read_parquet(run.need("som/spec_cells.parquet")).set_index("OBJID")
    split = run.split()
    maps = load_maps(run)
    ev = pred.join(sc, on="OBJID")
    reports = cell_reports(ev, sc, split, maps, n_boot=int(p["n_boot"]), seed=seed, fdr=fdr)
    for region, rep in reports.items():
        rep.save(run.path(f"cells/{region}"))
    ev.to_parquet(run.path("cells/evaluated.parquet"), index=False)
    run.record("cells", {"scale": scale, "seed": seed, "n_boot": p["n_boot"], "fdr": fdr,
                         "evaluate_on": evaluate_on})
    return {"reports": reports, "evaluated": ev, "maps": maps}


def cell_reports(evaluated: pd.DataFrame, spec_cells: pd.DataFrame, split: pd.Series,
                 maps: Mapping[str, Any], *, n_boot: int, seed: int = 0,
                 fdr: float = 0.05) -> dict[str, Any]:
    """One :class:`~photozsom.evaluation.cells.CellReport` per map (:func:`photozsom.flags.cell_reports`).

    ``evaluated`` holds the evaluated galaxies (``Z``, ``Z_PHOT``, ``PIT``, ``SOM``,
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
        located, np.r_[evaluated["Z"].to_numpy(), pad], np.r_[evaluated["Z_PHOT"].to_numpy(), pad],
        np.r_[evaluated["PIT"].to_numpy(), pad], np.r_[np.zeros(n_ev, bool), np.ones(n_tr, bool)],
        maps, n_boot=n_boot, seed=seed, fdr=fdr, evaluate=np.r_[np.ones(n_ev, bool),
                                                                np.zeros(n_tr, bool)])


def load_reports(run: Run) -> dict[str, Any]:
    """The :class:`~photozsom.evaluation.cells.CellReport` of each map of a run."""
    from photozsom.evaluation.cells import CellReport

    return {r: CellReport.load(run.root / "cells" / r) for r in REGIONS
            if (run.root / "cells" / r).exists()}


def run_flags(run: Run, *, scale: str = "ci", min_count: int | str | None = "auto",
              distance_quantile: float | str = "auto",
              flag_metrics: Sequence[str] = ("mad", "eta", "pco", "bias"),
              target: str = "outlier") -> dict[str, Any]:
    """Stage "flags": a :class:`~photozsom.flags.SOMFlagger` on the run's maps and cell reports,
    saved in ``flags/flagger``, and the flags of the random sample.

    ``min_count`` and ``distance_quantile`` are chosen per map by
    :func:`photozsom.flags.choose_thresholds` when ``"auto"`` (the default): scored on the
    evaluated galaxies of the cells stage (out-of-fold photo-z, leave-one-out training
    counts) as detectors of ``target`` ("outlier": catastrophic outliers), with the random
    sample as the user's sample. A number fixes one; ``min_count=None`` takes the scale's
    preset. When a map has too few bad galaxies to choose from, the preset (``min_count``)
    and 0.99 are used with a warning. The scan is written to
    ``flags/threshold_choice.csv`` (empty when both thresholds are given).
    """
    for name, v in (("min_count", min_count), ("distance_quantile", distance_quantile)):
        if isinstance(v, str) and v != "auto":
            raise ValueError(f'{name} must be a number or "auto", got {v!r}')
    p = preset(scale, min_count=None if min_count == "auto" else min_count)
    maps, reports = load_maps(run), load_reports(run)
    if not reports:
        run.need("cells/S")
    random = run.random()
    ev = pd.read_parquet(run.need("cells/evaluated.parquet"))
    labelled = run.spec().set_index("OBJID").loc[ev["OBJID"].to_numpy()].reset_index()
    in_train = (run.split().reindex(ev["OBJID"].to_numpy()) == "train").to_numpy()
    fl = SOMFlagger(min_count="auto" if min_count == "auto" else int(p["min_count"]),
                    distance_quantile=distance_quantile, metrics=flag_metrics, target=target,
                    fallback=(int(p["min_count"]), 0.99), progress=False)
    fl.fit(random, labelled, ev["Z"].to_numpy(), ev["Z_PHOT"].to_numpy(), ev["PIT"].to_numpy(),
           in_train=in_train, maps=maps, reports=reports)
    # the scan (empty when both thresholds were given)
    fl.threshold_choice_.to_csv(run.path("flags/threshold_choice.csv"), index=False)
    fl.save(run.path("flags/flagger"))
    flagged = fl.flag(random)
    flagged.insert(0, "OBJID", random["OBJID"].to_numpy())
    flagged.to_parquet(run.path("flags/random_flags.parquet"), index=False)
    chosen = fl.thresholds_
    run.record("flags", {"scale": scale, "min_count": min_count,
                         "distance_quantile": distance_quantile, "target": target,
                         "chosen": {r: list(v) for r, v in chosen.items()},
                         "metrics": list(flag_metrics)})
    return {"flagger": fl, "random_flags": flagged, "chosen": chosen}


def build_flagger(run: Run, thresholds: Mapping[str, Sequence[float]], *,
                  flag_metrics: Sequence[str] = ("mad", "eta", "pco", "bias")) -> Any:
    """A :class:`~photozsom.flags.RegionalFlagger` of a run's maps and cell reports with
    ``thresholds[region] = (min_count, distance_quantile)`` (nothing is written)."""
    from photozsom.flags import Flagger, RegionalFlagger

    maps, reports = load_maps(run), load_reports(run)
    if not reports:
        run.need("cells/S")
    missing = set(reports) - set(thresholds)
    if missing:
        raise ValueError(f"no thresholds for map(s) {sorted(missing)}")
    return RegionalFlagger({
        r: Flagger(maps[r], reports[r], min_count=int(thresholds[r][0]),
                   distance_quantile=float(thresholds[r][1]), metrics=tuple(flag_metrics))
        for r in reports})


#: Columns of the published DR10 photo-z catalogue (Zhou et al.) a sample may carry.
PUBLISHED_PHOTOZ = ("Z_PHOT_MEAN", "Z_PHOT_MEDIAN", "Z_PHOT_STD", "Z_PHOT_L68", "Z_PHOT_U68",
                    "Z_PHOT_L95", "Z_PHOT_U95")


def published_photoz(run: Run, split: str = "test") -> pd.DataFrame | None:
    """Prediction table of the published DR10 photo-z columns on a split, if the sample has them.

    The paper's baseline row is the published catalogue on the matched subset; its P(z) is
    rebuilt from the published quantiles by :func:`photozsom.baseline.published_photoz_pdf`.
    Returns None when the spectroscopic sample lacks the columns (the simulated sky does).
    """
    spec = run.spec_with_split()
    if not set(PUBLISHED_PHOTOZ) <= set(spec.columns):
        return None
    from photozsom.baseline import published_photoz_valid
    from photozsom.evaluation.results import published_table

    sub = spec[(spec["SPLIT"] == split).to_numpy()]
    return published_table(sub[published_photoz_valid(sub)])


def flag_by_magnitude(run: Run, flagger: Any, *, bins: Sequence[float] | None = None) -> pd.DataFrame:
    """Flagged fraction of the random sample and photo-z metrics of flagged vs unflagged
    evaluated galaxies, per r-band magnitude bin, for ``flagger`` (e.g. the run's, or one
    with other thresholds from :func:`build_flagger`).

    Returns
    -------
    DataFrame
        One row per bin: ``r_lo, r_hi`` [AB mag], ``n_random``, ``flagged``, ``ood``,
        ``underperforming`` (fractions of the random sample), ``n_eval_flagged``,
        ``n_eval_unflagged``, and ``mad_flagged``, ``mad_unflagged``, ``eta_flagged``,
        ``eta_unflagged`` of the evaluated spectroscopic galaxies.
    """
    from photozsom.evaluation import metrics
    from photozsom.features import magnitudes

    random = run.random()
    rf = flagger.flag(random)
    r_rand = magnitudes(random, ("R",))["r"].to_numpy()
    ev = pd.read_parquet(run.need("cells/evaluated.parquet"))
    spec = run.spec().set_index("OBJID")
    sub = spec.loc[ev["OBJID"].to_numpy()]
    fl = flagger.flag(sub.reset_index())
    r_ev = magnitudes(sub, ("R",))["r"].to_numpy()
    if bins is None:
        fin = r_rand[np.isfinite(r_rand)]
        bins = np.unique(np.round(np.quantile(fin, np.linspace(0, 1, 7)), 1))
    bins = np.asarray(bins, dtype=np.float64)
    rows = []
    for lo, hi in itertools.pairwise(bins):
        inr = (r_rand >= lo) & (r_rand < hi)
        ine = (r_ev >= lo) & (r_ev < hi)
        row = {"r_lo": lo, "r_hi": hi, "n_random": int(inr.sum()),
               "flagged": rf["flag"].to_numpy()[inr].mean() if inr.any() else np.nan,
               "ood": rf["ood"].to_numpy()[inr].mean() if inr.any() else np.nan,
               "underperforming": rf["underperforming"].to_numpy()[inr].mean() if inr.any() else np.nan}
        for name, sel in (("flagged", ine & fl["flag"].to_numpy()),
                          ("unflagged", ine & ~fl["flag"].to_numpy())):
            row[f"n_eval_{name}"] = int(sel.sum())
            ok = sel.sum() > 0
            zt, zp = ev["Z"].to_numpy()[sel], ev["Z_PHOT"].to_numpy()[sel]
            row[f"mad_{name}"] = metrics.mad(zt, zp) if ok else np.nan
            row[f"eta_{name}"] = metrics.outlier_fraction(zt, zp) if ok else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def prepare_bgs_example(out_dir: str | os.PathLike, *, scale: str = "ci", seed: int = 0,
                        val_rosettes: Sequence[int] = (15,), report_rosettes: Sequence[int] = (14,),
                        held_out_rosettes: Sequence[int] = (18, 19)) -> dict[str, Path]:
    """Write the shipped DESI EDR BGS galaxies as a user would bring them, split by rosette.

    ``labelled.parquet`` holds the training rosettes (``SPLIT`` = "train"), the validation
    rosettes ("val": early stopping) and the report rosettes ("test": the per-cell report
    the flag is built from); ``held_out.parquet`` holds the remaining rosettes, which no model
    sees until ``photozsom predict``. Whole rosettes go to one part, so train and held-out
    galaxies are spatially disjoint. At scales other than "default" a seeded fraction
    (``SCALES[scale]["real_fraction"]``) of each rosette is kept.
    """
    from photozsom.data.desi_edr import load_bgs_north

    bgs = load_bgs_north()
    frac = float(preset(scale)["real_fraction"])
    if frac < 1:
        keep = np.random.default_rng(seed).random(len(bgs)) < frac
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


def fit_photoz_model(run: Run, spec: pd.DataFrame, features: str, *, scale: str = "ci",
                     seed: int = 0, estimator: str = "mdn", progress: bool = False,
                     **options: Any) -> Any:
    """A :class:`~photozsom.model.PhotoZModel` on a run's training split (validation split
    for early stopping), with the inputs ``features`` needs attached from the run."""
    from photozsom.model import PhotoZModel

    if "SPLIT" not in spec:
        raise ValueError("spec needs a SPLIT column: use Run.spec_with_split()")
    data = model_inputs(run, spec, features)
    split = data["SPLIT"].to_numpy()
    tr, va = split == "train", split == "val"
    z = data["Z"].to_numpy(np.float64)
    if estimator == "mdn":
        options.setdefault("max_epochs", int(preset(scale)["mdn_max_epochs"]))
    model = PhotoZModel(features, seed=seed, estimator=estimator, **options)
    return model.fit(data[tr], z[tr], data[va], z[va], progress=progress)



def _combined_cells(run: Run, objid: np.ndarray) -> np.ndarray:
    """One cell id per galaxy over both maps (south cells first, then north); -1: none."""
    sc = pd.read_parquet(run.need("som/spec_cells.parquet")).set_index("OBJID").reindex(objid)
    maps = load_maps(run)
    offset, out = 0, np.full(len(objid), -1, dtype=np.int64)
    for region in REGIONS:
        if region not in maps:
            continue
        sel = (sc["SOM"] == region).to_numpy() & (sc["CELL"].to_numpy() >= 0)
        out[sel] = offset + sc["CELL"].to_numpy()[sel].astype(np.int64)
        offset += maps[region].n_cells
    return out


def _calibration_summary(pdf: Any, z: np.ndarray) -> dict[str, float]:
    from photozsom.evaluation import metrics

    pit = np.clip(pdf.pit(z), 0, 1)
    out = {"PCO_%": 100 * metrics.pco_fraction(pit), "KS": metrics.pit_stats(pit)["ks"],
           "CRPS": float(np.mean(pdf.crps(z)))}
    for level in (0.68, 0.95):
        lo, hi = pdf.interval(level)
        out[f"coverage_{int(level * 100)}_%"] = 100 * float(np.mean((z >= lo) & (z <= hi)))
    return out


def run_calibrate(run: Run, *, scale: str = "ci", seed: int = 0, shrinkage: float = 50.0,
                  n_boot: int | None = None, fdr: float = 0.05) -> dict[str, Any]:
    """Stage "calibrate": PIT recalibration of the MDN's P(z), global and per SOM cell.

    Both recalibrators are fitted on the out-of-fold P(z) of the labelled galaxies and scored
    on the untouched test split (PCO, KS distance of the PIT from uniform, CRPS, 68% and
    95% interval coverage). The per-cell analysis of the southern map is re-run on the
    out-of-fold predictions recalibrated *cross-fitted* (each fold by maps fitted on the
    others), so no galaxy is scored by a map that saw it. The MDN model with the global
    recalibration inside is saved as ``calibrate/model`` (``photozsom predict --model``).
    """
    from photozsom.calibrate import Recalibrator
    from photozsom.evaluation import cells
    from photozsom.model import PhotoZModel
    from photozsom.pdf import MixturePDF

    p = preset(scale, n_boot=n_boot)
    oof = pd.read_parquet(run.need("mdn/oof_predictions.parquet"))
    oof_pdf = MixturePDF.load(run.need("mdn/oof_pdf.npz"))
    test = pd.read_parquet(run.need("mdn/predictions.parquet"))
    test_pdf = MixturePDF.load(run.need("mdn/test_pdf.npz"))
    z_oof, z_test = oof["Z"].to_numpy(), test["Z"].to_numpy()
    c_oof = _combined_cells(run, oof["OBJID"].to_numpy())
    c_test = _combined_cells(run, test["OBJID"].to_numpy())
    rc = {"global": Recalibrator("global").fit(oof_pdf, z_oof),
          "cell": Recalibrator("cell", shrinkage=shrinkage).fit(oof_pdf, z_oof, cells=c_oof)}
    after = {"global": rc["global"].apply(test_pdf),
             "cell": rc["cell"].apply(test_pdf, cells=c_test)}
    summary = pd.DataFrame({"before": _calibration_summary(test_pdf, z_test),
                            **{f"after ({k})": _calibration_summary(v, z_test)
                               for k, v in after.items()}}).T
    for k, r in rc.items():
        r.save(run.path(f"calibrate/{k}"))
    summary.to_csv(run.path("calibrate/summary.csv"))
    model = PhotoZModel.load(run.need("mdn/model"))
    model.recalibration, model.recalibrator_ = "global", rc["global"]
    model.save(run.path("calibrate/model"))

    # per-cell analysis before and after, cross-fitted over the out-of-fold folds
    fold = oof["FOLD"].to_numpy()
    cal_w = np.empty_like(np.asarray(oof_pdf.weights))
    for kind in ("global", "cell"):
        for f in np.unique(fold):
            a = fold == f
            r = (Recalibrator(kind, shrinkage=shrinkage)
                 .fit(oof_pdf[~a], z_oof[~a], cells=None if kind == "global" else c_oof[~a]))
            cal_w[a] = r.apply(oof_pdf[a], cells=None if kind == "global" else c_oof[a]).weights
        after[f"oof_{kind}"] = MixturePDF(cal_w.copy())
    som = load_maps(run)["S"]
    rep_before = load_reports(run)["S"]
    south = (c_oof >= 0) & (c_oof < som.n_cells)
    reports = {"before": rep_before}
    for kind in ("global", "cell"):
        pdf = after[f"oof_{kind}"]
        reports[f"after ({kind})"] = cells.report(
            c_oof[south], z_oof[south], pdf.mean()[south], np.clip(pdf.pit(z_oof)[south], 0, 1),
            som.n_cells, rep_before.table["n_train"].to_numpy(), n_boot=int(p["n_boot"]),
            seed=seed, fdr=fdr)
    worse = pd.DataFrame({k: {m: int(r.table[f"{m}_worse"].sum()) for m in cells.METRICS}
                          for k, r in reports.items()}).T
    pco_cells = pd.DataFrame({k: r.table["pco"] for k, r in reports.items()})
    worse.to_csv(run.path("calibrate/worse_cells.csv"))
    run.record("calibrate", {"scale": scale, "seed": seed, "shrinkage": shrinkage,
                             "n_boot": p["n_boot"], "fdr": fdr})
    return {"summary": summary, "recalibrators": rc, "test_pdf": test_pdf, "after": after,
            "z_test": z_test, "worse_cells": worse, "pco_cells": pco_cells, "reports": reports}
