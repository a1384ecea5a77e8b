"""Tests of the Embedder protocol, embed_to_file/load_embeddings and the built-in Encoder."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from photozsom.embed import (
    Embedder,
    Encoder,
    embed_to_file,
    load_embedding_status,
    load_embeddings,
)
from photozsom.embed.encoder import estimate_sky_sigma, stretch
from photozsom.embed.store import CutoutStore

SIGMA = np.array([0.006, 0.01, 0.015, 0.025], np.float32)  # sky noise, nanomaggies/pixel


def toy_galaxies(n: int, size: int = 24, seed: int = 0, north_frac: float = 0.0):
    """Elliptical exponential discs of random size, orientation, flux and colour plus sky noise.

    Returns images [n, 4, size, size] (nanomaggies/pixel), band_mask [n, 4], sigma [n, 4];
    a fraction ``north_frac`` has no i-band (NaN, mask False), like DR10-north.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    r_half = rng.uniform(0.8, 4.0, n)[:, None, None]
    q = rng.uniform(0.3, 1.0, n)[:, None, None]
    th = rng.uniform(0.0, np.pi, n)[:, None, None]
    u = xx * np.cos(th) + yy * np.sin(th)
    v = (-xx * np.sin(th) + yy * np.cos(th)) / q
    prof = np.exp(-1.678 * np.hypot(u, v) / r_half)
    prof /= prof.sum(axis=(1, 2), keepdims=True)
    total = 10 ** rng.uniform(0.3, 1.5, n)  # r-band flux, nanomaggies
    colour = 10 ** (-0.4 * rng.uniform(-1.5, 1.5, (n, 4)))  # flux ratio to r
    colour[:, 1] = 1.0
    images = (total[:, None, None, None] * colour[:, :, None, None] * prof[:, None]).astype(
        np.float32
    )
    images += rng.normal(size=images.shape).astype(np.float32) * SIGMA[None, :, None, None]
    mask = np.ones((n, 4), bool)
    north = rng.random(n) < north_frac
    mask[north, 2] = False
    images[north, 2] = np.nan
    sigma = np.broadcast_to(SIGMA, (n, 4)).copy()
    return images, mask, sigma


def tiny_encoder(seed: int = 0) -> Encoder:
    return Encoder(dim=16, size=16, seed=seed, widths=(8, 16, 16, 16), lr=5e-3, max_shift=2)


@pytest.fixture(scope="module")
def toy():
    return toy_galaxies(192, size=20, seed=1, north_frac=0.3)


@pytest.fixture(scope="module")
def trained(toy):
    images, mask, sigma = toy
    enc = tiny_encoder()
    enc.fit(images, epochs=12, batch_size=64, band_mask=mask, sigma=sigma, progress=False)
    return enc


class MomentEmbedder:
    """Hand-written embedder for the file tests: total flux and second moment per band."""

    dim = 8
    device = "cpu"

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.calls = 0
        self.rows = 0

    def embed(self, cutouts, band_mask, *, batch_size=256, progress=True):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.rows += len(cutouts)
        x = np.where(band_mask[:, :, None, None], np.nan_to_num(cutouts), 0.0)
        h = x.shape[-1]
        r2 = ((np.arange(h) - (h - 1) / 2) ** 2)[None, :] + ((np.arange(h) - (h - 1) / 2) ** 2)[
            :, None
        ]
        return np.concatenate([x.sum(axis=(2, 3)), (x * r2).sum(axis=(2, 3))], axis=1).astype(
            np.float32
        )


@pytest.fixture()
def store_path(tmp_path):
    images, mask, sigma = toy_galaxies(50, size=20, seed=3, north_frac=0.4)
    path = tmp_path / "cutouts.h5"
    with CutoutStore.create(path, size=20) as store:
        store.append(images, mask, np.arange(1000, 1050), sigma)
    return path


# -- protocol ------------------------------------------------------------------------------
def test_encoder_satisfies_protocol_shapes_and_dtype(trained, toy):
    images, mask, _ = toy
    assert isinstance(trained, Embedder)
    emb = trained.embed(images[:37], mask[:37], batch_size=10, progress=False)
    assert emb.shape == (37, trained.dim) and emb.dtype == np.float32
    assert np.isfinite(emb).all()


def test_untrained_encoder_refuses_to_embed(toy):
    images, mask, _ = toy
    with pytest.raises(RuntimeError, match="not pretrained"):
        tiny_encoder().embed(images[:2], mask[:2])


