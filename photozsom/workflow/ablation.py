"""Ablations: how much of a model's performance comes from which of its inputs.

:func:`encoder_ablation` asks what the built-in :class:`~photozsom.embed.Encoder` learns from
the pixels. The full encoder feeds a hand-built light profile (mean surface brightness of
each band in nine annuli) into its embedding and trains a profile-reconstruction loss, so an
MDN on its embedding is partly an MDN on photometry. The ablation pretrains the same encoder
with ``image_only=True`` — no profile branch, no reconstruction loss: everything in the
embedding is learned from the pixels by the contrastive objective — and sets the MDN on it
beside the MDN on the full encoder and the MDN on catalogue features, on the same test
galaxies.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.artifacts import read_json, write_json
from photozsom.embed import Encoder, embed_to_file, load_embeddings
from photozsom.evaluation.results import prediction_table, table1
from photozsom.model import PhotoZModel, with_embeddings
from photozsom.workflow.pipeline import Run, preset

__all__ = ["ABLATION_ROWS", "encoder_ablation"]

#: Row names of :func:`encoder_ablation`'s table, in order.
ABLATION_ROWS: tuple[str, str, str] = (
    "image-only encoder MDN",
    "full encoder MDN",
    "catalogue MDN",
)

#: Where the ablation writes inside a run directory (never the embed stage's own files).
ABLATION_DIR = "embed/image_only"


def _as_run(run: Any):

    return run if isinstance(run, Run) else Run(run)


def _stage_param(run, stage: str, key: str) -> Any:
    prov = run.provenance(stage)
    return None if prov is None else prov["params"].get(key)


def _fresh_folder(run, params: dict[str, Any]) -> Path:
    """``embed/image_only/`` of the run, emptied when it was made with other ``params``
    (another data run, seed, dim or epochs), so that no stale checkpoint is resumed."""

    folder = run.write(ABLATION_DIR + "/")
    record = folder / "params.json"
    if folder.exists() and (not record.exists() or read_json(record) != params):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not record.exists():
        write_json(record, params)
    return folder


def encoder_ablation(
    run: Any,
    *,
    scale: str = "ci",
    seed: int = 0,
    epochs: int | None = None,
    dim: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Test-split metrics of the MDN on an image-only encoder, the full encoder and the catalogue.

    On a pipeline run directory whose stages ``data``, ``embed`` and ``mdn`` (and, for the
    catalogue row, ``baseline``) have run:

    1. pretrain ``Encoder(image_only=True)`` self-supervised on the same galaxies the embed
       stage uses (random-sample galaxies with ``HAS_CUTOUT``), with the embed stage's
       ``dim`` and ``epochs`` unless given;
    2. embed every cutout of ``sky/cutouts.h5``;
    3. train a :class:`~photozsom.model.PhotoZModel` on the image-only embedding
       (``features="embedding"``) on the training split with early stopping on the
       validation split, with the mdn stage's settings (``hidden``, ``max_epochs``,
       ``recalibration``), and predict the test split;
    4. tabulate it beside ``mdn/predictions.parquet`` (the MDN on the full encoder) and
       ``baseline/catalog_mdn.parquet`` (the MDN on catalogue features, when present), on
       the test galaxies all of them scored (:func:`photozsom.evaluation.results.matched`).

    Everything is written under ``<run>/embed/image_only/`` (``encoder/``, ``encoder.ckpt/``,
    ``embeddings.h5``, ``model/``, ``predictions.parquet``, ``params.json``); the embed
    stage's ``embed/encoder`` and ``embed/embeddings.h5`` are not touched. A call
    interrupted during pretraining or embedding resumes where it stopped; a folder made with
    other settings or from another data run is replaced.

    Parameters
    ----------
    run : photozsom.workflow.pipeline.Run or path
        The run directory.
    scale : {"tiny", "ci", "default"}
        Preset for ``dim``, ``epochs`` and ``max_epochs`` where the run's provenance does not
        give them.
    seed : int
        Seed of the encoder and of the MDN.
    epochs : int, optional
        Pretraining epochs; default the embed stage's (else the preset's ``embed_epochs``).
    dim : int, optional
        Embedding length; default the embed stage's (else the preset's ``embed_dim``).
    progress : bool
        Show progress bars.

    Returns
    -------
    DataFrame
        Index :data:`ABLATION_ROWS` (the catalogue row only when its predictions exist),
        columns ``MAD, bias, eta_%, PCO_%, R2, CRPS, N`` (:func:`photozsom.evaluation.results.metrics_table`,
        with ``Δz = (z_phot - z) / (1 + z)``: 1.4826 median ``|Δz|``, mean ``Δz``, per cent of
        ``|Δz| > 0.15``, per cent of PIT values below 0.005 or above 0.995, R² of ``z_phot``
        against ``z``, mean CRPS, number of test galaxies); ``z_phot`` is the mean of P(z).

    Raises
    ------
    FileNotFoundError
        A stage the ablation reads has not run (the message names it).
    ValueError
        The embed stage used AION-1 rather than the built-in encoder, or the mdn stage was
        trained on other inputs than the embedding.
    """

    run = _as_run(run)
    embedder = _stage_param(run, "embed", "embedder")
    if embedder not in (None, "encoder"):
        raise ValueError(
            f"the embed stage of {run} used embedder={embedder!r}; the encoder ablation "
            "compares with the built-in encoder: rerun the embed stage with embedder='encoder'"
        )
    mdn_inputs = _stage_param(run, "mdn", "inputs")
    if mdn_inputs not in (None, "embedding"):
        raise ValueError(
            f"the mdn stage of {run} was trained on inputs={mdn_inputs!r}; the encoder ablation "
            "compares with the MDN on the embedding alone: rerun the mdn stage with "
            "inputs='embedding'"
        )
    full_path = run.read("mdn/predictions.parquet")
    store = run.cutouts_path()
    p = preset(scale)
    dim = int(dim or _stage_param(run, "embed", "dim") or p["embed_dim"])
    epochs = int(epochs or _stage_param(run, "embed", "epochs") or p["embed_epochs"])
    hidden = tuple(_stage_param(run, "mdn", "hidden") or (256, 256, 256))
    max_epochs = _stage_param(run, "mdn", "max_epochs") or p["mdn_max_epochs"]
    max_epochs = None if max_epochs is None else int(max_epochs)   # None: the MDN's schedule
    recalibration = _stage_param(run, "mdn", "recalibration")
    data_run = (run.provenance("data") or {}).get("fingerprint")
    folder = _fresh_folder(run, {"seed": int(seed), "dim": dim, "epochs": epochs,
                                 "data": data_run})

    # 1. pretrain, on the embed stage's galaxies
    random = run.random()
    ids = (random.loc[random["HAS_CUTOUT"].astype(bool), "OBJID"].to_numpy()
           if "HAS_CUTOUT" in random else None)
    enc_path = folder / "encoder"
    if enc_path.exists():
        encoder = Encoder.load(enc_path)
    else:
        encoder = Encoder(dim=dim, seed=seed, image_only=True)
        encoder.fit(store, epochs=epochs, objid=ids, checkpoint=folder / "encoder.ckpt",
                    progress=progress)
        encoder.save(enc_path)

    # 2. embed
    emb_path = embed_to_file(encoder, store, folder / "embeddings.h5", progress=progress)

    # 3. the MDN on the image-only embedding
    spec = run.spec_with_split()
    objid = spec["OBJID"].to_numpy()
    emb, emb_ids = load_embeddings(emb_path, objid=objid)
    full = np.full((len(spec), emb.shape[1]), np.nan, dtype=np.float32)
    pos = pd.Index(objid).get_indexer(np.asarray(emb_ids))
    full[pos[pos >= 0]] = emb[pos >= 0]
    data = with_embeddings(spec, full)
    split = data["SPLIT"].to_numpy()
    tr, va, te = (split == s for s in ("train", "val", "test"))
    z = data["Z"].to_numpy(np.float64)
    model = PhotoZModel("embedding", seed=seed, hidden=hidden, max_epochs=max_epochs,
                        recalibration=recalibration)
    model.fit(data[tr], z[tr], data[va], z[va], progress=progress)
    model.save(folder / "model")
    pdf, ok, _ = model.predict_with_status(data[te])
    pred = prediction_table(pdf, objid[te][ok], z[te][ok])
    pred.to_parquet(folder / "predictions.parquet", index=False)

    # 4. the table
    tables = {ABLATION_ROWS[0]: pred, ABLATION_ROWS[1]: pd.read_parquet(full_path)}
    if run.exists("baseline/catalog_mdn.parquet"):
        tables[ABLATION_ROWS[2]] = pd.read_parquet(run.read("baseline/catalog_mdn.parquet"))
    return table1(tables, with_paper=False)


def _cli_main(argv: list[str] | None = None) -> int:  # pragma: no cover - thin wrapper
    import argparse

    ap = argparse.ArgumentParser(description=encoder_ablation.__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--scale", default="ci")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--dim", type=int)
    a = ap.parse_args(argv)
    with pd.option_context("display.width", 120):
        print(encoder_ablation(a.run, scale=a.scale, seed=a.seed, epochs=a.epochs, dim=a.dim,
                               progress=True))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_cli_main())
