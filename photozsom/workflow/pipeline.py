"""The pipeline: one function per stage, each reading and writing the files it declares.

The stages, in order (:data:`~photozsom.workflow.run.STAGES` declares their inputs and
outputs; :mod:`photozsom.workflow.run` holds the run directory, presets and provenance)::

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

Each stage calls the package (:mod:`photozsom.sim`, :mod:`photozsom.data`, :mod:`photozsom.som`,
:mod:`photozsom.model`, :mod:`photozsom.flags`, :mod:`photozsom.calibrate`, ...; the two
footprints' maps, reports and flaggers through :mod:`photozsom.workflow.regions`) and records
its parameters with :meth:`~photozsom.workflow.run.Run.record`.

Examples
--------
>>> run = Run("runs/tiny")                                   # doctest: +SKIP
>>> run_data(run, scale="tiny"); run_som(run, scale="tiny")  # doctest: +SKIP
>>> check(run)                                               # doctest: +SKIP
{}
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from photozsom.artifacts import read_json
from photozsom.calibrate import Recalibrator, cross_fitted, pco_noise
from photozsom.data.assemble import from_files, validated_catalogue
from photozsom.embed import AIONEmbedder, Encoder, embed_to_file, load_embeddings
from photozsom.evaluation import cells
from photozsom.evaluation.cells import CellReport
from photozsom.evaluation.results import (
    calibration_summary,
    flag_magnitude_table,
    prediction_table,
)
from photozsom.features import CATALOG_FEATURES
from photozsom.flags import SOMFlagger
from photozsom.io import read_table
from photozsom.model import PhotoZModel, with_embeddings
from photozsom.pdf import MixturePDF
from photozsom.schema import point_column
from photozsom.sim import simulate
from photozsom.som import SOM
from photozsom.train import make_split, oof_predictions
from photozsom.workflow.regions import (
    REGIONS,
    cell_reports,
    combined_cells,
    regional_flagger,
    spec_cells,
    train_region_map,
)
from photozsom.workflow.run import (
    SCALES,
    STAGES,
    Run,
    StaleRunError,
    check,
    downstream,
    layout,
    preset,
    require_consistent,
    stage_folder,
)

__all__ = [
    "SCALES", "STAGES", "Run", "StaleRunError", "build_flagger", "cell_reports", "check",
    "downstream", "fit_photoz_model", "flag_by_magnitude", "layout", "load_maps",
    "load_reports", "make_split", "model_inputs", "oof_predictions", "preset",
    "require_consistent", "run_baseline", "run_calibrate", "run_cells", "run_data", "run_embed",
    "run_flags", "run_mdn", "run_som", "spec_cells", "stage_folder", "train_region_map",
]


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
    sky = run.write("sky/")
    info: dict[str, Any] = {}
    if spec_catalog is not None:
        spec = validated_catalogue(read_table(spec_catalog), str(spec_catalog), need_z=True)
        spec.to_parquet(sky / "spec.parquet", index=False)
        if random_catalog is not None:
            rnd = validated_catalogue(read_table(random_catalog), str(random_catalog))
        else:
            rnd = spec.drop(columns=["Z"])
            info["random_is_spec"] = True
        rnd.to_parquet(sky / "random.parquet", index=False)
        info["source"] = f"catalogue {spec_catalog}"
    elif spec_files is not None:
        info.update(from_files(sky, spec_files, sweep_files, random_files, cutout_dir,
                               download))
    else:
        simulate(sky, scale=preset(scale)["sky"], seed=seed, overwrite=False, progress=progress)
        info["source"] = f"simulated sky (scale {scale!r}, seed {seed})"
        info["settings"] = read_json(run.read("sky/settings.json"))
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
        folder = run.write(f"som/{region}")
        som, info[region] = train_region_map(random, region, shapes[region], seed=seed,
                                             epochs=epochs, backend=backend,
                                             min_train=min_train, progress=progress)
        if som is None:
            if folder.exists():
                shutil.rmtree(folder)
            continue
        som.save(folder)
        maps[region] = som
    if not maps:
        raise ValueError("no footprint has enough random-sample galaxies for a SOM")
    cells = spec_cells(spec, maps)
    cells.to_parquet(run.write("som/spec_cells.parquet"), index=False)
    run.record("som", {"scale": scale, "seed": seed, "shapes": shapes, "epochs": epochs,
                       "backend": backend})
    info["maps"] = maps
    info["spec_cells"] = cells
    return info


def load_maps(run: Run) -> dict[str, Any]:
    """The trained SOMs of a run, ``{"S": SOM, "N": SOM}`` (those that exist)."""
    maps = {r: SOM.load(run.read(f"som/{r}")) for r in REGIONS if run.exists(f"som/{r}")}
    if not maps:
        run.read("som/S")
    return maps


def run_embed(run: Run, *, scale: str = "ci", seed: int = 0, embedder: str = "encoder",
              aion_model: str = "polymathic-ai/aion-base", dim: int | None = None,
              epochs: int | None = None) -> dict[str, Any]:
    """Stage "embed": pretrain the built-in encoder on unlabelled random-sample cutouts (or
    load AION-1) and embed every cutout into ``embed/embeddings.h5`` (keyed by OBJID)."""
    p = preset(scale, embed_dim=dim, embed_epochs=epochs)
    store = run.cutouts_path()
    info: dict[str, Any] = {}
    if embedder == "encoder":
        random = run.random()
        ids = random.loc[random["HAS_CUTOUT"].astype(bool), "OBJID"].to_numpy() \
            if "HAS_CUTOUT" in random else None
        model = Encoder(dim=int(p["embed_dim"]), seed=seed)
        history = model.fit(store, epochs=int(p["embed_epochs"]), objid=ids,
                            checkpoint=run.write("embed/encoder.ckpt"))
        model.save(run.write("embed/encoder"))
        info["history"] = pd.DataFrame(history)
        info["n_pretrain"] = None if ids is None else len(ids)
    elif embedder == "aion":
        model = AIONEmbedder(aion_model)
    else:
        raise ValueError(f"embedder must be 'encoder' or 'aion', got {embedder!r}")
    out = run.write("embed/embeddings.h5")
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
    objid = spec["OBJID"].to_numpy()
    emb, ids = load_embeddings(run.read("embed/embeddings.h5"), objid=objid)
    full = np.full((len(spec), emb.shape[1]), np.nan, dtype=np.float32)
    pos = pd.Index(objid).get_indexer(np.asarray(ids))
    full[pos[pos >= 0]] = emb[pos >= 0]   # a galaxy without an embedding keeps NaN: not scored
    return with_embeddings(spec, full)


def _fit_predict(run: Run, name: str, model: Any, spec: pd.DataFrame, *, cv_folds: int, seed: int,
                 progress: bool) -> dict[str, Any]:
    """Fit on train (+val), predict the test split, out-of-fold predictions of train+val."""
    split = spec["SPLIT"].to_numpy()
    tr, va, te = (split == s for s in ("train", "val", "test"))
    z = spec["Z"].to_numpy(np.float64)
    model.fit(spec[tr], z[tr], spec[va], z[va], progress=progress)
    model.save(run.write(f"{name}/model"))
    pdf, ok, _ = model.predict_with_status(spec[te])
    ids = spec["OBJID"].to_numpy()
    pred = prediction_table(pdf, ids[te][ok], z[te][ok])
    pred.to_parquet(run.write(f"{name}/predictions.parquet"), index=False)
    pdf.save(run.write(f"{name}/test_pdf.npz"))
    out = {"model": model, "predictions": pred, "n_test_unscored": int((~ok).sum())}
    if cv_folds and model.estimator == "mdn":
        oof, oof_pdf = oof_predictions(model, spec, cv_folds=cv_folds, seed=seed,
                                       progress=progress)
        oof.to_parquet(run.write(f"{name}/oof_predictions.parquet"), index=False)
        oof_pdf.save(run.write(f"{name}/oof_pdf.npz"))
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
    p = preset(scale, mdn_max_epochs=max_epochs, cv_folds=cv_folds)
    feats = tuple(catalog_features or CATALOG_FEATURES)
    features = {"embedding": "embedding", "catalog": "catalog", "embedding+catalog": "both",
                "both": "both"}.get(inputs)
    if features is None:
        raise ValueError(f"inputs must be 'embedding', 'catalog' or 'embedding+catalog', got {inputs!r}")
    spec = model_inputs(run, run.spec_with_split(), features)
    model = PhotoZModel(features, seed=seed, hidden=tuple(hidden), catalog_features=feats,
                        max_epochs=p["mdn_max_epochs"], recalibration=recalibration)
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
    p = preset(scale, n_estimators=n_estimators)
    feats = tuple(catalog_features or CATALOG_FEATURES)
    spec = run.spec_with_split()
    rf = PhotoZModel("catalog", estimator="random_forest", seed=seed, catalog_features=feats,
                     n_estimators=int(p["n_estimators"]))
    out = {"rf": _fit_predict(run, "baseline", rf, spec, cv_folds=0, seed=seed, progress=False)}
    if catalog_mdn:
        cat = fit_photoz_model(run, spec, "catalog", scale=scale, seed=seed,
                               progress=progress, catalog_features=feats)
        te = (spec["SPLIT"] == "test").to_numpy()
        pdf, ok, _ = cat.predict_with_status(spec[te])
        res = prediction_table(pdf, spec["OBJID"].to_numpy()[te][ok],
                               spec["Z"].to_numpy(np.float64)[te][ok])
        res.to_parquet(run.write("baseline/catalog_mdn.parquet"), index=False)
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
    pred = pd.read_parquet(run.read(name[evaluate_on]))
    sc = pd.read_parquet(run.read("som/spec_cells.parquet")).set_index("OBJID")
    split = run.split()
    maps = load_maps(run)
    ev = pred.join(sc, on="OBJID")
    reports = cell_reports(ev, sc, split, maps, n_boot=int(p["n_boot"]), seed=seed, fdr=fdr)
    for region, rep in reports.items():
        rep.save(run.write(f"cells/{region}"))
    ev.to_parquet(run.write("cells/evaluated.parquet"), index=False)
    run.record("cells", {"scale": scale, "seed": seed, "n_boot": p["n_boot"], "fdr": fdr,
                         "evaluate_on": evaluate_on})
    return {"reports": reports, "evaluated": ev, "maps": maps}


def load_reports(run: Run) -> dict[str, Any]:
    """The :class:`~photozsom.evaluation.cells.CellReport` of each map of a run."""
    return {r: CellReport.load(run.read(f"cells/{r}")) for r in REGIONS if run.exists(f"cells/{r}")}


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
        run.read("cells/S")
    random = run.random()
    ev = pd.read_parquet(run.read("cells/evaluated.parquet"))
    labelled = run.spec().set_index("OBJID").loc[ev["OBJID"].to_numpy()].reset_index()
    in_train = (run.split().reindex(ev["OBJID"].to_numpy()) == "train").to_numpy()
    fl = SOMFlagger(min_count="auto" if min_count == "auto" else int(p["min_count"]),
                    distance_quantile=distance_quantile, metrics=flag_metrics, target=target,
                    fallback=(int(p["min_count"]), 0.99), progress=False)
    fl.fit(random, labelled, ev["Z"].to_numpy(), ev[point_column(ev)].to_numpy(), ev["PIT"].to_numpy(),
           in_train=in_train, maps=maps, reports=reports)
    # the scan (empty when both thresholds were given)
    fl.threshold_choice_.to_csv(run.write("flags/threshold_choice.csv"), index=False)
    fl.save(run.write("flags/flagger"))
    flagged = fl.flag(random)
    flagged.insert(0, "OBJID", random["OBJID"].to_numpy())
    flagged.to_parquet(run.write("flags/random_flags.parquet"), index=False)
    chosen = fl.thresholds_
    run.record("flags", {"scale": scale, "min_count": min_count,
                         "distance_quantile": distance_quantile, "target": target,
                         "chosen": {r: list(v) for r, v in chosen.items()},
                         "metrics": list(flag_metrics)})
    return {"flagger": fl, "random_flags": flagged, "chosen": chosen}


def build_flagger(run: Run, thresholds: Mapping[str, Sequence[float]], *,
                  flag_metrics: Sequence[str] = ("mad", "eta", "pco", "bias")) -> Any:
    """:func:`~photozsom.workflow.regions.regional_flagger` of a run's maps and cell reports
    with ``thresholds[region] = (min_count, distance_quantile)`` (nothing is written)."""
    reports = load_reports(run)
    if not reports:
        run.read("cells/S")
    return regional_flagger(load_maps(run), reports, thresholds, flag_metrics=flag_metrics)


def flag_by_magnitude(run: Run, flagger: Any, *, bins: Sequence[float] | None = None) -> pd.DataFrame:
    """:func:`photozsom.evaluation.results.flag_magnitude_table` of a run: its random sample
    and its evaluated galaxies (``cells/evaluated.parquet``) flagged by ``flagger`` (e.g. the
    run's, or one with other thresholds from :func:`build_flagger`)."""
    ev = pd.read_parquet(run.read("cells/evaluated.parquet"))
    galaxies = run.spec().set_index("OBJID").loc[ev["OBJID"].to_numpy()].reset_index()
    return flag_magnitude_table(flagger, run.random(), galaxies, ev["Z"].to_numpy(),
                                ev[point_column(ev)].to_numpy(), bins=bins)


def fit_photoz_model(run: Run, spec: pd.DataFrame, features: str, *, scale: str = "ci",
                     seed: int = 0, estimator: str = "mdn", progress: bool = False,
                     **options: Any) -> Any:
    """A :class:`~photozsom.model.PhotoZModel` on a run's training split (validation split
    for early stopping), with the inputs ``features`` needs attached from the run."""
    if "SPLIT" not in spec:
        raise ValueError("spec needs a SPLIT column: use Run.spec_with_split()")
    data = model_inputs(run, spec, features)
    split = data["SPLIT"].to_numpy()
    tr, va = split == "train", split == "val"
    z = data["Z"].to_numpy(np.float64)
    if estimator == "mdn":
        options.setdefault("max_epochs", preset(scale)["mdn_max_epochs"])
    model = PhotoZModel(features, seed=seed, estimator=estimator, **options)
    return model.fit(data[tr], z[tr], data[va], z[va], progress=progress)



def _combined_cells(run: Run, objid: np.ndarray) -> np.ndarray:
    return combined_cells(pd.read_parquet(run.read("som/spec_cells.parquet")), load_maps(run), objid)


def run_calibrate(run: Run, *, scale: str = "ci", seed: int = 0, shrinkage: float = 50.0,
                  n_boot: int | None = None, fdr: float = 0.05) -> dict[str, Any]:
    """Stage "calibrate": PIT recalibration of the MDN's P(z), global and per SOM cell.

    Both recalibrators are fitted on the out-of-fold P(z) of the labelled galaxies and scored
    on the untouched test split (PCO, KS distance of the PIT from uniform, CRPS, 68% and
    95% interval coverage), and, cross-fitted, on every labelled galaxy (each fold by maps
    fitted on the other folds: tens of thousands of scored galaxies where the test split
    has a few thousand). ``calibrate/summary.csv`` gives per row the galaxies scored
    (``n_scored``), those the map was fitted on (``n_fit``, at least) and the spread a
    calibrated map's PCO has at those sizes (``PCO_sd_%``,
    :func:`~photozsom.calibrate.pco_noise`).
    The per-cell analysis of the southern map is re-run on the
    out-of-fold predictions recalibrated *cross-fitted* (each fold by maps fitted on the
    others), so no galaxy is scored by a map that saw it. The MDN model with the global
    recalibration inside is saved as ``calibrate/model`` (``photozsom predict --model``).
    """
    p = preset(scale, n_boot=n_boot)
    oof = pd.read_parquet(run.read("mdn/oof_predictions.parquet"))
    oof_pdf = MixturePDF.load(run.read("mdn/oof_pdf.npz"))
    test = pd.read_parquet(run.read("mdn/predictions.parquet"))
    test_pdf = MixturePDF.load(run.read("mdn/test_pdf.npz"))
    z_oof, z_test = oof["Z"].to_numpy(), test["Z"].to_numpy()
    c_oof = _combined_cells(run, oof["OBJID"].to_numpy())
    c_test = _combined_cells(run, test["OBJID"].to_numpy())
    rc = {"global": Recalibrator("global").fit(oof_pdf, z_oof),
          "cell": Recalibrator("cell", shrinkage=shrinkage).fit(oof_pdf, z_oof, cells=c_oof)}
    after = {"global": rc["global"].apply(test_pdf),
             "cell": rc["cell"].apply(test_pdf, cells=c_test)}
    # every labelled galaxy, each recalibrated by maps fitted on the other folds
    fold = oof["FOLD"].to_numpy()
    for kind in ("global", "cell"):
        after[f"oof_{kind}"] = cross_fitted(kind, oof_pdf, z_oof, fold,
                                            cells=None if kind == "global" else c_oof,
                                            shrinkage=shrinkage)
    n_oof = len(z_oof)
    n_cross = int(n_oof - np.bincount(fold).max())      # fewest galaxies a fold's map saw
    rows = {"before": (test_pdf, z_test, 0),
            **{f"after ({k})": (after[k], z_test, n_oof) for k in ("global", "cell")},
            # the same map read from its projection onto the mixture grid
            "after (global), projected": (after["global"].projected(), z_test, n_oof),
            "before, out of fold": (oof_pdf, z_oof, 0),
            **{f"after ({k}), cross-fitted": (after[f"oof_{k}"], z_oof, n_cross)
               for k in ("global", "cell")}}
    summary = pd.DataFrame({
        name: {**calibration_summary(pdf, z), "n_scored": len(z), "n_fit": n_fit,
               # expected spread of a calibrated map's PCO (map fit + binomial), per cent
               "PCO_sd_%": pco_noise(n_fit, len(z)) if n_fit else np.nan}
        for name, (pdf, z, n_fit) in rows.items()}).T
    summary[["n_scored", "n_fit"]] = summary[["n_scored", "n_fit"]].astype(np.int64)
    for k, r in rc.items():
        r.save(run.write(f"calibrate/{k}"))
    summary.to_csv(run.write("calibrate/summary.csv"))
    model = PhotoZModel.load(run.read("mdn/model"))
    model.recalibration, model.recalibrator_ = "global", rc["global"]
    model.save(run.write("calibrate/model"))

    # per-cell analysis before and after, cross-fitted over the out-of-fold folds
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
    worse.to_csv(run.write("calibrate/worse_cells.csv"))
    run.record("calibrate", {"scale": scale, "seed": seed, "shrinkage": shrinkage,
                             "n_boot": p["n_boot"], "fdr": fdr})
    return {"summary": summary, "recalibrators": rc, "test_pdf": test_pdf, "after": after,
            "z_test": z_test, "oof_raw": oof_pdf, "worse_cells": worse, "pco_cells": pco_cells, "reports": reports}