# -- what the encoder learned ----------------------------------------------------------------
def test_flipped_and_rotated_copies_embed_closer_than_other_galaxies(trained, toy):
    images, mask, _ = toy
    south = mask.all(axis=1)
    images, mask = images[south], mask[south]
    emb = trained.embed(images, mask, progress=False)
    other = np.roll(emb, 1, axis=0)  # a different galaxy for each one
    for k, flip in ((1, False), (2, True), (3, False)):
        aug = np.rot90(images, k, axes=(2, 3))
        aug = np.ascontiguousarray(aug[..., ::-1] if flip else aug)
        emb_aug = trained.embed(aug, mask, progress=False)
        d_self = np.linalg.norm(emb - emb_aug, axis=1)
        d_other = np.linalg.norm(emb - other, axis=1)
        assert np.median(d_self) < 0.6 * np.median(d_other)
        assert np.mean(d_self < d_other) > 0.75


def _conv_branch(enc: Encoder, images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    side = enc.size
    off = (images.shape[-1] - side) // 2
    x = torch.from_numpy(np.ascontiguousarray(images[:, :, off : off + side, off : off + side]))
    m = torch.from_numpy(mask)
    enc.net.eval()
    with torch.no_grad():
        return enc.net.conv_features(stretch(x, m, torch.as_tensor(enc.softening)), m).numpy()


def test_contrastive_training_makes_the_convolutional_branch_rotation_invariant(trained, toy):
    # The profile branch is rotation invariant by construction; the convolutional branch
    # must learn it from the flip/rotation augmentations.
    images, mask, _ = toy
    south = mask.all(axis=1)
    images, mask = images[south], mask[south]
    untrained = tiny_encoder()
    untrained.softening = trained.softening
    aug = np.ascontiguousarray(np.rot90(images, 1, axes=(2, 3))[..., ::-1])
    ratios = []
    for enc in (untrained, trained):
        e, e_aug = _conv_branch(enc, images, mask), _conv_branch(enc, aug, mask)
        d_self = np.linalg.norm(e - e_aug, axis=1)
        d_other = np.linalg.norm(e - np.roll(e, 1, axis=0), axis=1)
        ratios.append(np.median(d_self) / np.median(d_other))
    assert ratios[1] < 0.85 * ratios[0]


def test_training_reduces_contrastive_and_photometry_losses(trained):
    assert trained.history["photometry"][-1] < 0.5 * trained.history["photometry"][0]
    loss = trained.history["contrastive"]
    # log(2B - 1) is the NT-Xent of an embedding that cannot tell galaxies apart; there are
    # two such terms (whole embedding, convolutional branch alone).
    assert loss[0] == pytest.approx(2 * np.log(2 * 64 - 1), abs=0.5)
    assert loss[-1] < loss[0] - 0.5


def test_embeddings_deterministic_for_a_seed(toy, trained):
    images, mask, sigma = toy
    again = tiny_encoder(seed=0)
    again.fit(images, epochs=12, batch_size=64, band_mask=mask, sigma=sigma, progress=False)
    a = trained.embed(images[:20], mask[:20], progress=False)
    np.testing.assert_array_equal(a, trained.embed(images[:20], mask[:20], progress=False))
    np.testing.assert_array_equal(a, again.embed(images[:20], mask[:20], progress=False))
    other = tiny_encoder(seed=1)
    other.fit(images, epochs=1, batch_size=64, band_mask=mask, sigma=sigma, progress=False)
    assert not np.allclose(a, other.embed(images[:20], mask[:20], progress=False))


def test_checkpoint_resume_equals_uninterrupted_training(tmp_path, toy):
    images, mask, sigma = toy
    images, mask, sigma = images[:128], mask[:128], sigma[:128]
    straight = tiny_encoder()
    straight.fit(images, epochs=2, batch_size=64, band_mask=mask, sigma=sigma, progress=False)
    ck = tmp_path / "enc.ckpt"
    interrupted = tiny_encoder()  # stops during epoch 2: only epoch 1 is saved
    interrupted.fit(
        images,
        epochs=2,
        batch_size=64,
        band_mask=mask,
        sigma=sigma,
        checkpoint=ck,
        max_steps=3,
        progress=False,
    )
    resumed = tiny_encoder()
    hist = resumed.fit(
        images, epochs=2, batch_size=64, band_mask=mask, sigma=sigma, checkpoint=ck, progress=False
    )
    assert len(hist["loss"]) == 2 and hist["steps"] == 4
    np.testing.assert_allclose(
        resumed.embed(images, mask, progress=False),
        straight.embed(images, mask, progress=False),
        rtol=1e-5,
        atol=1e-5,
    )


def test_save_load_roundtrip_is_a_pickle_free_directory(tmp_path, trained, toy):
    images, mask, _ = toy
    path = trained.save(tmp_path / "encoder")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "meta.json"]
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "photozsom.encoder" and meta["config"]["dim"] == trained.dim
    with np.load(path / "arrays.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(
            z["state/embed.weight"], trained.net.state_dict()["embed.weight"].numpy()
        )
    loaded = Encoder.load(path)
    np.testing.assert_array_equal(
        loaded.embed(images[:10], mask[:10], progress=False),
        trained.embed(images[:10], mask[:10], progress=False),
    )
    assert loaded.identity() == trained.identity()
    assert loaded.history == trained.history


