"""From a spectroscopic table to a photo-z model and flag you can trust: ``photozsom train``.

One call (:func:`train`) or one command does what the book's pipeline does for the paper,
on the user's own galaxies:

1. **split** the spectroscopic table into train / validation / test (a ``SPLIT`` column the
   table already has; whole groups of a column such as a DESI rosette with ``split_by``, so
   train and test are spatially disjoint; or a seeded hash of ``OBJID``, 80/10/10);
2. **fit** a :class:`~photozsom.model.PhotoZModel` on the training split (catalogue features
   from the bands the table has, ``features="auto"``; early stopping on the validation split);
3. **predict out of fold** every training and validation galaxy (``cv_folds`` networks, each
   blind to the galaxies it predicts), and recalibrate the model's P(z) with a global PIT map
   fitted on those out-of-fold P(z) (:meth:`~photozsom.model.PhotoZModel.recalibrate_with`);
4. **fit the flag** (:class:`~photozsom.flags.SOMFlagger`) on a random sample of the catalogue
   to be flagged (or, without one, on the labelled galaxies, with a warning), the labelled
   galaxies' out-of-fold photo-z and the training counts;
5. **score the held-out test split**, which neither the model nor the flag has seen: metrics
   of all test galaxies and of the flagged and unflagged ones.

Everything lands in one directory that ``photozsom predict IN -o OUT --model DIR`` uses whole:
the model at the top level (``PhotoZModel.load(DIR)``), the flag in ``DIR/flagger``, and
``split.parquet``, ``oof_predictions.parquet``, ``test_predictions.parquet`` and
``summary.json`` beside them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.evaluation.results import flag_comparison, prediction_table
from photozsom.flags import SOMFlagger
from photozsom.io import read_table
from photozsom.mdn import cross_val_predict, train_val_test_split
from photozsom.model import PhotoZModel
from photozsom.predict import predict_table
from photozsom.schema import as_dataframe

__all__ = ["format_summary", "make_split", "oof_predictions", "run_cli", "summarise", "train"]


def make_split(spec: pd.DataFrame, *, seed: int = 0, by: str | None = None,
               fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> pd.DataFrame:
    """``OBJID``, ``SPLIT`` of the spectroscopic sample (seeded hash of OBJID, or of ``by``)."""
    if "OBJID" not in spec:
        raise ValueError("the spectroscopic sample needs an OBJID column (unique per galaxy)")
    if spec["OBJID"].duplicated().any():
        raise ValueError("OBJID must be unique in the spectroscopic sample; "
                         f"{int(spec['OBJID'].duplicated().sum())} rows repeat one")
    key = spec["OBJID"].to_numpy() if by is None else spec[by].to_numpy()
    if by is not None and set(np.unique(key.astype(str))) <= {"train", "val", "test"}:
        return pd.DataFrame({"OBJID": spec["OBJID"].to_numpy(), "SPLIT": key.astype(str)})
    if by is not None:
        groups, inv = np.unique(key, return_inverse=True)
        n_g = len(groups)
        if n_g < 3:
            raise ValueError(f"split_by={by!r} has {n_g} distinct values; need at least 3")
        n_test = max(1, round(fractions[2] * n_g))
        n_val = max(1, round(fractions[1] * n_g))
        perm = np.random.default_rng(seed).permutation(n_g)
        part_of_group = np.zeros(n_g, dtype=np.int64)
        part_of_group[perm[:n_test]] = 2
        part_of_group[perm[n_test:n_test + n_val]] = 1
        part = part_of_group[inv]
    else:
        _, va, te = train_val_test_split(key, fractions, seed=seed)
        part = np.zeros(len(spec), dtype=np.int64)
        part[va], part[te] = 1, 2
    return pd.DataFrame({"OBJID": spec["OBJID"].to_numpy(),
                         "SPLIT": np.array(["train", "val", "test"])[part]})


def oof_predictions(model: Any, spec: pd.DataFrame, *, cv_folds: int, seed: int = 0,
                    progress: bool = False) -> tuple[pd.DataFrame, Any]:
    """Out-of-fold MDN predictions of every training and validation galaxy.

    ``model`` is a fitted MDN :class:`~photozsom.model.PhotoZModel`: its inputs (imputer and
    features, fitted on the training split) and its MDN settings are reused; ``cv_folds``
    fresh MDNs, seeded by ``seed`` (folds and weights), each predict the galaxies they did not
    see. Returns the prediction table (with ``FOLD``) and the P(z) (a MixturePDF), in the
    order of the scorable galaxies of ``spec``.
    """
    split = spec["SPLIT"].to_numpy()
    pool = (split == "train") | (split == "val")
    z = spec["Z"].to_numpy(np.float64)
    ids = spec["OBJID"].to_numpy()
    X, okp, _ = model.transform(spec[pool])
    opts = {k: v for k, v in model.estimator_options.items()
            if k in ("hidden", "max_epochs", "batch_size", "lr", "patience", "device",
                     "schedule", "min_improvement", "precision", "threads")}
    oof_pdf, fold = cross_val_predict(X[okp], z[pool][okp], ids[pool][okp], n_folds=cv_folds,
                                      seed=seed, progress=progress, **opts)
    oof = prediction_table(oof_pdf, ids[pool][okp], z[pool][okp])
    oof["FOLD"] = fold
    return oof, oof_pdf


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"[photozsom train] {msg}", flush=True)


def _prepare(spec: Any, *, split_by: str | None, seed: int) -> pd.DataFrame:
    """The table with a unique integer ``OBJID`` and a ``SPLIT`` column."""
    df = as_dataframe(spec).reset_index(drop=True)
    if len(df) == 0:
        raise ValueError("the spectroscopic table is empty (0 rows)")
    if "Z" not in df:
        raise ValueError("the spectroscopic table needs a Z column (spectroscopic redshift)")
    z = pd.to_numeric(df["Z"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(z)
    if bad.any():
        raise ValueError(f"Z is missing or not a number in {int(bad.sum())} row(s) (first rows "
                         f"{np.flatnonzero(bad)[:5].tolist()}); keep only galaxies with a redshift")
    ids = df.get("OBJID")
    if ids is None or ids.dtype.kind not in "iu" or ids.duplicated().any():
        if ids is not None:
            df = df.rename(columns={"OBJID": "OBJID_INPUT"})
        df.insert(0, "OBJID", np.arange(len(df), dtype=np.int64))  # row number
    if split_by is not None and split_by.upper() not in df.columns:
        raise ValueError(f"--split-by {split_by!r}: the table has no such column")
    if "SPLIT" in df and split_by is None:
        split_by = "SPLIT"
    split = make_split(df, seed=seed, by=None if split_by is None else split_by.upper())
    df["SPLIT"] = split["SPLIT"].to_numpy()
    counts = df["SPLIT"].value_counts()
    for part in ("train", "val", "test"):
        if counts.get(part, 0) < 10:
            raise ValueError(f"the {part} split has {counts.get(part, 0)} galaxies (< 10): give "
                             f"more galaxies, or a SPLIT column with train/val/test")
    return df


def summarise(table: pd.DataFrame) -> dict[str, Any]:
    """The held-out summary of a ``predict_table`` output with ``Z``: counts by status and
    :func:`photozsom.evaluation.results.flag_comparison` (all, flagged, not flagged) as a dict."""
    status = table["PZ_STATUS"].astype(str)
    cmp = flag_comparison(table)
    return {"n": len(table), "not_scored": int((status == "not scored").sum()),
            "outside_support": int((status == "outside").sum()),
            "flagged_fraction": float(table["PZ_FLAG"].to_numpy(bool).mean()),
            **{k: {c: (None if pd.isna(v) else float(v)) for c, v in row.items()}
               for k, row in cmp.iterrows()}}


def train(spec: Any, out_dir: str | os.PathLike, *, random: Any = None,
          split_by: str | None = None, features: str | Sequence[str] = "auto", seed: int = 0,
          cv_folds: int = 3, max_epochs: int | None = None, n_boot: int = 1000,
          overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a photo-z model and its flag from a spectroscopic table (see the module notes).

    Parameters
    ----------
    spec : DataFrame, astropy Table or path
        Galaxies with DR10-style flux columns (``FLUX_<b>`` in nanomaggies, optionally
        ``FLUX_IVAR_<b>``, ``MW_TRANSMISSION_<b>``, shape columns, ``PHOTSYS``) and ``Z``.
        ``OBJID`` is kept when it is a unique integer, else the row number is used.
    out_dir : path
        The directory to write (see the module notes).
    random : DataFrame, astropy Table or path, optional
        A random sample of the catalogue the flag will be used on (same columns, no ``Z``).
    split_by : str, optional
        Column whose values are kept together in one split (e.g. ``ROSETTE``); a column of
        "train"/"val"/"test" values is used as the split itself. Default: the table's
        ``SPLIT`` column when it has one, else a seeded hash of ``OBJID``.
    features : "auto" or sequence of str
        The model's catalogue features (:func:`photozsom.features.auto_features`).
    seed : int
        Seeds the split, the networks, the maps and the bootstrap.
    cv_folds : int
        Out-of-fold networks (>= 2).
    max_epochs : int, optional
        The MDN's epochs (default: its own schedule).
    n_boot : int
        Bootstrap resamples of the per-cell tests.
    overwrite : bool
        Replace an existing ``out_dir``.
    progress : bool
        Progress lines and bars.

    Returns
    -------
    dict
        ``model``, ``flagger``, ``split`` (DataFrame), ``test`` (the test split's predictions
        and flags), ``summary`` (see :func:`summarise`) and ``path``.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: choose another -o or pass "
                              f"--overwrite")
    if int(cv_folds) < 2:
        raise ValueError(f"cv_folds must be >= 2, got {cv_folds}")
    t0 = time.time()
    spec = read_table(spec) if isinstance(spec, (str, os.PathLike)) else spec
    rnd = read_table(random) if isinstance(random, (str, os.PathLike)) else random
    df = _prepare(spec, split_by=split_by, seed=seed)
    parts = {s: (df["SPLIT"] == s).to_numpy() for s in ("train", "val", "test")}
    _log(f"{len(df)} galaxies: " + ", ".join(f"{k} {int(v.sum())}" for k, v in parts.items()),
         progress)
    opts = {} if max_epochs is None else {"max_epochs": int(max_epochs)}
    # recalibrated below on the out-of-fold P(z) the flag needs anyway (not a second set)
    model = PhotoZModel("catalog", seed=seed, catalog_features=features, recalibration=None,
                        **opts)
    z = df["Z"].to_numpy(np.float64)
    _log("fitting the photo-z model", progress)
    model.fit(df[parts["train"]], z[parts["train"]], df[parts["val"]], z[parts["val"]],
              progress=progress)
    _log(f"features {model.feature_names_}; {model.n_unscored_train_} training galaxies "
         f"without every feature left out; {cv_folds} out-of-fold networks", progress)
    oof, oof_pdf = oof_predictions(model, df, cv_folds=int(cv_folds), seed=seed,
                                   progress=progress)
    model.recalibrate_with(oof_pdf, oof["Z"], source=f"out_of_fold_{cv_folds}")
    cal = model.recalibrator_.apply(oof_pdf)
    oof = oof.assign(Z_PHOT_MEAN=cal.mean(), PIT=cal.pit(oof["Z"].to_numpy()))
    pool = df[parts["train"] | parts["val"]].reset_index(drop=True)
    o = oof.set_index("OBJID").reindex(pool["OBJID"].to_numpy())
    _log("fitting the flag (SOMFlagger)", progress)
    flagger = SOMFlagger(seed=seed, n_boot=n_boot, progress=progress)
    flagger.fit(rnd, pool, pool["Z"].to_numpy(), o["Z_PHOT_MEAN"].to_numpy(), o["PIT"].to_numpy(),
                in_train=(pool["SPLIT"] == "train").to_numpy())
    _log("scoring the held-out test split", progress)
    test = df[parts["test"]].reset_index(drop=True)
    pred = predict_table(test, model, flagger)
    summary = summarise(pd.concat([test[["OBJID", "Z"]], pred.drop(columns="Z", errors="ignore")],
                                  axis=1))
    summary.update({"features": model.feature_names_,
                    "som_features": {r: m.feature_names for r, m in flagger.maps_.items()},
                    "thresholds": {r: list(v) for r, v in flagger.thresholds_.items()},
                    "trained_on": flagger.trained_on_, "seconds": round(time.time() - t0, 1)})
    model.save(out)  # replaces out atomically; everything else goes inside it afterwards
    flagger.save(out / "flagger")
    df[["OBJID", "SPLIT"]].to_parquet(out / "split.parquet", index=False)
    oof.to_parquet(out / "oof_predictions.parquet", index=False)
    pd.concat([test[["OBJID"]], pred], axis=1).to_parquet(out / "test_predictions.parquet",
                                                          index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _log(f"done in {summary['seconds']:.0f} s: {out}", progress)
    return {"model": model, "flagger": flagger, "split": df[["OBJID", "SPLIT"]], "test": pred,
            "summary": summary, "path": out}


def format_summary(summary: dict[str, Any]) -> str:
    """The held-out summary as a few lines of text."""
    head = (f"held-out test split: {summary['n']} galaxies, {summary['not_scored']} not "
            f"scored, {summary['outside_support']} outside the training data; flagged "
            f"{100 * summary['flagged_fraction']:.1f}%")
    cols = (f"{'':12s} {'N':>7s} {'MAD':>7s} {'NMAD':>7s} {'bias':>8s} {'eta %':>6s} "
            f"{'PCO %':>6s} {'CRPS':>7s}")
    lines = [head, cols]
    for k in ("all", "not flagged", "flagged"):
        b = summary[k]
        vals = [b.get(c) for c in ("MAD", "NMAD", "bias", "eta_%", "PCO_%", "CRPS")]
        cells = " ".join(f"{'':>7s}" if v is None else f"{v:7.4f}" for v in vals)
        lines.append(f"{k:12s} {int(b['N']):7d} {cells}")
    return "\n".join(lines)


def run_cli(args: Any) -> int:
    """``photozsom train`` (user mistakes: one line on stderr, exit code 2)."""
    import sys

    for name, path in (("spec", args.spec), ("--random", args.random)):
        if path is not None and not Path(path).is_file():
            print(f"photozsom train: {name} {path}: no such file", file=sys.stderr)
            return 2
    feats = args.features if args.features == "auto" else \
        [f.strip() for f in args.features.split(",") if f.strip()]
    try:
        res = train(args.spec, args.output, random=args.random, split_by=args.split_by,
                    features=feats, seed=args.seed, cv_folds=args.cv_folds,
                    max_epochs=args.max_epochs, n_boot=args.n_boot, overwrite=args.overwrite,
                    progress=not args.quiet)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"photozsom train: {err}", file=sys.stderr)
        return 2
    print(format_summary(res["summary"]))
    return 0
