"""The encoder ablation on a tiny pipeline run: image-only encoder vs full encoder vs catalogue."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score

from photozsom.embed import Encoder, load_embeddings
from photozsom.workflow import pipeline
from photozsom.workflow.ablation import ABLATION_ROWS, encoder_ablation


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = pipeline.Run(tmp_path_factory.mktemp("ablation"))
    pipeline.run_data(run, scale="tiny", progress=False)
    pipeline.run_embed(run, scale="tiny")
    pipeline.run_mdn(run, scale="tiny", cv_folds=0, progress=False)
    pipeline.run_baseline(run, scale="tiny")
    stage_files = {p: _digest(run.root / p) for p in (
        "embed/encoder/arrays.npz", "embed/encoder/meta.json", "embed/embeddings.h5",
        "mdn/predictions.parquet")}
    table = encoder_ablation(run, scale="tiny")
    return run, table, stage_files


def _independent_metrics(t: pd.DataFrame) -> dict[str, float]:
    z, zp = t["Z"].to_numpy(), t["Z_PHOT_MEAN"].to_numpy()
    dz = (zp - z) / (1 + z)
    pit = t["PIT"].to_numpy()
    return {"MAD": 1.4826 * np.median(np.abs(dz)), "bias": dz.mean(),
            "eta_%": 100 * np.mean(np.abs(dz) > 0.15),
            "PCO_%": 100 * np.mean((pit < 0.005) | (pit > 0.995)),
            "R2": r2_score(z, zp), "CRPS": t["CRPS"].mean(), "N": len(t)}


def test_table_has_the_three_models_and_the_metrics(tiny_run):
    _, table, _ = tiny_run
    assert table.shape == (3, 7)
    assert list(table.index) == list(ABLATION_ROWS)
    assert list(table.columns) == ["MAD", "bias", "eta_%", "PCO_%", "R2", "CRPS", "N"]
    assert np.isfinite(table.drop(columns="N").to_numpy(float)).all()


def test_metrics_equal_an_independent_computation_from_the_prediction_files(tiny_run):
    run, table, _ = tiny_run
    files = {ABLATION_ROWS[0]: "embed/image_only/predictions.parquet",
             ABLATION_ROWS[1]: "mdn/predictions.parquet",
             ABLATION_ROWS[2]: "baseline/catalog_mdn.parquet"}
    preds = {k: pd.read_parquet(run.root / f) for k, f in files.items()}
    common = set.intersection(*(set(t["OBJID"]) for t in preds.values()))
    test_ids = set(run.spec_with_split().query("SPLIT == 'test'")["OBJID"])
    assert common <= test_ids and len(common) > 0.9 * len(test_ids)
    for name, t in preds.items():
        want = _independent_metrics(t[t["OBJID"].isin(common)])
        got = table.loc[name]
        assert int(got["N"]) == want.pop("N") == len(common)
        for col, value in want.items():
            assert float(got[col]) == pytest.approx(value, rel=1e-9, abs=1e-12), (name, col)


def test_the_image_only_encoder_is_pretrained_like_the_embed_stage_without_touching_it(tiny_run):
    run, _, stage_files = tiny_run
    for path, digest in stage_files.items():
        assert _digest(run.root / path) == digest, path
    folder = run.root / "embed" / "image_only"
    enc = Encoder.load(folder / "encoder")
    full = Encoder.load(run.root / "embed" / "encoder")
    assert enc.image_only and not full.image_only
    assert enc.photometry_weight == 0.0 and enc.history["photometry"] == [0.0] * len(
        full.history["photometry"])
    assert enc.dim == full.dim and enc.size == full.size
    random = run.random()
    assert enc.history["n_train"] == full.history["n_train"] == int(random["HAS_CUTOUT"].sum())
    emb, ids = load_embeddings(folder / "embeddings.h5")
    full_emb, full_ids = load_embeddings(run.root / "embed" / "embeddings.h5")
    np.testing.assert_array_equal(ids, full_ids)
    assert emb.shape == full_emb.shape and not np.allclose(emb, full_emb, equal_nan=True)


def test_a_second_call_reuses_the_encoder_and_the_catalogue_row_needs_its_file(tiny_run):
    run, _, _ = tiny_run
    folder = run.root / "embed" / "image_only"
    encoder_digest = _digest(folder / "encoder" / "arrays.npz")
    first = pd.read_parquet(folder / "predictions.parquet")
    cat = run.root / "baseline" / "catalog_mdn.parquet"
    aside = cat.with_name("aside.parquet")
    cat.rename(aside)
    try:
        again = encoder_ablation(run, scale="tiny")
    finally:
        aside.rename(cat)
    assert _digest(folder / "encoder" / "arrays.npz") == encoder_digest
    assert list(again.index) == list(ABLATION_ROWS[:2])
    # same encoder and seed: the same MDN predictions
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "predictions.parquet"), first,
                                  rtol=1e-6)
    full = pd.read_parquet(run.root / "mdn/predictions.parquet")
    assert int(again.loc[ABLATION_ROWS[0], "N"]) == len(set(first["OBJID"]) & set(full["OBJID"]))


def test_an_mdn_stage_on_other_inputs_or_a_missing_stage_is_a_clear_error(tiny_run, tmp_path):
    from photozsom.artifacts import write_json

    run, _, _ = tiny_run
    prov_path = run.root / "mdn" / "provenance.json"
    saved = prov_path.read_text()
    prov = run.provenance("mdn")
    write_json(prov_path, {**prov, "params": {**prov["params"], "inputs": "catalog"}})
    try:
        with pytest.raises(ValueError, match="inputs='embedding'"):
            encoder_ablation(run, scale="tiny")
    finally:
        prov_path.write_text(saved)
    with pytest.raises(FileNotFoundError, match="mdn"):
        encoder_ablation(pipeline.Run(tmp_path / "empty"), scale="tiny")
