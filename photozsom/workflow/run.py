"""Run directories: the declared layout, scale presets, provenance and staleness.

A run directory (``data_dir`` in the book, default ``runs/<scale>``) is laid out by the
declarations in :data:`STAGES` — what each stage of :mod:`photozsom.workflow.pipeline` reads
and writes — and :data:`CHAPTER_OUTPUTS` — what a chapter writes beside its stage's files.
They are the one source of truth, printed by :func:`layout`. :meth:`Run.read` and
:meth:`Run.write` refuse a path nobody declared, so the staleness check sees every file.

Each stage writes ``<stage>/provenance.json`` with its parameters and the fingerprints of
the stages it read, and its own fingerprint (a hash of both). :func:`check` compares them:
a stage re-run with other parameters (``photozsom book --only som -p seed=1``) makes every
stage that read the old outputs *stale*; ``photozsom book`` re-runs those chapters
(:func:`downstream`) and refuses to render a book that mixes runs.

Scale presets (``ci`` for minutes, ``default`` for the published book) are in :data:`SCALES`
and nowhere else; a stage parameter left at ``None`` takes the preset's value.

Examples
--------
>>> run = Run("runs/example")
>>> run.write("mdn/predictions.parquet", make=False).name
'predictions.parquet'
>>> run.write("mdn/notes.txt", make=False)
Traceback (most recent call last):
...
ValueError: mdn/notes.txt is not declared in STAGES or CHAPTER_OUTPUTS (photozsom.workflow.run): declare it there first
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.artifacts import read_json, write_json

__all__ = ["CHAPTER_OUTPUTS", "SCALES", "STAGES", "Run", "Stage", "StaleRunError", "check",
           "declared", "downstream", "layout", "preset", "require_consistent", "stage_folder"]

#: Settings of each scale; a stage argument left at None takes these. ``mdn_max_epochs`` is
#: the length of the MDN's one-cycle schedule: capped at the small scales for speed, None
#: (the MDN's own schedule for the training size, :func:`photozsom.mdn.auto_schedule`) for
#: the published book.
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"sky": 600, "som_shape": (6, 6), "som_shape_north": (5, 5), "embed_epochs": 1,
             "embed_dim": 16, "mdn_max_epochs": 6, "cv_folds": 2, "n_boot": 100,
             "n_estimators": 30, "min_count": 3, "real_fraction": 0.05},
    "ci": {"sky": "ci", "som_shape": (12, 12), "som_shape_north": (10, 10), "embed_epochs": 3,
           "embed_dim": 64, "mdn_max_epochs": 20, "cv_folds": 3, "n_boot": 300,
           "n_estimators": 100, "min_count": 5, "real_fraction": 0.15},
    "default": {"sky": "default", "som_shape": (24, 24), "som_shape_north": (16, 16),
                "embed_epochs": 12, "embed_dim": 64, "mdn_max_epochs": None, "cv_folds": 5,
                "n_boot": 1000, "n_estimators": 200, "min_count": 5, "real_fraction": 1.0},
}


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: what it reads and writes (paths relative to the run directory)."""

    name: str
    chapter: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    doc: str
    #: Outputs only some runs have (the simulated sky's settings).
    optional: tuple[str, ...] = ()


#: The stages in order; the run-directory layout and the dependency graph come from here.
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("data", "data", (),
          ("sky/spec.parquet", "sky/random.parquet", "sky/cutouts.h5", "sky/split.parquet"),
          "spectroscopic sample with DR10 photometry, random sample, cutouts, train/val/test",
          ("sky/settings.json",)),
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
          ("baseline/model", "baseline/predictions.parquet", "baseline/test_pdf.npz",
           "baseline/catalog_mdn.parquet"),
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

#: What each chapter writes beyond its stage's outputs: tables into its stage's folder (they
#: are as fresh as that stage's provenance), and the adapt chapter's own folders (the
#: simulated user's sample and the DESI example; they read the run's model and flag).
#: Every chapter may also write ``figures/<name>``.
CHAPTER_OUTPUTS: dict[str, tuple[str, ...]] = {
    "density": ("cells/trend.csv", "cells/metrics_by_redshift.csv",
                "cells/significance_by_seed.csv"),
    "flagging": ("flags/flag_scores_nested.csv", "flags/threshold_curve.csv",
                 "flags/flag_vs_truth.csv"),
    "results": ("baseline/table1.csv", "baseline/comparison.csv",
                "baseline/encoder_ablation.csv", "embed/image_only"),
    "adapt": ("user_sample", "desi_edr_bgs"),
}

