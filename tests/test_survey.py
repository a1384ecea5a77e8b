"""Survey scale (photozsom.survey): HATS catalogues with LSDB on a local Dask cluster of two
worker processes, checked against the single-process paths on the ci-scale simulated sky."""

from __future__ import annotations

from pathlib import Path

import distributed  # noqa: F401
import h5py
import lsdb  # noqa: F401  (the survey extra, installed by the test command)
import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from photozsom import survey
from photozsom.data.crossmatch import crossmatch
from photozsom.evaluation import cells
from photozsom.features import SOM_FEATURES, som_features
from photozsom.flags import Flagger
from photozsom.model import PhotoZModel
from photozsom.predict import flag_table, predict_table
from photozsom.sim import simulate
from photozsom.som import SOM

BORDER_ID0 = 10_000_000  # OBJIDs of the rows moved onto tile borders


def _border_positions(step: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Points exactly on the borders of the 12 order-0 HEALPix pixels (corners and edges).

    A border of an order-0 pixel is a border at every finer order, so these rows sit on a
    tile border whatever order the partitioning chooses.
    """
    import cdshealpix.nested as hpn

    lon, lat = hpn.vertices(np.arange(12, dtype=np.uint64), 0, step=step)
    ra = np.asarray(lon.to_value(u.deg)).ravel() % 360.0
    dec = np.asarray(lat.to_value(u.deg)).ravel()
    key = np.round(ra, 9) * 1000 + np.round(dec, 9)
    _, first = np.unique(key, return_index=True)
    return ra[np.sort(first)], dec[np.sort(first)]


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    """The ci-scale sky; photometry = the random sample + copies of the spectroscopic
    galaxies 0.3-1.5" away (their counterparts) + rows exactly on tile borders."""
    root = tmp_path_factory.mktemp("survey")
    paths = simulate(root / "sky", scale="ci", seed=0, progress=False)
    rnd = pd.read_parquet(paths["random"]).sample(8000, random_state=0).reset_index(drop=True)
    spec = pd.read_parquet(paths["spec"])
    rng = np.random.default_rng(0)
    phot_cols = list(rnd.columns)
    # counterparts of the spectroscopic galaxies, a small offset away
    cp = spec[[c for c in phot_cols if c in spec.columns]].copy()
    c = SkyCoord(cp.RA.to_numpy() * u.deg, cp.DEC.to_numpy() * u.deg)
    c = c.directional_offset_by(rng.uniform(0, 360, len(cp)) * u.deg,
                                rng.uniform(0.3, 1.5, len(cp)) * u.arcsec)
    cp["RA"], cp["DEC"] = c.ra.deg, c.dec.deg
    cp["OBJID"] = np.arange(len(cp), dtype=np.int64) + 5_000_000
    # rows exactly on tile borders, each with a spectroscopic neighbour 1" away
    bra, bdec = _border_positions()
    border = rnd.sample(len(bra), random_state=1).copy()
    border["RA"], border["DEC"] = bra, bdec
    border["OBJID"] = np.arange(len(bra), dtype=np.int64) + BORDER_ID0
    for col in ("Z_TRUE", "HAS_CUTOUT"):
        if col in cp.columns:
            cp[col] = cp[col].astype(rnd[col].dtype)
    phot = pd.concat([rnd, cp[phot_cols], border[phot_cols]], ignore_index=True)
    # spectroscopic side: the real spec rows + one row 1" from each border row
    bc = SkyCoord(bra * u.deg, bdec * u.deg).directional_offset_by(
        rng.uniform(0, 360, len(bra)) * u.deg, 1.0 * u.arcsec)
    sb = spec.sample(len(bra), random_state=2).copy()
    sb["RA"], sb["DEC"] = bc.ra.deg, bc.dec.deg
    sb["OBJID"] = np.arange(len(bra), dtype=np.int64) + 20_000_000
    spec_x = pd.concat([spec, sb], ignore_index=True)
    spec_x.index = pd.RangeIndex(100, 100 + len(spec_x))  # a non-default index is kept
    return {"root": root, "paths": paths, "random": rnd, "spec": spec, "phot": phot,
            "spec_x": spec_x, "n_border": len(bra)}


@pytest.fixture(scope="module")
def models(sky):
    """A small Flagger and PhotoZModel trained on the spectroscopic sample, saved."""
    spec = sky["spec"]
    X, ok = som_features(spec)
    som = SOM(shape=(6, 6), n_features=X.shape[1], feature_names=list(SOM_FEATURES), seed=0)
    som.fit(X[ok], epochs=3, progress=False)
    cell = som.predict(X[ok])
    z = spec["Z"].to_numpy()[ok]
    rng = np.random.default_rng(3)
    counts = np.bincount(cell, minlength=som.n_cells)
    rep = cells.report(cell, z, z + 0.03 * rng.standard_normal(z.size), rng.uniform(size=z.size),
                       som.n_cells, counts, n_boot=50, seed=0)
    flagger = Flagger(som, rep, counts)
    flagger.save(sky["root"] / "flagger")
    half = len(spec) * 2 // 3
    model = PhotoZModel(seed=0, hidden=(16,), max_epochs=3)
    model.fit(spec.iloc[:half], spec["Z"].iloc[:half], spec.iloc[half:], spec["Z"].iloc[half:],
              progress=False)
    model.save(sky["root"] / "model")
    return {"flagger": flagger, "model": model, "flagger_dir": sky["root"] / "flagger",
            "model_dir": sky["root"] / "model"}


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster of two worker processes; yields the scheduler address."""
    with survey.dask_client(workers=2) as client:
        yield client.scheduler.address


@pytest.fixture(scope="module")
def phot_hats(sky):
    return survey.to_hats(sky["phot"], sky["root"] / "phot", margin_arcsec=None,
                          partition_rows=4000, progress=False)


def _compare(out: pd.DataFrame, ref: pd.DataFrame) -> None:
    for col in ref.columns:
        a, b = out[col].to_numpy(), ref[col].to_numpy()
        if b.dtype.kind == "f":
            np.testing.assert_allclose(a.astype(float), b, rtol=0, atol=1e-6, err_msg=col)
        else:
            np.testing.assert_array_equal(a.astype(b.dtype), b, err_msg=col)


def test_predict_and_flag_hats_equal_single_process_and_keep_every_row(sky, models, cluster,
                                                                      phot_hats):
    phot = sky["phot"]
    cat = survey.open_hats(phot_hats, margin=False)
    assert len(cat.get_healpix_pixels()) > 4  # really split into tiles
    out_p = survey.predict_hats(phot_hats, sky["root"] / "pred", models["model_dir"],
                                models["flagger_dir"], scheduler=cluster, progress=False)
    out_f = survey.flag_hats(phot_hats, sky["root"] / "flag", models["flagger_dir"],
                             scheduler=cluster, progress=False)
    order = np.argsort(phot["OBJID"].to_numpy(), kind="stable")
    for path, ref in ((out_p, predict_table(phot, models["model"], models["flagger"])),
                      (out_f, flag_table(phot, models["flagger"]))):
        got = survey.read_hats_frame(path)
        # every input row exactly once (none lost or duplicated at tile borders)
        assert len(got) == len(phot)
        assert got["OBJID"].is_unique
        np.testing.assert_array_equal(got["OBJID"].to_numpy(), phot["OBJID"].to_numpy()[order])
        np.testing.assert_array_equal(got["RA"].to_numpy(), phot["RA"].to_numpy()[order])
        assert list(got.columns) == ["OBJID", "RA", "DEC", *ref.columns]
        _compare(got, ref.iloc[order].reset_index(drop=True))
    got = survey.read_hats_frame(out_p)
    assert np.isfinite(got["Z_PHOT_MEAN"]).mean() > 0.9  # predictions, not NaN placeholders


def test_border_rows_sit_on_tile_borders_and_are_written_once(sky, phot_hats):
    import hats.pixel_math.healpix_shim as hp

    cat = survey.open_hats(phot_hats, margin=False)
    pixels = cat.get_healpix_pixels()
    got = survey.read_hats_frame(phot_hats)
    bor = got[got["OBJID"] >= BORDER_ID0]
    assert len(bor) == sky["n_border"]
    # nudging each border row by 1 mas in four directions lands in >= 2 different tiles
    seen = [set() for _ in range(len(bor))]
    for dra, ddec in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ra = bor["RA"].to_numpy() + dra * 1e-3 / 3600 / np.cos(np.radians(bor["DEC"].to_numpy()))
        dec = np.clip(bor["DEC"].to_numpy() + ddec * 1e-3 / 3600, -90, 90)
        for p in pixels:
            pix = hp.radec2pix(p.order, ra, dec)
            for i in np.flatnonzero(pix == p.pixel):
                seen[i].add((p.order, p.pixel))
    n_sides = np.array([len(s) for s in seen])
    # (a border row at the edge of the data has no tile on its other side)
    assert (n_sides >= 2).sum() >= 0.8 * len(bor)


def test_crossmatch_equals_astropy_path_across_tile_borders(sky, cluster):
    spec, phot = sky["spec_x"], sky["phot"]
    got = survey.crossmatch_frame(spec, phot, 2.0, scheduler=cluster)
    ref = crossmatch(spec, phot, 2.0, progress=False)
    assert got.index.equals(ref.index) and list(got.columns) == list(ref.columns)
    np.testing.assert_array_equal(got["MATCHED"].to_numpy(), ref["MATCHED"].to_numpy())
    m = ref["MATCHED"].to_numpy()
    assert m.sum() >= len(sky["spec"])  # every galaxy has its counterpart
    np.testing.assert_array_equal(got["OBJID_PHOT"].to_numpy()[m],
                                  ref["OBJID_PHOT"].to_numpy()[m])
    np.testing.assert_allclose(got["SEP_ARCSEC"].to_numpy()[m], ref["SEP_ARCSEC"].to_numpy()[m],
                               rtol=0, atol=1e-6)
    # the pairs split by a tile border are found
    bord = ref["OBJID"].to_numpy() >= 20_000_000
    assert m[bord].all()
    assert (got["OBJID_PHOT"].to_numpy()[bord] >= BORDER_ID0).all()
    pd.testing.assert_frame_equal(got, ref, check_exact=False, atol=1e-6, rtol=0)


def test_map_hats_refuses_a_function_that_drops_rows(sky, phot_hats, tmp_path):
    with pytest.raises(ValueError, match="one row per input row"):
        survey.map_hats(phot_hats, tmp_path / "bad", _drop_one, progress=False)


def _drop_one(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"X": np.zeros(max(len(df) - 1, 0))})


def test_embed_hats_per_tile_equals_direct_embedding_and_resumes(sky, cluster, tmp_path):
    from photozsom.embed import Encoder
    from photozsom.embed.store import CutoutStore

    store_path = sky["paths"]["cutouts"]
    with CutoutStore(store_path) as st:
        ids = st.objid
    spec = sky["spec"]
    sub = spec[spec["OBJID"].isin(ids[:300])]
    hp_path = survey.to_hats(sub, tmp_path / "sub", margin_arcsec=None, partition_rows=60,
                             progress=False)
    enc = Encoder(dim=8, size=32, widths=(8, 8), seed=0, device="cpu")
    enc.fit(store_path, epochs=1, batch_size=16, rows=np.arange(64), max_steps=2, progress=False)
    enc.save(tmp_path / "enc")
    enc = Encoder.load(tmp_path / "enc", device="cpu")
    res = survey.embed_hats(hp_path, store_path, tmp_path / "emb", tmp_path / "enc",
                            device="cpu", chunk=32, scheduler=cluster)
    assert len(res) > 1 and res["n_rows"].sum() == len(sub)
    got_ids, got = [], []
    for path in res["path"]:
        with h5py.File(path, "r") as h5:
            got_ids.append(h5["OBJID"][:])
            got.append(h5["embedding"][:])
    got_ids, got = np.concatenate(got_ids), np.concatenate(got)
    assert np.unique(got_ids).size == len(sub)
    with CutoutStore(store_path) as st:
        images, mask, _ = st.read(st.rows_of(got_ids))
    ref = enc.embed(images, mask, progress=False)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    # a rerun reuses every tile's cutout shard and finished embedding file; a tile whose
    # embedding file is gone is redone, with the same result
    shards = sorted((tmp_path / "emb" / "cutouts").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in shards]
    Path(res["path"].iloc[0]).unlink()
    again = survey.embed_hats(hp_path, store_path, tmp_path / "emb", tmp_path / "enc",
                              device="cpu", chunk=32)
    pd.testing.assert_frame_equal(again, res)
    assert mtimes == [p.stat().st_mtime_ns for p in shards]
    redo = []
    for path in again["path"]:
        with h5py.File(path, "r") as h5:
            redo.append(h5["embedding"][:])
    np.testing.assert_array_equal(np.concatenate(redo), got)


def test_cli_main_flags_a_hats_catalogue_in_process(sky, models, phot_hats, tmp_path):
    from argparse import Namespace

    args = Namespace(command="flag", input=phot_hats, output=tmp_path / "cli",
                     model=models["flagger_dir"], workers=None, scheduler=None, overwrite=False)
    assert survey.cli_main(args) == 0
    got = survey.read_hats_frame(tmp_path / "cli")
    phot = sky["phot"]
    order = np.argsort(phot["OBJID"].to_numpy(), kind="stable")
    _compare(got, flag_table(phot, models["flagger"]).iloc[order].reset_index(drop=True))
    with pytest.raises(FileExistsError, match="overwrite"):
        survey.cli_main(args)