def test_single_file_from_older_photozsom_loads_without_unpickling_code(tmp_path, trained, toy):
    images, mask, _ = toy
    old = {
        "format": "photozsom.Encoder/1",
        "config": trained._config(),
        "state_dict": {k: v.cpu() for k, v in trained.net.state_dict().items()},
        "softening": trained.softening.tolist(),
        "history": trained.history,
        "fitted": True,
    }
    torch.save(old, tmp_path / "encoder.pt")
    loaded = Encoder.load(tmp_path / "encoder.pt")
    np.testing.assert_array_equal(
        loaded.embed(images[:5], mask[:5], progress=False),
        trained.embed(images[:5], mask[:5], progress=False),
    )


KILLED_WRITER = """
import os, pathlib, sys
import numpy as np
from photozsom.embed import Encoder

data_path, ck, where = sys.argv[1:]
counts = {"meta": 0, "swap": 0}
write_text, replace = pathlib.Path.write_text, os.replace

def write_text_or_die(self, *args, **kwargs):
    if self.name == "meta.json":
        counts["meta"] += 1
        if where == "meta" and counts["meta"] == 2:  # 2nd checkpoint: arrays written, no meta
            os._exit(9)
    return write_text(self, *args, **kwargs)

def replace_or_die(src, dst):
    counts["swap"] += 1
    if where == "swap" and counts["swap"] == 3:  # 2nd checkpoint: old one moved aside
        os._exit(9)
    return replace(src, dst)

pathlib.Path.write_text, os.replace = write_text_or_die, replace_or_die
data = np.load(data_path)
enc = Encoder(dim=16, size=16, seed=0, widths=(8, 16, 16, 16), lr=5e-3, max_shift=2)
enc.fit(data["images"], epochs=3, batch_size=64, band_mask=data["mask"],
        sigma=data["sigma"], checkpoint=ck, progress=False)
"""


@pytest.fixture(scope="module")
def straight_three_epochs(toy):
    images, mask, sigma = (a[:128] for a in toy)
    enc = tiny_encoder()
    enc.fit(images, epochs=3, batch_size=64, band_mask=mask, sigma=sigma, progress=False)
    return enc