_DECLARED = tuple(o for s in STAGES.values() for o in s.outputs + s.optional) + tuple(
    o for outs in CHAPTER_OUTPUTS.values() for o in outs)
_FOLDERS = {o.split("/")[0] for o in _DECLARED} | {"figures"}


def declared(rel: str) -> bool:
    """Whether ``rel`` (relative to the run directory) is a declared output or lies inside one
    (a declared directory such as ``som/S``, a chapter folder, ``figures/``), or a stage's
    ``provenance.json``."""
    rel = rel.rstrip("/")
    if rel in _FOLDERS or rel.startswith("figures/"):
        return True
    if rel.count("/") == 1 and rel.endswith("/provenance.json") and rel.split("/")[0] in _PRODUCER:
        return True   # written by Run.record
    return any(rel == o or rel.startswith(o + "/") for o in _DECLARED)


def layout() -> str:
    """The run-directory layout, generated from :data:`STAGES`."""
    rows = [f"{s.name:<9} -> {', '.join(s.outputs + tuple(f'[{o}]' for o in s.optional))}"
            f"\n{'':<13}reads {', '.join(s.inputs) or '-'}"
            for s in STAGES.values()]
    rows += [f"chapter {c} -> {', '.join(o)}" for c, o in CHAPTER_OUTPUTS.items()]
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

    @staticmethod
    def _declared(rel: str) -> None:
        if not declared(rel):
            raise ValueError(f"{rel} is not declared in STAGES or CHAPTER_OUTPUTS "
                             f"(photozsom.workflow.run): declare it there first")

    def write(self, rel: str, *, make: bool = True) -> Path:
        """``<data_dir>/<rel>`` to write; its folder is created when ``make``.

        Raises ``ValueError`` for a path no stage or chapter declares.
        """
        self._declared(rel)
        p = self.root / rel
        if make:
            (p if rel.endswith("/") else p.parent).mkdir(parents=True, exist_ok=True)
        return p

    def read(self, rel: str) -> Path:
        """Path of something a stage or chapter wrote; a clear error naming it otherwise.

        Raises ``ValueError`` for a path no stage or chapter declares, and
        ``FileNotFoundError`` (naming the chapter to run) when it is not there yet.
        """
        self._declared(rel)
        p = self.root / rel
        if p.exists():
            return p
        first = rel.split("/")[0]
        if first in _PRODUCER:
            stage = STAGES[_PRODUCER[first]]
            chapter, how = stage.chapter, (f", or photozsom.workflow.pipeline.run_{stage.name}"
                                           f"(Run({str(self.root)!r}))")
        else:
            chapter, how = next(c for c, o in CHAPTER_OUTPUTS.items()
                                if any(x.split("/")[0] == first for x in o)), ""
        raise FileNotFoundError(
            f"{p} does not exist: run the '{chapter}' chapter first "
            f"(`photozsom book --only {chapter} -p data_dir={self.root}`){how}"
        )

    def exists(self, rel: str) -> bool:
        """Whether a declared output is there (optional inputs)."""
        self._declared(rel)
        return (self.root / rel).exists()

    def figure(self, name: str) -> Path:
        """Path under ``figures/`` for a chapter's PNG."""
        return self.write(f"figures/{name}")

    # -- loaders ------------------------------------------------------------------------
    def spec(self) -> pd.DataFrame:
        """The spectroscopic sample with DR10 photometry and ``Z``."""
        return pd.read_parquet(self.read("sky/spec.parquet"))

    def random(self) -> pd.DataFrame:
        """The representative random sample."""
        return pd.read_parquet(self.read("sky/random.parquet"))

    def split(self) -> pd.Series:
        """``SPLIT`` ('train' / 'val' / 'test') of the spectroscopic sample, indexed by OBJID."""
        return pd.read_parquet(self.read("sky/split.parquet")).set_index("OBJID")["SPLIT"]

    def spec_with_split(self) -> pd.DataFrame:
        """:meth:`spec` with a ``SPLIT`` column."""
        spec = self.spec()
        spec["SPLIT"] = self.split().reindex(spec["OBJID"]).to_numpy()
        return spec

    def cutouts_path(self) -> Path:
        return self.read("sky/cutouts.h5")

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
