"""The photo-z model users train, save and apply: :class:`PhotoZModel`.

A :class:`PhotoZModel` is everything between a catalogue and ``P(z|X)``, kept together so
that a saved model cannot be fed its inputs in the wrong order or with a different
treatment of missing values:

1. the **feature recipe**, by name: catalogue features computed from DR10 columns
   (:func:`photozsom.features.feature_matrix`; by default ``"auto"``, the bands and shape
   columns the training table has, :func:`photozsom.features.auto_features`),
   image-embedding columns (``EMB_000, EMB_001, ...``; :func:`with_embeddings` attaches an
   embedding array to a catalogue), or both. The resolved recipe is stored in the model;
2. the **missing-input rule**: a row with a feature that cannot be computed (a band without
   a valid flux, ``FLUX_IVAR = 0``; a missing embedding value) is not scored: NaN P(z) and a
   reason, never dropped and never filled in with a training median (which would give a
   confident P(z) from photometry the galaxy does not have);
3. the **support**: :class:`photozsom.support.Support`, a nearest-training-galaxy rule fitted
   on the training inputs; a scored row outside it keeps its P(z) but its ``reason`` says it
   lies outside the training data (``photozsom predict`` gives it status "outside", not "ok");
4. the **estimator**: the paper's mixture density network (:class:`photozsom.mdn.MDN`, which
   standardises its inputs) or the random-forest baseline
   (:class:`photozsom.baseline.RandomForestPhotoZ`) behind the same interface, so Table 1
   compares like with like;
5. optionally a **recalibration** of P(z) fitted on the validation sample
   (:class:`photozsom.calibrate.Recalibrator`).

``save(dir)`` writes arrays + versioned JSON (no pickle); ``PhotoZModel.load(dir)`` reads it.

Examples
--------
>>> model = PhotoZModel(features="catalog", seed=0, max_epochs=24)     # doctest: +SKIP
>>> model.fit(train, train["Z"], val, val["Z"])                        # doctest: +SKIP
>>> pdf = model.predict(my_catalogue)                                  # doctest: +SKIP
>>> model.save("my_model"); PhotoZModel.load("my_model")               # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.artifacts import load_artifact, save_artifact
from photozsom.baseline import RandomForestPhotoZ
from photozsom.calibrate import Recalibrator
from photozsom.features import feature_matrix, resolve_features
from photozsom.mdn import MDN, cross_val_predict
from photozsom.pdf import MixturePDF, check_redshifts
from photozsom.schema import as_dataframe
from photozsom.support import Support

__all__ = ["EMBEDDING_PREFIX", "PhotoZModel", "embedding_columns", "with_embeddings"]

#: Column-name prefix of image-embedding features in a catalogue (``EMB_000``, ...).
EMBEDDING_PREFIX = "EMB_"
_FEATURES = ("catalog", "embedding", "both")
_ESTIMATORS = ("mdn", "random_forest")
#: Version 2: the recipe is resolved at fit ("auto"), no imputer, a stored support rule.
_VERSION = 2
#: With fewer validation galaxies than this, the default (global) recalibration of an MDN is
#: fitted on ``RECAL_FOLDS``-fold out-of-fold predictions of the training and validation
#: galaxies; from it up, on the final model's own validation predictions. The rule weighs
#: two errors of the PCO the map sets (1% of galaxies beyond the 99% interval): fitted on
#: ``n`` validation galaxies, its binomial standard error ``sqrt(0.0099 / n)`` is <= 0.31%
#: (the +-0.3% target) from n = 1,000 up; fitted out of fold, it inherits the calibration of
#: five *other* networks, which differ from the final one seed to seed (measured on DESI,
#: the default sky and a griz-only sky at 5k-25k training galaxies: their raw PCO differs
#: from the final model's by 10-40%, and the out-of-fold map missed the test PCO by
#: 0.4-1.0% in 3 of 7 samples; the validation map, from 1,644 galaxies up, never did).
RECAL_OOF_BELOW = 1000
RECAL_FOLDS = 5


def embedding_columns(dim: int) -> list[str]:
    """Names of ``dim`` embedding columns: ``EMB_000, EMB_001, ...``."""
    width = max(3, len(str(dim - 1)))
    return [f"{EMBEDDING_PREFIX}{i:0{width}d}" for i in range(int(dim))]


def with_embeddings(catalogue: Any, embeddings: np.ndarray) -> pd.DataFrame:
    """The catalogue with an embedding array ``[N, D]`` attached as ``EMB_*`` columns.

    Rows must already be aligned (join on ``OBJID`` first, e.g. with
    ``photozsom.embed.load_embeddings(path, objid=catalogue["OBJID"])``); a galaxy without an
    embedding can be given a row of NaN.
    """
    df = as_dataframe(catalogue)
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(df):
        raise ValueError(f"embeddings must have shape (N={len(df)}, D), got {emb.shape}")
    cols = embedding_columns(emb.shape[1])
    return pd.concat([df.reset_index(drop=True),
                      pd.DataFrame(emb, columns=cols)], axis=1).set_axis(df.index)


class PhotoZModel:
    """Feature recipe + missing-input rule + support + estimator (+ recalibration): catalogue -> P(z).

    Parameters
    ----------
    features : {"catalog", "embedding", "both"}
        Catalogue features from DR10 columns, image-embedding columns (``EMB_*``), or both.
    seed : int
        Seed of the estimator (same seed, same data: same model).
    estimator : {"mdn", "random_forest"}
        The paper's CRPS-trained mixture density network or the Zhou et al. forest.
    catalog_features : "auto" or sequence of str
        The catalogue recipe (:func:`photozsom.features.feature_matrix` names); ``"auto"``
        (default) takes the bands measured in at least 80% of the training rows and, if
        present, the shape columns (:func:`photozsom.features.auto_features`: ``r`` and the
        colours of neighbouring bands). :data:`~photozsom.features.CATALOG_FEATURES` is the
        Zhou et al. recipe of the paper's baseline.
    recalibration : {None, "global", "cell"}
        Recalibrate P(z) after training (default "global"; None: the raw estimator). Fitted
        on the validation sample, or, for the MDN's global map when it has fewer than
        ``RECAL_OOF_BELOW`` (1,000) galaxies, on 5-fold out-of-fold predictions of the
        training and validation galaxies (``recalibration_source_`` says which). "cell"
        needs ``cells_val`` in :meth:`fit` and ``cells`` in :meth:`predict`.
    fold_groups : str, optional
        A column of the training and validation tables naming each galaxy's field (e.g.
        ``"ROSETTE"``, ``"TILEID"``): the out-of-fold predictions above then keep whole
        fields in one fold (:func:`photozsom.mdn.assign_group_folds`), so the map is fitted
        on P(z) of fields their network never saw, as the user's new fields will be.
        Default: folds by object ID. With few fields the map then rests on a handful of
        them: on the shipped DESI sample at 5,000 training galaxies (7 rosettes) it missed
        the test PCO more (2.6% against 1.9% by object ID), so it is not the default.
    **estimator_options
        Passed to :class:`photozsom.mdn.MDN` (``hidden``, ``max_epochs``, ``batch_size``,
        ``device``, ...) or :class:`photozsom.baseline.RandomForestPhotoZ`
        (``n_estimators``, ...).

    Attributes
    ----------
    feature_names_ : list of str
        The model's input columns, in order (set by :meth:`fit`).
    catalog_features_ : list of str
        The resolved catalogue recipe (empty for ``features="embedding"``).
    support_ : Support
        Where the training inputs lie (:mod:`photozsom.support`).
    n_unscored_train_ : int
        Training rows left out because an input was missing.
    estimator_ : MDN or RandomForestPhotoZ
    recalibrator_ : Recalibrator or None
    history_ : DataFrame or None
        The MDN's training history.
    """

    def __init__(self, features: str = "catalog", *, seed: int = 0, estimator: str = "mdn",
                 catalog_features: str | Sequence[str] = "auto",
                 recalibration: str | None = "global", fold_groups: str | None = None,
                 **estimator_options: Any) -> None:
        self.features = features
        self.seed = seed
        self.estimator = estimator
        self.catalog_features = catalog_features if isinstance(catalog_features, str) \
            else tuple(catalog_features)
        self.recalibration = recalibration
        self.fold_groups = None if fold_groups is None else str(fold_groups).upper()
        self.estimator_options = dict(estimator_options)

    # ------------------------------------------------------------------ inputs
    def _check_params(self) -> None:
        if self.features not in _FEATURES:
            raise ValueError(f"features must be one of {_FEATURES}, got {self.features!r}")
        if self.estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {self.estimator!r}")
        if self.recalibration not in (None, "global", "cell"):
            raise ValueError(f"recalibration must be None, 'global' or 'cell', got "
                             f"{self.recalibration!r}")

    def _embedding_names(self, df: pd.DataFrame) -> list[str]:
        names = [c for c in df.columns if str(c).startswith(EMBEDDING_PREFIX)]
        if not names:
            raise ValueError(
                f"features={self.features!r} needs embedding columns {EMBEDDING_PREFIX}000, ...; "
                f"attach them with photozsom.model.with_embeddings(catalogue, embeddings)"
            )
        return names

    def _raw_matrix(self, catalogue: Any, *, fitting: bool = False, name: str = "catalogue"
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input matrix (NaN where missing), the catalogue-feature mask and the embedding mask."""
        df = as_dataframe(catalogue)
        if len(df) == 0:
            raise ValueError("catalogue is empty (0 rows)")
        blocks, is_cat = [], []
        if self.features in ("catalog", "both"):
            if fitting:
                self.catalog_features_ = resolve_features(self.catalog_features, df, "catalog")
            Xc, _ = feature_matrix(df, self.catalog_features_, name=name)
            blocks.append(Xc.astype(np.float64))
            is_cat += [True] * Xc.shape[1]
        if self.features in ("embedding", "both"):
            names = self._embedding_names(df) if fitting else self._emb_names_
            missing = [c for c in names if c not in df.columns]
            if missing:
                raise ValueError(
                    f"catalogue lacks embedding column(s) {missing[:3]}{'...' if len(missing) > 3 else ''}"
                    f" the model was trained with ({len(names)} columns {names[0]}..{names[-1]})"
                )
            if fitting:
                self._emb_names_ = names
            blocks.append(df[names].to_numpy(dtype=np.float64))
            is_cat += [False] * len(names)
        X = np.hstack(blocks)
        is_cat = np.array(is_cat, dtype=bool)
        return X, is_cat, ~is_cat

    def transform(self, catalogue: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The estimator's input matrix and which rows can be scored.

        Returns
        -------
        X : ndarray, shape (N, n_features), float32
            Zero in rows that cannot be scored.
        scorable : ndarray of bool, shape (N,)
            False where an input is missing (a band without a valid flux, a missing
            embedding value): that row gets no P(z).
        reason : ndarray of str, shape (N,)
            Empty, or which inputs are missing.
        """
        self._check_fitted()
        X, is_cat, is_emb = self._raw_matrix(catalogue)
        bad = ~np.isfinite(X)
        scorable = ~bad.any(axis=1)
        reason = np.full(len(X), "", dtype=object)
        rows = np.flatnonzero(~scorable)
        if rows.size:
            patterns, inv = np.unique(bad[rows], axis=0, return_inverse=True)
            texts = []
            for p in patterns:
                cat = [n for n, b in zip(self.feature_names_, p & is_cat, strict=True) if b]
                t = []
                if cat:
                    t.append("missing feature(s) " + ", ".join(cat) + " (a band without a valid "
                             "flux: FLUX_IVAR <= 0, non-finite FLUX or MW_TRANSMISSION <= 0)")
                if (p & is_emb).any():
                    t.append(f"{int((p & is_emb).sum())} embedding value(s) missing")
                texts.append("not scored: " + "; ".join(t))
            reason[rows] = np.array(texts, dtype=object)[np.ravel(inv)]
        X = np.where(scorable[:, None], X, 0.0)
        return X.astype(np.float32), scorable, reason

    # ------------------------------------------------------------------ fit / predict
    def _make_estimator(self, n_inputs: int):
        if self.estimator == "mdn":

            return MDN(n_inputs=n_inputs, seed=self.seed, **self.estimator_options)

        return RandomForestPhotoZ(seed=self.seed, **self.estimator_options)

    def fit(self, train_catalogue: Any, z_train: Any, val_catalogue: Any = None, z_val: Any = None,
            *, cells_val: np.ndarray | None = None, progress: bool = True) -> PhotoZModel:
        """Fit the recipe, the support, the estimator (early-stopped on the validation sample)
        and the recalibration.

        Parameters
        ----------
        train_catalogue, val_catalogue : DataFrame or astropy Table
            DR10 columns (and ``EMB_*`` columns for embedding features).
        z_train, z_val : array_like, shape (N,)
            Spectroscopic redshifts.
        cells_val : array_like of int, optional
            SOM cells of the validation galaxies (``recalibration="cell"``).
        progress : bool
            Progress bar of the MDN's epochs.
        """
        self._check_params()
        z_train = check_redshifts(z_train, "z_train")
        Xtr, is_cat, _ = self._raw_matrix(train_catalogue, fitting=True, name="train_catalogue")
        if len(Xtr) != len(z_train):
            raise ValueError(f"train_catalogue has {len(Xtr)} rows but z_train {len(z_train)}")
        if self.features == "embedding":
            self.catalog_features_ = []
        names = list(self.catalog_features_) if self.features in ("catalog", "both") else []
        if self.features in ("embedding", "both"):
            names += self._emb_names_
        self.feature_names_ = names
        self._is_cat = is_cat
        empty = [n for n, col in zip(names, Xtr.T, strict=True) if not np.isfinite(col).any()]
        if empty:
            raise ValueError(f"no training galaxy has a value for feature(s) {empty}: leave them "
                             f"out (catalog_features='auto' takes only the bands the table has)")
        Xtr, ok_tr, _ = self.transform(train_catalogue)
        self.n_unscored_train_ = int((~ok_tr).sum())
        if ok_tr.sum() < 10:
            raise ValueError(f"only {int(ok_tr.sum())} training galaxies have every feature "
                             f"{names}: choose features the table measures")
        self.support_ = Support(seed=self.seed).fit(Xtr[ok_tr])
        Xva = zva = None
        if val_catalogue is not None:
            zva_all = check_redshifts(z_val, "z_val")
            Xva, ok_va, _ = self.transform(val_catalogue)
            if len(Xva) != len(zva_all):
                raise ValueError(f"val_catalogue has {len(Xva)} rows but z_val {len(zva_all)}")
            Xva, zva = Xva[ok_va], zva_all[ok_va]
        elif self.recalibration is not None and not (self.estimator == "mdn"
                                                     and self.recalibration == "global"):
            raise ValueError("recalibration needs validation data: pass val_catalogue, z_val "
                             "(or recalibration=None)")
        self.estimator_ = self._make_estimator(Xtr.shape[1])
        if self.estimator == "mdn":
            hist = self.estimator_.fit(Xtr[ok_tr], z_train[ok_tr], Xva, zva, progress=progress)
            self.history_ = pd.DataFrame(hist)
        else:
            self.estimator_.fit(Xtr[ok_tr], z_train[ok_tr], Xva, zva)
            self.history_ = None
        self.recalibrator_ = None
        if self.recalibration is not None:

            n_val = 0 if zva is None else len(zva)
            cv = None
            if (self.estimator == "mdn" and self.recalibration == "global"
                    and n_val < RECAL_OOF_BELOW):
                # a small validation split cannot pin the PIT tails the map corrects: fit it on
                # out-of-fold predictions of every labelled galaxy instead

                X_all = Xtr[ok_tr] if Xva is None else np.vstack([Xtr[ok_tr], Xva])
                z_all = z_train[ok_tr] if zva is None else np.concatenate([z_train[ok_tr], zva])
                groups, n_folds = self._fold_groups(train_catalogue, ok_tr, val_catalogue,
                                                    None if zva is None else ok_va)
                pdf_fit, _ = cross_val_predict(X_all, z_all, np.arange(len(z_all)),
                                               n_folds=n_folds, seed=self.seed,
                                               progress=False, groups=groups,
                                               **self.estimator_options)
                z_fit = z_all
                self.recalibration_source_ = f"out_of_fold_{n_folds}" + (
                    "" if groups is None else f"_by_{self.fold_groups}")
            else:
                pdf_fit, z_fit = self.estimator_.predict(Xva), zva
                self.recalibration_source_ = "validation"
            if self.recalibration == "cell":
                if cells_val is None:
                    raise ValueError("recalibration='cell' needs cells_val (SOM cells of the "
                                     "validation galaxies)")
                cv = np.asarray(cells_val)[ok_va]
            rc = Recalibrator(kind=self.recalibration)
            need = 2 * int(rc.tail_count) + 2 * int(rc.min_per_knot)
            if len(z_fit) < need:   # too few held-out galaxies to pin a PIT map: say so
                warnings.warn(f"recalibration={self.recalibration!r} skipped: {len(z_fit)} "
                              f"held-out galaxies, the map needs {need}; P(z) are the "
                              f"estimator's own", stacklevel=2)
                self.recalibration_source_ = f"none ({len(z_fit)} held-out galaxies < {need})"
                return self
            self.recalibrator_ = rc.fit(pdf_fit, z_fit, cells=cv)
        return self

    def _fold_groups(self, train_catalogue: Any, ok_tr: np.ndarray, val_catalogue: Any,
                     ok_va: np.ndarray | None) -> tuple[np.ndarray | None, int]:
        """The ``fold_groups`` column of the scorable training (+ validation) rows (None
        without ``fold_groups``) and the number of out-of-fold folds (at most one a field)."""
        if self.fold_groups is None:
            return None, RECAL_FOLDS
        parts = [(train_catalogue, ok_tr, "train_catalogue")]
        if ok_va is not None:
            parts.append((val_catalogue, ok_va, "val_catalogue"))
        out = []
        for table, ok, name in parts:
            df = as_dataframe(table)
            if self.fold_groups not in df.columns:
                raise ValueError(f"fold_groups={self.fold_groups!r}: {name} has no such column "
                                 f"(name the column holding each galaxy's field, or "
                                 f"fold_groups=None)")
            out.append(df[self.fold_groups].to_numpy()[ok])
        groups = np.concatenate(out)
        n_fields = len(np.unique(groups))
        if n_fields < 2:
            raise ValueError(f"fold_groups={self.fold_groups!r}: the labelled galaxies come from "
                             f"one field, so no fold can hold out a field; use "
                             f"fold_groups=None")
        return groups, min(RECAL_FOLDS, n_fields)

    def recalibrate_with(self, pdf: MixturePDF, z: Any, *, source: str) -> PhotoZModel:
        """Replace the recalibration by a global map fitted on held-out P(z).

        For P(z) the model did not train on, e.g. out-of-fold predictions a workflow has
        already made (``photozsom train``, the book's calibrate stage), so they are not
        made twice. ``source`` says what they are (kept in ``recalibration_source_``).
        """

        self._check_fitted()
        self.recalibration = "global"
        self.recalibrator_ = Recalibrator(kind="global").fit(pdf, check_redshifts(z, "z"))
        self.recalibration_source_ = source
        return self

    def predict(self, catalogue: Any, *, cells: np.ndarray | None = None,
                recalibrate: bool = True) -> MixturePDF:
        """P(z) of every row, in input order.

        Parameters
        ----------
        catalogue : DataFrame or astropy Table
            DR10 columns (+ ``EMB_*`` for embedding features).
        cells : array_like of int, optional
            SOM cells of the rows, for a per-cell recalibration (-1: the global map).
        recalibrate : bool
            Apply the fitted recalibration (default); False gives the raw estimator's P(z).

        Raises
        ------
        ValueError
            If a row cannot be scored (a missing embedding value): use
            :meth:`predict_with_status`, which scores the others and says which.
        """
        pdf, ok, reason = self.predict_with_status(catalogue, cells=cells, recalibrate=recalibrate)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            raise ValueError(f"{bad.size} row(s) cannot be scored (first {bad[:5].tolist()}: "
                             f"{reason[bad[0]]}); use predict_with_status, or photozsom predict, "
                             f"which keeps them with NaN and a reason")
        return pdf

    def predict_with_status(self, catalogue: Any, *, cells: np.ndarray | None = None,
                            recalibrate: bool = True) -> tuple[MixturePDF | None, np.ndarray, np.ndarray]:
        """Score what can be scored.

        Returns
        -------
        pdf : MixturePDF or None
            P(z) of the scored rows only (``scored.sum()`` rows, in input order); None if no
            row could be scored.
        scored : ndarray of bool, shape (N,)
        reason : ndarray of str, shape (N,)
            Why a row was not scored, or that a scored row lies outside the training data
            (:attr:`support_`); "" for a row scored inside it.
        """
        X, ok, reason = self.transform(catalogue)
        if not ok.any():
            return None, ok, reason
        outside = np.zeros(len(ok), dtype=bool)
        outside[ok] = ~self.support_.inside(X[ok])
        reason[outside] = (f"outside the training data: no training galaxy within "
                           f"{self.support_.threshold_:.3g} (standardised inputs) of this one")
        pdf = self.estimator_.predict(X[ok])
        if recalibrate and self.recalibrator_ is not None:
            c = None
            if self.recalibrator_.kind == "cell":
                if cells is None:
                    raise ValueError("this model recalibrates per SOM cell: pass cells= "
                                     "(or recalibrate=False)")
                c = np.asarray(cells)[ok]
            pdf = self.recalibrator_.apply(pdf, cells=c)
        return pdf, ok, reason

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise ValueError("this PhotoZModel is not fitted: call fit(...) or PhotoZModel.load(dir)")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``meta.json`` (recipe, settings), ``arrays.npz`` (support) and the estimator
        (``estimator/``) and recalibrator (``recalibrator/``) as artifact directories."""
        self._check_fitted()
        meta = {
            "features": self.features,
            "estimator": self.estimator,
            "seed": self.seed,
            "catalog_features": (self.catalog_features if isinstance(self.catalog_features, str)
                                 else list(self.catalog_features)),
            "catalog_features_resolved": list(self.catalog_features_),
            "support": self.support_.get_params(),
            "embedding_columns": list(getattr(self, "_emb_names_", [])),
            "feature_names": self.feature_names_,
            "recalibration": self.recalibration,
            "recalibration_source": getattr(self, "recalibration_source_", None),
            "fold_groups": self.fold_groups,
            "estimator_options": self.estimator_options,
            "n_unscored_train": self.n_unscored_train_,
        }
        extra = {"estimator": self.estimator_.save}
        if self.recalibrator_ is not None:
            extra["recalibrator"] = self.recalibrator_.save
        if self.history_ is not None:
            hist = self.history_
            extra["history.csv"] = lambda p: hist.to_csv(p, index=False)
        return save_artifact(path, "photoz_model",
                             {"is_catalog": self._is_cat, **self.support_.to_arrays()},
                             meta, version=_VERSION, extra=extra)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> PhotoZModel:
        """Read a model written by :meth:`save` (``device`` for the MDN)."""
        arrays, meta = load_artifact(path, "photoz_model", versions=(_VERSION,))
        path = Path(path)
        model = cls(meta["features"], seed=meta["seed"], estimator=meta["estimator"],
                    catalog_features=meta["catalog_features"],
                    recalibration=meta["recalibration"], fold_groups=meta.get("fold_groups"),
                    **meta["estimator_options"])
        model.feature_names_ = list(meta["feature_names"])
        model._emb_names_ = list(meta["embedding_columns"])
        model.catalog_features_ = list(meta["catalog_features_resolved"])
        model.support_ = Support.from_arrays(arrays, meta["support"])
        model._is_cat = arrays["is_catalog"].astype(bool)
        model.n_unscored_train_ = meta["n_unscored_train"]
        if meta["estimator"] == "mdn":

            model.estimator_ = MDN.load(path / "estimator", device=device)
        else:

            model.estimator_ = RandomForestPhotoZ.load(path / "estimator")
        model.recalibrator_ = None
        if meta.get("recalibration_source") is not None:      # models saved before: unknown
            model.recalibration_source_ = meta["recalibration_source"]
        if (path / "recalibrator").exists():

            model.recalibrator_ = Recalibrator.load(path / "recalibrator")
        hist = path / "history.csv"
        model.history_ = pd.read_csv(hist) if hist.exists() else None
        return model

    def __repr__(self) -> str:
        fitted = hasattr(self, "feature_names_")
        n = len(self.feature_names_) if fitted else "?"
        return (f"PhotoZModel(features={self.features!r}, estimator={self.estimator!r}, "
                f"n_features={n}, recalibration={self.recalibration!r}, fitted={fitted})")