@pytest.mark.parametrize("where", ["meta", "swap"])
def test_checkpoint_survives_a_kill_mid_write_and_resumes_exactly(
    tmp_path, toy, straight_three_epochs, where
):
    images, mask, sigma = (a[:128] for a in toy)
    np.savez(tmp_path / "data.npz", images=images, mask=mask, sigma=sigma)
    ck = tmp_path / "encoder.ckpt"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path / "data.npz"), str(ck), where],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 9, proc.stderr
    if where == "meta":  # the first checkpoint is intact in place
        first = ck
    else:  # killed between moving it aside and renaming the new one in
        assert not ck.exists()
        (first,) = tmp_path.glob(".encoder.ckpt.*.old")
    meta = json.loads((first / "meta.json").read_text())
    assert meta["format"] == "photozsom.encoder_checkpoint" and meta["epoch"] == 1
    straight = straight_three_epochs
    resumed = tiny_encoder()
    hist = resumed.fit(images, epochs=3, batch_size=64, band_mask=mask, sigma=sigma,
                       checkpoint=ck, progress=False)
    assert hist["steps"] == 6 and len(hist["loss"]) == 3
    # epoch 1 came from the checkpoint (its timing is the killed run's), epochs 2-3 were run
    assert hist["epoch_time_s"][0] == meta["history"]["epoch_time_s"][0]
    np.testing.assert_allclose(hist["loss"], straight.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(
        resumed.embed(images, mask, progress=False),
        straight.embed(images, mask, progress=False),
        rtol=1e-5,
        atol=1e-5,
    )
    assert json.loads((ck / "meta.json").read_text())["epoch"] == 3


def test_checkpoint_of_another_config_or_an_old_pickle_is_refused(tmp_path, toy):
    images, mask, sigma = (a[:64] for a in toy)
    ck = tmp_path / "encoder.ckpt"
    tiny_encoder().fit(images, epochs=1, batch_size=32, band_mask=mask, sigma=sigma,
                       checkpoint=ck, progress=False)
    other = Encoder(dim=8, size=16, seed=0, widths=(8, 16, 16, 16))
    with pytest.raises(ValueError, match="config"):
        other.fit(images, epochs=2, batch_size=32, band_mask=mask, sigma=sigma,
                  checkpoint=ck, progress=False)
    (tmp_path / "old.ckpt").write_bytes(b"PK\x03\x04 torch pickle")
    with pytest.raises(ValueError, match="older photozsom"):
        tiny_encoder().fit(images, epochs=1, batch_size=32, band_mask=mask, sigma=sigma,
                           checkpoint=tmp_path / "old.ckpt", progress=False)


# -- north and south ---------------------------------------------------------------------------
def test_north_and_south_both_embed_and_absent_band_content_is_ignored(trained, toy):
    images, mask, _ = toy
    south = images[mask.all(axis=1)][:10]
    m_south = np.ones((10, 4), bool)
    m_north = m_south.copy()
    m_north[:, 2] = False
    north_nan = south.copy()
    north_nan[:, 2] = np.nan
    north_junk = south.copy()
    north_junk[:, 2] = 1e6
    e_s = trained.embed(south, m_south, progress=False)
    e_n = trained.embed(north_nan, m_north, progress=False)
    assert np.isfinite(e_s).all() and np.isfinite(e_n).all()
    np.testing.assert_array_equal(e_n, trained.embed(north_junk, m_north, progress=False))
    assert not np.allclose(e_s, e_n)


def test_bad_pixels_in_a_present_band_embed_as_if_the_band_were_absent(trained, toy):
    images, mask, _ = toy
    south = images[mask.all(axis=1)][:4].copy()
    full = np.ones((4, 4), bool)
    clean = trained.embed(south, full, progress=False)
    bad = south.copy()
    bad[2, 1, 9, 9] = np.nan  # inside the 16-px centre crop of these 20-px cutouts
    bad[3, 3, 10, 8] = np.inf
    bad[0, 0, 0, 0] = np.nan  # outside the crop: the network never reads it
    bad[1] = np.nan  # every band: nothing left to embed
    with pytest.warns(RuntimeWarning, match=r"row 1 band g.*row 2 band r.*1 object\(s\) have no band"):
        emb = trained.embed(bad, full, progress=False)
    without = full.copy()
    without[2, 1] = without[3, 3] = False
    expected = trained.embed(np.nan_to_num(bad), without, progress=False)
    np.testing.assert_allclose(emb[0], clean[0], rtol=1e-5, atol=1e-6)  # batch composition only
    assert np.isnan(emb[1]).all()
    np.testing.assert_allclose(emb[2:], expected[2:], rtol=1e-6, atol=1e-6)
    assert not np.allclose(emb[2], clean[2], atol=1e-3)  # the band really was left out


def test_training_leaves_out_bad_bands_and_counts_them(toy):
    images, mask, sigma = toy
    images, mask, sigma = images[:128].copy(), mask[:128], sigma[:128]
    rng = np.random.default_rng(5)
    hit = rng.choice(128, 10, replace=False)
    images[hit, 1, rng.integers(0, 20, 10), rng.integers(0, 20, 10)] = np.nan
    images[hit[:2]] = np.nan  # two objects with no usable band
    expected = int((~np.isfinite(images).all(axis=(2, 3)) & mask).sum())
    enc = tiny_encoder()
    with pytest.warns(RuntimeWarning, match=f"{expected} band.*2 object"):
        hist = enc.fit(images, epochs=2, batch_size=32, band_mask=mask, sigma=sigma,
                       progress=False)
    assert hist["bad_bands"] == [expected, expected]
    assert hist["steps"] == 2 * ((128 - 2) // 32)
    assert np.isfinite(hist["loss"]).all()


@pytest.mark.parametrize(
    "shape, mask_shape, match",
    [
        ((4, 3, 20, 20), (4, 4), "shape \\(N, 4, H, W\\)"),
        ((4, 4, 20), (4, 4), "shape \\(N, 4, H, W\\)"),
        ((4, 4, 20, 20), (4, 3), "band_mask must have shape"),
        ((4, 4, 12, 12), (4, 4), "at least 16x16"),
    ],
)
def test_wrong_shapes_are_clear_errors(trained, shape, mask_shape, match):
    with pytest.raises(ValueError, match=match):
        trained.embed(np.zeros(shape, np.float32), np.ones(mask_shape, bool))


def test_sky_sigma_estimate_matches_injected_noise():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(20, 4, 40, 40)).astype(np.float32) * SIGMA[None, :, None, None]
    est = estimate_sky_sigma(images)
    np.testing.assert_allclose(np.median(est, axis=0), SIGMA, rtol=0.05)


def test_fit_from_store_uses_store_rows_and_objid_subset(tmp_path, store_path):
    enc = tiny_encoder()
    with CutoutStore(store_path) as store:
        hist = enc.fit(store, epochs=1, batch_size=16, objid=np.arange(1010, 1042), progress=False)
    assert hist["n_train"] == 32 and hist["steps"] == 2
    # Softening = median per-pixel sky noise of the store, per band.
    np.testing.assert_allclose(enc.softening, SIGMA, rtol=1e-6)


# -- embedding files ---------------------------------------------------------------------------
def test_embed_to_file_keys_rows_by_objid(tmp_path, store_path):
    out = embed_to_file(MomentEmbedder(), store_path, tmp_path / "emb.h5", chunk=16, progress=False)
    with CutoutStore(store_path) as store:
        images, mask, ids = store.read(slice(None))
    expected = MomentEmbedder().embed(images, mask)
    emb, objid = load_embeddings(out)
    np.testing.assert_array_equal(objid, ids)
    np.testing.assert_allclose(emb, expected, rtol=1e-6)
    want = np.array([1049, 1003, 1020])
    sub, sub_ids = load_embeddings(out, objid=want)
    np.testing.assert_array_equal(sub_ids, want)
    np.testing.assert_allclose(sub, expected[want - 1000], rtol=1e-6)
    with pytest.raises(KeyError, match="7777"):
        load_embeddings(out, objid=[1001, 7777])


def test_embed_to_file_resumes_without_duplicating_or_losing_rows(tmp_path, store_path):
    out = tmp_path / "emb.h5"
    with pytest.raises(KeyboardInterrupt):
        embed_to_file(MomentEmbedder(fail_after=2), store_path, out, chunk=16, progress=False)
    with h5py.File(out, "r") as h5:
        assert int(h5.attrs["n_done"]) == 32 and not bool(h5.attrs["complete"])
    with pytest.raises(ValueError, match="incomplete"):
        load_embeddings(out)
    second = MomentEmbedder()
    embed_to_file(second, store_path, out, chunk=16, progress=False)
    assert second.rows == 50 - 32  # only the uncommitted rows recomputed
    reference = embed_to_file(
        MomentEmbedder(), store_path, tmp_path / "ref.h5", chunk=50, progress=False
    )
    emb, ids = load_embeddings(out)
    emb_ref, ids_ref = load_embeddings(reference)
    assert len(ids) == 50 and len(np.unique(ids)) == 50
    np.testing.assert_array_equal(ids, ids_ref)
    np.testing.assert_array_equal(emb, emb_ref)


def test_embed_to_file_discards_rows_written_after_last_commit(tmp_path, store_path):
    out = tmp_path / "emb.h5"
    with pytest.raises(KeyboardInterrupt):
        embed_to_file(MomentEmbedder(fail_after=1), store_path, out, chunk=16, progress=False)
    with h5py.File(out, "a") as h5:  # a crash between write and commit
        h5["embedding"].resize(40, axis=0)
        h5["OBJID"].resize(40, axis=0)
        h5["OBJID"][16:40] = -1
    embed_to_file(MomentEmbedder(), store_path, out, chunk=16, progress=False)
    _, ids = load_embeddings(out)
    with CutoutStore(store_path) as store:
        np.testing.assert_array_equal(ids, store.objid)


def test_embed_to_file_refuses_to_resume_with_another_embedder(tmp_path, store_path, trained):
    out = embed_to_file(MomentEmbedder(), store_path, tmp_path / "emb.h5", progress=False)
    with pytest.raises(ValueError, match="overwrite=True"):
        embed_to_file(trained, store_path, out, progress=False)
    embed_to_file(trained, store_path, out, progress=False, overwrite=True)
    emb, _ = load_embeddings(out)
    with CutoutStore(store_path) as store:
        images, mask, _ = store.read(slice(None))
    np.testing.assert_allclose(
        emb, trained.embed(images, mask, progress=False), rtol=1e-5, atol=1e-6
    )


# -- bad pixels and pixel scale in embedding files -------------------------------------------
def test_embed_to_file_records_bad_pixels_per_object_and_never_stops(tmp_path, store_path, trained):
    with CutoutStore(store_path) as store:
        images, mask, ids = store.read(slice(None))
        sigma = store.sigma()
    images = images.copy()
    south = np.flatnonzero(mask.all(axis=1))
    a, b, c = south[:3]
    images[a, 1, 10, 10] = np.nan  # r, centre
    images[a, 3, 9, 11] = np.inf  # z, centre
    images[b, 0, 0, 0] = np.nan  # g, corner: outside the encoder's 16-px crop
    images[c] = np.nan  # every band
    bad_store = tmp_path / "bad.h5"
    with CutoutStore.create(bad_store, size=20) as store:
        store.append(images, mask, ids, sigma)

    out = embed_to_file(MomentEmbedder(), bad_store, tmp_path / "m.h5", chunk=16, progress=False)
    status = load_embedding_status(out)
    n_bad = (~np.isfinite(images)).sum(axis=(2, 3)) * mask  # whole cutout: no input_size
    np.testing.assert_array_equal(status[["n_bad_g", "n_bad_r", "n_bad_i", "n_bad_z"]], n_bad)
    used = mask & (n_bad == 0)
    np.testing.assert_array_equal(status[["used_g", "used_r", "used_i", "used_z"]], used)
    expected_status = np.where(used.any(axis=1), np.where(n_bad.any(axis=1), 1, 0), 2)
    np.testing.assert_array_equal(status["status"], expected_status)
    assert status.loc[status.OBJID == ids[c], "status_name"].item() == "not_embedded"
    with pytest.warns(RuntimeWarning, match=rf"1 of 50 embeddings .* OBJID \[{ids[c]}\]"):
        emb, _ = load_embeddings(out)
    keep = used.any(axis=1)
    np.testing.assert_allclose(
        emb[keep], MomentEmbedder().embed(images[keep], used[keep]), rtol=1e-6
    )
    assert np.isnan(emb[~keep]).all()

    out = embed_to_file(trained, bad_store, tmp_path / "e.h5", progress=False)
    status = load_embedding_status(out, objid=ids[[a, b]])
    assert status["n_bad_g"].tolist() == [0, 0]  # the corner pixel is outside the crop
    assert status["status"].tolist() == [1, 0]
    assert status.iloc[0][["used_g", "used_r", "used_i", "used_z"]].tolist() == [
        True, False, True, False
    ]


def test_embed_to_file_refuses_to_resume_a_file_without_status(tmp_path, store_path):
    out = embed_to_file(MomentEmbedder(), store_path, tmp_path / "emb.h5", progress=False)
    with h5py.File(out, "a") as h5:
        del h5["status"]
    with pytest.raises(ValueError, match="older photozsom.*overwrite=True"):
        embed_to_file(MomentEmbedder(), store_path, out, progress=False)


def test_encoder_remembers_the_pixel_scale_it_was_trained_at(tmp_path):
    images, mask, sigma = toy_galaxies(40, size=20, seed=4)
    coarse = tmp_path / "coarse.h5"
    with CutoutStore.create(coarse, size=20, pixscale=0.5) as store:
        store.append(images, mask, np.arange(40), sigma)
    enc = tiny_encoder()
    with pytest.raises(ValueError, match=r"training cutout store has pixel scale 0.5"):
        enc.fit(coarse, epochs=1, batch_size=20, progress=False)
    enc.fit(coarse, epochs=1, batch_size=20, allow_pixscale=0.5, progress=False)
    assert enc.pixscale == 0.5
    embed_to_file(enc, coarse, tmp_path / "e.h5", progress=False)  # its own scale: accepted
    assert Encoder.load(enc.save(tmp_path / "enc")).pixscale == 0.5
    default = tmp_path / "default.h5"
    with CutoutStore.create(default, size=20) as store:
        store.append(images, mask, np.arange(40), sigma)
    with pytest.raises(ValueError, match=r"0.262 arcsec/pixel but Encoder\(.*\) expects 0.5"):
        embed_to_file(enc, default, tmp_path / "e2.h5", progress=False)


# -- image-only encoder (no light-profile branch) ---------------------------------------------
def tiny_image_only(seed: int = 0) -> Encoder:
    return Encoder(dim=16, size=16, seed=seed, widths=(8, 16, 16, 16), lr=5e-3, max_shift=2,
                   image_only=True)


@pytest.fixture(scope="module")
def trained_image_only(toy):
    images, mask, sigma = toy
    enc = tiny_image_only()
    enc.fit(images, epochs=12, batch_size=64, band_mask=mask, sigma=sigma, progress=False)
    return enc


def _embedding_from_parts(enc: Encoder, images, mask, profile: bool) -> np.ndarray:
    """The embedding recomputed outside ``forward``: the ``embed`` layer applied to
    [conv features, (profile), band mask] built from the network's public pieces."""
    side = enc.size
    off = (images.shape[-1] - side) // 2
    x = torch.from_numpy(np.ascontiguousarray(images[:, :, off : off + side, off : off + side]))
    m = torch.from_numpy(mask)
    with torch.no_grad():
        xs = stretch(x, m, torch.as_tensor(enc.softening))
        parts = [enc.net.conv_features(xs, m)]
        if profile:
            parts.append(enc.net.profile(xs))
        parts.append(m.float())
        return torch.nn.functional.linear(
            torch.cat(parts, dim=1), enc.net.embed.weight, enc.net.embed.bias
        ).numpy()


def test_image_only_network_has_no_profile_parameters(trained_image_only, trained):
    full_keys = set(trained.net.state_dict())
    keys = set(trained_image_only.net.state_dict())
    assert any(k.startswith(("profile_norm.", "photometry.")) for k in full_keys)
    assert not any(k.startswith(("profile_norm.", "photometry.")) for k in keys)
    assert keys == {k for k in full_keys if not k.startswith(("profile_norm.", "photometry."))}
    n_ann = 9  # annuli of the profile branch
    conv_width = trained_image_only.widths[-1]
    assert trained_image_only.net.embed.in_features == conv_width + 4
    assert trained.net.embed.in_features == conv_width + 4 * n_ann + 4


def test_image_only_embedding_is_a_function_of_conv_features_and_mask_only(
    trained_image_only, trained, toy, monkeypatch
):
    images, mask, _ = toy
    images, mask = images[:40], mask[:40]
    emb = trained_image_only.embed(images, mask, progress=False)
    np.testing.assert_allclose(
        emb, _embedding_from_parts(trained_image_only, images, mask, profile=False),
        rtol=1e-5, atol=1e-5,
    )
    # The light profile is never computed: breaking it changes nothing.
    def broken(*args, **kwargs):
        raise AssertionError("the image-only network computed a light profile")

    monkeypatch.setattr(trained_image_only.net, "raw_profile", broken)
    np.testing.assert_array_equal(trained_image_only.embed(images, mask, progress=False), emb)
    # The full network's embedding does read the profile: zeroing it changes the embedding.
    full = trained.embed(images, mask, progress=False)
    np.testing.assert_allclose(
        full, _embedding_from_parts(trained, images, mask, profile=True), rtol=1e-5, atol=1e-5
    )
    side = trained.size
    off = (images.shape[-1] - side) // 2
    x = torch.from_numpy(np.ascontiguousarray(images[:, :, off : off + side, off : off + side]))
    m = torch.from_numpy(mask)
    with torch.no_grad():
        xs = stretch(x, m, torch.as_tensor(trained.softening))
        zeroed = torch.nn.functional.linear(
            torch.cat([trained.net.conv_features(xs, m),
                       torch.zeros(len(x), trained.net.profile_norm.num_features), m.float()], 1),
            trained.net.embed.weight, trained.net.embed.bias,
        ).numpy()
    assert np.median(np.linalg.norm(full - zeroed, axis=1)) > 0.1 * np.median(
        np.linalg.norm(full, axis=1)
    )


def test_image_only_training_has_no_photometry_loss_and_learns_invariances(
    trained_image_only, toy
):
    hist = trained_image_only.history
    assert hist["photometry"] == [0.0] * 12
    np.testing.assert_allclose(hist["loss"], hist["contrastive"])
    assert hist["contrastive"][-1] < hist["contrastive"][0] - 0.5
    images, mask, _ = toy
    south = mask.all(axis=1)
    images, mask = images[south], mask[south]
    emb = trained_image_only.embed(images, mask, progress=False)
    aug = np.ascontiguousarray(np.rot90(images, 1, axes=(2, 3))[..., ::-1])
    d_self = np.linalg.norm(emb - trained_image_only.embed(aug, mask, progress=False), axis=1)
    d_other = np.linalg.norm(emb - np.roll(emb, 1, axis=0), axis=1)
    assert np.median(d_self) < 0.6 * np.median(d_other)


def test_image_only_refuses_a_profile_reconstruction_weight():
    with pytest.raises(ValueError, match="image_only.*photometry_weight=0"):
        Encoder(dim=8, image_only=True, photometry_weight=1.0)
    assert Encoder(dim=8, image_only=True).photometry_weight == 0.0
    assert Encoder(dim=8).photometry_weight == 1.0


def test_image_only_save_load_roundtrip_keeps_the_flag(tmp_path, trained_image_only, toy):
    images, mask, _ = toy
    path = trained_image_only.save(tmp_path / "encoder")
    meta = json.loads((path / "meta.json").read_text())
    assert meta["config"]["image_only"] is True and meta["config"]["photometry_weight"] == 0.0
    loaded = Encoder.load(path)
    assert loaded.image_only and loaded.net.embed.in_features == loaded.widths[-1] + 4
    np.testing.assert_array_equal(
        loaded.embed(images[:10], mask[:10], progress=False),
        trained_image_only.embed(images[:10], mask[:10], progress=False),
    )
    assert loaded.identity() == trained_image_only.identity()
    assert "image_only=True" in loaded.identity()


def test_full_encoder_saved_without_the_flag_loads_as_full_and_embeds_the_same(
    tmp_path, trained, toy
):
    # Encoders saved before the flag existed have no "image_only" in their config.
    images, mask, _ = toy
    path = trained.save(tmp_path / "encoder")
    meta = json.loads((path / "meta.json").read_text())
    assert meta["config"]["image_only"] is False
    del meta["config"]["image_only"]
    (path / "meta.json").write_text(json.dumps(meta))
    loaded = Encoder.load(path)
    assert not loaded.image_only
    np.testing.assert_array_equal(
        loaded.embed(images[:10], mask[:10], progress=False),
        trained.embed(images[:10], mask[:10], progress=False),
    )
    assert "image_only" not in loaded.identity()


def test_default_is_the_full_encoder_with_the_same_weights_and_embeddings(toy):
    images, mask, sigma = (a[:128] for a in toy)
    default, explicit = tiny_encoder(), Encoder(
        dim=16, size=16, seed=0, widths=(8, 16, 16, 16), lr=5e-3, max_shift=2,
        image_only=False, photometry_weight=1.0,
    )
    assert default.identity() == explicit.identity()  # same initial weights
    for enc in (default, explicit):
        enc.fit(images, epochs=2, batch_size=64, band_mask=mask, sigma=sigma, progress=False)
    assert default.identity() == explicit.identity()
    np.testing.assert_array_equal(
        explicit.embed(images[:20], mask[:20], progress=False),
        default.embed(images[:20], mask[:20], progress=False),
    )
    assert default.history["photometry"][-1] > 0


def test_checkpoint_of_the_other_kind_of_encoder_is_refused(tmp_path, toy):
    images, mask, sigma = (a[:64] for a in toy)
    ck = tmp_path / "encoder.ckpt"
    tiny_encoder().fit(images, epochs=1, batch_size=32, band_mask=mask, sigma=sigma,
                       checkpoint=ck, progress=False)
    with pytest.raises(ValueError, match="config"):
        tiny_image_only().fit(images, epochs=2, batch_size=32, band_mask=mask, sigma=sigma,
                              checkpoint=ck, progress=False)


def test_training_does_not_depend_on_the_callers_torch_thread_count(toy):
    """Encoder.fit trains with the encoder's fixed thread count (photozsom.device's, as the
    MDN does), whatever torch's count outside, and restores it."""
    images, mask, sigma = (a[:128] for a in toy)
    before = torch.get_num_threads()
    out = []
    for outside in (1, 3):
        torch.set_num_threads(outside)
        try:
            enc = tiny_encoder()
            enc.fit(images, epochs=1, batch_size=64, band_mask=mask, sigma=sigma,
                    progress=False)
            assert torch.get_num_threads() == outside
            out.append(enc.embed(images[:20], mask[:20], progress=False))
        finally:
            torch.set_num_threads(before)
    np.testing.assert_array_equal(out[0], out[1])
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Encoder(threads=0)
