"""The photo-z model users train, save and apply: :class:`PhotoZModel`.

A :class:`PhotoZModel` is everything between a catalogue and ``P(z|X)``, kept together so
that a saved model cannot be fed its inputs in the wrong order or with a different
treatment of missing values:

1. the **feature recipe**, by name: catalogue features computed from DR10 columns
   (:func:`photozsom.features.feature_matrix`, default :data:`~photozsom.features.CATALOG_FEATURES`),
   image-embedding columns (``EMB_000, EMB_001, ...``; :func:`with_embeddings` attaches an
   embedding array to a catalogue), or both;
2. the **imputer**: a catalogue feature that cannot be computed for a galaxy (e.g. an
   undetected WISE band, ``FLUX_IVAR = 0``) takes the training sample's median of that
   feature, and the row says so in its ``reason``; a missing embedding cannot be imputed and
   leaves the row unscored (NaN P(z), never dropped);
3. the **estimator**: the paper's mixture density network (:class:`photozsom.mdn.MDN`, which
   standardises its inputs) or the random-forest baseline
   (:class:`photozsom.baseline.RandomForestPhotoZ`) behind the same interface, so Table 1
   compares like with like;
4. optionally a **recalibration** of P(z) fitted on the validation sample
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.artifacts import load_artifact, save_artifact
from photozsom.features import CATALOG_FEATURES, feature_matrix
from photozsom.pdf import MixturePDF
from photozsom.schema import as_dataframe

__all__ = ["EMBEDDING_PREFIX", "PhotoZModel", "embedding_columns", "with_embeddings"]

#: Column-name prefix of image-embedding features in a catalogue (``EMB_000``, ...).
EMBEDDING_PREFIX = "EMB_"
_FEATURES = ("catalog", "embedding", "both")
_ESTIMATORS = ("mdn", "random_forest")
_VERSION = 1


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
    """Feature recipe + imputer + estimator (+ recalibration): catalogue -> P(z).

    Parameters
    ----------
    features : {"catalog", "embedding", "both"}
        Catalogue features from DR10 columns, image-embedding columns (``EMB_*``), or both.
    seed : int
        Seed of the estimator (same seed, same data: same model).
    estimator : {"mdn", "random_forest"}
        The paper's CRPS-trained mixture density network or the Zhou et al. forest.
    catalog_features : sequence of str
        The catalogue recipe (:func:`photozsom.features.feature_matrix` names).
    recalibration : {None, "global", "cell"}
        Recalibrate P(z) on the validation sample after training (needs ``val`` data;
        "cell" also needs ``cells_val`` in :meth:`fit` and ``cells`` in :meth:`predict`).
    **estimator_options
        Passed to :class:`photozsom.mdn.MDN` (``hidden``, ``max_epochs``, ``batch_size``,
        ``device``, ...) or :class:`photozsom.baseline.RandomForestPhotoZ`
        (``n_estimators``, ...).

    Attributes
    ----------
    feature_names_ : list of str
        The model's input columns, in order (set by :meth:`fit`).
    impute_values_ : ndarray
        Training median of each catalogue feature (NaN for embedding columns).
    estimator_ : MDN or RandomForestPhotoZ
    recalibrator_ : Recalibrator or None
    history_ : DataFrame or None
        The MDN's training history.
    """

    def __init__(self, features: str = "catalog", *, seed: int = 0, estimator: str = "mdn",
                 catalog_features: Sequence[str] = tuple(CATALOG_FEATURES),
                 recalibration: str | None = None, **estimator_options: Any) -> None:
        self.features = features
        self.seed = seed
        self.estimator = estimator
        self.catalog_features = tuple(catalog_features)
        self.recalibration = recalibration
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

    def _raw_matrix(self, catalogue: Any, *, fitting: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input matrix before imputation, the catalogue-feature mask and the embedding mask."""
        df = as_dataframe(catalogue)
        if len(df) == 0:
            raise ValueError("catalogue is empty (0 rows)")
        blocks, is_cat = [], []
        if self.features in ("catalog", "both"):
            Xc, _ = feature_matrix(df, self.catalog_features)
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
        """The estimator's input matrix with missing catalogue features imputed.

        Returns
        -------
        X : ndarray, shape (N, n_features), float32
        scorable : ndarray of bool, shape (N,)
            False where an embedding value is missing (that row gets no P(z)).
        reason : ndarray of str, shape (N,)
            Empty, or which features were imputed / why the row is not scored.
        """
        self._check_fitted()
        X, is_cat, is_emb = self._raw_matrix(catalogue)
        bad = ~np.isfinite(X)
        scorable = ~(bad & is_emb).any(axis=1)
        X = np.where(bad & is_cat, self.impute_values_, X)
        reason = np.full(len(X), "", dtype=object)
        rows = np.flatnonzero(bad.any(axis=1))
        if rows.size:
            patterns, inv = np.unique(bad[rows], axis=0, return_inverse=True)
            texts = []
            for p in patterns:
                emb = p & is_emb
                cat = [n for n, b in zip(self.feature_names_, p & is_cat, strict=True) if b]
                t = []
                if emb.any():
                    t.append(f"not scored: {int(emb.sum())} embedding value(s) missing")
                if cat:
                    t.append("imputed with the training median: " + ", ".join(cat))
                texts.append("; ".join(t))
            reason[rows] = np.array(texts, dtype=object)[np.ravel(inv)]
        X = np.where(scorable[:, None], X, 0.0)
        return X.astype(np.float32), scorable, reason

    # ------------------------------------------------------------------ fit / predict
    def _make_estimator(self, n_inputs: int):
        if self.estimator == "mdn":
            from photozsom.mdn import MDN

            return MDN(n_inputs=n_inputs, seed=self.seed, **self.estimator_options)
        from photozsom.baseline import RandomForestPhotoZ

        return RandomForestPhotoZ(seed=self.seed, **self.estimator_options)

    def fit(self, train_catalogue: Any, z_train: Any, val_catalogue: Any = None, z_val: Any = None,
            *, cells_val: np.ndarray | None = None, progress: bool = True) -> PhotoZModel:
        """Fit the imputer, the estimator (early-stopped on the validation sample) and the
        recalibration.

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
        z_train = _check_z(z_train, "z_train")
        Xtr, is_cat, _ = self._raw_matrix(train_catalogue, fitting=True)
        if len(Xtr) != len(z_train):
            raise ValueError(f"train_catalogue has {len(Xtr)} rows but z_train {len(z_train)}")
        names = list(self.catalog_features) if self.features in ("catalog", "both") else []
        if self.features in ("embedding", "both"):
            names += self._emb_names_
        self.feature_names_ = names
        med = np.full(Xtr.shape[1], np.nan)
        if is_cat.any():
            cat = Xtr[:, is_cat]
            has = np.isfinite(cat).any(axis=0)
            med[np.flatnonzero(is_cat)[has]] = np.nanmedian(cat[:, has], axis=0)
        if np.any(is_cat & ~np.isfinite(med)):
            empty = [n for n, c, m in zip(names, is_cat, med, strict=True) if c and not np.isfinite(m)]
            raise ValueError(f"no training galaxy has a value for feature(s) {empty}: drop them "
                             f"from catalog_features")
        self.impute_values_ = np.where(is_cat, med, np.nan)
        self._is_cat = is_cat
        Xtr, ok_tr, _ = self.transform(train_catalogue)
        self.n_unscored_train_ = int((~ok_tr).sum())
        Xva = zva = None
        if val_catalogue is not None:
            zva_all = _check_z(z_val, "z_val")
            Xva, ok_va, _ = self.transform(val_catalogue)
            if len(Xva) != len(zva_all):
                raise ValueError(f"val_catalogue has {len(Xva)} rows but z_val {len(zva_all)}")
            Xva, zva = Xva[ok_va], zva_all[ok_va]
        elif self.recalibration is not None:
            raise ValueError("recalibration needs validation data: pass val_catalogue, z_val")
        self.estimator_ = self._make_estimator(Xtr.shape[1])
        if self.estimator == "mdn":
            hist = self.estimator_.fit(Xtr[ok_tr], z_train[ok_tr], Xva, zva, progress=progress)
            self.history_ = pd.DataFrame(hist)
        else:
            self.estimator_.fit(Xtr[ok_tr], z_train[ok_tr], Xva, zva)
            self.history_ = None
        self.recalibrator_ = None
        if self.recalibration is not None:
            from photozsom.calibrate import Recalibrator

            pdf_val = self.estimator_.predict(Xva)
            cv = None
            if self.recalibration == "cell":
                if cells_val is None:
                    raise ValueError("recalibration='cell' needs cells_val (SOM cells of the "
                                     "validation galaxies)")
                cv = np.asarray(cells_val)[ok_va]
            self.recalibrator_ = Recalibrator(kind=self.recalibration).fit(pdf_val, zva, cells=cv)
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
            Why a row was not scored, or which catalogue features were imputed ("" if none).
        """
        X, ok, reason = self.transform(catalogue)
        if not ok.any():
            return None, ok, reason
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
        """Write ``meta.json`` (recipe, settings), ``arrays.npz`` (imputer) and the estimator
        (``estimator/``) and recalibrator (``recalibrator/``) as artifact directories."""
        self._check_fitted()
        meta = {
            "features": self.features,
            "estimator": self.estimator,
            "seed": self.seed,
            "catalog_features": list(self.catalog_features),
            "embedding_columns": list(getattr(self, "_emb_names_", [])),
            "feature_names": self.feature_names_,
            "recalibration": self.recalibration,
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
                             {"impute_values": self.impute_values_, "is_catalog": self._is_cat},
                             meta, version=_VERSION, extra=extra)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> PhotoZModel:
        """Read a model written by :meth:`save` (``device`` for the MDN)."""
        arrays, meta = load_artifact(path, "photoz_model", versions=(_VERSION,))
        path = Path(path)
        model = cls(meta["features"], seed=meta["seed"], estimator=meta["estimator"],
                    catalog_features=meta["catalog_features"],
                    recalibration=meta["recalibration"], **meta["estimator_options"])
        model.feature_names_ = list(meta["feature_names"])
        model._emb_names_ = list(meta["embedding_columns"])
        model.impute_values_ = arrays["impute_values"]
        model._is_cat = arrays["is_catalog"].astype(bool)
        model.n_unscored_train_ = meta["n_unscored_train"]
        if meta["estimator"] == "mdn":
            from photozsom.mdn import MDN

            model.estimator_ = MDN.load(path / "estimator", device=device)
        else:
            from photozsom.baseline import RandomForestPhotoZ

            model.estimator_ = RandomForestPhotoZ.load(path / "estimator")
        model.recalibrator_ = None
        if (path / "recalibrator").exists():
            from photozsom.calibrate import Recalibrator

            model.recalibrator_ = Recalibrator.load(path / "recalibrator")
        hist = path / "history.csv"
        model.history_ = pd.read_csv(hist) if hist.exists() else None
        return model

    def __repr__(self) -> str:
        fitted = hasattr(self, "feature_names_")
        n = len(self.feature_names_) if fitted else "?"
        return (f"PhotoZModel(features={self.features!r}, estimator={self.estimator!r}, "
                f"n_features={n}, recalibration={self.recalibration!r}, fitted={fitted})")


def _check_z(z: Any, name: str) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64).ravel()
    if z.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(z)):
        bad = np.flatnonzero(~np.isfinite(z))
        raise ValueError(f"{name} has {bad.size} non-finite redshift(s) (first rows "
                         f"{bad[:5].tolist()}); remove those galaxies from the training sample")
    return z
