"""AIONEmbedder glue code against a tiny, randomly initialised AION-1 and tiny codecs (offline).

The real weights are gated; here a 2+2-block, width-64 AION is built from a config dict and
tiny codecs (an ImageCodec whose 7*5*5*5*5 = 4375 levels match the image-token vocabulary,
and a LogScalarCodec) are injected into a real ``CodecManager``, so every line of
``photozsom.embed.aion`` runs. Expected values come from calling polymathic-aion directly.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from aion import AION
from aion.codecs import CodecManager, ImageCodec, LogScalarCodec
from aion.modalities import LegacySurveyFluxG, LegacySurveyFluxZ, LegacySurveyImage

from photozsom.embed import AIONEmbedder, Embedder, aion_fingerprint, embed_to_file, load_embeddings
from photozsom.embed.aion import AION_BANDS, CODEC_REPO, check_image_codec, codec_test_galaxy
from photozsom.embed.store import CutoutStore

CONFIG = {
    "domains_in": ["tok_image", "tok_flux_g", "tok_flux_z"],
    "domains_out": ["tok_image"],
    "dim": 64,
    "encoder_depth": 2,
    "decoder_depth": 2,
    "num_heads": 4,
    "mlp_ratio": 2.0,
    "qkv_bias": False,
    "proj_bias": False,
    "mlp_bias": False,
    "norm_bias": False,
    "act_layer": "SiLU",
    "gated_mlp": True,
    "qk_norm": False,
}


def tiny_scalar_codec(name: str) -> LogScalarCodec:
    codec = LogScalarCodec(name, codebook_size=1024, reservoir_size=2048)
    q = codec.quantizer  # spread the reservoir over 1e-3..1e3 nanomaggies
    q._reservoir.copy_(torch.linspace(np.log(1e-3), np.log(1e3), 2048))
    q._generate_index_to_val()
    return codec.eval()


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    model = AION(CONFIG).eval()
    codecs = {
        LegacySurveyImage: ImageCodec(
            quantizer_levels=[7, 5, 5, 5, 5], hidden_dims=16, n_compressions=2, num_consecutive=1
        ).eval(),
        LegacySurveyFluxG: tiny_scalar_codec("FLUX_G"),
        LegacySurveyFluxZ: tiny_scalar_codec("FLUX_Z"),
    }
    manager = CodecManager(device="cpu")
    manager._load_codec = lambda modality_type: codecs[modality_type]  # no download
    return model, manager


@pytest.fixture(scope="module")
def embedder(parts):
    model, manager = parts
    return AIONEmbedder(
        model, codec_manager=manager, device="cpu", verify_weights=False, verify_codec=False
    )


def galaxies(n: int, size: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    r = rng.uniform(2, 8, n)[:, None, None]
    prof = np.exp(-np.hypot(xx, yy) / r)
    amp = rng.uniform(1, 40, (n, 4))  # peaks above the codec's clamp (6 nmgy in g)
    img = amp[:, :, None, None] * prof[:, None] + rng.normal(0, 0.01, (n, 4, size, size))
    return img.astype(np.float32)


def direct_embedding(model, manager, flux: np.ndarray, bands: list[str], scalars=()) -> np.ndarray:
    """polymathic-aion called by hand: codec tokens -> encoder -> mean over tokens."""
    image = LegacySurveyImage(flux=torch.tensor(flux), bands=bands)
    with torch.no_grad():
        tokens = manager.encode(image, *scalars)
        return model.encode(tokens, num_encoder_tokens=600).mean(dim=1).numpy()


def test_random_weights_fail_loudly(parts):
    model, manager = parts
    with pytest.raises(RuntimeError, match="random initialisation"):
        AIONEmbedder(model, codec_manager=manager, device="cpu", verify_codec=False)


def test_embeds_north_and_south_like_direct_aion_calls(parts, embedder):
    model, manager = parts
    images = galaxies(7)
    mask = np.ones((7, 4), bool)
    mask[[1, 4, 5], 2] = False  # northern objects: no i-band
    images[[1, 4, 5], 2] = np.nan
    before = images.copy()
    emb = embedder.embed(images, mask, batch_size=2, progress=False)
    assert isinstance(embedder, Embedder)
    assert emb.shape == (7, 64) and emb.dtype == np.float32 and np.isfinite(emb).all()
    np.testing.assert_array_equal(images, before)  # the codec clamps a copy, not ours
    crop = images[:, :, 2:98, 2:98]
    south = direct_embedding(
        model, manager, crop[[0, 2, 3, 6]], ["DES-G", "DES-R", "DES-I", "DES-Z"]
    )
    north = direct_embedding(
        model, manager, crop[[1, 4, 5]][:, [0, 1, 3]], ["DES-G", "DES-R", "DES-Z"]
    )
    np.testing.assert_allclose(emb[[0, 2, 3, 6]], south, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(emb[[1, 4, 5]], north, rtol=1e-4, atol=1e-5)


def test_catalog_scalars_join_the_tokens(parts):
    model, manager = parts
    emb_cat = AIONEmbedder(
        model, codec_manager=manager, device="cpu", include_catalog=True, verify_weights=False,
        verify_codec=False,
    )
    images = galaxies(4, size=96, seed=2)
    cat = pd.DataFrame({"FLUX_G": [1.0, 5.0, 20.0, 2.0], "FLUX_Z": [3.0, np.nan, 40.0, 9.0]})
    emb = emb_cat.embed(images, np.ones((4, 4), bool), progress=False, catalog=cat)
    bands = ["DES-G", "DES-R", "DES-I", "DES-Z"]
    with_both = direct_embedding(
        model,
        manager,
        images[[0, 2, 3]],
        bands,
        [
            LegacySurveyFluxG(value=torch.tensor([1.0, 20.0, 2.0])),
            LegacySurveyFluxZ(value=torch.tensor([3.0, 40.0, 9.0])),
        ],
    )
    g_only = direct_embedding(
        model, manager, images[[1]], bands, [LegacySurveyFluxG(value=torch.tensor([5.0]))]
    )
    np.testing.assert_allclose(emb[[0, 2, 3]], with_both, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(emb[[1]], g_only, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="catalog="):
        emb_cat.embed(images, np.ones((4, 4), bool), progress=False)


def test_small_cutouts_are_a_clear_error(embedder):
    with pytest.raises(ValueError, match="at least 96x96"):
        embedder.embed(np.zeros((2, 4, 64, 64), np.float32), np.ones((2, 4), bool))


def test_bad_pixels_leave_the_band_out_like_a_missing_band(parts, embedder):
    model, manager = parts
    images = galaxies(4)
    images[1, 0, 50, 50] = np.nan  # g of object 1, inside the 96x96 crop
    images[2, 3, 0, 0] = np.inf  # outside the crop (rows 2..97): the codec never sees it
    images[3] = np.nan  # nothing left
    with pytest.warns(RuntimeWarning, match=r"row 1 band g.*1 object\(s\) have no band"):
        emb = embedder.embed(images, np.ones((4, 4), bool), progress=False)
    crop = images[:, :, 2:98, 2:98]
    all_bands = direct_embedding(model, manager, crop[[0, 2]], list(AION_BANDS))
    no_g = direct_embedding(model, manager, crop[[1]][:, 1:], ["DES-R", "DES-I", "DES-Z"])
    np.testing.assert_allclose(emb[[0, 2]], all_bands, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(emb[[1]], no_g, rtol=1e-4, atol=1e-5)
    assert np.isnan(emb[3]).all()


def test_token_count_and_model_id_are_checked(parts):
    model, manager = parts
    with pytest.raises(ValueError, match="drop image tokens"):
        AIONEmbedder(model, codec_manager=manager, num_encoder_tokens=256, verify_weights=False)
    with pytest.raises(ValueError, match="polymathic-ai/aion-base"):
        AIONEmbedder("aion-base", codec_manager=manager)


def test_local_directory_loads_and_missing_weights_fail(tmp_path, parts, embedder):
    from safetensors.torch import load_file, save_file

    model, manager = parts
    model.save_pretrained(tmp_path / "full")
    loaded = AIONEmbedder(
        str(tmp_path / "full"), codec_manager=manager, device="cpu", verify_weights=False,
        verify_codec=False,
    )
    images = galaxies(3, seed=5)
    mask = np.ones((3, 4), bool)
    np.testing.assert_allclose(
        loaded.embed(images, mask, progress=False),
        embedder.embed(images, mask, progress=False),
        rtol=1e-5,
        atol=1e-6,
    )
    # A checkpoint lacking tensors loads silently in from_pretrained; the embedder must not.
    model.save_pretrained(tmp_path / "partial")
    wfile = tmp_path / "partial" / "model.safetensors"
    tensors = load_file(wfile)
    dropped = sorted(k for k in tensors if k.startswith("encoder.1."))
    save_file({k: v for k, v in tensors.items() if k not in dropped}, wfile)
    with pytest.raises(RuntimeError, match="lack") as err:
        AIONEmbedder(
            str(tmp_path / "partial"), codec_manager=manager, device="cpu", verify_codec=False
        )
    assert dropped[0] in str(err.value)


def test_known_input_fingerprint_pins_the_weights(parts, embedder):
    model, manager = parts
    fp = embedder.fingerprint()
    np.testing.assert_array_equal(fp, embedder.fingerprint())
    pinned = AIONEmbedder(
        model, codec_manager=manager, device="cpu", expected_fingerprint=fp, verify_codec=False
    )
    assert pinned.weights_verified
    torch.manual_seed(1)
    other = AION(CONFIG).eval()  # different (random) weights
    with pytest.raises(RuntimeError, match="fingerprint"):
        AIONEmbedder(
            other, codec_manager=manager, device="cpu", expected_fingerprint=fp,
            verify_codec=False,
        )


# -- codec self-check --------------------------------------------------------------------------
class StubCodecs:
    """A codec manager whose tokens are the (clamped-free) flux itself, times ``gain``."""

    source = "stub"

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def encode(self, image):
        return {"tok_image": image.flux.clone()}

    def decode(self, tokens, modality, bands):
        return modality(flux=tokens["tok_image"] * self.gain, bands=bands)


def test_codec_self_check_passes_a_faithful_codec_with_the_noise_as_only_error():
    result = check_image_codec(StubCodecs())
    noisy, model = codec_test_galaxy()
    yy, xx = np.mgrid[:96, :96] - 47.5
    ap = np.hypot(xx, yy) <= 2 * 4.6
    expected = [
        np.linalg.norm((noisy - model)[0, b][ap]) / np.linalg.norm(model[0, b][ap])
        for b in range(4)
    ]
    np.testing.assert_allclose(list(result["south"].values()), expected, rtol=1e-5)
    np.testing.assert_allclose(list(result["north"].values()), np.array(expected)[[0, 1, 3]],
                               rtol=1e-5)
    assert result["passed"] and max(expected) < 0.1
    json.dumps(result, allow_nan=False)


def test_codec_self_check_fails_a_wrongly_scaled_or_random_codec_naming_it(parts):
    with pytest.raises(RuntimeError, match=r"codec self-check failed: .* from stub"):
        check_image_codec(StubCodecs(gain=0.5))
    _, manager = parts  # a real, untrained aion ImageCodec
    with pytest.raises(RuntimeError, match="ImageCodec for LegacySurveyImage") as err:
        check_image_codec(manager)
    assert "download them again" in str(err.value)
    model, _ = parts
    with pytest.raises(RuntimeError, match="codec self-check failed"):
        AIONEmbedder(model, codec_manager=manager, device="cpu", verify_weights=False)


# -- local model directories -------------------------------------------------------------------
def test_local_snapshot_directory_gives_model_and_codecs(tmp_path, monkeypatch, parts, embedder):
    from safetensors.torch import load_file, save_file

    model, manager = parts
    root = tmp_path / "aion-base"  # the bare name, as a directory in the working directory
    model.save_pretrained(root)
    manager._load_codec(LegacySurveyImage).save_pretrained(root, modality=LegacySurveyImage)
    assert (root / "codecs" / "image" / "model.safetensors").exists()
    monkeypatch.chdir(tmp_path)
    local = AIONEmbedder("aion-base", device="cpu", verify_weights=False, verify_codec=False)
    assert local.codecs_source == str(root.resolve())
    images = galaxies(3, seed=7)
    mask = np.ones((3, 4), bool)
    mask[1, 2] = False
    np.testing.assert_allclose(
        local.embed(images, mask, progress=False),
        embedder.embed(images, mask, progress=False),
        rtol=1e-5,
        atol=1e-6,
    )
    # A codec file lacking tensors is refused (polymathic-aion would load it non-strictly).
    wfile = root / "codecs" / "image" / "model.safetensors"
    tensors = load_file(wfile)
    save_file({k: v for k, v in tensors.items() if "decoder" not in k}, wfile)
    broken = AIONEmbedder(root, device="cpu", verify_weights=False, verify_codec=False)
    with pytest.raises(RuntimeError, match="lack"):
        broken.embed(images, mask, progress=False)


def test_model_directory_without_codecs_uses_the_hub_codecs(tmp_path, parts):
    model, _ = parts
    model.save_pretrained(tmp_path / "m")
    emb = AIONEmbedder(tmp_path / "m", device="cpu", verify_weights=False, verify_codec=False)
    assert emb.codecs_source.startswith(CODEC_REPO)
    with pytest.raises(FileNotFoundError, match="config.json"):
        AIONEmbedder(tmp_path, device="cpu", verify_weights=False, verify_codec=False)


# -- fingerprint -------------------------------------------------------------------------------
def test_aion_fingerprint_is_json_and_pins_the_weights(tmp_path, parts, embedder):
    model, manager = parts
    model.save_pretrained(tmp_path / "m")
    fp = aion_fingerprint(tmp_path / "m", codec_manager=manager, device="cpu", verify=False)
    path = tmp_path / "fp.json"
    path.write_text(json.dumps(fp, allow_nan=False))
    assert fp["format"] == "photozsom.aion_fingerprint" and fp["dim"] == 64
    np.testing.assert_allclose(fp["fingerprint"], embedder.fingerprint(), rtol=1e-5, atol=1e-7)
    sha = hashlib.sha256((tmp_path / "m" / "model.safetensors").read_bytes()).hexdigest()
    assert fp["files"]["model.safetensors"] == sha
    assert fp["codec_check"]["passed"] is False  # the tiny codec is untrained: recorded
    pinned = AIONEmbedder(tmp_path / "m", codec_manager=manager, device="cpu",
                          verify_codec=False, expected_fingerprint=path)
    assert pinned.weights_verified
    torch.manual_seed(2)
    with pytest.raises(RuntimeError, match="fingerprint"):
        AIONEmbedder(AION(CONFIG).eval(), codec_manager=manager, device="cpu",
                     verify_codec=False, expected_fingerprint=fp)


# -- pixel scale -------------------------------------------------------------------------------
def test_store_of_another_pixel_scale_is_refused_unless_allowed(tmp_path, parts, embedder):
    model, manager = parts
    images = galaxies(3, size=96, seed=4)
    with CutoutStore.create(tmp_path / "c.h5", size=96, pixscale=0.2) as st:
        st.append(images, np.ones((3, 4), bool), np.arange(3))
    with pytest.raises(ValueError, match=r"0.2 arcsec/pixel.*expects 0.262.*allow_pixscale=0.2"):
        embed_to_file(embedder, tmp_path / "c.h5", tmp_path / "e.h5", progress=False)
    assert not (tmp_path / "e.h5").exists()
    embed_to_file(embedder, tmp_path / "c.h5", tmp_path / "e.h5", progress=False,
                  allow_pixscale=0.2)
    emb, _ = load_embeddings(tmp_path / "e.h5")
    np.testing.assert_allclose(emb, embedder.embed(images, np.ones((3, 4), bool), progress=False),
                               rtol=1e-5, atol=1e-6)
    lenient = AIONEmbedder(model, codec_manager=manager, device="cpu", verify_weights=False,
                           verify_codec=False, allow_pixscale=0.2)
    embed_to_file(lenient, tmp_path / "c.h5", tmp_path / "e2.h5", progress=False)
